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

use serde::Serialize;

use crate::config::{Autorestart, RestartPolicy};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Full-jitter backoff before the `n`-th unstable restart in a row (`n >= 1`).
pub fn backoff(policy: &RestartPolicy, n: u32, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
    let ceiling = policy.restart_delay.saturating_mul(factor).min(policy.restart_delay_max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

impl Lifecycle {
    /// Apply one fact; return the actions to carry out, in order.
    pub fn step(&mut self, policy: &RestartPolicy, fact: Fact, ctx: Ctx) -> Vec<Action> {
        if self.retiree.is_some() {
            return self.step_replacing(policy, fact, ctx);
        }
        use State::*;
        match (self.state, fact) {
            (Stopped | Errored | WaitingRestart | CrashLoop, Fact::Start | Fact::Restart | Fact::Replace) => {
                let was_started = self.last_exit.is_some();
                self.unstable = 0;
                self.crash_loop_retries = 0;
                self.spawn(was_started.then_some(self.restart_reason()))
            }
            (Starting | Online, Fact::Start) => vec![],
            // A pending delete is not undone by a later stop or start.
            (Stopping, Fact::Start | Fact::Restart | Fact::Replace | Fact::Stop) if self.then == Then::Remove => {
                vec![]
            }
            (Stopping, Fact::Start | Fact::Restart | Fact::Replace) => {
                self.then = Then::Start;
                vec![]
            }
            (Starting | Online, Fact::Restart) | (Starting, Fact::Replace) => self.begin_stop(policy, Then::Start),
            (Online, Fact::Replace) => self.replace("reload"),
            // Over the memory ceiling: with a readiness check, replaced like a reload step
            // (the old run is still watched for the 1.5x backstop); without one nothing
            // would say the new run serves, so a graceful restart. Recorded as `memory`.
            (Online, Fact::MemoryExceeded) if policy.wait_ready => self.replace("memory"),
            (Online, Fact::MemoryExceeded) => {
                self.stop_reason = Some("memory");
                self.begin_stop(policy, Then::Start)
            }
            // Far over it: no grace (a stop already under way is cut short too).
            (Online | Stopping, Fact::MemoryKill) => {
                if self.state == Online {
                    self.stop_reason = Some("memory");
                    // Its Terminate and kill timer are superseded by the Kill below.
                    let _ = self.begin_stop(policy, Then::Start);
                }
                vec![Action::Kill]
            }
            (Starting | Online, Fact::Stop) => self.begin_stop(policy, Then::StayStopped),
            (Starting | Online, Fact::Delete) => self.begin_stop(policy, Then::Remove),
            (Stopping, Fact::Stop) => {
                self.then = Then::StayStopped;
                vec![]
            }
            (Stopping, Fact::Delete) => {
                self.then = Then::Remove;
                vec![]
            }
            (Stopped | Errored | WaitingRestart | CrashLoop, Fact::Stop) => {
                self.settle(Stopped);
                vec![]
            }
            (Stopped | Errored | WaitingRestart | CrashLoop, Fact::Delete) => {
                self.settle(Stopped);
                vec![Action::Remove]
            }
            (Starting, Fact::Spawned { pid }) => {
                self.pid = Some(pid);
                self.started_at = Some(ctx.now);
                if policy.wait_ready {
                    vec![Action::AwaitReady, Action::Schedule { after: policy.listen_timeout, epoch: self.epoch }]
                } else {
                    self.state = Online;
                    vec![]
                }
            }
            (Starting, Fact::Ready { pid }) if self.pid == Some(pid) => {
                self.state = Online;
                self.epoch = self.epoch.wrapping_add(1);
                vec![]
            }
            (Starting, Fact::SpawnFailed { error }) => {
                self.spawn_failed(error, ctx);
                self.after_exit(policy, None, Duration::ZERO, ctx)
            }
            // Not ready in time: killed, then treated as an unstable run.
            (Starting, Fact::Timer { epoch }) if epoch == self.epoch && self.pid.is_some() => {
                self.stop_reason = Some("not-ready");
                self.state = State::Stopping;
                self.then = Then::Backoff;
                self.epoch = self.epoch.wrapping_add(1);
                vec![Action::Kill]
            }
            (Starting | Online, Fact::Exited { status }) if self.pid.is_some() => {
                let uptime = self.uptime(ctx.now);
                let expected = matches!(status, ExitStatus::Code(c) if policy.stop_exit_codes.contains(&c));
                self.record_exit(status, if expected { "exited" } else { "crashed" }, uptime, ctx);
                let mut actions = vec![Action::Cleanup];
                actions.extend(self.after_exit(policy, Some(status), uptime, ctx));
                actions
            }
            (Stopping, Fact::Exited { status }) => {
                // The main process is gone; the rest of its group may still be
                // shutting down gracefully (`sh start.sh` without exec): wait for it.
                let uptime = self.uptime(ctx.now);
                self.record_exit(status, self.stop_reason.unwrap_or("stopped"), uptime, ctx);
                if self.stop_reason == Some("not-ready") {
                    let limit = humantime::format_duration(policy.listen_timeout);
                    if let Some(e) = self.last_exit.as_mut() {
                        e.error = Some(format!("not ready within {limit} (listen_timeout)"));
                    }
                }
                vec![Action::AwaitGroup]
            }
            (Stopping, Fact::GroupGone) if self.pid.is_none() => {
                let mut actions = vec![Action::Cleanup];
                match self.then {
                    Then::StayStopped => self.settle(Stopped),
                    Then::Start => {
                        self.unstable = 0;
                        self.crash_loop_retries = 0;
                        actions.extend(self.spawn(Some(self.restart_reason())));
                    }
                    Then::Remove => {
                        self.settle(Stopped);
                        actions.push(Action::Remove);
                    }
                    Then::Backoff => actions.extend(self.after_exit(policy, None, Duration::ZERO, ctx)),
                }
                actions
            }
            (Stopping, Fact::Timer { epoch }) if epoch == self.epoch => vec![Action::Kill],
            (WaitingRestart | CrashLoop, Fact::Timer { epoch }) if epoch == self.epoch => {
                self.spawn(Some(self.restart_reason()))
            }
            // Stale timers, and facts that cannot apply in this state, change nothing.
            _ => vec![],
        }
    }

    fn spawn_failed(&mut self, error: String, ctx: Ctx) {
        let exit = LastExit {
            status: None,
            reason: "spawn-failed",
            error: Some(error),
            uptime: Duration::ZERO,
            at: ctx.wall,
            pid: None,
        };
        self.last_exit = Some(exit);
    }

    fn uptime(&self, now: Instant) -> Duration {
        self.started_at.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    fn record_exit(&mut self, status: ExitStatus, reason: &'static str, uptime: Duration, ctx: Ctx) {
        let pid = self.pid.take();
        self.started_at = None;
        self.last_exit = Some(LastExit { status: Some(status), reason, error: None, uptime, at: ctx.wall, pid });
    }

    /// Start a run; `restart` is why, when it is not the first.
    fn spawn(&mut self, restart: Option<&'static str>) -> Vec<Action> {
        if let Some(reason) = restart {
            self.restarts = self.restarts.saturating_add(1);
            let n = self.restarts_by_reason.entry(reason).or_insert(0);
            *n = n.saturating_add(1);
        }
        self.stop_reason = None;
        self.state = State::Starting;
        self.next_retry = None;
        self.epoch = self.epoch.wrapping_add(1);
        self.then = Then::StayStopped;
        vec![Action::Spawn]
    }

    /// Why the next start is a restart, from how the last run ended:
    /// `crash`, `exit`, `memory`, `spawn-failed`, `not-ready`, or `manual` (asked for).
    pub fn restart_reason(&self) -> &'static str {
        match self.last_exit.as_ref().map(|e| e.reason) {
            Some("crashed") => "crash",
            Some("exited") => "exit",
            Some("memory") => "memory",
            Some("spawn-failed") => "spawn-failed",
            Some("not-ready") => "not-ready",
            _ => "manual",
        }
    }

    fn settle(&mut self, state: State) {
        self.state = state;
        self.next_retry = None;
        self.epoch = self.epoch.wrapping_add(1);
        self.then = Then::StayStopped;
    }

    fn begin_stop(&mut self, policy: &RestartPolicy, then: Then) -> Vec<Action> {
        self.state = State::Stopping;
        self.then = then;
        self.epoch = self.epoch.wrapping_add(1);
        vec![Action::Terminate, Action::Schedule { after: policy.kill_timeout, epoch: self.epoch }]
    }

    /// Decide what follows an unexpected end of a run (`status` is `None` when the spawn failed).
    fn after_exit(
        &mut self,
        policy: &RestartPolicy,
        status: Option<ExitStatus>,
        uptime: Duration,
        ctx: Ctx,
    ) -> Vec<Action> {
        // A spawn that failed never counts as stable, whatever min_uptime says:
        // otherwise a failing spawn would be retried at once, forever.
        let stable = status.is_some() && uptime >= policy.min_uptime;
        if stable {
            self.unstable = 0;
            self.crash_loop_retries = 0;
        }
        let wanted = match policy.autorestart {
            Autorestart::Never => false,
            Autorestart::Always => true,
            Autorestart::OnFailure => {
                !matches!(status, Some(ExitStatus::Code(c)) if policy.stop_exit_codes.contains(&c))
            }
        };
        if !wanted {
            self.settle(State::Stopped);
            return vec![];
        }
        if stable {
            return self.spawn(Some(self.restart_reason()));
        }
        self.unstable = self.unstable.saturating_add(1);
        let (state, delay) = if self.unstable >= policy.max_restarts {
            if policy.crash_loop_max_retries.is_some_and(|max| self.crash_loop_retries >= max) {
                self.settle(State::Errored);
                return vec![];
            }
            self.crash_loop_retries = self.crash_loop_retries.saturating_add(1);
            (State::CrashLoop, policy.restart_delay_max)
        } else {
            (State::WaitingRestart, backoff(policy, self.unstable, ctx.jitter))
        };
        self.settle(state);
        self.next_retry = ctx.now.checked_add(delay);
        vec![Action::Schedule { after: delay, epoch: self.epoch }]
    }
}

mod replace;

#[cfg(test)]
mod replace_tests;
#[cfg(test)]
mod tests;
