//! The actor's side of handing the daemon over to its next program (`l4ctl update`,
//! or the same program again after a panic): [`Supervisor::freeze`] turns the
//! process table into a [`DaemonImage`] and stops the actor for good (the
//! composition root then execs, [`crate::handover`]); [`Supervisor::adopt`] builds
//! the table back from one in the new program. Reads and writes every field that
//! outlives a run: `apps`, `saved`, `run_id`, `next_id`, `serial`, `rng`, `owned`,
//! `strays`, `retiring`, `sockets`, `logs`, `notify_fd`, `node_ipc`,
//! `restarts_at_summary`, `frozen`.
//!
//! `l4ctl update` hands over only a settled daemon: nothing starting, stopping or
//! being replaced ([`Error::Busy`] otherwise; `l4ctl update` waits and asks again).
//! After a panic there is no waiting: everything under way is carried too, and
//! picked up again on adoption (a readiness probe, a stop's wait for its group, a
//! replaced run's kill timer; a start the panic cut short counts as a failed spawn).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::supervisor::{App, Retiring, Supervisor};
use super::{Error, Msg, SavedState};
use crate::config::AppSpec;
use crate::lifecycle::image::{LifecycleImage, instant, offset};
use crate::lifecycle::{Action, Fact, Lifecycle, State};
use crate::logs::LogHub;

