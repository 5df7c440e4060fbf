//! Reaping and clean-up for the supervisor: every ended child is collected with
//! `waitpid(-1)` (ours, and orphans re-parented to us as subreaper), stop signals
//! reach tagged processes outside their group, and strays of finished runs are
//! killed, all in one `/proc` scan per message; the same scan feeds the orphan
//! tracking ([`super::orphans`]), which ends what the stopped runs left adrift.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::Signal;

use super::supervisor::Supervisor;
use super::{helpers, procs};
use crate::lifecycle::Fact;

impl Supervisor {
    /// Collect every ended child; feed the exits of ours to their instances.
    pub(super) fn reap(&mut self) {
        for (pid, status) in procs::reap_all() {
            self.node_ipc.remove(&(pid as u32));
            let Some((app, index)) = self.owned.remove(&pid) else {
                tracing::debug!(pid, ?status, "reaped an orphan or a helper");
                helpers::reaped(pid);
                continue;
            };
            if self.reap_retiree(pid, status) {
                continue;
            }
            if self.inst(&app, index).and_then(|i| i.lc.pid) == Some(pid as u32) {
                tracing::info!(app = %app, instance = index, pid, ?status, "process exited");
                self.feed(&app, index, Fact::Exited { status });
            }
        }
    }

    /// Signal the tagged processes of this message's stops and finished runs that
    /// are outside their process group (the group itself was signalled at once):
    /// one `/proc` scan for all of them. A finished run whose replacement is starting
    /// leaves its SIGKILL for the next message, so a restart neither waits for the
    /// scan (it reads every process's environment) nor competes with it for the CPU.
    pub(super) fn signal_strays(&mut self) {
        self.strays_now = false;
        if self.strays.is_empty() {
            return;
        }
        let strays = std::mem::take(&mut self.strays);
        // A run being killed: everything in its cgroup ends, whatever group or
        // environment it moved to.
        if let Some(cgroups) = &mut self.cgroups {
            for s in strays.iter().filter(|s| s.signal == Signal::SIGKILL) {
                cgroups.kill(&s.tag);
            }
        }
        let entries: Vec<String> = strays.iter().map(|s| format!("{}={}", procs::TAG_VAR, s.tag)).collect();
        let mut done = HashSet::new();
        for (pid, i) in procs::tagged_pids(&entries) {
            let Stray { pgid, signal, .. } = strays[i];
            tracing::info!(pid, signal = signal.as_str(), "signalling a process outside its instance's group");
            // Members of the group were reached by `killpg` already: never signal twice.
            procs::signal_outside(pgid, &[pid], signal);
            done.insert(pid);
        }
        // Without a cgroup per run, what left both the group and the environment: the
        // runs' trees as scanned now, and what is adrift from them.
        if self.cgroups.is_some() {
            return;
        }
        let signalled: HashMap<i32, Signal> = strays.iter().filter_map(|s| Some((s.pgid?, s.signal))).collect();
        self.scan_orphans(procs::all_stats());
        for s in &strays {
            let Some(run) = s.pgid else { continue };
            let outside: Vec<i32> = self.orphans.members(run).into_iter().filter(|p| !done.contains(p)).collect();
            procs::signal_outside(s.pgid, &outside, s.signal);
            done.extend(outside);
        }
        self.end_adrift(&signalled, &done);
    }

    /// Without a cgroup per run, scan once per message before its first stop signal:
    /// a run's processes outside its group are re-parented the moment its main
    /// process dies, and the scan must see them still in its tree.
    pub(super) fn scan_before_signals(&mut self) {
        if self.cgroups.is_none() && !self.scanned_before_signals {
            self.scanned_before_signals = true;
            self.scan_orphans(procs::all_stats());
        }
    }

    /// Feed one complete scan of the daemon's descendants to the orphan tracking.
    pub(super) fn scan_orphans(&mut self, stats: Vec<procs::Stat>) {
        let runs = self.live_runs();
        self.orphans.scan(&stats, std::process::id() as i32, &runs, &helpers::Registry);
    }

    /// Signal what is adrift from runs that are signalled (`signalled`, by process
    /// group) or have all ended; `done` were signalled already, and members of the
    /// signalled groups were reached by `killpg`.
    pub(super) fn end_adrift(&mut self, signalled: &HashMap<i32, Signal>, done: &HashSet<i32>) {
        for (pid, signal) in self.orphans.due(&self.live_runs(), signalled) {
            let in_signalled_group = procs::read_stat(pid).is_some_and(|s| signalled.contains_key(&s.pgid));
            if !done.contains(&pid) && !in_signalled_group {
                tracing::info!(pid, signal = signal.as_str(), "signalling what an ended or stopping run left behind");
                procs::signal_outside(None, &[pid], signal);
            }
        }
    }

    /// The runs not cleaned up yet, by main pid (= process group): every group an
    /// instance, a replaced run still serving or an old run still stopping holds, and
    /// every main process not reaped yet. A stopping run whose main process ended is
    /// alive while the rest of it drains.
    fn live_runs(&self) -> HashSet<i32> {
        let mut runs: HashSet<i32> = self.owned.keys().copied().collect();
        for inst in self.apps.values().flat_map(|a| a.instances.iter()) {
            runs.extend(inst.pgid);
            runs.extend(inst.retiree.as_ref().and_then(|r| r.pgid));
        }
        runs.extend(self.retiring.values().filter_map(|r| r.pgid));
        runs
    }
}

/// Signal one run: its process group now (one syscall), the processes carrying its
/// `L4_TAG` outside the group in the next stray scan ([`Supervisor::signal_strays`]).
pub(super) fn signal_run(strays: &mut Vec<Stray>, pgid: Option<i32>, tag: &str, signal: Signal) {
    procs::signal_all(pgid, &[], signal);
    strays.push(Stray { tag: tag.to_owned(), pgid, signal });
}

/// A signal still owed to the processes of one run that left its process group.
#[derive(Debug)]
pub(super) struct Stray {
    /// The run's `L4_TAG` value (also names its cgroup).
    pub tag: String,
    pub pgid: Option<i32>,
    pub signal: Signal,
}
