//! App actions beyond start/stop: scale, rolling reload, and crash reports.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::handlers::{confirm_started, report};
use super::{ApiError, ApiJson, ApiQuery, ApiState, ask};
use crate::daemon::Msg;
use crate::wire::types::{ActionReport, AppDescription, Replaced, SCHEMA, StatusReport};

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
    let apps = ask(&s.tx, |reply| Msg::Scale { app: name.clone(), instances: req.instances, reply }).await??;
    confirm_started(&s, &apps).await?;
    let Json(mut answer) = report(&s, apps, true).await?;
    if answer.failed.is_empty() {
        answer.nginx = super::follow::nginx_after_scale(&s, &name).await;
    }
    Ok(Json(answer))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Instances replaced at a time; default the app's `reload_parallel`.
    pub parallel: Option<u32>,
}

/// `POST /api/v1/apps/{name}/instances/{index}/replace`: one step of a rolling
/// reload. Starts a new run beside the online one, waits until it is ready (or
/// has failed), then answers. 409 `reload_failed` when the old run had to stay.
pub async fn replace_instance(
    State(s): State<ApiState>,
    Path((name, index)): Path<(String, u32)>,
) -> Result<Json<Replaced>, ApiError> {
    let r = replace_one(&s, &name, index).await?;
    if r.ok { Ok(Json(r)) } else { Err(failed(&r)) }
}

/// `POST /api/v1/apps/{name}/reload` `{"parallel": N}`: replace every instance,
/// `parallel` at a time (default the app's `reload_parallel`). Stops after the
/// first wave with a failure, and says which instance failed and why.
pub async fn rolling_reload(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ReloadRequest>,
) -> Result<Json<ActionReport>, ApiError> {
    let d: AppDescription = ask(&s.tx, |reply| Msg::Describe { app: name.clone(), reply }).await??;
    let parallel = req.parallel.or_else(|| d.config["reload_parallel"].as_u64().map(|p| p as u32)).unwrap_or(1).max(1);
    let indexes: Vec<u32> = d.instances.iter().map(|i| i.instance).collect();
    for wave in indexes.chunks(parallel as usize) {
        let steps = wave.iter().map(|&index| replace_one(&s, &name, index));
        let results = futures_util::future::join_all(steps).await;
        for r in results {
            let r = r?;
            if !r.ok {
                return Err(failed(&r));
            }
        }
    }
    report(&s, vec![name], true).await
}

async fn replace_one(s: &ApiState, name: &str, index: u32) -> Result<Replaced, ApiError> {
    let started = std::time::Instant::now();
    let old_pid = ask(&s.tx, |reply| Msg::ReplaceInstance { app: name.to_owned(), index, reply }).await??;
    super::wait_for(&s.tx, crate::daemon::Want::InstanceSettled(name.to_owned(), index)).await;
    if old_pid.is_none() {
        // A plain start: the same confirmation as `start`.
        confirm_started(s, &[name.to_owned()]).await?;
    }
    let status: StatusReport = ask(&s.tx, |reply| Msg::Status { reply }).await?;
    let row = status.instances.into_iter().find(|i| i.app == name && i.instance == index);
    let (pid, state) = row.as_ref().map_or((None, "deleted".to_owned()), |i| (i.pid, i.state.clone()));
    let ok = state == "online" && pid.is_some() && pid != old_pid;
    let error = (!ok).then(|| {
        let exit = row.as_ref().and_then(|i| i.last_exit.as_ref());
        let words = |e: &crate::wire::types::ExitReport| match (&e.code, &e.signal) {
            (Some(c), _) => format!("{} with exit code {c}", e.reason),
            (None, Some(sig)) => format!("{} by {sig}", e.reason),
            _ => e.reason.clone(),
        };
        exit.and_then(|e| e.error.clone()).or_else(|| exit.map(words)).unwrap_or_else(|| state.clone())
    });
    let ms = started.elapsed().as_millis() as u64;
    Ok(Replaced { app: name.to_owned(), instance: index, old_pid, pid, state, ms, ok, error })
}

fn failed(r: &Replaced) -> ApiError {
    let serving = match (r.pid, r.pid == r.old_pid) {
        (Some(pid), true) => format!("; the old run (pid {pid}) keeps serving"),
        _ => String::new(),
    };
    let why = r.error.as_deref().unwrap_or("failed");
    ApiError::new(
        StatusCode::CONFLICT,
        "reload_failed",
        format!("{}:{} was not replaced: {why}{serving}; the reload stopped there", r.app, r.instance),
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashesQuery {
    pub app: Option<String>,
}

/// `GET /api/v1/crashes?app=NAME`: recent crash reports, newest first.
pub async fn crashes(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<CrashesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (list, delivery) = ask(&s.tx, |reply| Msg::Crashes { app: q.app, reply }).await?;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "crashes": list, "delivery": delivery })))
}
