//! The app's backend posting into rooms and reading them over HTTP, with an API key
//! (`API_KEYS`): `POST /api/rooms/{room}/messages` stores and delivers a message exactly
//! as a member's `send` does (the room's order, idempotent by `id`, fanned out to every
//! worker through Redis), and `GET /api/rooms/{room}/messages?before=&limit=` pages its
//! history. The backend is its own sender: user id 0, under the `author` it names.
//!
//! Keys are compared in constant time, every configured key each time; a key is never
//! logged or answered. Errors use the server's body `{"error","message"}`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Ctx;
use crate::answer::{json_error, json_error_retry};
use crate::auth::User;
use crate::gateway::{HISTORY_DEFAULT, HISTORY_MAX, page_budget, page_rows};
use crate::hub::RoomError;
use crate::limits::bucket::Bucket;

/// The backend's user id: no account has it (ids start at 1).
pub const BACKEND_USER: i64 = 0;
/// `author` when the post names none.
pub const DEFAULT_AUTHOR: &str = "api";

/// One bucket per configured key.
#[derive(Debug)]
pub struct Rates(std::sync::Mutex<Vec<Bucket>>);

impl Rates {
    pub fn new(keys: usize, rate: u32) -> Rates {
        Rates(std::sync::Mutex::new(vec![Bucket::full(f64::from(rate), Instant::now()); keys]))
    }
}

/// Which configured key `headers` carry, or the answer refusing them.
fn key_of(ctx: &Ctx, headers: &HeaderMap) -> Result<usize, Box<Response>> {
    let keys = &ctx.settings.publish.keys;
    if keys.is_empty() {
        return Err(Box::new(json_error(StatusCode::FORBIDDEN, "publishing_disabled", "this server has no API_KEYS")));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            json_error(StatusCode::UNAUTHORIZED, "missing_api_key", "send Authorization: Bearer <API key>")
        })?;
    let mut found = None;
    for (n, key) in keys.iter().enumerate() {
        if same(given.as_bytes(), key) && found.is_none() {
            found = Some(n);
        }
    }
    found.ok_or_else(|| Box::new(json_error(StatusCode::UNAUTHORIZED, "invalid_api_key", "the API key is not valid")))
}

/// Constant time in the key's length: every byte of `key` is looked at, whatever matches.
fn same(given: &[u8], key: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != key.len());
    for (i, k) in key.iter().enumerate() {
        diff |= k ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Post {
    id: String,
    body: String,
    author: Option<String>,
}

pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match key_of(&ctx, &headers) {
        Ok(k) => k,
        Err(refused) => return *refused,
    };
    let rate = f64::from(ctx.settings.publish.rate_per_second);
    let taken = ctx.publish_rates.0.lock().map(|mut b| b[key].take(rate, rate, Instant::now())).unwrap_or(Ok(()));
    if let Err(wait) = taken {
        ctx.stats.rate_limited.fetch_add(1, Relaxed);
        let text =
            format!("more than API_RATE ({}) posts a second with this key", ctx.settings.publish.rate_per_second);
        return json_error_retry(StatusCode::TOO_MANY_REQUESTS, "rate_limited", &text, wait.as_secs() + 1);
    }
    let max = ctx.settings.max_message_size;
    let body = match body {
        Ok(b) if b.len() <= max => b,
        _ => {
            let text = format!("a post is at most MAX_MESSAGE_SIZE ({max}) bytes");
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &text);
        }
    };
    let post: Post = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("expected {{\"id\",\"body\",\"author\"?}}: {e}"),
            );
        }
    };
    if !layer4_chat_protocol::valid_room(&name) {
        return json_error(StatusCode::BAD_REQUEST, "bad_room", layer4_chat_protocol::ROOM_RULE);
    }
    if !layer4_chat_protocol::valid_id(&post.id) {
        return json_error(StatusCode::BAD_REQUEST, "bad_id", layer4_chat_protocol::ID_RULE);
    }
    if post.body.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "bad_body", "the body is empty");
    }
    let author = post.author.unwrap_or_else(|| DEFAULT_AUTHOR.to_owned());
    if author.is_empty() || author.chars().count() > 64 || author.chars().any(char::is_control) {
        return json_error(StatusCode::BAD_REQUEST, "bad_author", "author is 1-64 characters, none of them a control");
    }
    let room = match ctx.hub.room(&name, || Ok(())).await {
        Ok(room) => room,
        Err(e) => return room_failed(&ctx, &name, e),
    };
    let user = User { id: BACKEND_USER, name: author, exp: u64::MAX };
    match ctx.hub.send(&room, &user, &post.id, &post.body).await {
        Ok(sent) => {
            let status = if sent.duplicate { StatusCode::OK } else { StatusCode::CREATED };
            let answer =
                json!({ "room": sent.room.as_ref(), "id": post.id, "seq": sent.seq, "duplicate": sent.duplicate });
            (status, Json(answer)).into_response()
        }
        Err(e) => {
            tracing::warn!(room = %name, error = %e.0, "post failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage unavailable; post it again with the same id",
            )
        }
    }
}

fn room_failed(ctx: &Ctx, name: &str, e: RoomError) -> Response {
    match e {
        RoomError::TooMany => {
            let text = format!("this server holds its most rooms ({}); try again later", ctx.settings.limits.max_rooms);
            json_error_retry(StatusCode::SERVICE_UNAVAILABLE, "too_many_rooms", &text, 60)
        }
        RoomError::RateLimited(wait) => {
            json_error_retry(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many new rooms", wait.as_secs() + 1)
        }
        RoomError::Store(e) => {
            tracing::warn!(room = name, error = %e, "room load failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage unavailable; try again")
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    before: Option<u64>,
    limit: Option<u32>,
}

pub async fn history(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = key_of(&ctx, &headers) {
        return *refused;
    }
    let Ok(Query(page)) = page else {
        return json_error(StatusCode::BAD_REQUEST, "malformed", "before and limit are whole numbers");
    };
    if !layer4_chat_protocol::valid_room(&name) {
        return json_error(StatusCode::BAD_REQUEST, "bad_room", layer4_chat_protocol::ROOM_RULE);
    }
    let limit = page.limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
    let (budget, rows) = (page_budget(&ctx), page_rows(&ctx));
    match ctx.hub.store.history(&name, page.before.unwrap_or(u64::MAX), limit, budget, rows).await {
        Ok((messages, more)) => Json(json!({ "room": name, "messages": messages, "more": more })).into_response(),
        Err(e) => {
            tracing::warn!(room = %name, error = %e, "history failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage unavailable; try again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn keys_match_whole_and_only_whole() {
        let key = b"0123456789abcdef0123456789abcdef";
        assert!(same(key, key));
        assert!(!same(&key[..31], key));
        assert!(!same(b"0123456789abcdef0123456789abcdefX", key));
        assert!(!same(b"", key));
    }
}
