//! The daemon's side of crash reports (README, "Crash reports"): when a run ends
//! abnormally (a crash, an OOM kill, a memory restart, not ready in time) a task waits for the
//! end of its stderr, parses it and sends the report back; a structured panic line
//! from a run that is still alive half a second later is a non-fatal report. The
//! actor keeps the recent reports, opens one episode per fingerprint (only its
//! first crash is a new report; the others raise its count, sent again at 10,
//! 100, 1000 ... and when the episode ends) and appends reports and count
//! updates to `crashes.jsonl`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::supervisor::{Inst, Supervisor};
use super::{Event, Msg};
use std::sync::Arc;

use crate::config::ErrorTracking;
use crate::crash::oom::OomCounter;
use crate::crash::outbound::Destinations;
use crate::crash::{CrashReport, Episodes, Seen, journal, panic};
use crate::lifecycle::{ExitStatus, State};

/// Reports kept for the API.
const RECENT: usize = 100;
/// How long a report waits for the rest of the run's stderr.
const TAIL_WAIT: Duration = Duration::from_millis(300);
/// A run still alive this long after its panic line survived the panic.
const SURVIVED: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(super) struct Crashes {
    log_dir: PathBuf,
    recent: VecDeque<CrashReport>,
    episodes: Episodes,
    next_id: u64,
    /// Sentry and the webhook.
    pub outbox: super::deliver::Outbox,
    /// The memory cgroup's OOM-kill counter, when readable.
    pub oom: Option<OomCounter>,
    /// A `CloseEpisodes` is on its way.
    timer_armed: bool,
    /// The `[error_tracking]` in force.
    tracking: Option<ErrorTracking>,
    /// Reports being made off the actor (a crash's tail, a panic's check): a
    /// handover waits for them (they come back as messages).
    pub in_flight: u32,
}

impl Crashes {
    /// Episodes end after 10 quiet minutes until [`Crashes::configure`] says otherwise.
    pub fn new(log_dir: PathBuf) -> Crashes {
        Crashes {
            log_dir,
            recent: VecDeque::new(),
            episodes: Episodes::new(Duration::from_secs(600)),
            next_id: 1,
            outbox: Default::default(),
            oom: None,
            timer_armed: false,
            tracking: None,
            in_flight: 0,
        }
    }

    /// `[error_tracking]`: where reports go, and when an episode ends. A change
    /// starts a new sender task (the old one finishes what it has queued) and keeps
    /// the open episodes. Returns whether anything changed.
    pub fn configure(&mut self, cfg: &ErrorTracking) -> bool {
        if self.tracking.as_ref() == Some(cfg) {
            return false;
        }
        let destinations = Destinations::from_config(cfg).map(Arc::new);
        crate::crash::outbound::set_hook_destinations(destinations.clone());
        self.outbox = super::deliver::Outbox::start(destinations, cfg.queue, &self.outbox);
        if self.episodes.set_quiet(cfg.episode_quiet) {
            // A shorter window: the pending timer may fire too late for it.
            self.timer_armed = false;
        }
        self.tracking = Some(cfg.clone());
        true
    }

    /// The reports of earlier daemon runs, from `crashes.jsonl`: the recent ones are
    /// listed again, ids go on after the last, and an episode that had not ended goes
    /// on counting (its final count is sent when it goes quiet). Call after [`Crashes::configure`].
    pub fn restore(&mut self) {
        let reports = journal::recent(&self.log_dir, RECENT);
        let (wall, now) = (std::time::SystemTime::now(), Instant::now());
        for r in &reports {
            self.next_id = self.next_id.max(r.id.saturating_add(1));
            if r.episode.as_deref() == Some("ended") {
                continue;
            }
            let last_at = r.last_at.as_deref().unwrap_or(&r.at);
            let ago = humantime::parse_rfc3339_weak(last_at).ok().and_then(|t| wall.duration_since(t).ok());
            if let Some(last) = ago.and_then(|ago| now.checked_sub(ago)) {
                self.episodes.resume(&r.fingerprint, r.id, r.count, last, last_at);
            }
        }
        if !reports.is_empty() {
            tracing::info!(reports = reports.len(), "earlier crash reports read back from crashes.jsonl");
        }
        self.recent = reports.into();
    }

