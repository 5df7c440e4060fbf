//! The recent past of one instance, for charts without Prometheus: CPU and memory
//! in fixed 5 s buckets over the last hour, and its last restarts, crashes and
//! memory-ceiling hits as marks. Fixed size, whatever the daemon's uptime: one
//! [`BUCKETS`]-slot ring of 6-byte slots (allocated at the first sample) and at
//! most [`MARKS`] marks, [`BYTES_PER_INSTANCE`] in all. The slot (`app:N`) keeps its
//! past across restarts, so a chart shows the drop a restart makes. Pure: the actor
//! feeds it (`daemon/sampling.rs`) and the API reads it (`GET /api/v1/apps/{name}/history`).

use std::collections::VecDeque;

use crate::wire::types::{HistoryMark, InstanceHistory};

/// Seconds per bucket.
pub const STEP_SECS: u64 = 5;
/// Buckets kept: one hour.
pub const BUCKETS: usize = 720;
/// Marks kept (restarts, crashes, memory-ceiling hits); older ones are dropped.
pub const MARKS: usize = 32;
/// What one instance's past costs at most: the ring, the marks (their detail is a
/// short reason such as `crash` or `memory`), and the bookkeeping.
pub const BYTES_PER_INSTANCE: usize = size_of::<Ring>() + MARKS * MARK_BYTES + size_of::<History>();
const _: () = assert!(BYTES_PER_INSTANCE < 7 * 1024, "the README says under 7 KiB per instance");
/// A step back of the wall clock this many buckets or fewer drops the sample; a
/// longer one starts the ring again.
const CLOCK_SLACK: u64 = 2;
/// One mark: its time, kind and reason (a boxed string of up to 24 characters, ASCII
/// in practice: the reasons are the daemon's own words).
const MARK_BYTES: usize = size_of::<Mark>() + 24;

/// One finished (or the current) bucket. `u16::MAX` / `u32::MAX`: no figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Mean CPU over the bucket, in tenths of a percent of one core (saturating).
    cpu_tenths: u16,
    /// Highest tree RSS seen in the bucket, in KiB (saturating).
    rss_kib: u32,
}

const EMPTY: Slot = Slot { cpu_tenths: u16::MAX, rss_kib: u32::MAX };

/// The slots as two arrays (6 bytes a slot rather than a padded 8).
#[derive(Debug, Clone)]
struct Ring {
    cpu_tenths: [u16; BUCKETS],
    rss_kib: [u32; BUCKETS],
}

impl Ring {
    fn get(&self, bucket: u64) -> Slot {
        let i = ring(bucket);
        Slot { cpu_tenths: self.cpu_tenths[i], rss_kib: self.rss_kib[i] }
    }

    fn set(&mut self, bucket: u64, slot: Slot) {
        let i = ring(bucket);
        self.cpu_tenths[i] = slot.cpu_tenths;
        self.rss_kib[i] = slot.rss_kib;
    }
}

#[derive(Debug, Clone)]
struct Mark {
    at_ms: u64,
    kind: &'static str,
    detail: Box<str>,
}

/// The ring of one instance.
#[derive(Debug, Clone, Default)]
pub struct History {
    slots: Option<Box<Ring>>,
    /// The bucket number (`unix seconds / STEP_SECS`) of the newest slot.
    newest: u64,
    /// The current bucket's CPU figures so far (sum in tenths, count), for its mean.
    cpu_sum: u32,
    cpu_count: u16,
    marks: VecDeque<Mark>,
}

