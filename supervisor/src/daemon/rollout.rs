//! A rolling reload: every instance of an app replaced, `parallel` at a time, each
//! step a new run beside the online one (see `replace.rs` for what the actor does).
//! The first wave with a failure stops the rollout; the failed instance keeps its
//! old run and later instances are left alone.
//!
//! Written once here: the API's reload route runs it and streams each step to
//! `l4ctl reload`, and its one-step route runs [`replace_one`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::handle::Handle;
use super::msg::{Error, Step, Want};
use crate::lifecycle::State;
use crate::wire::types::{ActionReport, AppDescription, ExitReport, InstanceStatus, Replaced};

/// Which instances of which app, how many at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub app: String,
    pub instances: Vec<u32>,
    pub parallel: u32,
    /// A reload by `watch` or `cron_restart` ([`Step::Renew`]), else `l4ctl reload`.
    #[serde(skip)]
    pub renew: bool,
}

impl Rollout {
    /// `parallel`, else the app's `reload_parallel`, else 1 (0 counts as 1).
    pub fn plan(d: &AppDescription, parallel: Option<u32>) -> Rollout {
        let configured = d.config["reload_parallel"].as_u64().map(|p| p as u32);
        Rollout {
            app: d.name.clone(),
            instances: d.instances.iter().map(|i| i.instance).collect(),
            parallel: parallel.or(configured).unwrap_or(1).max(1),
            renew: false,
        }
    }

    pub fn waves(&self) -> impl Iterator<Item = &[u32]> {
        self.instances.chunks(self.parallel as usize)
    }
}

/// The apps whose rolling reload is under way (one at a time per app: two would
/// replace each other's new runs).
#[derive(Debug, Clone, Default)]
pub struct UnderWay(Arc<Mutex<HashSet<String>>>);

/// A planned reload and its app's place in [`UnderWay`], given back on drop.
#[derive(Debug)]
pub struct Reload {
    pub plan: Rollout,
    under_way: UnderWay,
}

impl UnderWay {
    pub fn claim(&self, plan: Rollout) -> Result<Reload, Error> {
        let mut apps = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !apps.insert(plan.app.clone()) {
            return Err(Error::ReloadUnderWay(plan.app));
        }
        Ok(Reload { plan, under_way: self.clone() })
    }
}

impl Drop for Reload {
    fn drop(&mut self) {
        self.under_way.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.plan.app);
    }
}

/// Replace every instance wave by wave; `on_step` hears each finished step of a
/// wave (in instance order) once the whole wave has ended. The first problem of
/// the wave in instance order (a failed step, or an error) ends the rollout.
pub async fn run(h: &Handle, plan: &Rollout, mut on_step: impl FnMut(&Replaced)) -> Result<ActionReport, Error> {
    for wave in plan.waves() {
        let step = if plan.renew { Step::Renew } else { Step::Whole };
        let steps = wave.iter().map(|&index| replace_one(h, &plan.app, index, step));
        let mut first_problem = None;
        for step in futures_util::future::join_all(steps).await {
            let problem = match step {
                Ok(step) => {
                    on_step(&step);
                    (!step.ok).then(|| Error::ReloadFailed(Box::new(step)))
                }
                Err(e) => Some(e),
            };
            first_problem = first_problem.or(problem);
        }
        if let Some(e) = first_problem {
            return Err(e);
        }
    }
    super::settle::report(h, vec![plan.app.clone()], true).await
}

/// One step: start a new run beside the online one, wait until it is ready or has
/// failed, and say which run serves now.
pub async fn replace_one(h: &Handle, app: &str, index: u32, step: Step) -> Result<Replaced, Error> {
    let started = Instant::now();
    let (old_pid, restarted) = h.replace_instance(app, index, step).await?;
    h.wait(Want::InstanceSettled(app.to_owned(), index)).await;
    if old_pid.is_none() || restarted {
        // A plain start: the same confirmation as `start`.
        super::settle::confirm_started(h, &[app.to_owned()]).await?;
    }
    let status = h.status().await?;
    let row = status.instances.iter().find(|i| i.app == app && i.instance == index);
    Ok(judge(app, index, old_pid, row, started.elapsed().as_millis() as u64))
}

/// Whether the step replaced the run: the instance is online under a new pid. When
/// not, why: the reason its new run left, else how it ended, else its state.
pub fn judge(app: &str, index: u32, old_pid: Option<u32>, row: Option<&InstanceStatus>, ms: u64) -> Replaced {
    let (pid, state) = row.map_or((None, "deleted".to_owned()), |i| (i.pid, i.state.to_string()));
    let ok = row.is_some_and(|i| i.state == State::Online) && pid.is_some() && pid != old_pid;
    let error = (!ok).then(|| {
        let exit = row.and_then(|i| i.last_exit.as_ref());
        exit.and_then(|e| e.error.clone()).or_else(|| exit.map(how_it_ended)).unwrap_or_else(|| state.clone())
    });
    Replaced { app: app.to_owned(), instance: index, old_pid, pid, state, ms, ok, error }
}

fn how_it_ended(e: &ExitReport) -> String {
    match (&e.code, &e.signal) {
        (Some(c), _) => format!("{} with exit code {c}", e.reason),
        (None, Some(sig)) => format!("{} by {sig}", e.reason),
        _ => e.reason.clone(),
    }
}
