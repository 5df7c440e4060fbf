//! Nginx follows a scale, whoever made it (`l4ctl scale`, a
//! dashboard on the TCP API): with `[nginx] auto_reload` for the app in its config
//! file, the daemon runs `l4ctl --config FILE nginx reload --json` once the new
//! instances are up and reports what it did.
//!
//! A helper process, not code in the daemon: the renderer (MiniJinja) stays out of
//! the resident binary, and `nginx -t` and the reload command are the helper's own
//! children, reaped by it (the daemon reaps every child of its own with
//! `waitpid(-1)`, so it could not wait for them). The helper's answer comes on its
//! stdout; the daemon's reaper collects the helper itself.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::handle::Handle;
use crate::wire::types::NginxOutcome;

/// How long the render, `nginx -t` and the reload command may take together.
const LIMIT: Duration = Duration::from_secs(60);

/// `None` when the app's config file has no `[nginx]` for it with `auto_reload`.
pub(super) async fn nginx_after_scale(h: &Handle, app: &str) -> Option<NginxOutcome> {
    let described = h.describe(app).await.ok()?;
    let file = described.config_file;
    let path = file.clone();
    let spec = match tokio::task::spawn_blocking(move || crate::config::load(&path, None)).await.ok()? {
        Ok(config) => config.nginx?,
        Err(e) => {
            tracing::warn!(file = %file.display(), cause = %e, "cannot read [nginx] after a scale; nginx not updated");
            return None;
        }
    };
    if !spec.auto_reload || spec.app != app {
        return None;
    }
    let outcome = reload(&file).await;
    if outcome.ok {
        tracing::info!(app, message = %outcome.message, "nginx follows the scale");
    } else {
        tracing::error!(app, cause = %outcome.message, "nginx was not updated after a scale");
    }
    Some(outcome)
}

async fn reload(file: &Path) -> NginxOutcome {
    let failed = |message: String| NginxOutcome { ok: false, message };
    let exe = match crate::fsutil::sibling_exe("l4ctl") {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot find l4ctl: {e}")),
    };
    let child = Command::new(&exe)
        .arg("--config")
        .arg(file)
        .args(["nginx", "reload", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {}: {e}", exe.display())),
    };
    // It runs the user's reload command: what starts meanwhile may be its, not an app's.
    crate::os::helpers::spawned(child.id(), true);
    let Some(stdout) = child.stdout.take().map(OwnedFd::from) else { return failed("no stdout".into()) };
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(stdout) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    let mut answer = String::new();
    match tokio::time::timeout(LIMIT, pipe.read_to_string(&mut answer)).await {
        Ok(Ok(_)) => serde_json::from_str(answer.trim())
            .unwrap_or_else(|_| failed(format!("l4ctl nginx reload said {:?}", answer.trim()))),
        Ok(Err(e)) => failed(format!("reading l4ctl nginx reload: {e}")),
        Err(_) => {
            let _ = child.kill(); // still running, so the pid is still its own
            failed(format!("l4ctl nginx reload did not finish within {}s", LIMIT.as_secs()))
        }
    }
}
