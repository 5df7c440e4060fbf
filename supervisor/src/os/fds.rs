//! The daemon's descriptor budget: it raises its soft `RLIMIT_NOFILE` to the hard limit
//! (workers get the old one back, [`worker_nofile`]), keeps [`SPAWN_RESERVE`]
//! descriptors for workers whatever its API does, and tells the API's listeners the
//! descriptor number past which a new connection is closed at once ([`accept_ceiling`]).
//! Process-wide values, set once at start by the composition root ([`crate::server`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// Descriptors kept free for workers (pipes, sockets, pidfds) whatever the API does.
pub const SPAWN_RESERVE: u64 = 256;

/// The soft `RLIMIT_NOFILE` the daemon was started with: workers get it back (see
/// `daemon::spawn`), so raising the daemon's own changes nothing for them.
static WORKER_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();

/// The limit workers get, as a previous program of this daemon was started with
/// (a handover: this program inherited the raised one). Before [`budget`].
pub fn set_worker_nofile(limit: (u64, u64)) {
    let _ = WORKER_NOFILE.set(limit);
}

/// The `(soft, hard)` descriptor limit workers are started with.
pub fn worker_nofile() -> Option<(u64, u64)> {
    WORKER_NOFILE.get().copied()
}

/// The descriptor number past which an accepted connection is closed at once: what
/// is left above it is kept for workers (descriptors are allocated lowest first, so an
/// accepted socket's number is about how many are open).
static ACCEPT_CEILING: AtomicI32 = AtomicI32::new(i32::MAX);

pub fn accept_ceiling() -> i32 {
    ACCEPT_CEILING.load(Ordering::Relaxed)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (capped at 1 << 20), and size the
/// TCP budget so that both APIs together (the Unix socket keeping `unix` connections)
/// leave [`SPAWN_RESERVE`] descriptors for workers. Returns the TCP budget (at least 1)
/// and the soft limit now in force.
pub fn budget(wanted_tcp: usize, unix: usize) -> (usize, u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let _ = WORKER_NOFILE.set((soft, hard));
            let want = hard.min(1 << 20);
            if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() { want } else { soft }
        }
        Err(_) => 1024,
    };
    let ceiling = limit.saturating_sub(SPAWN_RESERVE).min(i32::MAX as u64) as i32;
    ACCEPT_CEILING.store(ceiling, Ordering::Relaxed);
    // A few dozen descriptors are the daemon's own (runtime, listeners, log files of
    // the daemon); the reserve covers workers.
    let room = limit.saturating_sub(SPAWN_RESERVE + unix as u64 + 64);
    let tcp = wanted_tcp.min(room as usize).max(1);
    if tcp < wanted_tcp {
        tracing::warn!(
            nofile = limit,
            wanted = wanted_tcp,
            tcp,
            "the descriptor limit is low: the TCP API takes fewer connections to keep descriptors for workers"
        );
    }
    (tcp, limit)
}
