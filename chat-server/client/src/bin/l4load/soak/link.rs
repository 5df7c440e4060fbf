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
    /// When the last drop ended.
    back_at: std::sync::Mutex<Option<Instant>>,
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
        let port = listener.local_addr()?.port();
        let link = Arc::new(Link { up, drops: AtomicU64::new(0), back_at: std::sync::Mutex::new(None), port });
        tokio::spawn(accept(listener, upstream, link.up.subscribe()));
        Ok(link)
    }

    pub fn is_down(&self) -> bool {
        !*self.up.borrow()
    }

    /// Drops begun so far.
    pub fn drops(&self) -> u64 {
        self.drops.load(Relaxed)
    }

    /// Whether a connection (or attempt) that began when [`Link::drops`] was `mark` and
    /// ended now lost it to the link: the link is down, or a drop began since `mark` and
    /// ended within `slack` (the heartbeat's time to notice).
    pub fn blamed(&self, mark: u64, slack: Duration) -> bool {
        let back = *self.back_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.is_down() || (self.drops() > mark && back.is_some_and(|b| b.elapsed() <= slack))
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
            *self.back_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
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
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await; // out of descriptors, say
            continue;
        };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Link;

    /// An echo server on loopback.
    async fn echo() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        let _ = s.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_dropped_link_holds_the_bytes_until_it_is_back_and_is_blamed_for_a_while() {
        let link = Link::start(echo().await).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", link.port)).await.unwrap();
        let mut buf = [0u8; 8];
        s.write_all(b"a").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf[..1])).await.unwrap().unwrap();
        assert_eq!(&buf[..1], b"a");

        let mark = link.drops();
        link.drops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        link.up.send_replace(false);
        assert!(link.is_down() && link.blamed(mark, Duration::from_secs(60)));
        s.write_all(b"b").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf[..1])).await;
        assert!(held.is_err(), "nothing crosses a link that is down");
        *link.back_at.lock().unwrap() = Some(tokio::time::Instant::now());
        link.up.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf[..1])).await.unwrap().unwrap();
        assert_eq!(&buf[..1], b"b", "the held bytes arrive once the link is back");
        // Blamed by a connection that began before the drop, for the slack; not by a later one.
        assert!(link.blamed(mark, Duration::from_secs(60)));
        assert!(!link.blamed(link.drops(), Duration::from_secs(60)));
        assert!(!link.blamed(mark, Duration::ZERO));
    }
}
