//! The settings of the backend's way in (`crate::publish`): the API keys that may post
//! into rooms and read their history over HTTP, and how fast each may post. Keys are
//! secrets: never shown, not even their length; `Debug` says how many there are.

use super::Parser;

#[derive(Clone, Default)]
pub struct PublishSettings {
    /// `API_KEYS`: comma-separated; none means the routes answer 403.
    pub keys: Vec<Vec<u8>>,
    /// `API_RATE`: posts per second per key (a burst of as many).
    pub rate_per_second: u32,
}

impl std::fmt::Debug for PublishSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishSettings").field("keys", &self.keys.len()).field("rate", &self.rate_per_second).finish()
    }
}

pub const VARIABLES: &[&str] = &["API_KEYS", "API_RATE"];

/// The shortest key taken: 32 bytes, what `openssl rand -base64 24` makes.
pub const MIN_KEY: usize = 32;

pub(super) fn parse(p: &mut Parser) -> PublishSettings {
    let mut keys = Vec::new();
    for (n, key) in p.text("API_KEYS").unwrap_or_default().split(',').map(str::trim).enumerate() {
        if key.is_empty() {
            continue;
        }
        if key.len() < MIN_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
            // Which one, never what it is.
            p.fail(
                "API_KEYS",
                format!(
                    "key {} must be at least {MIN_KEY} printable characters without spaces (openssl rand -base64 24)",
                    n + 1
                ),
            );
            continue;
        }
        keys.push(key.as_bytes().to_vec());
    }
    PublishSettings { keys, rate_per_second: p.number("API_RATE", 1000, 1, 1_000_000) as u32 }
}
