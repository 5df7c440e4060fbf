//! Accounts and tokens: argon2id password hashes in the database and HS256 JWTs.
//!
//! Owns the token format (claims `sub` = user id, `name`, `iat`, `exp`; no leeway on
//! expiry), how a request carries it (`Authorization: Bearer`, or `?token=` for browsers
//! that cannot set headers on a WebSocket), and the register/login rules. Hashing runs
//! on the blocking pool, at most two at a time, so a login burst cannot starve the
//! WebSocket tasks or allocate more than two argon2 working sets (19 MiB each).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// What a valid token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub iat: u64,
    pub exp: u64,
}

/// The user a connection or request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Expired => "expired_token",
            TokenError::Invalid => "invalid_token",
        }
    }
}

#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    hashing: Arc<Semaphore>,
    /// Password hashes running or waiting, and how many may (`HASHING_QUEUE` + 2).
    queued: Arc<AtomicUsize>,
    queue_max: usize,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Auth {
    /// `secret` must not be empty (the config guarantees at least 16 bytes).
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Auth, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Auth {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            validation,
            ttl,
            hashing: Arc::new(Semaphore::new(HASHING_THREADS)),
            queued: Arc::new(AtomicUsize::new(0)),
            queue_max: HASHING_THREADS + DEFAULT_HASHING_QUEUE,
        })
    }

    /// At most `waiting` password hashes wait for a thread; past it, [`Busy`] at once.
    pub fn with_hashing_queue(mut self, waiting: usize) -> Auth {
        self.queue_max = HASHING_THREADS + waiting;
        self
    }

    /// A place among the hashes running or waiting, or [`Busy`].
    fn enter(&self) -> Result<Queued, Busy> {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.queue_max).then_some(n + 1))
            .map_err(|_| Busy)?;
        Ok(Queued(self.queued.clone()))
    }

    pub fn issue(&self, id: i64, name: &str) -> String {
        self.issue_with_ttl(id, name, self.ttl)
    }

    pub fn issue_with_ttl(&self, id: i64, name: &str, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims { sub: id.to_string(), name: name.to_string(), iat, exp: iat + ttl.as_secs() };
        // HS256 signing of a small struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<User, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let id = data.claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        Ok(User { id, name: data.claims.name, exp: data.claims.exp })
    }

    /// The token of a request: the bearer header first, else the `token` query parameter.
    pub fn from_request(&self, headers: &HeaderMap, query: Option<&str>) -> Result<User, TokenError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = match header {
            Some(value) => value.strip_prefix("Bearer ").map(str::trim).ok_or(TokenError::Invalid)?.to_string(),
            None => query_token(query.unwrap_or("")).ok_or(TokenError::Missing)?,
        };
        self.verify(&token)
    }

    /// Argon2 on one of two threads; [`Busy`] when `HASHING_QUEUE` hashes already wait.
    /// `hold` (the caller's place under its own limits) is released with the hashing
    /// thread, not with the request: a client that disconnects does not free its place
    /// while its hash still runs.
    pub async fn hash_password<H: Send + 'static>(
        &self,
        password: String,
        hold: H,
    ) -> Result<Result<String, argon2::password_hash::Error>, Busy> {
        let queued = self.enter()?;
        let permit = self.hashing.clone().acquire_owned().await;
        Ok(tokio::task::spawn_blocking(move || {
            let _held = (queued, permit, hold);
            Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string())
        })
        .await
        .unwrap_or(Err(argon2::password_hash::Error::Crypto)))
    }

    /// Checks `password` against a stored PHC string; with no stored hash it still does
    /// the same work, so timing does not reveal which user names exist.
    pub async fn check_password<H: Send + 'static>(
        &self,
        password: String,
        stored: Option<String>,
        hold: H,
    ) -> Result<bool, Busy> {
        let queued = self.enter()?;
        let permit = self.hashing.clone().acquire_owned().await;
        Ok(tokio::task::spawn_blocking(move || {
            let _held = (queued, permit, hold);
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
            let Ok(parsed) = PasswordHash::new(&stored) else { return false };
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
        })
        .await
        .unwrap_or(false))
    }
}

/// Threads hashing passwords at once.
const HASHING_THREADS: usize = 2;
/// Hashes that may wait for them unless `HASHING_QUEUE` says otherwise.
const DEFAULT_HASHING_QUEUE: usize = 64;

/// Too many password hashes are waiting: answer 503 at once rather than queue more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A place in the hashing queue, given back when dropped.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Compared against when the user does not exist (hash of a random, discarded password).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Wbd7v4WnE0eF1W5gSGQ9qyQvJ2p3k3yJzAh4b6kEJbw";

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

/// The body of `POST /api/auth/register` and `/api/auth/login`, read by axum's `Json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// User names: 3-32 characters of `A-Z a-z 0-9 _ - .`.
pub fn valid_user_name(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Passwords: 8-128 bytes.
pub fn valid_password(password: &str) -> bool {
    (8..=128).contains(&password.len())
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
        assert_eq!(a.verify(&token).unwrap().name, "ann");
        let other = Auth::new(b"another-secret-of-length", Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(a.verify("garbage"), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_told_apart() {
        let a = auth();
        let claims = Claims { sub: "1".into(), name: "x".into(), iat: 1, exp: now_secs() - 1 };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &a.encoding).unwrap();
        assert_eq!(a.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn the_query_token_is_found_and_decoded() {
        assert_eq!(query_token("a=1&token=x%2By&b=2").as_deref(), Some("x+y"));
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("tokens=1"), None);
    }
}
