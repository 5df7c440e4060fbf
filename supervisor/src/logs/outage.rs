//! What the writer does while a file of its app cannot be written: it tells the
//! daemon's log when that starts, once every [`OUTAGE_REPORT_EVERY`] while it lasts
//! and when it ends (never once per write), and it waits for the next message or
//! the next retry, whichever comes first. While a file takes no more lines the
//! app's output is read only once per backoff.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{LogMsg, Writer};
use crate::logs::sink::{BACKOFF, HELD, Sink};

/// While a file fails but still takes lines, how often the writer looks for new ones.
const OUTAGE_POLL: Duration = Duration::from_millis(10);

/// While writes fail, the daemon's log says so once when it starts, then once per this.
pub(super) const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct Outage {
    pub(super) since: Instant,
    pub(super) reported: Instant,
    dropped_before: u64,
}

/// `d` in whole seconds, for the log.
fn secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

impl Writer {
    /// The next message (`Some(None)` when a failing file's retry is due first), or
    /// `None` when every sender is gone.
    pub(super) fn next(&mut self, rx: &mut mpsc::Receiver<LogMsg>) -> Option<Option<LogMsg>> {
        let Some(due) = self.sinks.iter().filter_map(Sink::retry_due).min() else {
            return rx.blocking_recv().map(Some);
        };
        let paced = self.sinks.iter().any(|s| s.full() && !s.discard);
        if paced {
            // A file takes no more lines: the app's output is read once per backoff (a
            // batch, dropped), so a flood on a full disk fills the app's pipes and the
            // app waits in `write`, instead of the daemon spending a core on dropping.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            return (!rx.is_closed() || !rx.is_empty()).then_some(None);
        }
        // The next message or the retry, whichever comes first. Polled (every
        // `OUTAGE_POLL`, only while a file fails) rather than waited for on a tokio
        // timer: a runtime in this thread would link tokio's threaded scheduler and libm
        // into the daemon, 0.35 MiB more resident at all times.
        loop {
            match rx.try_recv() {
                Ok(msg) => return Some(Some(msg)),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(None);
            }
            std::thread::sleep(left.min(OUTAGE_POLL));
        }
    }

    /// Say in the daemon's log when writing starts failing, once a minute while it
    /// lasts, and when it works again: never once per write.
    pub(super) fn watch(&mut self, now: Instant) {
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
}
