//! `l4ctl nginx render [--stdout] | check | reload`: the CLI reads `[nginx]` from
//! the config file, the live worker table from the daemon and from every host of
//! `[nginx] hosts` (`nginx/hosts.rs`), and runs `nginx` itself. With `[nginx]
//! auto_reload`, the daemon runs `l4ctl nginx reload --json --if-changed` as a
//! helper (daemon/follow.rs).

use std::process::ExitCode;

use super::{Cli, Resolved, resolve};
use crate::client::Client;
use crate::config::{self, NginxSpec};
use crate::nginx;
use crate::wire::types::{NginxOutcome, StatusReport};

/// What `l4ctl nginx` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum NginxCommand {
    /// Render the config from the live worker table and install it at `[nginx] output`.
    Render {
        /// Print it instead of installing it.
        #[arg(long)]
        stdout: bool,
    },
    /// Render it and run `nginx -t` on it under a temporary prefix (nothing is installed).
    Check,
    /// Render, check, install (atomically) and run `[nginx] reload_command`.
    Reload {
        /// Print the outcome as `{"ok":..,"message":..}` on stdout (for the daemon).
        #[arg(long, hide = true)]
        json: bool,
        /// Leave nginx alone when the render is what is installed (for the daemon).
        #[arg(long, hide = true)]
        if_changed: bool,
    },
}

pub(super) async fn run(cli: &Cli, what: NginxCommand) -> ExitCode {
    let resolved = resolve(cli, None);
    let result = async { apply(&resolved, spec_of(&resolved)?, what).await }.await;
    if let NginxCommand::Reload { json: true, .. } = what {
        let outcome = match result {
            Ok(message) => NginxOutcome { ok: true, message },
            Err(message) => NginxOutcome { ok: false, message },
        };
        println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
        return if outcome.ok { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    match result {
        Ok(message) => {
            if !message.is_empty() {
                eprintln!("l4ctl: {message}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("l4ctl: {message}");
            ExitCode::from(1)
        }
    }
}

/// Carry out `what` with `[nginx]` and the workers' address from [`spec_of`].
async fn apply(resolved: &Resolved, (spec, host): (NginxSpec, String), what: NginxCommand) -> Result<String, String> {
    let client = Client::new(&resolved.home);
    // A dry run (`--stdout`, `check`) leaves the hosts' last known servers as they were.
    let persist = matches!(what, NginxCommand::Render { stdout: false } | NginxCommand::Reload { .. });
    // One render at a time writes (the daemon's helpers and a user's command).
    let home = resolved.home.clone();
    let app = spec.app.clone();
    let _lock = if persist {
        let locked = tokio::task::spawn_blocking(move || nginx::state::lock(&home, &app)).await;
        Some(locked.map_err(|e| e.to_string())?.map_err(|e| format!("cannot lock nginx/{}.lock: {e}", spec.app))?)
    } else {
        None
    };
    let status = client.get::<StatusReport>("/api/v1/status").await.map_err(|e| e.to_string())?;
    let local = nginx::ready_servers(&spec, &status.instances, &host, "");
    let gathered = nginx::hosts::gather(&spec, &resolved.home, local, persist).await;
    let servers = gathered.servers;
    let rendered = nginx::render(&spec, &servers).map_err(|e| e.to_string())?;
    let ready = servers.iter().filter(|s| !s.backup).count();
    let hosts = if spec.hosts.is_empty() { String::new() } else { format!(" on {} host(s)", spec.hosts.len() + 1) };
    let said = |message: String| {
        let mut lines = gathered.notes.clone();
        lines.push(message);
        lines.join("\n")
    };
    match what {
        NginxCommand::Render { stdout: true } => {
            for note in &gathered.notes {
                eprintln!("l4ctl: {note}");
            }
            print!("{rendered}");
            Ok(String::new())
        }
        NginxCommand::Render { stdout: false } => {
            nginx::install(&spec, &rendered).map_err(|e| said(e.to_string()))?;
            Ok(said(format!("{} written ({ready} ready instance(s) of {}{hosts})", spec.output.display(), spec.app)))
        }
        NginxCommand::Check => {
            nginx::check(&spec, &servers).map_err(|e| said(e.to_string()))?;
            Ok(said(format!("nginx -t accepts the config for {} ({ready} ready instance(s){hosts})", spec.app)))
        }
        NginxCommand::Reload { if_changed, .. } => {
            let runs = |text: Option<String>| text.is_some_and(|t| t == rendered);
            if if_changed && runs(nginx::installed(&spec)) && runs(nginx::state::loaded(&resolved.home, &spec.app)) {
                return Ok(said(format!("{} is unchanged ({ready} ready instance(s){hosts})", spec.output.display())));
            }
            nginx::check(&spec, &servers)
                .map_err(|e| said(format!("{e}\nthe installed config {} is unchanged", spec.output.display())))?;
            nginx::install(&spec, &rendered).map_err(|e| said(e.to_string()))?;
            nginx::reload(&spec).map_err(|e| said(e.to_string()))?;
            if let Err(e) = nginx::state::mark_loaded(&resolved.home, &spec.app, &rendered) {
                return Err(said(format!("nginx reloaded, but the render it runs cannot be kept: {e}")));
            }
            Ok(said(format!(
                "{} installed ({ready} ready instance(s){hosts}) and nginx reloaded",
                spec.output.display()
            )))
        }
    }
}

/// `[nginx]` of the config file, and the address nginx reaches the workers on.
pub(super) fn spec_of(resolved: &Resolved) -> Result<(NginxSpec, String), String> {
    let path = resolved.config.clone().ok_or("no config file: pass --config FILE (it holds the [nginx] section)")?;
    let loaded = config::load(&path, None).map_err(|e| e.to_string())?;
    let spec = loaded.nginx.ok_or_else(|| format!("{} has no [nginx] section", path.display()))?;
    let host = loaded
        .apps
        .iter()
        .find(|a| a.name == spec.app)
        .and_then(|a| a.listen)
        .filter(|ip| !ip.is_unspecified())
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() });
    Ok((spec, host))
}
