//! The daemon: one process per home folder that owns every app it was given.
//!
//! [`start`] makes the daemon a child subreaper, ends any processes left by an
//! earlier daemon of the same home that was killed, and starts the [`supervisor`]
//! actor; [`Started::finish`] drains it after shutdown. Serving the control API on
//! the actor's channel is the composition root's work ([`crate::server`]): this
//! module does not know the API.
//!
//! The actor is one struct, `supervisor::Supervisor`, whose methods are spread over
//! the files below; each file may change only the fields it names (set once in
//! `Supervisor::new` and only read after: `home`, `log_dir`, `tx`, `run_id`,
//! `ticks_per_sec`, `sample_interval`, `events`):
//! - `supervisor.rs`: the struct, `new`, `handle` (one message at a time), control,
//!   delete, persist and waiters: `waiters`, `shutting_down`, `saved`, `apps`,
//!   `cgroups`, `crashes.oom`, `logs`, `scanned_before_signals`, `restarts_at_summary`.
//! - `carry.rs`: the lifecycle interpreter, the only place that starts processes:
//!   `apps`, `rng`, `serial`, `next_id`, `owned`, `strays`, `strays_now`, `sockets`,
//!   `logs`, `cgroups`, `crashes.oom`.
//! - `apply.rs`: config files into the running set (start, restore, SIGHUP, scale):
//!   `apps`, `saved`, `logs`, `crashes`.
//! - `replace.rs`: readiness and replacement of one run: `apps`, `strays`,
//!   `strays_now`, `retiring`.
//! - `reaping.rs`: `waitpid`, stray signals, orphan scans: `owned`, `strays`,
//!   `strays_now`, `scanned_before_signals`, `cgroups`, `orphans`.
//! - `sampling.rs`: sampling passes and the memory ceiling's verdicts carried out
//!   (the figures and the rule are `crate::monitor`'s): `apps`, `sampler`,
//!   `fast_pending`, `strays`.
//! - `crashes.rs`: crash reports and episodes: `crashes`.
//! - `report.rs`: status, describe and metrics answers: nothing (reads only).
//! - `mod.rs` ([`start`], before the actor runs): `crashes`, `cgroups`, `sampler`,
//!   `logs`, `notify_path`.
//!
//! The other files own a type or a task and touch no field: `boot.rs`, `deliver.rs`,
//! `home.rs`, `msg.rs`, `orphans.rs`, `ready.rs`, `state.rs`. Spawning, sockets and
//! cgroups are `crate::os`'s; sampling and the memory rule `crate::monitor`'s.
//!
//! Outside the actor, on the callers' side of its channel: `handle.rs` ([`Handle`],
//! the typed requests and the workflows built from them), `settle.rs` (when an action
//! is over and what failed), `rollout.rs` (reload waves), `follow.rs` (Nginx after a
//! scale), `triggers/` (`watch` and `cron_restart`, fed by the list the actor
//! publishes in `triggers`, a field `supervisor.rs` writes), and `fake.rs` (a
//! scripted actor for unit tests).

mod apply;
mod boot;
mod carry;
mod crashes;
mod deliver;
pub mod follow;
mod follow_schedule;
mod handle;
mod handover;
mod home;
mod msg;
mod operator;
mod orphans;
mod ready;
mod reaping;
mod replace;
mod report;
mod rollout;
mod sampling;
mod settle;
mod state;

mod supervisor;
pub mod triggers;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod handle_tests;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
// Process handling lives in `os/`; the actor's files reach it as `super::procs`.
use crate::os::{helpers, procs};

pub use deliver::DeliveryStats;
pub use handle::{Handle, Start};
pub use handover::{AppImage, DaemonImage, Frozen, InstImage};
pub use home::{Claimed, claim_home};
pub use msg::*;
pub use rollout::Rollout;
pub use state::SavedState;

/// Capacity of the actor's channel; senders wait when it is full.
const QUEUE: usize = 1024;
/// How often the daemon logs its one-line summary (the plan's monitoring section).
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// What the previous program handed over (`l4ctl update`), for [`start`] to adopt
/// instead of ending what an earlier daemon left.
#[derive(Debug)]
pub struct Adopt {
    pub image: DaemonImage,
    /// The instant the image's offsets are relative to, in this process.
    pub reference: std::time::Instant,
    pub pipes: Vec<crate::logs::HeldPipe>,
    pub counters: std::collections::BTreeMap<String, crate::wire::types::LogCounters>,
    /// The image's sockets' descriptors, in its order.
    pub sockets: Vec<std::os::fd::OwnedFd>,
    /// The notify socket.
    pub notify: Option<std::os::fd::OwnedFd>,
    /// Node runs' IPC channels, by main pid.
    pub node_ipc: Vec<(u32, std::os::fd::OwnedFd)>,
}

