//! The daemon: one process per home folder that owns every app it was given.
//!
//! [`run`] takes an already bound Unix listener and a shutdown future (thin
//! `main`, testable library). It makes the daemon a child subreaper, ends any
//! processes left by an earlier daemon of the same home that was killed, starts
//! the [`supervisor`] actor, and serves the control API until shutdown; on
//! shutdown every app is stopped gracefully before `run` returns.

mod apply;
mod boot;
mod carry;
mod cgroup;
mod crashes;
mod deliver;
pub(crate) mod helpers;
mod home;
mod memory;
mod monitor;
mod msg;
mod orphans;
mod procs;
mod ready;
mod reaping;
mod replace;
mod report;
mod sample;
mod sockets;
mod spawn;
mod state;

pub use procs::{SUPERVISOR_VAR, TAG_VAR, clock_ticks_and_page_size, read_stat};
mod supervisor;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::Config;

pub use deliver::DeliveryStats;
pub use home::{Claimed, Paths, check_folders, claim_home};
pub use msg::*;
pub use state::SavedState;

/// Capacity of the actor's channel; senders wait when it is full.
const QUEUE: usize = 1024;
/// How often the daemon logs its one-line summary (the plan's monitoring section).
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// Run the daemon until `shutdown` resolves or a client asks it to `kill`.
/// `initial` is loaded at start (for `l4ctl daemon --config`, under systemd).
pub async fn run(
    settings: crate::config::DaemonSpec,
    listener: UnixListener,
    initial: Option<(Config, Option<String>)>,
    saved: SavedState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Err(e) = procs::become_subreaper() {
        tracing::warn!(cause = %e, "cannot become child subreaper; orphaned grandchildren will be reaped by init");
    }
    // Before any worker starts: they get the limit the daemon was started with back.
    let (tcp_budget, nofile) = crate::api::serve::fd_budget(settings.api_max_connections);
    tracing::debug!(nofile, tcp_budget, "descriptor budget");
    boot::end_leftovers(&settings.home).await;
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    // Handlers first: a child that ends before they exist would go unnoticed until the next tick.
    boot::spawn_signal_forwarders(tx.clone(), settings.sample_interval)?;
    let mut sup = supervisor::Supervisor::new(
        settings.home.clone(),
        settings.log_dir.clone(),
        saved,
        settings.sample_interval,
        tx.clone(),
    );
    sup.crashes.configure(&settings.error_tracking);
    sup.cgroups = if settings.cgroups {
        cgroup::Cgroups::start(&settings.home, &sup.run_id)
    } else {
        tracing::info!("no cgroup per run ([daemon] cgroups = false): orphans are tracked instead");
        None
    };
    // Without cgroups, the full sampling passes feed the orphan tracking.
    sup.sampler.keep_scans = sup.cgroups.is_none();
    sup.crashes.restore();
    sup.arm_episode_timer();
    sup.crashes.oom = boot::oom_counter();
    // Fault injection for the test of the daemon's panic hook; not in release builds.
    #[cfg(debug_assertions)]
    if let Ok(message) = std::env::var("L4_FAILPOINT_DAEMON_PANIC") {
        tokio::spawn(async move { panic!("{message}") });
    }
    let (panics, mut panic_rx) = mpsc::unbounded_channel::<crate::logs::PanicLine>();
    sup.logs.panics = Some(panics);
    let panic_tx = tx.clone();
    tokio::spawn(async move {
        while let Some((app, instance, line)) = panic_rx.recv().await {
            if panic_tx.send(Msg::PanicLine { app, instance, line }).await.is_err() {
                return;
            }
        }
    });
    match ready::listen_notify(&settings.home, tx.clone()) {
        Ok(path) => sup.notify_path = Some(path),
        Err(e) => {
            tracing::error!(cause = %e, "cannot bind the notify socket; apps with ready = \"notify\" will not become ready")
        }
    }
    if let Some((config, env)) = initial {
        sup.boot(config, env);
    }
    let actor = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            sup.handle(msg);
        }
    });
    let kill = Arc::new(Notify::new());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let tcp = match settings.api_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(%addr, cause = %e, "cannot listen for the TCP API; it is off (the Unix socket works)");
                None
            }
        },
        None => None,
    };
    let api_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    let state = crate::api::ApiState {
        tx: tx.clone(),
        started: Instant::now(),
        home: settings.home.clone(),
        log_dir: settings.log_dir.clone(),
        kill: kill.clone(),
        stopping,
        api_addr,
        log_reads: crate::api::LogReads::default(),
    };
    let tcp_task = tcp.map(|listener| {
        let token = boot::api_token(&settings);
        tracing::info!(addr = ?api_addr, token = ?token, "TCP API listening");
        if let Some(addr) = api_addr {
            let _ = crate::fsutil::atomic_write(&settings.home.join("api.addr"), format!("{addr}\n").as_bytes(), 0o644);
        }
        let router = crate::api::tcp(state.clone(), token);
        let mut stop = state.stopping.clone();
        tokio::spawn(crate::api::serve::serve(listener, router, tcp_budget, "tcp", async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    let app = crate::api::router(state);
    let stop_tx = tx.clone();
    let graceful = async move {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutdown requested; stopping every app");
                let (reply, done) = oneshot::channel();
                if stop_tx.send(Msg::Shutdown { reply }).await.is_ok() {
                    let _ = done.await;
                }
            }
            () = kill.notified() => {}
        }
        // Ends event streams and the TCP server, so the servers can finish.
        let _ = stopping_tx.send(true);
    };
    crate::api::serve::serve(listener, app, crate::api::serve::UNIX_CONNECTIONS, "unix", graceful).await;
    if let Some(t) = tcp_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    // Every app is stopped: drain the log writers so the last lines reach the files.
    let (reply, hub) = oneshot::channel();
    if tx.send(Msg::TakeLogs { reply }).await.is_ok()
        && let Ok(hub) = hub.await
    {
        hub.close(Duration::from_secs(3)).await;
    }
    drop(tx);
    actor.abort();
    let _ = std::fs::remove_file(Paths::socket(&settings.home));
    let _ = std::fs::remove_file(ready::notify_path(&settings.home));
    tracing::info!("daemon stopped");
    Ok(())
}
