//! What the daemon hands its API to render `/metrics` from: one snapshot of the table
//! and of the log counters, taken at once.

use crate::wire::types::{LogCounters, StatusReport};

/// What `/metrics` is rendered from.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub status: StatusReport,
    pub logs: Vec<(String, LogCounters)>,
}
