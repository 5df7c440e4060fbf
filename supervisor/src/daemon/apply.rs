//! Loading config files into the running set: `l4ctl start FILE`, the restore of
//! saved apps (`l4ctl start` with no argument, `l4ctl daemon --config`) and
//! SIGHUP reloads. An app whose resolved config is unchanged is never touched.

use super::Error;
use super::supervisor::{App, Supervisor};
use crate::config::Config;
use crate::lifecycle::{Fact, State};

/// Who asked for a config to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `l4ctl start FILE`: a user asked; previously stopped or deleted apps come back.
    Start,
    /// Restore and reload: what the user stopped or deleted stays so.
    Reload,
}

impl Supervisor {
    /// Load `config` (only app `only`, when given) into the running set.
    pub(super) fn apply(
        &mut self,
        config: Config,
        env: Option<String>,
        only: Option<&str>,
        mode: Mode,
    ) -> Result<Vec<String>, Error> {
        if let Some(o) = only
            && !config.apps.iter().any(|a| a.name == o)
        {
            return Err(Error::UnknownApp(o.to_owned()));
        }
        if let Some(tracking) = &config.error_tracking
            && self.crashes.configure(tracking)
        {
            tracing::info!(file = %config.file.display(), sentry = tracking.sentry_dsn.is_some(), webhook = tracking.webhook_url.is_some(), "error tracking set from this file's [error_tracking]");
            self.arm_episode_timer();
        }
        let mut touched = Vec::new();
        for spec in config.apps.iter().filter(|a| only.is_none_or(|o| a.name == o)) {
            let name = spec.name.clone();
            if mode == Mode::Start {
                self.saved.deleted.remove(&name);
                self.saved.stopped.remove(&name);
            } else if self.saved.deleted.contains(&name) {
                continue;
            }
            touched.push(name.clone());
            // `autostart = false` loads an app stopped unless it was named explicitly.
            let wanted = only.is_some() || (spec.autostart && !self.saved.stopped.contains(&name));
            self.logs.ensure(&name, &spec.logs);
            let Some(app) = self.apps.get_mut(&name) else {
                let instances = (0..spec.instances).map(|i| self.new_inst(i)).collect();
                let app = App {
                    spec: spec.clone(),
                    source: config.file.clone(),
                    env: env.clone(),
                    instances,
                    deleting: false,
                };
                self.apps.insert(name.clone(), app);
                if wanted {
                    self.feed_app(&name, &Fact::Start);
                }
                continue;
            };
            app.source = config.file.clone();
            app.env = env.clone();
            if app.spec == *spec && !app.deleting {
                if mode == Mode::Start && wanted {
                    self.feed_app(&name, &Fact::Start);
                }
                continue;
            }
            tracing::info!(app = %name, "config changed; restarting its instances");
            let running = app.instances.iter().any(|i| !matches!(i.lc.state, State::Stopped | State::Errored));
            app.spec = spec.clone();
            app.deleting = false;
            let indexes: Vec<u32> = app.instances.iter().map(|i| i.index).collect();
            for &index in &indexes {
                if index >= spec.instances {
                    self.feed(&name, index, Fact::Delete);
                    continue;
                }
                let inst_running =
                    self.inst(&name, index).is_some_and(|i| !matches!(i.lc.state, State::Stopped | State::Errored));
                if inst_running {
                    self.feed(&name, index, Fact::Restart);
                } else if mode == Mode::Start && wanted {
                    self.feed(&name, index, Fact::Start);
                }
            }
            // Exactly the missing indexes, wherever the gaps are.
            for index in (0..spec.instances).filter(|i| !indexes.contains(i)) {
                let inst = self.new_inst(index);
                if let Some(app) = self.apps.get_mut(&name) {
                    app.instances.push(inst);
                    app.instances.sort_by_key(|i| i.index);
                }
                if running || (mode == Mode::Start && wanted) {
                    self.feed(&name, index, Fact::Start);
                }
            }
        }
        if only.is_none() {
            let gone: Vec<String> = self
                .apps
                .iter()
                .filter(|(n, a)| a.source == config.file && !config.apps.iter().any(|s| &s.name == *n))
                .map(|(n, _)| n.clone())
                .collect();
            for name in gone {
                tracing::info!(app = %name, "removed from its config file; deleting");
                self.delete(&name);
            }
        }
        self.saved.add_source(&config.file, env);
        self.persist();
        Ok(touched)
    }

