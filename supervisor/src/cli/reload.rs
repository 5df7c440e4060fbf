//! `l4ctl reload APP [--parallel N]`: a rolling reload, one streamed API call per
//! app (the daemon runs the waves, see `daemon/rollout.rs`), each step printed as
//! its wave ends. The first wave with a failure stops the rollout: the failed
//! instance keeps its old run, the command says which instance failed and why, exit 1.

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
                        return ExitCode::from(1);
                    }
                    Err(e) => return fail(&e),
                }
            }
            (Err(e), _) => return fail(&e),
            (Ok(()), Some(Ok(()))) => {}
            // Each failed step was printed as it ended.
            (Ok(()), Some(Err(detail))) if detail.code == "reload_failed" => return ExitCode::from(1),
            // Any other error ends the stream (the answer itself was 200: the rollout had begun).
            (Ok(()), Some(Err(detail))) => {
                eprintln!("l4ctl: the reload of {name} stopped: {} ({})", detail.message, detail.code);
                return ExitCode::from(1);
            }
            (Ok(()), None) => {
                let e = ClientError::Protocol {
                    socket: client.socket.clone(),
                    message: format!("the daemon stopped answering during the reload of {name}"),
                };
                return fail(&e);
            }
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
