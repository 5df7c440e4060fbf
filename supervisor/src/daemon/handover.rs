//! The actor's side of handing the daemon over to its next program (`l4ctl update`):
//! [`Supervisor::freeze`] turns the process table into a [`DaemonImage`] and stops the
//! actor for good (the composition root then execs, [`crate::handover`]);
//! [`Supervisor::adopt`] builds the table back from one in the new program. Reads
//! and writes every field that outlives a run: `apps`, `saved`, `run_id`, `next_id`,
//! `serial`, `rng`, `owned`, `sockets`, `logs`, `restarts_at_summary`, `frozen`.
//!
//! Only a settled daemon is handed over: nothing starting, stopping or being
//! replaced ([`Error::Busy`] otherwise; `l4ctl update` waits and asks again). What is
//! left then is plain data, a few pending timers (a backoff's wait) and open
//! descriptors: the workers' pipes (taken back from their readers by the log hub)
//! and the sockets held for them.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::supervisor::{App, Supervisor};
use super::{Error, SavedState};
use crate::config::AppSpec;
use crate::lifecycle::image::{LifecycleImage, instant, offset};
use crate::lifecycle::{Lifecycle, State};
use crate::logs::LogHub;

/// The process table as the next program reads it. Instants are nanoseconds from the
/// handover's reference instant ([`crate::handover`] maps it through `CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
}

impl Supervisor {
    /// Stop for a handover: the image of every app, and the log hub (its pipes are
    /// taken back next, off the actor). Every descriptor the image names is kept
    /// across `exec`. From now on the actor handles no message: the process is about
    /// to become the next program.
    pub(super) fn freeze(&mut self, reference: Instant) -> Result<(DaemonImage, LogHub), Error> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        self.settled()?;
        let mut apps = Vec::new();
        for (name, app) in &mut self.apps {
            let mut instances = Vec::new();
            for inst in &mut app.instances {
                let epoch = inst.lc.epoch;
                inst.timers.retain(|(e, _)| *e == epoch);
                instances.push(InstImage {
                    id: inst.id,
                    index: inst.index,
                    lc: inst.lc.image(reference),
                    tag: inst.tag.clone(),
                    pgid: inst.pgid,
                    timers: inst.timers.iter().map(|(e, due)| (*e, offset(*due, reference))).collect(),
                    tail: inst.tail.as_ref().map(|t| t.bytes()).unwrap_or_default(),
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
            tracing::debug!(app = %name, "imaged for the handover");
        }
        let sockets = self.sockets.held();
        for (_, _, _, fd) in &sockets {
            // SAFETY: the socket stays open: `sockets` keeps it until the process execs.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            crate::os::exec::keep_across_exec(fd).map_err(|e| Error::Invalid(format!("cannot keep a socket: {e}")))?;
        }
        self.frozen = true;
        let image = DaemonImage {
            run_id: self.run_id.clone(),
            next_id: self.next_id,
            serial: self.serial,
            rng: self.rng,
            restarts_at_summary: self.restarts_at_summary,
            saved: self.saved.clone(),
            apps,
            sockets,
        };
        Ok((image, std::mem::replace(&mut self.logs, LogHub::closed())))
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
        if let Some(pid) = self.retiring.keys().next() {
            return Err(Error::Busy(format!("the old run {pid} of a reload is still stopping; try again")));
        }
        Ok(())
    }

    /// Build the table back from a previous program's image: every instance as it
    /// was, its timers armed again, its pipes read again (`pipes`), its sockets held.
    pub(super) fn adopt(
        &mut self,
        image: DaemonImage,
        reference: Instant,
        mut pipes: Vec<crate::logs::HeldPipe>,
        counters: &BTreeMap<String, crate::wire::types::LogCounters>,
        sockets: Vec<OwnedFd>,
    ) -> Result<(), String> {
        self.run_id = image.run_id;
        self.next_id = image.next_id;
        self.serial = image.serial;
        self.rng = image.rng;
        self.restarts_at_summary = image.restarts_at_summary;
        self.saved = image.saved;
        for ((app, index, addr, _), fd) in image.sockets.into_iter().zip(sockets) {
            self.sockets.adopt(&app, index, addr, fd);
        }
        for a in image.apps {
            let mut spec = a.spec;
            spec.env = a.env;
            let name = spec.name.clone();
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
                let tail = std::sync::Arc::new(crate::crash::Tail::default());
                tail.push(&i.tail);
                inst.tail = Some(tail.clone());
                if let Some(pid) = inst.lc.pid.filter(|_| inst.lc.state == State::Online) {
                    self.owned.insert(pid as i32, (name.clone(), inst.index));
                    let watched = spec.max_memory_restart.is_some();
                    inst.usage = crate::monitor::usage::Usage::fresh(pid as i32, watched);
                }
                let (mine, rest): (Vec<_>, Vec<_>) =
                    pipes.into_iter().partition(|p| p.app == name && p.instance == inst.index);
                pipes = rest;
                for pipe in mine {
                    let current = pipe.run == inst.tag;
                    self.logs.adopt(pipe, Some(if current { tail.clone() } else { Default::default() }));
                }
                for (epoch, due) in i.timers {
                    let due = instant(due, reference).ok_or("a timer out of range")?;
                    inst.timers.push((epoch, due));
                    super::carry::arm_timer(&self.tx, inst.id, epoch, due);
                }
                instances.push(inst);
            }
            self.apps.insert(name, App { spec, source: a.source, env: a.env_name, instances, deleting: a.deleting });
        }
        self.next_id = self.next_id.max(image.next_id);
        for pipe in pipes {
            tracing::warn!(app = %pipe.app, instance = pipe.instance, "a handed-over pipe of no instance; closed");
        }
        self.arm_fast_sample();
        Ok(())
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
