//! Orphans: processes re-parented to the daemon (a child subreaper) that it did not
//! start, and the runs they may have come from. Where the daemon has no cgroup per run
//! ([`super::cgroup`]), this is how stopping a run still ends a process that left its
//! process group and cleared its environment (`setsid env -i ...`, so no `L4_TAG`).
//!
//! Each complete scan (every full sampling pass, and before the signals of a stop or
//! of a run's end are sent) records the members of every live run's tree, so a
//! process is known to come from exactly one run when a scan saw it, or an ancestor
//! of it, in that run's tree before it was re-parented, or when it is still in the run's
//! process group. One re-parented before any scan saw it (it escaped within one full
//! pass of being started) may have come from any run alive when it is first seen: all of
//! those are its runs. A run is alive until its clean-up (a stopping run whose main
//! process ended is alive while the rest of it drains, up to `kill_timeout`). A process
//! adrift gets its runs' stop signal when every run of it still alive is being signalled
//! at once, and SIGKILL as soon as none of them is alive: so it ends on the stop,
//! delete, restart or crash of the run it came from when that is known, and otherwise
//! once every run it may have come from has ended (at the latest when the daemon stops).
//!
//! The daemon's helpers and what they start ([`super::helpers`]) are never signalled,
//! nor, when the daemon is a container's init, an orphan no scan saw in a run's tree.
//! Pure: the supervisor feeds it the scans and carries out what it returns.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::Signal;

use super::procs::{self, Stat};
use crate::os::helpers::Registry;

/// A process: pid and start time (a pid is reused, the pair is not).
type Key = (i32, u64);

/// Where a process adrift came from, as far as the daemon can tell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    /// One of these runs (main pids, sorted): exactly one when it was seen in its tree.
    Runs(Vec<i32>),
    /// A helper of the daemon, or what one started: never signalled here.
    Helper,
}

#[derive(Debug, Default)]
pub struct Orphans {
    /// Every member of a live run's tree (its run) and of a helper's tree at the last
    /// scan.
    lineage: HashMap<Key, Origin>,
    /// Processes re-parented to the daemon and their descendants.
    adrift: HashMap<Key, Origin>,
}

/// What the daemon knows of its helpers ([`super::helpers`]).
pub trait Helpers {
    /// Whether `(pid, start)` is a helper itself.
    fn is_helper(&self, pid: i32, start: u64) -> bool;
    /// Whether a helper that runs a user's command was running at `start`.
    fn forking_at(&self, start: u64) -> bool;
}

/// The daemon's registry of helper processes (`os/helpers.rs`) is what the tracking asks.
impl Helpers for Registry {
    fn is_helper(&self, pid: i32, start: u64) -> bool {
        Registry::is_helper(self, pid, start)
    }

    fn forking_at(&self, start: u64) -> bool {
        Registry::forking_at(self, start)
    }
}

/// What the tracking knows, as data for a handover: `(pid, start, origin)` of the
/// last scan's lineage, and of the processes adrift.
pub type OrphansImage = (Vec<(i32, u64, Origin)>, Vec<(i32, u64, Origin)>);

impl Orphans {
    pub fn image(&self) -> OrphansImage {
        let flat = |m: &HashMap<Key, Origin>| m.iter().map(|((p, s), o)| (*p, *s, o.clone())).collect();
        (flat(&self.lineage), flat(&self.adrift))
    }

    pub fn from_image((lineage, adrift): OrphansImage) -> Orphans {
        let map = |v: Vec<(i32, u64, Origin)>| v.into_iter().map(|(p, s, o)| ((p, s), o)).collect();
        Orphans { lineage: map(lineage), adrift: map(adrift) }
    }

