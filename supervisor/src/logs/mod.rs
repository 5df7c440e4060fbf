//! The log pipeline: each worker's stdout and stderr go through pipes to the
//! daemon, which writes the app's out, err and combined files (README, "Logs").
//!
//! - `LogHub` owns one writer thread per app ([`writer`]) and spawns the pipe
//!   readers (tokio tasks) of every instance. Readers and writer are joined by a
//!   bounded channel: backpressure reaches the worker through its pipe, so no
//!   line is dropped and the daemon's memory stays bounded. Only a file that
//!   cannot be written (a full disk) drops lines, counted (`dropped_bytes`).
//! - [`sink`] is one file and its buffer, and what a failed write (a full disk) does.
//! - [`rotate`] names rotated files and compresses and prunes them off the write path.
//! - [`format`] is how a line looks on disk.
//! - [`tail`] reads the newest lines back, bounded; [`follow`] follows a file
//!   across rotations for `l4ctl logs -f`.
//! - [`tap`] is what the stderr reader also feeds: the crash tail and panic lines.

pub mod follow;
pub mod format;
pub mod rotate;
mod sink;
pub mod tail;
mod tap;
mod writer;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

pub use format::Stream;
pub use writer::{LogMsg, LogStats};

use crate::config::LogSpec;
use crate::crash::Tail;
use tap::ErrTap;

/// Chunks queued between an app's pipe readers and its writer (each up to `READ_SIZE`):
/// with `READ_SIZE` this bounds the bytes in flight per app to 2 MiB.
const CHANNEL: usize = 8;
/// Bytes read from a pipe at a time.
const READ_SIZE: usize = 256 << 10;
/// Pipe buffer requested for each worker pipe (fewer wake-ups under a flood).
const PIPE_SIZE: i32 = 1 << 20;

#[derive(Debug)]
struct AppLog {
    tx: mpsc::Sender<LogMsg>,
    stats: Arc<LogStats>,
    spec: LogSpec,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub use crate::wire::types::LogCounters;

/// A structured panic line seen on a worker's stderr: (app, instance, line).
pub type PanicLine = (String, u32, String);

/// Every app's writer, and the readers feeding them.

#[derive(Debug)]
pub struct LogHub {
    apps: HashMap<String, AppLog>,
    /// Where structured panic lines (`{"event":"panic",...}`) seen on stderr go.
    pub panics: Option<mpsc::UnboundedSender<PanicLine>>,
    maint: rotate::Maint,
    readers: tokio::task::JoinSet<()>,
    /// Pipes attached so far (each gets the next number as its id).
    pipes: u64,
}

impl Default for LogHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHub {
    pub fn new() -> LogHub {
        LogHub {
            apps: HashMap::new(),
            panics: None,
            maint: rotate::Maint::start(),
            readers: tokio::task::JoinSet::new(),
            pipes: 0,
        }
    }

    /// A hub with no writers and no maintenance thread (what is left after `close`).
    pub fn closed() -> LogHub {
        LogHub {
            apps: HashMap::new(),
            panics: None,
            maint: rotate::Maint::disconnected(),
            readers: tokio::task::JoinSet::new(),
            pipes: 0,
        }
    }

    /// Make sure `app` has a writer with `spec` (a changed spec is applied in place).
    pub fn ensure(&mut self, app: &str, spec: &LogSpec) {
        if let Some(existing) = self.apps.get_mut(app) {
            if existing.spec != *spec {
                existing.spec = spec.clone();
                // Sent in order behind queued chunks, waiting if the queue is full (the
                // normal state under a flood): a dropped reconfigure would leave new
                // instances without files.
                let (tx, msg) = (existing.tx.clone(), LogMsg::Reconfigure(Box::new(spec.clone())));
                tokio::spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
            return;
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stats = Arc::new(LogStats::default());
        let (name, spec_for_thread, stats_for_thread, maint) =
            (app.to_owned(), spec.clone(), stats.clone(), self.maint.clone());
        // Files are opened in the writer's own thread: opening a FIFO or a slow disk
        // must never stall the daemon's thread.
        let thread = std::thread::Builder::new()
            .name(format!("l4-log-{app}"))
            .spawn(move || writer::Writer::new(name, spec_for_thread, stats_for_thread, maint).run(rx));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(app, cause = %e, "cannot start the log writer");
                None
            }
        };
        self.apps.insert(app.to_owned(), AppLog { tx, stats, spec: spec.clone(), thread });
    }

