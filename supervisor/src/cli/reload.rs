//! `l4ctl reload APP [--parallel N]`: a rolling reload driven from the CLI, one
//! API call per instance so that each step prints its own progress line as it
//! ends. The first wave with a failure stops the rollout: the failed instance
//! keeps its old run, the command says which instance failed and why, exit 1.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use super::{Cli, app_names, fail, render, resolve};
use crate::client::{Client, ClientError};
use crate::wire::types::Replaced;
use crate::wire::types::{AppDescription, StatusReport};

pub(super) async fn reload(cli: &Cli, app: &str, parallel: Option<u32>) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let apps = match app_names(&client, app).await {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let started = Instant::now();
    for name in &apps {
        let d = match client.get::<AppDescription>(&format!("/api/v1/apps/{name}")).await {
            Ok(d) => d,
            Err(e) => return fail(&e),
        };
        let configured = d.config["reload_parallel"].as_u64().map_or(1, |p| p as u32);
        let at_once = parallel.unwrap_or(configured).max(1) as usize;
        let indexes: Vec<u32> = d.instances.iter().map(|i| i.instance).collect();
        eprintln!("l4ctl: reloading {name}: {} instance(s), {at_once} at a time", indexes.len());
        for wave in indexes.chunks(at_once) {
            let steps = wave.iter().map(|&index| {
                let client = client.clone();
                let path = format!("/api/v1/apps/{name}/instances/{index}/replace");
                async move { client.post::<Replaced>(&path, json!({})).await }
            });
            let mut failed = None;
            for result in futures_util::future::join_all(steps).await {
                match result {
                    Ok(r) => eprintln!("l4ctl:   {}", progress(&r)),
                    Err(e) => {
                        eprintln!("l4ctl:   {e}");
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return match e {
                    ClientError::Api { .. } => ExitCode::from(1),
                    other => fail(&other),
                };
            }
        }
    }
    eprintln!("l4ctl: reloaded {} in {:.2} s", apps.join(", "), started.elapsed().as_secs_f64());
    match client.get::<StatusReport>("/api/v1/status").await {
        Ok(status) => {
            println!("{}", render::table(&status));
            ExitCode::SUCCESS
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
