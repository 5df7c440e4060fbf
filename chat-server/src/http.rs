//! The HTTP surface of a worker.
//!
//! - `GET /ws`: WebSocket upgrade ([`crate::gateway`]).
//! - `POST /api/auth/register` `{"username","password"}` -> 201 `{token, user:{id,name}, expires_at}`;
//!   400 `bad_request`, 409 `name_taken`.
//! - `POST /api/auth/login` (same body) -> 200 (same reply); 401 `bad_credentials`.
//! - `GET /api/health/websocket` -> 200 `{status:"healthy", connections, max_connections, ...}`,
//!   503 with `status:"draining"` during shutdown and `"degraded"` when the database does not answer.
//! - `GET /metrics`: Prometheus text format.
//!
//! Every error body is `{"error": code, "message": text}`. No route returns a secret or
//! an environment value.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Ctx;
use crate::auth::{now_secs, valid_password, valid_user_name};
use crate::store::StoreError;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/ws", get(crate::gateway::upgrade))
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/health/websocket", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(ctx)
}

/// How long a plain HTTP connection is still served after the accept loop stopped.
const LAST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Accept connections until `stop`, then let every plain HTTP connection finish
/// its request in flight (idle keep-alive ones close after a short grace) before
/// returning. Each connection is served by hyper directly (not `axum::serve`), so an
/// upgraded connection hands back its plain `TcpStream` (see [`crate::gateway`]);
/// upgraded WebSocket connections are not waited for: they drain on their own.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let stop_now = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stop_now => {}
            }
            // A connection accepted just before the stop may not have sent its request
            // yet: closing it now would fail that request. Serve for a moment more.
            tokio::select! {
                _ = connection.as_mut() => return,
                () = tokio::time::sleep(LAST_REQUEST_GRACE) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
        // Finished connections are collected here, so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
}

pub fn json_error(status: StatusCode, code: &str, text: &str) -> Response {
    (status, Json(json!({ "error": code, "message": text }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

fn credentials(body: Result<Json<Credentials>, JsonRejection>) -> Result<Credentials, Box<Response>> {
    match body {
        Ok(Json(c)) => Ok(c),
        Err(e) => Err(Box::new(json_error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()))),
    }
}

fn issued(ctx: &Ctx, status: StatusCode, id: i64, name: &str) -> Response {
    let token = ctx.auth.issue(id, name);
    let expires_at = now_secs() + ctx.settings.jwt_ttl.as_secs();
    (status, Json(json!({ "token": token, "user": { "id": id, "name": name }, "expires_at": expires_at })))
        .into_response()
}

fn unavailable(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "auth storage error");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage unavailable; try again")
}

async fn register(State(ctx): State<Arc<Ctx>>, body: Result<Json<Credentials>, JsonRejection>) -> Response {
    let c = match credentials(body) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    if !valid_user_name(&c.username) {
        let text = "username: 3-32 characters of A-Z a-z 0-9 _ - .";
        return json_error(StatusCode::BAD_REQUEST, "bad_request", text);
    }
    if !valid_password(&c.password) {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "password: 8-128 bytes");
    }
    let hash = match ctx.auth.hash_password(c.password).await {
        Ok(hash) => hash,
        Err(e) => {
            tracing::error!(error = %e, "password hashing failed");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "password hashing failed");
        }
    };
    match ctx.hub.store.create_user(&c.username, &hash, crate::auth::now_ms()).await {
        Ok(id) => issued(&ctx, StatusCode::CREATED, id, &c.username),
        Err(StoreError::NameTaken) => json_error(StatusCode::CONFLICT, "name_taken", "that username is taken"),
        Err(e) => unavailable(&e),
    }
}

async fn login(State(ctx): State<Arc<Ctx>>, body: Result<Json<Credentials>, JsonRejection>) -> Response {
    let c = match credentials(body) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let user = match ctx.hub.store.user(&c.username).await {
        Ok(user) => user,
        Err(e) => return unavailable(&e),
    };
    let (id, hash) = user.map_or((None, None), |(id, hash)| (Some(id), Some(hash)));
    match (ctx.auth.check_password(c.password, hash).await, id) {
        (true, Some(id)) => issued(&ctx, StatusCode::OK, id, &c.username),
        _ => json_error(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong username or password"),
    }
}

async fn health(State(ctx): State<Arc<Ctx>>) -> Response {
    let g = ctx.gauges();
    let database_ok = g.draining || ctx.hub.store.ping().await;
    let status = match (g.draining, database_ok) {
        (true, _) => "draining",
        (false, false) => "degraded",
        (false, true) => "healthy",
    };
    let code = if status == "healthy" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let uptime = ctx.stats.started.elapsed();
    let s = &ctx.stats;
    let body = json!({
        "status": status,
        "connections": g.active,
        "max_connections": g.max,
        "utilization": g.active as f64 / g.max as f64,
        "rooms": g.rooms,
        "uptime_s": uptime.as_secs(),
        "uptime": uptime.as_secs_f64(),
        "memory_rss_bytes": g.rss_bytes,
        "memory": { "rss": g.rss_bytes },
        "database": { "kind": ctx.database, "ok": database_ok },
        "metrics": {
            "total_connections": s.connections_total.load(Relaxed),
            "disconnections": s.disconnections_total(),
            "errors": s.errors.load(Relaxed),
            "messages_in": s.messages_in.load(Relaxed),
            "messages_out": s.messages_out.load(Relaxed),
        },
        "pid": std::process::id(),
        "timestamp": crate::telemetry::iso8601_now(),
    });
    (code, Json(body)).into_response()
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    let body = ctx.stats.render_prometheus(ctx.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
