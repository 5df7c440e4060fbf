//! Telling a kernel OOM kill from any other SIGKILL. The OOM killer leaves nothing
//! in the victim's exit status but SIGKILL; its memory cgroup counts the kill
//! (`oom_kill` in `memory.events` on cgroup v2, in `memory.oom_control` on v1).
//! Workers run in the daemon's memory cgroup or below it (the per-run cgroups of
//! `daemon::cgroup` enable no controller, and v2's counter covers the subtree), so the
//! daemon watches its own cgroup's counter: a worker that died of SIGKILL while the counter moved past
//! what earlier deaths accounted for (and past its value at the last half-minute
//! resync) was OOM-killed.

use std::path::{Path, PathBuf};

/// The `oom_kill` counter of one memory cgroup and how many kills are accounted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    pub file: PathBuf,
    seen: u64,
}

impl OomCounter {
    /// The counter of this process's memory cgroup, when one is readable.
    pub fn of_self() -> Option<OomCounter> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let file = counter_file(&text, Path::new("/sys/fs/cgroup"))?;
        let seen = read(&file)?;
        Some(OomCounter { file, seen })
    }

    /// Forget kills nobody's death claimed (a worker's child, a process being
    /// stopped): called every half minute, so such a kill cannot be pinned on an
    /// unrelated `kill -9` much later.
    pub fn resync(&mut self) {
        if let Some(now) = read(&self.file) {
            self.seen = now;
        }
    }

    /// A worker died of SIGKILL: was it the OOM killer? One counted kill explains
    /// one death.
    pub fn explains_a_kill(&mut self) -> bool {
        match read(&self.file) {
            Some(now) if now > self.seen => {
                self.seen += 1;
                true
            }
            _ => false,
        }
    }
}

fn read(file: &Path) -> Option<u64> {
    parse_oom_kill(&std::fs::read_to_string(file).ok()?)
}

/// The counter file for the cgroups in `proc_cgroup` (`/proc/<pid>/cgroup`) under
/// `root`: the v1 memory controller's `memory.oom_control` when there is one
/// (then v2 has no memory controller), else v2's `memory.events`, at the root or
/// under `unified/` (hybrid mounts).
pub fn counter_file(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            candidates.insert(0, root.join("memory").join(rel).join("memory.oom_control"));
        } else if controllers.is_empty() {
            candidates.push(root.join(rel).join("memory.events"));
            candidates.push(root.join("unified").join(rel).join("memory.events"));
        }
    }
    candidates.into_iter().find(|f| f.is_file())
}

/// `oom_kill N` from either file.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_counter_files_parse() {
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(parse_oom_kill("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"), Some(2));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn the_v1_memory_controller_wins_over_v2_and_missing_files_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/svc/a");
        let v2 = root.path().join("unified/svc/a");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.events"), "oom_kill 0\n").unwrap();
        let text = "4:memory:/svc/a\n1:cpu:/\n0::/svc/a\n";
        assert_eq!(counter_file(text, root.path()), Some(v2.join("memory.events")), "no v1 file yet");
        std::fs::write(v1.join("memory.oom_control"), "oom_kill 0\n").unwrap();
        assert_eq!(counter_file(text, root.path()), Some(v1.join("memory.oom_control")));
        assert_eq!(counter_file("0::/elsewhere\n", root.path()), None);
    }

    #[test]
    fn one_counted_kill_explains_one_death() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "oom_kill 1\n").unwrap();
        let mut c = OomCounter { file: file.clone(), seen: 1 };
        assert!(!c.explains_a_kill(), "a kill before we looked");
        std::fs::write(&file, "oom_kill 3\n").unwrap();
        assert!(c.explains_a_kill());
        assert!(c.explains_a_kill());
        assert!(!c.explains_a_kill(), "two kills, two deaths");
        std::fs::write(&file, "oom_kill 4\n").unwrap();
        c.resync();
        assert!(!c.explains_a_kill(), "a kill no death claimed before the resync");
    }
}
