//! The supervisor actor: the one owner of every app and instance.
//!
//! All changes go through [`Msg`] on one bounded channel and are handled one at a
//! time, so there are no locks and every state change has a single order. The
//! actor feeds facts to each instance's [`Lifecycle`] and carries out the actions
//! it returns; it never waits on a process itself (exits and timers come back as
//! messages), so a slow stop never blocks a `status`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::apply::Mode;
use super::procs;

/// How often a stopping instance's group is checked once its main process is gone.
pub(super) const GROUP_POLL: std::time::Duration = std::time::Duration::from_millis(25);
use super::state::SavedState;
use super::{Error, Msg, Op, Step, Target, Want};
use crate::config::AppSpec;
use crate::lifecycle::{Fact, Lifecycle, State};
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
    pub usage: crate::monitor::usage::Usage,
    /// The old run that keeps serving while a replacement starts.
    pub retiree: Option<Retiring>,
    /// The end of the current run's stderr, for its crash report.
    pub tail: Option<std::sync::Arc<crate::crash::Tail>>,
    /// The slot's last hour of figures and marks, for charts (kept across runs).
    pub history: crate::monitor::history::History,
    /// Lifecycle timers not yet fired: `(epoch, due)` (for a handover).
    pub timers: Vec<(u64, Instant)>,
}

/// An old run being replaced: kept serving until its successor is ready, then
/// stopped on its own (it is no longer the instance).
#[derive(Debug, Clone)]
pub(super) struct Retiring {
    pub app: String,
    pub index: u32,
    pub pid: i32,
    pub pgid: Option<i32>,
    pub tag: String,
    /// Its process tree, still sampled for the 1.5x memory backstop.
    pub usage: crate::monitor::usage::Usage,
    /// Its stderr tail, back on the instance if the replacement fails.
    pub tail: Option<std::sync::Arc<crate::crash::Tail>>,
    /// SIGKILLed at 1.5x the memory ceiling (its end is a memory kill, not a crash).
    pub backstopped: bool,
}

struct Waiter {
    pub(super) want: Want,
    pub(super) reply: oneshot::Sender<()>,
}

pub(super) struct Supervisor {
    pub home: PathBuf,
    /// The daemon's log folder: where the apps of a file without `[daemon] log_dir` log.
    pub(super) log_dir: PathBuf,
    pub apps: BTreeMap<String, App>,
    pub saved: SavedState,
    pub logs: LogHub,
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) next_id: u32,
    pub(super) serial: u64,
    /// Makes `L4_TAG` values unique across daemons: `<pid>-<start time>`.
    pub(super) run_id: String,
    pub(super) rng: u64,
    /// Pids we started and still have to reap: `(app, instance index)`.
    pub(super) owned: HashMap<i32, (String, u32)>,
    /// Signals owed to processes that left their instance's group (see `signal_strays`).
    pub(super) strays: Vec<super::reaping::Stray>,
    /// One cgroup per run, when cgroup v2 is writable (see `cgroup`).
    pub(super) cgroups: Option<crate::os::cgroup::Cgroups>,
    /// Without one: processes re-parented to the daemon and the runs they came from.
    pub(super) orphans: super::orphans::Orphans,
    /// This message has scanned for them before its first stop signal.
    pub(super) scanned_before_signals: bool,
    /// `strays` must be served before this message is done (not only at the next one).
    pub(super) strays_now: bool,
    waiters: Vec<Waiter>,
    pub shutting_down: bool,
    pub(super) ticks_per_sec: u64,
    pub(super) sampler: crate::monitor::sample::Sampler,
    /// A `FastSample` message is on its way.
    pub(super) fast_pending: bool,
    /// `[daemon] sample_interval`.
    pub(super) sample_interval: std::time::Duration,
    pub(super) events: tokio::sync::broadcast::Sender<super::Event>,
    /// Total restarts at the last summary line.
    pub(super) restarts_at_summary: u64,
    /// Listening sockets of instances with `socket = "supervisor"`.
    pub(super) sockets: crate::os::sockets::Sockets,
    /// `NOTIFY_SOCKET` for apps with `ready = "notify"`, when it could be bound.
    pub(super) notify_path: Option<PathBuf>,
    /// Old runs of finished replaces that are still stopping, by main pid.
    pub(super) retiring: HashMap<i32, Retiring>,
    /// Crash reports: recent ones, episodes, where they are written.
    pub(super) crashes: super::crashes::Crashes,
    /// The apps with `watch` or `cron_restart`, for the triggers task.
    pub(super) triggers: tokio::sync::watch::Sender<super::Triggered>,
    /// Handed over (`handover.rs`): no message is handled any more.
    pub(super) frozen: bool,
    /// A message panicked: only a freeze (the panic's handover) is handled now.
    pub(super) panicked: bool,
    /// A copy of the notify socket, for a handover.
    pub(super) notify_fd: Option<std::os::fd::OwnedFd>,
    /// Our end of each Node run's IPC channel (a copy), by main pid, for a handover.
    pub(super) node_ipc: HashMap<u32, std::os::fd::OwnedFd>,
}

