//! One worker pipe's reader: a task that reads the pipe in chunks into its app's
//! writer until the pipe ends, or until the daemon hands over to its next program
//! (`l4ctl update`). Then it gives the pipe back, open, between two chunks: every
//! byte it read is with the writer, every byte it did not is still in the pipe.

use std::os::fd::OwnedFd;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};

use super::format::Stream;
use super::tap::ErrTap;
use super::{LogMsg, READ_SIZE};

/// Which pipe a reader reads: the same in the writer's messages and in a handover.
#[derive(Debug, Clone)]
pub(super) struct PipeId {
    pub id: u64,
    pub app: String,
    pub instance: u32,
    pub stream: Stream,
    /// The run (its `L4_TAG`) the pipe came from.
    pub run: String,
}

/// A pipe given back by its reader, open.
#[derive(Debug)]
pub(super) struct Stopped {
    pub pipe: PipeId,
    pub fd: OwnedFd,
}

/// Read one pipe until EOF (`None`) or until `stop` turns true (the pipe, back).
/// `carried`: the unfinished line a previous daemon had read of it, given to the
/// writer before anything new.
pub(super) async fn read_pipe(
    pipe: tokio::net::unix::pipe::Receiver,
    tx: mpsc::Sender<LogMsg>,
    id: PipeId,
    mut err: Option<ErrTap>,
    carried: Option<(Vec<u8>, bool)>,
    mut stop: watch::Receiver<bool>,
) -> Option<Stopped> {
    if let Some((data, discarding)) = carried
        && tx.send(LogMsg::Carry { pipe: id.id, data, discarding }).await.is_err()
    {
        return None;
    }
    // The buffer is sized to what the pipe holds (FIONREAD) once it is readable: an idle
    // worker costs no 256 KiB buffer, a flood still reads in READ_SIZE chunks, and the
    // end of a pipe is a small read.
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                return match pipe.into_nonblocking_fd() {
                    Ok(fd) => Some(Stopped { pipe: id, fd }),
                    Err(e) => {
                        tracing::error!(app = %id.app, instance = id.instance, cause = %e, "cannot take the pipe back");
                        None
                    }
                };
            }
            ready = pipe.readable() => if ready.is_err() { break },
        }
        let mut data = Vec::with_capacity(pending(&pipe).clamp(64, READ_SIZE));
        match pipe.try_read_buf(&mut data) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(err) = &mut err {
                    err.feed(id.instance, &data);
                }
                let (instance, stream) = (id.instance, id.stream);
                let msg = LogMsg::Chunk { pipe: id.id, instance, stream, at: SystemTime::now(), data };
                if tx.send(msg).await.is_err() {
                    return None;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
            Err(_) => break,
        }
    }
    if let Some(err) = &err {
        err.tail.close();
    }
    let (instance, stream) = (id.instance, id.stream);
    let _ = tx.send(LogMsg::Eof { pipe: id.id, instance, stream, at: SystemTime::now() }).await;
    None
}

/// Bytes waiting in a pipe (0 when unknown).
fn pending(pipe: &tokio::net::unix::pipe::Receiver) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to a valid local.
    let rc = unsafe { nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    if rc == 0 { usize::try_from(n).unwrap_or(0) } else { 0 }
}
