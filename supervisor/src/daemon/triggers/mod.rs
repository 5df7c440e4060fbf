//! The triggers task: restarts an app when its files change (`watch`) or its
//! schedule says so (`cron_restart`), through the workflow `l4ctl reload` uses when
//! the app has readiness (a rolling reload: no refused connection), else the one
//! `l4ctl restart` uses. It sits on the callers' side of the actor: it learns which
//! apps have triggers from the list the actor publishes, and acts through the
//! [`Handle`], like the API.
//!
//! Coalescing: a burst of changes is one restart, once the files have been quiet for
//! `watch_delay` (at the latest [`MAX_WAIT_FACTOR`] × `watch_delay` after the first
//! change); changes and cron times that come while the app's restart is under way
//! make one more restart after it. A stopped app stays stopped. What happened is
//! kept for `l4ctl describe` ([`super::handle::TriggerNotes`]).

mod entries;
mod files;
mod restart;
mod schedule;
mod thread;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{AppTriggers, Handle, Triggered};
use restart::{Outcome, restart};
use schedule::Schedule;
use thread::{Command, Report, Watching};

pub use files::MAX_WATCH_DIRS;

/// Changes that keep coming delay a restart at most this many `watch_delay`s.
pub const MAX_WAIT_FACTOR: u32 = 10;

/// Start the task; it ends when the actor does.
/// `ours`: the daemon's home and log folder, never watched.
pub fn spawn(handle: Handle, specs: watch::Receiver<Triggered>, ours: Vec<PathBuf>) {
    tokio::spawn(run(handle, specs, ours));
}

/// One app with triggers.
struct Armed {
    spec: AppTriggers,
    schedule: Option<Schedule>,
    /// A change not acted on yet: first and last seen, and the first path.
    change: Option<(Instant, Instant, PathBuf)>,
    /// The schedule came due while a restart was under way.
    cron_due: bool,
    busy: bool,
    /// After a rolling reload that was under way: not before this.
    not_before: Option<Instant>,
    /// The restart under way was the schedule's (else a change's).
    by_cron: bool,
}

impl Armed {
    fn delay(&self) -> Duration {
        self.spec.triggers.watch.as_ref().map_or(Duration::ZERO, |w| w.delay)
    }

    fn change_due(&self) -> Option<Instant> {
        let d = self.delay();
        let due = self.change.as_ref().map(|(first, last, _)| (*last + d).min(*first + d * MAX_WAIT_FACTOR))?;
        Some(self.not_before.map_or(due, |n| due.max(n)))
    }

    /// When the task must look at this app again.
    fn wake(&self) -> Option<Instant> {
        let cron = self.cron_due.then(|| self.not_before.unwrap_or_else(Instant::now));
        let mine = if self.busy { None } else { [self.change_due(), cron].into_iter().flatten().min() };
        [mine, self.schedule.as_ref().and_then(Schedule::wake)].into_iter().flatten().min()
    }
}

struct Task {
    /// Its `triggers` are the notes `describe` shows.
    handle: Handle,
    ours: Vec<PathBuf>,
    apps: BTreeMap<String, Armed>,
    /// The watch thread, started with the first app that has `watch`.
    files: Option<Watching>,
    /// Every app's log files, as the watch thread last heard them.
    logs: Vec<PathBuf>,
    done: mpsc::UnboundedSender<(String, Outcome)>,
}

async fn run(handle: Handle, mut specs: watch::Receiver<Triggered>, ours: Vec<PathBuf>) {
    // At most one message per app: one restart under way per app.
    let (done, mut done_rx) = mpsc::unbounded_channel();
    let mut task = Task { handle, ours, apps: BTreeMap::new(), files: None, logs: Vec::new(), done };
    let mut reports: Option<mpsc::Receiver<Report>> = None;
    let first = specs.borrow_and_update().clone();
    task.reconcile(&first, &mut reports);
    loop {
        let wake = task.apps.values().filter_map(Armed::wake).min();
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let report = async {
            match reports.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = specs.changed() => {
                if changed.is_err() {
                    return;
                }
                let list = specs.borrow_and_update().clone();
                task.reconcile(&list, &mut reports);
            }
            Some(report) = report => task.report(report),
            Some((app, outcome)) = done_rx.recv() => task.finished(&app, outcome),
            () = sleep => {}
        }
        task.fire_due();
    }
}