    /// One complete scan: `stats` of every process that may descend from the daemon
    /// (`me`), `runs` the runs still alive (their main pids, which are their process
    /// groups: a run stays alive until its clean-up, even after its main process ended).
    pub fn scan(&mut self, stats: &[Stat], me: i32, runs: &HashSet<i32>, helpers: &impl Helpers) {
        let children = procs::children_of(stats);
        let by_pid: HashMap<i32, &Stat> = stats.iter().map(|s| (s.pid, s)).collect();
        let key = |pid: i32| (pid, by_pid.get(&pid).map_or(0, |s| s.start));
        let ours = children.get(&me).map(Vec::as_slice).unwrap_or_default();
        let mut lineage = HashMap::new();
        // A run's tree from its main process while that is still our child (a reaped
        // main pid may belong to another process by now).
        for &run in ours.iter().filter(|p| runs.contains(p)) {
            for p in descendants(&children, run) {
                lineage.insert(key(p), Origin::Runs(vec![run]));
            }
        }
        for &helper in ours.iter().filter(|&&p| helpers.is_helper(p, key(p).1)) {
            for p in descendants(&children, helper) {
                lineage.insert(key(p), Origin::Helper);
            }
        }
        let mut every_run: Vec<i32> = runs.iter().copied().collect();
        every_run.sort_unstable();
        let mut adrift = HashMap::new();
        for &p in ours.iter().filter(|p| !runs.contains(p)) {
            let k = key(p);
            let group = by_pid.get(&p).map(|s| s.pgid).filter(|g| runs.contains(g));
            let origin = if let Some(known) = self.adrift.get(&k).or_else(|| lineage.get(&k)) {
                known.clone()
            } else if let Some(seen) = self.lineage.get(&k) {
                seen.clone()
            } else if let Some(group) = group {
                Origin::Runs(vec![group]) // still in its run's process group
            } else if helpers.forking_at(k.1) || me == 1 {
                // Started while a helper ran a user's command; or the daemon is a
                // container's init, which inherits every orphan of the container.
                Origin::Helper
            } else {
                Origin::Runs(every_run.clone())
            };
            for d in descendants(&children, p) {
                // A descendant that was adrift on its own before keeps what was known.
                let own = self.adrift.get(&key(d)).filter(|_| d != p).cloned();
                adrift.insert(key(d), own.unwrap_or_else(|| origin.clone()));
            }
        }
        self.lineage = lineage;
        self.adrift = adrift;
    }

    /// The members of run `run`'s tree at the last scan (its main pid first).
    pub fn members(&self, run: i32) -> Vec<i32> {
        let of_run = |o: &Origin| matches!(o, Origin::Runs(r) if r.as_slice() == [run]);
        let mut out: Vec<i32> = self.lineage.iter().filter(|(_, o)| of_run(o)).map(|((p, _), _)| *p).collect();
        out.sort_unstable_by_key(|p| (*p != run, *p));
        out
    }

    /// What to signal now, once the runs in `signalled` (main pid → signal) are: each
    /// process adrift whose runs still alive (in `runs`) all are in it (their signal,
    /// SIGKILL if one of them got it), and each one none of whose runs is alive (SIGKILL).
    pub fn due(&self, runs: &HashSet<i32>, signalled: &HashMap<i32, Signal>) -> Vec<(i32, Signal)> {
        let mut out: Vec<(i32, Signal)> = self
            .adrift
            .iter()
            .filter_map(|(&(pid, _), origin)| {
                let Origin::Runs(from) = origin else { return None };
                let mut signals = from.iter().filter(|r| runs.contains(r)).map(|r| signalled.get(r).copied());
                let first = signals.next();
                let rest: Option<Vec<Signal>> = signals.collect();
                match (first, rest) {
                    (None, _) => Some((pid, Signal::SIGKILL)),
                    (Some(Some(s)), Some(rest)) => {
                        Some((pid, if rest.contains(&Signal::SIGKILL) { Signal::SIGKILL } else { s }))
                    }
                    _ => None,
                }
            })
            .collect();
        out.sort_unstable_by_key(|(p, _)| *p);
        out
    }
}

/// `root` and every process below it in `children`.
fn descendants(children: &HashMap<i32, Vec<i32>>, root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut seen = HashSet::from([root]);
    let mut i = 0;
    while i < out.len() {
        for &c in children.get(&out[i]).into_iter().flatten() {
            if seen.insert(c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "orphans_tests.rs"]
mod tests;
