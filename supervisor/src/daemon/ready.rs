//! Signs of readiness from outside the actor: the daemon's `NOTIFY_SOCKET`
//! (sd_notify datagrams; the sender is known from its kernel credentials, not
//! from anything it writes), Node's IPC channel (PM2's `process.send('ready')`;
//! one socket pair per run, so the sender is the run it was made for) and the
//! `http:/path` and `tcp` probes. Each turns
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

/// Bind the notify socket (or go on with the one a previous program of this daemon
/// handed over, `inherited`: what was sent meanwhile waits in it) and forward every
/// `READY=1` to the actor. Also returns a copy of the socket, for a handover.
pub(super) fn listen_notify(
    home: &Path,
    tx: mpsc::Sender<Msg>,
    inherited: Option<std::os::fd::OwnedFd>,
) -> std::io::Result<(PathBuf, std::os::fd::OwnedFd)> {
    let path = notify_path(home);
    let socket = match inherited {
        Some(fd) => std::os::unix::net::UnixDatagram::from(fd),
        None => {
            let _ = std::fs::remove_file(&path);
            std::os::unix::net::UnixDatagram::bind(&path)?
        }
    };
    setsockopt(&socket, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
    socket.set_nonblocking(true)?;
    let copy = std::os::fd::AsFd::as_fd(&socket).try_clone_to_owned()?;
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
    Ok((path, copy))
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

/// The longest Node IPC message read; longer ones are skipped whole.
pub const MAX_IPC_LINE: usize = 64 << 10;

/// Whether `script` is Node.js itself (`node`, `nodejs`, or a path to one), the
/// only program given a Node IPC channel.
pub(super) fn runs_node(script: &str) -> bool {
    matches!(std::path::Path::new(script).file_name().and_then(|n| n.to_str()), Some("node" | "nodejs"))
}

/// A Node IPC channel for one run: the child's end (no lower than fd 10, so
/// moving the listening socket to fd 3 cannot clobber it; close-on-exec until
/// the spawn clears it) and ours.
pub(super) fn node_channel() -> std::io::Result<(std::os::fd::OwnedFd, std::os::unix::net::UnixStream)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let high = nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(std::io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let high = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) };
    ours.set_nonblocking(true)?;
    Ok((high, ours))
}

/// Read what run `pid` sends on its Node IPC channel until it closes; each
/// `"ready"` tells the actor.
pub(super) fn listen_node_ipc(ours: std::os::unix::net::UnixStream, pid: u32, tx: mpsc::Sender<Msg>) {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let Ok(mut stream) = tokio::net::UnixStream::from_std(ours) else { return };
        let mut lines = IpcLines::default();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for _ in 0..lines.feed(&buf[..n]) {
                if tx.send(Msg::Ready { pid: pid as i32 }).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Node's IPC messages (JSON, one a line), split and bounded: a line past
/// [`MAX_IPC_LINE`] is skipped whole; `"ready"` is the only one that counts.
#[derive(Debug, Default)]
pub(super) struct IpcLines {
    line: Vec<u8>,
    skipping: bool,
}

impl IpcLines {
    /// Take `bytes`; how many complete `"ready"` messages they ended.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut ready = 0;
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < MAX_IPC_LINE {
                    self.line.push(b);
                } else {
                    self.skipping = true;
                }
                continue;
            }
            ready += usize::from(!self.skipping && self.line.trim_ascii() == b"\"ready\"");
            self.line.clear();
            self.skipping = false;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::{IpcLines, MAX_IPC_LINE};

    fn padded(len: usize) -> Vec<u8> {
        let mut line = vec![b' '; len - 7];
        line.extend_from_slice(b"\"ready\"\n");
        line
    }

    #[test]
    fn ready_counts_up_to_the_line_limit_and_a_longer_line_is_skipped_whole() {
        let mut lines = IpcLines::default();
        assert_eq!(lines.feed(b"\"ready\"\n{\"cmd\":\"x\"}\n\"rea"), 1);
        assert_eq!(lines.feed(b"dy\"\n"), 1, "split across reads");
        assert_eq!(lines.feed(&padded(MAX_IPC_LINE)), 1, "at the limit");
        assert_eq!(lines.feed(&padded(MAX_IPC_LINE + 1)), 0, "past it");
        assert_eq!(lines.feed(b"\"ready\"\n"), 1, "the next line counts again");
    }
}
