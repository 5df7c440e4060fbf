//! Carrying out the lifecycle: feeding facts to an instance's state machine and
//! performing the actions it returns (spawn, signal, schedule, remove). The
//! only place that starts processes.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;

use super::reaping::signal_run;
use super::supervisor::{GROUP_POLL, Inst, Supervisor};
use super::{Msg, procs};
use crate::lifecycle::{Action, Ctx, Fact, Lifecycle, State};
use crate::os::spawn::{SpawnRequest, spawn};

impl Supervisor {
    /// Re-check a stopping instance whose main process is gone.
    pub(super) fn execute_await(&mut self, app: &str, index: u32) {
        if let Some(fact) = self.execute(app, index, Action::AwaitGroup) {
            self.feed(app, index, fact);
        }
    }

    pub(super) fn jitter(&mut self) -> f64 {
        // xorshift64: plenty for spreading restarts apart.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Feed `fact` to every instance of `app`.
    pub fn feed_app(&mut self, app: &str, fact: &Fact) {
        let indexes: Vec<u32> =
            self.apps.get(app).map(|a| a.instances.iter().map(|i| i.index).collect()).unwrap_or_default();
        for index in indexes {
            self.feed(app, index, fact.clone());
        }
    }

    /// Feed one fact to one instance and carry out the resulting actions.
    pub fn feed(&mut self, app_name: &str, index: u32, fact: Fact) {
        let mut queue = VecDeque::from([fact]);
        while let Some(fact) = queue.pop_front() {
            let ctx = Ctx { now: Instant::now(), wall: SystemTime::now(), jitter: self.jitter() };
            let Some(app) = self.apps.get_mut(app_name) else { return };
            let policy = app.spec.restart.clone();
            let Some(inst) = app.instances.iter_mut().find(|i| i.index == index) else { return };
            let (before, restarts_before) = (inst.lc.state, inst.lc.restarts);
            // A new end is a new (time, pid): no need to copy the whole record per fact.
            let exit_key = |lc: &crate::lifecycle::Lifecycle| lc.last_exit.as_ref().map(|e| (e.at, e.pid, e.reason));
            let exit_before = exit_key(&inst.lc);
            let actions = inst.lc.step(&policy, fact, ctx);
            if exit_key(&inst.lc) != exit_before
                && super::crashes::on_exit(app_name, inst, self.crashes.oom.as_mut(), &self.tx)
            {
                self.crashes.in_flight += 1;
            }
            let (after, pid, restarts) = (inst.lc.state, inst.lc.pid, inst.lc.restarts);
            let reason = inst.lc.restart_reason();
            if before != after {
                tracing::debug!(app = %app_name, instance = index, from = before.as_str(), to = after.as_str(), "state");
                let (app, from, to) = (app_name.to_owned(), before.as_str(), after.as_str());
                self.emit(super::Event::State { app, instance: index, from, to, pid });
            }
            // A reset (`l4ctl reset`) lowers the count: that is no restart.
            if restarts > restarts_before {
                self.emit(super::Event::Restart { app: app_name.to_owned(), instance: index, reason, restarts });
            }
            for action in actions {
                if let Some(next) = self.execute(app_name, index, action) {
                    queue.push_back(next);
                }
            }
        }
        if let Some(app) = self.apps.get_mut(app_name) {
            // Stopped, given up or removed: the port refuses again (a crash loop's
            // long waits included; a short backoff keeps connections queued).
            for i in &app.instances {
                if i.removed || matches!(i.lc.state, State::Stopped | State::Errored | State::CrashLoop) {
                    self.sockets.release(app_name, i.index);
                }
            }
            app.instances.retain(|i| !i.removed);
            if app.deleting && app.instances.is_empty() {
                self.apps.remove(app_name);
                self.logs.remove(app_name);
                tracing::info!(app = %app_name, "app deleted");
            }
        }
    }

    pub(super) fn execute(&mut self, app_name: &str, index: u32, action: Action) -> Option<Fact> {
        if matches!(action, Action::Terminate | Action::Kill) {
            self.scan_before_signals();
        }
        let app = self.apps.get_mut(app_name)?;
        let inst = app.instances.iter_mut().find(|i| i.index == index)?;
        match action {
            Action::Spawn => {
                self.serial += 1;
                inst.tag = format!("{}/{app_name}/{index}/{}", self.run_id, self.serial);
                inst.usage = Default::default();
                let listen_fd = match (app.spec.listen, app.spec.port_of(index)) {
                    (Some(ip), Some(port)) => {
                        match self.sockets.get_or_bind(app_name, index, std::net::SocketAddr::new(ip, port)) {
                            Ok(fd) => Some(fd),
                            Err(error) => {
                                tracing::error!(app = %app_name, instance = index, cause = %error, "spawn failed");
                                return Some(Fact::SpawnFailed { error: error.to_string() });
                            }
                        }
                    }
                    _ => {
                        // Switched to `socket = "app"` (or no port) by a config reload: the
                        // run binds the port itself, so l4ctl must not hold it any more.
                        self.sockets.release(app_name, index);
                        None
                    }
                };
                let notify = app.spec.ready == crate::config::Ready::Notify;
                let notify_socket = self.notify_path.as_deref().filter(|_| notify);
                // Only for `node` itself: NODE_CHANNEL_FD means nothing to other programs, and
                // their Node children would take the fd. Without a channel a Node app can
                // still send READY=1; a failure here only logs.
                let program = app.spec.interpreter.as_deref().unwrap_or(&app.spec.script);
                let node = notify && super::ready::runs_node(program);
                let channel = node.then(super::ready::node_channel).and_then(|c| {
                    c.map_err(|e| tracing::warn!(app = %app_name, cause = %e, "no Node IPC channel")).ok()
                });
                let node_ipc = channel.as_ref().map(|(theirs, _)| std::os::fd::AsRawFd::as_raw_fd(theirs));
                let req = SpawnRequest {
                    spec: &app.spec,
                    index,
                    home: &self.home,
                    tag: &inst.tag,
                    listen_fd,
                    notify_socket,
                    node_ipc,
                };
                match spawn(&req) {
                    Ok(mut child) => {
                        if let Some((_theirs, ours)) = channel {
                            if let Ok(copy) = std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned() {
                                self.node_ipc.insert(child.id(), copy);
                            }
                            super::ready::listen_node_ipc(ours, child.id(), self.tx.clone());
                        }
                        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
                            inst.tail = Some(self.logs.attach(app_name, index, &inst.tag, out.into(), err.into()));
                        }
                        // Reaped by `reap` (waitpid(-1)); the handle is not needed.
                        let pid = child.id();
                        inst.pgid = Some(pid as i32);
                        if let Some(cgroups) = &mut self.cgroups {
                            cgroups.adopt(&inst.tag, pid as i32);
                        }
                        let watched = app.spec.max_memory_restart.is_some();
                        inst.usage = crate::monitor::usage::Usage::fresh(pid as i32, watched);
                        if watched {
                            self.arm_fast_sample();
                        }
                        self.owned.insert(pid as i32, (app_name.to_owned(), index));
                        tracing::info!(app = %app_name, instance = index, pid, "started");
                        Some(Fact::Spawned { pid })
                    }
                    Err(error) => {
                        tracing::error!(app = %app_name, instance = index, cause = %error, "spawn failed");
                        Some(Fact::SpawnFailed { error: error.to_string() })
                    }
                }
            }
            Action::Terminate | Action::Kill => {
                // The group now (one syscall); tagged processes outside it in one scan
                // for the whole message (`signal_strays`), however many instances stop.
                let signal = if action == Action::Terminate { app.spec.kill_signal.0 } else { Signal::SIGKILL };
                signal_run(&mut self.strays, inst.pgid, &inst.tag, signal);
                self.strays_now = true;
                None
            }
            Action::Cleanup => {
                // The group at once (one syscall); strays outside it in `signal_strays`.
                let (pgid, tag) = (inst.pgid.take(), std::mem::take(&mut inst.tag));
                signal_run(&mut self.strays, pgid, &tag, Signal::SIGKILL);
                self.strays_now |= !matches!(inst.lc.state, State::Starting | State::WaitingRestart | State::CrashLoop);
                None
            }
            Action::Schedule { after, epoch } => {
                let due = Instant::now() + after;
                // Kept until it fires, so a handover can arm it again in the next program.
                inst.timers.retain(|(e, _)| *e == inst.lc.epoch);
                inst.timers.push((epoch, due));
                arm_timer(&self.tx, inst.id, epoch, due);
                None
            }
            Action::AwaitGroup => {
                if procs::group_alive(inst.pgid) {
                    let (tx, id) = (self.tx.clone(), inst.id);
                    tokio::spawn(async move {
                        tokio::time::sleep(GROUP_POLL).await;
                        let _ = tx.send(Msg::GroupPoll { id }).await;
                    });
                    None
                } else {
                    Some(Fact::GroupGone)
                }
            }
            Action::Remove => {
                inst.removed = true;
                None
            }
            Action::AwaitReady | Action::Retire | Action::StopRetiree | Action::Revert => {
                self.execute_replace(app_name, index, action);
                None
            }
        }
    }

    pub(super) fn new_inst(&mut self, index: u32) -> Inst {
        self.next_id += 1;
        Inst {
            id: self.next_id - 1,
            index,
            lc: Lifecycle::default(),
            tag: String::new(),
            pgid: None,
            removed: false,
            usage: Default::default(),
            retiree: None,
            tail: None,
            history: Default::default(),
            timers: Vec::new(),
        }
    }
}

/// Send `Fact::Timer { epoch }` to instance `id` at `due`. Keyed by the instance's
/// daemon-wide id: a timer of a deleted instance can never reach a new one that
/// reuses its app name and index.
pub(super) fn arm_timer(tx: &tokio::sync::mpsc::Sender<Msg>, id: u32, epoch: u64, due: Instant) {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(due.into()).await;
        let _ = tx.send(Msg::Timer { id, epoch }).await;
    });
}
