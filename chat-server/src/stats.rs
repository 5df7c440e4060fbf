//! Connection and message counters of one worker: the health check, `/metrics`
//! (Prometheus text format) and the periodic "connection metrics" log line all read
//! these same atomics, so the three never disagree.
//!
//! Counters only go up; `connections_active` is derived from the admission counter.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Why a connection ended (the `reason` label of `chat_disconnections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client closed or the socket dropped.
    Client,
    /// Nothing received for `CONNECTION_TIMEOUT` (close 4000).
    Timeout,
    /// Outbound queue over its byte bound (close 4001).
    SlowConsumer,
    /// Frame above `MAX_MESSAGE_SIZE` (close 1009).
    TooBig,
    /// Repeated malformed or unknown messages (close 1007/1008).
    Abuse,
    /// The token expired while connected (close 4002).
    TokenExpired,
    /// Shutdown or deploy drain (close 1012).
    Shutdown,
    /// A protocol or I/O error on the socket.
    Error,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::Client,
        Reason::Timeout,
        Reason::SlowConsumer,
        Reason::TooBig,
        Reason::Abuse,
        Reason::TokenExpired,
        Reason::Shutdown,
        Reason::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Client => "client",
            Reason::Timeout => "timeout",
            Reason::SlowConsumer => "slow_consumer",
            Reason::TooBig => "too_big",
            Reason::Abuse => "abuse",
            Reason::TokenExpired => "token_expired",
            Reason::Shutdown => "shutdown",
            Reason::Error => "error",
        }
    }
}

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    /// The same moment on the wall clock, for `process_start_time_seconds`: with it, a
    /// scraper tells two runs of a worker on one port apart (during a reload both answer).
    pub started_unix: std::time::SystemTime,
    /// Requests to `/ws`: every upgrade attempt, taken or refused.
    pub upgrade_requests: AtomicU64,
    pub connections_total: AtomicU64,
    pub rejected_full: AtomicU64,
    pub rejected_auth: AtomicU64,
    /// Upgrades refused while draining (503 `draining`).
    pub rejected_draining: AtomicU64,
    /// Upgrades refused for the request itself: origin, headers, version, subprotocol.
    pub rejected_handshake: AtomicU64,
    /// Upgrades refused because the database did not answer a backend user's number.
    pub rejected_unavailable: AtomicU64,
    /// Upgrades answered 101 whose connection never came (the client left meanwhile).
    pub upgrades_lost: AtomicU64,
    /// Connections that asked for a replay at least once (a client coming back).
    pub connections_resumed: AtomicU64,
    /// How long closed connections lasted, by close reason.
    durations: [crate::histogram::Histogram; Reason::ALL.len()],
    /// Upgrades refused because the user has `MAX_CONNECTIONS_PER_USER` open.
    pub rejected_per_user: AtomicU64,
    /// Requests refused by a rate (auth per address or user name, room creation).
    pub rate_limited: AtomicU64,
    disconnections: [AtomicU64; Reason::ALL.len()],
    /// `error` messages sent to clients.
    pub errors: AtomicU64,
    /// Chat messages received and stored.
    pub messages_in: AtomicU64,
    /// Chat messages delivered to connections (live fan-out, replay and history excluded).
    pub messages_out: AtomicU64,
    /// Connections closed because their queue passed its bound.
    pub queue_drops: AtomicU64,
    pub resumes: AtomicU64,
    /// Messages replayed on resume, from the room cache and from the database.
    pub replayed_from_cache: AtomicU64,
    pub replayed_from_db: AtomicU64,
    pub replayed_from_redis: AtomicU64,
    /// A `send` from its arrival to its answer (stored and published), when it was stored.
    pub send_seconds: crate::histogram::Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            started_unix: std::time::SystemTime::now(),
            upgrade_requests: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_auth: AtomicU64::new(0),
            rejected_draining: AtomicU64::new(0),
            rejected_handshake: AtomicU64::new(0),
            rejected_unavailable: AtomicU64::new(0),
            upgrades_lost: AtomicU64::new(0),
            connections_resumed: AtomicU64::new(0),
            durations: std::array::from_fn(|_| {
                crate::histogram::Histogram::new(&crate::histogram::CONNECTION_BOUNDS_US)
            }),
            rejected_per_user: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            disconnections: Default::default(),
            errors: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            queue_drops: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            replayed_from_cache: AtomicU64::new(0),
            replayed_from_db: AtomicU64::new(0),
            replayed_from_redis: AtomicU64::new(0),
            send_seconds: Default::default(),
        }
    }
}

/// Gauges owned elsewhere, read at render time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub active: usize,
    pub max: usize,
    pub rooms: usize,
    pub memberships: usize,
    pub rss_bytes: u64,
    pub draining: bool,
}

impl Stats {
    /// A connection ended after `lasted`.
    pub fn disconnected(&self, reason: Reason, lasted: std::time::Duration) {
        self.disconnections[reason as usize].fetch_add(1, Relaxed);
        self.durations[reason as usize].observe(lasted);
    }

    pub fn disconnections(&self, reason: Reason) -> u64 {
        self.disconnections[reason as usize].load(Relaxed)
    }

    pub fn disconnections_total(&self) -> u64 {
        Reason::ALL.iter().map(|r| self.disconnections(*r)).sum()
    }