impl History {
    /// One regular sample at `unix_secs`: CPU (when known) and tree RSS.
    pub fn record(&mut self, unix_secs: u64, cpu_percent: Option<f64>, rss_bytes: u64) {
        let bucket = unix_secs / STEP_SECS;
        let slots = self
            .slots
            .get_or_insert_with(|| Box::new(Ring { cpu_tenths: [u16::MAX; BUCKETS], rss_kib: [u32::MAX; BUCKETS] }));
        if bucket < self.newest {
            if self.newest - bucket <= CLOCK_SLACK {
                return; // a small step back: keep what is there rather than mix buckets
            }
            // The clock was set back (an NTP step, a fixed RTC): start the ring again
            // rather than record nothing until the wall clock catches up.
            slots.cpu_tenths = [u16::MAX; BUCKETS];
            slots.rss_kib = [u32::MAX; BUCKETS];
            self.newest = bucket;
            self.cpu_sum = 0;
            self.cpu_count = 0;
        }
        if bucket > self.newest {
            // Every bucket between the last one and this one had no sample.
            let gap = (bucket - self.newest).min(BUCKETS as u64);
            for b in (bucket + 1 - gap)..=bucket {
                slots.set(b, EMPTY);
            }
            self.newest = bucket;
            self.cpu_sum = 0;
            self.cpu_count = 0;
        }
        let mut slot = slots.get(bucket);
        let kib = u32::try_from(rss_bytes / 1024).unwrap_or(u32::MAX - 1);
        slot.rss_kib = if slot.rss_kib == u32::MAX { kib } else { slot.rss_kib.max(kib) };
        if let Some(cpu) = cpu_percent.filter(|c| c.is_finite() && *c >= 0.0) {
            let tenths = (cpu * 10.0).round().min(f64::from(u16::MAX - 1)) as u32;
            self.cpu_sum = self.cpu_sum.saturating_add(tenths);
            self.cpu_count = self.cpu_count.saturating_add(1);
            slot.cpu_tenths = (self.cpu_sum / u32::from(self.cpu_count)).min(u32::from(u16::MAX - 1)) as u16;
        }
        slots.set(bucket, slot);
    }

    /// A restart, crash or memory-ceiling hit at `at_ms` (unix milliseconds).
    pub fn mark(&mut self, at_ms: u64, kind: &'static str, detail: &str) {
        if self.marks.len() == MARKS {
            self.marks.pop_front();
        }
        let detail: String = detail.chars().take(24).collect();
        self.marks.push_back(Mark { at_ms, kind, detail: detail.into_boxed_str() });
    }

    /// The past as the API serves it: from the first bucket with a figure within the
    /// hour before `now_secs` to the newest bucket sampled, and the marks of that hour.
    pub fn snapshot(&self, app: &str, instance: u32, id: u32, now_secs: u64) -> InstanceHistory {
        let window_start = (now_secs / STEP_SECS).max(self.newest).saturating_sub(BUCKETS as u64 - 1);
        let (mut cpu, mut memory, mut start) = (Vec::new(), Vec::new(), now_secs / STEP_SECS);
        if let Some(slots) = &self.slots {
            let lo = window_start.max(self.newest.saturating_sub(BUCKETS as u64 - 1));
            if let Some(first) = (lo..=self.newest).find(|&b| slots.get(b) != EMPTY) {
                start = first;
                for s in (first..=self.newest).map(|b| slots.get(b)) {
                    cpu.push((s.cpu_tenths != u16::MAX).then(|| f64::from(s.cpu_tenths) / 10.0));
                    memory.push((s.rss_kib != u32::MAX).then(|| u64::from(s.rss_kib) * 1024));
                }
            }
        }
        let since_ms = window_start * STEP_SECS * 1000;
        InstanceHistory {
            app: app.to_owned(),
            instance,
            id,
            start: start * STEP_SECS,
            cpu_percent: cpu,
            memory_bytes: memory,
            marks: self
                .marks
                .iter()
                .filter(|m| m.at_ms >= since_ms)
                .map(|m| HistoryMark { at_ms: m.at_ms, kind: m.kind.to_owned(), detail: m.detail.to_string() })
                .collect(),
        }
    }
}

fn ring(bucket: u64) -> usize {
    (bucket % BUCKETS as u64) as usize
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
