//! The messages of the supervisor actor and the types they carry: the one place
//! that lists everything the daemon can be asked or told.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ConfigError};
use crate::wire::types::{AppDescription, StatusReport};

/// Errors of daemon operations, mapped to API error codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown app `{0}`")]
    UnknownApp(String),
    #[error(transparent)]
    Config(ConfigError),
    #[error("nothing to start: no app is loaded and no saved state exists; pass a config file")]
    NothingToStart,
    #[error("{0}")]
    Invalid(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// A handover must wait: something is starting, stopping or being replaced.
    #[error("{0}")]
    Busy(String),
    /// A step of a rolling reload failed; its old run keeps serving.
    #[error("{}", .0.failure())]
    ReloadFailed(Box<crate::wire::types::Replaced>),
    #[error("a rolling reload of `{0}` is under way; wait for it to end")]
    ReloadUnderWay(String),
    /// A restart by `watch` or `cron_restart` of what `l4ctl stop` stopped.
    #[error("`{0}` is stopped: not restarted (`l4ctl start` starts it)")]
    Stopped(String),
    #[error("another daemon already runs in {home} (pid {pid})")]
    AlreadyRunning { home: PathBuf, pid: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Which apps (or which one instance) an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    App(String),
    /// One instance of an app (`app:1`, or the id `status` shows).
    Instance(String, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
    Delete,
    /// Restart unless the app is stopped (`watch`, `cron_restart`): a stopped app stays stopped.
    Renew,
}

/// What a replace step is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A whole-app reload (`l4ctl reload APP`), which un-stops a stopped app.
    Whole,
    /// `l4ctl reload APP:N`: this instance alone.
    One,
    /// A reload by `watch` or `cron_restart`: a stopped app or instance is left
    /// stopped ([`Error::Stopped`]).
    Renew,
}

/// A condition a caller waits for.
#[derive(Debug, Clone)]
pub enum Want {
    /// No instance of these apps is starting or stopping.
    Settled(Vec<String>),
    /// These apps are deleted.
    Gone(Vec<String>),
    /// Every instance is stopped (and every old run of a replace is gone).
    AllStopped,
    /// One instance is neither starting nor stopping.
    InstanceSettled(String, u32),
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Messages to the supervisor actor.
#[derive(Debug)]
pub enum Msg {
    Apply {
        config: Box<Config>,
        env: Option<String>,
        only: Option<String>,
        reply: Reply<Vec<String>>,
    },
    Control {
        target: Target,
        op: Op,
        reply: Reply<Vec<String>>,
    },
    Restore {
        reply: Reply<Vec<String>>,
    },
    Reload {
        reply: Option<Reply<Vec<String>>>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Describe {
        app: String,
        reply: Reply<AppDescription>,
    },
    Wait {
        want: Want,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Stop for a handover to the next program (`handover.rs`): the image, with
    /// instants relative to `reference`, and the log hub.
    Freeze {
        reference: std::time::Instant,
        /// Whatever is under way (a panic's handover), not only a settled daemon.
        force: bool,
        reply: oneshot::Sender<Result<super::handover::Frozen, Error>>,
    },
    /// Panic in the actor (the debug builds' failpoint `L4_FAILPOINT_PANIC_ON_USR2`).
    FailpointPanic,
    /// A lifecycle timer of the instance with daemon-wide id `id`.
    Timer {
        id: u32,
        epoch: u64,
    },
    /// Check again whether a stopping instance's process group is empty.
    GroupPoll {
        id: u32,
    },
    Tick,
    /// Re-sample instances close to their memory ceiling.
    FastSample,
    /// Log the periodic one-line summary.
    Summary,
    Sigchld,
    /// Reopen (or truncate, `l4ctl flush`) the log files of one app or all: the
    /// reply lists the commands for the caller to send and await.
    LogCommand {
        app: Option<String>,
        truncate: bool,
        reply: Reply<Vec<LogCommand>>,
    },
    /// SIGUSR1: reopen every log file.
    ReopenLogs,
    /// A receiver of events, for `GET /api/v1/events`.
    Subscribe {
        reply: oneshot::Sender<tokio::sync::broadcast::Receiver<Event>>,
    },
    /// One app's last hour of figures and marks (`GET /api/v1/apps/{name}/history`).
    History {
        app: String,
        reply: Reply<Vec<(u32, u32, crate::monitor::history::History)>>,
    },
    /// The figures `/metrics` shows.
    Metrics {
        reply: oneshot::Sender<crate::wire::metrics::MetricsSnapshot>,
    },
    /// Replace one instance (a step of a rolling reload); the reply carries the
    /// pid of the run being replaced (`None`: the instance was not online, so it
    /// is simply started) and whether it was restarted rather than overlapped
    /// (an app with `socket = "app"` and a port).
    ReplaceInstance {
        app: String,
        index: u32,
        step: Step,
        reply: Reply<(Option<u32>, bool)>,
    },
    /// A process said it is ready (sd_notify `READY=1`, or a probe passed).
    Ready {
        pid: i32,
    },
    /// The kill timeout of a retiring run (the old run of a replace) is over.
    RetireeTimer {
        pid: i32,
    },
    /// A crash report, built once the run's stderr ended.
    Crash {
        report: Box<crate::crash::CrashReport>,
    },
    /// A structured panic line on an instance's stderr.
    PanicLine {
        app: String,
        instance: u32,
        line: String,
    },
    /// A moment after a panic line: still running means the panic was survived.
    PanicCheck {
        app: String,
        instance: u32,
        pid: u32,
        line: String,
    },
    /// A crash episode may have gone quiet: send the final counts of those that did.
    CloseEpisodes,
    /// Recent crash reports, newest first (of one app, or all).
    Crashes {
        app: Option<String>,
        limit: usize,
        reply: oneshot::Sender<(Vec<crate::crash::CrashReport>, super::DeliveryStats)>,
    },
    /// Set the number of instances of an app.
    Scale {
        app: String,
        instances: u32,
        reply: Reply<Vec<String>>,
    },
    /// Send a signal to the main process of each running instance (PM2's `sendSignal`).
    Signal {
        target: Target,
        signal: nix::sys::signal::Signal,
        reply: Reply<Vec<crate::wire::types::Signalled>>,
    },
    /// Set the restart counters of the instances back to zero.
    Reset {
        target: Target,
        reply: Reply<Vec<String>>,
    },
    /// At exit: hand over the log hub so its writers can be drained.
    TakeLogs {
        reply: oneshot::Sender<crate::logs::LogHub>,
    },
}

/// What the daemon tells subscribers of `GET /api/v1/events` (one JSON object per event).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An instance changed state.
    State { app: String, instance: u32, from: &'static str, to: &'static str, pid: Option<u32> },
    /// An instance was started again; `reason` is why its last run ended.
    Restart { app: String, instance: u32, reason: &'static str, restarts: u32 },
    /// An instance reached its memory ceiling (a restart or kill follows).
    Memory { app: String, instance: u32, rss_bytes: u64, ceiling_bytes: u64 },
    /// A crash report was recorded (the first of its episode).
    Crash { app: String, instance: u32, id: u64, level: String, reason: String, fingerprint: String },
}

/// What restarts one app besides its own end, as the actor publishes it for the
/// triggers task (`triggers/`): only apps that have `watch` or `cron_restart`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppTriggers {
    pub app: String,
    pub triggers: crate::config::Triggers,
    /// Replaced through a rolling reload (the app has readiness), else restarted.
    pub rolling: bool,
}

/// What the actor publishes for the triggers task: the apps with `watch` or
/// `cron_restart`, and every app's log files (never a change, wherever they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triggered {
    pub apps: Vec<AppTriggers>,
    pub logs: Vec<PathBuf>,
}

/// Events waiting for slow subscribers; beyond this they miss events and are told so.
pub const EVENT_BUFFER: usize = 256;

/// A message for one log writer and the reply that says it was carried out.
pub type LogCommand = (mpsc::Sender<crate::logs::LogMsg>, crate::logs::LogMsg, oneshot::Receiver<()>);

/// Send each command and wait for it to be carried out.
pub async fn run_log_commands(commands: Vec<LogCommand>) -> usize {
    let mut done = 0;
    // A writer stuck on a dead disk must not hold the API (or the daemon's shutdown) forever.
    let limit = std::time::Duration::from_secs(10);
    for (tx, msg, wait) in commands {
        let sent = tokio::time::timeout(limit, tx.send(msg)).await.is_ok_and(|r| r.is_ok());
        if sent && tokio::time::timeout(limit, wait).await.is_ok_and(|r| r.is_ok()) {
            done += 1;
        }
    }
    done
}