/// A started daemon: the actor's channel (what the API and the composition root send
/// to) and its task.
#[derive(Debug)]
pub struct Started {
    pub tx: mpsc::Sender<Msg>,
    /// The apps with `watch` or `cron_restart`, for [`triggers::spawn`].
    pub triggers: tokio::sync::watch::Receiver<Triggered>,
    /// Says once that a message panicked in the actor: the daemon must be handed over.
    pub panics: mpsc::UnboundedReceiver<()>,
    actor: tokio::task::JoinHandle<()>,
    home: std::path::PathBuf,
}

/// Start the daemon: become child subreaper, end what an earlier daemon of this home
/// left running, start the actor, and load `initial` (for `l4ctl daemon --config`,
/// under systemd), or `adopt` what the previous program handed over. The caller
/// serves the control API on [`Started::tx`], sends [`Msg::Shutdown`] when it is
/// asked to stop, then calls [`Started::finish`].
pub async fn start(
    settings: &crate::config::DaemonSpec,
    initial: Option<(Config, Option<String>)>,
    saved: SavedState,
    adopt: Option<Adopt>,
) -> Result<Started, Error> {
    if let Err(e) = procs::become_subreaper() {
        tracing::warn!(cause = %e, "cannot become child subreaper; orphaned grandchildren will be reaped by init");
    }
    if adopt.is_none() {
        boot::end_leftovers(&settings.home).await;
    }
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    // Handlers first: a child that ends before they exist would go unnoticed until the next tick.
    boot::spawn_signal_forwarders(tx.clone(), settings.sample_interval)?;
    #[cfg(debug_assertions)]
    if std::env::var_os("L4_FAILPOINT_PANIC_ON_USR2").is_some() {
        boot::forward_failpoint(&tx)?;
    }
    // A program that was handed over starts with these held back (`crate::handover`):
    // every handler is in place now (SIGTERM's too, in `crate::server`).
    crate::os::exec::unblock_signals();
    let mut sup = supervisor::Supervisor::new(
        settings.home.clone(),
        settings.log_dir.clone(),
        saved,
        settings.sample_interval,
        tx.clone(),
    );
    sup.crashes.configure(&settings.error_tracking);
    // Before any pipe is read (adopted ones included): structured panic lines.
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
    // Before the cgroups: the runs' folders are named after the adopted run id.
    let mut notify = None;
    if let Some(a) = adopt {
        notify = sup.adopt(a).map_err(Error::Invalid)?.notify;
    }
    sup.cgroups = if settings.cgroups {
        crate::os::cgroup::Cgroups::start(&settings.home, &sup.run_id)
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
    match ready::listen_notify(&settings.home, tx.clone(), notify) {
        Ok((path, copy)) => {
            sup.notify_path = Some(path);
            sup.notify_fd = Some(copy);
        }
        Err(e) => {
            tracing::error!(cause = %e, "cannot bind the notify socket; apps with ready = \"notify\" will not become ready")
        }
    }
    if let Some((config, env)) = initial {
        sup.boot(config, env);
    }
    sup.publish_triggers();
    let triggers = sup.triggers.subscribe();
    // Fault injection for the test of the systemd watchdog: the actor stops answering
    // after this many milliseconds (the runtime and every other task go on); not in
    // release builds.
    #[cfg(debug_assertions)]
    let stall_at = std::env::var("L4_FAILPOINT_DAEMON_STALL_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(|ms| std::time::Instant::now() + Duration::from_millis(ms));
    // A message that panics leaves the table as it was when it panicked: the panic is
    // reported (the crash hook), no other message is handled, and the composition
    // root hands the daemon over to its own program again (`crate::handover`).
    let (panicked, panics) = mpsc::unbounded_channel::<()>();
    let actor = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            #[cfg(debug_assertions)]
            if stall_at.is_some_and(|at| std::time::Instant::now() >= at) {
                std::future::pending::<()>().await;
            }
            if sup.panicked && !matches!(msg, Msg::Freeze { .. }) {
                continue;
            }
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sup.handle(msg)));
            if handled.is_err() && !sup.panicked {
                sup.panicked = true;
                let _ = panicked.send(());
            }
            if sup.frozen {
                // Handed over: the process execs its next program soon.
                std::future::pending::<()>().await;
            }
        }
    });
    Ok(Started { tx, triggers, panics, actor, home: settings.home.clone() })
}

impl Started {
    /// After every app stopped: drain the log writers so the last lines reach the
    /// files, end the actor and remove the notify socket.
    pub async fn finish(self) {
        let (reply, hub) = oneshot::channel();
        if self.tx.send(Msg::TakeLogs { reply }).await.is_ok()
            && let Ok(hub) = hub.await
        {
            hub.close(Duration::from_secs(3)).await;
        }
        drop(self.tx);
        self.actor.abort();
        let _ = std::fs::remove_file(ready::notify_path(&self.home));
    }
}
