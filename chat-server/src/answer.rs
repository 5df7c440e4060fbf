//! The error body every HTTP answer of a worker uses, `{"error": code, "message": text}`,
//! with `Retry-After` when the client should come back. Its own module at the bottom,
//! so the router ([`crate::http`]) and the WebSocket admission ([`crate::gateway`]),
//! which the router calls, both use it without importing each other.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub fn json_error(status: StatusCode, code: &str, text: &str) -> Response {
    (status, Json(json!({ "error": code, "message": text }))).into_response()
}

/// An error body with `Retry-After: secs` (1 at least).
pub fn json_error_retry(status: StatusCode, code: &str, text: &str, secs: u64) -> Response {
    let mut response = json_error(status, code, text);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
    response
}
