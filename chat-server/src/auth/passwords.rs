//! This server's own accounts: argon2id password hashes and the rules of names and
//! passwords. Hashing runs on the blocking pool, at most two at a time, so a login
//! burst cannot starve the WebSocket tasks or allocate more than two argon2 working
//! sets (19 MiB each); past `HASHING_QUEUE` waiting hashes the answer is [`Busy`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Threads hashing passwords at once.
const HASHING_THREADS: usize = 2;
/// Hashes that may wait for them unless `HASHING_QUEUE` says otherwise.
const DEFAULT_HASHING_QUEUE: usize = 64;

/// Too many password hashes are waiting: answer 503 at once rather than queue more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The hashing threads and their queue.
#[derive(Debug, Clone)]
pub struct Passwords {
    hashing: Arc<Semaphore>,
    /// Password hashes running or waiting, and how many may (`HASHING_QUEUE` + 2).
    queued: Arc<AtomicUsize>,
    queue_max: usize,
}

impl Default for Passwords {
    fn default() -> Passwords {
        Passwords {
            hashing: Arc::new(Semaphore::new(HASHING_THREADS)),
            queued: Arc::new(AtomicUsize::new(0)),
            queue_max: HASHING_THREADS + DEFAULT_HASHING_QUEUE,
        }
    }
}

impl Passwords {
    /// At most `waiting` password hashes wait for a thread; past it, [`Busy`] at once.
    pub fn with_queue(mut self, waiting: usize) -> Passwords {
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

    /// Argon2 on one of two threads; [`Busy`] when `HASHING_QUEUE` hashes already wait.
    /// `hold` (the caller's place under its own limits) is released with the hashing
    /// thread, not with the request: a client that disconnects does not free its place
    /// while its hash still runs.
    pub async fn hash<H: Send + 'static>(
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
    pub async fn check<H: Send + 'static>(
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
