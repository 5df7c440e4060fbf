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
mod reader;
pub mod rotate;
mod sink;
pub mod tail;
mod tap;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use format::Stream;
pub use writer::{LogMsg, LogStats};

use crate::config::LogSpec;
use crate::crash::Tail;
use reader::{PipeId, Stopped, read_pipe};
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
    readers: tokio::task::JoinSet<Option<Stopped>>,
    /// Pipes attached so far (each gets the next number as its id).
    pipes: u64,
    /// Turned true to take every pipe back from its reader (a handover).
    stop: watch::Sender<bool>,
}

/// A worker's pipe handed to the daemon's next program, open, with the unfinished
/// line read of it so far.
#[derive(Debug)]
pub struct HeldPipe {
    pub app: String,
    pub instance: u32,
    pub stream: Stream,
    /// The run (its `L4_TAG`) the pipe came from.
    pub run: String,
    pub fd: OwnedFd,
    pub partial: Vec<u8>,
    /// The unfinished line passed `max_line`: the rest of it is dropped.
    pub discarding: bool,
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
            stop: watch::Sender::new(false),
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
            stop: watch::Sender::new(false),
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
    /// keeps the end of its stderr (for crash reports). `run` is its `L4_TAG`.
    pub fn attach(&mut self, app: &str, instance: u32, run: &str, stdout: OwnedFd, stderr: OwnedFd) -> Arc<Tail> {
        let tail = Arc::new(Tail::default());
        for (fd, stream) in [(stdout, Stream::Out), (stderr, Stream::Err)] {
            self.read(app, instance, run, stream, fd, Some(tail.clone()), None);
        }
        tail
    }

    /// Go on reading a pipe a previous daemon handed over (its unfinished line first);
    /// `tail`: the run's stderr tail, for a stderr pipe.
    pub fn adopt(&mut self, pipe: HeldPipe, tail: Option<Arc<Tail>>) {
        let HeldPipe { app, instance, stream, run, fd, partial, discarding } = pipe;
        let carried = (!partial.is_empty() || discarding).then_some((partial, discarding));
        self.read(&app, instance, &run, stream, fd, tail, carried);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        app: &str,
        instance: u32,
        run: &str,
        stream: Stream,
        fd: OwnedFd,
        tail: Option<Arc<Tail>>,
        carried: Option<(Vec<u8>, bool)>,
    ) {
        let Some(log) = self.apps.get(app) else { return };
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => {
                self.pipes += 1;
                let err = tail.filter(|_| stream == Stream::Err).map(|t| ErrTap::new(t, self.panics.clone(), app));
                let id = PipeId { id: self.pipes, app: app.to_owned(), instance, stream, run: run.to_owned() };
                self.readers.spawn(read_pipe(pipe, log.tx.clone(), id, err, carried, self.stop.subscribe()));
            }
            Err(e) => tracing::error!(app, instance, cause = %e, "cannot read the worker's pipe"),
        }
        // Finished readers are collected here, so the set does not grow.
        while self.readers.try_join_next().is_some() {}
    }

    /// Take every open pipe back from its reader and end the writers once they wrote
    /// every whole line (the daemon is about to exec its next program). What each
    /// pipe's unfinished line holds comes back with it, and each app's counters.
    /// A reader or writer that does not finish within `limit` is left behind, logged.
    pub async fn hand_over(&mut self, limit: Duration) -> (Vec<HeldPipe>, BTreeMap<String, LogCounters>) {
        let deadline = tokio::time::Instant::now() + limit;
        self.stop.send_replace(true);
        let mut stopped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.readers.join_next()).await {
                Ok(Some(Ok(Some(s)))) => stopped.push(s),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::error!(left = self.readers.len(), "pipe readers did not stop in time");
                    break;
                }
            }
        }
        let mut partials: HashMap<u64, (Vec<u8>, bool)> = HashMap::new();
        let mut counters = BTreeMap::new();
        for (name, log) in self.apps.drain() {
            let (reply, done) = oneshot::channel();
            let sent = tokio::time::timeout_at(deadline, log.tx.send(LogMsg::HandOver(reply))).await;
            match (sent, tokio::time::timeout_at(deadline, done).await) {
                (Ok(Ok(())), Ok(Ok(left))) => partials.extend(left.into_iter().map(|(p, b, d)| (p, (b, d)))),
                _ => tracing::error!(app = %name, "the log writer did not finish in time"),
            }
            counters.insert(name, counters_of(&log.stats));
        }
        let held = stopped
            .into_iter()
            .map(|Stopped { pipe, fd }| {
                let (partial, discarding) = partials.remove(&pipe.id).unwrap_or_default();
                HeldPipe {
                    app: pipe.app,
                    instance: pipe.instance,
                    stream: pipe.stream,
                    run: pipe.run,
                    fd,
                    partial,
                    discarding,
                }
            })
            .collect();
        (held, counters)
    }

    /// Counters a previous daemon handed over for `app` (before any line of this one).
    pub fn restore_counters(&self, app: &str, c: &LogCounters) {
        if let Some(l) = self.apps.get(app) {
            l.stats.lines.store(c.lines, Ordering::Relaxed);
            l.stats.bytes.store(c.bytes, Ordering::Relaxed);
            l.stats.rotations.store(c.rotations, Ordering::Relaxed);
            l.stats.cut_lines.store(c.cut_lines, Ordering::Relaxed);
            l.stats.dropped_bytes.store(c.dropped_bytes, Ordering::Relaxed);
        }
    }

    pub fn counters(&self, app: &str) -> LogCounters {
        self.apps.get(app).map_or_else(LogCounters::default, |l| counters_of(&l.stats))
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

fn counters_of(stats: &LogStats) -> LogCounters {
    LogCounters {
        lines: stats.lines.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        rotations: stats.rotations.load(Ordering::Relaxed),
        cut_lines: stats.cut_lines.load(Ordering::Relaxed),
        dropped_bytes: stats.dropped_bytes.load(Ordering::Relaxed),
    }
}
