//! layer4's chat server: one worker process serving WebSocket chat rooms.
//!
//! Map of the crate:
//! - [`config`]: settings from the environment or a TOML file, every default and bound.
//! - [`auth`]: accounts (argon2id) and tokens (this server's HS256 JWTs, the backend's
//!   RS256/ES256 ones).
//! - [`store`]: SQLite or PostgreSQL through sqlx: users, messages, per-room sequences.
//! - [`hub`]: rooms in memory, the ordered store-then-publish send path, resume replay.
//! - [`delivery`]: each connection's outbound queue and the flusher threads, written
//!   by the hub (broadcasts) and the gateway (replies, control frames).
//! - [`gateway`]: `/ws` admission (auth, cap, the probe) and the per-connection task.
//! - [`http`]: the router: `/ws`, `/api/auth/*`, `/api/health/websocket`, `/metrics`
//!   (and `/echo` with `ECHO_ROUTE=1`).
//! - [`web`]: the web chat page at `/` (embedded, or `WEB_ROOT`), with ETags and a CSP.
//! - [`answer`]: the JSON error body of every HTTP answer.
//! - [`health`]: the health check (with the database's and Redis's status) and `/metrics`.
//! - [`stats`]: counters behind health, metrics and the periodic log line; [`last_error`]:
//!   a backend's last failure, for the health check.
//! - [`telemetry`]: tracing setup and the one-line structured panic report.
//!
//! [`run`] takes the listener and the shutdown future from the caller, so tests start
//! a server on port 0 and `main` stays a few lines.

pub mod answer;
pub mod auth;
#[cfg(test)]
mod auth_props;
pub mod config;
pub mod delivery;
pub mod gateway;
pub mod health;
pub mod histogram;
pub mod http;
pub mod hub;
pub mod last_error;
pub mod limits;
pub mod publish;
pub mod reach;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::auth::Auth;
use crate::config::Settings;
use crate::hub::Hub;
use crate::stats::{Gauges, Stats};
use crate::store::{Store, StoreError};

/// What every request handler and connection shares.
#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    pub auth: Auth,
    pub hub: Hub,
    pub stats: Arc<Stats>,
    /// Admitted connections (the cap counts these).
    pub active: Arc<AtomicUsize>,
    /// Flips to true on shutdown (health and upgrades answer 503 from then on); every
    /// connection schedules its close-1012.
    pub drain: watch::Sender<bool>,
    conn_ids: AtomicU64,
    pub database: &'static str,
    /// Rates and counts per client address, user and worker ([`limits`]).
    pub limits: Arc<limits::Limits>,
    /// `API_RATE` per API key ([`publish`]).
    pub publish_rates: publish::Rates,
    /// The numbers the backend's users act as.
    pub subjects: store::subjects::Subjects,
    /// The web page's files ([`web`]).
    pub page: web::Page,
}