    pub fn render_prometheus(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        let load = |c: &AtomicU64| c.load(Relaxed);
        metric(
            "chat_upgrade_requests_total",
            "counter",
            "Requests to /ws: every WebSocket upgrade attempt, taken or refused.",
            &one(load(&self.upgrade_requests)),
        );
        metric(
            "chat_connections_total",
            "counter",
            "WebSocket connections accepted.",
            &one(load(&self.connections_total)),
        );
        metric("chat_connections_active", "gauge", "Open WebSocket connections.", &one(g.active as u64));
        metric("chat_connections_max", "gauge", "MAX_CONNECTIONS.", &one(g.max as u64));
        let rejected = vec![
            ("{reason=\"full\"}".to_string(), load(&self.rejected_full)),
            ("{reason=\"auth\"}".to_string(), load(&self.rejected_auth)),
            ("{reason=\"per_user\"}".to_string(), load(&self.rejected_per_user)),
            ("{reason=\"draining\"}".to_string(), load(&self.rejected_draining)),
            ("{reason=\"handshake\"}".to_string(), load(&self.rejected_handshake)),
            ("{reason=\"unavailable\"}".to_string(), load(&self.rejected_unavailable)),
        ];
        metric("chat_connections_rejected_total", "counter", "Upgrades refused before any WebSocket state.", &rejected);
        metric(
            "chat_upgrades_lost_total",
            "counter",
            "Upgrades answered 101 whose connection never came.",
            &one(load(&self.upgrades_lost)),
        );
        metric(
            "chat_connections_resumed_total",
            "counter",
            "Connections that asked for a replay at least once (clients coming back).",
            &one(load(&self.connections_resumed)),
        );
        let by_reason: Vec<(String, u64)> =
            Reason::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.as_str()), self.disconnections(*r))).collect();
        metric("chat_disconnections_total", "counter", "Connections ended, by reason.", &by_reason);
        metric("chat_errors_total", "counter", "Error messages sent to clients.", &one(load(&self.errors)));
        let limited = one(load(&self.rate_limited));
        metric("chat_rate_limited_total", "counter", "Requests refused by a rate limit.", &limited);
        metric(
            "chat_messages_in_total",
            "counter",
            "Chat messages received and stored.",
            &one(load(&self.messages_in)),
        );
        metric("chat_messages_out_total", "counter", "Live chat message deliveries.", &one(load(&self.messages_out)));
        metric(
            "chat_queue_drops_total",
            "counter",
            "Connections closed for a full outbound queue.",
            &one(load(&self.queue_drops)),
        );
        metric("chat_resumes_total", "counter", "Joins that asked for a replay.", &one(load(&self.resumes)));
        let replayed = vec![
            ("{source=\"cache\"}".to_string(), load(&self.replayed_from_cache)),
            ("{source=\"database\"}".to_string(), load(&self.replayed_from_db)),
            ("{source=\"redis\"}".to_string(), load(&self.replayed_from_redis)),
        ];
        metric("chat_replayed_messages_total", "counter", "Messages replayed on resume.", &replayed);
        metric("chat_rooms", "gauge", "Rooms held in memory.", &one(g.rooms as u64));
        metric(
            "chat_room_memberships",
            "gauge",
            "Connections in rooms, summed over rooms.",
            &one(g.memberships as u64),
        );
        metric("chat_memory_rss_bytes", "gauge", "Resident memory of this worker.", &one(g.rss_bytes));
        metric("chat_draining", "gauge", "1 while shutting down.", &one(u64::from(g.draining)));
        metric("chat_uptime_seconds", "gauge", "Seconds since start.", &one(self.started.elapsed().as_secs()));
        let dropped = vec![
            ("{reason=\"slow_consumer\"}".to_string(), crate::delivery::measure::DROPPED_SLOW.load(Relaxed)),
            ("{reason=\"client_gone\"}".to_string(), crate::delivery::measure::DROPPED_GONE.load(Relaxed)),
            ("{reason=\"purged\"}".to_string(), crate::delivery::measure::PURGED.load(Relaxed)),
        ];
        metric(
            "chat_deliveries_dropped_total",
            "counter",
            "Live deliveries not made: refused to a member whose queue overflowed (it resumes) or who left, or purged from an overflowing queue (these are in chat_messages_out_total too).",
            &dropped,
        );
        let name = "chat_connection_duration_seconds";
        let _ = writeln!(out, "# HELP {name} How long closed connections lasted, by close reason.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for r in Reason::ALL {
            self.durations[r as usize].render_series(&mut out, name, &format!("reason=\"{}\",", r.as_str()));
        }
        crate::delivery::measure::latency().render(
            &mut out,
            "chat_delivery_duration_seconds",
            "A live message from its store to its frame written to a member's socket.",
        );
        self.send_seconds.render(
            &mut out,
            "chat_send_duration_seconds",
            "A send from its arrival to its answer, stored and published (new messages only).",
        );
        let start = self.started_unix.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n\
             # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}.{:03}",
            start.as_secs(),
            start.subsec_millis()
        );
        out
    }
}

/// Resident set size of this process, from /proc/self/statm (in pages of the system's size).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * page_size()
}

/// The kernel's page size (4 KiB on x86-64, 16 or 64 KiB on some arm64 kernels).
fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    *SIZE.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
}
