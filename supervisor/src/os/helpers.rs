//! The daemon's own helper processes: `l4ctl-send` (crash report delivery) and the
//! `l4ctl nginx reload` that follows a scale. They are children of the daemon that no
//! app started, so the orphan tracking (`daemon/orphans.rs`) must never take them, or
//! what a helper's command left running (an nginx it started, which re-parents to the
//! daemon as child subreaper), for something an app left behind.
//!
//! A helper that runs only our code (`l4ctl-send`) counts alone; one that runs a
//! user's command (`forks`) counts with every process started while it ran. A registry
//! shared by the places that spawn helpers (a task of the API, the crash delivery):
//! the newest [`KEPT`] helpers are remembered, ended or not.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many helpers are remembered (a handful run at once; older ones have ended).
const KEPT: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Helper {
    pid: i32,
    /// Its start time, in clock ticks since boot (as in `/proc/<pid>/stat`).
    start: u64,
    /// It runs a user's command: what starts while it runs may be its own.
    forks: bool,
    /// When it was reaped (clock ticks since boot).
    end: Option<u64>,
}

static HELPERS: Mutex<VecDeque<Helper>> = Mutex::new(VecDeque::new());

fn helpers() -> std::sync::MutexGuard<'static, VecDeque<Helper>> {
    HELPERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A helper was spawned (call right after the spawn). `forks`: it runs a user's command.
pub fn spawned(pid: u32, forks: bool) {
    let pid = pid as i32;
    let Some(stat) = super::procs::read_stat(pid) else { return }; // already gone
    let mut all = helpers();
    if all.len() == KEPT {
        all.pop_front();
    }
    all.push_back(Helper { pid, start: stat.start, forks, end: None });
}

/// A child was reaped: if it was a helper, its window closes now.
pub fn reaped(pid: i32) {
    let now = boot_ticks();
    if let Some(h) = helpers().iter_mut().rev().find(|h| h.pid == pid && h.end.is_none()) {
        h.end = Some(now);
    }
}

/// Every helper remembered, `(pid, start, forks, end)`: what a handover passes on.
pub fn snapshot() -> Vec<(i32, u64, bool, Option<u64>)> {
    helpers().iter().map(|h| (h.pid, h.start, h.forks, h.end)).collect()
}

/// The helpers a previous program of this daemon remembered (before any spawn here).
pub fn restore(all: &[(i32, u64, bool, Option<u64>)]) {
    let mut kept = helpers();
    kept.clear();
    kept.extend(all.iter().rev().take(KEPT).rev().map(|&(pid, start, forks, end)| Helper { pid, start, forks, end }));
}

/// The registry, as the orphan tracking asks it.
#[derive(Debug, Clone, Copy)]
pub struct Registry;

impl Registry {
    /// Whether the process `pid` that started at `start` is a helper.
    pub fn is_helper(&self, pid: i32, start: u64) -> bool {
        helpers().iter().any(|h| h.pid == pid && h.start == start)
    }

    /// Whether a helper that runs a user's command was running at `start`.
    pub fn forking_at(&self, start: u64) -> bool {
        helpers().iter().any(|h| h.forks && h.start <= start && h.end.is_none_or(|end| start <= end))
    }
}

/// Clock ticks since boot (the clock of `/proc/<pid>/stat`'s start time).
fn boot_ticks() -> u64 {
    use nix::libc;
    let (ticks, _) = super::procs::clock_ticks_and_page_size();
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain system call writing to a valid local.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) } != 0 {
        return u64::MAX;
    }
    t.tv_sec as u64 * ticks + t.tv_nsec as u64 * ticks / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forking_helper_covers_what_starts_while_it_runs_and_a_plain_one_only_itself() {
        let stat = |pid: u32| super::super::procs::read_stat(pid as i32).unwrap();
        let mut plain = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        spawned(plain.id(), false);
        let p = stat(plain.id());
        assert!(Registry.is_helper(p.pid, p.start));
        assert!(!Registry.is_helper(p.pid, p.start + 1), "a reused pid is not the helper");
        assert!(!Registry.forking_at(p.start), "nothing else started with a plain helper");
        let mut forking = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        spawned(forking.id(), true);
        let f = stat(forking.id());
        assert!(Registry.is_helper(f.pid, f.start));
        assert!(Registry.forking_at(f.start) && Registry.forking_at(boot_ticks()), "started while it runs");
        assert!(!Registry.forking_at(f.start.saturating_sub(1)), "started before it");
        let _ = forking.kill();
        let _ = forking.wait();
        reaped(f.pid);
        assert!(!Registry.forking_at(boot_ticks() + 100), "started after it ended");
        let _ = plain.kill();
        let _ = plain.wait();
    }
}
