//! Orphans: processes re-parented to the daemon (a child subreaper) that it did not
//! start, and the runs they may have come from. Where the daemon has no cgroup per run
//! ([`super::cgroup`]), this is how stopping a run still ends a process that left its
//! process group and cleared its environment (`setsid env -i ...`, so no `L4_TAG`).
//!
//! Each complete scan (every full sampling pass, and before the signals of a stop or
//! of a run's end are sent) records the members of every live run's tree, so a
//! process is known to come from exactly one run when a scan saw it, or an ancestor
//! of it, in that run's tree before it was re-parented. One re-parented before any scan
//! saw it (it escaped within one full pass of being started) may have come from any
//! run alive when it is first seen: all of those are its runs. A process adrift gets its
//! runs' stop signal when every run of it still alive is being signalled at once, and
//! SIGKILL as soon as none of them is alive: so it ends on the stop, delete, restart or
//! crash of the run it came from when that is known, and otherwise once every run it
//! may have come from has ended (at the latest when the daemon stops).
//!
//! The daemon's helpers and what they start ([`super::helpers`]) are never signalled.
//! Pure: the supervisor feeds it the scans and carries out what it returns.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::Signal;

use super::procs::{self, Stat};

/// A process: pid and start time (a pid is reused, the pair is not).
type Key = (i32, u64);

/// Where a process adrift came from, as far as the daemon can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// One of these runs (main pids, sorted): exactly one when it was seen in its tree.
    Runs(Vec<i32>),
    /// A helper of the daemon, or what one started: never signalled here.
    Helper,
}

#[derive(Debug, Default)]
pub struct Orphans {
    /// Every member of a live run's tree at the last scan, with its run.
    lineage: HashMap<Key, i32>,
    /// Processes re-parented to the daemon and their descendants.
    adrift: HashMap<Key, Origin>,
}

impl Orphans {
    /// One complete scan: `stats` of every process that may descend from the daemon
    /// (`me`), `runs` the main pids of its live runs, `helper(pid, start)` whether a
    /// process is a helper or started while a forking one ran.
    pub fn scan(&mut self, stats: &[Stat], me: i32, runs: &HashSet<i32>, helper: impl Fn(i32, u64) -> bool) {
        let children = procs::children_of(stats);
        let starts: HashMap<i32, u64> = stats.iter().map(|s| (s.pid, s.start)).collect();
        let key = |pid: i32| (pid, starts.get(&pid).copied().unwrap_or(0));
        let mut lineage = HashMap::new();
        for &run in runs {
            for p in descendants(&children, run) {
                lineage.insert(key(p), run);
            }
        }
        let mut every_run: Vec<i32> = runs.iter().copied().collect();
        every_run.sort_unstable();
        let mut adrift = HashMap::new();
        for &p in children.get(&me).into_iter().flatten().filter(|p| !runs.contains(p)) {
            let k = key(p);
            let origin = if helper(k.0, k.1) {
                Origin::Helper
            } else if let Some(known) = self.adrift.get(&k) {
                known.clone()
            } else if let Some(&run) = self.lineage.get(&k) {
                Origin::Runs(vec![run])
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
        let mut out: Vec<i32> = self.lineage.iter().filter(|(_, r)| **r == run).map(|((p, _), _)| *p).collect();
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
