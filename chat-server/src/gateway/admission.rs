//! Who may connect, decided before the WebSocket handshake: the token (401), the
//! user's number (a backend user's may take a query: 503 when the database does not
//! answer), the user's connections (429 past `MAX_CONNECTIONS_PER_USER`) and the
//! worker's (503 `full`, in `Handshake::accept`).
//!
//! A browser never sees why an upgrade was refused (its WebSocket only reports a
//! close, 1006), so `POST /ws/probe` answers what an upgrade with the same token and
//! origin would get right now: 204, or the refusal with its status, code and
//! `Retry-After`. A POST, because browsers name the page's origin on every POST (not
//! on a same-origin GET), as they do on the upgrade; the answer names that origin in
//! `Access-Control-Allow-Origin`, so a page on another origin can read it (it says
//! nothing the upgrade would not). It takes nothing: the slots it tries are given back
//! at once, and it is not counted as a refused upgrade.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Slot, admit, draining};
use crate::Ctx;
use crate::answer::{json_error, json_error_retry};
use crate::auth::{Identity, Subject, User};
use crate::limits::UserSlot;

/// The token of the request, or the 401.
pub(super) fn identity(
    ctx: &Ctx,
    headers: &HeaderMap,
    query: Option<&str>,
    count: bool,
) -> Result<Identity, Box<Response>> {
    ctx.auth.from_request(headers, query).map_err(|e| {
        if count {
            ctx.stats.rejected_auth.fetch_add(1, Relaxed);
        }
        let mut response = json_error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Box::new(response)
    })
}

/// The user a verified token names, with one of its connection places.
pub(super) async fn user(ctx: &Ctx, identity: Identity, count: bool) -> Result<(User, UserSlot), Box<Response>> {
    let id = match &identity.subject {
        Subject::Account(id) => *id,
        Subject::External(sub) => ctx.subjects.id(sub).await.map_err(|e| {
            if count {
                ctx.stats.rejected_unavailable.fetch_add(1, Relaxed);
            }
            tracing::warn!(error = %e, "cannot look up a backend user's number");
            let text = "storage unavailable; try again";
            Box::new(json_error_retry(StatusCode::SERVICE_UNAVAILABLE, "unavailable", text, 1))
        })?,
    };
    let Some(slot) = ctx.limits.connect(id) else {
        if count {
            ctx.stats.rejected_per_user.fetch_add(1, Relaxed);
        }
        let text = format!("at most {} connections per user", ctx.settings.limits.max_connections_per_user);
        return Err(Box::new(json_error_retry(StatusCode::TOO_MANY_REQUESTS, "too_many_connections", &text, 5)));
    };
    Ok((User { id, name: identity.name, exp: identity.exp }, slot))
}

/// `POST /ws/probe`: 204 when an upgrade with this token and origin would be taken now.
pub async fn probe(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if ctx.draining() {
        draining()
    } else {
        let checked = super::check_origin(&ctx, request.headers())
            .and_then(|()| identity(&ctx, request.headers(), request.uri().query(), false));
        drop(request);
        let answer = async {
            let identity = checked?;
            let (_user, _place) = user(&ctx, identity, false).await?;
            let _slot: Slot =
                admit(&ctx.active, ctx.settings.max_connections).ok_or_else(|| Box::new(super::full()))?;
            Ok::<_, Box<Response>>(StatusCode::NO_CONTENT.into_response())
        };
        answer.await.unwrap_or_else(|response| *response)
    };
    let h = response.headers_mut();
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
