//! What [`super::start`] sets up around the actor: signal forwarders and timers, the
//! OOM-kill counter, and the clean-up of a previous daemon's leftovers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::{Error, Msg, SUMMARY_INTERVAL, procs};

/// SIGHUP reloads the config; SIGUSR1 reopens log files; SIGCHLD drives reaping; a
/// `sample_interval` tick samples (and reaps, in case a coalesced SIGCHLD was missed);
/// a 30 s tick logs the summary line.
pub(super) fn spawn_signal_forwarders(tx: mpsc::Sender<Msg>, sample_interval: Duration) -> Result<(), Error> {
    forward(SignalKind::hangup(), &tx, Some("SIGHUP: reloading config"), || Msg::Reload { reply: None })?;
    forward(SignalKind::user_defined1(), &tx, Some("SIGUSR1: reopening log files"), || Msg::ReopenLogs)?;
    forward(SignalKind::child(), &tx, None, || Msg::Sigchld)?;
    every(sample_interval, Duration::ZERO, &tx, || Msg::Tick);
    every(SUMMARY_INTERVAL, SUMMARY_INTERVAL, &tx, || Msg::Summary);
    Ok(())
}

/// Debug builds, `L4_FAILPOINT_PANIC_ON_USR2`: each SIGUSR2 makes the actor panic
/// (the test of the panic's handover).
#[cfg(debug_assertions)]
pub(super) fn forward_failpoint(tx: &mpsc::Sender<Msg>) -> Result<(), Error> {
    forward(SignalKind::user_defined2(), tx, Some("SIGUSR2: injected panic"), || Msg::FailpointPanic)
}

/// Turn each delivery of `kind` into a message (signals arriving meanwhile coalesce).
fn forward(
    kind: SignalKind,
    tx: &mpsc::Sender<Msg>,
    note: Option<&'static str>,
    make: fn() -> Msg,
) -> Result<(), Error> {
    let mut stream =
        signal(kind).map_err(|source| Error::Io { what: "cannot listen for signals", path: PathBuf::new(), source })?;
    let tx = tx.clone();
    tokio::spawn(async move {
        while stream.recv().await.is_some() {
            if let Some(note) = note {
                tracing::info!("{note}");
            }
            if tx.send(make()).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Send `make()` every `period` (first after `first`) until the actor is gone; a
/// tick that finds the queue full is skipped, not queued.
fn every(period: Duration, first: Duration, tx: &mpsc::Sender<Msg>, make: fn() -> Msg) {
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let _ = tx.try_send(make());
        }
    });
}

/// The daemon's memory cgroup's OOM-kill counter (workers run in that cgroup or
/// below it), said once in the log.
pub(super) fn oom_counter() -> Option<crate::crash::oom::OomCounter> {
    let counter = crate::crash::oom::OomCounter::of_self();
    match &counter {
        Some(c) => {
            tracing::info!(file = %c.file.display(), "OOM kills of workers are told apart by this cgroup counter")
        }
        None => tracing::info!("no memory cgroup counter is readable here: an OOM kill is reported as SIGKILL"),
    }
    counter
}

/// End processes that an earlier daemon of this home left running (it was SIGKILLed).
pub(super) async fn end_leftovers(home: &Path) {
    let home = home.display().to_string();
    let pids = procs::leftovers_of(&home);
    if pids.is_empty() {
        return;
    }
    tracing::warn!(?pids, "ending processes left by a previous daemon");
    procs::signal_all(None, &pids, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !procs::leftovers_of(&home).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    procs::signal_all(None, &procs::leftovers_of(&home), nix::sys::signal::Signal::SIGKILL);
}
