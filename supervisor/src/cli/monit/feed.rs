//! Where `l4ctl monit`'s figures come from: the same control API as every other
//! command, over the daemon's socket. The fetches run as tasks of their own and
//! send [`Update`]s; the screen never waits on the daemon. Per second, one request
//! at a time each: the status table, and the selected app's newest 30 lines per file
//! and newest crash report; once per app: its history, so the charts start with a
//! past; all along: the event stream. Actions run as tasks too, one per key.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, timeout};

use super::model::{Action, Update};
use super::now;
use crate::client::{Client, ClientError};
use crate::wire::types::{ActionReport, AppHistory, StatusReport};

/// Log lines asked for per file each second.
const LOG_LINES: usize = 30;
/// How long one request may take before it is given up (the next one follows).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The table every `every`, and the selected app's newest lines and crash report (as
/// `selected` says): one task each, a fetch then a wait, so a slow daemon never gets a
/// pile of requests from one screen, and each request gives up after [`TIMEOUT`].
pub fn poll(client: &Client, tx: &UnboundedSender<Update>, selected: watch::Receiver<Option<String>>, every: Duration) {
    let (c, t) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !t.is_closed() {
            tick.tick().await;
            let r = match timeout(TIMEOUT, c.get::<StatusReport>("/api/v1/status")).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("the daemon did not answer within {} s", TIMEOUT.as_secs())),
            };
            let _ = t.send(Update::Status(r, now()));
        }
    });
    let (c, t, mut selected) = (client.clone(), tx.clone(), selected);
    tokio::spawn(async move {
        while !t.is_closed() {
            let app = selected.borrow_and_update().clone();
            if let Some(app) = app {
                let _ = timeout(TIMEOUT, app_detail(&c, &t, &app)).await;
            }
            // The next fetch a second on, or at once for a newly selected app.
            let _ = timeout(every, selected.changed()).await;
        }
    });
}

pub fn history(client: &Client, tx: &UnboundedSender<Update>, app: &str) {
    let (client, tx, path) = (client.clone(), tx.clone(), format!("/api/v1/apps/{app}/history"));
    tokio::spawn(async move {
        if let Ok(Ok(h)) = timeout(TIMEOUT, client.get::<AppHistory>(&path)).await {
            let _ = tx.send(Update::History(h));
        }
    });
}

/// The selected app's newest lines and its newest crash report (`limit=1`).
async fn app_detail(client: &Client, tx: &UnboundedSender<Update>, app: &str) {
    let path = format!("/api/v1/apps/{app}/logs?lines={LOG_LINES}");
    if let Ok(v) = client.get::<serde_json::Value>(&path).await {
        let lines = v["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| (l["instance"].as_u64().map(|i| i as u32), l["line"].as_str().unwrap_or("").to_owned()))
            .collect();
        let _ = tx.send(Update::Logs(app.to_owned(), lines));
    }
    if let Ok(v) = client.get::<serde_json::Value>(&format!("/api/v1/crashes?app={app}&limit=1")).await {
        let _ = tx.send(Update::Crash(app.to_owned(), v["crashes"].get(0).map(crash_lines)));
    }
}

/// The event stream, started again a second after it ends (a daemon restarted).
pub fn events(client: &Client, tx: &UnboundedSender<Update>) {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        loop {
            let _ = client.events(|e| drop(tx.send(Update::Event(e)))).await;
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}

/// Carry out what a key asked; the outcome comes back as [`Update::Done`].
pub fn act(client: &Client, tx: &UnboundedSender<Update>, action: Action) {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let said = match &action {
            Action::Control { target, op } => {
                let r =
                    client.post::<ActionReport>(&format!("/api/v1/apps/{target}/{op}"), serde_json::json!({})).await;
                outcome(r.map(|a| failed(&a)), &format!("{op} {target}"))
            }
            Action::Reload(app) => {
                let path = format!("/api/v1/apps/{app}/reload");
                let r = client.post::<ActionReport>(&path, serde_json::json!({})).await;
                outcome(r.map(|a| failed(&a)), &format!("reload {app}"))
            }
            Action::Scale(app, n) => {
                let path = format!("/api/v1/apps/{app}/scale");
                let r = client.post::<ActionReport>(&path, serde_json::json!({ "instances": n })).await;
                outcome(r.map(|a| failed(&a)), &format!("scale {app} to {n}"))
            }
        };
        let _ = tx.send(Update::Done(said.0, said.1));
    });
}

fn failed(a: &ActionReport) -> Vec<String> {
    a.failed.clone()
}

fn outcome(r: Result<Vec<String>, ClientError>, what: &str) -> (String, bool) {
    match r {
        Ok(f) if f.is_empty() => (format!("{what}: done"), false),
        Ok(f) => (format!("{what}: {} did not come up", f.join(", ")), true),
        Err(e) => (format!("{what}: {e}"), true),
    }
}

/// A crash report in a few lines: when, how, the panic, the end of stderr.
fn crash_lines(c: &serde_json::Value) -> Vec<String> {
    let mut lines = vec![format!(
        "{} {}:{} {}{}{}",
        c["at"].as_str().unwrap_or(""),
        c["app"].as_str().unwrap_or(""),
        c["instance"],
        c["reason"].as_str().unwrap_or(""),
        c["signal"].as_str().map(|s| format!(" {s}")).unwrap_or_default(),
        c["exit_code"].as_i64().map(|s| format!(" exit {s}")).unwrap_or_default(),
    )];
    if let Some(p) = c["panic"].as_object() {
        let msg = p.get("message").and_then(|m| m.as_str()).unwrap_or("");
        let at = p.get("location").and_then(|m| m.as_str()).unwrap_or("");
        lines.push(format!("panic: {msg} {at}"));
    }
    let tail = c["stderr_tail"].as_str().unwrap_or("");
    lines.extend(tail.lines().rev().take(4).collect::<Vec<_>>().into_iter().rev().map(str::to_owned));
    lines
}
