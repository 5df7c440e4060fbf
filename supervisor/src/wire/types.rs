//! JSON shapes of the control API, shared by the daemon and the CLI.
//!
//! These are a stable, documented schema (`schema: 1`); `l4ctl status --json`
//! prints [`StatusReport`] as is. Add fields only at the end and never change a
//! field's meaning without bumping `SCHEMA`. No type here carries environment
//! values: `describe` lists environment *names* only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Diagnostic;
pub use crate::lifecycle::State;

pub const SCHEMA: u32 = 1;

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub schema: u32,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub home: PathBuf,
    pub log_dir: PathBuf,
    /// The TCP API's address, when it listens.
    #[serde(default)]
    pub api_listen: Option<String>,
    /// Why the TCP API is off although `api_listen` asked for it (the address was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_error: Option<String>,
    /// The handover this program took the daemon over from (`l4ctl update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

/// The last handover of the daemon to a new program in place (`l4ctl update`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Handover {
    /// Handovers since the daemon started.
    pub count: u32,
    /// The version of the program that handed over.
    pub from_version: String,
    /// From the freeze of the old program to the new one's API taking connections.
    pub away_ms: f64,
    /// Of which: from the `exec` on.
    #[serde(default)]
    pub since_exec_ms: f64,
    /// `update` (`l4ctl update`) or `panic` (a message panicked in the daemon, which
    /// went on in a fresh copy of its program).
    #[serde(default)]
    pub reason: String,
}

/// `GET /api/v1/status` and `l4ctl status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub schema: u32,
    pub instances: Vec<InstanceStatus>,
    /// Per app: bytes of log lines dropped because a log file could not be written
    /// (a full disk), as `describe`'s `log_counters.dropped_bytes`.
    #[serde(default)]
    pub log_dropped_bytes: std::collections::BTreeMap<String, u64>,
    /// The version of the daemon that answers.
    #[serde(default)]
    pub version: String,
    /// The handover that daemon came from (`l4ctl update`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

impl StatusReport {
    /// The table of `instances`, per-app log losses, version and handover empty (the
    /// daemon's answer fills them in).
    pub fn of(instances: Vec<InstanceStatus>) -> StatusReport {
        StatusReport {
            schema: SCHEMA,
            instances,
            log_dropped_bytes: Default::default(),
            version: String::new(),
            handover: None,
        }
    }
}

/// One row of the status table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    /// Stable id, unique in this daemon, kept across restarts.
    pub id: u32,
    pub app: String,
    /// 0-based index within the app (`L4_INSTANCE`).
    pub instance: u32,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// `stopped`, `starting`, `online`, `stopping`, `waiting-restart`, `crash-loop` or `errored`
    /// (a new state would be a schema change: readers of schema 1 refuse unknown ones).
    pub state: State,
    pub restarts: u32,
    /// Unstable runs in a row (shorter than `min_uptime`).
    pub unstable_restarts: u32,
    pub uptime_ms: Option<u64>,
    /// CPU use over the last sample interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// RSS of the whole process tree (the worker and every descendant).
    pub memory_bytes: Option<u64>,
    /// Milliseconds until the next automatic start, in `waiting-restart` or `crash-loop`.
    pub next_retry_ms: Option<u64>,
    pub last_exit: Option<ExitReport>,
    /// Threads of the whole process tree.
    #[serde(default)]
    pub threads: Option<u64>,
    /// Open file descriptors of the worker process.
    #[serde(default)]
    pub open_fds: Option<u64>,
    /// Restarts by why the run before ended: `crash`, `exit`, `manual`, `memory`, `spawn-failed`.
    #[serde(default)]
    pub restarts_by_reason: std::collections::BTreeMap<String, u32>,
    /// `max_memory_restart` in bytes.
    #[serde(default)]
    pub memory_ceiling_bytes: Option<u64>,
}

#[cfg(test)]
impl InstanceStatus {
    /// A row for unit tests: everything else empty.
    pub fn example(app: &str, instance: u32, pid: Option<u32>, state: State, uptime_ms: Option<u64>) -> Self {
        InstanceStatus {
            id: instance,
            app: app.to_owned(),
            instance,
            pid,
            port: None,
            state,
            restarts: 0,
            unstable_restarts: 0,
            uptime_ms,
            cpu_percent: None,
            memory_bytes: None,
            next_retry_ms: None,
            last_exit: None,
            threads: None,
            open_fds: None,
            restarts_by_reason: Default::default(),
            memory_ceiling_bytes: None,
        }
    }
}

/// How the last run of an instance ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitReport {
    /// `stopped`, `exited`, `crashed` or `spawn-failed`.
    pub reason: String,
    pub code: Option<i32>,
    /// Signal name, e.g. `SIGKILL`.
    pub signal: Option<String>,
    pub error: Option<String>,
    pub uptime_ms: u64,
    /// RFC 3339, UTC.
    pub at: String,
}

/// `GET /api/v1/apps/{name}`: `l4ctl describe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDescription {
    pub schema: u32,
    pub name: String,
    pub config_file: PathBuf,
    pub env_profile: Option<String>,
    /// The resolved app config, without environment values.
    pub config: serde_json::Value,
    /// Names of the variables set from `env_file`, `[apps.env]` and the profile.
    pub env_names: Vec<String>,
    /// out, err and combined files: one set, or one per instance (`merge_logs = false`).
    pub log_files: Vec<crate::config::LogFiles>,
    /// Lines and bytes written, rotations, lines cut at `max_line`, bytes dropped
    /// because a log file could not be written.
    pub log_counters: LogCounters,
    pub instances: Vec<InstanceStatus>,
    /// What `watch` and `cron_restart` are doing; absent when the app has neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<TriggerState>,
}

