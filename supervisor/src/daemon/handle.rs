//! The typed way into the actor: every request the daemon answers, and the workflows
//! built from several of them (start then confirm, stop then settle, scale then Nginx,
//! a rolling reload), each written once.
//!
//! The control API and the composition root hold a [`Handle`]; nothing else fills
//! the actor's channel. A workflow waits for the actor's answers, never for a state
//! name: what counts as started and as failed is decided in [`super::settle`], the
//! reload waves in [`super::rollout`]. Every wait is bounded ([`SETTLE_LIMIT`]).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::handover::Frozen;
use super::msg::{Error, Event, Msg, Op, Target, Want, run_log_commands};
use super::rollout::{Reload, Rollout, UnderWay};
use super::settle;
use crate::crash::CrashReport;
use crate::wire::metrics::MetricsSnapshot;
use crate::wire::types::{ActionReport, AppDescription, Replaced, StatusReport, TriggerState};

/// Longest a workflow waits for its instances to settle before answering anyway
/// (longer than the largest `kill_timeout` the config accepts).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(3700);

/// What `start` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Load this config file (absolute) with an `--env` profile, all its apps or one.
    File { path: PathBuf, env: Option<String>, only: Option<String> },
    /// One app already loaded.
    App(String),
    /// The saved apps, or every loaded one.
    Restore,
}

/// What `watch` and `cron_restart` are doing, by app: written by the triggers task,
/// read by `describe`; shared by every clone of the [`Handle`].
#[derive(Debug, Clone, Default)]
pub struct TriggerNotes(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, TriggerState>>>);

impl TriggerNotes {
    pub fn get(&self, app: &str) -> Option<TriggerState> {
        self.0.lock().ok()?.get(app).cloned()
    }

    /// Change the note of `app` (made when missing).
    pub fn update(&self, app: &str, change: impl FnOnce(&mut TriggerState)) {
        if let Ok(mut notes) = self.0.lock() {
            change(notes.entry(app.to_owned()).or_default());
        }
    }

    /// Keep only the notes of these apps.
    pub fn retain(&self, apps: &std::collections::BTreeSet<&str>) {
        if let Ok(mut notes) = self.0.lock() {
            notes.retain(|app, _| apps.contains(app.as_str()));
        }
    }
}

/// A clonable, typed sender to the actor.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Msg>,
    /// Where relative log paths of a config loaded by `start` go.
    log_dir: PathBuf,
    /// Rolling reloads under way, shared by every clone.
    reloads: UnderWay,
    /// What `watch` and `cron_restart` are doing, by app (written by the triggers task).
    pub(super) triggers: TriggerNotes,
}

impl Handle {
    pub fn new(tx: mpsc::Sender<Msg>, log_dir: PathBuf) -> Handle {
        Handle { tx, log_dir, reloads: UnderWay::default(), triggers: Default::default() }
    }

    /// Send a message built around a reply channel and wait for the answer.
    async fn ask<T>(&self, build: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(build(reply)).await.map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    pub async fn status(&self) -> Result<StatusReport, Error> {
        self.ask(|reply| Msg::Status { reply }).await
    }

    pub async fn describe(&self, app: &str) -> Result<AppDescription, Error> {
        let mut d = self.ask(|reply| Msg::Describe { app: app.to_owned(), reply }).await??;
        d.triggers = self.triggers.get(app);
        Ok(d)
    }

    /// An app's last hour: the actor hands over a copy of each ring, and the answer
    /// (up to 720 buckets an instance) is built here, off the actor's thread.
    pub async fn history(&self, app: &str) -> Result<crate::wire::types::AppHistory, Error> {
        let rings = self.ask(|reply| Msg::History { app: app.to_owned(), reply }).await??;
        let now = crate::crash::now_ms() / 1000;
        let mut instances: Vec<_> = rings.iter().map(|(index, id, h)| h.snapshot(app, *index, *id, now)).collect();
        instances.sort_by_key(|i| i.instance);
        Ok(crate::wire::types::AppHistory {
            schema: crate::wire::types::SCHEMA,
            app: app.to_owned(),
            step_secs: crate::monitor::history::STEP_SECS,
            instances,
        })
    }

    pub async fn metrics(&self) -> Result<MetricsSnapshot, Error> {
        self.ask(|reply| Msg::Metrics { reply }).await
    }

    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Event>, Error> {
        self.ask(|reply| Msg::Subscribe { reply }).await
    }

    /// Recent crash reports (the newest `limit`), newest first, and how their delivery went.
    pub async fn crashes(
        &self,
        app: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrashReport>, super::DeliveryStats), Error> {
        self.ask(|reply| Msg::Crashes { app, limit, reply }).await
    }

    /// Reopen (or, with `truncate`, empty) the log files of one app or all; the
    /// number of writers that did.
    pub async fn log_files(&self, app: Option<String>, truncate: bool) -> Result<usize, Error> {
        let commands = self.ask(|reply| Msg::LogCommand { app, truncate, reply }).await??;
        Ok(run_log_commands(commands).await)
    }

    /// Stop every app; answers once they are stopped.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(|reply| Msg::Shutdown { reply }).await
    }

    /// Stop the actor for a handover to the next program: its image (instants relative
    /// to `reference`) and the log hub, or why not now ([`Error::Busy`]).
    /// `force`: whatever is under way (the handover after a panic).
    pub async fn freeze(&self, reference: std::time::Instant, force: bool) -> Result<Frozen, Error> {
        self.ask(|reply| Msg::Freeze { reference, force, reply }).await?
    }

