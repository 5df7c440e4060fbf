//! What the delivery path measures for `/metrics`, process-wide and lock-free: how long
//! a live message took from being stored (its `ts`) to the end of its write to each
//! member's socket, and the deliveries that were not made, with why.
//!
//! The latency is sampled: every member's delivery of one message in [`TIMED_EVERY`]
//! (by sequence number, which says nothing of its latency) is timed, so the path of
//! the others costs one comparison. A timed delivery costs a clock read when its write
//! completes and two relaxed atomic adds into the histogram of its connection's shard
//! ([`SHARDS`] of them, each on cache lines of its own, so the flushers, one per CPU,
//! never contend for a line). Timing every delivery read as +0.2 to +0.5 µs of user
//! CPU per delivery in `bench/ws.sh` (one run each: within that bench's noise, but on
//! the hottest path there is).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::histogram::{BOUNDS_US, Histogram};

/// Histograms the latency is spread over, by connection.
pub const SHARDS: usize = 16;

/// One message in this many has its deliveries timed.
pub const TIMED_EVERY: u64 = 16;

/// What a live frame of message `seq` stored at `ts` (ms) carries into the outbox:
/// its store time when its deliveries are timed, else 1.
pub fn timed(seq: u64, ts: i64) -> u64 {
    // A message with no usable store time (`ts` of 1 ms or less) is not timed.
    if seq.is_multiple_of(TIMED_EVERY) && ts > 1 { ts as u64 } else { 1 }
}

#[repr(align(128))]
#[derive(Debug)]
struct Shard {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Shard = Shard { buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1], sum_us: AtomicU64::new(0) };

/// From the message's store (`ts`, milliseconds) to its frame fully written to a member.
static LATENCY: [Shard; SHARDS] = [EMPTY; SHARDS];

/// Live deliveries refused because the member's queue had overflowed (close 4001), or
/// held for a replaying member that fell too far behind. The member resumes and loses
/// nothing. Never counted in `chat_messages_out_total`.
pub static DROPPED_SLOW: AtomicU64 = AtomicU64::new(0);
/// Live frames queued (so counted in `chat_messages_out_total`) and dropped from the
/// queue when it overflowed.
pub static PURGED: AtomicU64 = AtomicU64::new(0);
/// Live deliveries refused because the member's socket had failed (it left).
pub static DROPPED_GONE: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the epoch, as messages' `ts` are.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A live frame of a message stored at `stored_ms` is written out now (`now_ms`), by
/// the connection of flusher `shard`.
pub fn written(shard: usize, stored_ms: u64, now_ms: u64) {
    let us = now_ms.saturating_sub(stored_ms).saturating_mul(1000);
    let i = crate::histogram::bucket(&BOUNDS_US, us);
    let s = &LATENCY[shard % SHARDS];
    s.buckets[i].fetch_add(1, Relaxed);
    s.sum_us.fetch_add(us, Relaxed);
}

/// The latency histogram, every shard summed.
pub fn latency() -> Histogram {
    let h = Histogram::new(&BOUNDS_US);
    for s in &LATENCY {
        for (i, b) in s.buckets.iter().enumerate() {
            h.add(i, b.load(Relaxed), 0);
        }
        h.add(0, 0, s.sum_us.load(Relaxed));
    }
    h
}

pub fn purged(n: u64) {
    if n > 0 {
        PURGED.fetch_add(n, Relaxed);
    }
}

pub fn dropped(slow: u64, gone: u64) {
    if slow > 0 {
        DROPPED_SLOW.fetch_add(slow, Relaxed);
    }
    if gone > 0 {
        DROPPED_GONE.fetch_add(gone, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_in_sixteen_is_timed_and_one_without_a_store_time_never() {
        assert_eq!(timed(16, 1_700_000_000_000), 1_700_000_000_000);
        assert_eq!(timed(17, 1_700_000_000_000), 1, "not sampled");
        assert_eq!(timed(32, 0), 1, "no store time: not timed");
        assert_eq!(timed(32, -5), 1);
    }
}