/// What `watch` and `cron_restart` are doing for one app (`l4ctl describe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerState {
    /// What is watched (`12 folders under /srv/app`), or why nothing is.
    pub watch: Option<String>,
    /// Whether `watch` works: false when the sentence in `watch` says why not.
    pub watching: bool,
    /// The next `cron_restart`, local time, RFC 3339.
    pub next_cron_restart: Option<String>,
    /// Restarts (or rolling reloads) a file change or the schedule caused.
    pub restarts: u64,
    /// What caused the last one: `file change: src/app.js`, `cron_restart 0 3 * * *`.
    pub last: Option<String>,
    /// When, RFC 3339, UTC.
    pub last_at: Option<String>,
    /// Why the last one was not carried out, when it was not.
    pub last_error: Option<String>,
}

/// `POST /api/v1/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StartRequest {
    /// A config file to load (absolute). `None`: restore the saved apps, or start all loaded ones.
    pub config: Option<PathBuf>,
    /// `--env NAME`: use `[apps.env_NAME]`.
    pub env: Option<String>,
    /// Only this app of the config (or of the loaded apps).
    pub app: Option<String>,
}

/// One instance `l4ctl signal` reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signalled {
    pub app: String,
    pub instance: u32,
    pub pid: u32,
}

/// Answer to actions: the status afterwards and the instances that did not come up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionReport {
    pub schema: u32,
    pub apps: Vec<String>,
    pub failed: Vec<String>,
    pub status: StatusReport,
    /// After a scale, with `[nginx] auto_reload` for the app: what the re-render did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxOutcome>,
}

/// The outcome of `l4ctl nginx reload` (render, `nginx -t`, install, reload command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxOutcome {
    pub ok: bool,
    pub message: String,
}

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `config_invalid`, `config_not_found`, `config_unreadable`, `unknown_app`, `nothing_to_start`,
    /// `bad_request`, `busy`, `shutting_down`, `internal`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// Counters of one app, as `describe` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogCounters {
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
    pub cut_lines: u64,
    /// Bytes of lines dropped because their file could not be written (a full disk)
    /// and held more than it may keep; a line lost from two files counts twice.
    #[serde(default)]
    pub dropped_bytes: u64,
}

/// What became of one replace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replaced {
    pub app: String,
    pub instance: u32,
    /// The run that was replaced (`None`: the instance was not online and was started).
    pub old_pid: Option<u32>,
    /// The instance's run now: the new one, or the old one when the new one failed.
    pub pid: Option<u32>,
    pub state: String,
    /// From the request until the new run was ready (or failed).
    pub ms: u64,
    pub ok: bool,
    /// Why the new run failed.
    pub error: Option<String>,
}

impl Replaced {
    /// What `l4ctl reload` says of a step that failed, and the message of the API's
    /// `409 reload_failed`.
    pub fn failure(&self) -> String {
        let serving = match (self.pid, self.pid == self.old_pid) {
            (Some(pid), true) => format!("; the old run (pid {pid}) keeps serving"),
            _ => String::new(),
        };
        let why = self.error.as_deref().unwrap_or("failed");
        format!("{}:{} was not replaced: {why}{serving}; the reload stopped there", self.app, self.instance)
    }
}

/// One line of `POST /api/v1/apps/{name}/reload` with `"progress": true`
/// (`application/x-ndjson`): the plan first, then each step as its wave ends,
/// then how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadProgress {
    /// The instances to replace, `parallel` at a time.
    Plan {
        app: String,
        instances: Vec<u32>,
        parallel: u32,
    },
    Replaced(Replaced),
    /// Every instance was replaced.
    Done(ActionReport),
    /// The rollout stopped (`reload_failed` after a failed step, or another error).
    Error(ErrorDetail),
}

/// `GET /api/v1/apps/{name}/history`: what the daemon keeps of each instance's last
/// hour (`monitor::history`), for charts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppHistory {
    pub schema: u32,
    pub app: String,
    /// Seconds per bucket (5).
    pub step_secs: u64,
    pub instances: Vec<InstanceHistory>,
}

/// One instance's buckets, oldest first: bucket `i` starts at `start + i * step_secs`
/// (unix seconds); `null` where no sample fell in the bucket (the instance was not
/// running, or `sample_interval` is longer than 5 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceHistory {
    pub app: String,
    pub instance: u32,
    pub id: u32,
    pub start: u64,
    /// Mean CPU over the bucket, percent of one core.
    pub cpu_percent: Vec<Option<f64>>,
    /// Highest tree RSS in the bucket.
    pub memory_bytes: Vec<Option<u64>>,
    /// Restarts (`detail`: why the run before ended), crashes (`detail`: the report's
    /// reason) and memory-ceiling hits, oldest first.
    pub marks: Vec<HistoryMark>,
}

/// One event on an instance's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMark {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `restart`, `crash` or `memory`.
    pub kind: String,
    pub detail: String,
}
