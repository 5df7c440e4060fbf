//! The lifecycle as plain data that outlives the process: what the daemon hands to
//! the binary it execs in its place (`l4ctl update`), and takes back from it.
//!
//! Still pure: instants are written as signed nanoseconds from a reference instant
//! the caller gives on both sides (the daemon maps it through `CLOCK_MONOTONIC`,
//! which an `exec` keeps), and the `&'static str` reasons are looked up in the
//! closed set this module uses. An image that names anything else is refused, so
//! the adopting side falls back rather than guesses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::{ExitStatus, LastExit, Lifecycle, Run, State, Then};

/// Every reason a lifecycle records (exits, restarts, replaces, stops).
const REASONS: [&str; 11] = [
    "stopped",
    "exited",
    "crashed",
    "spawn-failed",
    "not-ready",
    "memory",
    "reloaded",
    "reload",
    "crash",
    "exit",
    "manual",
];

/// An instant as nanoseconds after (positive) or before (negative) a reference.
pub fn offset(at: Instant, reference: Instant) -> i64 {
    match at.checked_duration_since(reference) {
        Some(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(reference.duration_since(at).as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The instant `offset` nanoseconds from `reference` (`None` past what `Instant` holds).
pub fn instant(offset: i64, reference: Instant) -> Option<Instant> {
    let span = Duration::from_nanos(offset.unsigned_abs());
    if offset >= 0 { reference.checked_add(span) } else { reference.checked_sub(span) }
}

fn reason(text: &str) -> Result<&'static str, String> {
    REASONS.iter().find(|r| **r == text).copied().ok_or_else(|| format!("unknown reason {text:?}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleImage {
    pub state: State,
    pub pid: Option<u32>,
    pub started_at: Option<i64>,
    pub restarts: u32,
    pub unstable: u32,
    pub crash_loop_retries: u32,
    pub next_retry: Option<i64>,
    pub last_exit: Option<LastExitImage>,
    pub epoch: u64,
    pub restarts_by_reason: BTreeMap<String, u32>,
    pub retiree: Option<RunImage>,
    pub then: String,
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastExitImage {
    /// `[code]` or `[null, signal]`.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: String,
    pub error: Option<String>,
    pub uptime_ns: u64,
    pub at: SystemTime,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunImage {
    pub pid: u32,
    pub started_at: i64,
    pub reason: String,
}

fn then_name(then: Then) -> &'static str {
    match then {
        Then::StayStopped => "stay-stopped",
        Then::Start => "start",
        Then::Remove => "remove",
        Then::Backoff => "backoff",
    }
}

fn then_of(name: &str) -> Result<Then, String> {
    [Then::StayStopped, Then::Start, Then::Remove, Then::Backoff]
        .into_iter()
        .find(|t| then_name(*t) == name)
        .ok_or_else(|| format!("unknown next step {name:?}"))
}

impl Lifecycle {
    /// This lifecycle as data, its instants relative to `reference`.
    pub fn image(&self, reference: Instant) -> LifecycleImage {
        let rel = |at: Instant| offset(at, reference);
        LifecycleImage {
            state: self.state,
            pid: self.pid,
            started_at: self.started_at.map(rel),
            restarts: self.restarts,
            unstable: self.unstable,
            crash_loop_retries: self.crash_loop_retries,
            next_retry: self.next_retry.map(rel),
            last_exit: self.last_exit.as_ref().map(|e| LastExitImage {
                code: match e.status {
                    Some(ExitStatus::Code(c)) => Some(c),
                    _ => None,
                },
                signal: match e.status {
                    Some(ExitStatus::Signal(s)) => Some(s),
                    _ => None,
                },
                reason: e.reason.to_owned(),
                error: e.error.clone(),
                uptime_ns: u64::try_from(e.uptime.as_nanos()).unwrap_or(u64::MAX),
                at: e.at,
                pid: e.pid,
            }),
            epoch: self.epoch,
            restarts_by_reason: self.restarts_by_reason.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            retiree: self.retiree.map(|r| RunImage {
                pid: r.pid,
                started_at: rel(r.started_at),
                reason: r.reason.to_owned(),
            }),
            then: then_name(self.then).to_owned(),
            stop_reason: self.stop_reason.map(str::to_owned),
        }
    }

    /// The lifecycle `image` describes, its instants relative to `reference`.
    pub fn from_image(image: &LifecycleImage, reference: Instant) -> Result<Lifecycle, String> {
        let at = |o: i64| instant(o, reference).ok_or_else(|| format!("instant {o} ns out of range"));
        let last_exit = match &image.last_exit {
            None => None,
            Some(e) => Some(LastExit {
                status: match (e.code, e.signal) {
                    (Some(c), None) => Some(ExitStatus::Code(c)),
                    (None, Some(s)) => Some(ExitStatus::Signal(s)),
                    (None, None) => None,
                    (Some(_), Some(_)) => return Err("an exit with both a code and a signal".to_owned()),
                },
                reason: reason(&e.reason)?,
                error: e.error.clone(),
                uptime: Duration::from_nanos(e.uptime_ns),
                at: e.at,
                pid: e.pid,
            }),
        };
        let mut restarts_by_reason = BTreeMap::new();
        for (k, v) in &image.restarts_by_reason {
            restarts_by_reason.insert(reason(k)?, *v);
        }
        Ok(Lifecycle {
            state: image.state,
            pid: image.pid,
            started_at: image.started_at.map(at).transpose()?,
            restarts: image.restarts,
            unstable: image.unstable,
            crash_loop_retries: image.crash_loop_retries,
            next_retry: image.next_retry.map(at).transpose()?,
            last_exit,
            epoch: image.epoch,
            restarts_by_reason,
            retiree: match &image.retiree {
                None => None,
                Some(r) => Some(Run { pid: r.pid, started_at: at(r.started_at)?, reason: reason(&r.reason)? }),
            },
            then: then_of(&image.then)?,
            stop_reason: image.stop_reason.as_deref().map(reason).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Ctx, Fact};

    fn policy() -> crate::config::RestartPolicy {
        crate::config::parse(std::path::Path::new("/l4.toml"), "[[apps]]\nname = \"a\"\nscript = \"x\"\n", None)
            .unwrap()
            .apps[0]
            .restart
            .clone()
    }

    #[test]
    fn a_lifecycle_read_back_from_its_image_is_the_same_lifecycle() {
        let (policy, now) = (policy(), Instant::now());
        let ctx = |s: u64| Ctx { now: now + Duration::from_secs(s), wall: SystemTime::now(), jitter: 0.5 };
        let mut lc = Lifecycle::default();
        lc.step(&policy, Fact::Start, ctx(0));
        lc.step(&policy, Fact::Spawned { pid: 10 }, ctx(0));
        lc.step(&policy, Fact::Exited { status: ExitStatus::Signal(9) }, ctx(0));
        lc.step(&policy, Fact::Timer { epoch: lc.epoch }, ctx(1));
        lc.step(&policy, Fact::Spawned { pid: 11 }, ctx(1));
        lc.step(&policy, Fact::Stop, ctx(2));
        assert!(lc.last_exit.is_some() && !lc.restarts_by_reason.is_empty() && lc.state == State::Stopping);
        let json = serde_json::to_string(&lc.image(now)).unwrap();
        let back = Lifecycle::from_image(&serde_json::from_str(&json).unwrap(), now).unwrap();
        assert_eq!(format!("{back:?}"), format!("{lc:?}"));
        // The other side's reference is later by the time the image spent on the way.
        let later = now + Duration::from_millis(30);
        let moved = Lifecycle::from_image(&lc.image(now), later).unwrap();
        assert_eq!(moved.started_at.unwrap() - lc.started_at.unwrap(), Duration::from_millis(30));
    }

    #[test]
    fn an_image_naming_an_unknown_reason_is_refused() {
        let mut image = Lifecycle::default().image(Instant::now());
        image.stop_reason = Some("whim".to_owned());
        assert_eq!(Lifecycle::from_image(&image, Instant::now()).unwrap_err(), "unknown reason \"whim\"");
        image.stop_reason = None;
        image.then = "later".to_owned();
        assert!(Lifecycle::from_image(&image, Instant::now()).is_err());
    }

    #[test]
    fn offsets_before_and_after_the_reference_come_back() {
        let now = Instant::now();
        for at in [now, now + Duration::from_nanos(1), now + Duration::from_secs(5)] {
            assert_eq!(instant(offset(at, now), now), Some(at));
        }
        if let Some(past) = now.checked_sub(Duration::from_secs(3)) {
            assert_eq!(offset(past, now), -3_000_000_000);
            assert_eq!(instant(-3_000_000_000, now), Some(past));
        }
    }
}
