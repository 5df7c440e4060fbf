//! One cgroup v2 per run, where the daemon may make them, so that ending a run ends
//! everything it started: a process that leaves the run's process group (`setsid`)
//! and clears its environment (`env -i`, so no `L4_TAG`) still belongs to the run's
//! cgroup, and `cgroup.kill` ends it with the rest.
//!
//! The tree is `<the daemon's cgroup>/l4ctl-<home hash>/<daemon run>/app-<name>/i<index>/r<serial>`
//! in the cgroup v2 hierarchy (pure v2, or the `unified` one of a hybrid setup). No
//! controller is enabled in it, so it changes no accounting and no limit (the memory
//! cgroup of the daemon still holds the workers). A new run is moved into its cgroup
//! once the message that spawned it is handled, on a blocking thread, with every
//! process it has started meanwhile (its descendants, found in `/proc`): moving a
//! process takes the kernel an RCU grace period (~5-20 ms when nothing else moves),
//! which neither the spawn, the new run nor the daemon's thread (it also reads the
//! workers' pipes) waits for; the moves of one message share one grace period. A run
//! that ended is killed through `cgroup.kill` (Linux 5.14+) and its folder removed
//! once empty. At start, the folders of earlier daemons of this home are killed and
//! removed: the grandchildren of a SIGKILLed daemon end at its next start at the latest.
//!
//! Without a writable cgroup v2 (no root, no delegation, an old kernel), or with
//! `[daemon] cgroups = false`, the daemon relies on process groups, `L4_TAG` and the
//! orphan tracking (`daemon/orphans.rs`).

use std::path::{Path, PathBuf};

/// Where this daemon's cgroups go; `None` when cgroup v2 is not writable here.
#[derive(Debug)]
pub struct Cgroups {
    /// `l4ctl-<home hash>`: every daemon run of this home under it.
    home_dir: PathBuf,
    /// This daemon run's folder.
    run_dir: PathBuf,
    /// Run folders killed but not yet empty: removed on a later sweep.
    pending: Vec<PathBuf>,
    /// Runs spawned by the message being handled: (folder, main pid), moved at its end.
    adopted: Vec<(PathBuf, i32)>,
}

impl Cgroups {
    /// Make this run's folder under the daemon's own cgroup v2, and end the runs of
    /// earlier daemons of `home`. `None` (logged) when it cannot.
    pub fn start(home: &Path, run_id: &str) -> Option<Cgroups> {
        let (own, (root, mount)) = (own_v2_path()?, v2_mount()?);
        // Inside a cgroup namespace or a bind mount the mount shows the hierarchy from
        // `root` down: our path is relative to it.
        let below = own.strip_prefix(root.as_str()).unwrap_or(&own);
        let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
        let home_dir = mount.join(below.trim_start_matches('/')).join(format!("l4ctl-{:016x}", fnv(&home)));
        let run_dir = home_dir.join(run_id.replace('/', "-"));
        if let Err(e) = std::fs::create_dir_all(&run_dir) {
            tracing::info!(dir = %run_dir.display(), cause = %e, "no cgroup per run: processes that leave their group and environment can outlive a stop");
            return None;
        }
        if !run_dir.join("cgroup.kill").exists() {
            tracing::info!("no cgroup.kill (Linux < 5.14): no cgroup per run");
            let _ = std::fs::remove_dir(&run_dir);
            return None;
        }
        let mut cg = Cgroups { home_dir, run_dir, pending: Vec::new(), adopted: Vec::new() };
        cg.end_earlier_daemons();
        Some(cg)
    }

    /// The folder of one run (`tag` is `<daemon run>/<app>/<index>/<serial>`).
    fn dir_of(&self, tag: &str) -> Option<PathBuf> {
        let mut parts = tag.split('/').skip(1);
        let (app, index, serial) = (parts.next()?, parts.next()?, parts.next()?);
        Some(self.run_dir.join(format!("app-{app}")).join(format!("i{index}")).join(format!("r{serial}")))
    }

    /// A run was spawned: its folder is made now (a cheap `mkdir`), and it moves into
    /// it at the end of this message.
    pub fn adopt(&mut self, tag: &str, pid: i32) {
        let Some(dir) = self.dir_of(tag) else { return };
        match std::fs::create_dir_all(&dir) {
            Ok(()) => self.adopted.push((dir, pid)),
            Err(e) => tracing::warn!(dir = %dir.display(), cause = %e, "cannot make a run's cgroup"),
        }
    }

