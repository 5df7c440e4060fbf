//! What a command names, as PM2 users write it: `all`, an app's name, one
//! instance as `app:N`, or the numeric id `l4ctl status` shows (turned into
//! `app:N` here, so the daemon only ever sees names; an app named with digits
//! only is taken by its name first). An id is read from one `status` and acted
//! on in the next call: a scale or delete in between can move ids, as in PM2. Also the commands that
//! exist for one instance as much as for an app: `signal` and `reset`.

use std::process::ExitCode;

use serde_json::json;

use super::{Cli, fail, finish, resolve};
use crate::client::{Client, ClientError};
use crate::wire::types::{ActionReport, ErrorDetail, StatusReport};

/// `arg` as the API's `{name}`: an id becomes `app:N`; anything else is passed on.
pub(super) async fn target(client: &Client, arg: &str) -> Result<String, ClientError> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(arg.to_owned());
    }
    let status = client.get::<StatusReport>("/api/v1/status").await?;
    // An app may be named `3`: its name wins over an id.
    if status.instances.iter().any(|i| i.app == arg) {
        return Ok(arg.to_owned());
    }
    let id: u64 = arg.parse().unwrap_or(u64::MAX);
    match status.instances.iter().find(|i| u64::from(i.id) == id) {
        Some(i) => Ok(format!("{}:{}", i.app, i.instance)),
        None => Err(ClientError::Api {
            status: hyper::StatusCode::NOT_FOUND,
            detail: ErrorDetail {
                code: "unknown_id".into(),
                message: format!("no instance has id {arg} (`l4ctl status` lists the ids)"),
                diagnostics: vec![],
            },
        }),
    }
}

/// `app:N` split, when it is one instance.
pub(super) fn instance_of(target: &str) -> Option<(&str, u32)> {
    let (app, index) = target.split_once(':')?;
    Some((app, index.parse().ok()?))
}

/// `l4ctl stop|restart|delete|start TARGET`.
pub(super) async fn action(cli: &Cli, arg: &str, op: &str) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let name = match target(&client, arg).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    finish(client.post::<ActionReport>(&format!("/api/v1/apps/{name}/{op}"), json!({})).await)
}

/// `l4ctl signal SIGNAL TARGET` (PM2's `sendSignal`).
pub(super) async fn signal(cli: &Cli, signal: &str, arg: &str) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let name = match target(&client, arg).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    let path = format!("/api/v1/apps/{name}/signal");
    match client.post::<serde_json::Value>(&path, json!({ "signal": signal })).await {
        Ok(v) => {
            for s in v["sent"].as_array().into_iter().flatten() {
                println!(
                    "l4ctl: {} sent to {}:{} (pid {})",
                    v["signal"].as_str().unwrap_or(signal),
                    s["app"].as_str().unwrap_or("?"),
                    s["instance"],
                    s["pid"]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `l4ctl reset TARGET`: restart counters back to zero.
pub(super) async fn reset(cli: &Cli, arg: &str) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let name = match target(&client, arg).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    finish(client.post::<ActionReport>(&format!("/api/v1/apps/{name}/reset"), json!({})).await)
}
