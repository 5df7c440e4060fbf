//! What a worker's stderr reader feeds besides the log files: the run's tail (for
//! crash reports) and the structured panic lines (`{"event":"panic",...}`, one per
//! line) that become non-fatal reports when the worker survives them.
//!
//! A line reaches the daemon in as many reads as the worker made writes (serde's
//! `Display` of a JSON value writes token by token to an unbuffered stderr), so the
//! unfinished end of each read is carried into the next, up to [`PANIC_LINE_MAX`].

use std::sync::Arc;

use tokio::sync::mpsc;

use super::PanicLine;
use crate::crash::Tail;

/// The longest panic line recognised (a backtrace included); the rest of a longer
/// line is skipped up to its newline, and the line is not reported as a panic.
pub const PANIC_LINE_MAX: usize = 64 << 10;

const MARK: &[u8] = b"\"event\":\"panic\"";

pub(super) struct ErrTap {
    pub tail: Arc<Tail>,
    pub panics: Option<mpsc::UnboundedSender<PanicLine>>,
    pub app: String,
    /// The unfinished last line of the reads so far.
    partial: Vec<u8>,
    /// The current line outgrew `PANIC_LINE_MAX`: skip to its end.
    skipping: bool,
}

impl ErrTap {
    pub fn new(tail: Arc<Tail>, panics: Option<mpsc::UnboundedSender<PanicLine>>, app: &str) -> ErrTap {
        ErrTap { tail, panics, app: app.to_owned(), partial: Vec::new(), skipping: false }
    }

    pub fn feed(&mut self, instance: u32, data: &[u8]) {
        self.tail.push(data);
        if self.panics.is_none() {
            return;
        }
        let mut rest = data;
        if self.skipping || !self.partial.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                self.carry(rest);
                return;
            };
            if !self.skipping {
                self.partial.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.partial);
                self.scan(instance, &line);
            }
            self.skipping = false;
            rest = &rest[nl + 1..];
        }
        let complete = memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1);
        self.scan(instance, &rest[..complete]);
        self.carry(&rest[complete..]);
    }

    /// Keep the unfinished end of a line (nothing of one too long to be a panic line).
    fn carry(&mut self, unfinished: &[u8]) {
        if self.skipping || unfinished.is_empty() {
            return;
        }
        if self.partial.len() + unfinished.len() > PANIC_LINE_MAX {
            self.partial = Vec::new();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(unfinished);
        }
    }

    /// Report every panic line among whole lines.
    fn scan(&self, instance: u32, lines: &[u8]) {
        let Some(panics) = &self.panics else { return };
        let mut from = 0;
        while let Some(at) = memchr::memmem::find(&lines[from..], MARK).map(|i| from + i) {
            let start = memchr::memrchr(b'\n', &lines[..at]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &lines[at..]).map_or(lines.len(), |i| at + i);
            let _ = panics.send((self.app.clone(), instance, String::from_utf8_lossy(&lines[start..end]).into_owned()));
            from = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap() -> (ErrTap, mpsc::UnboundedReceiver<PanicLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ErrTap::new(Arc::new(Tail::default()), Some(tx), "app"), rx)
    }

    fn seen(rx: &mut mpsc::UnboundedReceiver<PanicLine>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, _, line)| line).collect()
    }

    #[test]
    fn a_panic_line_written_a_byte_at_a_time_is_seen_once_whole() {
        let (mut tap, mut rx) = tap();
        let line = br#"{"event":"panic","message":"a task failed"}"#;
        tap.feed(0, b"before\n");
        for b in line.iter().chain(b"\nafter\n") {
            tap.feed(0, std::slice::from_ref(b));
        }
        assert_eq!(seen(&mut rx), vec![String::from_utf8_lossy(line).into_owned()]);
    }

    #[test]
    fn panic_lines_among_others_in_one_read_are_each_seen() {
        let (mut tap, mut rx) = tap();
        tap.feed(0, b"x\n{\"event\":\"panic\",\"n\":1}\ny\n{\"event\":\"panic\",\"n\":2}\n{\"event\":\"pa");
        tap.feed(0, b"nic\",\"n\":3}\n");
        assert_eq!(
            seen(&mut rx),
            vec![r#"{"event":"panic","n":1}"#, r#"{"event":"panic","n":2}"#, r#"{"event":"panic","n":3}"#]
        );
    }

    #[test]
    fn a_line_past_the_limit_is_skipped_and_the_next_is_seen() {
        let (mut tap, mut rx) = tap();
        tap.feed(0, b"{\"event\":\"panic\",\"pad\":\"");
        let pad = vec![b'a'; PANIC_LINE_MAX];
        tap.feed(0, &pad);
        tap.feed(0, &pad);
        assert!(tap.partial.is_empty(), "nothing past the limit is kept");
        tap.feed(0, b"\"}\n{\"event\":\"panic\"}\n");
        assert_eq!(seen(&mut rx), vec![r#"{"event":"panic"}"#]);
    }
}
