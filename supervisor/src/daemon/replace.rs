//! The daemon's side of readiness and replacement: believing a `READY=1` or a
//! passed probe only from an instance's current run, setting the old run of a
//! replace aside, stopping it once its successor is ready (kill signal, then
//! SIGKILL after `kill_timeout`), and going back to it when the successor fails.

use nix::sys::signal::Signal;

use super::reaping::signal_run;
use super::supervisor::{Retiring, Supervisor};
use super::{Msg, procs};
use crate::config::Ready;
use crate::lifecycle::{Action, Fact};

impl Supervisor {
    /// A process said it is ready: feed it to the instance whose current run it
    /// is (the main process, or another member of its process group).
    pub(super) fn ready(&mut self, pid: i32) {
        let pgid = procs::read_stat(pid).map(|s| s.pgid);
        let found = self.apps.iter().find_map(|(name, a)| {
            a.instances.iter().find_map(|i| {
                let main = i.lc.pid? as i32;
                (main == pid || (pgid.is_some() && i.pgid == pgid)).then(|| (name.clone(), i.index, main as u32))
            })
        });
        match found {
            Some((app, index, main)) => {
                tracing::debug!(app = %app, instance = index, pid, "ready");
                self.feed(&app, index, Fact::Ready { pid: main });
            }
            None => tracing::debug!(pid, "READY=1 from a process that is no instance's current run"),
        }
    }

    /// Carry out the replace and readiness actions of one instance.
    pub(super) fn execute_replace(&mut self, app_name: &str, index: u32, action: Action) {
        if matches!(action, Action::StopRetiree | Action::Revert) {
            self.scan_before_signals();
        }
        let Some(app) = self.apps.get_mut(app_name) else { return };
        let spec = &app.spec;
        let Some(inst) = app.instances.iter_mut().find(|i| i.index == index) else { return };
        match action {
            Action::AwaitReady => {
                let (Some(pid), Some(port)) = (inst.lc.pid, spec.port_of(index)) else { return };
                if matches!(spec.ready, Ready::Http(_) | Ready::Tcp) {
                    let host = spec.listen.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
                    let host = if host.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { host };
                    let addr = std::net::SocketAddr::new(host, port);
                    super::ready::probe(spec.ready.clone(), addr, pid, spec.restart.listen_timeout, self.tx.clone());
                }
            }
            Action::Retire => {
                let Some(old) = inst.lc.retiree else { return };
                inst.retiree = Some(Retiring {
                    app: app_name.to_owned(),
                    index,
                    pid: old.pid as i32,
                    pgid: inst.pgid.take(),
                    tag: std::mem::take(&mut inst.tag),
                    usage: std::mem::take(&mut inst.usage),
                    tail: inst.tail.take(),
                    backstopped: false,
                });
            }
            Action::StopRetiree => {
                let Some(old) = inst.retiree.take() else { return };
                let (signal, limit) = (spec.kill_signal.0, spec.restart.kill_timeout);
                tracing::info!(app = %app_name, instance = index, pid = old.pid, "stopping the replaced run");
                signal_run(&mut self.strays, old.pgid, &old.tag, signal);
                self.strays_now = true;
                let (tx, pid) = (self.tx.clone(), old.pid);
                self.retiring.insert(pid, old);
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    let _ = tx.send(Msg::RetireeTimer { pid }).await;
                });
            }
            Action::Revert => {
                // The failed run: its whole group, now; its strays in this message's scan.
                let (pgid, tag) = (inst.pgid.take(), std::mem::take(&mut inst.tag));
                signal_run(&mut self.strays, pgid, &tag, Signal::SIGKILL);
                self.strays_now = true;
                if let Some(old) = inst.retiree.take() {
                    tracing::warn!(app = %app_name, instance = index, pid = old.pid, "replacement failed; the old run keeps serving");
                    inst.pgid = old.pgid;
                    inst.tag = old.tag;
                    inst.usage = old.usage;
                    inst.tail = old.tail;
                }
            }
            _ => {}
        }
    }

    /// The main process of a run set aside by a replace was reaped.
    /// Returns false when `pid` is no such run.
    pub(super) fn reap_retiree(&mut self, pid: i32, status: crate::lifecycle::ExitStatus) -> bool {
        if let Some(old) = self.retiring.get(&pid) {
            // Stopped after its successor became ready: done once its group is.
            if !procs::group_alive(old.pgid) {
                self.retiring.remove(&pid);
            }
            return true;
        }
        let serving = self.apps.iter_mut().find_map(|(name, a)| {
            a.instances.iter_mut().find(|i| i.retiree.as_ref().is_some_and(|r| r.pid == pid)).map(|i| (name.clone(), i))
        });
        let Some((app, inst)) = serving else { return false };
        // Still serving while its successor starts, and it died: clean up after it.
        let index = inst.index;
        if let Some(old) = &inst.retiree {
            signal_run(&mut self.strays, old.pgid, &old.tag, Signal::SIGKILL);
        }
        tracing::warn!(app = %app, instance = index, pid, ?status, "the old run ended while its replacement was starting");
        // Its crash report (made in `feed`) takes the old run's stderr tail from `retiree`.
        self.feed(&app, index, Fact::RetireeExited { status });
        if let Some(inst) = self.inst_mut(&app, index) {
            inst.retiree = None;
        }
        true
    }

    /// The kill timeout of a stopping old run is over: SIGKILL whatever is left.
    pub(super) fn retiree_timer(&mut self, pid: i32) {
        self.scan_before_signals();
        let Some(old) = self.retiring.remove(&pid) else { return };
        if procs::group_alive(old.pgid) || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
            tracing::warn!(app = %old.app, instance = old.index, pid, "the replaced run did not stop in time; SIGKILL");
        }
        signal_run(&mut self.strays, old.pgid, &old.tag, Signal::SIGKILL);
    }
}
