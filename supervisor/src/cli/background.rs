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
fn daemon_exe() -> Result<PathBuf, NoDaemon> {
    let daemon = crate::fsutil::sibling_exe("l4ctl-daemon").map_err(NoDaemon::NoOwnPath)?;
    if daemon.is_file() { Ok(daemon) } else { Err(NoDaemon::Missing(daemon)) }
}

/// `l4ctl daemon`: become `l4ctl-daemon` (same pid, for systemd).
pub(super) fn exec_daemon(args: &DaemonArgs) -> ExitCode {
    let err = match daemon_exe() {
        Ok(exe) => std::process::Command::new(exe).args(args.argv()).exec().to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!("l4ctl: cannot run the daemon: {err}");
    ExitCode::from(1)
}

/// Why no daemon could be started: a refused folder (exit 2, as the daemon's own
/// refusal) or anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub(super) enum NoDaemon {
    /// The home or log folder is not one the daemon may use (its own sentence).
    #[error("{0}")]
    Refused(String),
    #[error("cannot find the l4ctl binary: {0}")]
    NoOwnPath(std::io::Error),
    #[error("{} is missing: install it next to l4ctl (install.sh installs both)", .0.display())]
    Missing(PathBuf),
    #[error("cannot open {}: {source}", path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error("cannot start the daemon: {0}")]
    Start(std::io::Error),
    #[error("the daemon exited at start ({status}): {last}")]
    Exited { status: std::process::ExitStatus, last: String },
    #[error("the daemon did not answer within {}s; see {}", DAEMON_START_LIMIT.as_secs(), .0.display())]
    Silent(PathBuf),
}

impl NoDaemon {
    /// 2 when a folder was refused (as the daemon's own refusal), else 1.
    pub(super) fn exit_code(&self) -> u8 {
        if matches!(self, NoDaemon::Refused(_)) { 2 } else { 1 }
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
    let output = |source| NoDaemon::Output { path: out_path.clone(), source };
    let out = crate::nofollow::append(&out_path, 0o600, 0).map_err(output)?;
    let err = out.try_clone().map_err(output)?;
    let args = DaemonArgs {
        config: resolved.config.clone(),
        home: Some(resolved.home.clone()),
        log_file: true,
        log_dir: Some(resolved.log_dir.clone()),
        env_name: None,
        no_apps: true,
        restore: false,
        guard: resolved.daemon.watchdog,
        handover: None,
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
    let mut child = cmd.spawn().map_err(NoDaemon::Start)?;
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
            return Err(NoDaemon::Exited { status, last });
        }
        if Instant::now() > deadline {
            return Err(NoDaemon::Silent(out_path));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether no process holds the daemon's pid-file lock in `home`.
pub(super) fn daemon_exited(home: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(Paths::pid_file(home)) else { return true };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_ok()
}
