//! What the daemon reads from and does to `/proc` processes: finding every
//! process that belongs to an instance (its process group, and anything that
//! carries the instance's `L4_TAG` in its environment, which catches children
//! that `setsid` away), signalling them, reaping every child (ours and orphans
//! re-parented to us as child subreaper), and sampling CPU and memory.
//!
//! Finding tagged processes reads every `/proc/<pid>/environ` (this kernel may
//! lack `/proc/<pid>/task/<tid>/children`), so it is done only on stop and after
//! an exit, never on the sampling tick.
//!
//! Nothing here keeps state; the supervisor decides when to call it.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::lifecycle::ExitStatus;

pub use crate::wire::home::{SUPERVISOR_VAR, TAG_VAR};

/// The fields of `/proc/<pid>/stat` that the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: u8,
    pub ppid: i32,
    pub pgid: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    pub rss_pages: u64,
    /// When it started, in clock ticks since boot: with `pid`, names one process
    /// (a pid is reused, a pid and start time are not).
    pub start: u64,
}

pub fn read_stat(pid: i32) -> Option<Stat> {
    use std::io::Read;
    // One open, one read, one close: `fs::read_to_string` would add a statx and a
    // second read, and this runs for every process of every instance each second.
    let mut buf = [0u8; 1024];
    let mut file = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    parse_stat(pid, &buf[..n])
}

/// Parse the text of `/proc/<pid>/stat`.
pub fn parse_stat(pid: i32, bytes: &[u8]) -> Option<Stat> {
    // The command name may hold spaces, parentheses and bytes that are not UTF-8:
    // fields start after the last ')'.
    let close = bytes.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(bytes.get(close + 2..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    // Skip to utime (field 14 of the line, 11 after ppid).
    let mut f = f.skip(8);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let threads = f.nth(4)?.parse().ok()?;
    let start = f.nth(1)?.parse().ok()?;
    let rss_pages = f.nth(1)?.parse().ok()?;
    Some(Stat { pid, state, ppid, pgid, cpu_ticks: utime + stime, threads, rss_pages, start })
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Every live process's children, by parent pid (one pass over `/proc`).
pub fn children_by_parent() -> std::collections::HashMap<i32, Vec<i32>> {
    children_of(&all_stats())
}

/// The `stat` of every live process (one pass over `/proc`).
pub fn all_stats() -> Vec<Stat> {
    all_pids().into_iter().filter_map(read_stat).collect()
}

/// The children of each process in `stats`, by parent pid.
pub fn children_of(stats: &[Stat]) -> std::collections::HashMap<i32, Vec<i32>> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for s in stats {
        children.entry(s.ppid).or_default().push(s.pid);
    }
    children
}

/// Live processes (other than us) carrying any of `entries` (`L4_TAG=...`) in their
/// environment, with the index of the entry each carries. One pass over `/proc`,
/// one `environ` read per process, however many entries are asked for.
pub fn tagged_pids(entries: &[String]) -> Vec<(i32, usize)> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let i = env.split(|b| *b == 0).find_map(|e| entries.iter().position(|want| e == want.as_bytes()))?;
            Some((pid, i))
        })
        .collect()
}

/// Send `signal` once to every process: to the group with `killpg`, and by pid to
/// those outside it. A process must not get the signal twice: a shell that traps
/// SIGTERM would run its handler twice.
pub fn signal_all(pgid: Option<i32>, pids: &[i32], signal: Signal) {
    if let Some(g) = pgid {
        let _ = nix::sys::signal::killpg(Pid::from_raw(g), signal);
    }
    signal_outside(pgid, pids, signal);
}

/// Send `signal` to each of `pids` that is not a member of group `pgid`.
pub fn signal_outside(pgid: Option<i32>, pids: &[i32], signal: Signal) {
    for &pid in pids {
        let in_group = pgid.is_some() && read_stat(pid).is_some_and(|s| Some(s.pgid) == pgid);
        if !in_group {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Whether any process of group `pgid` is still alive (signal 0: nothing is sent).
pub fn group_alive(pgid: Option<i32>) -> bool {
    pgid.is_some_and(|g| nix::sys::signal::killpg(Pid::from_raw(g), None).is_ok())
}

/// Processes left by an earlier daemon of the same home (found by `L4_SUPERVISOR`).
pub fn leftovers_of(home: &str) -> Vec<i32> {
    tagged_pids(&[format!("{SUPERVISOR_VAR}={home}")]).into_iter().map(|(pid, _)| pid).collect()
}

/// Reap every child that has ended, ours or orphans re-parented to us, without
/// blocking. Returns `(pid, status)` for each; the caller keeps those it started.
///
/// Calls `waitpid` directly rather than through nix, whose decoding fails (after
/// the child was already reaped) for deaths by real-time signals: such an exit
/// would be lost and its instance stuck `online`.
pub fn reap_all() -> Vec<(i32, ExitStatus)> {
    use nix::libc;
    let mut out = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a plain system call writing to a valid local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if pid <= 0 {
            return out; // 0: none has ended; -1: no children (ECHILD)
        }
        if libc::WIFEXITED(status) {
            out.push((pid, ExitStatus::Code(libc::WEXITSTATUS(status))));
        } else if libc::WIFSIGNALED(status) {
            out.push((pid, ExitStatus::Signal(libc::WTERMSIG(status))));
        }
    }
}

/// Ask the kernel to make orphaned descendants our children, so they can be reaped.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Clock ticks per second and page size, for turning `/proc` numbers into units.
pub fn clock_ticks_and_page_size() -> (u64, u64) {
    use nix::unistd::{SysconfVar, sysconf};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().map_or(100, |v| v as u64);
    let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |v| v as u64);
    (ticks, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat() {
        let me = std::process::id() as i32;
        let s = read_stat(me).expect("own stat");
        assert_eq!(s.pid, me);
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(s.pgid, nix::unistd::getpgrp().as_raw());
        assert!(s.rss_pages > 0);
        assert!(s.threads >= 1);
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let resident: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(s.rss_pages.abs_diff(resident) < resident / 2 + 64, "{} vs {resident}", s.rss_pages);
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count() as u64;
        let parent = read_stat(s.ppid).expect("parent's stat");
        assert!(parent.start <= s.start && s.start > 0, "{} then {}", parent.start, s.start);
        assert!(s.threads.abs_diff(threads) <= 2, "{} vs {threads}", s.threads);
        assert!(all_pids().contains(&me));
    }
}
