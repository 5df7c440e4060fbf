//! Starting the daemon: `l4ctl daemon` execs the `l4ctl-daemon` binary in the
//! foreground (so systemd units keep their pid), and a command that needs a daemon
//! starts one in the background (detached, its own session), as PM2 does. The
//! daemon binary's own entry point is [`crate::server`].
//!
//! The daemon is a binary of its own so that what stays resident carries no CLI
//! code (tables, templates, log following): its RSS is mostly its own code pages.

use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use super::Resolved;
use crate::client::Client;
use crate::wire::daemon_args::DaemonArgs;
use crate::wire::home::Paths;

/// How long `start` waits for a freshly started daemon to answer.
const DAEMON_START_LIMIT: Duration = Duration::from_secs(10);

/// `l4ctl-daemon`, next to the running `l4ctl`.
fn daemon_exe() -> Result<PathBuf, String> {
    let daemon =
        crate::fsutil::sibling_exe("l4ctl-daemon").map_err(|e| format!("cannot find the l4ctl binary: {e}"))?;
    if daemon.is_file() {
        Ok(daemon)
    } else {
        Err(format!("{} is missing: install it next to l4ctl (install.sh installs both)", daemon.display()))
    }
}

/// `l4ctl daemon`: become `l4ctl-daemon` (same pid, for systemd).
pub(super) fn exec_daemon(args: &DaemonArgs) -> ExitCode {
    let err = match daemon_exe() {
        Ok(exe) => std::process::Command::new(exe).args(args.argv()).exec().to_string(),
        Err(e) => e,
    };
    eprintln!("l4ctl: cannot run the daemon: {err}");
    ExitCode::from(1)
}

/// Why no daemon could be started: a refused folder (exit 2, as the daemon's own
/// refusal) or anything else (exit 1).
#[derive(Debug)]
pub(super) enum NoDaemon {
    Refused(String),
    Failed(String),
}

impl From<String> for NoDaemon {
    fn from(message: String) -> Self {
        NoDaemon::Failed(message)
    }
}

/// Start a daemon in the background unless one answers; wait until it does.
pub(super) async fn ensure_daemon(client: &Client, resolved: &Resolved) -> Result<(), NoDaemon> {
    if client.is_up().await {
        return Ok(());
    }
    let exe = daemon_exe()?;
    crate::trust::check_folders(&resolved.home, &resolved.log_dir).map_err(|e| NoDaemon::Refused(e.to_string()))?;
    let out_path = resolved.home.join("daemon.out");
    let out =
        crate::nofollow::append(&out_path, 0o600, 0).map_err(|e| format!("cannot open {}: {e}", out_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let args = DaemonArgs {
        config: resolved.config.clone(),
        home: Some(resolved.home.clone()),
        log_file: true,
        log_dir: Some(resolved.log_dir.clone()),
        env_name: None,
        no_apps: true,
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args.argv())
        .env_remove("L4_CONFIG")
        .env_remove("L4_HOME")
        .env_remove(crate::wire::home::SUPERVISOR_VAR)
        .env_remove(crate::wire::home::TAG_VAR)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and group.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the daemon: {e}"))?;
    let deadline = Instant::now() + DAEMON_START_LIMIT;
    loop {
        if client.is_up().await {
            // The daemon outlives us; we never wait on it.
            std::mem::forget(child);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(&out_path).unwrap_or_default();
            let last = tail.lines().last().unwrap_or("").to_owned();
            if status.code() == Some(2) {
                return Err(NoDaemon::Refused(last.trim_start_matches("l4ctl: ").to_owned()));
            }
            return Err(NoDaemon::Failed(format!("the daemon exited at start ({status}): {last}")));
        }
        if Instant::now() > deadline {
            return Err(NoDaemon::Failed(format!(
                "the daemon did not answer within {}s; see {}",
                DAEMON_START_LIMIT.as_secs(),
                out_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether no process holds the daemon's pid-file lock in `home`.
pub(super) fn daemon_exited(home: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(Paths::pid_file(home)) else { return true };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_ok()
}
