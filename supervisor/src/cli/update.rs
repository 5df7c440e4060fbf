//! `l4ctl update`: hand the running daemon over to the `l4ctl-daemon` now installed
//! at its path, in place (same pid; the workers are not restarted and notice
//! nothing), then say old → new version and how long the daemon was away.
//!
//! `l4ctl --version` says both versions: this program's, and that of the daemon
//! that answers in the home (`L4_HOME`, `L4_CONFIG`, else the default one).
//!
//! The daemon answers only when it cannot begin (its program is not to be trusted,
//! or something is starting, stopping or being replaced: asked again for up to
//! [`SETTLE_LIMIT`]). Otherwise the connection closes as it execs, and the new
//! program's `health` tells the handover apart by its count.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Cli, fail, resolve};
use crate::client::{Client, ClientError};
use crate::wire::types::Health;

/// How long a busy daemon (a start, stop or replace under way) is asked again.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How long the new program may take to answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

pub async fn update(cli: &Cli) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let before: Health = match client.get("/api/v1/health").await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let count = before.handover.as_ref().map_or(0, |h| h.count);
    let settle = Instant::now() + SETTLE_LIMIT;
    loop {
        match client.post::<serde_json::Value>("/api/v1/daemon/update", json!({})).await {
            Err(ClientError::Api { detail, .. }) if detail.code == "not_settled" && Instant::now() < settle => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e @ (ClientError::Api { .. } | ClientError::NotRunning { .. })) => return fail(&e),
            // No answer: the process is becoming its next program.
            _ => break,
        }
    }
    let (posted, deadline) = (Instant::now(), Instant::now() + ANSWER_LIMIT);
    while Instant::now() < deadline {
        match client.get::<Health>("/api/v1/health").await {
            Ok(h)
                if h.handover.as_ref().map_or(0, |o| o.count) <= count
                    && Duration::from_millis(h.uptime_ms) < posted.elapsed() =>
            {
                eprintln!(
                    "l4ctl: the new program could not take the daemon over and restored the saved apps as after a crash (see l4ctl.log)"
                );
                return ExitCode::FAILURE;
            }
            Ok(h) if h.pid != before.pid => {
                eprintln!(
                    "l4ctl: the daemon did not take over in place: pid {} ended and pid {} restored the saved apps (see l4ctl.log)",
                    before.pid, h.pid
                );
                return ExitCode::FAILURE;
            }
            Ok(Health { handover: Some(h), version, pid, .. }) if h.count > count => {
                println!(
                    "l4ctl: daemon updated in place: {} → {version} (pid {pid} kept), away {:.1} ms ({:.1} ms from the exec); no worker was restarted",
                    before.version, h.away_ms, h.since_exec_ms
                );
                return ExitCode::SUCCESS;
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    eprintln!("l4ctl: the daemon did not answer within {ANSWER_LIMIT:?} of the update (see l4ctl.log)");
    ExitCode::FAILURE
}

/// `l4ctl --version`: this program's version, and the answering daemon's.
pub fn version() -> ExitCode {
    println!("l4ctl {}", env!("CARGO_PKG_VERSION"));
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    let home = crate::wire::home::resolve_paths(var("L4_CONFIG").as_deref(), var("L4_HOME").as_deref()).home;
    let asked = async {
        tokio::time::timeout(Duration::from_secs(2), Client::new(&home).get::<Health>("/api/v1/health")).await
    };
    let answer = tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(asked));
    match answer {
        Ok(Ok(Ok(h))) => {
            let over = h.handover.map_or(String::new(), |o| {
                format!(", updated in place {} times, last from {}", o.count, o.from_version)
            });
            println!("l4ctl-daemon {} (pid {} in {}{over})", h.version, h.pid, home.display());
        }
        _ => println!("l4ctl-daemon: none answers in {}", home.display()),
    }
    ExitCode::SUCCESS
}
