//! Who a request acts as: the token it carries (`Authorization: Bearer`, or `?token=`
//! for browsers that cannot set headers on a WebSocket), verified by [`tokens`], and
//! this server's own accounts ([`passwords`]).
//!
//! A token names a [`Subject`]; a connection acts as a [`User`], whose number is the
//! account's, or for a user of the app's backend the number the store keeps for its
//! `sub` (`crate::store::subjects`), so limits and idempotent sends work alike for both.

mod passwords;
pub mod tokens;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

pub use passwords::{Busy, Credentials, Passwords, valid_password, valid_user_name};
pub use tokens::{Claims, Identity, Subject, TokenError, Tokens};

use crate::config::tokens::TokenSettings;

/// The user a connection or request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Tokens and passwords.
#[derive(Debug, Clone)]
pub struct Auth {
    pub tokens: Tokens,
    pub passwords: Passwords,
}

impl Auth {
    /// Own tokens only, the default hashing queue. `secret` must not be empty.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Auth, jsonwebtoken::errors::Error> {
        Auth::with_backend(secret, ttl, &TokenSettings::default())
    }

    pub fn with_backend(
        secret: &[u8],
        ttl: Duration,
        backend: &TokenSettings,
    ) -> Result<Auth, jsonwebtoken::errors::Error> {
        Ok(Auth { tokens: Tokens::with_backend(secret, ttl, backend)?, passwords: Passwords::default() })
    }

    /// At most `waiting` password hashes wait for a thread.
    pub fn with_hashing_queue(mut self, waiting: usize) -> Auth {
        self.passwords = self.passwords.with_queue(waiting);
        self
    }

    pub fn issue(&self, id: i64, name: &str) -> String {
        self.tokens.issue(id, name)
    }

    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.tokens.verify(token)
    }

    /// The token of a request: the bearer header first, else the `token` query parameter.
    pub fn from_request(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Identity, TokenError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = match header {
            Some(value) => value.strip_prefix("Bearer ").map(str::trim).ok_or(TokenError::Invalid)?.to_string(),
            None => query_token(query.unwrap_or("")).ok_or(TokenError::Missing)?,
        };
        self.verify(&token)
    }
}

/// The `token` parameter of a query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_query_token_is_percent_decoded_and_only_hex_digits_decode() {
        assert_eq!(query_token("a=1&token=x%2Ey%2ez&b=2").as_deref(), Some("x.y.z"));
        assert_eq!(query_token("token=%+1x%4").as_deref(), Some("% 1x%4"), "a sign is not a hex digit");
        assert_eq!(query_token("token=%41%zz").as_deref(), Some("A%zz"));
        assert_eq!(query_token("tokens=a&token="), None);
    }

    fn auth() -> Auth {
        Auth::new(b"0123456789abcdef0123", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn a_token_round_trips_and_a_forged_one_does_not() {
        let a = auth();
        let token = a.issue(7, "ann");
        let who = a.verify(&token).unwrap();
        assert_eq!((who.subject, who.name.as_str()), (Subject::Account(7), "ann"));
        let other = Auth::new(b"another-secret-of-length", Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(a.verify("garbage"), Err(TokenError::Invalid));
    }

    #[test]
    fn an_own_token_for_user_0_or_below_is_refused() {
        let a = auth();
        for id in [0, -1, i64::MIN] {
            assert_eq!(a.verify(&a.issue(id, "x")), Err(TokenError::Invalid), "{id}");
        }
    }

    #[test]
    fn an_expired_token_is_told_apart() {
        let a = auth();
        let claims = Claims { sub: "1".into(), name: "x".into(), iat: 1, exp: now_secs() - 1 };
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123").unwrap();
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        assert_eq!(a.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn the_query_token_is_found_and_decoded() {
        assert_eq!(query_token("a=1&token=x%2By&b=2").as_deref(), Some("x+y"));
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("tokens=1"), None);
    }
}