/// The process table as the next program reads it. Instants are nanoseconds from the
/// handover's reference instant ([`crate::handover`] maps it through `CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonImage {
    pub run_id: String,
    pub next_id: u32,
    pub serial: u64,
    pub rng: u64,
    pub restarts_at_summary: u64,
    pub saved: SavedState,
    pub apps: Vec<AppImage>,
    /// Sockets held for instances: `(app, index, address, descriptor)`.
    pub sockets: Vec<(String, u32, std::net::SocketAddr, i32)>,
    /// Children still to reap: `(pid, app, index)`.
    pub owned: Vec<(i32, String, u32)>,
    /// Old runs of finished replaces still stopping.
    pub retiring: Vec<RetiringImage>,
    /// Signals owed to processes outside their run's group: `(tag, pgid, signal)`.
    pub strays: Vec<(String, Option<i32>, i32)>,
    /// The notify socket's descriptor.
    pub notify_fd: Option<i32>,
    /// Node runs' IPC channels: `(main pid, descriptor)`.
    pub node_ipc: Vec<(u32, i32)>,
    /// Without cgroups: the orphan tracking; and the daemon's helpers.
    #[serde(default)]
    pub orphans: super::orphans::OrphansImage,
    #[serde(default)]
    pub helpers: Vec<(i32, u64, bool, Option<u64>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppImage {
    pub spec: AppSpec,
    /// The environment the spec was resolved with (the spec's own form leaves it out).
    pub env: BTreeMap<String, String>,
    pub source: PathBuf,
    pub env_name: Option<String>,
    pub deleting: bool,
    pub instances: Vec<InstImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstImage {
    pub id: u32,
    pub index: u32,
    pub lc: LifecycleImage,
    pub tag: String,
    pub pgid: Option<i32>,
    /// Pending lifecycle timers: `(epoch, due)`.
    pub timers: Vec<(u64, i64)>,
    /// The end of the current run's stderr (for its crash report).
    pub tail: Vec<u8>,
    /// The old run serving while a replacement starts.
    pub retiree: Option<RetiringImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetiringImage {
    pub app: String,
    pub index: u32,
    pub pid: i32,
    pub pgid: Option<i32>,
    pub tag: String,
    pub tail: Vec<u8>,
    pub backstopped: bool,
}

impl RetiringImage {
    fn of(r: &Retiring) -> RetiringImage {
        RetiringImage {
            app: r.app.clone(),
            index: r.index,
            pid: r.pid,
            pgid: r.pgid,
            tag: r.tag.clone(),
            tail: Vec::new(),
            backstopped: r.backstopped,
        }
    }

    fn back(self, watched: bool) -> Retiring {
        Retiring {
            usage: crate::monitor::usage::Usage::fresh(self.pid, watched),
            tail: Some(tail_of(&self.tail)),
            app: self.app,
            index: self.index,
            pid: self.pid,
            pgid: self.pgid,
            tag: self.tag,
            backstopped: self.backstopped,
        }
    }
}

fn tail_of(bytes: &[u8]) -> std::sync::Arc<crate::crash::Tail> {
    let tail = std::sync::Arc::new(crate::crash::Tail::default());
    tail.push(bytes);
    tail
}

/// A frozen actor's parts: the image, the log hub (its pipes are taken back next) and
/// the runs' stderr tails, copied into the image once the pipes no longer feed them
/// ([`DaemonImage::fill_tails`]).
#[derive(Debug)]
pub struct Frozen {
    pub image: DaemonImage,
    pub logs: LogHub,
    pub tails: Tails,
}

/// Where each tail goes in the image.
#[derive(Debug, Default)]
pub struct Tails(Vec<(Slot, std::sync::Arc<crate::crash::Tail>)>);

#[derive(Debug, Clone, Copy)]
enum Slot {
    Inst(usize, usize),
    Retiree(usize, usize),
    Retiring(usize),
}

impl DaemonImage {
    /// Whatever adoption converts converts (lifecycles, timers, signals), so that a
    /// bad image is refused before anything is taken over.
    #[cold]
    #[inline(never)]
    pub fn check(&self, reference: Instant) -> Result<(), String> {
        for app in &self.apps {
            for i in &app.instances {
                Lifecycle::from_image(&i.lc, reference).map_err(|e| format!("{}:{}: {e}", app.spec.name, i.index))?;
                if i.timers.iter().any(|(_, due)| instant(*due, reference).is_none()) {
                    return Err(format!("{}:{}: a timer out of range", app.spec.name, i.index));
                }
            }
        }
        for (_, _, signal) in &self.strays {
            nix::sys::signal::Signal::try_from(*signal).map_err(|e| format!("signal {signal}: {e}"))?;
        }
        Ok(())
    }

    /// Copy every run's stderr tail in, as it is now.
    #[cold]
    #[inline(never)]
    pub fn fill_tails(&mut self, tails: Tails) {
        for (slot, tail) in tails.0 {
            let bytes = tail.bytes();
            match slot {
                Slot::Inst(a, i) => self.apps[a].instances[i].tail = bytes,
                Slot::Retiree(a, i) => {
                    if let Some(r) = &mut self.apps[a].instances[i].retiree {
                        r.tail = bytes;
                    }
                }
                Slot::Retiring(r) => self.retiring[r].tail = bytes,
            }
        }
    }
}

/// What [`Supervisor::adopt`] leaves to the caller: the notify socket.
pub(super) struct Adopted {
    pub notify: Option<OwnedFd>,
}

impl Supervisor {
    /// Stop for a handover: the image of every app, and the log hub (its pipes are
    /// taken back next, off the actor). Unless `force`, only a settled daemon. From
    /// now on the actor handles no message: the process is about to exec.
    #[cold]
    #[inline(never)]
    pub(super) fn freeze(&mut self, reference: Instant, force: bool) -> Result<Frozen, Error> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if !force {
            self.settled()?;
        }
        let (mut apps, mut tails) = (Vec::new(), Tails::default());
        for (a, app) in self.apps.values_mut().enumerate() {
            let mut instances = Vec::new();
            for (i, inst) in app.instances.iter_mut().enumerate() {
                tails.0.extend(inst.tail.clone().map(|t| (Slot::Inst(a, i), t)));
                tails.0.extend(inst.retiree.as_ref().and_then(|r| r.tail.clone()).map(|t| (Slot::Retiree(a, i), t)));
                let epoch = inst.lc.epoch;
                inst.timers.retain(|(e, _)| *e == epoch);
                instances.push(InstImage {
                    id: inst.id,
                    index: inst.index,
                    lc: inst.lc.image(reference),
                    tag: inst.tag.clone(),
                    pgid: inst.pgid,
                    timers: inst.timers.iter().map(|(e, due)| (*e, offset(*due, reference))).collect(),
                    tail: Vec::new(),
                    retiree: inst.retiree.as_ref().map(RetiringImage::of),
                });
            }
            apps.push(AppImage {
                spec: app.spec.clone(),
                env: app.spec.env.clone(),
                source: app.source.clone(),
                env_name: app.env.clone(),
                deleting: app.deleting,
                instances,
            });
        }
        self.frozen = true;
        let retiring: Vec<&Retiring> = self.retiring.values().collect();
        for (r, old) in retiring.iter().enumerate() {
            tails.0.extend(old.tail.clone().map(|t| (Slot::Retiring(r), t)));
        }
        let image = DaemonImage {
            run_id: self.run_id.clone(),
            next_id: self.next_id,
            serial: self.serial,
            rng: self.rng,
            restarts_at_summary: self.restarts_at_summary,
            saved: self.saved.clone(),
            apps,
            sockets: self.sockets.held(),
            owned: self.owned.iter().map(|(pid, (app, index))| (*pid, app.clone(), *index)).collect(),
            retiring: retiring.into_iter().map(RetiringImage::of).collect(),
            strays: self.strays.iter().map(|s| (s.tag.clone(), s.pgid, s.signal as i32)).collect(),
            notify_fd: self.notify_fd.as_ref().map(AsRawFd::as_raw_fd),
            node_ipc: self.node_ipc.iter().map(|(pid, fd)| (*pid, fd.as_raw_fd())).collect(),
            orphans: self.orphans.image(),
            helpers: crate::os::helpers::snapshot(),
        };
        Ok(Frozen { image, logs: std::mem::replace(&mut self.logs, LogHub::closed()), tails })
    }

    /// Nothing is in the middle of a start, a stop or a replace.
    fn settled(&self) -> Result<(), Error> {
        for (name, app) in &self.apps {
            for i in &app.instances {
                if !i.lc.state.is_settled() || i.lc.retiree.is_some() || i.retiree.is_some() {
                    return Err(Error::Busy(format!(
                        "{name}:{} is {}; the daemon is handed over once nothing starts, stops or is replaced",
                        i.index, i.lc.state
                    )));
                }
            }
        }
        if !self.strays.is_empty() {
            return Err(Error::Busy("signals to processes of a stop are still owed; try again".to_owned()));
        }
        if self.crashes.in_flight > 0 {
            return Err(Error::Busy("a crash report is being made; try again".to_owned()));
        }
        if let Some(pid) = self.retiring.keys().next() {
            return Err(Error::Busy(format!("the old run {pid} of a reload is still stopping; try again")));
        }
        Ok(())
    }

    /// Build the table back from a previous program's image: every instance as it
    /// was, its timers armed again, its pipes read again (`pipes`), its sockets held;
    /// then pick up what was under way.
    #[cold]
    #[inline(never)]
    pub(super) fn adopt(&mut self, a: super::Adopt) -> Result<Adopted, String> {
        let super::Adopt { image, reference, mut pipes, counters, sockets, notify, node_ipc } = a;
        self.run_id = image.run_id;
        self.serial = image.serial;
        self.rng = image.rng;
        self.restarts_at_summary = image.restarts_at_summary;
        self.saved = image.saved;
        for ((app, index, addr, _), fd) in image.sockets.into_iter().zip(sockets) {
            self.sockets.adopt(&app, index, addr, fd);
        }
        self.owned = image.owned.into_iter().map(|(pid, app, index)| (pid, (app, index))).collect();
        self.orphans = super::orphans::Orphans::from_image(image.orphans);
        crate::os::helpers::restore(&image.helpers);
        for (tag, pgid, signal) in image.strays {
            let signal = nix::sys::signal::Signal::try_from(signal).map_err(|e| e.to_string())?;
            self.strays.push(super::reaping::Stray { tag, pgid, signal });
        }
        self.strays_now = !self.strays.is_empty();
        let mut pending = Vec::new();
        for a in image.apps {
            let mut spec = a.spec;
            spec.env = a.env;
            let name = spec.name.clone();
            let watched = spec.max_memory_restart.is_some();
            self.logs.ensure(&name, &spec.logs);
            if let Some(c) = counters.get(&name) {
                self.logs.restore_counters(&name, c);
            }
            let mut instances = Vec::new();
            for i in a.instances {
                let mut inst = self.new_inst(i.index);
                inst.id = i.id;
                inst.lc = Lifecycle::from_image(&i.lc, reference)?;
                inst.tag = i.tag;
                inst.pgid = i.pgid;
                let tail = tail_of(&i.tail);
                inst.tail = Some(tail.clone());
                inst.retiree = i.retiree.map(|r| r.back(watched));
                if let Some(pid) = inst.lc.pid {
                    inst.usage = crate::monitor::usage::Usage::fresh(pid as i32, watched);
                }
                let (mine, rest): (Vec<_>, Vec<_>) =
                    pipes.into_iter().partition(|p| p.app == name && p.instance == inst.index);
                pipes = rest;
                // A tail no handed-over stderr pipe feeds any more is complete.
                let fed = |run: &str| mine.iter().any(|p| p.run == run && p.stream == crate::logs::Stream::Err);
                if !fed(&inst.tag) {
                    tail.close();
                }
                if let Some(old) = inst.retiree.as_ref().filter(|r| !fed(&r.tag)).and_then(|r| r.tail.as_ref()) {
                    old.close();
                }
                for pipe in mine {
                    let current = pipe.run == inst.tag;
                    let retiree = inst.retiree.as_ref().filter(|r| r.tag == pipe.run).and_then(|r| r.tail.clone());
                    self.logs.adopt(pipe, Some(if current { tail.clone() } else { retiree.unwrap_or_default() }));
                }
                for (epoch, due) in i.timers {
                    let due = instant(due, reference).ok_or("a timer out of range")?;
                    inst.timers.push((epoch, due));
                    super::carry::arm_timer(&self.tx, inst.id, epoch, due);
                }
                pending.push((name.clone(), inst.index, inst.lc.state, inst.lc.pid));
                instances.push(inst);
            }
            self.apps.insert(name, App { spec, source: a.source, env: a.env_name, instances, deleting: a.deleting });
        }
        self.next_id = image.next_id;
        for r in image.retiring {
            let limit = self.apps.get(&r.app).map(|a| a.spec.restart.kill_timeout).unwrap_or_default();
            let watched = self.apps.get(&r.app).is_some_and(|a| a.spec.max_memory_restart.is_some());
            let (tx, pid) = (self.tx.clone(), r.pid);
            self.retiring.insert(pid, r.back(watched));
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                let _ = tx.send(Msg::RetireeTimer { pid }).await;
            });
        }
        for (pid, fd) in node_ipc {
            let ours = std::os::unix::net::UnixStream::from(fd);
            if let Ok(copy) = std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned() {
                self.node_ipc.insert(pid, copy);
            }
            super::ready::listen_node_ipc(ours, pid, self.tx.clone());
        }
        for pipe in pipes {
            tracing::warn!(app = %pipe.app, instance = pipe.instance, "a handed-over pipe of no instance; closed");
        }
        // What a panic cut short: a start with no process is a failed spawn; a stop
        // whose main process is gone waits for its group again; a start that waits to
        // be ready is probed again (its timeout is among the timers).
        for (app, index, state, pid) in pending {
            match (state, pid) {
                (State::Starting, None) => {
                    let error = "the daemon stopped while starting it".to_owned();
                    self.feed(&app, index, Fact::SpawnFailed { error });
                }
                (State::Stopping, None) => self.execute_await(&app, index),
                (State::Starting, Some(_)) => self.execute_replace(&app, index, Action::AwaitReady),
                _ => {}
            }
        }
        self.arm_fast_sample();
        Ok(Adopted { notify })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_spec_reads_back_from_the_handover_as_the_same_spec() {
        let dir = tempfile::tempdir().unwrap();
        let toml = r#"
[[apps]]
name = "web"
script = "server.js"
args = ["--fast"]
instances = 3
port = 3000
ready = "notify"
max_memory_restart = "512M"
kill_signal = "SIGINT"
autorestart = "always"
stop_exit_codes = [0, 3]
min_uptime = "1500ms"
watch = ["."]
cron_restart = "0 3 * * *"
[apps.env]
SECRET = "s3cr3t"
[apps.log_rotate]
max_size = "10M"
interval = "daily"
retain = 5
compress = true
"#;
        let file = dir.path().join("l4.toml");
        std::fs::write(&file, toml).unwrap();
        let spec = crate::config::load(&file, None).unwrap().apps.remove(0);
        let image = AppImage {
            spec: spec.clone(),
            env: spec.env.clone(),
            source: file,
            env_name: None,
            deleting: false,
            instances: vec![],
        };
        let back: AppImage = serde_json::from_str(&serde_json::to_string(&image).unwrap()).unwrap();
        let mut read = back.spec;
        assert!(read.env.is_empty(), "the spec's own form leaves the environment out");
        read.env = back.env;
        assert_eq!(read, spec);
    }
}
