//! App actions beyond start/stop: scale, rolling reload, and recent log lines.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::handlers::{confirm_started, report};
use super::types::{ActionReport, AppDescription, SCHEMA, StatusReport};
use super::{ApiError, ApiJson, ApiState, ask};
use crate::daemon::Msg;

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
    let apps = ask(&s.tx, |reply| Msg::Scale { app: name, instances: req.instances, reply }).await??;
    confirm_started(&s, &apps).await?;
    report(&s, apps, true).await
}

/// `POST /api/v1/apps/{name}/reload`: restart the instances one at a time, each
/// only after the one before is back online (for 250 ms). Stops at the first
/// instance that does not come back, and says which.
pub async fn rolling_reload(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ActionReport>, ApiError> {
    let status = ask(&s.tx, |reply| Msg::Status { reply }).await?;
    let mut indexes: Vec<u32> = status.instances.iter().filter(|i| i.app == name).map(|i| i.instance).collect();
    if indexes.is_empty() {
        return Err(crate::daemon::Error::UnknownApp(name).into());
    }
    indexes.sort_unstable();
    for index in indexes {
        ask(&s.tx, |reply| Msg::RestartInstance { app: name.clone(), index, reply }).await??;
        // The same wait as `restart`: settled, then online for START_CONFIRM.
        confirm_started(&s, std::slice::from_ref(&name)).await?;
        let status: StatusReport = ask(&s.tx, |reply| Msg::Status { reply }).await?;
        if let Some(i) = status.instances.iter().find(|i| i.app == name && i.instance == index)
            && i.state != "online"
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "reload_failed",
                format!("{name}:{index} did not come back online ({}); the reload stopped there", i.state),
            ));
        }
    }
    report(&s, vec![name], true).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// How many lines per file (at most 1000; default 15).
    pub lines: Option<usize>,
    /// `combined` (default), `out` or `err`.
    pub stream: Option<String>,
}

/// `GET /api/v1/apps/{name}/logs?lines=N&stream=combined|out|err`: recent lines.
pub async fn app_logs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = q.lines.unwrap_or(15).min(1000);
    let d: AppDescription = ask(&s.tx, |reply| Msg::Describe { app: name.clone(), reply }).await??;
    let pick = match q.stream.as_deref().unwrap_or("combined") {
        "combined" => |f: &crate::config::LogFiles| f.combined.clone(),
        "out" => |f: &crate::config::LogFiles| f.out.clone(),
        "err" => |f: &crate::config::LogFiles| f.err.clone(),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("unknown stream `{other}`: use combined, out or err"),
            ));
        }
    };
    let files: Vec<(Option<u32>, std::path::PathBuf)> = d.log_files.iter().map(|f| (f.instance, pick(f))).collect();
    let lines = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .flat_map(|(instance, path)| {
                crate::logs::follow::last_lines(&path, n)
                    .into_iter()
                    .map(move |l| serde_json::json!({ "instance": instance, "line": String::from_utf8_lossy(&l) }))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(serde_json::json!({ "schema": SCHEMA, "app": name, "lines": lines })))
}
