//! A Prometheus histogram of durations with fixed buckets, lock-free: an observation
//! is two relaxed atomic adds (its bucket, the sum), so it can sit on the send path.
//! The count is the sum of the buckets when rendered, so `+Inf` and `_count` always
//! agree with the buckets (`_sum` may trail them by an observation being made). Used for `chat_send_duration_seconds` (a `send` from its arrival to the
//! stored, published answer), the latency the Grafana dashboard's p99 reads.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (1 ms to 2.5 s; `+Inf` past them).
pub const BOUNDS_US: [u64; 11] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations in each bucket (not cumulative: summed when rendered); the last
    /// one holds those past every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The histogram's lines in the text format, `_bucket` cumulative with `le`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut below = 0;
        for (bound, n) in BOUNDS_US.iter().zip(&self.buckets) {
            below += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {below}", *bound as f64 / 1e6);
        }
        let count = below + self.buckets[BOUNDS_US.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
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
}