    /// The daemon is ending: journal the count of every open episode of more than one
    /// crash (only 10, 100, 1000 ... were), so the next daemon goes on from it.
    pub fn journal_open_counts(&self) {
        let mut open: Vec<(u64, u32)> = self.episodes.open().filter(|(_, count)| *count > 1).collect();
        open.sort_unstable();
        for (id, _) in open {
            self.update(id, "ongoing");
        }
    }

    /// The id of the next report: the time in milliseconds since the Unix epoch, so
    /// ids are unique across daemon runs and ordered in time (one more than the last
    /// when two fall in one millisecond or the clock went back).
    fn next_id(&self) -> u64 {
        self.next_id.max(crate::crash::now_ms())
    }

    /// Journal and send a recorded report (or an update of one). The journal is
    /// written here, in order (one small append; reports are rare).
    fn publish(&self, report: &CrashReport) {
        if let Err(e) = journal::append(&self.log_dir, report) {
            tracing::error!(cause = %e, "cannot append to crashes.jsonl");
        }
        self.outbox.send(report);
    }

    /// Journal and send the current count of report `id`'s episode.
    fn update(&self, id: u64, episode: &str) {
        let Some(first) = self.recent.iter().find(|r| r.id == id) else {
            tracing::warn!(id, "the first report of an episode is no longer kept; its count is not sent");
            return;
        };
        tracing::info!(app = %first.app, fingerprint = %first.fingerprint, count = first.count, episode, "crash episode count");
        self.publish(&CrashReport { episode: Some(episode.to_owned()), ..first.clone() });
    }

    /// Newest first.
    /// The newest `limit` reports (of `app`), newest first.
    pub fn list(&self, app: Option<&str>, limit: usize) -> Vec<CrashReport> {
        self.recent.iter().filter(|r| app.is_none_or(|a| r.app == a)).take(limit).cloned().collect()
    }
}

/// The run of `inst` just ended (its `last_exit` changed): report it if abnormal
/// (true: a `Msg::Crash` will come). A SIGKILL the memory cgroup counted as an OOM
/// kill is reason `oom`.
pub(super) fn on_exit(app: &str, inst: &Inst, oom: Option<&mut OomCounter>, tx: &mpsc::Sender<Msg>) -> bool {
    let Some(exit) = &inst.lc.last_exit else { return false };
    // The run that ended: during a replace the old run beside it (memory replace,
    // an old run that died), else the instance's current one (a failed new run
    // included: this runs before the actions of the step that ended it).
    let (tail, rss_bytes, backstopped) = match (exit.pid, &inst.retiree) {
        (Some(p), Some(old)) if old.pid as u32 == p => (old.tail.clone(), old.usage.rss_bytes, old.backstopped),
        (Some(_), _) => (inst.tail.clone(), inst.usage.rss_bytes, false),
        (None, _) => (None, None, false),
    };
    let sigkill = exit.status == Some(ExitStatus::Signal(nix::libc::SIGKILL));
    let (level, reason) = match exit.reason {
        // The old run of a memory replace, killed by us at the 1.5x backstop.
        "crashed" if backstopped => ("error", "memory"),
        "crashed" if sigkill && oom.is_some_and(OomCounter::explains_a_kill) => ("fatal", "oom"),
        "crashed" => ("fatal", "crashed"),
        "memory" => ("error", "memory"),
        "not-ready" => ("error", "not-ready"),
        _ => return false,
    };
    let (exit_code, signal) = ExitStatus::parts(exit.status);
    let mut report = CrashReport {
        pid: exit.pid,
        exit_code,
        signal,
        uptime_ms: exit.uptime.as_millis() as u64,
        restarts: inst.lc.restarts,
        rss_bytes,
        ..CrashReport::new(app, inst.index, level, reason)
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        if let Some(tail) = tail {
            tail.ended(TAIL_WAIT).await;
            report.stderr_tail = tail.text();
            report.panic = panic::last_panic(&report.stderr_tail);
        }
        report.refingerprint();
        let _ = tx.send(Msg::Crash { report: Box::new(report) }).await;
    });
    true
}

