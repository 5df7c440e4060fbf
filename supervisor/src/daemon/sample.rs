//! Sampling instances: CPU, RSS and threads of each instance's whole process
//! tree (the worker, its process group, and every descendant, so children under
//! `npm start` or `sh -c` count), and the worker's open file descriptors.
//!
//! A pass lists `/proc` once and reads `stat` only for processes that may belong
//! to an instance: a process seen once and found unrelated is skipped until its
//! pid disappears, because an unrelated process never becomes a descendant of a
//! worker. So a pass costs one directory read plus a `stat` read per process of
//! the instances, not per process of the host.

use std::collections::{HashMap, HashSet};

use super::procs::{self, Stat};

/// The figures of one instance's tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub rss_bytes: u64,
    /// Sum of utime + stime of the live members, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Open file descriptors of the worker itself.
    pub fds: Option<u64>,
    /// Members, root first.
    pub pids: Vec<i32>,
}

#[derive(Debug)]
pub struct Sampler {
    unrelated: HashSet<i32>,
    page_size: u64,
}

impl Sampler {
    pub fn new(page_size: u64) -> Sampler {
        Sampler { unrelated: HashSet::new(), page_size }
    }

    /// Sample the trees of `roots` (`(instance id, worker pid)`).
    pub fn sample(&mut self, roots: &[(u32, i32)]) -> HashMap<u32, TreeSample> {
        let present: HashSet<i32> = procs::all_pids().into_iter().collect();
        self.unrelated.retain(|p| present.contains(p));
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
        let mut related: HashSet<i32> = HashSet::new();
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
            out.insert(id, self.sum(&members, &stats));
        }
        for p in stats.keys().filter(|p| !related.contains(p)) {
            self.unrelated.insert(*p);
        }
        out
    }

    /// Re-read only the known `pids` of one tree (fast checks near a memory ceiling).
    pub fn resample(&self, pids: &[i32]) -> TreeSample {
        let stats: HashMap<i32, Stat> = pids.iter().filter_map(|&p| procs::read_stat(p).map(|s| (p, s))).collect();
        let live: Vec<i32> = pids.iter().copied().filter(|p| stats.contains_key(p)).collect();
        self.sum(&live, &stats)
    }

    fn sum(&self, members: &[i32], stats: &HashMap<i32, Stat>) -> TreeSample {
        let mut t = TreeSample { pids: members.to_vec(), ..TreeSample::default() };
        for s in members.iter().filter_map(|p| stats.get(p)) {
            t.rss_bytes += s.rss_pages * self.page_size;
            t.cpu_ticks += s.cpu_ticks;
            t.threads += s.threads;
        }
        t.fds = members
            .first()
            .and_then(|root| std::fs::read_dir(format!("/proc/{root}/fd")).ok())
            .map(|d| d.count() as u64);
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
            let t = sampler.sample(&[(7, root)]).remove(&7).unwrap();
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