    /// Start reading a new process's pipes into `app`'s writer; the returned tail
    /// keeps the end of its stderr (for crash reports).
    pub fn attach(&mut self, app: &str, instance: u32, stdout: OwnedFd, stderr: OwnedFd) -> Arc<Tail> {
        let tail = Arc::new(Tail::default());
        let Some(log) = self.apps.get(app) else { return tail };
        for (fd, stream) in [(stdout, Stream::Out), (stderr, Stream::Err)] {
            let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(pipe) => {
                    self.pipes += 1;
                    let err = (stream == Stream::Err).then(|| ErrTap::new(tail.clone(), self.panics.clone(), app));
                    self.readers.spawn(read_pipe(pipe, log.tx.clone(), self.pipes, instance, stream, err));
                }
                Err(e) => tracing::error!(app, instance, cause = %e, "cannot read the worker's pipe"),
            }
        }
        // Finished readers are collected here, so the set does not grow.
        while self.readers.try_join_next().is_some() {}
        tail
    }

    pub fn counters(&self, app: &str) -> LogCounters {
        self.apps.get(app).map_or_else(LogCounters::default, |l| LogCounters {
            lines: l.stats.lines.load(Ordering::Relaxed),
            bytes: l.stats.bytes.load(Ordering::Relaxed),
            rotations: l.stats.rotations.load(Ordering::Relaxed),
            cut_lines: l.stats.cut_lines.load(Ordering::Relaxed),
            dropped_bytes: l.stats.dropped_bytes.load(Ordering::Relaxed),
        })
    }

    /// Senders to ask every writer (or one app's) to reopen or truncate; the caller awaits the replies.
    pub fn command(
        &self,
        app: Option<&str>,
        make: fn(oneshot::Sender<()>) -> LogMsg,
    ) -> Vec<(mpsc::Sender<LogMsg>, LogMsg, oneshot::Receiver<()>)> {
        self.apps
            .iter()
            .filter(|(name, _)| app.is_none_or(|a| a == name.as_str()))
            .map(|(_, l)| {
                let (done, wait) = oneshot::channel();
                (l.tx.clone(), make(done), wait)
            })
            .collect()
    }

    /// Forget `app`'s writer: it finishes once the readers of its last processes end.
    pub fn remove(&mut self, app: &str) {
        self.apps.remove(app);
    }

    /// Flush everything at daemon exit: wait for the readers (every app is stopped, so
    /// their pipes are closing), then for the writers to drain.
    pub async fn close(mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::timeout_at(deadline, self.readers.join_next()).await.is_ok_and(|r| r.is_some()) {}
        self.readers.abort_all();
        let threads: Vec<_> = self.apps.drain().filter_map(|(_, mut l)| l.thread.take()).collect();
        let joined = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())));
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), joined).await;
    }
}

/// Read one pipe until EOF, in chunks, into the writer's bounded channel.
async fn read_pipe(
    pipe: tokio::net::unix::pipe::Receiver,
    tx: mpsc::Sender<LogMsg>,
    id: u64,
    instance: u32,
    stream: Stream,
    mut err: Option<ErrTap>,
) {
    // The buffer is sized to what the pipe holds (FIONREAD) once it is readable: an idle
    // worker costs no 256 KiB buffer, a flood still reads in READ_SIZE chunks, and the
    // end of a pipe is a small read.
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        let mut data = Vec::with_capacity(pending(&pipe).clamp(64, READ_SIZE));
        match pipe.try_read_buf(&mut data) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(err) = &mut err {
                    err.feed(instance, &data);
                }
                let msg = LogMsg::Chunk { pipe: id, instance, stream, at: SystemTime::now(), data };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
            Err(_) => break,
        }
    }
    if let Some(err) = &err {
        err.tail.close();
    }
    let _ = tx.send(LogMsg::Eof { pipe: id, instance, stream, at: SystemTime::now() }).await;
}

/// Bytes waiting in a pipe (0 when unknown).
fn pending(pipe: &tokio::net::unix::pipe::Receiver) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to a valid local.
    let rc = unsafe { nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    if rc == 0 { usize::try_from(n).unwrap_or(0) } else { 0 }
}
