//! The dashboard page at `/` of the API (TCP and the Unix socket): built from
//! `clients/dashboard` into `supervisor/dashboard/` (committed, so building the daemon
//! needs no Node) and embedded here. What it shows it reads from the same routes as
//! `l4ctl`, so over TCP it is read-only without the token exactly as the API is: the
//! page asks for the token and sends it as `Authorization`, never in a URL.
//!
//! What it costs the resident daemon: nothing until the page is asked for. The files
//! are one blob aligned to, and padded to, 64 KiB: the kernel maps a binary's pages
//! in 64 KiB windows around each page the daemon touches ("fault-around"), so a blob
//! that shares no window with code or data the daemon uses stays out of its RSS
//! until a request reads it (bench/README "Session 13" measures both).
//!
//! Every answer carries a strong `ETag` (304 to a matching `If-None-Match`),
//! `Cache-Control: no-cache`, and a strict Content-Security-Policy: this origin only,
//! nothing inline, no frames, no form submissions (the token field is read by script).

use std::hash::{Hash, Hasher};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// The page's policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HTML: &[u8] = include_bytes!("../../dashboard/index.html");
const JS: &[u8] = include_bytes!("../../dashboard/dashboard.js");
const CSS: &[u8] = include_bytes!("../../dashboard/dashboard.css");

/// The three files in one blob of their own 64 KiB windows.
#[repr(C, align(65536))]
struct Blob {
    html: [u8; HTML.len()],
    js: [u8; JS.len()],
    css: [u8; CSS.len()],
}

static BLOB: Blob = Blob {
    html: *include_bytes!("../../dashboard/index.html"),
    js: *include_bytes!("../../dashboard/dashboard.js"),
    css: *include_bytes!("../../dashboard/dashboard.css"),
};

/// `GET /`.
pub async fn page(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    serve(&s, &headers, &BLOB.html, "text/html; charset=utf-8")
}

/// `GET /assets/dashboard.js` and `/assets/dashboard.css`.
pub async fn asset(State(s): State<ApiState>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "dashboard.js" => serve(&s, &headers, &BLOB.js, "text/javascript; charset=utf-8"),
        "dashboard.css" => serve(&s, &headers, &BLOB.css, "text/css; charset=utf-8"),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

fn serve(s: &ApiState, headers: &HeaderMap, body: &'static [u8], content_type: &'static str) -> Response {
    if !s.dashboard {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "the dashboard is off ([daemon] dashboard = false)")
            .into_response();
    }
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
