//! The control API: one axum router, served on the daemon's Unix socket (mode
//! 0600, full control; what `l4ctl` uses). Version 1, all JSON:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET  | `/`, `/assets/{file}` | the dashboard page ([`dashboard`]; 404 with `[daemon] dashboard = false`) |
//! | GET  | `/api/v1/health` | [`types::Health`] |
//! | GET  | `/api/v1/status` | [`types::StatusReport`] (the `status --json` schema) |
//! | GET  | `/api/v1/apps/{name}` | [`types::AppDescription`] |
//! | GET  | `/api/v1/apps/{name}/history` | [`types::AppHistory`]: each instance's last hour in 5 s buckets, and its restarts, crashes and memory-ceiling hits |
//! | POST | `/api/v1/start` | body [`types::StartRequest`]; [`types::ActionReport`] once every instance is online or failed |
//! | POST | `/api/v1/apps/{name\|name:N\|all}/{start\|stop\|restart\|delete}` | [`types::ActionReport`] once settled (`name:N`: instance N only; not `delete`) |
//! | POST | `/api/v1/apps/{name\|name:N\|all}/signal` | body `{"signal": "SIGUSR2"}`: to each running instance's main process; `{"schema","signal","sent":[types::Signalled]}` |
//! | POST | `/api/v1/apps/{name\|name:N\|all}/reset` | restart counters to zero; [`types::ActionReport`] |
//! | POST | `/api/v1/apps/{name}/reload` | body `{"parallel"?, "progress"?}`: rolling reload; 409 `reload_failed` names the instance; with `progress`, [`types::ReloadProgress`] lines |
//! | POST | `/api/v1/apps/{name}/instances/{index}/replace` | one reload step: [`crate::wire::types::Replaced`] once the new run is ready |
//! | GET  | `/api/v1/apps/{name}/logs?lines=N&stream=S` | the newest lines, bounded ([`logs`]) |
//! | GET  | `/api/v1/crashes?app=NAME&limit=N` | `{"schema","crashes":[crash::CrashReport],"delivery":daemon::DeliveryStats}`, newest first |
//! | POST | `/api/v1/reload-config` | re-read every loaded config file (as SIGHUP) |
//! | POST | `/api/v1/kill` | stop every app, answer, then exit |
//! | POST | `/api/v1/logs/reopen` | body `{"app"?}`: reopen log files (as SIGUSR1); `{"files_reopened"}` per writer |
//! | POST | `/api/v1/logs/flush` | body `{"app"?}`: empty the current log files |
//!
//! Errors are `{"error": {"code", "message", "diagnostics"?}}` with 400 (bad
//! config or request), 404 (unknown app), 409 (nothing to start), 429 (too many
//! log reads at once, with `Retry-After`) or 503 (shutting down). No answer ever
//! includes an environment value.

pub mod actions;
mod auth;
mod dashboard;
mod events;
mod handlers;
mod logs;
pub mod metrics;
pub mod serve;

#[cfg(test)]
mod router_tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Notify, watch};

pub use auth::{Token, token};
pub use logs::{LOG_READS, LogReads, return_freed_memory};

use crate::config::ConfigError;
use crate::daemon::{Error, Handle};
use crate::wire::types::{ErrorBody, ErrorDetail};

/// Largest request body accepted (requests are small JSON objects).
const BODY_LIMIT: usize = 64 << 10;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The daemon: every request and workflow goes through it.
    pub handle: Handle,
    pub started: Instant,
    pub home: PathBuf,
    pub log_dir: PathBuf,
    /// Notified by `/kill` once every app has stopped.
    pub kill: Arc<Notify>,
    /// Becomes `true` when the daemon begins to shut down (ends event streams).
    pub stopping: watch::Receiver<bool>,
    /// Where the TCP API listens, if it does.
    pub api_addr: Option<std::net::SocketAddr>,
    /// Why it does not although `api_listen` asked for it (`GET /api/v1/health` says so,
    /// and `l4ctl start` prints it).
    pub api_error: Option<String>,
    /// Log reads in progress, at most `LOG_READS`.
    pub log_reads: LogReads,
    /// Serve the dashboard page at `/` (`[daemon] dashboard`).
    pub dashboard: bool,
    /// Asks for a handover to the daemon's next program (`l4ctl update`); the reply
    /// comes only when it could not begin (on success the process execs).
    pub update: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<crate::daemon::Error>>,
    /// The handover this program came from, if it did.
    pub handover: Option<crate::wire::types::Handover>,
}

/// The one router: served on the Unix socket as is, and on TCP behind [`tcp`].
pub fn router(state: ApiState) -> Router {
    use handlers::*;
    Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/v1/health", get(health))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events::events))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/apps/{name}", get(describe))
        .route("/api/v1/crashes", get(actions::crashes))
        .route("/api/v1/apps/{name}/logs", get(logs::app_logs))
        .route("/api/v1/apps/{name}/history", get(history))
        .route("/api/v1/apps/{name}/scale", post(actions::scale))
        .route("/api/v1/apps/{name}/reload", post(actions::rolling_reload))
        .route("/api/v1/apps/{name}/instances/{index}/replace", post(actions::replace_instance))
        .route("/api/v1/apps/{name}/signal", post(signal))
        .route("/api/v1/apps/{name}/reset", post(reset))
        .route("/api/v1/apps/{name}/{op}", post(control))
        .route("/api/v1/start", post(start))
        .route("/api/v1/reload-config", post(reload_config))
        .route("/api/v1/kill", post(kill))
        .route("/api/v1/daemon/update", post(update))
        .route("/api/v1/logs/reopen", post(logs_reopen))
        .route("/api/v1/logs/flush", post(logs_flush))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The router for TCP: the same routes, changes only with the token.
pub fn tcp(state: ApiState, token: Token) -> Router {
    router(state).layer(axum::middleware::from_fn_with_state(token, auth::guard))
}

/// Body of the log endpoints: one app, or every app when absent.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTarget {
    pub app: Option<String>,
}

/// `Json`, with its rejections (malformed, too large, wrong content type) as JSON errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => {
                let status = r.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_request" };
                Err(ApiError::new(status, code, r.body_text()))
            }
        }
    }
}

/// `Query`, with its rejections (a malformed or out-of-range value, an unknown
/// parameter) as JSON errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(ApiError::new(r.status(), "bad_request", r.body_text())),
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorDetail);

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(status, ErrorDetail { code: code.to_owned(), message: message.into(), diagnostics: vec![] })
    }

    /// The body's `error` object.
    pub fn detail(self) -> ErrorDetail {
        self.1
    }
}

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
            Error::ReloadFailed(_) => (StatusCode::CONFLICT, "reload_failed", vec![]),
            Error::ReloadUnderWay(_) => (StatusCode::CONFLICT, "reload_in_progress", vec![]),
            Error::Stopped(_) => (StatusCode::CONFLICT, "stopped", vec![]),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", vec![]),
            Error::Busy(_) => (StatusCode::CONFLICT, "not_settled", vec![]),
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request", vec![]),
            Error::AlreadyRunning { .. } | Error::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal", vec![]),
        };
        let message = match &e {
            Error::Config(ConfigError::Invalid(_)) => "invalid config".to_owned(),
            other => other.to_string(),
        };
        ApiError(status, ErrorDetail { code: code.to_owned(), message, diagnostics })
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        ErrorDetail { code: "bad_request".into(), message: message.into(), diagnostics: vec![] },
    )
}
