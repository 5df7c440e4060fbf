//! The supervisor actor: the one owner of every app and instance.
//!
//! All changes go through [`Msg`] on one bounded channel and are handled one at a
//! time, so there are no locks and every state change has a single order. The
//! actor feeds facts to each instance's [`Lifecycle`] and carries out the actions
//! it returns; it never waits on a process itself (exits and timers come back as
//! messages), so a slow stop never blocks a `status`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use super::apply::Mode;
use super::procs;

/// How often a stopping instance's group is checked once its main process is gone.
const GROUP_POLL: std::time::Duration = std::time::Duration::from_millis(25);
use super::spawn::{SpawnRequest, spawn};
use super::state::SavedState;
use super::{Error, Msg, Op, Target, Want};
use crate::config::AppSpec;
use crate::lifecycle::{Action, Ctx, Fact, Lifecycle, State};
use crate::logs::{LogHub, LogMsg};

pub(super) struct App {
    pub spec: AppSpec,
    pub source: PathBuf,
    pub env: Option<String>,
    pub instances: Vec<Inst>,
    pub deleting: bool,
}

pub(super) struct Inst {
    pub id: u32,
    pub index: u32,
    pub lc: Lifecycle,
    pub tag: String,
    pub pgid: Option<i32>,
    pub removed: bool,
    /// The latest sample of the instance's process tree.
    pub usage: super::monitor::Usage,
}

struct Waiter {
    want: Want,
    reply: oneshot::Sender<()>,
}

pub(super) struct Supervisor {
    pub home: PathBuf,
    pub apps: BTreeMap<String, App>,
    pub saved: SavedState,
    pub logs: LogHub,
    pub(super) tx: mpsc::Sender<Msg>,
    next_id: u32,
    serial: u64,
    /// Makes `L4_TAG` values unique across daemons: `<pid>-<start time>`.
    run_id: String,
    rng: u64,
    /// Pids we started and still have to reap: `(app, instance index)`.
    owned: HashMap<i32, (String, u32)>,
    /// Tags of finished runs whose stray processes still have to be swept.
    sweeps: Vec<(String, Option<i32>)>,
    /// Stop signals of this message still to be sent outside the groups: `(L4_TAG entry, group, signal)`.
    signals: Vec<(String, Option<i32>, Signal)>,
    /// A sweep that must not wait for the tick: the instance is not restarting.
    sweep_now: bool,
    waiters: Vec<Waiter>,
    pub shutting_down: bool,
    pub(super) ticks_per_sec: u64,
    pub(super) sampler: super::sample::Sampler,
    /// A `FastSample` message is on its way.
    pub(super) fast_pending: bool,
    /// `[daemon] sample_interval`.
    pub(super) sample_interval: std::time::Duration,
    pub(super) events: tokio::sync::broadcast::Sender<super::Event>,
    /// Total restarts at the last summary line.
    restarts_at_summary: u64,
}

impl Supervisor {
    pub fn new(home: PathBuf, sample_interval: std::time::Duration, tx: mpsc::Sender<Msg>) -> Self {
        let (ticks_per_sec, page_size) = procs::clock_ticks_and_page_size();
        let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Supervisor {
            saved: SavedState::load(&home),
            logs: LogHub::new(),
            home,
            apps: BTreeMap::new(),
            tx,
            next_id: 0,
            serial: 0,
            run_id: format!("{}-{:x}", std::process::id(), seed),
            rng: seed | 1,
            owned: HashMap::new(),
            sweeps: Vec::new(),
            signals: Vec::new(),
            sweep_now: false,
            waiters: Vec::new(),
            shutting_down: false,
            ticks_per_sec,
            sampler: super::sample::Sampler::new(page_size),
            fast_pending: false,
            sample_interval,
            events: tokio::sync::broadcast::channel(super::EVENT_BUFFER).0,
            restarts_at_summary: 0,
        }
    }

