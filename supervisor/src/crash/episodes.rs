//! Crash episodes: the crashes of one fingerprint until it has been quiet for
//! a while. Only an episode's first crash is a new report; the others raise its
//! count, which is sent again at 10, 100, 1000 ... crashes and when it ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What [`Episodes::observe`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first crash of a new episode: send it.
    First,
    /// Another crash of the episode of report `id`, now `count` crashes; at 10,
    /// 100, 1000 ... (`milestone`) the count is sent as an update.
    Again { id: u64, count: u32, milestone: bool },
}

/// An episode that ended (quiet long enough) after more than one crash: its
/// final count is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: u64,
    pub count: u32,
    /// When its last crash happened (RFC 3339).
    pub last_at: String,
}

/// Crash episodes by fingerprint: one ends after `quiet` without that crash.
#[derive(Debug)]
pub struct Episodes {
    quiet: Duration,
    open: HashMap<String, Episode>,
}

#[derive(Debug)]
struct Episode {
    id: u64,
    count: u32,
    last: Instant,
    last_at: String,
}

impl Episodes {
    pub fn new(quiet: Duration) -> Episodes {
        Episodes { quiet, open: HashMap::new() }
    }

    /// A new `quiet`; open episodes stay open. True when it is shorter than before.
    pub fn set_quiet(&mut self, quiet: Duration) -> bool {
        let shorter = quiet < self.quiet;
        self.quiet = quiet;
        shorter
    }

    /// The report id and count of every open episode.
    pub fn open(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.open.values().map(|e| (e.id, e.count))
    }

    /// The earliest moment an open episode can end.
    pub fn next_end(&self) -> Option<Instant> {
        self.open.values().map(|e| e.last + self.quiet).min()
    }

    /// A crash with `fingerprint` happened at `now` (`at`: the same, as text);
    /// `id` is the report it would be.
    pub fn observe(&mut self, fingerprint: &str, id: u64, now: Instant, at: &str) -> Seen {
        if let Some(e) = self.open.get_mut(fingerprint)
            && now.saturating_duration_since(e.last) < self.quiet
        {
            e.count += 1;
            e.last = now;
            e.last_at = at.to_owned();
            let milestone = e.count >= 10 && 10u32.pow(e.count.ilog10()) == e.count;
            return Seen::Again { id: e.id, count: e.count, milestone };
        }
        // A new episode (an ended one not yet collected by `expire` is replaced).
        self.open.insert(fingerprint.to_owned(), Episode { id, count: 1, last: now, last_at: at.to_owned() });
        Seen::First
    }

    /// An episode of an earlier daemon run that had not ended (read back from the
    /// journal): a crash with its fingerprint before `last + quiet` goes on counting it.
    pub fn resume(&mut self, fingerprint: &str, id: u64, count: u32, last: Instant, last_at: &str) {
        self.open.entry(fingerprint.to_owned()).or_insert(Episode { id, count, last, last_at: last_at.to_owned() });
    }

    /// Close the episodes quiet since `quiet`; those with more than one crash are returned.
    pub fn expire(&mut self, now: Instant) -> Vec<Ended> {
        let mut ended = Vec::new();
        self.open.retain(|_, e| {
            let open = now.saturating_duration_since(e.last) < self.quiet;
            if !open && e.count > 1 {
                ended.push(Ended { id: e.id, count: e.count, last_at: std::mem::take(&mut e.last_at) });
            }
            open
        });
        ended.sort_by_key(|e| e.id);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_is_one_episode_with_a_count_until_it_is_quiet() {
        let mut e = Episodes::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |n: u64| t0 + Duration::from_secs(n);
        assert_eq!(e.observe("web:crashed:exit 1", 7, t0, "t0"), Seen::First);
        for n in 2..=10 {
            assert_eq!(
                e.observe("web:crashed:exit 1", 99, at(n), &format!("t{n}")),
                Seen::Again { id: 7, count: n as u32, milestone: n == 10 }
            );
        }
        assert_eq!(e.observe("web:panic:src/a.rs:1:1", 8, at(11), "t11"), Seen::First, "another fingerprint");
        assert_eq!(e.expire(at(69)), vec![], "neither is quiet for a minute yet");
        assert_eq!(
            e.expire(at(71)),
            vec![Ended { id: 7, count: 10, last_at: "t10".into() }],
            "the loop ended; the single panic ends without an update"
        );
        assert_eq!(e.expire(at(200)), vec![]);
        assert_eq!(e.observe("web:crashed:exit 1", 9, at(201), "t201"), Seen::First, "a new episode");
        assert_eq!(e.next_end(), Some(at(261)));
    }

    #[test]
    fn milestones_are_powers_of_ten() {
        let mut e = Episodes::new(Duration::from_secs(60));
        let t0 = Instant::now();
        e.observe("f", 1, t0, "");
        let milestones: Vec<u32> = (2..=1000)
            .filter_map(|_| match e.observe("f", 2, t0, "") {
                Seen::Again { count, milestone: true, .. } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(milestones, vec![10, 100, 1000]);
    }
}
