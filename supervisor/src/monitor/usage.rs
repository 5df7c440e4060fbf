//! The latest figures of one instance (CPU over the last interval, tree RSS,
//! threads, descriptors, members) and how fast its memory grows, from successive
//! [`TreeSample`]s.

use std::time::{Duration, Instant};

use super::memory::Guard;
use super::sample::TreeSample;

/// The latest figures of one instance.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    cpu_sample: Option<(u64, Instant)>,
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub fds: Option<u64>,
    pub pids: Vec<i32>,
    pub guard: Guard,
    /// Sampled every `FAST_INTERVAL` (young, close to its ceiling, or growing fast).
    pub watched: bool,
    /// RSS and time of the sample before the latest, for the growth rate.
    prev_rss: Option<(u64, Instant)>,
    /// When `rss_bytes` was taken.
    rss_at: Option<Instant>,
}

impl Usage {
    /// Whether the growth since the previous sample would reach `ceiling` within `horizon`.
    pub fn heading_for(&self, ceiling: u64, horizon: Duration) -> bool {
        let (Some(rss), Some((prev, at)), Some(now)) = (self.rss_bytes, self.prev_rss, self.rss_at) else {
            return false;
        };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        if dt <= 0.0 || rss <= prev {
            return false;
        }
        let rate = (rss - prev) as f64 / dt;
        rss as f64 + rate * horizon.as_secs_f64() >= ceiling as f64
    }
}

impl Usage {
    /// `cpu`: update the CPU figure (regular passes only, so it stays "over the last
    /// sample interval" and is not quantised by 100 ms fast samples).
    pub fn record(&mut self, t: &TreeSample, ticks_per_sec: u64, cpu: bool) {
        let now = Instant::now();
        self.prev_rss = self.rss_bytes.zip(self.rss_at);
        self.rss_bytes = Some(t.rss_bytes);
        self.rss_at = Some(now);
        self.threads = Some(t.threads);
        self.pids = t.pids.clone();
        if t.fds.is_some() {
            self.fds = t.fds;
        }
        if !cpu {
            return;
        }
        if let Some((prev, at)) = self.cpu_sample {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                self.cpu_percent = Some(t.cpu_ticks.saturating_sub(prev) as f64 / ticks_per_sec as f64 / secs * 100.0);
            }
        }
        self.cpu_sample = Some((t.cpu_ticks, now));
    }
}

impl Usage {
    /// A new process: start from nothing, watched from the start when it has a ceiling.
    pub fn fresh(root: i32, watched: bool) -> Usage {
        Usage { pids: vec![root], watched, ..Usage::default() }
    }
}
