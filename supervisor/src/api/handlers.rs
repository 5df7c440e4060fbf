//! The handlers of the core routes: health, status, describe, start, the
//! per-app actions, config reload, kill, and the log file commands.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};

use super::{ApiError, ApiJson, ApiState, LogTarget, START_CONFIRM, ask, bad_request, wait_for};
use crate::daemon::{Error, Msg, Op, Target, Want};
use crate::wire::types::{ActionReport, Health, SCHEMA, StartRequest, StatusReport};

pub(super) async fn health(State(s): State<ApiState>) -> Json<Health> {
    Json(Health {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_ms: s.started.elapsed().as_millis() as u64,
        home: s.home.clone(),
        log_dir: s.log_dir.clone(),
        api_listen: s.api_addr.map(|a| a.to_string()),
    })
}

pub(super) async fn status(State(s): State<ApiState>) -> Result<Json<StatusReport>, ApiError> {
    Ok(Json(ask(&s.tx, |reply| Msg::Status { reply }).await?))
}

pub(super) async fn describe(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<crate::wire::types::AppDescription>, ApiError> {
    Ok(Json(ask(&s.tx, |reply| Msg::Describe { app: name, reply }).await??))
}

/// The status after an action, with every instance of `apps` that did not come up
/// (when `started` is set: one retrying, in a crash loop or errored) or did not
/// settle in time (still starting or stopping).
pub(super) async fn report(s: &ApiState, apps: Vec<String>, started: bool) -> Result<Json<ActionReport>, ApiError> {
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
        .map(|i| {
            // Say why, when the last run left a reason (a taken port, a missing program).
            match i.last_exit.as_ref().and_then(|e| e.error.as_deref()) {
                Some(why) if i.state != "starting" && i.state != "stopping" => {
                    format!("{}:{} is {}: {why}", i.app, i.instance, i.state)
                }
                _ => format!("{}:{} is {}", i.app, i.instance, i.state),
            }
        })
        .collect();
    Ok(Json(ActionReport { schema: SCHEMA, apps, failed, status, nginx: None }))
}

/// Wait until no instance of `apps` is starting or stopping and every online one has
/// been up `START_CONFIRM` (so one that dies at once shows as failed, not online).
pub(super) async fn confirm_started(s: &ApiState, apps: &[String]) -> Result<(), ApiError> {
    wait_for(&s.tx, Want::Settled(apps.to_vec())).await;
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

pub(super) async fn start(
    State(s): State<ApiState>,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Json<ActionReport>, ApiError> {
    let apps = match req.config {
        Some(path) => {
            if !path.is_absolute() {
                return Err(bad_request("config path must be absolute"));
            }
            let env = req.env.clone();
            let log_dir = s.log_dir.clone();
            let config =
                tokio::task::spawn_blocking(move || crate::config::load_under(&path, env.as_deref(), &log_dir))
                    .await
                    .map_err(|e| bad_request(e.to_string()))?
                    .map_err(Error::Config)?;
            ask(&s.tx, |reply| Msg::Apply { config: Box::new(config), env: req.env, only: req.app, reply }).await??
        }
        None => match req.app {
            Some(app) => ask(&s.tx, |reply| Msg::Control { target: Target::App(app), op: Op::Start, reply }).await??,
            None => ask(&s.tx, |reply| Msg::Restore { reply }).await??,
        },
    };
    confirm_started(&s, &apps).await?;
    report(&s, apps, true).await
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
    let target = if name == "all" { Target::All } else { Target::App(name) };
    let apps = ask(&s.tx, |reply| Msg::Control { target, op, reply }).await??;
    let started = matches!(op, Op::Start | Op::Restart);
    match op {
        Op::Start | Op::Restart => confirm_started(&s, &apps).await?,
        Op::Delete => wait_for(&s.tx, Want::Gone(apps.clone())).await,
        Op::Stop => wait_for(&s.tx, Want::Settled(apps.clone())).await,
    }
    report(&s, apps, started).await
}

pub(super) async fn reload_config(State(s): State<ApiState>) -> Result<Json<ActionReport>, ApiError> {
    let apps = ask(&s.tx, |reply| Msg::Reload { reply: Some(reply) }).await??;
    wait_for(&s.tx, Want::Settled(apps.clone())).await;
    report(&s, apps, false).await
}

pub(super) async fn kill(State(s): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    ask(&s.tx, |reply| Msg::Shutdown { reply }).await?;
    s.kill.notify_one();
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "stopped": true })))
}

async fn log_command(s: &ApiState, app: Option<String>, truncate: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let commands = ask(&s.tx, |reply| Msg::LogCommand { app, truncate, reply }).await??;
    let writers = crate::daemon::run_log_commands(commands).await;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "writers": writers })))
}

pub(super) async fn logs_reopen(
    State(s): State<ApiState>,
    ApiJson(t): ApiJson<LogTarget>,
) -> Result<Json<serde_json::Value>, ApiError> {
    log_command(&s, t.app, false).await
}

pub(super) async fn logs_flush(
    State(s): State<ApiState>,
    ApiJson(t): ApiJson<LogTarget>,
) -> Result<Json<serde_json::Value>, ApiError> {
    log_command(&s, t.app, true).await
}
