//! The TCP side of the API: reads are open, changes need a token.
//!
//! Over TCP (`[daemon] api_listen`), `GET` and `HEAD` pass. Every other method
//! needs `Authorization: Bearer <token>`, where the token is the value of the
//! environment variable named by `[daemon] api_token_env`, compared in constant
//! time. With no token configured TCP is read-only: 403. A missing or wrong token
//! is 401. A `Host` that is not an IP address or `localhost` is 403 `bad_host`
//! (DNS rebinding). The Unix socket (mode 0600) is not behind this guard.

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

pub async fn guard(State(token): State<Token>, req: Request, next: Next) -> Response {
    // DNS rebinding: a web page on evil.example resolving to 127.0.0.1 reaches this
    // port with its own name in Host. Only IP literals and localhost are accepted.
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host_is_local_name(host) {
        return ApiError::new(StatusCode::FORBIDDEN, "bad_host", "the Host header must be an IP address or localhost")
            .into_response();
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let Some(expected) = &token.0 else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "the TCP API is read-only: set [daemon] api_token_env to allow changes, or use the Unix socket",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid `Authorization: Bearer <token>` is required")
            .into_response()
    }
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
    fn only_ip_literals_and_localhost_pass_the_host_check() {
        for ok in ["127.0.0.1:9615", "[::1]:9615", "localhost:9615", "localhost", "10.1.2.3"] {
            assert!(super::host_is_local_name(ok), "{ok}");
        }
        for bad in ["evil.example:9615", "evil.example", "", "127.0.0.1.nip.io:9615"] {
            assert!(!super::host_is_local_name(bad), "{bad}");
        }
    }
}
