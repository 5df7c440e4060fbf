//! Crash reports (README, "Crash reports"): what the daemon knows about an
//! abnormal end of a worker, built from outside the process — exit code or
//! signal, reason, uptime, restarts, RSS at death, the last 64 KiB of stderr and
//! the panic parsed from it — plus the episode rule that turns a crash loop into
//! one report with a count.
//!
//! - [`Tail`]: the stderr ring buffer of one run, fed by the log pipeline.
//! - [`panic`]: finding a Rust panic in that text.
//! - [`Episodes`]: fingerprint -> episode; only an episode's first crash is a new report.
//! - [`journal`] appends to `<log_dir>/crashes.jsonl`; [`sentry`] turns a report into an envelope.

mod episodes;
pub mod journal;
pub mod oom;
pub mod outbound;
pub mod panic;
pub mod sentry;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use episodes::{Ended, Episodes, Seen};
pub use panic::{Frame, Panic};

/// Bytes of stderr kept per run.
pub const TAIL_BYTES: usize = 64 << 10;

/// The daemon's own panics (it should have none): logged, and recorded in
/// `crashes.jsonl` as app `l4ctl-daemon`, before the default output.
pub fn install_daemon_hook(log_dir: std::path::PathBuf) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let thread = std::thread::current().name().map(str::to_owned);
        tracing::error!(%message, location = ?location, "the daemon panicked");
        let mut report = CrashReport {
            id: now_ms(),
            pid: Some(std::process::id()),
            panic: Some(Panic { message, location, thread, frames: vec![] }),
            ..CrashReport::new("l4ctl-daemon", 0, "error", "panic")
        };
        report.refingerprint();
        let _ = journal::append(&log_dir, &report);
        outbound::send_detached(&report);
        default(info);
    }));
}

/// The last [`TAIL_BYTES`] a run wrote to stderr.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Mutex<VecDeque<u8>>,
    closed: AtomicBool,
    eof: tokio::sync::Notify,
}

impl Tail {
    pub fn push(&self, data: &[u8]) {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let data = &data[data.len().saturating_sub(TAIL_BYTES)..];
        let over = (buf.len() + data.len()).saturating_sub(TAIL_BYTES);
        buf.drain(..over);
        buf.extend(data);
    }

    /// The pipe reached its end: everything the run wrote is here.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.eof.notify_waiters();
    }

    /// Wait until the pipe ended, at most `limit`.
    pub async fn ended(&self, limit: Duration) {
        let wait = self.eof.notified();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(limit, wait).await;
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// What the tail holds, as written.
    pub fn bytes(&self) -> Vec<u8> {
        let buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = buf.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        bytes
    }
}

/// One report, as `crashes.jsonl`, the API, Sentry and the webhook get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashReport {
    /// Unique across daemon runs and ordered in time: milliseconds since the Unix
    /// epoch when the report was made (one more when two fall in one millisecond).
    pub id: u64,
    /// RFC 3339, UTC: the first crash of the episode.
    pub at: String,
    pub app: String,
    pub instance: u32,
    pub pid: Option<u32>,
    /// `fatal` (the process ended) or `error` (a panic it survived, a memory restart).
    pub level: String,
    /// `crashed`, `oom` (the kernel's OOM killer), `memory`, `not-ready` or `panic` (non-fatal).
    pub reason: String,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub uptime_ms: u64,
    pub restarts: u32,
    pub rss_bytes: Option<u64>,
    pub panic: Option<Panic>,
    /// `app` + panic location, or `app` + exit reason.
    pub fingerprint: String,
    /// Crashes in this episode so far (the report is sent at the first).
    pub count: u32,
    /// The end of the run's stderr (up to 64 KiB).
    pub stderr_tail: String,
    /// `None` for the episode's first report; `ongoing` for the count sent at 10,
    /// 100, 1000 ... crashes; `ended` for the final count after 10 quiet minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<String>,
    /// When the episode's latest crash happened (with `episode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
}

/// Now in milliseconds since the Unix epoch: a report's id.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Now, as reports write times (RFC 3339, UTC, milliseconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl CrashReport {
    /// A report made now, with nothing known yet but who and why.
    pub fn new(app: &str, instance: u32, level: &str, reason: &str) -> CrashReport {
        CrashReport {
            id: 0,
            at: now_rfc3339(),
            app: app.to_owned(),
            instance,
            pid: None,
            level: level.to_owned(),
            reason: reason.to_owned(),
            exit_code: None,
            signal: None,
            uptime_ms: 0,
            restarts: 0,
            rss_bytes: None,
            panic: None,
            fingerprint: String::new(),
            count: 1,
            stderr_tail: String::new(),
            episode: None,
            last_at: None,
        }
    }

    /// Set the fingerprint from the report's own fields.
    pub fn refingerprint(&mut self) {
        self.fingerprint = CrashReport::fingerprint_of(
            &self.app,
            self.panic.as_ref(),
            &self.reason,
            self.exit_code,
            self.signal.as_deref(),
        );
    }

    /// The fingerprint of a report: where it panicked, else how it ended.
    /// A memory restart or a failed readiness is ended by the daemon's own signal,
    /// an OOM kill by the kernel's, which say nothing about the cause: those are
    /// fingerprinted by reason alone.
    pub fn fingerprint_of(
        app: &str,
        panic: Option<&Panic>,
        reason: &str,
        code: Option<i32>,
        signal: Option<&str>,
    ) -> String {
        let (code, signal) =
            if matches!(reason, "memory" | "not-ready" | "oom") { (None, None) } else { (code, signal) };
        match (panic.and_then(|p| p.location.as_deref()), code, signal) {
            (Some(loc), _, _) => format!("{app}:panic:{loc}"),
            (None, _, Some(sig)) => format!("{app}:{reason}:{sig}"),
            (None, Some(c), _) => format!("{app}:{reason}:exit {c}"),
            (None, None, None) => format!("{app}:{reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_64_kib() {
        let t = Tail::default();
        t.push(&vec![b'a'; 50 << 10]);
        t.push(&vec![b'b'; 30 << 10]);
        let text = t.text();
        assert_eq!(text.len(), TAIL_BYTES);
        assert!(text.starts_with('a') && text.ends_with(&"b".repeat(30 << 10)));
        t.push(&vec![b'c'; 100 << 10]);
        assert_eq!(t.text(), "c".repeat(TAIL_BYTES));
    }

    #[test]
    fn fingerprints_prefer_the_panic_location() {
        let p = Panic { message: "m".into(), location: Some("src/a.rs:1:2".into()), thread: None, frames: vec![] };
        assert_eq!(CrashReport::fingerprint_of("web", Some(&p), "crashed", Some(101), None), "web:panic:src/a.rs:1:2");
        assert_eq!(CrashReport::fingerprint_of("web", None, "crashed", None, Some("SIGSEGV")), "web:crashed:SIGSEGV");
        assert_eq!(CrashReport::fingerprint_of("web", None, "memory", None, Some("SIGKILL")), "web:memory");
        assert_eq!(CrashReport::fingerprint_of("web", None, "not-ready", Some(0), None), "web:not-ready");
    }

    #[test]
    fn the_readme_s_example_report_is_a_report() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("A report, as `crashes.jsonl`").expect("the README section");
        let json =
            readme[start..].split("```json\n").nth(1).and_then(|r| r.split("\n```").next()).expect("the example");
        let report: CrashReport = serde_json::from_str(json).expect("the README's example parses as a report");
        assert_eq!((report.reason.as_str(), report.exit_code), ("crashed", Some(101)));
        assert_eq!(report.panic.map(|p| p.frames.len()), Some(1));
    }
}
