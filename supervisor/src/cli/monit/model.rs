//! What `l4ctl monit` shows, and what a key asks for: the status table, the
//! selected instance's last five minutes of CPU and memory, its app's newest log
//! lines, its last crash report and the daemon's latest events. Pure (no I/O, no
//! terminal): the feed (`feed.rs`) brings [`Update`]s, the view (`view.rs`) draws,
//! and the tests drive it directly.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::types::{AppHistory, InstanceStatus, State, StatusReport};

/// The charts' window.
pub const WINDOW_SECS: f64 = 300.0;
/// Log lines kept for the pane (the newest).
pub const LOG_LINES: usize = 200;
/// Event sentences kept.
pub const EVENTS: usize = 50;
/// Longest log line kept, in characters (the rest is cut with `…`).
pub const LINE_CHARS: usize = 400;

/// One point of a chart: unix seconds, CPU percent, memory bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: f64,
    pub cpu: Option<f64>,
    pub memory: Option<u64>,
}

/// Something the feed learnt.
#[derive(Debug)]
pub enum Update {
    Status(Result<StatusReport, String>, f64),
    History(AppHistory),
    /// An app's newest log lines, as `instance` and line.
    Logs(String, Vec<(Option<u32>, String)>),
    /// The newest crash report of an app, rendered to a few lines (or none).
    Crash(String, Option<Vec<String>>),
    /// One event of the SSE stream.
    Event(serde_json::Value),
    /// How an action ended: the sentence, and whether it failed.
    Done(String, bool),
}

/// What a key asks the feed to do against the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `POST /api/v1/apps/{target}/{op}`, `target` being `app:N` or `app`.
    Control {
        target: String,
        op: &'static str,
    },
    Reload(String),
    Scale(String, u32),
}

impl Action {
    /// What the message line says while it is carried out.
    pub fn sentence(&self) -> String {
        match self {
            Action::Control { target, op } => format!("{op} {target}…"),
            Action::Reload(app) => format!("reload {app}…"),
            Action::Scale(app, n) => format!("scale {app} to {n}…"),
        }
    }
}

/// What the main pane shows below the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    /// The selected instance's app's logs and its last crash.
    #[default]
    Overview,
    /// Only the logs, full height (`l`).
    Logs,
}

#[derive(Debug, Default)]
pub struct Monit {
    pub rows: Vec<InstanceStatus>,
    /// The selected instance, kept by name across re-orderings.
    pub selected: Option<(String, u32)>,
    series: BTreeMap<(String, u32), VecDeque<Point>>,
    /// Apps whose history was asked for (once each).
    pub history_asked: std::collections::BTreeSet<String>,
    pub logs: VecDeque<String>,
    pub logs_app: Option<String>,
    pub crash: Option<(String, Vec<String>)>,
    pub events: VecDeque<String>,
    /// The last action's outcome (or the daemon being unreachable): sentence, failed.
    pub message: Option<(String, bool)>,
    /// Why the last status fetch failed (no daemon, no answer in time); cleared by the next
    /// one that works, and shown before any other message while it lasts.
    pub unreachable: Option<String>,
    pub pane: Pane,
    pub quit: bool,
}

