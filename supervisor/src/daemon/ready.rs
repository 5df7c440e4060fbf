//! Signs of readiness from outside the actor: the daemon's `NOTIFY_SOCKET`
//! (sd_notify datagrams; the sender is known from its kernel credentials, not
//! from anything it writes) and the `http:/path` and `tcp` probes. Each turns
//! into a message naming the pid that is ready; the actor checks that the pid
//! is still the instance's current run before it believes it.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use super::Msg;
use crate::config::Ready;

/// Where workers send `READY=1`.
pub fn notify_path(home: &Path) -> PathBuf {
    home.join("notify.sock")
}

/// Bind the notify socket and forward every `READY=1` to the actor.
pub(super) fn listen_notify(home: &Path, tx: mpsc::Sender<Msg>) -> std::io::Result<PathBuf> {
    let path = notify_path(home);
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path)?;
    setsockopt(&socket, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
    socket.set_nonblocking(true)?;
    let socket = UnixDatagram::from_std(socket)?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let got = socket.try_io(Interest::READABLE, || receive(&socket, &mut buf));
            let Ok((pid, len)) = got else { continue };
            let text = String::from_utf8_lossy(&buf[..len]);
            if let Some(pid) = pid
                && text.lines().any(|l| l == "READY=1")
                && tx.send(Msg::Ready { pid }).await.is_err()
            {
                return;
            }
        }
    });
    Ok(path)
}

/// One datagram: the sender's pid (from `SCM_CREDENTIALS`) and its length.
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<(Option<i32>, usize)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let msg = recvmsg::<UnixAddr>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(std::io::Error::from)?;
    let mut pid = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmCredentials(cred) = c {
            pid = Some(cred.pid());
        }
    }
    Ok((pid, msg.bytes))
}

/// Probe `addr` as `ready` says until it passes (then tell the actor that `pid`
/// is ready) or `limit` is over (the actor's own timer handles that).
pub(super) fn probe(ready: Ready, addr: SocketAddr, pid: u32, limit: Duration, tx: mpsc::Sender<Msg>) {
    const EVERY: Duration = Duration::from_millis(50);
    tokio::spawn(async move {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let attempt = tokio::time::timeout(Duration::from_secs(1), check(&ready, addr));
            if attempt.await.unwrap_or(false) {
                let _ = tx.send(Msg::Ready { pid: pid as i32 }).await;
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

/// One probe: a TCP connect, or `GET path` answered with 200.
async fn check(ready: &Ready, addr: SocketAddr) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return false };
    let Ready::Http(path) = ready else { return true };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else { return false };
    tokio::spawn(conn);
    let request = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "l4ctl-ready")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new());
    let Ok(request) = request else { return false };
    sender.send_request(request).await.is_ok_and(|r| r.status() == hyper::StatusCode::OK)
}
