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
    Ok(ActionReport { schema: SCHEMA, apps: vec![app.to_owned()], failed, status, nginx: None })
}

/// The status after an action, with every instance of `apps` that did not come up
/// (when `started` is set) or did not settle in time.
pub async fn report(h: &Handle, apps: Vec<String>, started: bool) -> Result<ActionReport, Error> {
    let status = h.status().await?;
    let failed = failures(&status, &apps, started);
    Ok(ActionReport { schema: SCHEMA, apps, failed, status, nginx: None })
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
