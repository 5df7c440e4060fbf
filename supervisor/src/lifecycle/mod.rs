//! The lifecycle of one instance as a pure state machine: `step(fact) -> actions`.
//!
//! No processes, clocks or timers live here. The daemon feeds in what happened
//! (a user asked to stop, the process exited, a timer fired) together with the
//! current time and a random number for jitter, and carries out the actions
//! returned. Every decision about restarts, backoff and the crash loop is made
//! here and is unit-tested without processes.
//!
//! Restart rules (README, "Restart policy"):
//! - a run shorter than `min_uptime` is *unstable*; a longer one resets the count;
//! - after a stable run the instance is started again at once;
//! - after the n-th unstable run in a row it waits a random delay in
//!   `[0, min(restart_delay_max, restart_delay * 2^(n-1)))` (full jitter);
//! - from `max_restarts` unstable runs on it is in `crash-loop` and retries every
//!   `restart_delay_max`, forever unless `crash_loop_max_retries` is set, after
//!   which it is `errored` and waits for a human.
//!
//! Readiness and replacement (README, "Readiness and rolling reload"):
//! - with `wait_ready`, a spawned run stays `starting` until a `Ready` fact from
//!   its pid; not ready within `listen_timeout` counts as an unstable run;
//! - `Replace` (a reload step, or the memory ceiling) starts a new run while the
//!   old one keeps serving (the *retiree*); once the new run is ready the old one
//!   is stopped, and if the new run dies or is not ready in time it is killed and
//!   the old one stays `online`.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Autorestart, RestartPolicy};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Stopped,
    Starting,
    Online,
    Stopping,
    WaitingRestart,
    CrashLoop,
    Errored,
}

impl State {
    /// Every state, in the order of the enum.
    pub const ALL: [State; 7] = [
        State::Stopped,
        State::Starting,
        State::Online,
        State::Stopping,
        State::WaitingRestart,
        State::CrashLoop,
        State::Errored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Online => "online",
            State::Stopping => "stopping",
            State::WaitingRestart => "waiting-restart",
            State::CrashLoop => "crash-loop",
            State::Errored => "errored",
        }
    }

    /// A state that will not change without a new fact from outside except by a timer.
    pub fn is_settled(self) -> bool {
        !matches!(self, State::Starting | State::Stopping)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `state == "online"`, for readers of the status table that hold the name.
impl PartialEq<str> for State {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for State {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// `(exit code, signal name)` of an end, as reports show it (`SIGSEGV`, or
    /// `signal N` for a number nix does not know).
    pub fn parts(status: Option<ExitStatus>) -> (Option<i32>, Option<String>) {
        match status {
            Some(ExitStatus::Code(c)) => (Some(c), None),
            Some(ExitStatus::Signal(s)) => (
                None,
                Some(
                    nix::sys::signal::Signal::try_from(s)
                        .map_or_else(|_| format!("signal {s}"), |s| s.as_str().to_owned()),
                ),
            ),
            None => (None, None),
        }
    }
}

/// Why the last run ended, as shown by `describe` and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastExit {
    pub status: Option<ExitStatus>,
    /// `stopped` (asked to), `exited` (an exit code in `stop_exit_codes`), `crashed`, `spawn-failed`.
    pub reason: &'static str,
    pub error: Option<String>,
    pub uptime: Duration,
    pub at: SystemTime,
    /// The main pid of the run this end is of (during a replace, the old run's or
    /// the new one's); `None` when nothing ran.
    pub pid: Option<u32>,
}

/// Something that happened to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Start,
    Stop,
    Restart,
    Delete,
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        error: String,
    },
    Exited {
        status: ExitStatus,
    },
    /// After [`Action::AwaitGroup`]: no process of the stopped instance is left.
    GroupGone,
    /// The tree stayed at or over `max_memory_restart` for `memory_samples` samples.
    MemoryExceeded,
    /// The tree passed 1.5 × `max_memory_restart`.
    MemoryKill,
    /// A timer scheduled with [`Action::Schedule`] fired.
    Timer {
        epoch: u64,
    },
    /// Start a new run beside the online one and stop the old one once the new
    /// one is ready (a rolling reload step).
    Replace,
    /// The run `pid` said it is ready (`READY=1`, or the probe passed).
    Ready {
        pid: u32,
    },
    /// The old run kept during a replace ended by itself.
    RetireeExited {
        status: ExitStatus,
    },
    /// `l4ctl reset`: the restart counters start again from zero (the backoff's
    /// count of unstable runs is kept: it is what the next delay depends on).
    ResetCounters,
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a process; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// Send `kill_signal` to every process of the instance.
    Terminate,
    /// SIGKILL every process of the instance.
    Kill,
    /// End whatever the last process left behind (its group, its descendants).
    Cleanup,
    /// Answer with `Fact::GroupGone` once the instance's process group is empty
    /// (the kill timer still applies meanwhile).
    AwaitGroup,
    /// Feed back `Fact::Timer { epoch }` after `after`.
    Schedule { after: Duration, epoch: u64 },
    /// Forget the instance.
    Remove,
    /// Watch for the new run's readiness (`Fact::Ready`); the timeout is scheduled too.
    AwaitReady,
    /// Set the current run aside as the retiree; it keeps serving.
    Retire,
    /// Stop the retiree gracefully (`kill_signal`, SIGKILL after `kill_timeout`), on its own.
    StopRetiree,
    /// The new run failed: kill what is left of it and make the retiree current again.
    Revert,
}

/// One run of an instance: its main process and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub pid: u32,
    pub started_at: Instant,
    /// Why it is being replaced: `reload` or `memory`.
    pub reason: &'static str,
}

/// What to do once a stop completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    StayStopped,
    Start,
    Remove,
    /// The run was killed for not becoming ready: wait as after a crash.
    Backoff,
}

/// The inputs that are not facts: time and randomness.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: Instant,
    pub wall: SystemTime,
    /// Uniform in `[0, 1)`, used for backoff jitter.
    pub jitter: f64,
}

/// The lifecycle data of one instance.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub state: State,
    pub pid: Option<u32>,
    pub started_at: Option<Instant>,
    /// Every start after the first: automatic or asked for.
    pub restarts: u32,
    /// Unstable runs in a row.
    pub unstable: u32,
    pub crash_loop_retries: u32,
    pub next_retry: Option<Instant>,
    pub last_exit: Option<LastExit>,
    /// Bumped whenever pending timers become meaningless.
    pub epoch: u64,
    /// Restarts counted by the reason the run before ended: `crash`, `exit`,
    /// `manual`, `memory`, `spawn-failed`.
    pub restarts_by_reason: std::collections::BTreeMap<&'static str, u32>,
    /// The old run that keeps serving while a replacement starts (only while `starting`).
    pub retiree: Option<Run>,
    then: Then,
    /// Why the current stop began, when the daemon began it (`memory`).
    stop_reason: Option<&'static str>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: State::Stopped,
            pid: None,
            started_at: None,
            restarts: 0,
            unstable: 0,
            crash_loop_retries: 0,
            next_retry: None,
            last_exit: None,
            epoch: 0,
            restarts_by_reason: std::collections::BTreeMap::new(),
            retiree: None,
            then: Then::StayStopped,
            stop_reason: None,
        }
    }
}

pub mod image;
mod replace;
mod step;

pub use step::backoff;

#[cfg(test)]
mod replace_tests;
#[cfg(test)]
mod tests;
