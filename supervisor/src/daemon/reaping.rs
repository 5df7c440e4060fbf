//! Reaping and clean-up for the supervisor: every ended child is collected with
//! `waitpid(-1)` (ours, and orphans re-parented to us as subreaper), stop signals
//! reach tagged processes outside their group, and strays of finished runs are
//! killed in one `/proc` scan per message.

use nix::sys::signal::Signal;

use super::procs;
use super::supervisor::Supervisor;
use crate::lifecycle::Fact;

impl Supervisor {
    /// Collect every ended child; feed the exits of ours to their instances.
    pub(super) fn reap(&mut self) {
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
    pub(super) fn sweep(&mut self) {
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
    pub(super) fn signal_strays(&mut self) {
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
}
