//! `GET /ws`: admission and upgrade.
//!
//! Owns what happens before a connection exists: the token check (401 before the
//! upgrade), the connection cap (503 with `Retry-After` before any WebSocket state is
//! allocated), subprotocol choice (`l4.json` or `l4.msgpack`; JSON when none is asked
//! for) and the tungstenite limits that keep an idle connection small: a 1 KiB read
//! buffer instead of tungstenite's 128 KiB default (it is zero-filled before every
//! read, so every byte of it stays resident), a write buffer that batches small frames
//! into one write, and bounds on message, frame and write-buffer size.

pub mod conn;
pub mod outbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use layer4_chat_client::protocol::Format;
use std::sync::atomic::Ordering::Relaxed;

use crate::Ctx;
use crate::http::json_error;

/// tungstenite's read chunk per connection. Frames larger than this are still read
/// whole: the buffer grows to the frame's length while it is read.
const READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before a write.
const WRITE_BUFFER: usize = 16 * 1024;

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

pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if ctx.draining() {
        return unavailable("draining", "the server is shutting down; reconnect to another worker", 1);
    }
    let user = match ctx.auth.from_request(&headers, query.as_deref()) {
        Ok(user) => user,
        Err(e) => {
            ctx.stats.rejected_auth.fetch_add(1, Relaxed);
            let mut response = json_error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let requested: Vec<String> =
        ws.requested_protocols().filter_map(|p| p.to_str().ok()).map(|p| p.trim().to_string()).collect();
    let format = match requested.iter().find_map(|p| Format::from_protocol(p)) {
        Some(format) => format,
        None if requested.is_empty() => Format::Json,
        None => {
            let text =
                format!("unsupported subprotocol; use {} or {}", Format::JSON_PROTOCOL, Format::MSGPACK_PROTOCOL);
            return json_error(StatusCode::BAD_REQUEST, "unsupported_protocol", &text);
        }
    };
    let Some(slot) = admit(&ctx.active, ctx.settings.max_connections) else {
        ctx.stats.rejected_full.fetch_add(1, Relaxed);
        let retry = 1 + rand::random_range(0..5);
        return unavailable("full", "the server is at MAX_CONNECTIONS; retry later", retry);
    };
    let s = &ctx.settings;
    let ws = ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + 2 * s.max_message_size)
        .max_message_size(s.max_message_size)
        .max_frame_size(s.max_message_size);
    let ws = if requested.is_empty() { ws } else { ws.protocols([format.protocol()]) };
    let ctx = ctx.clone();
    ws.on_upgrade(move |socket| conn::serve(socket, ctx, user, format, slot))
}

fn unavailable(code: &str, text: &str, retry_after_s: u32) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, code, text);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}
