//! The daemon as a systemd `Type=notify` service (`l4ctl startup` writes such a
//! unit): `READY=1` once the saved apps are back and settled, `STATUS=` with the
//! apps and online instances (kept current every [`STATUS_EVERY`]), `WATCHDOG=1`
//! while the daemon's actor answers a status request within half the watchdog
//! period (`WatchdogSec=`), and `STOPPING=1` when shutdown begins.
//!
//! The watchdog ping is the actor's answer, not a timer's: an actor stuck in a
//! loop stops the pings, and systemd restarts the daemon (its apps come back from
//! the saved state). Without `NOTIFY_SOCKET` every call does nothing; the
//! variables are never passed on to apps (`os::spawn` removes them).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::daemon::{Handle, Want};
use crate::lifecycle::State;
use crate::wire::types::StatusReport;

/// How often `STATUS=` is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How long `READY=1` may wait for the restored apps to settle.
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// `3 apps, 5 of 6 instances online`.
pub fn status_line(status: &StatusReport) -> String {
    let mut apps: Vec<&str> = status.instances.iter().map(|i| i.app.as_str()).collect();
    apps.dedup();
    let online = status.instances.iter().filter(|i| i.state == State::Online).count();
    format!(
        "{} app{}, {online} of {} instance{} online",
        apps.len(),
        if apps.len() == 1 { "" } else { "s" },
        status.instances.len(),
        if status.instances.len() == 1 { "" } else { "s" }
    )
}

/// Wait for the restored apps to settle, say `READY=1`, then keep `STATUS=` and
/// the watchdog going until `stopping` turns true.
pub fn spawn(handle: Handle, mut stopping: watch::Receiver<bool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    tokio::spawn(async move {
        if let Ok(status) = handle.status().await {
            let mut apps: Vec<String> = status.instances.iter().map(|i| i.app.clone()).collect();
            apps.dedup();
            let _ = tokio::time::timeout(READY_WAIT, handle.wait(Want::Settled(apps))).await;
        }
        let line = match handle.status().await {
            Ok(s) => status_line(&s),
            Err(_) => String::new(),
        };
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&line)]);
        tracing::info!(status = %line, watchdog = ?watchdog, "told systemd READY=1");
        let ping_every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY));
        let mut last = line;
        let mut since_status = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => break,
                () = tokio::time::sleep(ping_every) => {}
            }
            since_status += ping_every;
            // The actor must answer within the ping period, or no ping is sent.
            let answer = tokio::time::timeout(ping_every, handle.status()).await;
            let Ok(Ok(status)) = answer else {
                tracing::warn!("the daemon did not answer in time: no watchdog ping");
                continue;
            };
            let mut states = Vec::new();
            if watchdog.is_some() {
                states.push(NotifyState::Watchdog);
            }
            let line = status_line(&status);
            let refresh = line != last && since_status >= STATUS_EVERY;
            if refresh {
                since_status = Duration::ZERO;
                last = line.clone();
                states.push(NotifyState::Status(&line));
            }
            if !states.is_empty() {
                let _ = sd_notify::notify(&states);
            }
        }
    });
}

/// `STOPPING=1`: shutdown has begun (every app is being stopped).
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping every app")]);
}
