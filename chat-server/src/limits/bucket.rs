//! Token buckets by key, bounded in keys: what every rate limit here is made of.
//!
//! A bucket holds at most `burst` tokens and refills at `per_minute / 60` a second; a
//! request takes one, or is refused with the time until one is back. A key whose bucket
//! is full again is the same as a key never seen, so full buckets are dropped when the
//! map reaches `max_keys`; if it is still at `max_keys` after that (many keys busy at
//! once: an attack from many addresses), a new key is refused for a second rather than
//! let the map grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One bucket: `burst` tokens at most, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst.max(1.0), at: now }
    }

    fn refill(&mut self, per_second: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_second).min(burst.max(1.0));
        self.at = now;
    }

    /// How long until a whole token is back.
    fn wait(&self, per_second: f64) -> Duration {
        if per_second <= 0.0 {
            return Duration::from_secs(60);
        }
        Duration::from_secs_f64(((1.0 - self.tokens) / per_second).max(0.0))
    }

    /// Take a token, or say how long until one is back.
    pub fn take(&mut self, per_second: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(per_second, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(per_second))
        }
    }
}

#[derive(Debug)]
pub struct Buckets<K> {
    per_second: f64,
    burst: f64,
    max_keys: usize,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// `per_minute` tokens a minute, at most `burst` at once (1 at least), `max_keys` keys.
    pub fn new(per_minute: u32, burst: u32, max_keys: usize) -> Buckets<K> {
        Buckets {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a token for `key`, or say how long until one is back.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let (per_second, burst) = (self.per_second, self.burst);
        let mut map = self.lock();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            map.retain(|_, b| {
                b.refill(per_second, burst, now);
                b.tokens < burst
            });
            if map.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        map.entry(key.clone()).or_insert_with(|| Bucket::full(burst, now)).take(per_second, burst, now)
    }

    /// Whether `key` has a token now, without taking it.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.lock();
        let Some(b) = map.get_mut(key) else { return Ok(()) };
        b.refill(self.per_second, self.burst, now);
        if b.tokens >= 1.0 { Ok(()) } else { Err(b.wait(self.per_second)) }
    }

    /// Keys held (for tests and the memory bound).
    pub fn keys(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b: Buckets<&str> = Buckets::new(60, 3, 10);
        let t = Instant::now();
        assert!((0..3).all(|_| b.take(&"a", t).is_ok()));
        let wait = b.take(&"a", t).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(b.take(&"b", t).is_ok(), "keys are separate");
        assert!(b.check(&"a", t + Duration::from_millis(500)).is_err());
        assert!(b.take(&"a", t + Duration::from_secs(1)).is_ok(), "one a second");
        assert!(b.take(&"a", t + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn the_map_never_holds_more_than_its_keys() {
        let b: Buckets<u32> = Buckets::new(60, 2, 4);
        let t = Instant::now();
        for k in 0..4 {
            b.take(&k, t).unwrap();
        }
        assert!(b.take(&99, t).is_err(), "four busy keys: a fifth is refused");
        assert_eq!(b.keys(), 4);
        // Two seconds on, every bucket is full again: they are dropped for the new key.
        assert!(b.take(&99, t + Duration::from_secs(2)).is_ok());
        assert_eq!(b.keys(), 1);
    }
}
