//! A flaky link for one soak client: a TCP relay on 127.0.0.1 between the client and
//! the server that, on a schedule, stops carrying bytes for a while (both ways, every
//! connection through it, and new connections wait) and then carries on.
//!
//! That is what a dead Wi-Fi or a train tunnel does to a TCP connection: nothing is
//! closed, nothing arrives. Whether the connection survives depends on the heartbeats
//! on both sides, as in the field; bytes held back are delivered when the link is back,
//! as TCP retransmission would. Only loopback addresses are relayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, tcp};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes a relay reads before it waits for the link (one socket read's worth).
const CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub struct Link {
    up: watch::Sender<bool>,
    /// Drops begun so far.
    drops: AtomicU64,
    /// The listening port the client connects to.
    pub port: u16,
}

/// When the link is up and down.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub up: (Duration, Duration),
    pub down: (Duration, Duration),
}

impl Link {
    /// Listens on 127.0.0.1 and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Arc<Link>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (up, _) = watch::channel(true);
        let link = Arc::new(Link { up, drops: AtomicU64::new(0), port: listener.local_addr()?.port() });
        tokio::spawn(accept(listener, upstream, link.up.subscribe()));
        Ok(link)
    }

    pub fn is_down(&self) -> bool {
        !*self.up.borrow()
    }

    /// Drops begun so far: a connection that saw this number change lost its link.
    pub fn drops(&self) -> u64 {
        self.drops.load(Relaxed)
    }

    /// Up and down by `schedule` until `until`, then up for good; calls `down(secs)` as
    /// each drop begins.
    pub async fn run(self: Arc<Self>, schedule: Schedule, until: Instant, mut down: impl FnMut(f64)) {
        loop {
            tokio::time::sleep(between(schedule.up)).await;
            let length = between(schedule.down);
            if Instant::now() + length >= until {
                break;
            }
            self.drops.fetch_add(1, Relaxed);
            down(length.as_secs_f64());
            self.up.send_replace(false);
            tokio::time::sleep(length).await;
            self.up.send_replace(true);
        }
        self.up.send_replace(true);
    }
}

fn between((low, high): (Duration, Duration)) -> Duration {
    if high <= low { low } else { Duration::from_secs_f64(rand::random_range(low.as_secs_f64()..high.as_secs_f64())) }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, up: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let up = up.clone();
        tokio::spawn(async move {
            let mut waiting = up.clone();
            // A connection made while the link is down waits (its handshake times out
            // on the client's side if the drop is long enough).
            if waiting.wait_for(|up| *up).await.is_err() {
                return;
            }
            let Ok(server) = TcpStream::connect(upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(relay(client_read, server_write, up.clone()), relay(server_read, client_write, up));
        });
    }
}

/// Copies one direction, holding each chunk while the link is down; an end of stream
/// is passed on as a write shutdown.
async fn relay(mut from: tcp::OwnedReadHalf, mut to: tcp::OwnedWriteHalf, mut up: watch::Receiver<bool>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