impl Supervisor {
    /// Record a report: the first of its episode is kept, journaled, announced and
    /// sent; a later one raises that report's count, which is sent again at 10,
    /// 100, 1000 ... crashes and when the episode ends.
    pub(super) fn record_crash(&mut self, mut report: CrashReport) {
        let id = self.crashes.next_id();
        // An episode that went quiet sends its final count before a crash of the
        // same fingerprint opens the next one.
        let now = Instant::now();
        self.close_episodes_at(now);
        let seen = self.crashes.episodes.observe(&report.fingerprint, id, now, &report.at);
        self.arm_episode_timer();
        match seen {
            Seen::First => {
                self.crashes.next_id = id + 1;
                report.id = id;
                tracing::warn!(app = %report.app, instance = report.instance, reason = %report.reason, fingerprint = %report.fingerprint, "crash report");
                self.emit(Event::Crash {
                    app: report.app.clone(),
                    instance: report.instance,
                    id,
                    level: report.level.clone(),
                    reason: report.reason.clone(),
                    fingerprint: report.fingerprint.clone(),
                });
                self.crashes.publish(&report);
                self.crashes.recent.push_front(report);
                self.crashes.recent.truncate(RECENT);
            }
            Seen::Again { id, count, milestone } => {
                tracing::info!(app = %report.app, fingerprint = %report.fingerprint, count, "the same crash again (one report per episode)");
                if let Some(first) = self.crashes.recent.iter_mut().find(|r| r.id == id) {
                    first.count = count;
                    first.last_at = Some(report.at.clone());
                }
                if milestone {
                    self.crashes.update(id, "ongoing");
                }
            }
        }
    }

    /// The episode timer fired: send the final counts of the episodes that went
    /// quiet, and look again when the next one could.
    pub(super) fn close_episodes(&mut self) {
        self.crashes.timer_armed = false;
        self.close_episodes_at(Instant::now());
        self.arm_episode_timer();
    }

    /// One timer for all episodes, at the earliest moment one can end.
    pub(super) fn arm_episode_timer(&mut self) {
        let Some(at) = self.crashes.episodes.next_end() else { return };
        if self.crashes.timer_armed {
            return; // it fires no later than `at`, and re-arms
        }
        self.crashes.timer_armed = true;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((at + Duration::from_millis(10)).into()).await;
            let _ = tx.send(Msg::CloseEpisodes).await;
        });
    }

    fn close_episodes_at(&mut self, now: Instant) {
        // The report already has the episode's count and last time (each crash set them).
        for ended in self.crashes.episodes.expire(now) {
            self.crashes.update(ended.id, "ended");
        }
    }

    /// A structured panic line: check a moment later whether the run survived it.
    pub(super) fn panic_line(&mut self, app: String, instance: u32, line: String) {
        let Some(pid) = self.inst(&app, instance).and_then(|i| i.lc.pid) else { return };
        let tx = self.tx.clone();
        self.crashes.in_flight += 1;
        tokio::spawn(async move {
            tokio::time::sleep(SURVIVED).await;
            let _ = tx.send(Msg::PanicCheck { app, instance, pid, line }).await;
        });
    }

    /// Still the same run, still online: a panic it survived (a task's, say).
    pub(super) fn panic_check(&mut self, app: &str, instance: u32, pid: u32, line: &str) {
        self.crashes.in_flight = self.crashes.in_flight.saturating_sub(1);
        let Some(inst) = self.inst(app, instance) else { return };
        if inst.lc.pid != Some(pid) || inst.lc.state != State::Online {
            return; // it died: the fatal report carries the panic
        }
        // The tail has the whole line by now even if it reached us in pieces.
        let tail = inst.tail.as_ref().map(|t| t.text()).unwrap_or_default();
        let parsed = panic::last_panic(&tail).or_else(|| panic::structured(line));
        let mut report = CrashReport {
            pid: Some(pid),
            uptime_ms: inst.lc.started_at.map_or(0, |t| t.elapsed().as_millis() as u64),
            restarts: inst.lc.restarts,
            rss_bytes: inst.usage.rss_bytes,
            panic: parsed,
            stderr_tail: tail,
            ..CrashReport::new(app, instance, "error", "panic")
        };
        report.refingerprint();
        self.record_crash(report);
    }
}
