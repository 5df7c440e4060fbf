//! `l4ctl start SCRIPT [--name N] [-i N|max] [--port P] [--env-var K=V]...
//! [--max-memory-restart 1G] [--interpreter I] [--watch] [--cron-restart CRON]
//! [-- ARGS...]`: an app without a config file, as `pm2 start app.js` does.
//!
//! The command writes the app as a small config file of its own,
//! `<home>/apps/<name>.toml` (mode 0600, in the daemon's home, which only its
//! user can write), and starts that file like any other: the daemon keeps it in
//! its saved state, restores it after a crash or `kill`, and `reload-config`
//! reads it again (edit it to change the app). The script runs from the current
//! folder with the interpreter PM2 would pick (`l4ctl import`'s rule); with
//! `--port`, the app binds PORT itself (`socket = "app"`), as under PM2.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::import::emit::{Section, render};

/// What `start` was given besides the script.
#[derive(Debug, Clone, Default)]
pub struct AdHoc {
    pub script: String,
    pub name: Option<String>,
    pub instances: Option<String>,
    pub port: Option<u16>,
    pub env: Vec<String>,
    pub max_memory_restart: Option<String>,
    pub interpreter: Option<String>,
    pub watch: bool,
    pub cron_restart: Option<String>,
    pub args: Vec<String>,
}

impl AdHoc {
    /// Whether anything marks this `start` as a script rather than an app name.
    pub fn has_options(&self) -> bool {
        self.name.is_some()
            || self.instances.is_some()
            || self.port.is_some()
            || !self.env.is_empty()
            || self.max_memory_restart.is_some()
            || self.interpreter.is_some()
            || self.watch
            || self.cron_restart.is_some()
            || !self.args.is_empty()
    }
}

/// The app's name and its config text, checked with the config parser; run from `cwd`.
pub fn config(adhoc: &AdHoc, cwd: &Path) -> Result<(String, String), String> {
    let name = match &adhoc.name {
        Some(n) => n.clone(),
        None => Path::new(&adhoc.script)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| format!("cannot name an app after {:?}: pass --name", adhoc.script))?,
    };
    let interpreter = adhoc.interpreter.clone().map(serde_json::Value::String);
    let program = crate::import::resolve_program(&adhoc.script, interpreter.as_ref(), adhoc.args.clone(), cwd)?;
    let mut s = Section::new("[[apps]]");
    s.key("name", name.as_str());
    s.key("cwd", cwd.display().to_string());
    s.key("script", program.script.as_str());
    if program.needs_interpreter_none() {
        s.key("interpreter", "none");
    }
    if !program.args.is_empty() {
        s.key("args", program.args);
    }
    if let Some(i) = &adhoc.instances {
        match i.parse::<i64>() {
            Ok(n) => s.key("instances", n),
            Err(_) => s.key("instances", i.as_str()),
        }
    }
    if let Some(port) = adhoc.port {
        s.key("port", i64::from(port));
        s.key_note("socket", "app", "the app binds PORT itself, as under PM2");
    }
    if let Some(m) = &adhoc.max_memory_restart {
        s.key("max_memory_restart", m.as_str());
    }
    if adhoc.watch {
        s.key("watch", true);
    }
    if let Some(c) = &adhoc.cron_restart {
        s.key("cron_restart", c.as_str());
    }
    let mut sections = vec![s];
    if !adhoc.env.is_empty() {
        let mut env = Section::new("[apps.env]");
        for pair in &adhoc.env {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("--env-var {pair:?}: expected KEY=VALUE"))?;
            env.key(k, v);
        }
        sections.push(env);
    }
    let header = [format!(
        "Written by `l4ctl start {}` (an app without a config file). The daemon keeps it in its saved state; edit this file and run `l4ctl reload-config` to change the app.",
        adhoc.script
    )];
    let text = render(&header, &sections);
    // The options are checked as the config file will be; the messages name the
    // option's key (`port`, `instances`), not a place in a file the user never wrote.
    match crate::config::parse(&PathBuf::from(format!("/{name}.toml")), &text, None) {
        Ok(_) => {}
        Err(crate::config::ConfigError::Invalid(d)) => {
            return Err(d.0.into_iter().map(|d| d.message).collect::<Vec<_>>().join("; "));
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok((name, text))
}

/// `<home>/apps/<name>.toml`: where the app of `l4ctl start SCRIPT --name NAME` lives.
pub fn path(home: &Path, name: &str) -> PathBuf {
    home.join("apps").join(format!("{name}.toml"))
}

/// Write [`path`] (0600) through a rename; the path written.
pub fn write(home: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = path(home, name);
    let dir = home.join("apps");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if !std::fs::symlink_metadata(&dir)?.is_dir() {
        return Err(std::io::Error::other(format!("{} is not a folder", dir.display())));
    }
    let mut tmp = tempfile::Builder::new().prefix(".app.").tempfile_in(&dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}