impl Supervisor {
    pub fn new(
        home: PathBuf,
        log_dir: PathBuf,
        saved: SavedState,
        sample_interval: std::time::Duration,
        tx: mpsc::Sender<Msg>,
    ) -> Self {
        let (ticks_per_sec, page_size) = procs::clock_ticks_and_page_size();
        let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Supervisor {
            saved,
            logs: LogHub::new(),
            home,
            apps: BTreeMap::new(),
            tx,
            next_id: 0,
            serial: 0,
            run_id: format!("{}-{:x}", std::process::id(), seed),
            rng: seed | 1,
            owned: HashMap::new(),
            strays: Vec::new(),
            cgroups: None,
            orphans: Default::default(),
            scanned_before_signals: false,
            strays_now: false,
            waiters: Vec::new(),
            shutting_down: false,
            ticks_per_sec,
            sampler: crate::monitor::sample::Sampler::new(page_size),
            fast_pending: false,
            sample_interval,
            events: tokio::sync::broadcast::channel(super::EVENT_BUFFER).0,
            restarts_at_summary: 0,
            sockets: Default::default(),
            notify_path: None,
            retiring: HashMap::new(),
            crashes: super::crashes::Crashes::new(log_dir.clone()),
            log_dir,
            triggers: tokio::sync::watch::Sender::new(Default::default()),
            frozen: false,
            panicked: false,
            notify_fd: None,
            node_ipc: HashMap::new(),
        }
    }