    /// Handle one message.
    pub fn handle(&mut self, msg: Msg) {
        let only_reaping = matches!(msg, Msg::Sigchld);
        match msg {
            Msg::Apply { config, env, only, reply } => {
                let r = self.guard().and_then(|()| self.apply(config, env, only.as_deref(), Mode::Start));
                let _ = reply.send(r);
            }
            Msg::Control { target, op, reply } => {
                let r = self.guard().and_then(|()| self.control(&target, op));
                let _ = reply.send(r);
            }
            Msg::Restore { reply } => {
                let r = self.guard().and_then(|()| self.restore());
                let _ = reply.send(r);
            }
            Msg::Reload { reply } => {
                let r = self.guard().and_then(|()| self.reload());
                if let Err(e) = &r {
                    tracing::error!(cause = %e, "config reload failed; the running config is kept");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Msg::Status { reply } => {
                let _ = reply.send(super::report::status(self));
            }
            Msg::Describe { app, reply } => {
                let _ = reply.send(super::report::describe(self, &app));
            }
            Msg::Wait { want, reply } => self.waiters.push(Waiter { want, reply }),
            Msg::Shutdown { reply } => {
                self.shutting_down = true;
                let names: Vec<String> = self.apps.keys().cloned().collect();
                for name in &names {
                    self.feed_app(name, &Fact::Stop);
                }
                self.waiters.push(Waiter { want: Want::AllStopped, reply });
            }
            Msg::Timer { id, epoch } => {
                if let Some((app, index)) = self.locate(id) {
                    self.feed(&app, index, Fact::Timer { epoch });
                }
            }
            Msg::GroupPoll { id } => {
                if let Some((app, index)) = self.locate(id)
                    && self.inst(&app, index).is_some_and(|i| i.lc.state == State::Stopping && i.lc.pid.is_none())
                {
                    self.execute_await(&app, index);
                }
            }
            Msg::Tick => {
                self.reap();
                self.sample_all();
            }
            Msg::FastSample => self.sample_watched(),
            Msg::Subscribe { reply } => {
                let _ = reply.send(self.events.subscribe());
            }
            Msg::Metrics { reply } => {
                let _ = reply.send(super::report::metrics(self));
            }
            Msg::RestartInstance { app, index, reply } => {
                let r = self.guard().and_then(|()| match self.inst(&app, index) {
                    Some(_) => {
                        self.feed(&app, index, Fact::Restart);
                        Ok(())
                    }
                    None => Err(Error::UnknownApp(format!("{app}:{index}"))),
                });
                let _ = reply.send(r);
            }
            Msg::Scale { app, instances, reply } => {
                let r = self.guard().and_then(|()| self.scale(&app, instances));
                let _ = reply.send(r);
            }
            Msg::Summary => self.summary(),
            Msg::Sigchld => self.reap(),
            Msg::LogCommand { app, truncate, reply } => {
                let r = match &app {
                    Some(a) if !self.apps.contains_key(a) => Err(Error::UnknownApp(a.clone())),
                    _ => {
                        Ok(self.logs.command(app.as_deref(), if truncate { LogMsg::Truncate } else { LogMsg::Reopen }))
                    }
                };
                let _ = reply.send(r);
            }
            Msg::ReopenLogs => {
                let commands = self.logs.command(None, LogMsg::Reopen);
                tokio::spawn(super::run_log_commands(commands));
            }
            Msg::TakeLogs { reply } => {
                let _ = reply.send(std::mem::replace(&mut self.logs, LogHub::closed()));
            }
        }
        // Only a restart just started by SIGCHLD may leave its sweep for later; any
        // other message (the next tick at the latest) sweeps before waiters are answered.
        self.signal_strays();
        if self.sweep_now || !only_reaping {
            self.sweep();
        }
        self.check_waiters();
    }

    /// Tell event subscribers (none listening is fine).
    pub(super) fn emit(&self, event: super::Event) {
        let _ = self.events.send(event);
    }

    /// The periodic summary line: instances online, total tree RSS, restarts since the last one.
    fn summary(&mut self) {
        let all = || self.apps.values().flat_map(|a| a.instances.iter());
        let online = all().filter(|i| i.lc.state == State::Online).count();
        let rss: u64 = all().filter_map(|i| i.usage.rss_bytes.filter(|_| i.lc.pid.is_some())).sum();
        let restarts: u64 = all().map(|i| u64::from(i.lc.restarts)).sum();
        let new = restarts.saturating_sub(self.restarts_at_summary);
        self.restarts_at_summary = restarts;
        tracing::info!(online, instances = all().count(), rss_bytes = rss, restarts = new, "summary");
    }

    /// Collect every ended child; feed the exits of ours to their instances.
    fn reap(&mut self) {
        for (pid, status) in procs::reap_all() {
            let Some((app, index)) = self.owned.remove(&pid) else {
                tracing::debug!(pid, ?status, "reaped an orphan");
                continue;
            };
            if self.inst(&app, index).and_then(|i| i.lc.pid) == Some(pid as u32) {
                tracing::info!(app = %app, instance = index, pid, ?status, "process exited");
                self.feed(&app, index, Fact::Exited { status });
            }
        }
    }

    /// SIGKILL what finished runs left outside their process group (found by tag).
    /// When a replacement is starting, this waits for the next message: the scan reads
    /// every process's environment (milliseconds), and a restart must not wait for
    /// it or compete with the replacement's start-up for the CPU. The group itself
    /// was killed at once. When nothing restarts (stop, shutdown), it runs at once.
    fn sweep(&mut self) {
        self.sweep_now = false;
        if self.sweeps.is_empty() {
            return;
        }
        let entries: Vec<String> =
            std::mem::take(&mut self.sweeps).into_iter().map(|(tag, _)| format!("{}={tag}", procs::TAG_VAR)).collect();
        let pids: Vec<i32> = procs::tagged_pids(&entries).into_iter().map(|(pid, _)| pid).collect();
        if !pids.is_empty() {
            tracing::info!(?pids, "killing processes left by finished runs");
            procs::signal_all(None, &pids, Signal::SIGKILL);
        }
    }

    /// Deliver this message's stop signals to tagged processes outside their groups.
    fn signal_strays(&mut self) {
        if self.signals.is_empty() {
            return;
        }
        let signals = std::mem::take(&mut self.signals);
        let entries: Vec<String> = signals.iter().map(|(e, _, _)| e.clone()).collect();
        for (pid, i) in procs::tagged_pids(&entries) {
            let (_, pgid, signal) = signals[i];
            // Members of the group were reached by `killpg` already: never signal twice.
            procs::signal_outside(pgid, &[pid], signal);
        }
    }

    fn guard(&self) -> Result<(), Error> {
        if self.shutting_down { Err(Error::ShuttingDown) } else { Ok(()) }
    }

    /// App name and index of the instance with daemon-wide `id`.
    fn locate(&self, id: u32) -> Option<(String, u32)> {
        self.apps.iter().find_map(|(name, a)| a.instances.iter().find(|i| i.id == id).map(|i| (name.clone(), i.index)))
    }

    /// Re-check a stopping instance whose main process is gone.
    fn execute_await(&mut self, app: &str, index: u32) {
        if let Some(fact) = self.execute(app, index, Action::AwaitGroup) {
            self.feed(app, index, fact);
        }
    }

    pub(super) fn inst(&self, app: &str, index: u32) -> Option<&Inst> {
        self.apps.get(app)?.instances.iter().find(|i| i.index == index)
    }

    fn jitter(&mut self) -> f64 {
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
            let actions = inst.lc.step(&policy, fact, ctx);
            let (after, pid, restarts) = (inst.lc.state, inst.lc.pid, inst.lc.restarts);
            let reason = inst.lc.restart_reason();
            if before != after {
                tracing::debug!(app = %app_name, instance = index, from = before.as_str(), to = after.as_str(), "state");
                let (app, from, to) = (app_name.to_owned(), before.as_str(), after.as_str());
                self.emit(super::Event::State { app, instance: index, from, to, pid });
            }
            if restarts != restarts_before {
                self.emit(super::Event::Restart { app: app_name.to_owned(), instance: index, reason, restarts });
            }
            for action in actions {
                if let Some(next) = self.execute(app_name, index, action) {
                    queue.push_back(next);
                }
            }
        }
        if let Some(app) = self.apps.get_mut(app_name) {
            app.instances.retain(|i| !i.removed);
            if app.deleting && app.instances.is_empty() {
                self.apps.remove(app_name);
                self.logs.remove(app_name);
                tracing::info!(app = %app_name, "app deleted");
            }
        }
    }

    fn execute(&mut self, app_name: &str, index: u32, action: Action) -> Option<Fact> {
        let app = self.apps.get_mut(app_name)?;
        let inst = app.instances.iter_mut().find(|i| i.index == index)?;
        match action {
            Action::Spawn => {
                self.serial += 1;
                inst.tag = format!("{}/{app_name}/{index}/{}", self.run_id, self.serial);
                inst.usage = Default::default();
                let req = SpawnRequest { spec: &app.spec, index, home: &self.home, tag: &inst.tag };
                match spawn(&req) {
                    Ok(mut child) => {
                        if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
                            self.logs.attach(app_name, index, out.into(), err.into());
                        }
                        // Reaped by `reap` (waitpid(-1)); the handle is not needed.
                        let pid = child.id();
                        inst.pgid = Some(pid as i32);
                        let watched = app.spec.max_memory_restart.is_some();
                        inst.usage = super::monitor::Usage::fresh(pid as i32, watched);
                        if watched {
                            self.arm_fast_sample();
                        }
                        self.owned.insert(pid as i32, (app_name.to_owned(), index));
                        tracing::info!(app = %app_name, instance = index, pid, "started");
                        Some(Fact::Spawned { pid })
                    }
                    Err(error) => {
                        tracing::error!(app = %app_name, instance = index, cause = %error, "spawn failed");
                        Some(Fact::SpawnFailed { error })
                    }
                }
            }
            Action::Terminate | Action::Kill => {
                // The group now (one syscall); tagged processes outside it in one scan
                // for the whole message (`signal_strays`), however many instances stop.
                let signal = if action == Action::Terminate { app.spec.kill_signal.0 } else { Signal::SIGKILL };
                procs::signal_all(inst.pgid, &[], signal);
                self.signals.push((format!("{}={}", procs::TAG_VAR, inst.tag), inst.pgid, signal));
                None
            }
            Action::Cleanup => {
                // The group at once (one syscall); strays outside it in `sweep`.
                procs::signal_all(inst.pgid, &[], Signal::SIGKILL);
                self.sweeps.push((std::mem::take(&mut inst.tag), inst.pgid.take()));
                self.sweep_now |= !matches!(inst.lc.state, State::Starting | State::WaitingRestart | State::CrashLoop);
                None
            }
            Action::Schedule { after, epoch } => {
                // Keyed by the instance's daemon-wide id: a timer of a deleted instance
                // can never reach a new one that reuses its app name and index.
                let (tx, id) = (self.tx.clone(), inst.id);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Msg::Timer { id, epoch }).await;
                });
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
        }
    }

    pub(super) fn delete(&mut self, name: &str) {
        if let Some(app) = self.apps.get_mut(name) {
            app.deleting = true;
        }
        self.feed_app(name, &Fact::Delete);
    }

    pub fn control(&mut self, target: &Target, op: Op) -> Result<Vec<String>, Error> {
        let names: Vec<String> = match target {
            Target::All => self.apps.iter().filter(|(_, a)| !a.deleting).map(|(n, _)| n.clone()).collect(),
            Target::App(n) if self.apps.contains_key(n) => vec![n.clone()],
            Target::App(n) => return Err(Error::UnknownApp(n.clone())),
        };
        for name in &names {
            match op {
                Op::Start => {
                    self.saved.stopped.remove(name);
                    self.feed_app(name, &Fact::Start);
                }
                Op::Restart => {
                    self.saved.stopped.remove(name);
                    self.feed_app(name, &Fact::Restart);
                }
                Op::Stop => {
                    self.saved.stopped.insert(name.clone());
                    self.feed_app(name, &Fact::Stop);
                }
                Op::Delete => {
                    self.saved.stopped.remove(name);
                    self.saved.deleted.insert(name.clone());
                    self.delete(name);
                }
            }
        }
        if op == Op::Delete {
            self.prune_sources();
        }
        self.persist();
        Ok(names)
    }

    pub(super) fn persist(&self) {
        if let Err(e) = self.saved.save(&self.home) {
            tracing::error!(cause = %e, "cannot write saved state");
        }
    }

    fn check_waiters(&mut self) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            if self.satisfied(&w.want) {
                let _ = w.reply.send(());
            } else if !w.reply.is_closed() {
                self.waiters.push(w);
            }
        }
    }

    fn satisfied(&self, want: &Want) -> bool {
        match want {
            Want::Settled(names) => names
                .iter()
                .filter_map(|n| self.apps.get(n))
                .all(|a| a.instances.iter().all(|i| i.lc.state.is_settled())),
            Want::Gone(names) => names.iter().all(|n| !self.apps.contains_key(n)),
            Want::AllStopped => self
                .apps
                .values()
                .all(|a| a.instances.iter().all(|i| matches!(i.lc.state, State::Stopped | State::Errored))),
        }
    }
}

/// How long ago `t` was, in milliseconds.
pub(super) fn ms_since(t: Instant) -> u64 {
    Instant::now().saturating_duration_since(t).as_millis() as u64
}

/// How long until `t`, in milliseconds.
pub(super) fn ms_until(t: Instant) -> u64 {
    t.saturating_duration_since(Instant::now()).as_millis() as u64
}
