//! The HTTP surface of a worker.
//!
//! - `GET /ws`: WebSocket upgrade ([`crate::gateway`]).
//! - `POST /ws/probe`: 204, or the refusal the upgrade would get now (for browsers, which
//!   never see a refused upgrade's status).
//! - `GET /echo`, only with `ECHO_ROUTE=1`: a WebSocket echo for conformance suites.
//! - `POST /api/auth/register` `{"username","password"}` -> 201 `{token, user:{id,name}, expires_at}`;
//!   400 `bad_request`, 409 `name_taken`, 403 `registration_closed` (`REGISTRATION=closed`).
//! - `POST /api/auth/login` (same body) -> 200 (same reply); 401 `bad_credentials`; 403
//!   `registration_closed` when the backend signs every token (its keys set and
//!   `REGISTRATION=closed`: accounts come from the backend).
//! - Both: 429 `rate_limited` with `Retry-After` past `AUTH_RATE_PER_IP` for the client's
//!   address, or `LOGIN_FAILURES_PER_USER` for the user name; 503 `busy` when
//!   `HASHING_QUEUE` password hashes already wait ([`crate::limits`]).
//! - `GET /api/health/websocket` and `GET /metrics`: [`crate::health`].
//! - `GET /` and the page's files: the web chat page ([`crate::web`]); 404 otherwise.
//!
//! Every error body is `{"error": code, "message": text}`. No route returns a secret or
//! an environment value.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::Ctx;
use crate::answer::{json_error, json_error_retry};
use crate::auth::{Busy, Credentials, now_secs, valid_password, valid_user_name};
use crate::limits::Counted;
use crate::limits::peer::{Peer, client_ip, rate_key};
use crate::store::StoreError;

pub fn router(ctx: Arc<Ctx>) -> Router {
    let mut router = Router::new();
    if ctx.settings.echo_route {
        router = router.route("/echo", get(crate::gateway::echo));
    }
    router
        .route("/ws", get(crate::gateway::upgrade))
        .route("/ws/probe", post(crate::gateway::probe))
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/health/websocket", get(crate::health::health))
        .route("/metrics", get(crate::health::metrics))
        .route("/api/rooms/{room}/messages", post(crate::publish::post).get(crate::publish::history))
        .fallback(crate::web::serve)
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
        let Ok(peer) = stream.peer_addr() else { continue };
        let service = WithPeer { app: app.clone(), peer: Peer(peer) };
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

/// The router, with the TCP peer of the connection in each request's extensions.
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: Peer,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for WithPeer {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<hyper::Request<hyper::body::Incoming>>>::Future;

    fn call(&self, mut request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        tower_service::Service::call(&mut self.app.clone(), request)
    }
}

/// 429 `rate_limited`, to retry after `wait` (whole seconds, rounded up).
fn rate_limited(wait: Duration, text: &str) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    json_error_retry(StatusCode::TOO_MANY_REQUESTS, "rate_limited", text, secs)
}

/// 503 `busy`: too many password hashes wait.
fn busy() -> Response {
    json_error_retry(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many logins at once; retry shortly", 1)
}

/// What both auth routes do first: take a token of the client address's
/// `AUTH_RATE_PER_IP` and its place among the password hashes of that address (at most
/// [`crate::limits::HASHES_PER_ADDRESS`] at once), then read the body.
fn admit_auth(
    ctx: &Ctx,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<(Counted<IpAddr>, Credentials), Box<Response>> {
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    let ip = rate_key(client_ip(peer, headers, &ctx.settings.limits.trusted_proxies));
    let refused = |wait, text| {
        ctx.stats.rate_limited.fetch_add(1, Relaxed);
        Err(Box::new(rate_limited(wait, text)))
    };
    if let Err(wait) = ctx.limits.auth_per_ip.take(&ip, Instant::now()) {
        return refused(wait, "too many login or register requests from this address");
    }
    let Some(slot) = ctx.limits.hash_for(ip) else {
        return refused(Duration::from_secs(1), "too many logins at once from this address");
    };
    Ok((slot, credentials(body)?))
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

async fn register(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Response {
    if !ctx.settings.limits.registration_open {
        let text = "registration is closed on this server (REGISTRATION=closed)";
        return json_error(StatusCode::FORBIDDEN, "registration_closed", text);
    }
    let (hashing, c) = match admit_auth(&ctx, peer, &headers, body) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    if !valid_user_name(&c.username) {
        let text = "username: 3-32 characters of A-Z a-z 0-9 _ - .";
        return json_error(StatusCode::BAD_REQUEST, "bad_request", text);
    }
    if !valid_password(&c.password) {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "password: 8-128 bytes");
    }
    let hash = match ctx.auth.passwords.hash(c.password, hashing).await {
        Err(Busy) => return busy(),
        Ok(Ok(hash)) => hash,
        Ok(Err(e)) => {
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

async fn login(
    State(ctx): State<Arc<Ctx>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Response {
    if !ctx.settings.own_logins() {
        let text = "sign-in is closed on this server: accounts and tokens come from the app's backend (JWT_PUBLIC_KEY or JWT_JWKS_FILE with REGISTRATION=closed)";
        return json_error(StatusCode::FORBIDDEN, "registration_closed", text);
    }
    let (hashing, c) = match admit_auth(&ctx, peer, &headers, body) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    // Failed logins count per user name, whatever the address: guessing one account's
    // password from many addresses is as slow as from one.
    // A name that cannot exist is refused before it becomes a key of the failures map.
    if !valid_user_name(&c.username) {
        return json_error(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong username or password");
    }
    let name = c.username.to_ascii_lowercase();
    if let Err(wait) = ctx.limits.failed_logins.check(&name, Instant::now()) {
        ctx.stats.rate_limited.fetch_add(1, Relaxed);
        return rate_limited(wait, "too many failed logins for this user name; wait before trying again");
    }
    let user = match ctx.hub.store.user(&c.username).await {
        Ok(user) => user,
        Err(e) => return unavailable(&e),
    };
    let (id, hash) = user.map_or((None, None), |(id, name, hash)| (Some((id, name)), Some(hash)));
    match (ctx.auth.passwords.check(c.password, hash, hashing).await, id) {
        (Err(Busy), _) => busy(),
        (Ok(true), Some((id, name))) => issued(&ctx, StatusCode::OK, id, &name),
        _ => {
            let _ = ctx.limits.failed_logins.take(&name, Instant::now());
            json_error(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong username or password")
        }
    }
}
