//! Sampling instances: CPU, RSS and threads of each instance's whole process
//! tree (the worker, its process group, and every descendant, so children under
//! `npm start` or `sh -c` count), and the worker's open file descriptors.
//!
//! A full pass lists `/proc` once and reads `stat` only for processes that may
//! belong to an instance: a process seen once and found unrelated is skipped
//! until its pid disappears, because an unrelated process never becomes a
//! descendant of a worker. Between full passes (every `FULL_EVERY` passes, or at
//! once for a new worker) only the known members of each tree are re-read, so an
//! idle daemon costs a few `stat` reads per instance per second; a new child of a
//! worker is found by the next full pass.

use std::collections::{HashMap, HashSet};

use crate::os::procs::{self, Stat};

/// The figures of one instance's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub rss_bytes: u64,
    /// Sum of utime + stime of the live members, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Open file descriptors of the worker itself (counted on full passes only).
    pub fds: Option<u64>,
    /// Members, root first.
    pub pids: Vec<i32>,
}

/// A full pass (listing `/proc`, counting fds) every this many passes.
pub const FULL_EVERY: u64 = 5;

#[derive(Debug)]
pub struct Sampler {
    unrelated: HashSet<i32>,
    page_size: u64,
    passes: u64,
    /// Members of each instance's tree at the last full pass, root first.
    members: HashMap<u32, Vec<i32>>,
    /// `/proc/<pid>/stat` of tree members, kept open: a `pread` is a third of the
    /// cost of open + read + close. Dropped when the process is gone.
    open_stats: HashMap<i32, std::fs::File>,
    /// What the last full pass read of every process that may descend from the
    /// daemon, until the supervisor takes it for the orphan tracking.
    scanned: Option<Vec<Stat>>,
    /// Keep `scanned` (only the orphan tracking, without cgroups, wants it).
    pub keep_scans: bool,
}

impl Sampler {
    pub fn new(page_size: u64) -> Sampler {
        Sampler {
            unrelated: HashSet::new(),
            page_size,
            passes: 0,
            members: HashMap::new(),
            open_stats: Default::default(),
            scanned: None,
            keep_scans: false,
        }
    }

    /// Sample the trees of `roots` (`(instance id, worker pid)`): a full pass now and
    /// then, or when a worker is new; otherwise only the known members are re-read.
    pub fn sample(&mut self, roots: &[(u32, i32)]) -> HashMap<u32, TreeSample> {
        self.passes += 1;
        let known = roots.iter().all(|(id, root)| self.members.get(id).is_some_and(|m| m.first() == Some(root)));
        if self.passes.is_multiple_of(FULL_EVERY) || !known {
            return self.full(roots);
        }
        let trees: Vec<(u32, Vec<i32>)> =
            roots.iter().map(|(id, _)| (*id, self.members.get(id).cloned().unwrap_or_default())).collect();
        trees.into_iter().map(|(id, pids)| (id, self.resample(&pids))).collect()
    }

