//! Limits an abusive client meets before the server does (docs/protocol.md §9 lists each
//! with its default and what happens past it):
//! - login and register per client address ([`peer`]), failed logins per user name,
//!   password hashes of one address at once (so one address cannot fill the hashing
//!   queue in front of everyone else), and password hashes waiting for a thread in all
//!   (past it, 503 at once instead of a queue);
//! - WebSocket connections per user;
//! - rooms per worker and room creations per user;
//! - requests per connection (checked by the connection task: close 1008).
//!
//! Every map here is bounded: by keys ([`bucket::Buckets`]) or by what it counts
//! (connected users).

pub mod bucket;
pub mod peer;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::limits::LimitSettings;
use bucket::Buckets;

/// Password hashes one client address may have running or waiting at once.
pub const HASHES_PER_ADDRESS: usize = 2;

/// Keys a rate map holds at most: past it, buckets that refilled are dropped, then new
/// keys are refused for a second (an attack from that many addresses at once).
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct Limits {
    /// Login and register requests, per client address.
    pub auth_per_ip: Buckets<IpAddr>,
    /// Failed logins, per user name (lower case).
    pub failed_logins: Buckets<String>,
    /// Rooms brought into memory, per user.
    pub room_creation: Buckets<i64>,
    /// Open WebSocket connections per user.
    connections: Mutex<HashMap<i64, usize>>,
    max_per_user: usize,
    /// Password hashes running or waiting, per client address.
    hashing: Mutex<HashMap<IpAddr, usize>>,
}

impl Limits {
    pub fn new(s: &LimitSettings) -> Limits {
        Limits {
            auth_per_ip: Buckets::new(s.auth_per_ip_per_minute, s.auth_per_ip_per_minute, MAX_KEYS),
            failed_logins: Buckets::new(s.login_failures_per_minute, s.login_failures_per_minute, MAX_KEYS),
            room_creation: Buckets::new(s.room_creation_per_minute, s.room_creation_per_minute, MAX_KEYS),
            connections: Mutex::new(HashMap::new()),
            max_per_user: s.max_connections_per_user,
            hashing: Mutex::new(HashMap::new()),
        }
    }

    /// One more connection of `user`, or None when it has `MAX_CONNECTIONS_PER_USER`.
    pub fn connect(self: &Arc<Self>, user: i64) -> Option<Counted<i64>> {
        Counted::take(self.clone(), |l| &l.connections, user, self.max_per_user)
    }

    /// A password hash for `ip`, or None when it has [`HASHES_PER_ADDRESS`] under way.
    pub fn hash_for(self: &Arc<Self>, ip: IpAddr) -> Option<Counted<IpAddr>> {
        Counted::take(self.clone(), |l| &l.hashing, ip, HASHES_PER_ADDRESS)
    }
}

/// The WebSocket connection of a user, under `MAX_CONNECTIONS_PER_USER`.
pub type UserSlot = Counted<i64>;

/// One of the things counted per key (connections per user, hashes per address); dropping
/// it gives its place back, and a key counted zero times is removed, so each map holds
/// only keys in use.
pub struct Counted<K: Hash + Eq + Copy> {
    limits: Arc<Limits>,
    map: fn(&Limits) -> &Mutex<HashMap<K, usize>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Counted<K> {
    fn take(limits: Arc<Limits>, map: fn(&Limits) -> &Mutex<HashMap<K, usize>>, key: K, max: usize) -> Option<Self> {
        {
            let mut m = map(&limits).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = m.entry(key).or_insert(0);
            if *n >= max {
                return None;
            }
            *n += 1;
        }
        Some(Counted { limits, map, key })
    }
}

impl<K: Hash + Eq + Copy> Drop for Counted<K> {
    fn drop(&mut self) {
        let mut m = (self.map)(&self.limits).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl<K: Hash + Eq + Copy + std::fmt::Debug> std::fmt::Debug for Counted<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted").field("key", &self.key).finish_non_exhaustive()
    }
}
