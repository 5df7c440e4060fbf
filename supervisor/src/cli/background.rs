//! Running the daemon: the `l4ctl-daemon` binary in the foreground (`l4ctl daemon`
//! execs it, so systemd units keep their pid), and starting it in the background
//! (detached, its own session) when a command needs one, as PM2 does.
//!
//! The daemon is a binary of its own so that what stays resident carries no CLI
//! code (tables, templates, log following): its RSS is mostly its own code pages.

use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use super::{Resolved, resolve_paths};
use crate::client::Client;
use crate::daemon::{self, Paths};

/// How long `start` waits for a freshly started daemon to answer.
const DAEMON_START_LIMIT: Duration = Duration::from_secs(10);

/// The daemon's arguments (those of `l4ctl daemon`, plus `--config` and `--home`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "l4ctl-daemon",
    version,
    about = "The l4ctl daemon (started by l4ctl; `l4ctl daemon` runs it in the foreground)."
)]
pub struct DaemonArgs {
    /// Config file: its `[daemon]` settings, and (without --no-apps) its apps, loaded at start.
    #[arg(short, long, env = "L4_CONFIG")]
    pub config: Option<PathBuf>,
    /// Daemon home [default: the config's `[daemon] home`, else ~/.layer4].
    #[arg(long, env = "L4_HOME")]
    pub home: Option<PathBuf>,
    /// Log to <log_dir>/l4ctl.log (daily rotation) instead of stderr.
    #[arg(long)]
    pub log_file: bool,
    /// Log folder [default: the config's `[daemon] log_dir`].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// With `--config FILE`: load and start that file at once, with this env profile.
    #[arg(long = "env", value_name = "NAME")]
    pub env_name: Option<String>,
    /// Take only the `[daemon]` settings from `--config`; leave its apps to `l4ctl start`.
    #[arg(long)]
    pub no_apps: bool,
}

impl DaemonArgs {
    fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(c) = &self.config {
            argv.extend(["--config".into(), c.into()]);
        }
        if let Some(h) = &self.home {
            argv.extend(["--home".into(), h.into()]);
        }
        if self.log_file {
            argv.push("--log-file".into());
        }
        if let Some(d) = &self.log_dir {
            argv.extend(["--log-dir".into(), d.into()]);
        }
        if let Some(e) = &self.env_name {
            argv.extend(["--env".into(), e.into()]);
        }
        if self.no_apps {
            argv.push("--no-apps".into());
        }
        argv
    }
}

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

/// The daemon: claim the home, then serve until SIGTERM/SIGINT or `l4ctl kill`.
pub(super) fn run_daemon(args: &DaemonArgs) -> ExitCode {
    crate::api::return_freed_memory();
    let (log_file, log_dir, env, no_apps) = (args.log_file, args.log_dir.clone(), args.env_name.clone(), args.no_apps);
    let resolved = resolve_paths(args.config.as_deref(), args.home.as_deref());
    let log_dir = log_dir.map(|d| crate::config::absolute(&d)).unwrap_or(resolved.log_dir.clone());
    // Nothing is written, read back or run before the folders are known to be ours.
    if let Err(e) = daemon::check_folders(&resolved.home, &log_dir) {
        eprintln!("l4ctl: {e}");
        return ExitCode::from(2);
    }
    let saved = match daemon::SavedState::load(&resolved.home) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("l4ctl: {e}; nothing from it was started");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(log_file.then_some(log_dir.as_path()));
    crate::crash::install_daemon_hook(log_dir.clone());
    // Only an explicit --config is loaded at start; otherwise `l4ctl start` brings the apps.
    let initial = match args.config.as_ref().filter(|_| !no_apps) {
        Some(path) => match crate::config::load_under(path, env.as_deref(), &log_dir) {
            Ok(c) => Some((c, env)),
            Err(e) => {
                eprintln!("l4ctl: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // One thread is plenty: the daemon's work is microseconds per event, and every
    // extra thread costs memory (a malloc arena, a stack) and wake-ups. This is also
    // the thread that forks workers, so their parent-death signal fires only when
    // the daemon itself ends.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("l4ctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let claimed = match runtime.block_on(async { daemon::claim_home(&resolved.home) }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("l4ctl: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(home = %resolved.home.display(), log_dir = %log_dir.display(), pid = std::process::id(), "daemon started");
    let mut settings = resolved.daemon.clone();
    settings.log_dir = log_dir;
    // Listen for SIGTERM/SIGINT before anything else runs, so an early one still stops the apps.
    let shutdown = match runtime.block_on(async { shutdown_signal() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("l4ctl: cannot listen for signals: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(daemon::run(settings, claimed.listener, initial, saved, shutdown));
    // Blocking tasks (a log writer stuck on a dead disk) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // The pid-file lock is released by the kernel as the process exits, so a
    // client that waits for it (`l4ctl kill`) knows the daemon is really gone.
    std::mem::forget(claimed.lock);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e, "daemon failed");
            eprintln!("l4ctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// A future that resolves on the first SIGTERM or SIGINT; the handlers are installed now.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
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
    daemon::check_folders(&resolved.home, &resolved.log_dir).map_err(|e| NoDaemon::Refused(e.to_string()))?;
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
        .env_remove(crate::daemon::SUPERVISOR_VAR)
        .env_remove(crate::daemon::TAG_VAR)
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