    /// `l4ctl start` with no argument: read every saved config file again and start
    /// every app the user did not stop (crashed-and-given-up ones included).
    pub(super) fn restore(&mut self) -> Result<Vec<String>, Error> {
        if self.saved.sources.is_empty() && self.apps.is_empty() {
            return Err(Error::NothingToStart);
        }
        let mut touched = self.reload()?;
        let revive: Vec<String> = self
            .apps
            .iter()
            .filter(|(n, a)| a.spec.autostart && !a.deleting && !self.saved.stopped.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in revive {
            self.feed_app(&name, &Fact::Start);
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        Ok(touched)
    }

    /// SIGHUP: read every loaded config file again. Every file must be valid
    /// before any is applied, so a bad edit changes nothing.
    pub(super) fn reload(&mut self) -> Result<Vec<String>, Error> {
        let mut configs = Vec::new();
        for source in &self.saved.sources {
            let config = crate::config::load_under(&source.config, source.env.as_deref(), &self.log_dir)
                .map_err(Error::Config)?;
            configs.push((config, source.env.clone()));
        }
        let mut touched = Vec::new();
        for (config, env) in configs {
            touched.extend(self.apply(config, env, None, Mode::Reload)?);
        }
        tracing::info!(apps = ?touched, "config files applied");
        Ok(touched)
    }

    /// `l4ctl daemon --config FILE` at boot: that file plus every other saved one,
    /// keeping what the user stopped or deleted. A file that no longer loads is logged.
    pub(super) fn boot(&mut self, config: Config, env: Option<String>) {
        self.saved.add_source(&config.file, env.clone());
        for source in self.saved.sources.clone() {
            let loaded = if source.config == config.file {
                Ok(config.clone())
            } else {
                crate::config::load_under(&source.config, source.env.as_deref(), &self.log_dir)
            };
            match loaded {
                Ok(c) => {
                    if let Err(e) = self.apply(c, source.env.clone(), None, Mode::Reload) {
                        tracing::error!(config = %source.config.display(), cause = %e, "cannot apply saved config");
                    }
                }
                Err(e) => tracing::error!(config = %source.config.display(), cause = %e, "cannot load saved config"),
            }
        }
    }

    /// `scale APP N`: add or remove instances without touching the others. The
    /// config file's `instances` comes back on the next reload.
    pub(super) fn scale(&mut self, name: &str, n: u32) -> Result<Vec<String>, Error> {
        let Some(app) = self.apps.get(name).filter(|a| !a.deleting) else {
            return Err(Error::UnknownApp(name.to_owned()));
        };
        let others = self.apps.values().map(|a| &a.spec);
        crate::config::scale::check_scale(&app.spec, n, others).map_err(Error::Invalid)?;
        let running = app.instances.iter().any(|i| !matches!(i.lc.state, State::Stopped | State::Errored));
        let indexes: Vec<u32> = app.instances.iter().map(|i| i.index).collect();
        if let Some(app) = self.apps.get_mut(name) {
            app.spec.instances = n;
        }
        for &index in indexes.iter().filter(|i| **i >= n) {
            self.feed(name, index, Fact::Delete);
        }
        for index in (0..n).filter(|i| !indexes.contains(i)) {
            let inst = self.new_inst(index);
            if let Some(app) = self.apps.get_mut(name) {
                app.instances.push(inst);
                app.instances.sort_by_key(|i| i.index);
            }
            if running {
                self.feed(name, index, Fact::Start);
            }
        }
        tracing::info!(app = name, instances = n, "scaled");
        Ok(vec![name.to_owned()])
    }

    /// Forget config files none of whose apps remain.
    pub(super) fn prune_sources(&mut self) {
        let apps = &self.apps;
        self.saved.sources.retain(|s| apps.values().any(|a| a.source == s.config && !a.deleting));
    }
}
