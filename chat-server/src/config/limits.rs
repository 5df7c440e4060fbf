//! The settings of the limits an abusive client meets ([`crate::limits`]): rates of the
//! auth routes per client address and per user name, who may register, connections and
//! room creations per user, rooms per worker and requests per connection. A concept of
//! its own in the settings: every default here is a bound, documented in
//! docs/protocol.md §9 and the README.

use super::Parser;
use super::net::Net;

#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<Net>,
    /// Login and register requests per client address per minute (`AUTH_RATE_PER_IP`).
    pub auth_per_ip_per_minute: u32,
    /// Failed logins per user name per minute (`LOGIN_FAILURES_PER_USER`).
    pub login_failures_per_minute: u32,
    /// Password hashes waiting for the two hashing threads at most (`HASHING_QUEUE`).
    pub hashing_queue: usize,
    /// `REGISTRATION=open` (the default in development) or `closed`.
    pub registration_open: bool,
    /// WebSocket connections of one user at once (`MAX_CONNECTIONS_PER_USER`).
    pub max_connections_per_user: usize,
    /// Rooms in memory in one worker (`MAX_ROOMS`).
    pub max_rooms: usize,
    /// Rooms one user may bring into memory per minute (`ROOM_CREATION_RATE`).
    pub room_creation_per_minute: u32,
    /// Requests (frames) one connection may send per second (`MAX_REQUESTS_PER_SECOND`).
    pub max_requests_per_second: u32,
}

/// The variables read here.
pub const VARIABLES: &[&str] = &[
    "TRUSTED_PROXIES",
    "AUTH_RATE_PER_IP",
    "LOGIN_FAILURES_PER_USER",
    "HASHING_QUEUE",
    "REGISTRATION",
    "MAX_CONNECTIONS_PER_USER",
    "MAX_ROOMS",
    "ROOM_CREATION_RATE",
    "MAX_REQUESTS_PER_SECOND",
];

pub(super) fn parse(p: &mut Parser, development: bool) -> LimitSettings {
    let proxies = p.text("TRUSTED_PROXIES").unwrap_or_else(|| "127.0.0.0/8,::1".to_string());
    let mut trusted_proxies = Vec::new();
    for item in proxies.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Net::parse(item) {
            Some(net) => trusted_proxies.push(net),
            None => p.fail("TRUSTED_PROXIES", format!("{item:?} is not an IP address or ADDRESS/PREFIX")),
        }
    }
    let registration_open = match p.text("REGISTRATION").as_deref().map(str::trim) {
        None | Some("") => development,
        Some("open") => true,
        Some("closed") => false,
        Some(other) => {
            p.fail("REGISTRATION", format!("{other:?} is neither open nor closed"));
            development
        }
    };
    LimitSettings {
        trusted_proxies,
        auth_per_ip_per_minute: p.number("AUTH_RATE_PER_IP", 30, 1, 1_000_000) as u32,
        login_failures_per_minute: p.number("LOGIN_FAILURES_PER_USER", 10, 1, 1_000_000) as u32,
        hashing_queue: p.number("HASHING_QUEUE", 64, 1, 100_000) as usize,
        registration_open,
        max_connections_per_user: p.number("MAX_CONNECTIONS_PER_USER", 20, 1, 1_000_000) as usize,
        max_rooms: p.number("MAX_ROOMS", 100_000, 1, 100_000_000) as usize,
        room_creation_per_minute: p.number("ROOM_CREATION_RATE", 300, 1, 1_000_000) as u32,
        max_requests_per_second: p.number("MAX_REQUESTS_PER_SECOND", 1000, 1, 1_000_000) as u32,
    }
}
