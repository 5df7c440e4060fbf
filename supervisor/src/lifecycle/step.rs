//! The transitions of [`Lifecycle`]: `step(fact) -> actions` for every state
//! but a replace under way (that is `replace.rs`), and the backoff between
//! unstable runs. Pure: the time and the jitter come in with each fact.

use std::time::{Duration, Instant};

use super::*;

/// Full-jitter backoff before the `n`-th unstable restart in a row (`n >= 1`).
pub fn backoff(policy: &RestartPolicy, n: u32, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
    let ceiling = policy.restart_delay.saturating_mul(factor).min(policy.restart_delay_max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

impl Lifecycle {
    /// Apply one fact; return the actions to carry out, in order.
    pub fn step(&mut self, policy: &RestartPolicy, fact: Fact, ctx: Ctx) -> Vec<Action> {
        if fact == Fact::ResetCounters {
            self.restarts = 0;
            self.restarts_by_reason.clear();
            return Vec::new();
        }
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
            // An app that binds its port itself cannot have two runs on it: a restart.
            (Online, Fact::Replace) if !policy.can_overlap => self.begin_stop(policy, Then::Start),
            (Online, Fact::Replace) => self.replace("reload"),
            // Over the memory ceiling: with a readiness check, replaced like a reload step
            // (the old run is still watched for the 1.5x backstop); without one nothing
            // would say the new run serves, so a graceful restart. Recorded as `memory`.
            // An app that binds its port itself cannot have two runs on it: a restart.
            (Online, Fact::MemoryExceeded) if policy.wait_ready && policy.can_overlap => self.replace("memory"),
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
                // Exit 0 is never a crash (no crash report), though it restarts unless
                // `stop_exit_codes` holds 0, as PM2 does.
                let clean = matches!(status, ExitStatus::Code(c) if c == 0 || policy.stop_exit_codes.contains(&c));
                self.record_exit(status, if clean { "exited" } else { "crashed" }, uptime, ctx);
                let mut actions = vec![Action::Cleanup];
                actions.extend(self.after_exit(policy, Some(status), uptime, ctx));
                actions
            }
            (Stopping, Fact::Exited { status }) => {
                // The main process is gone; the rest of its group may still be
                // shutting down gracefully (`sh start.sh` without exec): wait for it.
                let uptime = self.uptime(ctx.now);
                self.record_exit(status, self.stop_reason.unwrap_or("stopped"), uptime, ctx);
                if self.stop_reason == Some("not-ready")
                    && let Some(e) = self.last_exit.as_mut()
                {
                    e.error = Some(not_ready(policy));
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

    pub(super) fn spawn_failed(&mut self, error: String, ctx: Ctx) {
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

    pub(super) fn uptime(&self, now: Instant) -> Duration {
        self.started_at.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    pub(super) fn record_exit(&mut self, status: ExitStatus, reason: &'static str, uptime: Duration, ctx: Ctx) {
        let pid = self.pid.take();
        self.started_at = None;
        self.last_exit = Some(LastExit { status: Some(status), reason, error: None, uptime, at: ctx.wall, pid });
    }

    /// Start a run; `restart` is why, when it is not the first.
    pub(super) fn spawn(&mut self, restart: Option<&'static str>) -> Vec<Action> {
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

    pub(super) fn settle(&mut self, state: State) {
        self.state = state;
        self.next_retry = None;
        self.epoch = self.epoch.wrapping_add(1);
        self.then = Then::StayStopped;
    }

    pub(super) fn begin_stop(&mut self, policy: &RestartPolicy, then: Then) -> Vec<Action> {
        self.state = State::Stopping;
        self.then = then;
        self.epoch = self.epoch.wrapping_add(1);
        vec![Action::Terminate, Action::Schedule { after: policy.kill_timeout, epoch: self.epoch }]
    }

    /// Decide what follows an unexpected end of a run (`status` is `None` when the spawn failed).
    pub(super) fn after_exit(
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

/// Why a run that never said it was ready was ended.
pub(super) fn not_ready(policy: &RestartPolicy) -> String {
    format!("not ready within {} (listen_timeout)", humantime::format_duration(policy.listen_timeout))
}