    /// Handle one message.
    pub fn handle(&mut self, msg: Msg) {
        // Messages that follow a restart closely (its exit, its crash report, its
        // readiness) leave the strays of the finished run to the next tick.
        let light = matches!(
            msg,
            Msg::Sigchld
                | Msg::Crash { .. }
                | Msg::PanicLine { .. }
                | Msg::PanicCheck { .. }
                | Msg::CloseEpisodes
                | Msg::Ready { .. }
        );
        // What can change the loaded apps, and with them `watch` and `cron_restart`.
        let apps_change = matches!(
            msg,
            Msg::Apply { .. } | Msg::Control { .. } | Msg::Restore { .. } | Msg::Reload { .. } | Msg::Scale { .. }
        );
        let app_count = self.apps.len();
        match msg {
            Msg::Apply { config, env, only, reply } => {
                let r = self.guard().and_then(|()| self.apply(*config, env, only.as_deref(), Mode::Start));
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
                    if let Some(inst) = self.inst_mut(&app, index) {
                        let now = Instant::now();
                        inst.timers.retain(|(e, due)| !(*e == epoch && *due <= now));
                    }
                    self.feed(&app, index, Fact::Timer { epoch });
                }
            }
            Msg::Freeze { reference, force, reply } => {
                let _ = reply.send(self.freeze(reference, force));
            }
            // Fault injection for the test of the panic's handover (debug builds only send it).
            Msg::FailpointPanic => panic!("injected panic (L4_FAILPOINT_PANIC_ON_USR2)"),
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
                if let Some(cgroups) = &mut self.cgroups {
                    cgroups.sweep();
                }
            }
            Msg::FastSample => self.sample_watched(),
            Msg::Subscribe { reply } => {
                let _ = reply.send(self.events.subscribe());
            }
            Msg::History { app, reply } => {
                let _ = reply.send(super::report::history(self, &app));
            }
            Msg::Metrics { reply } => {
                let _ = reply.send(super::report::metrics(self));
            }
            Msg::ReplaceInstance { app, index, step, reply } => {
                let r = self.guard().and_then(|()| match self.inst(&app, index) {
                    // `watch` and `cron_restart` leave what `l4ctl stop` stopped alone.
                    Some(i) if step == Step::Renew && self.held_stopped(&app, i) => {
                        Err(Error::Stopped(format!("{app}:{index}")))
                    }
                    Some(i) => {
                        let old = i.lc.pid.filter(|_| i.lc.state == State::Online);
                        // A whole-app reload un-stops the app; `reload app:N` of one instance does not.
                        if step == Step::Whole {
                            self.saved.stopped.remove(&app);
                        }
                        // An app that binds its port itself is replaced by a stop and a start
                        // (the lifecycle's rule); the caller waits for a plain start then.
                        let binds_itself = self.apps.get(&app).is_some_and(|a| !a.spec.restart.can_overlap);
                        self.feed(&app, index, Fact::Replace);
                        Ok((old, binds_itself))
                    }
                    None => Err(Error::UnknownApp(format!("{app}:{index}"))),
                });
                let _ = reply.send(r);
            }
            Msg::Ready { pid } => self.ready(pid),
            Msg::Crash { report } => {
                self.crashes.in_flight = self.crashes.in_flight.saturating_sub(1);
                self.record_crash(*report);
            }
            Msg::PanicLine { app, instance, line } => self.panic_line(app, instance, line),
            Msg::PanicCheck { app, instance, pid, line } => self.panic_check(&app, instance, pid, &line),
            Msg::CloseEpisodes => self.close_episodes(),
            Msg::Crashes { app, limit, reply } => {
                let _ = reply.send((self.crashes.list(app.as_deref(), limit), self.crashes.outbox.stats()));
            }
            Msg::RetireeTimer { pid } => self.retiree_timer(pid),
            Msg::Signal { target, signal, reply } => {
                let r = self.guard().and_then(|()| super::operator::signal(self, &target, signal));
                let _ = reply.send(r);
            }
            Msg::Reset { target, reply } => {
                let r = self.guard().and_then(|()| super::operator::reset(self, &target));
                let _ = reply.send(r);
            }
            Msg::Scale { app, instances, reply } => {
                let r = self.guard().and_then(|()| self.scale(&app, instances));
                let _ = reply.send(r);
            }
            Msg::Summary => {
                self.summary();
                if let Some(oom) = self.crashes.oom.as_mut() {
                    oom.resync();
                }
            }
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
                // The daemon's last message: every app is stopped.
                self.crashes.journal_open_counts();
                if let Some(cgroups) = self.cgroups.take() {
                    cgroups.close();
                } else {
                    // No run is alive: whatever is adrift now came from one.
                    self.scan_orphans(procs::all_stats());
                    self.end_adrift(&Default::default(), &Default::default());
                }
                let _ = reply.send(std::mem::replace(&mut self.logs, LogHub::closed()));
            }
        }
        // Only a restart just under way may leave its strays for later (the messages that
        // follow it closely are `light`); any other message (the next tick at the latest)
        // serves them before waiters are answered.
        if self.strays_now || !light {
            self.signal_strays();
        }
        self.scanned_before_signals = false;
        // After the message's spawns, so that a restart never waits for it.
        if let Some(cgroups) = &mut self.cgroups {
            cgroups.move_adopted();
        }
        if apps_change || self.apps.len() != app_count {
            self.publish_triggers();
        }
        self.check_waiters();
    }

    /// Publish the apps with `watch` or `cron_restart` when that list changed.
    pub(super) fn publish_triggers(&self) {
        // Every app's log files: one app's log in another's folder is not a change of it either.
        let logs = || -> Vec<PathBuf> {
            let files = self.apps.values().flat_map(|a| a.spec.logs.files.iter());
            files.flat_map(|f| [f.out.clone(), f.err.clone(), f.combined.clone()]).collect()
        };
        let apps: Vec<super::AppTriggers> = self
            .apps
            .iter()
            .filter(|(_, a)| !a.deleting && a.spec.triggers != Default::default())
            .map(|(name, a)| super::AppTriggers {
                app: name.clone(),
                triggers: a.spec.triggers.clone(),
                rolling: a.spec.restart.wait_ready,
            })
            .collect();
        // No app with triggers: no one needs the log files either.
        let list = super::Triggered { logs: if apps.is_empty() { Vec::new() } else { logs() }, apps };
        self.triggers.send_if_modified(|now| {
            let changed = *now != list;
            if changed {
                *now = list;
            }
            changed
        });
    }

    /// Tell event subscribers (none listening is fine).
    /// Publish an event; restarts, crashes and memory-ceiling hits are also marked on
    /// the instance's history.
    pub(super) fn emit(&mut self, event: super::Event) {
        use super::Event;
        let mark = match &event {
            Event::Restart { app, instance, reason, .. } => Some((app, *instance, "restart", *reason)),
            Event::Memory { app, instance, .. } => Some((app, *instance, "memory", "ceiling")),
            Event::Crash { app, instance, reason, .. } => Some((app, *instance, "crash", reason.as_str())),
            Event::State { .. } => None,
        };
        if let Some((app, index, kind, detail)) = mark
            && let Some(inst) = self.inst_mut(app, index)
        {
            inst.history.mark(crate::crash::now_ms(), kind, detail);
        }
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

    fn guard(&self) -> Result<(), Error> {
        if self.shutting_down { Err(Error::ShuttingDown) } else { Ok(()) }
    }

    /// App name and index of the instance with daemon-wide `id`.
    fn locate(&self, id: u32) -> Option<(String, u32)> {
        self.apps.iter().find_map(|(name, a)| a.instances.iter().find(|i| i.id == id).map(|i| (name.clone(), i.index)))
    }

    /// What a renew (`watch`, `cron_restart`) leaves alone: an app `l4ctl stop` stopped,
    /// an instance stopped, or one stopping (stopped one by one, or already restarting).
    fn held_stopped(&self, app: &str, i: &Inst) -> bool {
        self.saved.stopped.contains(app) || matches!(i.lc.state, State::Stopped | State::Stopping)
    }

    pub(super) fn inst(&self, app: &str, index: u32) -> Option<&Inst> {
        self.apps.get(app)?.instances.iter().find(|i| i.index == index)
    }

    pub(super) fn inst_mut(&mut self, app: &str, index: u32) -> Option<&mut Inst> {
        self.apps.get_mut(app)?.instances.iter_mut().find(|i| i.index == index)
    }

    pub(super) fn delete(&mut self, name: &str) {
        if let Some(app) = self.apps.get_mut(name) {
            app.deleting = true;
        }
        self.feed_app(name, &Fact::Delete);
    }

    pub fn control(&mut self, target: &Target, op: Op) -> Result<Vec<String>, Error> {
        if let Target::Instance(app, index) = target {
            return self.control_instance(app, *index, op);
        }
        let mut names: Vec<String> = match target {
            Target::All => self.apps.iter().filter(|(_, a)| !a.deleting).map(|(n, _)| n.clone()).collect(),
            Target::App(n) if self.apps.contains_key(n) => vec![n.clone()],
            Target::App(n) | Target::Instance(n, _) => return Err(Error::UnknownApp(n.clone())),
        };
        // A renew (`watch`, `cron_restart`) of an app `l4ctl stop` stopped does nothing.
        if op == Op::Renew {
            names.retain(|n| !self.saved.stopped.contains(n));
        }
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
                // Only what runs: what `l4ctl stop` stopped stays stopped.
                Op::Renew => {
                    let running: Vec<u32> = self.apps.get(name).map_or_else(Vec::new, |a| {
                        a.instances.iter().filter(|i| !self.held_stopped(name, i)).map(|i| i.index).collect()
                    });
                    for index in running {
                        self.feed(name, index, Fact::Restart);
                    }
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

    /// Start, stop or restart one instance (`app:1`, or an id). Not remembered in the
    /// saved state, which holds whole apps: a restore starts every instance.
    fn control_instance(&mut self, app: &str, index: u32, op: Op) -> Result<Vec<String>, Error> {
        super::operator::instances_of(self, &Target::Instance(app.to_owned(), index))?;
        let fact = match op {
            Op::Start => Fact::Start,
            Op::Stop => Fact::Stop,
            Op::Restart | Op::Renew => Fact::Restart,
            Op::Delete => {
                return Err(Error::Invalid(format!(
                    "delete removes whole apps: `l4ctl scale {app} N` removes instances, `l4ctl stop {app}:{index}` stops this one"
                )));
            }
        };
        self.feed(app, index, fact);
        Ok(vec![app.to_owned()])
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
            Want::AllStopped => {
                self.retiring.is_empty()
                    && self
                        .apps
                        .values()
                        .all(|a| a.instances.iter().all(|i| matches!(i.lc.state, State::Stopped | State::Errored)))
            }
            Want::InstanceSettled(app, index) => self.inst(app, *index).is_none_or(|i| i.lc.state.is_settled()),
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
