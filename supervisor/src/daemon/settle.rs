//! When an action is over, and what it left failed: the start confirmation every
//! starting workflow waits for, and the action report built from the status table.
//!
//! A started instance counts as up once it has been online for [`START_CONFIRM`],
//! so a worker that dies at once is reported as failed, not as online.

use std::time::{Duration, Instant};

use super::handle::Handle;
use super::msg::{Error, Want};
use crate::lifecycle::State;
use crate::wire::types::{ActionReport, InstanceStatus, SCHEMA, StatusReport};

/// How long a started instance must have been online to count as started.
pub const START_CONFIRM: Duration = Duration::from_millis(250);

/// Wait until no instance of `apps` is starting or stopping and every online one has
/// been up [`START_CONFIRM`] (at most four times that past the first settle).
pub async fn confirm_started(h: &Handle, apps: &[String]) -> Result<(), Error> {
    h.wait(Want::Settled(apps.to_vec())).await;
    let deadline = Instant::now() + START_CONFIRM * 4;
    loop {
        let status = h.status().await?;
        match youngest_online_ms(&status, apps) {
            Some(ms) if ms < CONFIRM_MS && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(CONFIRM_MS - ms)).await;
            }
            _ => break,
        }
    }
    h.wait(Want::Settled(apps.to_vec())).await;
    Ok(())
}

const CONFIRM_MS: u64 = START_CONFIRM.as_millis() as u64;

/// The uptime of the most recently started online instance of `apps`.
fn youngest_online_ms(status: &StatusReport, apps: &[String]) -> Option<u64> {
    let online = status.instances.iter().filter(|i| apps.contains(&i.app) && i.state == State::Online);
    online.filter_map(|i| i.uptime_ms).min()
}

/// After an action on one instance (`app:N`): wait for that instance alone (a
/// start, until it has been online [`START_CONFIRM`]) and report only its failure.
pub async fn one_instance(h: &Handle, app: &str, index: u32, started: bool) -> Result<ActionReport, Error> {
    let want = || Want::InstanceSettled(app.to_owned(), index);
    h.wait(want()).await;
    if started {
        let deadline = Instant::now() + START_CONFIRM * 4;
        loop {
            let status = h.status().await?;
            let this = status.instances.iter().find(|i| i.app == app && i.instance == index);
            match this.filter(|i| i.state == State::Online).and_then(|i| i.uptime_ms) {
                Some(ms) if ms < CONFIRM_MS && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(CONFIRM_MS - ms)).await;
                }
                _ => break,
            }
        }
        h.wait(want()).await;
    }
    let status = h.status().await?;
    let failed = failures(&status, &[app.to_owned()], started)
        .into_iter()
        .filter(|f| f.starts_with(&format!("{app}:{index} ")))
        .collect();
    let failed = explain(h, &status, failed).await;
    Ok(ActionReport { schema: SCHEMA, apps: vec![app.to_owned()], failed, status, nginx: None })
}

/// The status after an action, with every instance of `apps` that did not come up
/// (when `started` is set) or did not settle in time.
pub async fn report(h: &Handle, apps: Vec<String>, started: bool) -> Result<ActionReport, Error> {
    let status = h.status().await?;
    let failed = explain(h, &status, failures(&status, &apps, started)).await;
    Ok(ActionReport { schema: SCHEMA, apps, failed, status, nginx: None })
}

/// Lines of a run's stderr a failure sentence carries.
pub const STDERR_LINES: usize = 5;

/// Each failure with why, from the worker's own words: the last [`STDERR_LINES`]
/// lines of stderr of its latest crash, and when it could not bind its port while
/// l4ctl holds it (`socket = "supervisor"`), the key that fixes that.
async fn explain(h: &Handle, status: &StatusReport, failed: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(failed.len());
    for sentence in failed {
        let Some((app, index)) = sentence.split_once(' ').and_then(|(who, _)| who.split_once(':')) else {
            out.push(sentence);
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            out.push(sentence);
            continue;
        };
        // Only a run that ended by itself left stderr worth showing (a spawn failure's
        // reason is in the sentence already, and its app's last crash is an older run's).
        let row = status.instances.iter().find(|i| i.app == app && i.instance == index);
        let ended_itself = row.and_then(|i| i.last_exit.as_ref()).is_some_and(|e| e.reason == "crashed");
        if !ended_itself {
            out.push(sentence);
            continue;
        }
        let crashes = h.crashes(Some(app.to_owned()), usize::MAX).await.map(|(c, _)| c).unwrap_or_default();
        let Some(tail) = crashes.iter().find(|c| c.instance == index).map(|c| c.stderr_tail.clone()) else {
            out.push(sentence);
            continue;
        };
        let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = &lines[lines.len().saturating_sub(STDERR_LINES)..];
        let mut text = sentence.clone();
        if !last.is_empty() {
            text.push_str("; its stderr ended with:");
            for l in last {
                text.push_str("\n    ");
                text.push_str(l);
            }
        }
        let in_use = tail.contains("EADDRINUSE") || tail.to_ascii_lowercase().contains("address already in use");
        let held =
            h.describe(app).await.ok().is_some_and(|d| !d.config["listen"].is_null() && !d.config["port"].is_null());
        if in_use && held {
            text.push_str(&format!(
                "\n  `{app}` binds PORT itself while l4ctl holds that port for it (socket = \"supervisor\"): set socket = \"app\" in its config, or take the socket l4ctl passes (LISTEN_FDS, fd 3)"
            ));
        }
        out.push(text);
    }
    out
}

/// One sentence per instance of `apps` still starting or stopping, or, when the
/// action started them, retrying, in a crash loop or errored; with the reason its
/// last run left (a taken port, a missing program) when it has settled.
pub fn failures(status: &StatusReport, apps: &[String], started: bool) -> Vec<String> {
    let failed = |i: &&InstanceStatus| match i.state {
        State::Starting | State::Stopping => true,
        State::WaitingRestart | State::CrashLoop | State::Errored => started,
        State::Stopped | State::Online => false,
    };
    let sentence = |i: &InstanceStatus| match i.last_exit.as_ref().and_then(|e| e.error.as_deref()) {
        Some(why) if i.state.is_settled() => format!("{}:{} is {}: {why}", i.app, i.instance, i.state),
        _ => format!("{}:{} is {}", i.app, i.instance, i.state),
    };
    status.instances.iter().filter(|i| apps.contains(&i.app)).filter(failed).map(sentence).collect()
}
