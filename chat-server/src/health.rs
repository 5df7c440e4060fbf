//! The worker's health and metrics routes: `GET /api/health/websocket` (what nginx
//! and the plan's monitoring ask: 200 healthy, 503 draining or when the database does
//! not answer; the database's and Redis's own status with their last error) and
//! `GET /metrics` (Prometheus text, [`crate::stats`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::Ctx;

pub async fn health(State(ctx): State<Arc<Ctx>>) -> Response {
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
        "database": {
            "kind": ctx.database,
            "ok": database_ok,
            // While draining the database is not asked.
            "status": if g.draining { "unknown" } else if database_ok { "ok" } else { "degraded" },
            "last_error": ctx.hub.store.last_error.json(),
        },
        "redis": match ctx.hub.fanout.get() {
            Some(f) => json!({ "status": if f.ok() { "ok" } else { "degraded" }, "last_error": f.last_error.json() }),
            None => json!({ "status": "off" }),
        },
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

pub async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    let body = ctx.stats.render_prometheus(ctx.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
