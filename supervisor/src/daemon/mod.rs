//! The daemon: one process per home folder that owns every app it was given.
//!
//! [`run`] takes an already bound Unix listener and a shutdown future (thin
//! `main`, testable library). It makes the daemon a child subreaper, ends any
//! processes left by an earlier daemon of the same home that was killed, starts
//! the [`supervisor`] actor, and serves the control API until shutdown; on
//! shutdown every app is stopped gracefully before `run` returns.

mod apply;
mod memory;
mod monitor;
mod procs;
mod report;
mod sample;
mod spawn;
mod state;

pub use procs::{SUPERVISOR_VAR, TAG_VAR, clock_ticks_and_page_size, read_stat};
mod supervisor;

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::api::types::{AppDescription, StatusReport};
use crate::config::{Config, ConfigError};

pub use state::SavedState;

/// Capacity of the actor's channel; senders wait when it is full.
const QUEUE: usize = 1024;
/// How often the daemon logs its one-line summary (the plan's monitoring section).
const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// Errors of daemon operations, mapped to API error codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown app `{0}`")]
    UnknownApp(String),
    #[error(transparent)]
    Config(ConfigError),
    #[error("nothing to start: no app is loaded and no saved state exists; pass a config file")]
    NothingToStart,
    #[error("{0}")]
    Invalid(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("another daemon already runs in {home} (pid {pid})")]
    AlreadyRunning { home: PathBuf, pid: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Which apps an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    App(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
    Delete,
}

/// A condition a caller waits for.
#[derive(Debug, Clone)]
pub enum Want {
    /// No instance of these apps is starting or stopping.
    Settled(Vec<String>),
    /// These apps are deleted.
    Gone(Vec<String>),
    /// Every instance is stopped.
    AllStopped,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Messages to the supervisor actor.
#[derive(Debug)]
pub enum Msg {
    Apply {
        config: Config,
        env: Option<String>,
        only: Option<String>,
        reply: Reply<Vec<String>>,
    },
    Control {
        target: Target,
        op: Op,
        reply: Reply<Vec<String>>,
    },
    Restore {
        reply: Reply<Vec<String>>,
    },
    Reload {
        reply: Option<Reply<Vec<String>>>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Describe {
        app: String,
        reply: Reply<AppDescription>,
    },
    Wait {
        want: Want,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// A lifecycle timer of the instance with daemon-wide id `id`.
    Timer {
        id: u32,
        epoch: u64,
    },
    /// Check again whether a stopping instance's process group is empty.
    GroupPoll {
        id: u32,
    },
    Tick,
    /// Re-sample instances close to their memory ceiling.
    FastSample,
    /// Log the periodic one-line summary.
    Summary,
    Sigchld,
    /// Reopen (or truncate, `l4ctl flush`) the log files of one app or all: the
    /// reply lists the commands for the caller to send and await.
    LogCommand {
        app: Option<String>,
        truncate: bool,
        reply: Reply<Vec<LogCommand>>,
    },
    /// SIGUSR1: reopen every log file.
    ReopenLogs,
    /// A receiver of events, for `GET /api/v1/events`.
    Subscribe {
        reply: oneshot::Sender<tokio::sync::broadcast::Receiver<Event>>,
    },
    /// The figures `/metrics` shows.
    Metrics {
        reply: oneshot::Sender<crate::api::metrics::MetricsSnapshot>,
    },
    /// Restart one instance (a step of a rolling reload).
    RestartInstance {
        app: String,
        index: u32,
        reply: Reply<()>,
    },
    /// Set the number of instances of an app.
    Scale {
        app: String,
        instances: u32,
        reply: Reply<Vec<String>>,
    },
    /// At exit: hand over the log hub so its writers can be drained.
    TakeLogs {
        reply: oneshot::Sender<crate::logs::LogHub>,
    },
}

/// What the daemon tells subscribers of `GET /api/v1/events` (one JSON object per event).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An instance changed state.
    State { app: String, instance: u32, from: &'static str, to: &'static str, pid: Option<u32> },
    /// An instance was started again; `reason` is why its last run ended.
    Restart { app: String, instance: u32, reason: &'static str, restarts: u32 },
    /// An instance reached its memory ceiling (a restart or kill follows).
    Memory { app: String, instance: u32, rss_bytes: u64, ceiling_bytes: u64 },
}

/// Events waiting for slow subscribers; beyond this they miss events and are told so.
pub const EVENT_BUFFER: usize = 256;

/// A message for one log writer and the reply that says it was carried out.
pub type LogCommand = (mpsc::Sender<crate::logs::LogMsg>, crate::logs::LogMsg, oneshot::Receiver<()>);

/// Send each command and wait for it to be carried out.
pub async fn run_log_commands(commands: Vec<LogCommand>) -> usize {
    let mut done = 0;
    for (tx, msg, wait) in commands {
        if tx.send(msg).await.is_ok() && wait.await.is_ok() {
            done += 1;
        }
    }
    done
}

/// Where a daemon keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub log_dir: PathBuf,
}

impl Paths {
    pub fn socket(home: &Path) -> PathBuf {
        home.join("l4ctl.sock")
    }
    pub fn pid_file(home: &Path) -> PathBuf {
        home.join("l4ctl.pid")
    }
}

/// A claimed home: the pid-file lock (held for the daemon's life) and the bound socket.
#[derive(Debug)]
pub struct Claimed {
    pub lock: Flock<File>,
    pub listener: UnixListener,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Create `home` (0700), take its pid-file lock, and bind the control socket (0600).
/// Fails with [`Error::AlreadyRunning`] when another daemon holds the lock.
pub fn claim_home(home: &Path) -> Result<Claimed, Error> {
    crate::fsutil::create_private_dir(home).map_err(io("cannot create home", home))?;
    let pid_path = Paths::pid_file(home);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&pid_path)
        .map_err(io("cannot open pid file", &pid_path))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, _)| Error::AlreadyRunning {
        home: home.to_path_buf(),
        pid: std::fs::read_to_string(&pid_path).unwrap_or_default().trim().to_owned(),
    })?;
    {
        use std::io::{Seek, Write};
        let f: &mut File = &mut lock;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{}", std::process::id());
    }
    let sock = Paths::socket(home);
    // We hold the lock, so a socket file here is stale.
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(io("cannot bind socket", &sock))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod socket", &sock))?;
    Ok(Claimed { lock, listener })
}

/// Run the daemon until `shutdown` resolves or a client asks it to `kill`.
/// `initial` is loaded at start (for `l4ctl daemon --config`, under systemd).
pub async fn run(
    settings: crate::config::DaemonSpec,
    listener: UnixListener,
    initial: Option<(Config, Option<String>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Err(e) = procs::become_subreaper() {
        tracing::warn!(cause = %e, "cannot become child subreaper; orphaned grandchildren will be reaped by init");
    }
    end_leftovers(&settings.home).await;
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    // Handlers first: a child that ends before they exist would go unnoticed until the next tick.
    spawn_signal_forwarders(tx.clone(), settings.sample_interval)?;
    log_cgroup_support();
    let mut sup = supervisor::Supervisor::new(settings.home.clone(), settings.sample_interval, tx.clone());
    if let Some((config, env)) = initial {
        sup.boot(config, env);
    }
    let actor = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            sup.handle(msg);
        }
    });
    let kill = Arc::new(Notify::new());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let tcp = match settings.api_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(%addr, cause = %e, "cannot listen for the TCP API; it is off (the Unix socket works)");
                None
            }
        },
        None => None,
    };
    let api_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    let state = crate::api::ApiState {
        tx: tx.clone(),
        started: Instant::now(),
        home: settings.home.clone(),
        log_dir: settings.log_dir.clone(),
        kill: kill.clone(),
        stopping,
        api_addr,
    };
    let tcp_task = tcp.map(|listener| {
        let token = api_token(&settings);
        tracing::info!(addr = ?api_addr, token = ?token, "TCP API listening");
        if let Some(addr) = api_addr {
            let _ = crate::fsutil::atomic_write(&settings.home.join("api.addr"), format!("{addr}\n").as_bytes(), 0o644);
        }
        let router = crate::api::tcp(state.clone(), token);
        let mut stop = state.stopping.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        })
    });
    let app = crate::api::router(state);
    let stop_tx = tx.clone();
    let graceful = async move {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutdown requested; stopping every app");
                let (reply, done) = oneshot::channel();
                if stop_tx.send(Msg::Shutdown { reply }).await.is_ok() {
                    let _ = done.await;
                }
            }
            () = kill.notified() => {}
        }
        // Ends event streams and the TCP server, so the servers can finish.
        let _ = stopping_tx.send(true);
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(graceful).await;
    if let Some(t) = tcp_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    // Every app is stopped: drain the log writers so the last lines reach the files.
    let (reply, hub) = oneshot::channel();
    if tx.send(Msg::TakeLogs { reply }).await.is_ok()
        && let Ok(hub) = hub.await
    {
        hub.close(Duration::from_secs(3)).await;
    }
    drop(tx);
    actor.abort();
    let _ = std::fs::remove_file(Paths::socket(&settings.home));
    tracing::info!("daemon stopped");
    served.map_err(|source| Error::Io { what: "serving on", path: Paths::socket(&settings.home), source })
}

