//! A Prometheus histogram of durations with fixed buckets, lock-free: an observation
//! is two relaxed atomic adds (its bucket, the sum), so it can sit on the send path.
//! The count is the sum of the buckets when rendered, so `+Inf` and `_count` always
//! agree with the buckets (`_sum` may trail them by an observation being made). Used
//! for `chat_send_duration_seconds` (a `send` from its arrival to the stored,
//! published answer: the latency the Grafana dashboard's p99 reads, [`BOUNDS_US`]) and
//! `chat_connection_duration_seconds` (how long closed connections lasted, by close
//! reason, [`CONNECTION_BOUNDS_US`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of a send's buckets, in microseconds (1 ms to 2.5 s; `+Inf` past them).
pub const BOUNDS_US: [u64; 11] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

/// Upper bounds of a connection's lifetime buckets, in microseconds: 1 s, 10 s, 30 s,
/// 1, 5, 10, 20 and 30 minutes, 1 and 4 hours, 1 day.
pub const CONNECTION_BOUNDS_US: [u64; 11] = {
    const S: u64 = 1_000_000;
    [S, 10 * S, 30 * S, 60 * S, 300 * S, 600 * S, 1200 * S, 1800 * S, 3600 * S, 14_400 * S, 86_400 * S]
};

/// The bucket of `us` among `bounds` (the last one past every bound).
pub fn bucket(bounds: &[u64], us: u64) -> usize {
    bounds.iter().position(|&b| us <= b).unwrap_or(bounds.len())
}

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Observations in each bucket (not cumulative: summed when rendered); the last
    /// one holds those past every bound.
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&BOUNDS_US)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = bucket(self.bounds, us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Adds `n` observations to bucket `i` and `sum_us` to the sum (to merge shards).
    pub fn add(&self, i: usize, n: u64, sum_us: u64) {
        self.buckets[i].fetch_add(n, Relaxed);
        self.sum_us.fetch_add(sum_us, Relaxed);
    }

    /// The histogram's lines in the text format, `_bucket` cumulative with `le`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// Its lines with `labels` (`reason="client",`, each ending in a comma) in front
    /// of `le`, and no HELP or TYPE line: one series of a labelled histogram.
    pub fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let mut below = 0;
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            below += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{}\"}} {below}", *bound as f64 / 1e6);
        }
        let count = below + self.buckets[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Histogram;

    #[test]
    fn buckets_are_cumulative_and_the_sum_and_count_add_up() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 40, 4000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("# TYPE x_seconds histogram\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"2.5\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_sum 4.044\n"), "{out}");
        assert!(out.contains("x_seconds_count 5\n"), "{out}");
    }

    #[test]
    fn a_labelled_series_carries_its_labels_on_every_line() {
        let h = Histogram::new(&super::CONNECTION_BOUNDS_US);
        h.observe(Duration::from_secs(700));
        let mut out = String::new();
        h.render_series(&mut out, "d_seconds", "reason=\"client\",");
        assert!(out.contains("d_seconds_bucket{reason=\"client\",le=\"600\"} 0\n"), "{out}");
        assert!(out.contains("d_seconds_bucket{reason=\"client\",le=\"1200\"} 1\n"), "{out}");
        assert!(out.contains("d_seconds_sum{reason=\"client\"} 700\n"), "{out}");
        assert!(out.contains("d_seconds_count{reason=\"client\"} 1\n"), "{out}");
    }
}
