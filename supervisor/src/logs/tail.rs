//! The newest lines of a log, bounded: what `GET /api/v1/apps/{name}/logs` and
//! `l4ctl logs` print before following. A read holds at most twice its byte
//! budget at once (the bytes read, then the lines cut from them) and costs time
//! linear in the bytes it returns, however large the files are: the current file
//! is read backwards from its end, a plain rotated file the same way, and a
//! compressed one is streamed through once (time linear in its size), keeping
//! only the newest lines that fit.
//!
//! This module owns the limits of one read ([`MAX_LINES`], [`MAX_BYTES`]); the
//! callers refuse a larger `lines` and share the bytes among the files they read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::rotate::rotated_files;

/// Most lines one read returns per file (`?lines=`, `l4ctl logs --lines`).
pub const MAX_LINES: usize = 10_000;
/// Most bytes of log text one read returns in all files together, counting each
/// line's newline: the newest lines that fit are returned, older ones are left out.
pub const MAX_BYTES: usize = 8 << 20;
/// Bytes read (or decompressed) at a time.
const BLOCK: usize = 64 << 10;

/// The newest lines of one log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// Oldest first, without their newlines.
    pub lines: Vec<Vec<u8>>,
    /// Fewer lines than asked for because older ones did not fit in the byte budget.
    pub cut: bool,
}

/// The newest `want` lines of `current` before offset `end` (the file at `path`),
/// then of the newest rotated files of `path` while there are fewer, in all at most
/// `budget` bytes. Only a regular current file is read: a FIFO or a device named
/// as a log file is never read here.
pub fn newest(path: &Path, current: Option<(&File, u64)>, want: usize, budget: usize) -> Tail {
    let mut files: Vec<Vec<Vec<u8>>> = Vec::new(); // newest file first, each oldest line first
    let (mut lines, mut bytes) = (0, 0);
    let mut older = rotated_files(path);
    // No current file (not created yet, or removed by hand): the rotated ones still count.
    let none = || Part { lines: vec![], bytes: 0, stop: Stop::Start };
    let mut next = Some(current.map_or_else(none, |(file, end)| from_plain(file, end, want, budget)));
    while let Some(part) = next.take() {
        lines += part.lines.len();
        bytes += part.bytes;
        let stop = part.stop;
        files.push(part.lines);
        if stop == Stop::Cut {
            return Tail { lines: join(files), cut: true };
        }
        if stop == Stop::Enough || lines >= want {
            break;
        }
        let Some(prev) = older.pop() else { break };
        // A rotated file is never empty: with no budget left, its lines are cut.
        if bytes >= budget {
            return Tail { lines: join(files), cut: true };
        }
        next = Some(from_rotated(&prev, want - lines, budget - bytes));
    }
    Tail { lines: join(files), cut: false }
}

/// The newest `want` lines of `path` as it is now (see [`newest`]).
pub fn last_lines(path: &Path, want: usize, budget: usize) -> Tail {
    let file = crate::nofollow::read(path).ok();
    let end = file.as_ref().and_then(|f| f.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len());
    match (&file, end) {
        (Some(f), Some(end)) => newest(path, Some((f, end)), want, budget),
        _ => newest(path, None, want, budget),
    }
}

/// The offset just after the last newline of `file` before `end` (0 if none), found
/// reading backwards one block at a time without keeping the blocks.
pub fn after_last_newline(file: &File, end: u64) -> u64 {
    let mut block = vec![0; BLOCK];
    let mut start = end;
    while start > 0 {
        let step = (BLOCK as u64).min(start);
        start -= step;
        let block = &mut block[..step as usize];
        if file.read_exact_at(block, start).is_err() {
            return end;
        }
        if let Some(i) = memchr::memrchr(b'\n', block) {
            return start + i as u64 + 1;
        }
    }
    0
}

fn join(files: Vec<Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    files.into_iter().rev().flatten().collect()
}

/// Why one file's part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It holds the lines still wanted.
    Enough,
    /// An older line of this file did not fit in the budget: nothing older may follow.
    Cut,
    /// The file's start was reached: older files may add lines.
    Start,
}

/// The newest lines of one file.
#[derive(Debug)]
struct Part {
    lines: Vec<Vec<u8>>,
    bytes: usize,
    stop: Stop,
}

