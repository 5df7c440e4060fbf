//! The memory ceiling decision, pure and unit-tested: given successive tree RSS
//! samples of one instance, when to restart it, when to kill it at once, and
//! when to sample it faster because it is getting close.

/// What to do after one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Well below the ceiling.
    Fine,
    /// At least half the ceiling, or over it but not for enough samples yet:
    /// sample this instance every `FAST_INTERVAL`.
    Watch,
    /// At or over the ceiling for `memory_samples` samples in a row: restart gracefully.
    Restart,
    /// Past 1.5 × the ceiling: SIGKILL the group now.
    Kill,
}

/// How often an instance under watch is sampled.
pub const FAST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a new instance with a memory ceiling is sampled fast.
pub const YOUNG: std::time::Duration = std::time::Duration::from_secs(5);

/// The backstop: past 1.5 x the ceiling a run is killed at once, whatever it is
/// doing (serving, being replaced, or ignoring the SIGTERM of a graceful restart).
pub fn past_backstop(rss: u64, ceiling: u64) -> bool {
    rss.saturating_mul(2) >= ceiling.saturating_mul(3)
}

/// Consecutive samples at or over the ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    over: u32,
}

impl Guard {
    pub fn check(&mut self, rss: u64, ceiling: u64, samples: u32) -> Verdict {
        if past_backstop(rss, ceiling) {
            self.over = 0;
            return Verdict::Kill;
        }
        if rss >= ceiling {
            self.over += 1;
            if self.over >= samples.max(1) {
                self.over = 0;
                return Verdict::Restart;
            }
            return Verdict::Watch;
        }
        self.over = 0;
        if rss.saturating_mul(2) >= ceiling { Verdict::Watch } else { Verdict::Fine }
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    #[test]
    fn restart_after_consecutive_samples_over_kill_past_one_and_a_half() {
        let mut g = Guard::default();
        let ceiling = 100;
        let seq: Vec<Verdict> = [10, 60, 100, 90, 100, 120].iter().map(|r| g.check(*r, ceiling, 2)).collect();
        assert_eq!(seq, vec![Fine, Watch, Watch, Watch, Watch, Restart]);
        assert_eq!(g.check(100, ceiling, 2), Watch, "the count starts again after a restart");
        assert_eq!(g.check(150, ceiling, 2), Kill);
        assert_eq!(Guard::default().check(149, ceiling, 1), Restart);
    }
}
