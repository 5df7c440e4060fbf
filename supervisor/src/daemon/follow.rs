//! Nginx follows the app, whoever changed it: with `[nginx] auto_reload` for the
//! app in its config file, the daemon runs `l4ctl --config FILE nginx reload
//! --json` once a scale's new instances are up (and reports what it did), and
//! `... --if-changed` once the app's ready instances have changed and then been
//! quiet for [`SETTLE`] (a crash, a stop, a rolling reload: nginx is reloaded
//! only if the render differs from what it last loaded, so a restart within the
//! window costs nothing), and every `[nginx] interval` when `[nginx] hosts` lists
//! other hosts (when: `follow_schedule.rs`).
//!
//! A helper process, not code in the daemon: the renderer (MiniJinja) stays out of
//! the resident binary, and `nginx -t` and the reload command are the helper's own
//! children, reaped by it (the daemon reaps every child of its own with
//! `waitpid(-1)`, so it could not wait for them). The helper's answer comes on its
//! stdout; the daemon's reaper collects the helper itself.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

pub use super::follow_schedule::{MAX_WAIT, RECHECK, SETTLE, Schedule};
use super::handle::Handle;
use super::msg::Event;
use crate::config::NginxSpec;
use crate::wire::types::NginxOutcome;

/// How long the render, `nginx -t` and the reload command may take together.
const LIMIT: Duration = Duration::from_secs(60);

/// Follow every app's changes for as long as the daemon runs.
pub fn spawn(h: Handle) {
    tokio::spawn(async move {
        let mut events = match h.subscribe().await {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(cause = %e, "nginx cannot follow the apps: no event stream");
                return;
            }
        };
        let mut s = Schedule::default();
        // The apps that came up before this task subscribed are looked at too.
        look_at_apps(&h, &mut s, true).await;
        let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = s.next();
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::State { app, from, to, .. }) if from == "online" || to == "online" => {
                        s.changed(&app, Instant::now());
                    }
                    Ok(_) => {}
                    // Some changes were missed: every app is looked at again.
                    Err(RecvError::Lagged(_)) => look_at_apps(&h, &mut s, false).await,
                    Err(RecvError::Closed) => return,
                },
                _ = recheck.tick() => {
                    // Apps not looked at yet, and those whose config file changed since.
                    look_at_apps(&h, &mut s, true).await;
                    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                    for app in s.stale(mtime) {
                        s.look(&app, Instant::now());
                    }
                }
                () = wake => {
                    for app in s.take_due(Instant::now()) {
                        follow(&h, &mut s, &app).await;
                    }
                }
            }
        }
    });
}

/// Put every app (only those not looked at yet, with `unknown_only`) on the schedule.
async fn look_at_apps(h: &Handle, s: &mut Schedule, unknown_only: bool) {
    let Ok(status) = h.status().await else { return };
    let now = Instant::now();
    for i in status.instances {
        if !(unknown_only && s.known(&i.app)) {
            s.look(&i.app, now);
        }
    }
    if !unknown_only {
        for app in s.polled() {
            s.look(&app, now);
        }
    }
}

/// Run the helper for `app` when its config asks for it, and schedule what follows.
async fn follow(h: &Handle, s: &mut Schedule, app: &str) {
    match auto_reload_of(h, app).await {
        Followed::Yes { file, spec, mtime } => {
            let outcome = reload(&file, true).await;
            let hosts = (!spec.hosts.is_empty()).then_some(spec.interval);
            s.ran(app, hosts, (file, mtime), Instant::now());
            if !outcome.ok {
                tracing::error!(app, cause = %outcome.message, "nginx does not follow the app's changes");
            } else if !outcome.message.lines().last().is_some_and(|l| l.contains("is unchanged")) {
                tracing::info!(app, message = %outcome.message, "nginx follows the app");
            } else {
                tracing::debug!(app, message = %outcome.message, "nginx follows the app");
            }
        }
        Followed::No { file, mtime } => s.ran(app, None, (file, mtime), Instant::now()),
        Followed::Gone => s.forget(app),
        // Being edited, say: the other hosts are asked again later.
        Followed::Unreadable => s.unreadable(app, Instant::now()),
    }
}

/// Whether nginx follows an app, as its config file says now.
enum Followed {
    /// Its config file (modified at `mtime`), whose `[nginx]` has `auto_reload` for it.
    Yes { file: PathBuf, spec: Box<NginxSpec>, mtime: Option<SystemTime> },
    /// Its file has no `[nginx] auto_reload` for it.
    No { file: PathBuf, mtime: Option<SystemTime> },
    /// The app is gone.
    Gone,
    /// The file cannot be read or is invalid now (logged).
    Unreadable,
}

async fn auto_reload_of(h: &Handle, app: &str) -> Followed {
    let Ok(described) = h.describe(app).await else { return Followed::Gone };
    let file = described.config_file;
    let mtime = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    let path = file.clone();
    match tokio::task::spawn_blocking(move || crate::config::load(&path, None)).await {
        Ok(Ok(config)) => match config.nginx {
            Some(spec) if spec.auto_reload && spec.app == app => Followed::Yes { file, spec: Box::new(spec), mtime },
            _ => Followed::No { file, mtime },
        },
        Ok(Err(e)) => {
            tracing::warn!(file = %file.display(), cause = %e, "cannot read [nginx]; nginx not updated");
            Followed::Unreadable
        }
        Err(_) => Followed::Unreadable,
    }
}

/// `None` when the app's config file has no `[nginx]` for it with `auto_reload`.
pub(super) async fn nginx_after_scale(h: &Handle, app: &str) -> Option<NginxOutcome> {
    let Followed::Yes { file, .. } = auto_reload_of(h, app).await else { return None };
    let outcome = reload(&file, false).await;
    if outcome.ok {
        tracing::info!(app, message = %outcome.message, "nginx follows the scale");
    } else {
        tracing::error!(app, cause = %outcome.message, "nginx was not updated after a scale");
    }
    Some(outcome)
}

async fn reload(file: &Path, if_changed: bool) -> NginxOutcome {
    let failed = |message: String| NginxOutcome { ok: false, message };
    let exe = match crate::fsutil::sibling_exe("l4ctl") {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot find l4ctl: {e}")),
    };
    let child = Command::new(&exe)
        .arg("--config")
        .arg(file)
        .args(["nginx", "reload", "--json"])
        .args(if_changed.then_some("--if-changed"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {}: {e}", exe.display())),
    };
    // It runs the user's reload command: what starts meanwhile may be its, not an app's.
    crate::os::helpers::spawned(child.id(), true);
    let Some(stdout) = child.stdout.take().map(OwnedFd::from) else { return failed("no stdout".into()) };
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(stdout) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    let mut answer = String::new();
    match tokio::time::timeout(LIMIT, pipe.read_to_string(&mut answer)).await {
        Ok(Ok(_)) => serde_json::from_str(answer.trim())
            .unwrap_or_else(|_| failed(format!("l4ctl nginx reload said {:?}", answer.trim()))),
        Ok(Err(e)) => failed(format!("reading l4ctl nginx reload: {e}")),
        Err(_) => {
            let _ = child.kill(); // still running, so the pid is still its own
            failed(format!("l4ctl nginx reload did not finish within {}s", LIMIT.as_secs()))
        }
    }
}
