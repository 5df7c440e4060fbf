//! What every soak client adds to, shared by all of them: the counters, the ledger of
//! which message each room's sequence number carries, the latency histograms, and the
//! record of every connection that ended or attempt that failed (the driver puts those
//! beside its own timeline of faults to give each one a cause).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Counters, all from the clients' side.
#[derive(Debug, Default)]
pub struct Counts {
    /// A visit: a client comes, joins its room, stays, says goodbye and leaves.
    pub visits: AtomicU64,
    /// Visits whose first connection attempt succeeded.
    pub visits_first_ok: AtomicU64,
    /// Visits whose first attempt failed while their flaky link was down.
    pub visits_first_failed_link: AtomicU64,
    /// Visits that connected at all.
    pub visits_connected: AtomicU64,
    /// Visits that never connected, their first attempt made over a dropped link.
    pub visits_lost_to_link: AtomicU64,
    /// Visits that ended with every message of their stay, from join to their own goodbye.
    pub visits_complete: AtomicU64,
    pub visit_ms: AtomicU64,
    pub attempts: AtomicU64,
    pub attempts_failed: AtomicU64,
    /// Of them, made while the client's flaky link was down.
    pub attempts_failed_link: AtomicU64,
    /// Connections that ended without the client asking.
    pub drops: AtomicU64,
    /// Of them, on a flaky link that went down during the connection.
    pub drops_link: AtomicU64,
    /// Connections (welcomed) and how long they lasted.
    pub connections: AtomicU64,
    pub connection_ms: AtomicU64,
    pub link_drops: AtomicU64,
    pub link_down_ms: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    /// Sends the server refused for good (none expected).
    pub refused: AtomicU64,
    pub unacked_at_leave: AtomicU64,
    /// Deliveries a member should have had: every sequence number from its join to its goodbye.
    pub due: AtomicU64,
    pub received: AtomicU64,
    /// Sequence numbers a member never got (a jump, or a `Gap` event).
    pub lost: AtomicU64,
    /// A sequence number at or below one already delivered (the client library drops them,
    /// so this stays 0 unless the library is wrong).
    pub out_of_order: AtomicU64,
    /// A sequence number carrying another message than the one the ledger holds for it.
    pub mismatched: AtomicU64,
    /// A message before the join was confirmed.
    pub before_join: AtomicU64,
    pub errors: AtomicU64,
    /// Clients that stopped on their own (a refused token, a policy close).
    pub stopped: AtomicU64,
}

pub struct Tally {
    pub counts: Counts,
    /// (room, seq) to a hash of the message's id and body, from the first ack or delivery.
    ledger: Mutex<HashMap<(u32, u64), u64>>,
    /// (room, hash of the id) to its seq: a message stored twice shows as two numbers.
    numbers: Mutex<HashMap<(u32, u64), u64>>,
    /// From the send's first attempt to each delivery, ms.
    latency: Mutex<Histogram<u64>>,
    /// From the store (`ts`) to each delivery, ms.
    store_latency: Mutex<Histogram<u64>>,
    records: Mutex<Box<dyn Write + Send>>,
    errors: Mutex<HashMap<String, u64>>,
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The hash the ledger keeps for a message.
pub fn fingerprint(id: &str, body: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (id, body).hash(&mut h);
    h.finish()
}

impl Tally {
    pub fn new(records: Box<dyn Write + Send>) -> anyhow::Result<Tally> {
        Ok(Tally {
            counts: Counts::default(),
            ledger: Mutex::new(HashMap::new()),
            numbers: Mutex::new(HashMap::new()),
            latency: Mutex::new(Histogram::new(3)?),
            store_latency: Mutex::new(Histogram::new(3)?),
            records: Mutex::new(records),
            errors: Mutex::new(HashMap::new()),
        })
    }

    /// Enters a message (its id and the hash of id and body) in the ledger, or checks it
    /// against the entries there: one message per number, one number per message.
    pub fn ledger(&self, room: u32, seq: u64, id: &str, fingerprint: u64) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        match ledger.entry((room, seq)) {
            Entry::Vacant(v) => {
                v.insert(fingerprint);
            }
            Entry::Occupied(o) if *o.get() != fingerprint => add(&self.counts.mismatched, 1),
            Entry::Occupied(_) => {}
        }
        drop(ledger);
        let mut numbers = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        match numbers.entry((room, self::fingerprint(id, ""))) {
            Entry::Vacant(v) => {
                v.insert(seq);
            }
            Entry::Occupied(o) if *o.get() != seq => add(&self.counts.mismatched, 1),
            Entry::Occupied(_) => {}
        }
    }

    pub fn delivered(&self, sent_ms: Option<u64>, stored_ms: i64) {
        let now = unix_ms(SystemTime::now());
        if let Some(sent) = sent_ms {
            let _ = self.latency.lock().unwrap_or_else(|e| e.into_inner()).record(now.saturating_sub(sent).max(1));
        }
        let stored = u64::try_from(stored_ms).unwrap_or(0);
        let _ = self.store_latency.lock().unwrap_or_else(|e| e.into_inner()).record(now.saturating_sub(stored).max(1));
    }

    pub fn error(&self, code: &str) {
        add(&self.counts.errors, 1);
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(code.to_string()).or_default() += 1;
    }

    /// One line of the records file.
    pub fn record(&self, line: Value) {
        let mut out = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{line}");
    }

    pub fn flush(&self) {
        let _ = self.records.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }

    pub fn report(&self, wall: Duration) -> Value {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Relaxed);
        let pct = |h: &Mutex<Histogram<u64>>| {
            let h = h.lock().unwrap_or_else(|e| e.into_inner());
            json!({"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99),
                   "p999": h.value_at_quantile(0.999), "max": h.max(), "count": h.len()})
        };
        let ratio = |a: u64, b: u64| if b == 0 { Value::Null } else { json!(a as f64 / b as f64) };
        let messages = self.ledger.lock().unwrap_or_else(|e| e.into_inner()).len();
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        json!({
            "secs": wall.as_secs_f64(),
            "visits": n(&c.visits), "visits_first_ok": n(&c.visits_first_ok),
            "visits_first_failed_link": n(&c.visits_first_failed_link),
            "visits_connected": n(&c.visits_connected), "visits_complete": n(&c.visits_complete),
            "visits_lost_to_link": n(&c.visits_lost_to_link),
            "visit_avg_s": ratio(n(&c.visit_ms), n(&c.visits) * 1000),
            "attempts": n(&c.attempts), "attempts_failed": n(&c.attempts_failed),
            "attempts_failed_link": n(&c.attempts_failed_link),
            "connections": n(&c.connections), "connection_avg_s": ratio(n(&c.connection_ms), n(&c.connections) * 1000),
            "drops": n(&c.drops), "drops_link": n(&c.drops_link),
            "link_drops": n(&c.link_drops), "link_down_s": n(&c.link_down_ms) as f64 / 1000.0,
            "sent": n(&c.sent), "acked": n(&c.acked), "refused": n(&c.refused),
            "unacked_at_leave": n(&c.unacked_at_leave), "messages": messages,
            "due": n(&c.due), "received": n(&c.received), "lost": n(&c.lost),
            "out_of_order": n(&c.out_of_order), "mismatched": n(&c.mismatched), "before_join": n(&c.before_join),
            "errors": n(&c.errors), "errors_by_code": errors, "stopped": n(&c.stopped),
            "latency_ms": pct(&self.latency), "store_latency_ms": pct(&self.store_latency),
        })
    }
}
