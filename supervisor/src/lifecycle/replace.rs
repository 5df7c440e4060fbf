//! Readiness and replacement in the lifecycle: what happens while a new run
//! starts beside the online one (the *retiree*), and how it ends: the new run is
//! promoted once ready, or dropped (and the retiree kept) when it exits, fails to
//! spawn or is not ready in time. Pure, like the rest of [`super`].

use super::{Action, Ctx, Fact, LastExit, Lifecycle, Run, State, Then};
use crate::config::RestartPolicy;

impl Lifecycle {
    /// A replacement is starting while the retiree keeps serving.
    pub(super) fn step_replacing(&mut self, policy: &RestartPolicy, fact: Fact, ctx: Ctx) -> Vec<Action> {
        match fact {
            // Without a readiness check, surviving `min_uptime` is the sign.
            Fact::Spawned { pid } => {
                self.pid = Some(pid);
                self.started_at = Some(ctx.now);
                if policy.wait_ready {
                    vec![Action::AwaitReady, Action::Schedule { after: policy.listen_timeout, epoch: self.epoch }]
                } else {
                    vec![Action::Schedule { after: policy.min_uptime, epoch: self.epoch }]
                }
            }
            Fact::Ready { pid } if self.pid == Some(pid) => self.promote(ctx),
            Fact::SpawnFailed { error } => {
                self.spawn_failed(error, ctx);
                self.revert()
            }
            Fact::Exited { status } if self.pid.is_some() => {
                let uptime = self.uptime(ctx.now);
                self.record_exit(status, "crashed", uptime, ctx);
                self.revert()
            }
            Fact::Timer { epoch } if epoch == self.epoch && self.pid.is_some() && !policy.wait_ready => {
                self.promote(ctx)
            }
            Fact::Timer { epoch } if epoch == self.epoch && self.pid.is_some() => {
                let uptime = self.uptime(ctx.now);
                self.last_exit = Some(LastExit {
                    status: None,
                    reason: "not-ready",
                    error: Some(super::step::not_ready(policy)),
                    uptime,
                    at: ctx.wall,
                    pid: self.pid,
                });
                self.revert()
            }
            // The old run died on its own: carry on as a plain start.
            Fact::RetireeExited { status } => {
                if let Some(old) = self.retiree.take() {
                    let uptime = ctx.now.saturating_duration_since(old.started_at);
                    self.last_exit = Some(LastExit {
                        status: Some(status),
                        reason: "crashed",
                        error: None,
                        uptime,
                        at: ctx.wall,
                        pid: Some(old.pid),
                    });
                }
                vec![]
            }
            Fact::Stop | Fact::Delete | Fact::Restart => {
                self.retiree = None;
                let then = match fact {
                    Fact::Stop => Then::StayStopped,
                    Fact::Delete => Then::Remove,
                    _ => Then::Start,
                };
                let mut actions = vec![Action::StopRetiree];
                if self.pid.is_some() {
                    actions.extend(self.begin_stop(policy, then));
                } else {
                    // Not spawned yet (cannot happen: spawns answer at once); settle anyway.
                    self.settle(State::Stopped);
                    if then == Then::Remove {
                        actions.push(Action::Remove);
                    }
                }
                actions
            }
            _ => vec![],
        }
    }

    /// Start a new run beside the online one.
    pub(super) fn replace(&mut self, reason: &'static str) -> Vec<Action> {
        let (Some(pid), Some(started_at)) = (self.pid.take(), self.started_at.take()) else {
            return vec![];
        };
        self.retiree = Some(Run { pid, started_at, reason });
        let mut actions = vec![Action::Retire];
        actions.extend(self.spawn(Some(reason)));
        actions
    }

    /// The new run is ready: it is the instance now, and the retiree goes
    /// (recorded as the last run's end: `reloaded` or `memory`).
    pub(super) fn promote(&mut self, ctx: Ctx) -> Vec<Action> {
        self.state = State::Online;
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(old) = self.retiree.take() {
            let uptime = ctx.now.saturating_duration_since(old.started_at);
            let reason = if old.reason == "memory" { "memory" } else { "reloaded" };
            self.last_exit =
                Some(LastExit { status: None, reason, error: None, uptime, at: ctx.wall, pid: Some(old.pid) });
        }
        vec![Action::StopRetiree]
    }

    /// The new run failed: the retiree is the instance again.
    pub(super) fn revert(&mut self) -> Vec<Action> {
        if let Some(old) = self.retiree.take() {
            self.pid = Some(old.pid);
            self.started_at = Some(old.started_at);
        }
        self.state = State::Online;
        self.epoch = self.epoch.wrapping_add(1);
        self.then = Then::StayStopped;
        vec![Action::Revert]
    }
}
