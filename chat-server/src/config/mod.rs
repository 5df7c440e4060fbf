//! Settings of one chat-server worker: from the environment (the plan's variable names),
//! optionally on top of a `--config` TOML file whose keys are the same names in lower case.
//!
//! Owns every default and every bound. Every bad value is reported, each naming its
//! variable (or file:line:col for the TOML file); `main` exits 2 on any of them.
//! Secrets (`JWT_SECRET`, credentials inside `DATABASE_URL`/`REDIS_URL`) never appear in
//! an error or a log line.

pub mod backends;
pub mod cluster_url;
mod file;
pub mod keys;
pub mod limits;
pub mod net;
pub mod origins;
pub mod publish;
pub mod sentinel_url;
#[cfg(test)]
mod tests;
pub mod tokens;
#[cfg(test)]
mod tokens_tests;
pub mod trust;
pub mod web;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

pub use backends::redact_url;

/// One worker's settings. Durations are given in milliseconds in the environment, except
/// `JWT_TTL` (seconds).
#[derive(Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    /// With libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    pub database_url: String,
    pub redis_url: Option<String>,
    /// `REDIS_CA_FILE`, `REDIS_CLIENT_CERT`, `REDIS_CLIENT_KEY` (with `rediss://`).
    pub redis_tls: backends::RedisTls,
    /// Prefix of this deployment's Redis channels and keys (pub/sub ignores the
    /// database index, so two deployments on one Redis need different prefixes).
    pub redis_prefix: String,
    /// The HS256 key of this server's own tokens; random per process when
    /// `APP_ENV=development` and no secret is set, or when the backend signs every
    /// token (its keys set, `REGISTRATION=closed`) and no secret is set.
    pub jwt_secret: Vec<u8>,
    pub jwt_secret_generated: bool,
    pub jwt_ttl: Duration,
    pub app_env: String,
    pub max_connections: usize,
    pub heartbeat_interval: Duration,
    pub connection_timeout: Duration,
    /// Frames queued for a client that has not taken a byte of them for this long:
    /// close 4001 (it does not read).
    pub write_timeout: Duration,
    pub message_batch_size: usize,
    pub max_message_size: usize,
    /// Bytes of live messages queued for one connection before it is closed with 4001.
    pub queue_max_bytes: usize,
    pub max_rooms_per_connection: usize,
    /// Recent messages kept in memory per room to serve resume without the database.
    pub room_cache: usize,
    /// Largest gap a resume replays; larger gaps get `resume_too_far`.
    pub replay_limit: usize,
    /// Close-1012 messages are spread over this window on shutdown.
    pub drain_window: Duration,
    pub shutdown_timeout: Duration,
    pub metrics_log_interval: Duration,
    /// Workers of this app (`L4_INSTANCES`, set by l4ctl); more than one needs Redis.
    pub instances: u32,
    /// What an abusive client meets (`limits`).
    pub limits: limits::LimitSettings,
    /// Web pages that may open a WebSocket (`ALLOWED_ORIGINS`, `PUBLIC_URL`).
    pub allowed_origins: origins::Origins,
    /// The backend's API keys and their rate (`API_KEYS`, `API_RATE`).
    pub publish: publish::PublishSettings,
    /// The backend's token keys, issuer, audience and name claim (`JWT_PUBLIC_KEY`...).
    pub tokens: tokens::TokenSettings,
    /// The page at `/` (`WEB_UI`, `WEB_ROOT`).
    pub web: web::WebPage,
    /// `GET /echo` for conformance suites (`ECHO_ROUTE=1`; off by default): no auth, the
    /// same WebSocket settings, outbox and limits as `/ws`.
    pub echo_route: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &redact_url(&self.database_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("jwt_secret", &"<redacted>")
            .field("app_env", &self.app_env)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// A problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct SettingError {
    /// `PORT (environment)` or `chat.toml:3:8 (port)`.
    pub origin: String,
    pub message: String,
}

/// Every problem found, in variable order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<SettingError>);

/// The variables, in the order they are documented and reported.
pub const VARIABLES: &[&str] = &[
    "HOST",
    "PORT",
    "WEBSOCKET_PORT",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PREFIX",
    "JWT_SECRET",
    "JWT_TTL",
    "APP_ENV",
    "NODE_ENV",
    "PUBLIC_URL",
    "ALLOWED_ORIGINS",
    "MAX_CONNECTIONS",
    "HEARTBEAT_INTERVAL",
    "CONNECTION_TIMEOUT",
    "WRITE_TIMEOUT",
    "MESSAGE_BATCH_SIZE",
    "MAX_MESSAGE_SIZE",
    "QUEUE_MAX_BYTES",
    "MAX_ROOMS_PER_CONNECTION",
    "ROOM_CACHE",
    "REPLAY_LIMIT",
    "DRAIN_WINDOW",
    "SHUTDOWN_TIMEOUT",
    "METRICS_LOG_INTERVAL",
    "L4_INSTANCES",
    "ECHO_ROUTE",
];

