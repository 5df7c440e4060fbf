//! Lines out of pipe chunks, for the writer: an unfinished line waits for the rest
//! of its pipe's output, a line past `max_line` is cut once with a marker, every
//! whole line is prefixed and appended to its stream's file and the combined file.
//! A chunk neither file can take (a full disk) is dropped whole, uncut.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{Writer, period_of};
use crate::config::RotateInterval;
use crate::logs::format::{Stream, is_json, json_line, prefixes};

pub(super) const CUT_MARKER: &[u8] = b" [l4ctl: line cut at max_line]";

/// Where the lines of one chunk go and how they are prefixed.
#[derive(Debug)]
pub(super) struct LineCtx {
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
pub(super) struct Partial {
    pub(super) bytes: Vec<u8>,
    /// The line passed max_line: drop bytes until its newline.
    pub(super) discarding: bool,
}

impl Writer {
    /// Turn one chunk of a pipe (or its end, `eof`) into whole lines in the files.
    pub(super) fn chunk(&mut self, instance: u32, stream: Stream, at: SystemTime, data: &[u8], eof: bool) {
        let Some(trio) = self.trio(instance) else { return };
        let (own, comb) = (trio + stream as usize, trio + 2);
        let (o, c) = (&self.sinks[own], &self.sinks[comb]);
        if o.full() && c.full() && !(o.discard && c.discard) {
            self.drop_chunk(own, comb, data);
            return;
        }
        let ts = self.stamp.text(at).to_owned();
        let (p_own, p_comb) = prefixes(&self.spec, &ts, instance, stream);
        let ctx = LineCtx { own, comb, p_own, p_comb, ts, instance, stream, at };
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

    /// Neither file of a chunk takes more lines (a full disk): the chunk is dropped
    /// whole, counted, not cut into lines; a flood then costs counting, not formatting.
    /// The line it ends inside is dropped up to its newline.
    fn drop_chunk(&mut self, own: usize, comb: usize, data: &[u8]) {
        let carried = std::mem::take(self.partial());
        let files = [own, comb].iter().filter(|&&i| !self.sinks[i].discard).count() as u64;
        let lost = (carried.bytes.len() + data.len()) as u64 * files;
        self.stats.dropped_bytes.fetch_add(lost, Ordering::Relaxed);
        let discarding = data.last().map_or(carried.discarding, |b| *b != b'\n');
        *self.partial() = Partial { bytes: Vec::new(), discarding };
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
        let kept = if is_json(&self.spec) {
            let mut obj = Vec::with_capacity(line.len() + 96);
            let mut text = line.to_vec();
            if cut {
                text.extend_from_slice(CUT_MARKER);
            }
            json_line(&mut obj, &ctx.ts, &self.app, ctx.instance, ctx.stream, &text);
            [self.append(ctx.own, &[&obj], ctx.at), self.append(ctx.comb, &[&obj], ctx.at)]
        } else {
            let marker: &[u8] = if cut { CUT_MARKER } else { b"" };
            [
                self.append(ctx.own, &[&ctx.p_own, line, marker, b"\n"], ctx.at),
                self.append(ctx.comb, &[&ctx.p_comb, line, marker, b"\n"], ctx.at),
            ]
        };
        // The app's bytes (line and newline) count once per file that lost them.
        let lost = kept.iter().filter(|k| !**k).count() as u64 * (line.len() as u64 + 1);
        if lost > 0 {
            self.stats.dropped_bytes.fetch_add(lost, Ordering::Relaxed);
        }
    }
}
