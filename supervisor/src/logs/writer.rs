//! The one writer of an app's log files: a thread that owns every file of the
//! app, reassembles whole lines from pipe chunks, prefixes them, writes them in
//! large batches, and rotates (rename, then reopen) between two lines.
//!
//! It is fed by a bounded channel. The pipe readers wait when it is full, so a
//! worker that writes faster than the disk blocks in `write` and nothing is
//! dropped; the daemon's memory stays bounded by the channel's capacity.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::format::{Stamp, Stream, is_json, json_line, prefixes};
use super::rotate::{Job, Maint, rotated_name};
use crate::config::{LogSpec, RotateInterval};

/// A buffer is written to its file once it holds this much.
const FLUSH_AT: usize = 1 << 20;
/// Messages handled before buffers are written even if more are queued.
const BATCH: usize = 64;
const CUT_MARKER: &[u8] = b" [l4ctl: line cut at max_line]";

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
}

/// One open file and the bytes waiting for it.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    buf: Vec<u8>,
    /// Hour or day number of the content, for interval rotation.
    period: i64,
    /// A regular file. Anything else (`/dev/null`, a FIFO, a terminal) is written
    /// to but never renamed, removed or measured.
    regular: bool,
    /// `/dev/null`: lines for it are not even formatted.
    discard: bool,
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
}

fn open(path: &Path) -> Option<File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Logs may hold what apps print about users and secrets: not world-readable.
    match OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(nix::libc::O_NONBLOCK).open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(file = %path.display(), cause = %e, "cannot open log file; its lines are dropped until it can");
            None
        }
    }
}

fn period_of(interval: RotateInterval, at: SystemTime) -> i64 {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match interval {
        RotateInterval::None => 0,
        RotateInterval::Hourly => secs / 3600,
        RotateInterval::Daily => secs / 86_400,
    }
}

impl Sink {
    fn new(path: PathBuf, interval: RotateInterval) -> Sink {
        let file = open(&path);
        let meta = file.as_ref().and_then(|f| f.metadata().ok());
        let size = meta.as_ref().map_or(0, |m| m.len());
        let regular = meta.as_ref().is_none_or(|m| m.is_file());
        let discard = path == Path::new("/dev/null");
        let mtime = meta.and_then(|m| m.modified().ok()).unwrap_or_else(SystemTime::now);
        let buf = if discard { Vec::new() } else { Vec::with_capacity(64 << 10) };
        Sink { path, file, size, buf, period: period_of(interval, mtime), regular, discard }
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.file.is_none() {
            self.file = open(&self.path);
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(&self.buf)
        {
            tracing::error!(file = %self.path.display(), cause = %e, "log write failed");
        }
        self.size += self.buf.len() as u64;
        self.buf.clear();
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
        };
        w.open_all();
        w
    }

    fn open_all(&mut self) {
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
        while let Some(msg) = rx.blocking_recv() {
            self.handle(msg);
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.write_all();
        }
        self.write_all();
    }

    fn write_all(&mut self) {
        for s in &mut self.sinks {
            s.write_out();
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
                self.write_all();
                for s in &mut self.sinks {
                    s.file = open(&s.path);
                    s.size = s.file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
                }
                let _ = done.send(());
            }
            LogMsg::Truncate(done) => {
                // A new, empty file rather than truncating in place: a follower notices
                // the new inode even when the file refills past its old offset.
                self.write_all();
                for s in self.sinks.iter_mut().filter(|s| s.regular) {
                    let _ = std::fs::remove_file(&s.path);
                    s.file = open(&s.path);
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
                if sink.size + sink.buf.len() as u64 > 0 {
                    self.rotate(idx, at);
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
        if sink.regular && used > 0 && used + len as u64 > self.spec.max_size {
            self.rotate(idx, at);
        }
        let sink = &mut self.sinks[idx];
        for p in parts {
            sink.buf.extend_from_slice(p);
        }
        if sink.buf.len() >= FLUSH_AT {
            sink.write_out();
        }
    }

    /// Rename the file aside and reopen its path: between two lines, nothing copied.
    fn rotate(&mut self, idx: usize, at: SystemTime) {
        let sink = &mut self.sinks[idx];
        sink.write_out();
        if !sink.regular {
            sink.size = 0;
            return;
        }
        let target = rotated_name(&sink.path, at, &mut self.last_rotation);
        if let Err(e) = std::fs::rename(&sink.path, &target) {
            // Counted as rotated, so the next attempt comes after another max_size,
            // not on every line.
            tracing::error!(file = %sink.path.display(), cause = %e, "log rotation failed; writing on");
            sink.size = 0;
            return;
        }
        sink.file = open(&sink.path);
        sink.size = 0;
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        let (current, retain) = (sink.path.clone(), self.spec.retain);
        if self.spec.compress {
            self.maint.submit(Job::Compress { rotated: target, current, retain });
        } else {
            self.maint.submit(Job::Retain { current, retain });
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
