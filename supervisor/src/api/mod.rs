//! The control API: one axum router, served on the daemon's Unix socket (mode
//! 0600, full control; what `l4ctl` uses). Version 1, all JSON:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET  | `/api/v1/health` | [`types::Health`] |
//! | GET  | `/api/v1/status` | [`types::StatusReport`] (the `status --json` schema) |
//! | GET  | `/api/v1/apps/{name}` | [`types::AppDescription`] |
//! | POST | `/api/v1/start` | body [`types::StartRequest`]; [`types::ActionReport`] once every instance is online or failed |
//! | POST | `/api/v1/apps/{name\|all}/{start\|stop\|restart\|delete}` | [`types::ActionReport`] once settled |
//! | POST | `/api/v1/reload-config` | re-read every loaded config file (as SIGHUP) |
//! | POST | `/api/v1/kill` | stop every app, answer, then exit |
//! | POST | `/api/v1/logs/reopen` | body `{"app"?}`: reopen log files (as SIGUSR1); `{"files_reopened"}` per writer |
//! | POST | `/api/v1/logs/flush` | body `{"app"?}`: empty the current log files |
//!
//! Errors are `{"error": {"code", "message", "diagnostics"?}}` with 400 (bad
//! config or request), 404 (unknown app), 409 (nothing to start) or
//! 503 (shutting down). No answer ever includes an environment value.

pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::ConfigError;
use crate::daemon::{Error, Msg, Op, Target, Want};
use types::{ActionReport, ErrorBody, ErrorDetail, Health, SCHEMA, StartRequest, StatusReport};

/// Longest an action waits for its instances to settle before answering anyway
/// (longer than the largest `kill_timeout` the config accepts).
const SETTLE_LIMIT: Duration = Duration::from_secs(3700);
/// `start` and `restart` answer once each started instance has been up this long,
/// so a worker that dies at once is reported as failed, not as online.
const START_CONFIRM: Duration = Duration::from_millis(250);

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub tx: mpsc::Sender<Msg>,
    pub started: Instant,
    pub home: PathBuf,
    pub log_dir: PathBuf,
    /// Notified by `/kill` once every app has stopped.
    pub kill: Arc<Notify>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/status", get(status))
        .route("/api/v1/apps/{name}", get(describe))
        .route("/api/v1/start", post(start))
        .route("/api/v1/apps/{name}/{op}", post(control))
        .route("/api/v1/reload-config", post(reload))
        .route("/api/v1/kill", post(kill))
        .route("/api/v1/logs/reopen", post(logs_reopen))
        .route("/api/v1/logs/flush", post(logs_flush))
        .with_state(state)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorDetail);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code, diagnostics) = match &e {
            Error::UnknownApp(_) => (StatusCode::NOT_FOUND, "unknown_app", vec![]),
            Error::Config(ConfigError::Invalid(d)) => (StatusCode::BAD_REQUEST, "config_invalid", d.0.clone()),
            Error::Config(ConfigError::NotFound { .. }) => (StatusCode::BAD_REQUEST, "config_not_found", vec![]),
            Error::Config(_) => (StatusCode::BAD_REQUEST, "config_unreadable", vec![]),
            Error::NothingToStart => (StatusCode::CONFLICT, "nothing_to_start", vec![]),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", vec![]),
            Error::AlreadyRunning { .. } | Error::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal", vec![]),
        };
        let message = match &e {
            Error::Config(ConfigError::Invalid(_)) => "invalid config".to_owned(),
            other => other.to_string(),
        };
        ApiError(status, ErrorDetail { code: code.to_owned(), message, diagnostics })
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        ErrorDetail { code: "bad_request".into(), message: message.into(), diagnostics: vec![] },
    )
}

/// Send a message built around a reply channel and wait for the answer.
async fn ask<T>(tx: &mpsc::Sender<Msg>, build: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    tx.send(build(reply)).await.map_err(|_| ApiError::from(Error::ShuttingDown))?;
    answer.await.map_err(|_| ApiError::from(Error::ShuttingDown))
}

async fn wait_for(tx: &mpsc::Sender<Msg>, want: Want) {
    let _ = tokio::time::timeout(SETTLE_LIMIT, ask(tx, |reply| Msg::Wait { want, reply })).await;
}

async fn health(State(s): State<ApiState>) -> Json<Health> {
    Json(Health {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_ms: s.started.elapsed().as_millis() as u64,
        home: s.home.clone(),
        log_dir: s.log_dir.clone(),
    })
}

async fn status(State(s): State<ApiState>) -> Result<Json<StatusReport>, ApiError> {
    Ok(Json(ask(&s.tx, |reply| Msg::Status { reply }).await?))
}