    /// Move the runs spawned by this message, and what they started meanwhile, into
    /// their folders, on a blocking thread: a move waits for an RCU grace period, and
    /// this thread also reads the workers' pipes.
    pub fn move_adopted(&mut self) {
        if self.adopted.is_empty() {
            return;
        }
        let adopted = std::mem::take(&mut self.adopted);
        tokio::task::spawn_blocking(move || move_into(adopted));
    }

    /// End every process of a run that ended or is being killed, and remove its folder
    /// once the kernel has emptied it.
    pub fn kill(&mut self, tag: &str) {
        let Some(dir) = self.dir_of(tag) else { return };
        if !dir.exists() {
            return;
        }
        if let Err(e) = std::fs::write(dir.join("cgroup.kill"), "1") {
            tracing::warn!(dir = %dir.display(), cause = %e, "cannot kill a run's cgroup");
        }
        if std::fs::remove_dir(&dir).is_err() && !self.pending.contains(&dir) {
            self.pending.push(dir);
        }
    }

    /// Remove the killed folders that are empty now (a cheap `rmdir` each).
    pub fn sweep(&mut self) {
        self.pending.retain(|dir| {
            remove_tree(dir);
            dir.exists()
        });
    }

    /// The daemon is ending and every app is stopped: end what is left, remove this
    /// run's tree, and the home's folder when no other run's is in it.
    pub fn close(self) {
        let _ = std::fs::write(self.run_dir.join("cgroup.kill"), "1");
        // Killed orphans are our children (subreaper) and keep their cgroup busy
        // until reaped: reap and retry for a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let _ = super::procs::reap_all();
            remove_tree(&self.run_dir);
            for dir in &self.pending {
                remove_tree(dir);
            }
            if !self.run_dir.exists() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir(&self.home_dir);
    }

    /// Kill and remove the trees of earlier daemons of this home (a SIGKILLed daemon
    /// leaves its workers' descendants behind).
    fn end_earlier_daemons(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.home_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == self.run_dir || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if populated(&path) {
                tracing::warn!(dir = %path.display(), "ending processes left by a previous daemon");
                let _ = std::fs::write(path.join("cgroup.kill"), "1");
            }
            // The kernel empties it in a moment: removed now, or by a later sweep.
            remove_tree(&path);
            if path.exists() {
                self.pending.push(path);
            }
        }
    }
}

/// Whether any process is in `dir` or below (`populated` in `cgroup.events`).
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
}

/// `rmdir` a cgroup tree, deepest first (cgroup folders hold only interface files).
fn remove_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Move each run (folder, main pid) into its folder, then what it forked before it
/// moved. A folder removed meanwhile (the run ended and was killed) is skipped, never
/// made again; a process that ended is skipped.
fn move_into(adopted: Vec<(PathBuf, i32)>) {
    // The runs first: from then on what they fork is born in their folder...
    let mut moved = Vec::new();
    for (dir, pid) in adopted {
        let Ok(mut procs) = std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")) else { continue };
        if std::io::Write::write_all(&mut procs, pid.to_string().as_bytes()).is_ok() {
            moved.push((procs, pid));
        }
    }
    if moved.is_empty() {
        return;
    }
    // ...and what they forked before is still their descendant: move it after them.
    let children = super::procs::children_by_parent();
    for (mut procs, pid) in moved {
        let mut todo: Vec<i32> = children.get(&pid).cloned().unwrap_or_default();
        while let Some(p) = todo.pop() {
            let _ = std::io::Write::write_all(&mut procs, p.to_string().as_bytes());
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
}

/// The cgroup v2 hierarchy's mount: the folder of the hierarchy it shows (its root,
/// `/` on a host) and where it is (`/sys/fs/cgroup` or its `unified` folder).
fn v2_mount() -> Option<(String, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = left.split(' ').skip(3);
        let (root, mount) = (fields.next()?, fields.next()?);
        (right.split(' ').next() == Some("cgroup2")).then(|| (root.to_owned(), PathBuf::from(mount)))
    })
}

/// This process's cgroup v2 path (`0::/path` in /proc/self/cgroup).
fn own_v2_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

/// FNV-1a of the home's path: a short stable name per home.
fn fnv(home: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    home.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
