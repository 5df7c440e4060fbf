//! Nginx follows the app, whoever changed it: with `[nginx] auto_reload` for the
//! app in its config file, the daemon runs `l4ctl --config FILE nginx reload
//! --json` once a scale's new instances are up (and reports what it did), and
//! `... --if-changed` once the app's ready instances have changed and then been
//! quiet for [`SETTLE`] (a crash, a stop, a rolling reload: nginx is reloaded
//! only if the render differs, so a restart within the window costs nothing),
//! and every `[nginx] interval` when `[nginx] hosts` lists other hosts.
//!
//! A helper process, not code in the daemon: the renderer (MiniJinja) stays out of
//! the resident binary, and `nginx -t` and the reload command are the helper's own
//! children, reaped by it (the daemon reaps every child of its own with
//! `waitpid(-1)`, so it could not wait for them). The helper's answer comes on its
//! stdout; the daemon's reaper collects the helper itself.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::handle::Handle;
use super::msg::Event;
use crate::config::NginxSpec;
use crate::wire::types::NginxOutcome;

/// How long the render, `nginx -t` and the reload command may take together.
const LIMIT: Duration = Duration::from_secs(60);

/// How long an app's ready instances must stay as they are before nginx follows.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Follow every app's changes for as long as the daemon runs.
pub fn spawn(h: Handle) {
    tokio::spawn(async move {
        let Ok(mut events) = h.subscribe().await else { return };
        // app -> when to render (SETTLE after its last change, or its next `interval`).
        let mut due: HashMap<String, Instant> = HashMap::new();
        // app -> `interval`, for the apps whose `[nginx]` lists other hosts.
        let mut polled: HashMap<String, Duration> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::State { app, from, to, .. }) if from == "online" || to == "online" => {
                        due.insert(app, Instant::now() + SETTLE);
                    }
                    Ok(_) => {}
                    // Some changes were missed: every app is looked at again.
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(status) = h.status().await {
                            for i in status.instances {
                                due.insert(i.app, Instant::now() + SETTLE);
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                () = wake => {
                    let now = Instant::now();
                    let ready: Vec<String> = due.iter().filter(|(_, at)| **at <= now).map(|(a, _)| a.clone()).collect();
                    for app in ready {
                        due.remove(&app);
                        let (file, spec) = match auto_reload_of(&h, &app).await {
                            Followed::Yes(file, spec) => (file, spec),
                            Followed::No => {
                                polled.remove(&app);
                                continue;
                            }
                            // Being edited, say: the other hosts are asked again later.
                            Followed::Unreadable => {
                                if let Some(every) = polled.get(&app) {
                                    due.insert(app, Instant::now() + *every);
                                }
                                continue;
                            }
                        };
                        if spec.hosts.is_empty() {
                            polled.remove(&app);
                        } else {
                            polled.insert(app.clone(), spec.interval);
                            due.insert(app.clone(), Instant::now() + spec.interval);
                        }
                        let outcome = reload(&file, true).await;
                        if !outcome.ok {
                            tracing::error!(app, cause = %outcome.message, "nginx does not follow the app's changes");
                        } else if !outcome.message.lines().last().is_some_and(|l| l.contains("is unchanged")) {
                            tracing::info!(app, message = %outcome.message, "nginx follows the app");
                        } else {
                            tracing::debug!(app, message = %outcome.message, "nginx follows the app");
                        }
                    }
                }
            }
        }
    });
}

/// Whether nginx follows an app, as its config file says now.
enum Followed {
    /// Its config file, whose `[nginx]` has `auto_reload` for the app.
    Yes(PathBuf, Box<NginxSpec>),
    /// The app is gone, or its file has no `[nginx] auto_reload` for it.
    No,
    /// The file cannot be read or is invalid now (logged).
    Unreadable,
}

async fn auto_reload_of(h: &Handle, app: &str) -> Followed {
    let Ok(described) = h.describe(app).await else { return Followed::No };
    let file = described.config_file;
    let path = file.clone();
    match tokio::task::spawn_blocking(move || crate::config::load(&path, None)).await {
        Ok(Ok(config)) => match config.nginx {
            Some(spec) if spec.auto_reload && spec.app == app => Followed::Yes(file, Box::new(spec)),
            _ => Followed::No,
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
    let Followed::Yes(file, _) = auto_reload_of(h, app).await else { return None };
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