async fn describe(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<types::AppDescription>, ApiError> {
    Ok(Json(ask(&s.tx, |reply| Msg::Describe { app: name, reply }).await??))
}

/// The status after an action, with every instance of `apps` that did not come up
/// (when `started` is set: one retrying, in a crash loop or errored) or did not
/// settle in time (still starting or stopping).
async fn report(s: &ApiState, apps: Vec<String>, started: bool) -> Result<Json<ActionReport>, ApiError> {
    let status = ask(&s.tx, |reply| Msg::Status { reply }).await?;
    let failed = status
        .instances
        .iter()
        .filter(|i| apps.contains(&i.app))
        .filter(|i| match i.state.as_str() {
            "starting" | "stopping" => true,
            "waiting-restart" | "crash-loop" | "errored" => started,
            _ => false,
        })
        .map(|i| format!("{}:{} is {}", i.app, i.instance, i.state))
        .collect();
    Ok(Json(ActionReport { schema: SCHEMA, apps, failed, status }))
}

/// Wait until every online instance of `apps` has been up `START_CONFIRM`.
async fn confirm_started(s: &ApiState, apps: &[String]) -> Result<(), ApiError> {
    let deadline = Instant::now() + START_CONFIRM * 4;
    loop {
        let status = ask(&s.tx, |reply| Msg::Status { reply }).await?;
        let youngest = status
            .instances
            .iter()
            .filter(|i| apps.contains(&i.app) && i.state == "online")
            .filter_map(|i| i.uptime_ms)
            .min();
        let confirm_ms = START_CONFIRM.as_millis() as u64;
        match youngest {
            Some(ms) if ms < confirm_ms && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(confirm_ms - ms)).await;
            }
            _ => break,
        }
    }
    wait_for(&s.tx, Want::Settled(apps.to_vec())).await;
    Ok(())
}

async fn start(State(s): State<ApiState>, Json(req): Json<StartRequest>) -> Result<Json<ActionReport>, ApiError> {
    let apps = match req.config {
        Some(path) => {
            if !path.is_absolute() {
                return Err(bad_request("config path must be absolute"));
            }
            let env = req.env.clone();
            let config = tokio::task::spawn_blocking(move || crate::config::load(&path, env.as_deref()))
                .await
                .map_err(|e| bad_request(e.to_string()))?
                .map_err(Error::Config)?;
            ask(&s.tx, |reply| Msg::Apply { config, env: req.env, only: req.app, reply }).await??
        }
        None => match req.app {
            Some(app) => ask(&s.tx, |reply| Msg::Control { target: Target::App(app), op: Op::Start, reply }).await??,
            None => ask(&s.tx, |reply| Msg::Restore { reply }).await??,
        },
    };
    wait_for(&s.tx, Want::Settled(apps.clone())).await;
    confirm_started(&s, &apps).await?;
    report(&s, apps, true).await
}

async fn control(
    State(s): State<ApiState>,
    Path((name, op)): Path<(String, String)>,
) -> Result<Json<ActionReport>, ApiError> {
    let op = match op.as_str() {
        "start" => Op::Start,
        "stop" => Op::Stop,
        "restart" => Op::Restart,
        "delete" => Op::Delete,
        other => return Err(bad_request(format!("unknown action `{other}`"))),
    };
    let target = if name == "all" { Target::All } else { Target::App(name) };
    let apps = ask(&s.tx, |reply| Msg::Control { target, op, reply }).await??;
    let want = if op == Op::Delete { Want::Gone(apps.clone()) } else { Want::Settled(apps.clone()) };
    wait_for(&s.tx, want).await;
    let started = matches!(op, Op::Start | Op::Restart);
    if started {
        confirm_started(&s, &apps).await?;
    }
    report(&s, apps, started).await
}

async fn reload(State(s): State<ApiState>) -> Result<Json<ActionReport>, ApiError> {
    let apps = ask(&s.tx, |reply| Msg::Reload { reply: Some(reply) }).await??;
    wait_for(&s.tx, Want::Settled(apps.clone())).await;
    report(&s, apps, false).await
}

async fn kill(State(s): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    ask(&s.tx, |reply| Msg::Shutdown { reply }).await?;
    s.kill.notify_one();
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "stopped": true })))
}

/// Body of the log endpoints: one app, or every app when absent.
#[derive(Debug, Default, serde::Deserialize)]
pub struct LogTarget {
    pub app: Option<String>,
}

async fn log_command(s: &ApiState, app: Option<String>, truncate: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let commands = ask(&s.tx, |reply| Msg::LogCommand { app, truncate, reply }).await??;
    let writers = crate::daemon::run_log_commands(commands).await;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "writers": writers })))
}

async fn logs_reopen(State(s): State<ApiState>, Json(t): Json<LogTarget>) -> Result<Json<serde_json::Value>, ApiError> {
    log_command(&s, t.app, false).await
}

async fn logs_flush(State(s): State<ApiState>, Json(t): Json<LogTarget>) -> Result<Json<serde_json::Value>, ApiError> {
    log_command(&s, t.app, true).await
}