    /// Wait until `want` holds, at most [`SETTLE_LIMIT`].
    pub async fn wait(&self, want: Want) {
        let _ = tokio::time::timeout(SETTLE_LIMIT, self.ask(|reply| Msg::Wait { want, reply })).await;
    }

    /// Start what `what` names; answers once every started instance is confirmed
    /// up or has failed.
    pub async fn start(&self, what: Start) -> Result<ActionReport, Error> {
        let apps = match what {
            Start::File { path, env, only } => {
                if !path.is_absolute() {
                    return Err(Error::Invalid("config path must be absolute".into()));
                }
                let (profile, log_dir) = (env.clone(), self.log_dir.clone());
                let config =
                    tokio::task::spawn_blocking(move || crate::config::load_under(&path, profile.as_deref(), &log_dir))
                        .await
                        .map_err(|e| Error::Invalid(e.to_string()))?
                        .map_err(Error::Config)?;
                self.ask(|reply| Msg::Apply { config: Box::new(config), env, only, reply }).await??
            }
            Start::App(app) => {
                self.ask(|reply| Msg::Control { target: Target::App(app), op: Op::Start, reply }).await??
            }
            Start::Restore => self.ask(|reply| Msg::Restore { reply }).await??,
        };
        settle::confirm_started(self, &apps).await?;
        settle::report(self, apps, true).await
    }

    /// Start, stop, restart or delete; answers once the instances settled.
    pub async fn control(&self, target: Target, op: Op) -> Result<ActionReport, Error> {
        let starts = matches!(op, Op::Start | Op::Restart | Op::Renew);
        if let Target::Instance(app, index) = &target {
            let (app, index) = (app.clone(), *index);
            self.ask(|reply| Msg::Control { target, op, reply }).await??;
            return settle::one_instance(self, &app, index, starts).await;
        }
        let apps = self.ask(|reply| Msg::Control { target, op, reply }).await??;
        match op {
            _ if starts => settle::confirm_started(self, &apps).await?,
            Op::Delete => self.wait(Want::Gone(apps.clone())).await,
            _ => self.wait(Want::Settled(apps.clone())).await,
        }
        settle::report(self, apps, starts).await
    }

    /// Send `signal` to the main process of each running instance of `target`.
    pub async fn signal(
        &self,
        target: Target,
        signal: nix::sys::signal::Signal,
    ) -> Result<Vec<crate::wire::types::Signalled>, Error> {
        self.ask(|reply| Msg::Signal { target, signal, reply }).await?
    }

    /// Zero the restart counters of `target`; the status afterwards.
    pub async fn reset(&self, target: Target) -> Result<ActionReport, Error> {
        let apps = self.ask(|reply| Msg::Reset { target, reply }).await??;
        // Nothing was started or stopped: no instance's state is a failure of this.
        let status = self.status().await?;
        Ok(ActionReport { schema: crate::wire::types::SCHEMA, apps, failed: Vec::new(), status, nginx: None })
    }

    /// Set an app's number of instances; once the new ones are up, Nginx follows
    /// when the app's config asks for it ([`super::follow`]).
    pub async fn scale(&self, app: &str, instances: u32) -> Result<ActionReport, Error> {
        let apps = self.ask(|reply| Msg::Scale { app: app.to_owned(), instances, reply }).await??;
        settle::confirm_started(self, &apps).await?;
        let mut answer = settle::report(self, apps, true).await?;
        if answer.failed.is_empty() {
            answer.nginx = super::follow::nginx_after_scale(self, app).await;
        }
        Ok(answer)
    }

    /// Re-read every loaded config file (as SIGHUP).
    pub async fn reload_config(&self) -> Result<ActionReport, Error> {
        let apps = self.ask(|reply| Msg::Reload { reply: Some(reply) }).await??;
        self.wait(Want::Settled(apps.clone())).await;
        settle::report(self, apps, false).await
    }

    /// Ask for one instance to be replaced; the pid of the run being replaced
    /// (`None`: it was not online and is simply started).
    pub(super) async fn replace_instance(
        &self,
        app: &str,
        index: u32,
        step: super::Step,
    ) -> Result<(Option<u32>, bool), Error> {
        self.ask(|reply| Msg::ReplaceInstance { app: app.to_owned(), index, step, reply }).await?
    }

    /// One step of a rolling reload: a new run beside the online one; answers once it
    /// is ready or has failed (`ok: false`, the old run kept).
    pub async fn replace(&self, app: &str, index: u32) -> Result<Replaced, Error> {
        super::rollout::replace_one(self, app, index, super::Step::One).await
    }

    /// The waves of a rolling reload of `app`, `parallel` at a time (default the
    /// app's `reload_parallel`), holding the app's place until the [`Reload`] is
    /// dropped: a second reload of the app meanwhile is [`Error::ReloadUnderWay`].
    pub async fn plan_reload(&self, app: &str, parallel: Option<u32>) -> Result<Reload, Error> {
        self.reloads.claim(Rollout::plan(&self.describe(app).await?, parallel))
    }

    /// Carry out a rolling reload, telling `on_step` each step's outcome as its wave
    /// ends; stops after the first wave with a failure ([`Error::ReloadFailed`]).
    pub async fn reload(&self, reload: &Reload, on_step: impl FnMut(&Replaced)) -> Result<ActionReport, Error> {
        super::rollout::run(self, &reload.plan, on_step).await
    }
}
