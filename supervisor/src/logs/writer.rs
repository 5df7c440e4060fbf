//! The one writer of an app's log files: a thread that owns every file of the
//! app, reassembles whole lines from pipe chunks, prefixes them, writes them in
//! large batches, and rotates (rename, then reopen) between two lines.
//!
//! It is fed by a bounded channel. The pipe readers wait when it is full, so a
//! worker that writes faster than the disk blocks in `write` and nothing is
//! dropped; the daemon's memory stays bounded by the channel's capacity. When
//! writing fails (a full disk) the files hold what they may and the rest is
//! dropped, counted ([`super::sink`]); once a file takes nothing more, the app's
//! output is read once a second only ([`outage`]): a full disk slows a flooding
//! app but never stops it, and costs the daemon next to nothing.
//!
//! [`lines`] turns chunks into whole lines; [`outage`] waits and reports while
//! writing fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::format::{Stamp, Stream};
use super::rotate::{Job, Maint, rotated_name};
use super::sink::{FLUSH_AT, Sink};
use crate::config::{LogSpec, RotateInterval};
use lines::Partial;
use outage::Outage;

/// Messages handled before buffers are written even if more are queued.
const BATCH: usize = 64;

/// What the pipe readers and the daemon send to a writer.
#[derive(Debug)]
pub enum LogMsg {
    /// Bytes read from one pipe; `pipe` is unique per pipe, so an unterminated line
    /// of a run that ended is never joined to the first line of the next run.
    Chunk {
        pipe: u64,
        instance: u32,
        stream: Stream,
        at: SystemTime,
        data: Vec<u8>,
    },
    /// The pipe closed: an unterminated last line is written as it is.
    Eof {
        pipe: u64,
        instance: u32,
        stream: Stream,
        at: SystemTime,
    },
    /// Reopen every file (after an outside logrotate moved them).
    Reopen(oneshot::Sender<()>),
    /// Empty the current files (`l4ctl flush`).
    Truncate(oneshot::Sender<()>),
    Reconfigure(Box<LogSpec>),
    /// The unfinished line a previous daemon had read of pipe `pipe` (a handover).
    Carry {
        pipe: u64,
        data: Vec<u8>,
        discarding: bool,
    },
    /// Write every whole line out and end; the reply is each pipe's unfinished line
    /// `(pipe, bytes, discarding)`, for the daemon's next program.
    HandOver(oneshot::Sender<Unfinished>),
}

/// Each pipe's unfinished line at a handover: `(pipe, bytes, discarding)`.
pub type Unfinished = Vec<(u64, Vec<u8>, bool)>;

/// Counters shown by `describe`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    pub rotations: AtomicU64,
    pub cut_lines: AtomicU64,
    /// Bytes of lines (as they would be in the file) that could not be written and
    /// did not fit in what a failing file holds.
    pub dropped_bytes: AtomicU64,
}

pub(super) struct Writer {
    app: String,
    spec: LogSpec,
    stamp: Stamp,
    sinks: Vec<Sink>,
    /// Unfinished lines by pipe.
    partials: std::collections::HashMap<u64, Partial>,
    /// The pipe of the message being handled.
    pipe: u64,
    stats: Arc<LogStats>,
    maint: Maint,
    last_rotation: String,
    /// Since when some file of the app fails, and the last time the daemon's log said so.
    outage: Option<Outage>,
    /// A handover asked for the unfinished lines: answered once every line is out.
    handing_over: Option<oneshot::Sender<Unfinished>>,
}

pub(super) fn period_of(interval: RotateInterval, at: SystemTime) -> i64 {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match interval {
        RotateInterval::None => 0,
        RotateInterval::Hourly => secs / 3600,
        RotateInterval::Daily => secs / 86_400,
    }
}

impl Writer {
    pub(super) fn new(app: String, spec: LogSpec, stats: Arc<LogStats>, maint: Maint) -> Writer {
        let mut w = Writer {
            app,
            stamp: Stamp::new(spec.date_format.clone()),
            sinks: Vec::new(),
            partials: Default::default(),
            pipe: 0,
            spec,
            stats,
            maint,
            last_rotation: String::new(),
            outage: None,
            handing_over: None,
        };
        w.open_all();
        w.watch(Instant::now());
        w
    }

    fn open_all(&mut self) {
        let lost: u64 = self.sinks.iter_mut().map(Sink::abandon).sum();
        self.stats.dropped_bytes.fetch_add(lost, Ordering::Relaxed);
        let interval = self.spec.interval;
        self.sinks = self
            .spec
            .files
            .iter()
            .flat_map(|f| [f.out.clone(), f.err.clone(), f.combined.clone()])
            .map(|p| Sink::new(p, interval))
            .collect();
    }