/// SIGHUP reloads the config; SIGUSR1 reopens log files; SIGCHLD drives reaping; a 1 s tick samples (and reaps,
/// in case a coalesced SIGCHLD was missed).
fn spawn_signal_forwarders(tx: mpsc::Sender<Msg>, sample_interval: Duration) -> Result<(), Error> {
    let listen = |kind: SignalKind| {
        signal(kind).map_err(|source| Error::Io { what: "cannot listen for signals", path: PathBuf::new(), source })
    };
    let mut hup = listen(SignalKind::hangup())?;
    let mut usr1 = listen(SignalKind::user_defined1())?;
    let usr1_tx = tx.clone();
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: reopening log files");
            let _ = usr1_tx.send(Msg::ReopenLogs).await;
        }
    });
    let mut chld = listen(SignalKind::child())?;
    let hup_tx = tx.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            let _ = hup_tx.send(Msg::Reload { reply: None }).await;
        }
    });
    let chld_tx = tx.clone();
    tokio::spawn(async move {
        while chld.recv().await.is_some() {
            let _ = chld_tx.try_send(Msg::Sigchld);
        }
    });
    let summary_tx = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_INTERVAL, SUMMARY_INTERVAL);
        loop {
            tick.tick().await;
            if summary_tx.send(Msg::Summary).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let _ = tx.try_send(Msg::Tick);
            crate::telemetry::refresh_link();
        }
    });
    Ok(())
}

