//! The one writer of an app's log files: a thread that owns every file of the
//! app, reassembles whole lines from pipe chunks, prefixes them, writes them in
//! large batches, and rotates (rename, then reopen) between two lines.
//!
//! It is fed by a bounded channel. The pipe readers wait when it is full, so a
//! worker that writes faster than the disk blocks in `write` and nothing is
//! dropped; the daemon's memory stays bounded by the channel's capacity. When
//! writing fails (a full disk) the writer keeps reading and drops, counted, what
//! its files cannot hold ([`super::sink`]): a full disk must not stop the apps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::format::{Stamp, Stream, is_json, json_line, prefixes};
use super::rotate::{Job, Maint, rotated_name};
use super::sink::{BACKOFF, FLUSH_AT, HELD, Sink};
use crate::config::{LogSpec, RotateInterval};

/// Messages handled before buffers are written even if more are queued.
const BATCH: usize = 64;
const CUT_MARKER: &[u8] = b" [l4ctl: line cut at max_line]";
/// While writes fail, the daemon's log says so once when it starts, then once per this.
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(60);

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
}

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

/// Where the lines of one chunk go and how they are prefixed.
#[derive(Debug)]
struct LineCtx {
    /// Sink of the chunk's stream, and the combined sink.
    own: usize,
    comb: usize,
    p_own: Vec<u8>,
    p_comb: Vec<u8>,
    ts: String,
    instance: u32,
    stream: Stream,
    at: SystemTime,
}

/// Per pipe: the start of a line whose end has not arrived.
#[derive(Debug, Default)]
struct Partial {
    bytes: Vec<u8>,
    /// The line passed max_line: drop bytes until its newline.
    discarding: bool,
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
    /// A timer for waiting on the channel with a deadline, made the first time a
    /// failing file holds bytes to retry (an app whose disk never fills has none).
    timer: Option<tokio::runtime::Runtime>,
}