/// Every variable read, the limits' included.
fn known() -> impl Iterator<Item = &'static str> {
    VARIABLES
        .iter()
        .chain(limits::VARIABLES)
        .chain(backends::VARIABLES)
        .chain(publish::VARIABLES)
        .chain(tokens::VARIABLES)
        .chain(web::VARIABLES)
        .copied()
}

/// A raw value and where it came from.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: String,
}

impl Settings {
    /// Reads the process environment, over `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::from_sources(file, |name| std::env::var(name).ok())
    }

    /// The same, with the environment supplied by `env` (tests pass a map).
    pub fn from_sources(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut raw = BTreeMap::new();
        let mut errors = Vec::new();
        if let Some(path) = file {
            file::read(path, &mut raw, &mut errors);
        }
        for name in known() {
            if let Some(value) = env(name) {
                raw.insert(name, Raw { value, origin: format!("{name} (environment)") });
            }
        }
        let mut p = Parser { raw, errors };
        let settings = p.settings();
        if p.errors.is_empty() { Ok(settings) } else { Err(ConfigError(p.errors)) }
    }

    pub fn is_development(&self) -> bool {
        is_development(&self.app_env)
    }

    /// Whether this server's own accounts sign in: not when the backend signs every
    /// token (its keys set) and `REGISTRATION=closed`.
    pub fn own_logins(&self) -> bool {
        self.limits.registration_open || !self.tokens.external()
    }
}

/// The `JWT_SECRET` of config/.env.example: refused in production.
pub const PLACEHOLDER_SECRET: &str = "change-me-to-a-long-random-string";

/// `APP_ENV` values under which a missing `JWT_SECRET` is replaced by a random one.
fn is_development(app_env: &str) -> bool {
    matches!(app_env, "development" | "dev" | "test")
}

struct Parser {
    raw: BTreeMap<&'static str, Raw>,
    errors: Vec<SettingError>,
}

