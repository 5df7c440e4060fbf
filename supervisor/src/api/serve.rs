//! Serving the router with bounds, on the Unix socket and on TCP alike, so that no
//! local user can starve the daemon through its API:
//!
//! - at most `max` open connections per listener (SSE streams included); past it a
//!   new connection is closed at once, before a byte is read. TCP and the Unix
//!   socket have separate budgets, so a TCP flood never keeps `l4ctl` out;
//! - a request head must arrive within [`HEADER_TIMEOUT`] of the connection (or of
//!   the previous answer on a kept-alive connection) being ready for it: a slow or
//!   idle client is closed then. hyper arms one timer for both, so an idle
//!   keep-alive connection is closed after [`HEADER_TIMEOUT`] too;
//! - when the daemon stops, no new connection is taken, open ones finish the answer
//!   in hand and close, for at most [`DRAIN_LIMIT`].
//!
//! Descriptors for workers are kept in reserve by [`fd_budget`]: the daemon raises
//! its soft `RLIMIT_NOFILE` to the hard limit and sizes the TCP budget to leave
//! [`SPAWN_RESERVE`] descriptors free, so an API flood never makes a restart fail.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// A request head must be complete this long after the connection is ready for it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the Unix socket (mode 0600: the daemon's user) keeps open at most.
pub const UNIX_CONNECTIONS: usize = 64;
/// Descriptors kept free for workers (pipes, sockets, pidfds) whatever the API does.
pub const SPAWN_RESERVE: u64 = 256;
/// How long open connections may take to finish once the daemon stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Serve `router` on `listener` with at most `max` connections until `stop` resolves.
pub async fn serve<L>(mut listener: L, router: Router, max: usize, what: &'static str, stop: impl Future<Output = ()>)
where
    L: Listener,
    L::Io: Unpin,
{
    let permits = Arc::new(Semaphore::new(max));
    let (closing, closed) = watch::channel(false);
    let mut refused: u64 = 0;
    tokio::pin!(stop);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed before anything is read: the cheapest answer to a flood.
            drop(io);
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(api = what, max, refused, "API connection limit reached; new connections are closed");
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let conn = http.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let closing = async move {
                let _ = closed.wait_for(|c| *c).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = closing => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = closing.send(true);
    // Every permit back means every connection has ended.
    let _ = tokio::time::timeout(DRAIN_LIMIT, permits.acquire_many(max as u32)).await;
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, and size the TCP budget so that
/// both APIs together leave [`SPAWN_RESERVE`] descriptors for workers. Returns the
/// TCP budget (at least 1) and the soft limit now in force.
pub fn fd_budget(wanted_tcp: usize) -> (usize, u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() => hard,
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    // A few dozen descriptors are the daemon's own (runtime, listeners, log files of
    // the daemon); the reserve covers workers.
    let room = limit.saturating_sub(SPAWN_RESERVE + UNIX_CONNECTIONS as u64 + 64);
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
