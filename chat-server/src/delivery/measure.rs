//! What the delivery path measures for `/metrics`, process-wide and lock-free: how long
//! a live message took from being stored (its `ts`) to the end of its write to each
//! member's socket, and the deliveries that were not made, with why.
//!
//! One clock read per write that completes a live frame (not per frame queued), and
//! two relaxed atomic adds per delivery: the cost stays off the queueing side.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::histogram::Histogram;

/// From the message's store (`ts`, milliseconds) to its frame fully written to a member.
pub static LATENCY: LazyLock<Histogram> = LazyLock::new(Histogram::default);

/// Live deliveries not made because the member's queue overflowed (close 4001): frames
/// refused and frames dropped from its queue. The member resumes and loses nothing.
pub static DROPPED_SLOW: AtomicU64 = AtomicU64::new(0);
/// Live deliveries not made because the member's socket had failed (it left).
pub static DROPPED_GONE: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the epoch, as messages' `ts` are.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A live frame stored at `stored_ms` is written out now (`now_ms`).
pub fn written(stored_ms: u64, now_ms: u64) {
    LATENCY.observe(Duration::from_millis(now_ms.saturating_sub(stored_ms)));
}

pub fn dropped(slow: u64, gone: u64) {
    if slow > 0 {
        DROPPED_SLOW.fetch_add(slow, Relaxed);
    }
    if gone > 0 {
        DROPPED_GONE.fetch_add(gone, Relaxed);
    }
}
