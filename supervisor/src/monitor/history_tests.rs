//! The history ring at its bounds: buckets, gaps, the hour's end, marks.

use super::{BUCKETS, History, MARKS, STEP_SECS};

const T0: u64 = 1_764_417_600; // a multiple of 5

#[test]
fn samples_in_one_bucket_make_one_point_mean_cpu_and_highest_memory() {
    let mut h = History::default();
    h.record(T0, Some(10.0), 100 << 20);
    h.record(T0 + 1, Some(30.0), 300 << 20);
    h.record(T0 + 4, None, 200 << 20);
    let s = h.snapshot("web", 0, 7, T0 + 4);
    assert_eq!(s.start, T0);
    assert_eq!(s.cpu_percent, vec![Some(20.0)]);
    assert_eq!(s.memory_bytes, vec![Some(300 << 20)]);
    assert_eq!((s.app.as_str(), s.instance, s.id), ("web", 0, 7));
}

#[test]
fn buckets_without_a_sample_are_null_and_a_new_bucket_starts_afresh() {
    let mut h = History::default();
    h.record(T0, Some(50.0), 10 << 20);
    h.record(T0 + 3 * STEP_SECS, Some(5.0), 20 << 20);
    let s = h.snapshot("web", 0, 0, T0 + 3 * STEP_SECS);
    assert_eq!(s.cpu_percent, vec![Some(50.0), None, None, Some(5.0)]);
    assert_eq!(s.memory_bytes, vec![Some(10 << 20), None, None, Some(20 << 20)]);
}

#[test]
fn the_ring_holds_one_hour_and_forgets_what_is_older() {
    let mut h = History::default();
    let n = BUCKETS as u64 + 100;
    for i in 0..n {
        h.record(T0 + i * STEP_SECS, Some(i as f64), (i + 1) << 10);
    }
    let s = h.snapshot("web", 0, 0, T0 + (n - 1) * STEP_SECS);
    assert_eq!(s.cpu_percent.len(), BUCKETS);
    assert_eq!(s.start, T0 + 100 * STEP_SECS);
    assert_eq!(s.memory_bytes.first(), Some(&Some(101 << 10)));
    assert_eq!(s.memory_bytes.last(), Some(&Some(n << 10)));
    // An hour later with no sample (the instance stopped): nothing is left to show.
    let later = h.snapshot("web", 0, 0, T0 + (n - 1 + BUCKETS as u64) * STEP_SECS);
    assert!(later.cpu_percent.is_empty() && later.memory_bytes.is_empty());
}

#[test]
fn a_gap_longer_than_the_ring_clears_it() {
    let mut h = History::default();
    h.record(T0, Some(1.0), 1 << 20);
    h.record(T0 + 10 * BUCKETS as u64 * STEP_SECS, Some(2.0), 2 << 20);
    let s = h.snapshot("web", 0, 0, T0 + 10 * BUCKETS as u64 * STEP_SECS);
    assert_eq!(s.cpu_percent, vec![Some(2.0)]);
}

#[test]
fn a_clock_that_goes_back_a_little_changes_nothing_and_a_long_step_back_starts_again() {
    let mut h = History::default();
    h.record(T0 + 10, Some(1.0), 1 << 20);
    h.record(T0, Some(99.0), 99 << 20);
    assert_eq!(h.snapshot("web", 0, 0, T0 + 10).memory_bytes, vec![Some(1 << 20)]);
    // An hour back: recorded from there on, not dropped until the clock catches up.
    h.record(T0 - 3600, Some(5.0), 5 << 20);
    h.record(T0 - 3595, Some(6.0), 6 << 20);
    let s = h.snapshot("web", 0, 0, T0 - 3595);
    assert_eq!(s.memory_bytes, vec![Some(5 << 20), Some(6 << 20)]);
    assert_eq!(s.start, T0 - 3600);
}

#[test]
fn figures_past_the_slot_widths_saturate_rather_than_wrap() {
    let mut h = History::default();
    h.record(T0, Some(1e9), u64::MAX);
    let s = h.snapshot("web", 0, 0, T0);
    assert_eq!(s.cpu_percent, vec![Some(6553.4)]);
    assert_eq!(s.memory_bytes, vec![Some(u64::from(u32::MAX - 1) * 1024)]);
    h.record(T0 + 1, Some(f64::NAN), 0);
    assert_eq!(h.snapshot("web", 0, 0, T0).cpu_percent, vec![Some(6553.4)]);
}

#[test]
fn marks_keep_the_newest_thirty_two_with_a_short_detail() {
    let mut h = History::default();
    for i in 0..(MARKS as u64 + 5) {
        h.mark((T0 + i) * 1000, "restart", &format!("crash {i} {}", "x".repeat(100)));
    }
    let s = h.snapshot("web", 0, 0, T0 + 60);
    assert_eq!(s.marks.len(), MARKS);
    assert_eq!(s.marks[0].at_ms, (T0 + 5) * 1000);
    assert!(s.marks.iter().all(|m| m.detail.chars().count() <= 24 && m.kind == "restart"));
    // An hour on, they are out of the window.
    assert!(h.snapshot("web", 0, 0, T0 + 2 * 3600).marks.is_empty());
}

#[test]
fn a_slot_is_six_bytes() {
    assert_eq!(size_of::<super::Ring>(), 6 * BUCKETS);
}