/// Read `file` backwards from `end` in blocks, kept newest first and joined once at the
/// end, so the work is linear in the bytes read. Reading stops once `want` line starts
/// are known or `budget + 1` bytes are read: a line starting before that cannot fit.
fn from_plain(file: &File, end: u64, want: usize, budget: usize) -> Part {
    if want == 0 || end == 0 {
        return Part { lines: vec![], bytes: 0, stop: if want == 0 { Stop::Enough } else { Stop::Start } };
    }
    let floor = end.saturating_sub(budget as u64 + 1);
    let (mut start, mut blocks, mut newlines) = (end, Vec::new(), 0);
    while start > floor && newlines <= want {
        let step = (BLOCK as u64).min(start - floor);
        start -= step;
        let mut block = vec![0; step as usize];
        if file.read_exact_at(&mut block, start).is_err() {
            // Truncated under us (`l4ctl flush`): nothing is shown from it.
            return Part { lines: vec![], bytes: 0, stop: Stop::Enough };
        }
        newlines += memchr::memchr_iter(b'\n', &block).count();
        blocks.push(block);
    }
    let mut buf = Vec::with_capacity((end - start) as usize);
    for block in blocks.iter().rev() {
        buf.extend_from_slice(block);
    }
    drop(blocks);
    split_newest(&buf, start == 0, want, budget)
}

/// The newest lines of `buf` (the end of a file; `whole` when it starts at the file's
/// start) within `want` and `budget`.
fn split_newest(buf: &[u8], whole: bool, want: usize, budget: usize) -> Part {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let (mut cost, mut lines) = (0, Vec::new());
    if body.is_empty() {
        return Part { lines, bytes: 0, stop: if whole { Stop::Start } else { Stop::Enough } };
    }
    let mut end = body.len();
    loop {
        if lines.len() == want {
            return done(lines, cost, Stop::Enough);
        }
        let start = memchr::memrchr(b'\n', &body[..end]).map(|i| i + 1);
        let complete = start.is_some() || whole;
        let start = start.unwrap_or(0);
        let line_cost = end - start + 1;
        if !complete || cost + line_cost > budget {
            return done(lines, cost, Stop::Cut);
        }
        cost += line_cost;
        lines.push(body[start..end].to_vec());
        if start == 0 {
            return done(lines, cost, Stop::Start);
        }
        end = start - 1;
    }
}

fn done(mut lines: Vec<Vec<u8>>, bytes: usize, stop: Stop) -> Part {
    lines.reverse();
    Part { lines, bytes, stop }
}

/// A rotated file: read backwards when plain, streamed through when compressed.
fn from_rotated(path: &Path, want: usize, budget: usize) -> Part {
    let gz = path.extension().is_some_and(|e| e == "gz");
    let opened = crate::nofollow::read(path);
    let part = match (opened, gz) {
        (Ok(file), false) => file.metadata().map(|m| from_plain(&file, m.len(), want, budget)),
        (Ok(file), true) => from_stream(flate2::read::MultiGzDecoder::new(file), want, budget),
        (Err(e), _) => Err(e),
    };
    // A file removed by retention meanwhile, or a damaged archive, ends the history there.
    part.unwrap_or(Part { lines: vec![], bytes: 0, stop: Stop::Enough })
}

/// The newest lines of a stream read to its end, keeping at most `want` lines and
/// `budget` bytes (and one block) at any time.
fn from_stream(mut input: impl Read, want: usize, budget: usize) -> io::Result<Part> {
    let mut kept: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut bytes, mut seen) = (0, 0usize);
    let mut partial = Vec::new();
    // A line longer than the budget is skipped to its end without being kept.
    let mut too_long = false;
    let mut block = vec![0; BLOCK];
    let mut keep = |line: Vec<u8>, cost: usize, too_long: bool, kept: &mut VecDeque<Vec<u8>>, bytes: &mut usize| {
        seen += 1;
        if too_long || cost > budget {
            // Nothing older can be shown without a gap.
            kept.clear();
            *bytes = 0;
            return;
        }
        kept.push_back(line);
        *bytes += cost;
        while kept.len() > want || *bytes > budget {
            let old = kept.pop_front().map_or(0, |l| l.len() + 1);
            *bytes -= old;
        }
    };
    loop {
        let n = match input.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut rest = &block[..n];
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if !too_long {
                partial.extend_from_slice(&rest[..i]);
            }
            let line = std::mem::take(&mut partial);
            let cost = line.len() + 1;
            keep(line, cost, too_long, &mut kept, &mut bytes);
            too_long = false;
            rest = &rest[i + 1..];
        }
        if !too_long {
            partial.extend_from_slice(rest);
            if partial.len() > budget {
                too_long = true;
                partial = Vec::new();
            }
        }
    }
    if !partial.is_empty() || too_long {
        let line = std::mem::take(&mut partial);
        let cost = line.len() + 1;
        keep(line, cost, too_long, &mut kept, &mut bytes);
    }
    let stop = if kept.len() == want {
        Stop::Enough
    } else if seen > kept.len() {
        Stop::Cut
    } else {
        Stop::Start
    };
    Ok(Part { lines: kept.into(), bytes, stop })
}

#[cfg(test)]
#[path = "tail_tests.rs"]
mod tests;
