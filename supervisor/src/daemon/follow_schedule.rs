//! When nginx follows which app (`follow.rs`), as a pure schedule: a change of an
//! app's ready instances makes it due [`SETTLE`] later, pushed back by further
//! changes but never past [`MAX_WAIT`] after the first one of the burst (an
//! instance that flaps cannot hold nginx back for ever); an app whose `[nginx]`
//! lists other hosts is due again `interval` after each run ends; every app is
//! looked at again every [`RECHECK`] when its config file changed (a `hosts` or
//! `auto_reload` added while its instances stay up).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// How long an app's ready instances must stay as they are before nginx follows.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The longest a burst of changes delays nginx.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// How often the apps' config files are looked at for a change.
pub const RECHECK: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Schedule {
    /// When a burst of changes (or a first look) makes the app due.
    settle: HashMap<String, Instant>,
    /// When the current burst of changes of an app began.
    burst: HashMap<String, Instant>,
    /// When an app with other hosts is due for its next poll.
    poll: HashMap<String, Instant>,
    /// The apps whose `[nginx]` lists other hosts: their `interval`.
    polled: HashMap<String, Duration>,
    /// Each app's config file and its modification time when it was last read.
    files: HashMap<String, (PathBuf, Option<SystemTime>)>,
}

impl Schedule {
    /// An app's ready instances changed at `now`: due SETTLE on, pushed back by each
    /// change of the burst up to MAX_WAIT after its first.
    pub fn changed(&mut self, app: &str, now: Instant) {
        let first = *self.burst.entry(app.to_owned()).or_insert(now);
        self.settle.insert(app.to_owned(), (now + SETTLE).min(first + MAX_WAIT));
    }

    /// Look at `app` again SETTLE from `now` at the latest (not known yet, its file
    /// changed, or changes were missed).
    pub fn look(&mut self, app: &str, now: Instant) {
        let at = now + SETTLE;
        let due = self.settle.entry(app.to_owned()).or_insert(at);
        *due = (*due).min(at);
    }

    /// When the next app is due.
    pub fn next(&self) -> Option<Instant> {
        self.settle.values().chain(self.poll.values()).min().copied()
    }

    /// The apps due at `now`, taken off the schedule (a run does what both a settled
    /// change and a poll ask for).
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut ready: Vec<String> =
            self.settle.iter().chain(self.poll.iter()).filter(|(_, at)| **at <= now).map(|(a, _)| a.clone()).collect();
        ready.sort_unstable();
        ready.dedup();
        for app in &ready {
            self.settle.remove(app);
            self.poll.remove(app);
            self.burst.remove(app);
        }
        ready
    }

    /// A run for `app` ended at `now`; `hosts`: its `interval` when its `[nginx]`
    /// lists other hosts (then it is polled again that long after). `file` is its
    /// config file, with the modification time it was read at.
    pub fn ran(&mut self, app: &str, hosts: Option<Duration>, file: (PathBuf, Option<SystemTime>), now: Instant) {
        self.files.insert(app.to_owned(), file);
        match hosts {
            Some(interval) => {
                self.polled.insert(app.to_owned(), interval);
                self.poll.insert(app.to_owned(), now + interval);
            }
            None => {
                self.polled.remove(app);
                self.poll.remove(app);
            }
        }
    }

    /// Its config file cannot be read now (being edited, say): a polled app is
    /// asked again at its interval.
    pub fn unreadable(&mut self, app: &str, now: Instant) {
        if let Some(interval) = self.polled.get(app).copied() {
            self.poll.insert(app.to_owned(), now + interval);
        }
    }

    /// The app is gone, or nginx does not follow it.
    pub fn forget(&mut self, app: &str) {
        self.polled.remove(app);
        self.poll.remove(app);
    }

    /// Apps whose config file's modification time is no longer what it was read at
    /// (`mtime` reads it now).
    pub fn stale(&self, mtime: impl Fn(&Path) -> Option<SystemTime>) -> Vec<String> {
        self.files.iter().filter(|(_, (path, seen))| mtime(path) != *seen).map(|(app, _)| app.clone()).collect()
    }

    /// Every app polled for other hosts.
    pub fn polled(&self) -> Vec<String> {
        self.polled.keys().cloned().collect()
    }

    /// Whether the app's config file was read at least once.
    pub fn known(&self, app: &str) -> bool {
        self.files.contains_key(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_change_is_due_after_settle_and_later_changes_push_it_back_up_to_max_wait() {
        let (mut s, t) = (Schedule::default(), t0());
        s.changed("web", t);
        assert_eq!(s.next(), Some(t + SETTLE));
        s.changed("web", t + Duration::from_secs(1));
        assert_eq!(s.next(), Some(t + Duration::from_secs(1) + SETTLE));
        // Flapping every second: never later than MAX_WAIT after the first change.
        for k in 2..20 {
            s.changed("web", t + Duration::from_secs(k));
        }
        assert_eq!(s.next(), Some(t + MAX_WAIT));
        assert!(s.take_due(t + MAX_WAIT - Duration::from_millis(1)).is_empty());
        assert_eq!(s.take_due(t + MAX_WAIT), vec!["web".to_owned()]);
        assert_eq!(s.next(), None);
        // A new burst starts afresh.
        s.changed("web", t + Duration::from_secs(30));
        assert_eq!(s.next(), Some(t + Duration::from_secs(30) + SETTLE));
    }

    #[test]
    fn an_app_with_hosts_is_due_each_interval_after_its_run_and_a_change_never_delays_a_poll() {
        let (mut s, t) = (Schedule::default(), t0());
        let every = Duration::from_secs(10);
        s.ran("web", Some(every), ("/c.toml".into(), None), t);
        assert_eq!(s.next(), Some(t + every));
        // A change 9 s in: the poll due at 10 s stays; the change's own run is not later.
        s.changed("web", t + Duration::from_secs(9));
        assert_eq!(s.next(), Some(t + every));
        assert_eq!(s.take_due(t + every), vec!["web".to_owned()]);
        // Without hosts any more: no poll.
        s.ran("web", None, ("/c.toml".into(), None), t + every);
        assert_eq!(s.next(), None);
        assert!(s.polled().is_empty());
    }

    #[test]
    fn an_unreadable_file_keeps_a_polled_app_polled_and_a_changed_file_is_stale() {
        let (mut s, t) = (Schedule::default(), t0());
        let every = Duration::from_secs(10);
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        s.ran("web", Some(every), ("/c.toml".into(), Some(then)), t);
        s.take_due(t + every);
        s.unreadable("web", t + every);
        assert_eq!(s.next(), Some(t + every + every));
        assert!(s.stale(|_| Some(then)).is_empty());
        assert_eq!(s.stale(|_| Some(then + Duration::from_secs(1))), vec!["web".to_owned()]);
        assert!(s.known("web") && !s.known("api"));
        s.forget("web");
        assert!(s.polled().is_empty() && s.next().is_none());
    }
}
