//! `l4ctl`'s command line: argument parsing, finding the daemon's home, and one
//! small function per command. Every command but `daemon` is a client of the
//! control API; `start` starts the daemon in the background first when none runs.
//!
//! Exit codes: 0 success, 1 a failed action (or no daemon), 2 bad usage or config.

mod address;
mod adhoc;
mod args;
mod background;
mod logs;
mod monit;
mod nginx;
mod reload;
mod render;
mod shell;
mod startup;
mod terminal;
mod update;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use crate::client::{Client, ClientError};
use crate::config;
use crate::wire::types::{ActionReport, AppDescription, StatusReport};

pub use crate::wire::home::{DEFAULT_CONFIG, Resolved, resolve_paths};
pub use args::{Cli, Command};
pub use shell::pm2_verb;
pub use update::version;

/// Resolve home and config: `--home`, else the config's `[daemon] home`, else `~/.layer4`.
pub fn resolve(cli: &Cli, config_hint: Option<&Path>) -> Resolved {
    resolve_paths(config_hint.or(cli.config.as_deref()), cli.home.as_deref())
}

pub fn run(cli: Cli) -> ExitCode {
    shell::decide_colour(&cli);
    if let Command::Daemon { log_file, log_dir, env_name, no_apps, restore } = &cli.command {
        let args = crate::wire::daemon_args::DaemonArgs {
            config: cli.config.clone(),
            home: cli.home.clone(),
            log_file: *log_file,
            log_dir: log_dir.clone(),
            env_name: env_name.clone(),
            no_apps: *no_apps,
            restore: *restore,
            guard: false,
            handover: None,
        };
        return background::exec_daemon(&args);
    }
    match &cli.command {
        Command::Import { file, output, force, timeout } => return import(file, output.clone(), *force, *timeout),
        Command::Completions { shell } => return shell::completions(*shell),
        Command::Man => return shell::man(),
        Command::Startup { unit, print, no_enable } => {
            let args = startup::StartupArgs {
                user: unit.user.clone(),
                unit_dir: unit.unit_dir.clone(),
                print: *print,
                no_enable: *no_enable,
            };
            return startup::startup(&args);
        }
        Command::Unstartup { unit } => return startup::unstartup(unit.user.as_deref(), &unit.unit_dir),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("l4ctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Start {
            target,
            env_name,
            name,
            instances,
            port,
            env_var,
            max_memory_restart,
            interpreter,
            watch,
            cron_restart,
            args,
        } => {
            let adhoc = adhoc::AdHoc {
                script: target.clone().unwrap_or_default(),
                name: name.clone(),
                instances: instances.clone(),
                port: *port,
                env: env_var.clone(),
                max_memory_restart: max_memory_restart.clone(),
                interpreter: interpreter.clone(),
                watch: *watch,
                cron_restart: cron_restart.clone(),
                args: args.clone(),
            };
            start(&cli, target.as_deref(), env_name.clone(), adhoc).await
        }
        Command::Stop { app } => address::action(&cli, app, "stop").await,
        Command::Restart { app } => address::action(&cli, app, "restart").await,
        Command::Delete { app } => address::action(&cli, app, "delete").await,
        Command::Signal { signal, app } => address::signal(&cli, signal, app).await,
        Command::Reset { app } => address::reset(&cli, app).await,
        Command::Kill => kill(&cli).await,
        Command::Update => update::update(&cli).await,
        Command::Reload { app, parallel, hosts: None } => reload::reload(&cli, app, *parallel).await,
        Command::Reload { app, parallel, hosts: Some(hosts) } => {
            reload::across_hosts(&cli, app, *parallel, hosts).await
        }
        Command::Scale { app, instances } => {
            let client = Client::new(&resolve(&cli, None).home);
            let path = format!("/api/v1/apps/{app}/scale");
            let result = client.post::<ActionReport>(&path, json!({ "instances": instances })).await;
            // With `[nginx] auto_reload`, the daemon re-rendered nginx after the scale.
            let nginx = result.as_ref().ok().and_then(|r| r.nginx.clone());
            let code = finish(result);
            match nginx {
                Some(n) if n.ok => eprintln!("l4ctl: {}", n.message),
                Some(n) => {
                    eprintln!("l4ctl: scaled, but nginx was not updated: {}", n.message);
                    return ExitCode::from(1);
                }
                None => {}
            }
            code
        }
        Command::Nginx { what } => nginx::run(&cli, *what).await,
        Command::Crashes { app, json } => {
            let client = Client::new(&resolve(&cli, None).home);
            let path = match app {
                Some(a) => format!("/api/v1/crashes?app={a}"),
                None => "/api/v1/crashes".to_owned(),
            };
            show(client.get::<serde_json::Value>(&path).await, *json, render::crashes)
        }
        Command::Status { json } => status(&cli, *json).await,
        Command::Monit => monit::monit(Client::new(&resolve(&cli, None).home)).await,
        Command::Describe { app, json } => describe(&cli, app, *json).await,
        Command::Logs { app, lines, follow: _, nostream, timestamp, err, out, raw, json } => {
            let which = if *err {
                logs::Which::Err
            } else if *out {
                logs::Which::Out
            } else {
                logs::Which::Combined
            };
            let args = logs::LogsArgs {
                app: app.clone(),
                lines: *lines,
                follow: !*nostream,
                timestamp: *timestamp,
                instance: None,
                which,
                raw: *raw,
                json: *json,
            };
            logs::logs(&cli, args).await
        }
        Command::Flush { app } => logs::log_command(&cli, app.clone(), "/api/v1/logs/flush", "log files emptied").await,
        Command::ReloadLogs => logs::log_command(&cli, None, "/api/v1/logs/reopen", "log files reopened").await,
        Command::ReloadConfig => {
            let resolved = resolve(&cli, None);
            let client = Client::new(&resolved.home);
            let code = finish(client.post::<ActionReport>("/api/v1/reload-config", json!({})).await);
            api_listen_changed(&client, &resolved).await;
            code
        }
        Command::Save => save(&cli).await,
        Command::Resurrect => start(&cli, None, None, adhoc::AdHoc::default()).await,
        Command::Daemon { .. }
        | Command::Import { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Startup { .. }
        | Command::Unstartup { .. } => {
            unreachable!("handled in run")
        }
    }
}

/// Print an error the way every command does, and pick the exit code.
fn fail(err: &ClientError) -> ExitCode {
    match err {
        ClientError::Api { detail, .. } if !detail.diagnostics.is_empty() => {
            for d in &detail.diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "l4ctl: {} ({} problem{}); nothing was changed",
                detail.message,
                detail.diagnostics.len(),
                if detail.diagnostics.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(2)
        }
        ClientError::Api { detail, .. } if detail.code.starts_with("config") => {
            eprintln!("l4ctl: {}", detail.message);
            ExitCode::from(2)
        }
        other => {
            eprintln!("l4ctl: {other}");
            ExitCode::from(1)
        }
    }
}

fn finish(result: Result<ActionReport, ClientError>) -> ExitCode {
    match result {
        Ok(report) => {
            println!("{}", render::table(&report.status, shell::colour()));
            for f in &report.failed {
                eprintln!("l4ctl: {f}");
            }
            if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => fail(&e),
    }
}

/// `l4ctl import`: no daemon involved.
fn import(file: &Path, output: Option<PathBuf>, force: bool, timeout: std::time::Duration) -> ExitCode {
    use crate::import::{ImportArgs, ImportError};
    let args = ImportArgs { file: file.to_path_buf(), output, force, timeout };
    match crate::import::run(&args) {
        Ok(Some(path)) => {
            eprintln!("l4ctl: wrote {}; read it, then: l4ctl start {}", path.display(), path.display());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4ctl import: {e}");
            match e {
                ImportError::Io { .. }
                | ImportError::NoNode { .. }
                | ImportError::NodeFailed { .. }
                | ImportError::Invalid(_) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

/// Whether `path` is a file (at most 1 MiB) that parses as TOML with `[[apps]]` or `[daemon]`.
fn looks_like_config(path: &Path) -> bool {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_string(&mut text));
    read.is_ok() && text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("apps") || t.contains_key("daemon"))
}

/// PM2's own test for a config file name (`Common.isConfigFile`).
fn is_pm2_config(target: &str) -> bool {
    [".config.js", ".config.cjs", ".config.mjs", ".json", ".yml", ".yaml"].iter().any(|e| target.ends_with(e))
}

async fn start(cli: &Cli, target: Option<&str>, env: Option<String>, adhoc: adhoc::AdHoc) -> ExitCode {
    if let Some(t) = target.filter(|t| is_pm2_config(t)) {
        eprintln!(
            "l4ctl: {t} is a PM2 ecosystem file and layer4 reads TOML: `l4ctl import {t}` writes layer4.toml from it, then `l4ctl start layer4.toml`"
        );
        return ExitCode::from(2);
    }
    let one = |t: &str| address::instance_of(t).is_some() || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    if let Some(t) = target.filter(|t| one(t) && !Path::new(t).is_file() && !adhoc.has_options()) {
        return address::action(cli, t, "start").await;
    }
    // A config file: `*.toml`, or an existing file that reads as a layer4 config.
    let is_config = target.is_some_and(|t| t.ends_with(".toml") || looks_like_config(Path::new(t)));
    if let Some(t) = target.filter(|t| !is_config && (adhoc.has_options() || Path::new(t).is_file())) {
        return start_script(cli, t, env, &adhoc).await;
    }
    if target.is_none() && adhoc.has_options() {
        eprintln!(
            "l4ctl: --name, -i, --port, --env-var, --max-memory-restart, --interpreter, --watch, --cron-restart and `-- ARGS` go with a script: l4ctl start app.js --name web"
        );
        return ExitCode::from(2);
    }
    let as_file = target.filter(|_| is_config).map(PathBuf::from);
    let app = target.filter(|_| as_file.is_none()).map(str::to_owned);
    let resolved = resolve(cli, as_file.as_deref());
    let client = Client::new(&resolved.home);
    // A config file is needed unless we start a loaded app or restore the saved state.
    let restore = app.is_none() && as_file.is_none() && crate::wire::home::Paths::saved_state(&resolved.home).is_file();
    let config = if app.is_some() || restore {
        None
    } else {
        match &resolved.config {
            Some(p) if p.is_file() => Some(p.clone()),
            Some(p) => {
                eprintln!("l4ctl: config file {} not found", p.display());
                return ExitCode::from(2);
            }
            None => {
                eprintln!(
                    "l4ctl: no config file: pass one (l4ctl start path/to/layer4.toml) or create {DEFAULT_CONFIG}"
                );
                return ExitCode::from(2);
            }
        }
    };
    // Check the file before starting a daemon for it, so a bad config changes nothing.
    if let Some(path) = &config
        && let Err(e) = config::load_under(path, env.as_deref(), &resolved.log_dir)
    {
        match e {
            config::ConfigError::Invalid(d) => {
                eprintln!("{d}");
                eprintln!(
                    "l4ctl: invalid config ({} problem{}); nothing was started",
                    d.0.len(),
                    if d.0.len() == 1 { "" } else { "s" }
                );
            }
            other => eprintln!("l4ctl: {other}"),
        }
        return ExitCode::from(2);
    }
    match background::ensure_daemon(&client, &resolved).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("l4ctl: {e}");
            return ExitCode::from(e.exit_code());
        }
    }
    let code =
        finish(client.post::<ActionReport>("/api/v1/start", json!({ "config": config, "env": env, "app": app })).await);
    warn_api_off(&client).await;
    code
}

/// `api_listen` is read at daemon start: after `reload-config`, say so when the
/// config asks for another address than the one the daemon serves.
async fn api_listen_changed(client: &Client, resolved: &Resolved) {
    let Ok(health) = client.get::<crate::wire::types::Health>("/api/v1/health").await else { return };
    let running: Option<std::net::SocketAddr> = health.api_listen.as_deref().and_then(|a| a.parse().ok());
    let wanted = resolved.daemon.api_listen;
    let same = match (wanted, running) {
        (None, None) => true,
        // Port 0 asks for any free port: the address only.
        (Some(w), Some(r)) => w.ip() == r.ip() && (w.port() == 0 || w.port() == r.port()),
        (Some(_), None) => health.api_error.is_some(),
        (None, Some(_)) => false,
    };
    if !same {
        let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        eprintln!(
            "l4ctl: api_listen is {} in the config but the daemon serves {}: it is read at daemon start; `l4ctl kill` then `l4ctl start` applies it",
            show(wanted),
            show(running)
        );
    }
}

/// Say it when the daemon's TCP status API could not listen (its address taken).
async fn warn_api_off(client: &Client) {
    if let Ok(health) = client.get::<crate::wire::types::Health>("/api/v1/health").await
        && let Some(why) = health.api_error
    {
        eprintln!(
            "l4ctl: warning: {why}; the status API is off (l4ctl itself works): set `[daemon] api_listen` to a free address or \"off\", then `l4ctl kill` and `l4ctl start`"
        );
    }
}

/// `l4ctl start SCRIPT ...`: the app as a config file in the daemon's home, then started.
async fn start_script(cli: &Cli, script: &str, env: Option<String>, adhoc: &adhoc::AdHoc) -> ExitCode {
    let cwd = config::absolute(Path::new("."));
    let (name, text) = match adhoc::config(adhoc, &cwd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("l4ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let resolved = resolve(cli, None);
    let client = Client::new(&resolved.home);
    if let Err(e) = background::ensure_daemon(&client, &resolved).await {
        eprintln!("l4ctl: {e}");
        return ExitCode::from(e.exit_code());
    }
    // A name an app of another config file has is not taken over.
    let own = adhoc::path(&resolved.home, &name);
    if let Ok(d) = client.get::<AppDescription>(&format!("/api/v1/apps/{name}")).await
        && d.config_file != own
    {
        eprintln!(
            "l4ctl: an app named {name} is already loaded from {}: give this one another --name",
            d.config_file.display()
        );
        return ExitCode::from(2);
    }
    let path = match adhoc::write(&resolved.home, &name, &text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("l4ctl: cannot write the app file for {script} in {}: {e}", resolved.home.display());
            return ExitCode::from(1);
        }
    };
    let code = finish(client.post::<ActionReport>("/api/v1/start", json!({ "config": path, "env": env })).await);
    warn_api_off(&client).await;
    code
}

/// `l4ctl save`: nothing to do but say so, and what a restore would bring back.
async fn save(cli: &Cli) -> ExitCode {
    let resolved = resolve(cli, None);
    let client = Client::new(&resolved.home);
    match client.get::<StatusReport>("/api/v1/status").await {
        Ok(status) => {
            let mut apps: Vec<&str> = status.instances.iter().map(|i| i.app.as_str()).collect();
            apps.dedup();
            println!(
                "l4ctl: the daemon saves its apps on every change, in {}; `l4ctl resurrect` (or `l4ctl start`) brings back: {}",
                crate::wire::home::Paths::saved_state(&resolved.home).display(),
                if apps.is_empty() { "nothing".to_owned() } else { apps.join(", ") }
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

async fn kill(cli: &Cli) -> ExitCode {
    let resolved = resolve(cli, None);
    let client = Client::new(&resolved.home);
    match client.post::<serde_json::Value>("/api/v1/kill", json!({})).await {
        Ok(_) => {
            // The daemon answers once every app is stopped, then exits; its pid-file
            // lock is released when the process is gone.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !background::daemon_exited(&resolved.home) && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            println!("l4ctl: every app stopped and the daemon exited");
            ExitCode::SUCCESS
        }
        Err(ClientError::NotRunning { home }) => {
            println!("l4ctl: no daemon is running in {}", home.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

async fn status(cli: &Cli, json: bool) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    show(client.get::<StatusReport>("/api/v1/status").await, json, |r| {
        format!("{}\n", render::table(r, shell::colour()))
    })
}

async fn describe(cli: &Cli, app: &str, json: bool) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let name = match address::target(&client, app).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    let app = address::instance_of(&name).map_or(name.as_str(), |(a, _)| a);
    show(client.get::<AppDescription>(&format!("/api/v1/apps/{app}")).await, json, render::description)
}

/// Print an answer as pretty JSON (`--json`) or as text.
fn show<T: serde::Serialize>(answer: Result<T, ClientError>, json: bool, text: impl Fn(&T) -> String) -> ExitCode {
    match answer {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", text(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `[app]`, or every loaded app (each once, in status order) for `all`.
pub(super) async fn app_names(client: &Client, app: &str) -> Result<Vec<String>, ClientError> {
    if app != "all" {
        return Ok(vec![app.to_owned()]);
    }
    let status = client.get::<StatusReport>("/api/v1/status").await?;
    // Ids of different apps interleave after a scale: dedup with a set, not by neighbours.
    let mut seen = std::collections::HashSet::new();
    Ok(status.instances.into_iter().map(|i| i.app).filter(|a| seen.insert(a.clone())).collect())
}
