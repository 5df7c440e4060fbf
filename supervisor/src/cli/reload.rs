//! `l4ctl reload APP [--parallel N] [--hosts all]`: a rolling reload, one streamed
//! API call per app (the daemon runs the waves, see `daemon/rollout.rs`), each
//! step printed as its wave ends. The first wave with a failure stops the
//! rollout: the failed instance keeps its old run, the command says which
//! instance failed and why, exit 1. With `--hosts all`, the same on this host and
//! then on each host of `[nginx] hosts` in turn, through its TCP API and token;
//! the first host with a failure stops it, and the hosts after it are untouched.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use super::{Cli, app_names, fail, render, resolve};
use crate::client::{Client, ClientError};
use crate::wire::types::{ActionReport, ReloadProgress, Replaced, StatusReport};

pub(super) async fn reload(cli: &Cli, app: &str, parallel: Option<u32>) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let app = match super::address::target(&client, app).await {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if let Some((name, index)) = super::address::instance_of(&app) {
        return reload_one(&client, name, index).await;
    }
    let apps = match app_names(&client, &app).await {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let started = Instant::now();
    for name in &apps {
        if let Err(code) = rollout(&client, name, parallel).await {
            return code;
        }
    }
    eprintln!("l4ctl: reloaded {} in {:.2} s", apps.join(", "), started.elapsed().as_secs_f64());
    match client.get::<StatusReport>("/api/v1/status").await {
        Ok(status) => {
            println!("{}", render::table(&status, super::shell::colour()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The rolling reload of app `name` through `client`, each step printed as its wave
/// ends; `Err` with the exit code once a step failed (the failure was printed).
async fn rollout(client: &Client, name: &str, parallel: Option<u32>) -> Result<(), ExitCode> {
    let mut end = None;
    let body = json!({ "parallel": parallel, "progress": true });
    let streamed = client
        .post_lines(&format!("/api/v1/apps/{name}/reload"), body, |line: ReloadProgress| match line {
            ReloadProgress::Plan { app, instances, parallel } => {
                eprintln!("l4ctl: reloading {app}: {} instance(s), {parallel} at a time", instances.len())
            }
            ReloadProgress::Replaced(r) if r.ok => eprintln!("l4ctl:   {}", progress(&r)),
            ReloadProgress::Replaced(r) => eprintln!("l4ctl:   {}", r.failure()),
            ReloadProgress::Done(_) => end = Some(Ok(())),
            ReloadProgress::Error(detail) => end = Some(Err(detail)),
        })
        .await;
    match (streamed, end) {
        (Err(ClientError::Api { detail, .. }), _) if detail.message.contains("unknown field `progress`") => {
            // A daemon started by an older l4ctl: the same reload, without progress lines.
            eprintln!("l4ctl: the running daemon predates this l4ctl: reloading {name} without progress lines");
            let path = format!("/api/v1/apps/{name}/reload");
            match client.post::<ActionReport>(&path, json!({ "parallel": parallel })).await {
                Ok(_) => {}
                Err(ClientError::Api { detail, .. }) if detail.code == "reload_failed" => {
                    eprintln!("l4ctl:   {}", detail.message);
                    return Err(ExitCode::from(1));
                }
                Err(e) => return Err(fail(&e)),
            }
        }
        (Err(e), _) => return Err(fail(&e)),
        (Ok(()), Some(Ok(()))) => {}
        // Each failed step was printed as it ended.
        (Ok(()), Some(Err(detail))) if detail.code == "reload_failed" => return Err(ExitCode::from(1)),
        // Any other error ends the stream (the answer itself was 200: the rollout had begun).
        (Ok(()), Some(Err(detail))) => {
            eprintln!("l4ctl: the reload of {name} stopped: {} ({})", detail.message, detail.code);
            return Err(ExitCode::from(1));
        }
        (Ok(()), None) => {
            return Err(fail(&client.protocol(format!("the daemon stopped answering during the reload of {name}"))));
        }
    }
    Ok(())
}

/// `l4ctl reload APP --hosts all`: every host is asked for the app first (nothing is
/// replaced unless all answer and have it), then one host at a time.
pub(super) async fn across_hosts(cli: &Cli, app: &str, parallel: Option<u32>, hosts: &str) -> ExitCode {
    let refuse = |message: String| {
        eprintln!("l4ctl: {message}");
        ExitCode::from(2)
    };
    if hosts != "all" {
        return refuse(format!("--hosts takes `all` (every host of the config's [nginx] hosts), not {hosts:?}"));
    }
    if super::address::instance_of(app).is_some() || app.bytes().all(|b| b.is_ascii_digit()) {
        return refuse(
            "--hosts reloads an app (or `all`) on every host: name the app, not one instance or an id".into(),
        );
    }
    let resolved = resolve(cli, None);
    let spec = match super::nginx::spec_of(&resolved) {
        Ok((spec, _)) if spec.hosts.is_empty() => {
            return refuse("[nginx] hosts lists no other host: `l4ctl reload APP` reloads this one".into());
        }
        Ok((spec, _)) => spec,
        Err(e) => return refuse(e),
    };
    let mut targets = vec![Client::new(&resolved.home)];
    for host in &spec.hosts {
        let Some(var) = &host.token_env else {
            return refuse(format!(
                "{} has no token_env: a reload changes its instances and needs its token",
                host.api
            ));
        };
        let Some(token) = std::env::var(var).ok().filter(|t| !t.is_empty()) else {
            return refuse(format!("{var} (the token_env of {}) is not set", host.api));
        };
        match crate::nginx::hosts::client(&resolved.home, host, Some(token), spec.host_timeout) {
            Ok(client) => targets.push(client),
            Err(e) => return refuse(e),
        }
    }
    let mut plans = Vec::new();
    for client in &targets {
        match tokio::time::timeout(spec.host_timeout, preflight(client, app)).await {
            Ok(Ok(names)) => plans.push(names),
            Ok(Err(e)) => return refuse(format!("{e}; nothing was reloaded")),
            Err(_) => {
                let ms = spec.host_timeout.as_millis();
                return refuse(format!("{} did not answer within {ms} ms; nothing was reloaded", client.at()));
            }
        }
    }
    let started = Instant::now();
    let total = targets.len();
    for (n, (client, names)) in targets.iter().zip(&plans).enumerate() {
        let label = if client.remote.is_some() { client.at() } else { "this host".into() };
        eprintln!("l4ctl: host {}/{total}: {label}", n + 1);
        let began = Instant::now();
        for name in names {
            if let Err(code) = rollout(client, name, parallel).await {
                if n + 1 < total {
                    eprintln!("l4ctl: stopped at {label}: the {} host(s) after it were not reloaded", total - n - 1);
                }
                return code;
            }
        }
        eprintln!("l4ctl: host {}/{total}: {label} reloaded in {:.2} s", n + 1, began.elapsed().as_secs_f64());
    }
    eprintln!("l4ctl: reloaded {app} on {total} hosts in {:.2} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

/// Before anything is replaced: the host answers, takes its token (a read that needs
/// it), and runs the app; the apps to reload there.
async fn preflight(client: &Client, app: &str) -> Result<Vec<String>, String> {
    let at = client.at();
    let status = client.get::<StatusReport>("/api/v1/status").await.map_err(|e| format!("{at}: {e}"))?;
    if client.remote.is_some() {
        let checked = client.get::<serde_json::Value>("/api/v1/crashes?limit=1").await;
        checked.map_err(|e| format!("{at} refuses its token: {e}"))?;
    }
    let mut names: Vec<String> = Vec::new();
    for i in &status.instances {
        if (app == "all" || i.app == app) && !names.contains(&i.app) {
            names.push(i.app.clone());
        }
    }
    if names.is_empty() {
        return Err(format!("{at} runs no app {app}"));
    }
    Ok(names)
}

/// `l4ctl reload app:N`: one step of a rolling reload, for that instance only.
async fn reload_one(client: &Client, app: &str, index: u32) -> ExitCode {
    match client.post::<Replaced>(&format!("/api/v1/apps/{app}/instances/{index}/replace"), json!({})).await {
        Ok(r) if r.ok => {
            eprintln!("l4ctl:   {}", progress(&r));
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("l4ctl:   {}", r.failure());
            ExitCode::from(1)
        }
        Err(ClientError::Api { detail, .. }) if detail.code == "reload_failed" => {
            eprintln!("l4ctl:   {}", detail.message);
            ExitCode::from(1)
        }
        Err(e) => fail(&e),
    }
}

/// `web:1 pid 41 -> 57, ready after 212 ms`.
fn progress(r: &Replaced) -> String {
    let pid = |p: Option<u32>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
    match r.old_pid {
        Some(old) => format!("{}:{} pid {old} -> {}, ready after {} ms", r.app, r.instance, pid(r.pid), r.ms),
        None => format!("{}:{} was not online; started as pid {} in {} ms", r.app, r.instance, pid(r.pid), r.ms),
    }
}