    /// Run until every sender is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<LogMsg>) {
        while let Some(msg) = self.next(&mut rx) {
            match msg {
                Some(msg) => self.handle(msg),
                // A retry is due: try it before taking the batch, so that lines arriving
                // as space returns are written rather than dropped by a file still marked full.
                None => self.write_all(),
            }
            // After a retry tick too: when paced, this batch is what the app gets through.
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.write_all();
            if self.handing_over.is_some() {
                break;
            }
        }
        // Last attempt, whatever the backoff: the daemon is exiting or the app is gone.
        let now = Instant::now();
        for s in &mut self.sinks {
            s.retry_now();
            s.write_out(now);
        }
        let lost: u64 = self.sinks.iter_mut().map(Sink::abandon).sum();
        self.stats.dropped_bytes.fetch_add(lost, Ordering::Relaxed);
        if let Some(reply) = self.handing_over.take() {
            let left = self.partials.drain().map(|(pipe, p)| (pipe, p.bytes, p.discarding)).collect();
            let _ = reply.send(left);
        }
    }

    fn write_all(&mut self) {
        let now = Instant::now();
        for s in &mut self.sinks {
            s.write_out(now);
        }
        self.watch(now);
    }

    fn handle(&mut self, msg: LogMsg) {
        match msg {
            LogMsg::Chunk { pipe, instance, stream, at, data } => {
                self.pipe = pipe;
                self.chunk(instance, stream, at, &data, false);
            }
            LogMsg::Eof { pipe, instance, stream, at } => {
                self.pipe = pipe;
                self.chunk(instance, stream, at, &[], true);
                self.partials.remove(&pipe);
            }
            LogMsg::Reopen(done) => {
                // Also the operator's way to retry at once after freeing space.
                let now = Instant::now();
                for s in &mut self.sinks {
                    s.write_out(now);
                    s.reopen(now);
                }
                self.write_all();
                let _ = done.send(());
            }
            LogMsg::Truncate(done) => {
                // A new, empty file rather than truncating in place: a follower notices
                // the new inode even when the file refills past its old offset.
                self.write_all();
                let now = Instant::now();
                for s in self.sinks.iter_mut().filter(|s| s.regular) {
                    let _ = crate::nofollow::remove_regular(&s.path);
                    s.open(now);
                }
                let _ = done.send(());
            }
            LogMsg::Carry { pipe, data, discarding } => {
                self.partials.insert(pipe, Partial { bytes: data, discarding });
            }
            LogMsg::HandOver(reply) => self.handing_over = Some(reply),
            LogMsg::Reconfigure(spec) => {
                self.write_all();
                self.stamp = Stamp::new(spec.date_format.clone());
                self.spec = *spec;
                self.open_all();
            }
        }
    }

    /// Index of the sink trio of `instance`, if it has files.
    fn trio(&self, instance: u32) -> Option<usize> {
        self.spec.files.iter().position(|f| f.instance.is_none() || f.instance == Some(instance)).map(|i| i * 3)
    }

    /// The unfinished line of the pipe being handled.
    fn partial(&mut self) -> &mut Partial {
        self.partials.entry(self.pipe).or_default()
    }

    /// Append one whole line to a sink, rotating first when it would pass max_size;
    /// false when a failing file dropped it.
    fn append(&mut self, idx: usize, parts: &[&[u8]], at: SystemTime) -> bool {
        let sink = &self.sinks[idx];
        if sink.discard {
            return true;
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let used = sink.size + sink.buf.len() as u64;
        // A failing file is not rotated: held bytes are not in it, and rotating an
        // unwritable file only makes empty files for retention to count.
        if sink.regular && !sink.failing() && used > 0 && used + len as u64 > self.spec.max_size {
            self.rotate(idx, at);
        }
        let sink = &mut self.sinks[idx];
        let kept = sink.push(parts, len);
        // A failing file is retried by the run loop once its backoff ends, not per line.
        if sink.buf.len() >= FLUSH_AT && !sink.failing() {
            sink.write_out(Instant::now());
        }
        kept
    }

    /// Rename the file aside and reopen its path: between two lines, nothing copied.
    /// False when the file cannot be written (then it is not rotated).
    fn rotate(&mut self, idx: usize, at: SystemTime) -> bool {
        let sink = &mut self.sinks[idx];
        sink.write_out(Instant::now());
        if sink.failing() {
            return false;
        }
        if !sink.regular {
            sink.size = 0;
            return true;
        }
        let target = rotated_name(&sink.path, at, &mut self.last_rotation);
        if let Err(e) = std::fs::rename(&sink.path, &target) {
            // Counted as rotated, so the next attempt comes after another max_size,
            // not on every line.
            tracing::error!(file = %sink.path.display(), cause = %e, "log rotation failed; writing on");
            sink.size = 0;
            return true;
        }
        sink.open(Instant::now());
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        let (current, retain) = (sink.path.clone(), self.spec.retain);
        if self.spec.compress {
            self.maint.submit(Job::Compress { rotated: target, current, retain });
        } else {
            self.maint.submit(Job::Retain { current, retain });
        }
        true
    }
}

#[path = "lines.rs"]
mod lines;
#[path = "outage.rs"]
mod outage;
#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
