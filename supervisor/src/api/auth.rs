//! The TCP side of the API: the overview is open, everything else needs a token.
//!
//! Over TCP (`[daemon] api_listen`), `GET` and `HEAD` of health, status, describe
//! (variable names, never values), history, events, metrics and the dashboard page's
//! own files (`/`, `/assets/dashboard.js`, `/assets/dashboard.css`) pass. Log lines and crash
//! reports carry what workers print (secrets included), so reading them needs the
//! token as every change does: `Authorization: Bearer <token>`, where the token is
//! the value of the environment variable named by `[daemon] api_token_env`. The
//! token is root-equivalent when the daemon runs as root (it can start any
//! program as the daemon's user). It is compared in time that depends only on the
//! length of what was sent, so neither its bytes nor its length leak. With no
//! token configured TCP is read-only: 403. A missing or wrong token is 401. A
//! `Host` that is not an IP address or `localhost` is 403 `bad_host` (DNS
//! rebinding). The Unix socket (mode 0600) is not behind this guard.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The token that allows changes over TCP, if one is configured.
#[derive(Clone)]
pub struct Token(pub Option<Arc<str>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(if self.0.is_some() { "Token(set)" } else { "Token(none)" })
    }
}

/// The token for changes over TCP: the value of the variable `api_token_env` names.
pub fn token(settings: &crate::config::DaemonSpec) -> Token {
    let Some(var) = &settings.api_token_env else { return Token(None) };
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Token(Some(Arc::from(v))),
        _ => {
            tracing::warn!(var = %var, "api_token_env names a variable that is not set; the TCP API is read-only");
            Token(None)
        }
    }
}

pub async fn guard(State(token): State<Token>, req: Request, next: Next) -> Response {
    // DNS rebinding: a web page on evil.example resolving to 127.0.0.1 reaches this
    // port with its own name in Host. Only IP literals and localhost are accepted.
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host_is_local_name(host) {
        return ApiError::new(StatusCode::FORBIDDEN, "bad_host", "the Host header must be an IP address or localhost")
            .into_response();
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) && open_read(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(expected) = &token.0 else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "the TCP API is read-only and shows no logs or crash reports: set [daemon] api_token_env to allow them, or use the Unix socket",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_token(given.as_bytes(), expected.as_bytes()) {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid `Authorization: Bearer <token>` is required")
            .into_response()
    }
}

/// The reads open without the token: the overview of what runs, never what it printed.
fn open_read(path: &str) -> bool {
    match path {
        "/api/v1/health" | "/api/v1/status" | "/api/v1/events" | "/metrics" => true,
        // The dashboard's own files: it asks for the token before it shows more.
        "/" | "/assets/dashboard.js" | "/assets/dashboard.css" => true,
        // `describe` and `history`: `/api/v1/apps/{name}`, `/api/v1/apps/{name}/history`,
        // and nothing else below it (`.../logs`).
        other => other.strip_prefix("/api/v1/apps/").is_some_and(|rest| {
            let name = rest.strip_suffix("/history").unwrap_or(rest);
            !name.is_empty() && !name.contains('/')
        }),
    }
}

/// Whether `given` is the token. Every byte of `given` is compared (against the token's
/// bytes in turn), so the time taken depends on `given`'s length alone: neither the
/// token's bytes nor its length can be learnt by timing. `expected` is never empty.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut equal = given.len().ct_eq(&expected.len());
    for (i, b) in given.iter().enumerate() {
        equal &= b.ct_eq(&expected[i % expected.len()]);
    }
    bool::from(equal)
}

/// `127.0.0.1:9615`, `[::1]:9615`, `localhost:9615`, `10.0.0.5` (a name that is not
/// `localhost` is refused).
fn host_is_local_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host })
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_compare_takes_every_given_byte_and_the_length() {
        use super::same_token;
        assert!(same_token(b"tok-123", b"tok-123"));
        for wrong in [&b"tok-12"[..], b"tok-1234", b"", b"tok-124", b"tok-123tok-123"] {
            assert!(!same_token(wrong, b"tok-123"), "{wrong:?}");
        }
        assert!(!same_token(b"", b""), "an empty token never matches");
    }

    #[test]
    fn only_the_overview_is_open_to_reads_without_the_token() {
        for open in [
            "/api/v1/health",
            "/api/v1/status",
            "/api/v1/events",
            "/metrics",
            "/api/v1/apps/web",
            "/api/v1/apps/web/history",
        ] {
            assert!(super::open_read(open), "{open}");
        }
        for closed in [
            "/api/v1/crashes",
            "/api/v1/apps/web/logs",
            "/api/v1/apps/",
            "/api/v1/apps/web/",
            "/api/v1/nope",
            "/api/v1/apps//history",
            "/api/v1/apps/a/b/history",
        ] {
            assert!(!super::open_read(closed), "{closed}");
        }
    }

    #[test]
    fn only_ip_literals_and_localhost_pass_the_host_check() {
        for ok in ["127.0.0.1:9615", "[::1]:9615", "localhost:9615", "localhost", "10.1.2.3"] {
            assert!(super::host_is_local_name(ok), "{ok}");
        }
        for bad in ["evil.example:9615", "evil.example", "", "127.0.0.1.nip.io:9615"] {
            assert!(!super::host_is_local_name(bad), "{bad}");
        }
    }
}