    /// List `/proc` and rebuild every tree.
    pub fn full(&mut self, roots: &[(u32, i32)]) -> HashMap<u32, TreeSample> {
        let present: HashSet<i32> = procs::all_pids().into_iter().collect();
        self.unrelated.retain(|p| present.contains(p));
        // A worker may have got a pid that was an unrelated process's a moment ago.
        for (_, root) in roots {
            self.unrelated.remove(root);
        }
        let me = std::process::id() as i32;
        let stats: HashMap<i32, Stat> = present
            .iter()
            .filter(|p| !self.unrelated.contains(p) && **p != me)
            .filter_map(|&p| procs::read_stat(p).map(|s| (p, s)))
            .collect();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for s in stats.values() {
            children.entry(s.ppid).or_default().push(s.pid);
        }
        // Everything below the daemon stays related: a process re-parented to it (an
        // orphan, see `orphans`) belongs to no tree but must be read again.
        let mut related: HashSet<i32> = HashSet::new();
        let mut todo = vec![me];
        while let Some(p) = todo.pop() {
            for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
                if related.insert(c) {
                    todo.push(c);
                }
            }
        }
        let mut out = HashMap::new();
        for &(id, root) in roots {
            let mut members = vec![root];
            let mut seen: HashSet<i32> = HashSet::from([root]);
            // The group (children that moved under the daemon stay in it) ...
            for s in stats.values().filter(|s| s.pgid == root) {
                if seen.insert(s.pid) {
                    members.push(s.pid);
                }
            }
            // ... and every descendant of any member, whatever its group.
            let mut i = 0;
            while i < members.len() {
                for &c in children.get(&members[i]).map(Vec::as_slice).unwrap_or_default() {
                    if seen.insert(c) {
                        members.push(c);
                    }
                }
                i += 1;
            }
            members.retain(|p| stats.contains_key(p));
            related.extend(&members);
            let mut t = self.sum(&members, &stats);
            t.fds = members
                .first()
                .and_then(|root| std::fs::read_dir(format!("/proc/{root}/fd")).ok())
                .map(|d| d.count() as u64);
            self.members.insert(id, members);
            out.insert(id, t);
        }
        let live: HashSet<u32> = roots.iter().map(|(id, _)| *id).collect();
        self.members.retain(|id, _| live.contains(id));
        self.open_stats.retain(|pid, _| related.contains(pid));
        // A process whose parent was not read (it ended during the pass) may be
        // re-parented to the daemon: it is read again next time.
        let known_parent = |s: &Stat| s.ppid == 0 || stats.contains_key(&s.ppid) || self.unrelated.contains(&s.ppid);
        let unrelated: Vec<i32> =
            stats.values().filter(|s| !related.contains(&s.pid) && known_parent(s)).map(|s| s.pid).collect();
        self.unrelated.extend(unrelated);
        if self.keep_scans {
            self.scanned = Some(stats.into_values().filter(|s| related.contains(&s.pid)).collect());
        }
        out
    }

    /// What the last full pass read of the daemon's descendants, once.
    pub fn take_scan(&mut self) -> Option<Vec<Stat>> {
        self.scanned.take()
    }

    /// Re-read only the known `pids` of one tree (fast checks near a memory ceiling).
    pub fn resample(&mut self, pids: &[i32]) -> TreeSample {
        let stats: HashMap<i32, Stat> = pids.iter().filter_map(|&p| self.stat_kept_open(p).map(|s| (p, s))).collect();
        let live: Vec<i32> = pids.iter().copied().filter(|p| stats.contains_key(p)).collect();
        self.sum(&live, &stats)
    }

    /// `stat` of a tree member through a kept-open file. A process that ended reads as
    /// an error: its file is dropped (a reused pid gets a fresh open).
    fn stat_kept_open(&mut self, pid: i32) -> Option<Stat> {
        use std::os::unix::fs::FileExt;
        let files = &mut self.open_stats;
        if let std::collections::hash_map::Entry::Vacant(e) = files.entry(pid) {
            e.insert(std::fs::File::open(format!("/proc/{pid}/stat")).ok()?);
        }
        let mut buf = [0u8; 1024];
        match files.get(&pid).map(|f| f.read_at(&mut buf, 0)) {
            Some(Ok(n)) if n > 0 => procs::parse_stat(pid, &buf[..n]),
            _ => {
                files.remove(&pid);
                None
            }
        }
    }

    fn sum(&self, members: &[i32], stats: &HashMap<i32, Stat>) -> TreeSample {
        let mut t = TreeSample { pids: members.to_vec(), ..TreeSample::default() };
        for s in members.iter().filter_map(|p| stats.get(p)) {
            t.rss_bytes += s.rss_pages * self.page_size;
            t.cpu_ticks += s.cpu_ticks;
            t.threads += s.threads;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_its_children_and_unrelated_processes_are_skipped() {
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 5 & sleep 5 & wait"]).spawn().unwrap();
        let root = child.id() as i32;
        let (_, page) = procs::clock_ticks_and_page_size();
        let mut sampler = Sampler::new(page);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let tree = loop {
            let t = sampler.full(&[(7, root)]).remove(&7).unwrap();
            if t.pids.len() >= 3 || std::time::Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(tree.pids.len(), 3, "{tree:?}");
        assert_eq!(tree.pids[0], root);
        assert!(tree.rss_bytes > 0 && tree.threads >= 3);
        assert!(tree.fds.is_some_and(|n| n >= 3));
        assert!(sampler.unrelated.contains(&1), "init is unrelated and skipped next time");
        let again = sampler.resample(&tree.pids);
        assert_eq!(again.pids.len(), 3);
        let _ = child.kill();
        let _ = child.wait();
    }
}