/// `d` in whole seconds, for the log.
fn secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    reported: Instant,
    dropped_before: u64,
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
            timer: None,
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
            if let Some(msg) = msg {
                self.handle(msg);
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok(msg) => self.handle(msg),
                        Err(_) => break,
                    }
                }
            }
            self.write_all();
        }
        // Last attempt, whatever the backoff: the daemon is exiting or the app is gone.
        let now = Instant::now();
        for s in &mut self.sinks {
            s.retry_now();
            s.write_out(now);
        }
        let lost: u64 = self.sinks.iter_mut().map(Sink::abandon).sum();
        self.stats.dropped_bytes.fetch_add(lost, Ordering::Relaxed);
    }

    /// The next message (`Some(None)` when a failing file's retry is due first), or
    /// `None` when every sender is gone.
    fn next(&mut self, rx: &mut mpsc::Receiver<LogMsg>) -> Option<Option<LogMsg>> {
        let Some(due) = self.sinks.iter().filter_map(Sink::retry_due).min() else {
            return rx.blocking_recv().map(Some);
        };
        let timer = match &mut self.timer {
            Some(t) => t,
            None => match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => self.timer.insert(rt),
                // Without a timer the retry waits for the app's next line.
                Err(_) => return rx.blocking_recv().map(Some),
            },
        };
        // The timeout is made inside `block_on`: a tokio timer needs its runtime's context.
        match timer.block_on(async { tokio::time::timeout_at(due.into(), rx.recv()).await }) {
            Ok(msg) => msg.map(Some),
            Err(_) => Some(None),
        }
    }

    fn write_all(&mut self) {
        let now = Instant::now();
        for s in &mut self.sinks {
            s.write_out(now);
        }
        self.watch(now);
    }

    /// Say in the daemon's log when writing starts failing, once a minute while it
    /// lasts, and when it works again: never once per write.
    fn watch(&mut self, now: Instant) {
        let dropped = self.stats.dropped_bytes.load(Ordering::Relaxed);
        let failing = self.sinks.iter().find(|s| s.failing());
        match (failing, &mut self.outage) {
            (Some(s), None) => {
                let (file, cause) = (s.path.display(), s.cause.as_deref().unwrap_or("?"));
                let (held_limit, retry_every) = (HELD, humantime::format_duration(BACKOFF));
                tracing::error!(app = %self.app, file = %file, cause, held_limit, %retry_every, "cannot write log file; holding what fits, dropping lines beyond it, retrying");
                self.outage = Some(Outage { since: now, reported: now, dropped_before: dropped });
            }
            (Some(s), Some(o)) if now.duration_since(o.reported) >= OUTAGE_REPORT_EVERY => {
                let (file, cause) = (s.path.display(), s.cause.as_deref().unwrap_or("?"));
                let (failing_for, dropped_bytes) =
                    (humantime::format_duration(secs(now - o.since)), dropped - o.dropped_before);
                tracing::error!(app = %self.app, file = %file, cause, %failing_for, dropped_bytes, "log writes still failing");
                o.reported = now;
            }
            (None, Some(o)) => {
                let (failed_for, dropped_bytes) =
                    (humantime::format_duration(secs(now - o.since)), dropped - o.dropped_before);
                tracing::info!(app = %self.app, %failed_for, dropped_bytes, "log writes work again");
                self.outage = None;
            }
            _ => {}
        }
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
                    s.open(now);
                    s.size = s.file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
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
                    s.size = 0;
                }
                let _ = done.send(());
            }
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

    fn chunk(&mut self, instance: u32, stream: Stream, at: SystemTime, data: &[u8], eof: bool) {
        let Some(trio) = self.trio(instance) else { return };
        let ts = self.stamp.text(at).to_owned();
        let (p_own, p_comb) = prefixes(&self.spec, &ts, instance, stream);
        let ctx = LineCtx { own: trio + stream as usize, comb: trio + 2, p_own, p_comb, ts, instance, stream, at };
        let period = period_of(self.spec.interval, at);
        for idx in [ctx.own, ctx.comb] {
            let sink = &self.sinks[idx];
            if self.spec.interval != RotateInterval::None && sink.regular && sink.period != period {
                // A file that could not be rotated keeps its period: tried again next line.
                if sink.size + sink.buf.len() as u64 > 0 && !self.rotate(idx, at) {
                    continue;
                }
                self.sinks[idx].period = period;
            }
        }
        let mut carried = std::mem::take(self.partial());
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            self.finish_line(&ctx, &mut carried, &rest[..nl]);
            rest = &rest[nl + 1..];
        }
        if !eof {
            self.carry(&ctx, carried, rest);
        } else if !rest.is_empty() || !carried.bytes.is_empty() {
            // The pipe closed on an unterminated line: it is written as it is.
            self.finish_line(&ctx, &mut carried, rest);
        }
    }

    /// Write the line made of what an earlier chunk left (`carried`) and `piece`, cut
    /// at `max_line`; a line already cut by `carry` is not written twice.
    fn finish_line(&mut self, ctx: &LineCtx, carried: &mut Partial, piece: &[u8]) {
        let max_line = self.spec.max_line;
        let done = std::mem::take(carried);
        if done.discarding {
            return;
        }
        let cut = done.bytes.len() + piece.len() > max_line;
        if done.bytes.is_empty() {
            self.emit(ctx, &piece[..piece.len().min(max_line)], cut);
        } else {
            let mut line = done.bytes;
            line.extend_from_slice(&piece[..piece.len().min(max_line.saturating_sub(line.len()))]);
            self.emit(ctx, &line, cut);
        }
    }

    /// Keep an unterminated tail for the next chunk; past max_line, write it cut and drop the rest.
    fn carry(&mut self, ctx: &LineCtx, mut p: Partial, tail: &[u8]) {
        if !p.discarding {
            p.bytes.extend_from_slice(tail);
            if p.bytes.len() > self.spec.max_line {
                p.bytes.truncate(self.spec.max_line);
                self.emit(ctx, &p.bytes, true);
                p = Partial { bytes: Vec::new(), discarding: true };
            }
        }
        *self.partial() = p;
    }

    fn emit(&mut self, ctx: &LineCtx, line: &[u8], cut: bool) {
        self.stats.lines.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        if cut {
            self.stats.cut_lines.fetch_add(1, Ordering::Relaxed);
        }
        if is_json(&self.spec) {
            let mut obj = Vec::with_capacity(line.len() + 96);
            let mut text = line.to_vec();
            if cut {
                text.extend_from_slice(CUT_MARKER);
            }
            json_line(&mut obj, &ctx.ts, &self.app, ctx.instance, ctx.stream, &text);
            self.append(ctx.own, &[&obj], ctx.at);
            self.append(ctx.comb, &[&obj], ctx.at);
        } else {
            let marker: &[u8] = if cut { CUT_MARKER } else { b"" };
            self.append(ctx.own, &[&ctx.p_own, line, marker, b"\n"], ctx.at);
            self.append(ctx.comb, &[&ctx.p_comb, line, marker, b"\n"], ctx.at);
        }
    }

    /// Append one whole line to a sink, rotating first when it would pass max_size.
    fn append(&mut self, idx: usize, parts: &[&[u8]], at: SystemTime) {
        let sink = &self.sinks[idx];
        if sink.discard {
            return;
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let used = sink.size + sink.buf.len() as u64;
        // A failing file is not rotated: held bytes are not in it, and rotating an
        // unwritable file only makes empty files for retention to count.
        if sink.regular && !sink.failing() && used > 0 && used + len as u64 > self.spec.max_size {
            self.rotate(idx, at);
        }
        let sink = &mut self.sinks[idx];
        let dropped = sink.push(parts, len);
        if dropped > 0 {
            self.stats.dropped_bytes.fetch_add(dropped, Ordering::Relaxed);
        }
        // A failing file is retried by the run loop once its backoff ends, not per line.
        if sink.buf.len() >= FLUSH_AT && !sink.failing() {
            sink.write_out(Instant::now());
        }
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
        sink.size = 0;
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

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
