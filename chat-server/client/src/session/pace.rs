//! The client's own rate: every frame it sends waits for a token, so it stays under
//! the server's `MAX_REQUESTS_PER_SECOND` (from the welcome) and is never closed with
//! 1008 for doing its job, however large the backlog it resends after a reconnect.
//!
//! The bucket refills at [`SHARE`] of the server's rate and holds a quarter second of
//! the server's rate: whatever the client sends in any interval is then well below
//! what the server's bucket (two seconds' worth, refilled at the full rate) lets
//! through, so frames bunched by a busy server (they wait in its socket and are read
//! together) and the pongs the WebSocket layer answers on its own still fit.

use std::time::Duration;

use tokio::time::Instant;

/// The part of the server's rate the client uses.
pub const SHARE: f64 = 0.5;

#[derive(Debug)]
pub struct Pace {
    /// Tokens a second; `None` when the server gave no rate (an older server).
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// No pacing until the welcome says the server's rate.
    pub fn unknown() -> Pace {
        Pace { rate: None, burst: 0.0, tokens: 0.0, at: Instant::now() }
    }

    /// Pacing for a server that accepts `per_second` frames a second (0: unknown).
    pub fn for_server(per_second: u32) -> Pace {
        if per_second == 0 {
            return Pace::unknown();
        }
        let rate = f64::from(per_second) * SHARE;
        let burst = (f64::from(per_second) / 4.0).max(1.0);
        Pace { rate: Some(rate), burst, tokens: burst, at: Instant::now() }
    }

    /// How long the next frame must wait (zero when a token is there); the token is
    /// taken, so the caller sends once the wait is over.
    pub fn take(&mut self, now: Instant) -> Duration {
        let Some(rate) = self.rate else { return Duration::ZERO };
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(self.burst) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / rate) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames sent as fast as the pace allows over `secs`, with their send times.
    fn flood(pace: &mut Pace, secs: f64) -> Vec<Instant> {
        let start = Instant::now();
        let mut now = start;
        let mut sent = Vec::new();
        while now < start + Duration::from_secs_f64(secs) {
            now += pace.take(now);
            sent.push(now);
        }
        sent
    }

    #[test]
    fn a_flood_stays_under_what_the_server_s_bucket_lets_through() {
        let server = 1000.0;
        let mut pace = Pace::for_server(1000);
        let sent = flood(&mut pace, 5.0);
        // The server's bucket: a burst of two seconds' worth, refilled at `server` a
        // second; it lets the whole flood through even read 3 s late all at once.
        let late =
            |t: Instant| if t < sent[0] + Duration::from_secs(1) { t } else { t.max(sent[0] + Duration::from_secs(4)) };
        let (mut tokens, mut at) = (2.0 * server, sent[0]);
        for t in sent.iter().map(|t| late(*t)) {
            tokens = (tokens + t.duration_since(at).as_secs_f64() * server).min(2.0 * server) - 1.0;
            at = t;
            assert!(tokens >= 0.0, "the server would close this client");
        }
        let rate = sent.len() as f64 / 5.0;
        assert!((500.0..=560.0).contains(&rate), "{rate} a second");
    }

    #[test]
    fn an_older_server_that_gives_no_rate_is_not_paced() {
        let mut pace = Pace::for_server(0);
        assert!((0..10_000).all(|_| pace.take(Instant::now()).is_zero()));
    }

    #[test]
    fn the_smallest_rate_still_lets_one_frame_through_at_a_time() {
        let mut pace = Pace::for_server(1);
        assert!(pace.take(Instant::now()).is_zero());
        let wait = pace.take(Instant::now());
        assert!(wait > Duration::from_millis(1900) && wait <= Duration::from_millis(2000), "{wait:?}");
    }
}