impl Task {
    /// Follow the actor's list: new apps armed, changed ones armed again, gone ones dropped.
    fn reconcile(&mut self, published: &Triggered, reports: &mut Option<mpsc::Receiver<Report>>) {
        let list = &published.apps;
        let names: BTreeSet<&str> = list.iter().map(|t| t.app.as_str()).collect();
        let gone: Vec<String> = self.apps.keys().filter(|a| !names.contains(a.as_str())).cloned().collect();
        for app in gone {
            self.apps.remove(&app);
            if let Some(f) = &self.files {
                f.send(Command::Remove(app));
            }
        }
        self.handle.triggers.retain(&names);
        // The log files first, so a walk below already knows them; a change of them alone
        // (another app's config) re-walks nothing.
        if let Some(f) = &self.files
            && self.logs != published.logs
        {
            f.send(Command::Logs(published.logs.clone()));
            self.logs = published.logs.clone();
        }
        for t in list {
            if self.apps.get(&t.app).is_some_and(|a| a.spec == *t) {
                continue;
            }
            let (busy, by_cron) = self.apps.remove(&t.app).map_or((false, false), |a| (a.busy, a.by_cron));
            let schedule = t.triggers.cron_restart.as_deref().and_then(Schedule::new);
            let watch = match &t.triggers.watch {
                Some(spec) => {
                    if self.files.is_none() {
                        match Watching::start(self.ours.clone()) {
                            Ok((w, r)) => {
                                w.send(Command::Logs(published.logs.clone()));
                                self.logs = published.logs.clone();
                                self.files = Some(w);
                                *reports = Some(r);
                            }
                            Err(why) => tracing::warn!("{why}"),
                        }
                    }
                    let command = Command::Set { app: t.app.clone(), spec: spec.clone() };
                    match &self.files {
                        Some(f) => {
                            f.send(command);
                            Some("being set up".to_owned())
                        }
                        None => Some("not watched: the file watch could not start (see the daemon's log)".to_owned()),
                    }
                }
                None => {
                    if let Some(f) = &self.files {
                        f.send(Command::Remove(t.app.clone()));
                    }
                    None
                }
            };
            self.handle.triggers.update(&t.app, |n| {
                n.watching = false;
                n.watch = watch;
                n.next_cron_restart = next_time(schedule.as_ref());
            });
            let armed =
                Armed { spec: t.clone(), schedule, change: None, cron_due: false, busy, not_before: None, by_cron };
            self.apps.insert(t.app.clone(), armed);
        }
    }

    /// What the watch thread found.
    fn report(&mut self, report: Report) {
        let app = match &report {
            Report::Armed { app, .. } | Report::Changed { app, .. } => app,
        };
        // A late report of an app that is gone leaves no note (one of an app armed again
        // since is at worst one more restart).
        if !self.apps.contains_key(app) {
            return;
        }
        match report {
            Report::Armed { app, result } => {
                match &result {
                    Ok(what) => tracing::info!(app, watching = %what, "watching files"),
                    Err(why) => tracing::warn!(app, "{why}"),
                }
                self.handle.triggers.update(&app, |n| {
                    n.watching = result.is_ok();
                    n.watch = Some(result.unwrap_or_else(|e| e));
                });
            }
            Report::Changed { app, path, summary } => {
                let now = Instant::now();
                if let Some(a) = self.apps.get_mut(&app) {
                    let first = a.change.take().map_or((now, path), |(first, _, p)| (first, p));
                    a.change = Some((first.0, now, first.1));
                }
                if let Some(what) = summary {
                    self.handle.triggers.update(&app, |n| n.watch = Some(what));
                }
            }
        }
    }

    fn finished(&mut self, app: &str, outcome: Outcome) {
        let Some(a) = self.apps.get_mut(app) else { return };
        a.busy = false;
        let error = match outcome {
            Outcome::Done => None,
            Outcome::Skipped(why) | Outcome::Failed(why) => Some(why),
            Outcome::Busy => {
                // Again once the reload under way is over, for the same cause.
                let now = Instant::now();
                if a.by_cron {
                    a.cron_due = true;
                } else {
                    let path = a.change.take().map_or_else(|| PathBuf::from("(a change seen before)"), |(_, _, p)| p);
                    a.change = Some((now, now, path));
                }
                a.not_before = Some(now + Duration::from_secs(1));
                Some(format!("a rolling reload of `{app}` was under way; again after it"))
            }
        };
        self.handle.triggers.update(app, |n| {
            if error.is_none() {
                n.restarts += 1;
            }
            n.last_error = error;
        });
    }

    /// Start what is due: one restart per app at a time.
    fn fire_due(&mut self) {
        let now = Instant::now();
        for (name, a) in &mut self.apps {
            if let Some(s) = a.schedule.as_mut()
                && s.wake().is_some_and(|w| w <= now)
            {
                a.cron_due |= s.due();
                self.handle.triggers.update(name, |n| n.next_cron_restart = next_time(Some(s)));
            }
            if a.busy {
                continue;
            }
            let (cause, by_cron) = if a.change_due().is_some_and(|d| d <= now) {
                let (_, _, path) = a.change.take().unwrap_or((now, now, PathBuf::new()));
                let base = a.spec.triggers.watch.as_ref().map_or(Path::new("/"), |w| w.base.as_path());
                (format!("file change: {}", path.strip_prefix(base).unwrap_or(&path).display()), false)
            } else if a.cron_due && a.not_before.is_none_or(|n| n <= now) {
                (format!("cron_restart {}", a.schedule.as_ref().map_or("", |s| s.expr.as_str())), true)
            } else {
                continue;
            };
            a.by_cron = by_cron;
            // One restart covers both.
            a.cron_due = false;
            a.not_before = None;
            a.busy = true;
            tracing::info!(app = %name, %cause, rolling = a.spec.rolling, "restarting: {cause}");
            self.handle.triggers.update(name, |n| {
                n.last = Some(cause);
                n.last_at = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            });
            let (handle, app, rolling, done) = (self.handle.clone(), name.clone(), a.spec.rolling, self.done.clone());
            tokio::spawn(async move {
                let outcome = restart(&handle, &app, rolling).await;
                if let Outcome::Failed(why) = &outcome {
                    tracing::warn!(app, "restart by watch or cron_restart failed: {why}");
                }
                let _ = done.send((app, outcome));
            });
        }
    }
}

fn next_time(s: Option<&Schedule>) -> Option<String> {
    s.and_then(|s| s.next).map(|(when, _)| when.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}
