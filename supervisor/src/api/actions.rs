//! App actions beyond start/stop: scale, rolling reload (whole, streamed, or one
//! step), and crash reports. The workflows are the handle's; these only parse and
//! answer.

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{ApiError, ApiJson, ApiQuery, ApiState};
use crate::daemon::Error;
use crate::wire::types::{ActionReport, ReloadProgress, Replaced, SCHEMA};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub instances: u32,
}

/// `POST /api/v1/apps/{name}/scale` `{"instances": N}`: add or remove instances
/// without touching the others. Lasts until the config file is reloaded.
pub async fn scale(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> Result<Json<ActionReport>, ApiError> {
    Ok(Json(s.handle.scale(&name, req.instances).await?))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Instances replaced at a time; default the app's `reload_parallel`.
    pub parallel: Option<u32>,
    /// Answer with one [`ReloadProgress`] line per step as it ends (`application/x-ndjson`).
    #[serde(default)]
    pub progress: bool,
}

/// `POST /api/v1/apps/{name}/instances/{index}/replace`: one step of a rolling
/// reload. Starts a new run beside the online one, waits until it is ready (or
/// has failed), then answers. 409 `reload_failed` when the old run had to stay.
pub async fn replace_instance(
    State(s): State<ApiState>,
    Path((name, index)): Path<(String, u32)>,
) -> Result<Json<Replaced>, ApiError> {
    let r = s.handle.replace(&name, index).await?;
    if r.ok { Ok(Json(r)) } else { Err(Error::ReloadFailed(Box::new(r)).into()) }
}

/// `POST /api/v1/apps/{name}/reload` `{"parallel": N, "progress": bool}`: replace
/// every instance, `parallel` at a time. Stops after the first wave with a failure,
/// and says which instance failed and why; 409 `reload_in_progress` while another
/// reload of the app is under way. With `progress`, the answer is a stream of lines
/// (the plan, each step, then `done` or `error`); the rollout goes on to its end if
/// the caller goes away, as PM2's reload goes on in its daemon.
pub async fn rolling_reload(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ReloadRequest>,
) -> Result<Response, ApiError> {
    let reload = s.handle.plan_reload(&name, req.parallel).await?;
    if !req.progress {
        return Ok(Json(s.handle.reload(&reload, |_| {}).await?).into_response());
    }
    // One line per instance and two more: bounded by the app's instances.
    let (tx, rx) = mpsc::unbounded_channel::<ReloadProgress>();
    let plan = &reload.plan;
    let plan_line =
        ReloadProgress::Plan { app: plan.app.clone(), instances: plan.instances.clone(), parallel: plan.parallel };
    let _ = tx.send(plan_line);
    let handle = s.handle.clone();
    tokio::spawn(async move {
        let end = match handle.reload(&reload, |r| drop(tx.send(ReloadProgress::Replaced(r.clone())))).await {
            Ok(report) => ReloadProgress::Done(report),
            Err(e) => ReloadProgress::Error(ApiError::from(e).detail()),
        };
        let _ = tx.send(end);
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(bytes)), rx))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashesQuery {
    pub app: Option<String>,
    /// At most this many (the newest); all that are kept when absent.
    pub limit: Option<usize>,
}

/// `GET /api/v1/crashes?app=NAME&limit=N`: recent crash reports, newest first.
pub async fn crashes(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<CrashesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (list, delivery) = s.handle.crashes(q.app, q.limit.unwrap_or(usize::MAX)).await?;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "crashes": list, "delivery": delivery })))
}
