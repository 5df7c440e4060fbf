//! `cron_restart`: the next time an expression names, in local time, as cron and
//! PM2 read it, and as a deadline of the monotonic clock the task can sleep until.
//!
//! The wall clock can move under a sleeping task (NTP, a suspended machine): a
//! deadline that arrives before its local time is not due ([`Schedule::due`]) and
//! is computed again, so a restart never comes early and never twice.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

/// Longest single sleep: a schedule whose next time is further away wakes up and
/// looks again (the wall clock may have moved meanwhile).
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(super) struct Schedule {
    pub expr: String,
    cron: croner::Cron,
    /// The next local time, and when the monotonic clock is there.
    pub next: Option<(DateTime<Local>, Instant)>,
}

impl Schedule {
    /// `expr` was checked by the config (`config::triggers::parse_cron`).
    pub fn new(expr: &str) -> Option<Schedule> {
        let cron = crate::config::triggers::parse_cron(expr).ok()?;
        let mut s = Schedule { expr: expr.to_owned(), cron, next: None };
        s.advance(Local::now());
        Some(s)
    }

    /// When to look again.
    pub fn wake(&self) -> Option<Instant> {
        self.next.map(|(_, at)| at)
    }

    /// Whether the next time has come; if so, the one after it is computed. A wake-up
    /// before the local time (the clock moved back) computes the deadline again.
    pub fn due(&mut self) -> bool {
        let Some((when, _)) = self.next else { return false };
        let now = Local::now();
        if now >= when {
            self.advance(now.max(when));
            return true;
        }
        self.next = Some((when, deadline(now, when)));
        false
    }

    fn advance(&mut self, after: DateTime<Local>) {
        self.next = self.cron.find_next_occurrence(&after, false).ok().map(|when| (when, deadline(Local::now(), when)));
    }
}

/// The monotonic deadline of local time `when`, at most [`LONGEST_SLEEP`] away.
fn deadline(now: DateTime<Local>, when: DateTime<Local>) -> Instant {
    let wait = (when - now).to_std().unwrap_or_default().min(LONGEST_SLEEP);
    Instant::now() + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_second_is_due_once_per_second_and_never_early() {
        let mut s = Schedule::new("* * * * * *").unwrap();
        let (first, at) = s.next.unwrap();
        assert!(at <= Instant::now() + Duration::from_secs(1));
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        // Past the deadline the local time is there too: due, and the next one is later.
        while !s.due() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (second, _) = s.next.unwrap();
        assert!(second >= first + chrono::Duration::seconds(1), "{second} after {first}: one restart per second");
    }

    #[test]
    fn a_daily_time_sleeps_at_most_an_hour_before_looking_again() {
        let s = Schedule::new("0 3 * * *").unwrap();
        let (when, at) = s.next.unwrap();
        assert_eq!(when.format("%H:%M:%S").to_string(), "03:00:00");
        assert!(at <= Instant::now() + LONGEST_SLEEP);
    }
}
