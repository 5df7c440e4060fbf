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
//! Descriptors for workers are kept in reserve by [`crate::os::fds::budget`]: the daemon raises
//! its soft `RLIMIT_NOFILE` to the hard limit (workers get the old one back), sizes
//! the TCP budget to leave [`crate::os::fds::SPAWN_RESERVE`] descriptors free, and closes at once a
//! connection whose descriptor number is within the reserve (descriptors are handed
//! out lowest first, so that number tracks how many are open, whatever the workers'
//! own pipes and sockets take), so an API flood does not make a restart fail.

use std::future::Future;
use std::os::fd::AsRawFd;
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
/// The answer on the Unix socket past its budget.
static BUSY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = serde_json::json!({"error": {"code": "busy", "message": format!(
        "the daemon's socket has {UNIX_CONNECTIONS} connections open; try again"
    )}})
    .to_string()
        + "\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});
/// Busy answers written at once on the Unix socket; past it a connection is closed
/// bare, so a flood from the daemon's own user costs a bounded number of tasks.
pub const BUSY_ANSWERS: usize = 16;
/// How long one busy answer may take (read the head, write the 503). Generous: a
/// loaded machine may not schedule the daemon for a while, and the answer is what
/// `l4ctl` turns into its sentence.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open connections may take to finish once the daemon stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Serve `router` on `listener` with at most `max` connections until `stop` resolves.
pub async fn serve<L>(mut listener: L, router: Router, max: usize, what: &'static str, stop: impl Future<Output = ()>)
where
    L: Listener,
    L::Io: Unpin + std::os::fd::AsRawFd,
{
    let permits = Arc::new(Semaphore::new(max));
    let busy_answers = Arc::new(Semaphore::new(BUSY_ANSWERS));
    let (closing, closed) = watch::channel(false);
    let mut refusals = Refusals::default();
    tokio::pin!(stop);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let near_limit = io.as_raw_fd() >= crate::os::fds::accept_ceiling();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) if !near_limit => permit,
            _ => {
                refusals.note(what, max, near_limit);
                if what == "unix"
                    && let Ok(answering) = busy_answers.clone().try_acquire_owned()
                {
                    // The daemon's own user (l4ctl): a sentence, not a bare close.
                    tokio::spawn(async move {
                        let _answering = answering;
                        let _ = tokio::time::timeout(BUSY_TIMEOUT, busy(io)).await;
                    });
                }
                // TCP: closed before anything is read, the cheapest answer to a flood.
                continue;
            }
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

/// Answer a connection past the Unix socket's budget: read the request head (a
/// client still writing when the socket closes sees a broken pipe, not the answer),
/// then the 503. Bounded by the caller's timeout and by 64 KiB.
async fn busy<Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: Io) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < 64 << 10 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = io.write_all(&BUSY).await;
    let _ = io.shutdown().await;
}

/// Connections closed unread, logged when a flood starts and once a minute while it
/// lasts (not once per connection).
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged_at: Option<std::time::Instant>,
}

impl Refusals {
    fn note(&mut self, api: &'static str, max: usize, near_limit: bool) {
        self.since_log += 1;
        let now = std::time::Instant::now();
        if self.logged_at.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
            let why = if near_limit { "descriptors kept for workers" } else { "connection limit" };
            tracing::warn!(api, max, closed = self.since_log, why, "API connections closed unread");
            self.since_log = 0;
            self.logged_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_is_well_formed_http_and_json() {
        let text = std::str::from_utf8(&super::BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "busy");
    }
}
