//! `GET /ws`: admission and the WebSocket handshake (and `GET /echo`, the same
//! WebSocket without the chat, for conformance suites).
//!
//! Owns what happens before a connection exists: the token check (401 before the
//! upgrade), the handshake headers (400, or 426 for a WebSocket version other than 13),
//! subprotocol choice (the first of the client's list that the server speaks, `l4.json`
//! or `l4.msgpack`; JSON when the client names none), the connection cap (503 with
//! `Retry-After` before any WebSocket state is allocated) and the cap per user (429
//! `too_many_connections` past `MAX_CONNECTIONS_PER_USER`).
//!
//! The handshake is answered here rather than by axum's extractor because the
//! connection needs its raw `TcpStream` back (hyper hands it over after the 101): room
//! broadcasts are written to it directly ([`outbox`]), while tungstenite only reads
//! frames and writes control frames ([`io`]). tungstenite's read buffer is 1 KiB instead
//! of its 128 KiB default, which is zero-filled before every read and so stays resident.

mod admission;
pub mod conn;
pub mod io;
mod replay;
mod requests;

pub use admission::probe;
/// The history page's bounds, for the backend's history route too (`crate::publish`).
pub(crate) use replay::{page_budget, page_rows};
pub(crate) use requests::{HISTORY_DEFAULT, HISTORY_MAX};

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use layer4_chat_protocol::Format;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use self::conn::Service;
use crate::Ctx;
use crate::answer::{json_error, json_error_retry};

/// One admitted connection; dropping it frees its slot under the cap.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot if fewer than `max` are taken.
pub fn admit(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
    Some(Slot(count.clone()))
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's subprotocols, in its order of preference.
fn requested_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

pub async fn upgrade(State(ctx): State<Arc<Ctx>>, mut request: Request) -> Response {
    ctx.stats.upgrade_requests.fetch_add(1, Relaxed);
    if ctx.draining() {
        ctx.stats.rejected_draining.fetch_add(1, Relaxed);
        return draining();
    }
    let answer = async {
        let identity = admission::identity(&ctx, request.headers(), request.uri().query(), true)?;
        let handshake = Handshake::check(&ctx, &mut request).inspect_err(|_| {
            ctx.stats.rejected_handshake.fetch_add(1, Relaxed);
        })?;
        // After the cheap checks: a backend user's number may take a query.
        let (user, place) = admission::user(&ctx, identity, true).await?;
        Ok::<_, Box<Response>>(handshake.accept(ctx.clone(), Service::Chat(user, place)))
    };
    answer.await.unwrap_or_else(|response| *response)
}

/// `GET /echo` (only with `ECHO_ROUTE=1`): a WebSocket that sends every message back as
/// it came, for conformance suites (`bench/autobahn.sh`). No token and no `welcome`;
/// everything else is `/ws`'s: the handshake checks, `MAX_CONNECTIONS`, the frame and
/// message size, the outbox bound, `WRITE_TIMEOUT`, `MAX_REQUESTS_PER_SECOND`, the
/// heartbeat and the closing handshake.
pub async fn echo(State(ctx): State<Arc<Ctx>>, mut request: Request) -> Response {
    if ctx.draining() {
        return draining();
    }
    match Handshake::check(&ctx, &mut request) {
        Ok(handshake) => handshake.accept(ctx, Service::Echo),
        Err(response) => *response,
    }
}

/// A valid upgrade request, not yet answered.
struct Handshake {
    accept_key: String,
    requested: Vec<String>,
    format: Format,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl Handshake {
    /// The origin (a browser's page), the upgrade headers, the version, the key and the
    /// subprotocol; the error response for the first one that is wrong.
    fn check(ctx: &Ctx, request: &mut Request) -> Result<Handshake, Box<Response>> {
        let headers = request.headers();
        check_origin(ctx, headers)?;
        if !header_has_token(headers, header::UPGRADE, "websocket")
            || !header_has_token(headers, header::CONNECTION, "upgrade")
        {
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "not_websocket",
                "expected a WebSocket upgrade request",
            )));
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
            let mut response = json_error(StatusCode::UPGRADE_REQUIRED, "bad_version", "WebSocket version 13 only");
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return Err(Box::new(response));
        }
        let Some(accept_key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
            return Err(Box::new(json_error(StatusCode::BAD_REQUEST, "not_websocket", "Sec-WebSocket-Key is missing")));
        };
        let requested = requested_protocols(headers);
        let format = match requested.iter().find_map(|p| Format::from_protocol(p)) {
            Some(format) => format,
            None if requested.is_empty() => Format::Json,
            None => {
                let text =
                    format!("unsupported subprotocol; use {} or {}", Format::JSON_PROTOCOL, Format::MSGPACK_PROTOCOL);
                return Err(Box::new(json_error(StatusCode::BAD_REQUEST, "unsupported_protocol", &text)));
            }
        };
        let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(Box::new(json_error(
                StatusCode::UPGRADE_REQUIRED,
                "not_websocket",
                "this connection cannot be upgraded",
            )));
        };
        Ok(Handshake { accept_key, requested, format, on_upgrade })
    }

    /// Takes a slot under `MAX_CONNECTIONS` (503 past it), answers 101 and serves the
    /// connection once hyper hands it over.
    fn accept(self, ctx: Arc<Ctx>, service: Service) -> Response {
        let Some(slot) = admit(&ctx.active, ctx.settings.max_connections) else {
            ctx.stats.rejected_full.fetch_add(1, Relaxed);
            return full();
        };
        let Handshake { accept_key, requested, format, on_upgrade } = self;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    ctx.stats.upgrades_lost.fetch_add(1, Relaxed);
                    return tracing::debug!(error = %e, "upgrade failed");
                }
            };
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    let stream = parts.io.into_inner();
                    conn::serve(stream, parts.read_buf, ctx, service, format, slot).await;
                }
                Err(_) => {
                    ctx.stats.upgrades_lost.fetch_add(1, Relaxed);
                    tracing::error!("an upgraded connection is not a TCP stream");
                }
            }
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept_key) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if !requested.is_empty() {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(format.protocol()));
        }
        response
    }
}

/// A browser names the page that opens the socket; other clients send no Origin.
fn check_origin(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !ctx.settings.allowed_origins.allows(origin.to_str().unwrap_or("")) => {
            let text = "this page's origin may not open a WebSocket here (ALLOWED_ORIGINS)";
            Err(Box::new(json_error(StatusCode::FORBIDDEN, "bad_origin", text)))
        }
        _ => Ok(()),
    }
}

/// 503 `full`, with a `Retry-After` of 1-5 s at random (so refused clients spread out).
fn full() -> Response {
    unavailable("full", "the server is at MAX_CONNECTIONS; retry later", 1 + rand::random_range(0..5))
}

fn draining() -> Response {
    unavailable("draining", "the server is shutting down; reconnect to another worker", 1)
}

fn unavailable(code: &str, text: &str, retry_after_s: u32) -> Response {
    json_error_retry(StatusCode::SERVICE_UNAVAILABLE, code, text, u64::from(retry_after_s))
}