impl Ctx {
    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            active: self.active.load(Ordering::Acquire),
            max: self.settings.max_connections,
            rooms: self.hub.room_count(),
            memberships: self.hub.membership_count(),
            rss_bytes: stats::rss_bytes(),
            draining: self.draining(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("JWT_SECRET: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    /// The database or Redis cannot be reached: one sentence (`reach::why`).
    #[error("{0}")]
    Unreachable(String),
}

/// Serves `listener` until `shutdown` resolves, then drains: health turns 503
/// "draining", new upgrades get 503, every connection is closed with 1012 at a random
/// point of `DRAIN_WINDOW`, and it returns once they are gone or `SHUTDOWN_TIMEOUT`
/// (counted from the shutdown signal) has passed.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let mut settings = settings;
    reach::install_crypto();
    let store = Store::open(&settings.database_url).await.map_err(|e| match e {
        StoreError::Db(e) if !settings.database_url.starts_with("sqlite:") => RunError::Unreachable(
            reach::why::sentence(&reach::why::Endpoint::new("DATABASE_URL", &settings.database_url), &e),
        ),
        other => RunError::Store(other),
    })?;
    // Development without JWT_SECRET: a secret kept beside the SQLite database, so tokens
    // survive restarts and reloads (with PostgreSQL, one per process).
    let kept = match (settings.jwt_secret_generated, store::files::sqlite_path(&settings.database_url)) {
        (true, Some(db)) => {
            let path = store::files::secret_path(&db);
            settings.jwt_secret = store::files::dev_secret(&path).map_err(store::StoreError::Files)?;
            Some(path)
        }
        _ => None,
    };
    let database = if settings.database_url.starts_with("sqlite:") { "sqlite" } else { "postgres" };
    let stats = Arc::new(Stats::default());
    let ctx = Arc::new(Ctx {
        auth: Auth::with_backend(&settings.jwt_secret, settings.jwt_ttl, &settings.tokens)?
            .with_hashing_queue(settings.limits.hashing_queue),
        subjects: store::subjects::Subjects::new(store.clone()),
        page: web::Page::new(&settings.web),
        hub: Hub::new(store.clone(), stats.clone(), settings.room_cache, settings.limits.max_rooms),
        stats,
        active: Arc::new(AtomicUsize::new(0)),
        drain: watch::Sender::new(false),
        conn_ids: AtomicU64::new(1),
        database,
        limits: Arc::new(limits::Limits::new(&settings.limits)),
        publish_rates: publish::Rates::new(settings.publish.keys.len(), settings.publish.rate_per_second),
        settings,
    });
    match (&kept, ctx.settings.jwt_secret_generated) {
        (Some(path), _) => {
            tracing::warn!(file = %path.display(), "JWT_SECRET is not set: using the development secret kept beside the database");
        }
        (None, true) => {
            tracing::warn!("JWT_SECRET is not set: using a random per-process secret (APP_ENV=development)")
        }
        (None, false) => {}
    }
    if ctx.settings.echo_route && !ctx.settings.is_development() {
        tracing::warn!(
            "ECHO_ROUTE=1: GET /echo serves anyone without a token (only MAX_CONNECTIONS bounds it); it is meant for conformance tests"
        );
    }
    if let Some(url) = &ctx.settings.redis_url {
        let s = &ctx.settings;
        ctx.hub.connect_redis(url, &s.redis_tls, &s.redis_prefix, s.replay_limit).await.map_err(|e| {
            RunError::Unreachable(reach::why::sentence(&reach::why::Endpoint::new("REDIS_URL", url), &e))
        })?;
        info!("connected to Redis: rooms are shared with the other workers");
    }
    let addr = listener.local_addr()?;
    info!(%addr, database, max_connections = ctx.settings.max_connections, "chat server listening");
    let housekeeping = tokio::spawn(housekeeping(ctx.clone()));
    let (stop_accepting, accepting) = tokio::sync::oneshot::channel::<()>();
    let app = http::router(ctx.clone());
    let server = tokio::spawn(http::serve(listener, app, async move {
        let _ = accepting.await;
    }));
    // The database is open and the socket is served: tell the supervisor (sd_notify;
    // nothing happens without NOTIFY_SOCKET).
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot send READY=1 to NOTIFY_SOCKET");
    }

    shutdown.await;
    let deadline = tokio::time::Instant::now() + ctx.settings.shutdown_timeout;
    ctx.drain.send_replace(true);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // Stop accepting at once: with a socket shared with a successor (a reload under
    // l4ctl) new connections go to it; alone, they are refused and clients retry.
    let _ = stop_accepting.send(());
    let _ = tokio::time::timeout_at(deadline, server).await;
    info!(connections = ctx.active.load(Ordering::Acquire), "draining");
    while ctx.active.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    housekeeping.abort();
    let left = ctx.active.load(Ordering::Acquire);
    info!(left, "stopped");
    let _ = tokio::time::timeout(Duration::from_secs(1), store.close()).await;
    Ok(())
}

/// How often freed memory is handed back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Give the allocator's free pages back to the kernel (glibc only; a no-op elsewhere).
fn trim_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The periodic "connection metrics" log line, the sweep of idle rooms, and giving
/// freed memory back: glibc keeps what a burst freed in its arenas (a replay burst of
/// 20 connections left RSS 5 MB above its value before); `malloc_trim` returns it.
async fn housekeeping(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(ctx.settings.metrics_log_interval);
    let mut trim = tokio::time::interval(TRIM_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = trim.tick() => {
                trim_memory();
                continue;
            }
        }
        ctx.hub.sweep();
        let g = ctx.gauges();
        let s = &ctx.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        info!(
            target: "chat_server::metrics",
            total_connections = load(&s.connections_total),
            active_connections = g.active,
            disconnections = s.disconnections_total(),
            errors = load(&s.errors),
            messages_in = load(&s.messages_in),
            messages_out = load(&s.messages_out),
            queue_drops = load(&s.queue_drops),
            rooms = g.rooms,
            rss_bytes = g.rss_bytes,
            uptime_s = s.started.elapsed().as_secs(),
            "connection metrics"
        );
    }
}