/// The token for changes over TCP: the value of the variable `api_token_env` names.
fn api_token(settings: &crate::config::DaemonSpec) -> crate::api::Token {
    let Some(var) = &settings.api_token_env else { return crate::api::Token(None) };
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => crate::api::Token(Some(Arc::from(v))),
        _ => {
            tracing::warn!(var = %var, "api_token_env names a variable that is not set; the TCP API is read-only");
            crate::api::Token(None)
        }
    }
}

/// The memory ceiling is enforced from `/proc`; say once whether cgroup v2 could
/// have added a hard `memory.max` backstop here.
fn log_cgroup_support() {
    let root = Path::new("/sys/fs/cgroup");
    let unified = root.join("cgroup.controllers").is_file();
    let writable = unified && nix::unistd::access(root, nix::unistd::AccessFlags::W_OK).is_ok();
    if writable {
        tracing::info!(
            "cgroup v2 is writable here; the memory ceiling is enforced from /proc samples (no memory.max backstop yet)"
        );
    } else {
        tracing::info!(
            unified,
            "cgroup v2 is not writable here; the memory ceiling is enforced from /proc samples alone"
        );
    }
}

/// End processes that an earlier daemon of this home left running (it was SIGKILLed).
async fn end_leftovers(home: &Path) {
    let home = home.display().to_string();
    let pids = procs::leftovers_of(&home);
    if pids.is_empty() {
        return;
    }
    tracing::warn!(?pids, "ending processes left by a previous daemon");
    procs::signal_all(None, &pids, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !procs::leftovers_of(&home).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    procs::signal_all(None, &procs::leftovers_of(&home), nix::sys::signal::Signal::SIGKILL);
}
