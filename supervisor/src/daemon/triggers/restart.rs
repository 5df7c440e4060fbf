//! What a trigger does to its app: the same workflow as `l4ctl reload` when the app
//! has readiness (a rolling reload), else as `l4ctl restart`, leaving alone what
//! `l4ctl stop` stopped (the actor checks it again at each step: [`Error::Stopped`]).

use super::super::{Error, Handle, Op, Target};
use crate::lifecycle::State;

/// What became of one restart.
pub(super) enum Outcome {
    Done,
    /// Not carried out, on purpose (the sentence says why).
    Skipped(String),
    /// A rolling reload of the app is under way: again once it is over.
    Busy,
    Failed(String),
}

/// Restart `app` as `l4ctl reload` (when `rolling`) or `l4ctl restart` would.
pub(super) async fn restart(handle: &Handle, app: &str, rolling: bool) -> Outcome {
    let d = match handle.describe(app).await {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if d.instances.iter().all(|i| i.state == State::Stopped) {
        return Outcome::Skipped(Error::Stopped(app.to_owned()).to_string());
    }
    let report = if rolling {
        match handle.plan_reload(app, None).await {
            Ok(mut plan) => {
                // What `l4ctl stop` stopped stays stopped; the actor checks again at each step.
                let stopped: Vec<u32> = d
                    .instances
                    .iter()
                    .filter(|i| matches!(i.state, State::Stopped | State::Stopping))
                    .map(|i| i.instance)
                    .collect();
                plan.plan.instances.retain(|i| !stopped.contains(i));
                plan.plan.renew = true;
                handle.reload(&plan, |_| {}).await
            }
            Err(Error::ReloadUnderWay(_)) => return Outcome::Busy,
            Err(e) => Err(e),
        }
    } else {
        handle.control(Target::App(app.to_owned()), Op::Renew).await
    };
    match report {
        // Stopped meanwhile: `Renew` restarted nothing.
        Ok(r) if r.apps.is_empty() => Outcome::Skipped(Error::Stopped(app.to_owned()).to_string()),
        Ok(r) if r.failed.is_empty() => Outcome::Done,
        Ok(r) => Outcome::Failed(format!("{} did not come up", r.failed.join(", "))),
        Err(e @ Error::Stopped(_)) => Outcome::Skipped(e.to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
