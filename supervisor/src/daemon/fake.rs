//! A stand-in for the actor in unit tests: a task that answers a [`Handle`]'s
//! messages with whatever the test's closure does, and rows to build its tables.
//! The workflows (`handle.rs`, `settle.rs`, `rollout.rs`) and the API's router are
//! tested over it, without processes.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::handle::Handle;
use super::msg::Msg;
use crate::lifecycle::State;
use crate::wire::types::{AppDescription, ExitReport, InstanceStatus, LogCounters, SCHEMA, StatusReport};

/// A handle whose messages go to `answer`, one at a time, on a task of their own.
pub fn handle(mut answer: impl FnMut(Msg) + Send + 'static) -> Handle {
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            answer(msg);
        }
    });
    Handle::new(tx, PathBuf::from("/nonexistent/logs"))
}

/// A handle whose actor is gone (the daemon is shutting down).
pub fn gone() -> Handle {
    let (tx, _) = mpsc::channel(1);
    Handle::new(tx, PathBuf::from("/nonexistent/logs"))
}

/// One status row.
pub fn row(app: &str, instance: u32, pid: Option<u32>, state: State, uptime_ms: Option<u64>) -> InstanceStatus {
    InstanceStatus::example(app, instance, pid, state, uptime_ms)
}

/// A last run that ended with `error`.
pub fn exit(error: &str) -> Option<ExitReport> {
    let at = "2026-12-04T00:00:00Z".to_owned();
    Some(ExitReport {
        reason: "crashed".into(),
        code: Some(1),
        signal: None,
        error: Some(error.into()),
        uptime_ms: 5,
        at,
    })
}

pub fn status(instances: Vec<InstanceStatus>) -> StatusReport {
    StatusReport::of(instances)
}

/// `describe` of an app with these rows and `reload_parallel`.
pub fn description(app: &str, rows: Vec<InstanceStatus>, reload_parallel: u32) -> AppDescription {
    AppDescription {
        schema: SCHEMA,
        name: app.to_owned(),
        config_file: PathBuf::from("/nonexistent/l4.toml"),
        env_profile: None,
        config: serde_json::json!({ "reload_parallel": reload_parallel }),
        env_names: vec![],
        log_files: vec![],
        log_counters: LogCounters::default(),
        instances: rows,
        triggers: None,
    }
}