impl Monit {
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Status(Ok(report), now) => self.status(report, now),
            Update::Status(Err(e), _) => self.unreachable = Some(e),
            Update::History(h) => self.history(&h),
            Update::Logs(app, lines) => {
                if self.selected_app() == Some(app.as_str()) {
                    self.logs = lines.into_iter().map(|(i, l)| log_line(i, &l)).collect();
                    while self.logs.len() > LOG_LINES {
                        self.logs.pop_front();
                    }
                    self.logs_app = Some(app);
                }
            }
            // A late answer for the app selected before is not this app's crash.
            Update::Crash(app, lines) if self.selected_app() == Some(app.as_str()) => {
                self.crash = lines.map(|l| (app, l));
            }
            Update::Crash(..) => {}
            Update::Event(e) => {
                if let Some(s) = event_sentence(&e) {
                    self.events.push_back(s);
                    if self.events.len() > EVENTS {
                        self.events.pop_front();
                    }
                }
            }
            Update::Done(s, failed) => self.message = Some((s, failed)),
        }
    }

    fn status(&mut self, report: StatusReport, now: f64) {
        self.unreachable = None;
        self.rows = report.instances;
        for r in &self.rows {
            let s = self.series.entry((r.app.clone(), r.instance)).or_default();
            s.push_back(Point { t: now, cpu: r.cpu_percent, memory: r.memory_bytes });
            while s.front().is_some_and(|p| p.t < now - WINDOW_SECS) {
                s.pop_front();
            }
        }
        let live: std::collections::BTreeSet<_> = self.rows.iter().map(|r| (r.app.clone(), r.instance)).collect();
        self.series.retain(|k, _| live.contains(k));
        if self.selected.as_ref().is_none_or(|k| !live.contains(k)) {
            self.selected = self.rows.first().map(|r| (r.app.clone(), r.instance));
        }
    }

    /// The daemon's buckets before the first live point: the charts have a past at once.
    fn history(&mut self, h: &AppHistory) {
        for inst in &h.instances {
            let s = self.series.entry((inst.app.clone(), inst.instance)).or_default();
            let first_live = s.front().map_or(f64::INFINITY, |p| p.t);
            let end = s.back().map_or(f64::NEG_INFINITY, |p| p.t);
            let past = inst.cpu_percent.iter().zip(&inst.memory_bytes).enumerate().rev().filter_map(|(i, (c, m))| {
                let t = (inst.start + i as u64 * h.step_secs) as f64;
                (t < first_live && t >= end - WINDOW_SECS).then_some(Point { t, cpu: *c, memory: *m })
            });
            for p in past {
                s.push_front(p);
            }
        }
    }

    pub fn selected_row(&self) -> Option<&InstanceStatus> {
        let (app, i) = self.selected.as_ref()?;
        self.rows.iter().find(|r| &r.app == app && r.instance == *i)
    }

    pub fn selected_app(&self) -> Option<&str> {
        self.selected.as_ref().map(|(a, _)| a.as_str())
    }

    pub fn selected_index(&self) -> Option<usize> {
        let (app, i) = self.selected.as_ref()?;
        self.rows.iter().position(|r| &r.app == app && r.instance == *i)
    }

    /// The selected instance's points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.selected.as_ref().and_then(|k| self.series.get(k)).into_iter().flatten()
    }

    /// A key: moves the selection or switches the pane here; returns what it asks of the daemon.
    pub fn key(&mut self, key: char) -> Option<Action> {
        let row = self.selected_row().cloned();
        let target = row.as_ref().map(|r| format!("{}:{}", r.app, r.instance));
        let count = |app: &str| self.rows.iter().filter(|r| r.app == app).count() as u32;
        match key {
            'q' => self.quit = true,
            'j' | '↓' => self.step(1),
            'k' | '↑' => self.step(-1),
            'l' => self.pane = if self.pane == Pane::Logs { Pane::Overview } else { Pane::Logs },
            'r' => return target.map(|target| Action::Control { target, op: "restart" }),
            's' => {
                // Stopped or errored (given up on): start; anything else, a pending
                // restart included: stop.
                let idle = row.as_ref().is_some_and(|r| matches!(r.state, State::Stopped | State::Errored));
                let op = if idle { "start" } else { "stop" };
                return target.map(|target| Action::Control { target, op });
            }
            'R' => return row.map(|r| Action::Reload(r.app)),
            '+' => return row.map(|r| Action::Scale(r.app.clone(), count(&r.app) + 1)),
            '-' => {
                let r = row?;
                let n = count(&r.app);
                if n <= 1 {
                    self.message = Some((format!("`{}` has one instance; `s` stops it", r.app), true));
                    return None;
                }
                return Some(Action::Scale(r.app, n - 1));
            }
            _ => {}
        }
        None
    }

    fn step(&mut self, by: isize) {
        if self.rows.is_empty() {
            return;
        }
        let at = self.selected_index().map_or(0, |i| i as isize + by).clamp(0, self.rows.len() as isize - 1);
        let r = &self.rows[at as usize];
        self.selected = Some((r.app.clone(), r.instance));
        self.crash = None;
    }
}

/// A log line for the pane: its instance, and no control characters (a terminal
/// must not take a worker's escape sequences as its own).
fn log_line(instance: Option<u32>, line: &str) -> String {
    let mut s = instance.map(|i| format!("{i}| ")).unwrap_or_default();
    let mut chars = line.chars();
    s.extend(chars.by_ref().take(LINE_CHARS).map(|c| if c.is_control() { '·' } else { c }));
    if chars.next().is_some() {
        s.push('…');
    }
    s
}

/// One line for an SSE event: `12:00:01 web:1 online -> stopping`.
fn event_sentence(e: &serde_json::Value) -> Option<String> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let at = now.get(11..19).unwrap_or("");
    let who = format!("{}:{}", e["app"].as_str()?, e["instance"].as_u64()?);
    let what = match e["type"].as_str()? {
        "state" => format!("{} -> {}", e["from"].as_str()?, e["to"].as_str()?),
        "restart" => format!("restarted ({}), {} restarts", e["reason"].as_str()?, e["restarts"]),
        "memory" => format!("memory ceiling: {} of {} bytes", e["rss_bytes"], e["ceiling_bytes"]),
        "crash" => format!("crash report: {}", e["reason"].as_str()?),
        _ => return None,
    };
    Some(format!("{at} {who} {what}"))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
