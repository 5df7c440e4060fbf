//! What `l4load` reads from /proc: a process's RSS and CPU time, and its own.

use std::time::Duration;

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64
}

/// CPU time of a process: in user space, and in the kernel on its behalf.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// utime and stime of `pid` (or of this process when None).
pub fn cpu(pid: Option<i32>) -> Option<Cpu> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let time = |i: usize| -> Option<Duration> {
        Some(Duration::from_secs_f64(fields.get(i)?.parse::<u64>().ok()? as f64 / ticks_per_second()))
    };
    Some(Cpu { user: time(11)?, system: time(12)? })
}

/// utime and stime of every process of `pids` together (None when one cannot be read).
pub fn cpu_of(pids: &[i32]) -> Option<Cpu> {
    let mut sum = Cpu { user: Duration::ZERO, system: Duration::ZERO };
    for pid in pids {
        let c = cpu(Some(*pid))?;
        sum.user += c.user;
        sum.system += c.system;
    }
    (!pids.is_empty()).then_some(sum)
}

/// Resident set size of `pid`, in bytes.
pub fn rss(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * page_size())
}

/// Raises the soft open-file limit to the hard one (10,000 connections need 10,000 fds).
pub fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
