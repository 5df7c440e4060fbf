//! The handlers of the core routes: health, status, describe, history, start, the
//! per-app actions, config reload, kill, and the log file commands. Each parses
//! its request, asks the [`crate::daemon::Handle`], and answers.

use axum::Json;
use axum::extract::{Path, State};

use super::{ApiError, ApiJson, ApiState, LogTarget, bad_request};
use crate::daemon::{Op, Start, Target};
use crate::wire::types::{ActionReport, AppDescription, AppHistory, Health, SCHEMA, StartRequest, StatusReport};

pub(super) async fn health(State(s): State<ApiState>) -> Json<Health> {
    Json(Health {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_ms: s.started.elapsed().as_millis() as u64,
        home: s.home.clone(),
        log_dir: s.log_dir.clone(),
        api_listen: s.api_addr.map(|a| a.to_string()),
        api_error: s.api_error.clone(),
        handover: s.handover.clone(),
    })
}

pub(super) async fn status(State(s): State<ApiState>) -> Result<Json<StatusReport>, ApiError> {
    let mut report = s.handle.status().await?;
    report.version = env!("CARGO_PKG_VERSION").to_owned();
    report.handover = s.handover.clone();
    Ok(Json(report))
}

/// `l4ctl update`: hand the daemon over to the program installed at its path. On
/// success there is no answer: the connection closes as the process execs, and the
/// new program answers `health` with a `handover` whose `count` grew.
pub(super) async fn update(State(s): State<ApiState>) -> Result<Json<()>, ApiError> {
    let (reply, why) = tokio::sync::oneshot::channel();
    s.update.send(reply).await.map_err(|_| crate::daemon::Error::ShuttingDown)?;
    match why.await {
        Ok(e) => Err(e.into()),
        Err(_) => Err(crate::daemon::Error::ShuttingDown.into()),
    }
}

pub(super) async fn describe(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<AppDescription>, ApiError> {
    Ok(Json(s.handle.describe(&name).await?))
}

/// History answers built at once; each is up to ~11 KB of JSON an instance (open over
/// TCP, like describe), so a flood of them is refused with 429 rather than queued.
pub const HISTORY_READS: usize = 4;
static HISTORY_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HISTORY_READS);

pub(super) async fn history(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Ok(_permit) = HISTORY_PERMITS.try_acquire() else {
        return Ok(super::logs::busy(HISTORY_READS, "history reads"));
    };
    let h: AppHistory = s.handle.history(&name).await?;
    Ok(Json(h).into_response())
}

pub(super) async fn start(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Json<ActionReport>, ApiError> {
    let what = match (req.config, req.app) {
        (Some(path), only) => Start::File { path, env: req.env, only },
        (None, Some(app)) => Start::App(app),
        (None, None) => Start::Restore,
    };
    Ok(Json(s.handle.start(what).await?))
}

pub(super) async fn control(
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
    Ok(Json(s.handle.control(target(name)?, op).await?))
}

/// `all`, `app`, or `app:N` for one instance.
pub(super) fn target(name: String) -> Result<Target, ApiError> {
    match name.split_once(':') {
        _ if name == "all" => Ok(Target::All),
        Some((app, index)) => match index.parse::<u32>() {
            Ok(i) => Ok(Target::Instance(app.to_owned(), i)),
            Err(_) => Err(bad_request(format!("`{name}`: expected APP:INSTANCE with a number, such as web:0"))),
        },
        None => Ok(Target::App(name)),
    }
}

/// Body of `signal`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignalBody {
    pub signal: String,
}

pub(super) async fn signal(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SignalBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sig = crate::config::SignalName::parse(&body.signal).map_err(bad_request)?;
    let sent = s.handle.signal(target(name)?, sig.0).await?;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "signal": sig.0.as_str(), "sent": sent })))
}

pub(super) async fn reset(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Json<ActionReport>, ApiError> {
    Ok(Json(s.handle.reset(target(name)?).await?))
}

pub(super) async fn reload_config(State(s): State<ApiState>) -> Result<Json<ActionReport>, ApiError> {
    Ok(Json(s.handle.reload_config().await?))
}

pub(super) async fn kill(State(s): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    crate::sdnotify::stopping();
    s.handle.shutdown().await?;
    s.kill.notify_one();
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "stopped": true })))
}

async fn log_files(s: &ApiState, app: Option<String>, truncate: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let writers = s.handle.log_files(app, truncate).await?;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "writers": writers })))
}

pub(super) async fn logs_reopen(
    State(s): State<ApiState>,
    ApiJson(t): ApiJson<LogTarget>,
) -> Result<Json<serde_json::Value>, ApiError> {
    log_files(&s, t.app, false).await
}

pub(super) async fn logs_flush(
    State(s): State<ApiState>,
    ApiJson(t): ApiJson<LogTarget>,
) -> Result<Json<serde_json::Value>, ApiError> {
    log_files(&s, t.app, true).await
}