impl Parser {
    fn settings(&mut self) -> Settings {
        // PM2 users set NODE_ENV: it counts when APP_ENV is not set. Neither: production.
        let app_env = self
            .text("APP_ENV")
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.text("NODE_ENV").filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| "production".to_string());
        let port = match self.raw.contains_key("PORT") {
            true => self.number("PORT", 3001, 1, u16::MAX as u64) as u16,
            false => self.number("WEBSOCKET_PORT", 3001, 1, u16::MAX as u64) as u16,
        };
        let host = self.parsed("HOST", IpAddr::from([127, 0, 0, 1]), "an IP address such as 127.0.0.1 or 0.0.0.0");
        let development = is_development(&app_env);
        let database_url = self.database_url();
        let (redis_url, redis_tls) = self.redis(development);
        let redis_prefix = self.text("REDIS_PREFIX").unwrap_or_else(|| "l4".to_string());
        if redis_prefix.is_empty()
            || redis_prefix.len() > 64
            || !redis_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            self.fail("REDIS_PREFIX", "must be 1 to 64 letters, digits, '_', '-' or '.'".to_string());
        }
        let instances = self.number("L4_INSTANCES", 1, 1, 1024) as u32;
        if instances > 1 && redis_url.is_none() {
            self.fail(
                "REDIS_URL",
                format!("is required with {instances} workers (L4_INSTANCES): without Redis every worker would keep its own copy of each room and clients on different workers would not see each other's messages"),
            );
        }
        let tokens = tokens::parse(self);
        let limits = limits::parse(self, development);
        // The backend signs every token and nobody signs in here: no secret is needed.
        // (A key that failed to load counts: its error is the one to report.)
        let backend_keys = tokens.external() || self.has("JWT_PUBLIC_KEY") || self.has("JWT_JWKS_FILE");
        let backend_only = backend_keys && !limits.registration_open;
        let make_one = "make one with `openssl rand -base64 48`";
        let (jwt_secret, jwt_secret_generated) = match self.text("JWT_SECRET").filter(|s| !s.is_empty()) {
            Some(secret) if !development && secret.trim().is_empty() => {
                self.fail("JWT_SECRET", format!("is only whitespace; {make_one}"));
                (Vec::new(), false)
            }
            Some(secret) if !development && secret.trim() == PLACEHOLDER_SECRET => {
                self.fail(
                    "JWT_SECRET",
                    format!("is the placeholder of config/.env.example, known to everyone; {make_one}"),
                );
                (Vec::new(), false)
            }
            Some(secret) if !development && secret.len() < 32 => {
                let text = format!(
                    "must be at least 32 bytes in production (it has {}): anyone who guesses it can sign tokens for any user; {make_one}",
                    secret.len()
                );
                self.fail("JWT_SECRET", text);
                (Vec::new(), false)
            }
            Some(secret) if secret.len() < 16 => {
                self.fail("JWT_SECRET", format!("must be at least 16 characters long (it has {})", secret.len()));
                (Vec::new(), false)
            }
            Some(secret) => (secret.into_bytes(), false),
            // Never used to sign: HS256 tokens are then refused, whoever made them.
            None if backend_only => (rand::random::<[u8; 32]>().to_vec(), false),
            None if development && instances > 1 => {
                self.fail(
                    "JWT_SECRET",
                    format!("is required with {instances} workers (L4_INSTANCES): a random per-process secret would make each worker reject the others' tokens"),
                );
                (Vec::new(), false)
            }
            None if development => (rand::random::<[u8; 32]>().to_vec(), true),
            None => {
                self.fail(
                    "JWT_SECRET",
                    format!("is required when APP_ENV is {app_env:?} ({make_one}; or set APP_ENV=development for a secret kept beside the SQLite database)"),
                );
                (Vec::new(), false)
            }
        };
        let heartbeat_interval = self.millis("HEARTBEAT_INTERVAL", 25_000, 10, 3_600_000);
        let connection_timeout = self.millis("CONNECTION_TIMEOUT", 60_000, 10, 3_600_000);
        if connection_timeout <= heartbeat_interval && self.errors.is_empty() {
            self.fail("CONNECTION_TIMEOUT", "must be longer than HEARTBEAT_INTERVAL".to_string());
        }
        let max_message_size = self.number("MAX_MESSAGE_SIZE", 64 * 1024, 256, 16 << 20) as usize;
        Settings {
            host,
            port,
            database_url,
            redis_url,
            redis_tls,
            redis_prefix,
            jwt_secret,
            jwt_secret_generated,
            jwt_ttl: Duration::from_secs(self.number("JWT_TTL", 86_400, 1, 365 * 86_400)),
            app_env,
            max_connections: self.number("MAX_CONNECTIONS", 2500, 1, 1_000_000) as usize,
            heartbeat_interval,
            connection_timeout,
            write_timeout: self.millis("WRITE_TIMEOUT", 30_000, 100, 3_600_000),
            message_batch_size: self.number("MESSAGE_BATCH_SIZE", 100, 1, 10_000) as usize,
            max_message_size,
            queue_max_bytes: self.number("QUEUE_MAX_BYTES", 1 << 20, max_message_size as u64, 1 << 30) as usize,
            max_rooms_per_connection: self.number("MAX_ROOMS_PER_CONNECTION", 100, 1, 100_000) as usize,
            room_cache: self.number("ROOM_CACHE", 256, 0, 1_000_000) as usize,
            replay_limit: self.number("REPLAY_LIMIT", 1000, 1, 1_000_000) as usize,
            drain_window: self.millis("DRAIN_WINDOW", 3_000, 0, 600_000),
            shutdown_timeout: self.millis("SHUTDOWN_TIMEOUT", 5_000, 100, 600_000),
            metrics_log_interval: self.millis("METRICS_LOG_INTERVAL", 30_000, 100, 86_400_000),
            instances,
            limits,
            allowed_origins: origins::parse(self, development),
            publish: publish::parse(self),
            tokens,
            web: web::parse(self),
            echo_route: self.switch("ECHO_ROUTE"),
        }
    }

    /// `1`/`true`/`on` or `0`/`false`/`off` (unset: off).
    fn switch(&mut self, name: &str) -> bool {
        match self.text(name).as_deref().map(str::trim) {
            None | Some("" | "0" | "false" | "off") => false,
            Some("1" | "true" | "on") => true,
            Some(other) => {
                self.fail(name, format!("{other:?} is neither 1 nor 0"));
                false
            }
        }
    }

    fn fail(&mut self, name: &str, message: String) {
        let origin = self.raw.get(name).map_or_else(|| name.to_string(), |r| r.origin.clone());
        self.errors.push(SettingError { origin, message });
    }

    /// Whether `name` is set to something other than blanks.
    fn has(&self, name: &str) -> bool {
        self.raw.get(name).is_some_and(|r| !r.value.trim().is_empty())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.raw.get(name).map(|r| r.value.clone())
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        let Some(raw) = self.raw.get(name) else { return default };
        match raw.value.trim().parse() {
            Ok(v) => v,
            Err(_) => {
                let message = format!("{:?} is not {what}", raw.value);
                self.fail(name, message);
                default
            }
        }
    }

    fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.raw.get(name) else { return default };
        match raw.value.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            Ok(v) => {
                self.fail(name, format!("{v} is out of range ({min}..={max})"));
                default
            }
            Err(_) => {
                let message = format!("{:?} is not a whole number", raw.value);
                self.fail(name, message);
                default
            }
        }
    }

    fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.number(name, default, min, max))
    }
}
