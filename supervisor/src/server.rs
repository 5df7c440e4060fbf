//! `l4ctl-daemon`'s composition root: the one place that knows both the daemon and
//! its control API. It checks and claims the home, sets up logging, the crash hook, the
//! runtime, the signals and the descriptor budget, starts the daemon ([`daemon::start`]),
//! serves the API on the daemon's channel over the Unix socket and TCP, and on
//! shutdown stops every app before the process exits. `daemon/` does not import `api/`,
//! and `cli/` imports neither: both arrows start here.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::Notify;

use crate::api;
use crate::config::{Config, DaemonSpec};
use crate::daemon::{self, SavedState};
use crate::wire::daemon_args::DaemonArgs;
use crate::wire::home::{Paths, resolve_paths};

/// The daemon: claim the home, then serve until SIGTERM/SIGINT or `l4ctl kill`.
pub fn run(args: &DaemonArgs) -> ExitCode {
    crate::api::return_freed_memory();
    let (log_file, log_dir, env, no_apps) = (args.log_file, args.log_dir.clone(), args.env_name.clone(), args.no_apps);
    // `l4ctl update` exec'd this program in the daemon's place: take its apps over.
    let (mut taken, mut not_taken) = (None, None);
    if let Some(fd) = args.handover {
        match crate::handover::take(fd) {
            Ok(t) => taken = Some(t),
            Err(why) => {
                crate::handover::close_inherited();
                not_taken = Some(why);
            }
        }
    }
    let mut resolved = resolve_paths(args.config.as_deref(), args.home.as_deref());
    let mut log_dir = log_dir.map(|d| crate::config::absolute(&d)).unwrap_or(resolved.log_dir.clone());
    // The folders and cgroups the previous program used, whatever the file says now:
    // the lock, the sockets and the runs' cgroups are theirs.
    if let Some(t) = &taken {
        (resolved.home, log_dir, resolved.daemon.cgroups) = (t.home.clone(), t.log_dir.clone(), t.cgroups);
    }
    // Nothing is written, read back or run before the folders are known to be ours.
    if let Err(e) = crate::trust::check_folders(&resolved.home, &log_dir) {
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
    if let Some(why) = &not_taken {
        tracing::error!(cause = %why, "cannot take over from the previous program; restoring the saved apps as after a crash");
    }
    // Only an explicit --config is loaded at start; otherwise `l4ctl start` brings the apps.
    let initial = match args.config.as_ref().filter(|_| !no_apps && taken.is_none()) {
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
    let claimed = match runtime.block_on(async {
        match taken.as_mut() {
            Some(t) => reclaim(t),
            None => daemon::claim_home(&resolved.home),
        }
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("l4ctl: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(home = %resolved.home.display(), log_dir = %log_dir.display(), pid = std::process::id(), "daemon started");
    // Fault injection for the test of the watchdog's limit: the daemon aborts this many
    // milliseconds after its start, every time; not in release builds.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("L4_FAILPOINT_DAEMON_ABORT_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            std::process::abort();
        });
    }
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
    let restore = (args.restore || not_taken.is_some()) && initial.is_none() && taken.is_none();
    let earlier = taken.as_ref().map(|t| (t.count, t.panics.clone())).unwrap_or_default();
    let kept = match kept(&claimed, earlier) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("l4ctl: cannot keep the daemon's descriptors: {e}");
            return ExitCode::from(1);
        }
    };
    let boot = Boot { initial, saved, restore, taken, kept };
    let result = runtime.block_on(serve(settings, claimed.listener, boot, shutdown));
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

/// Hand the daemon over when `l4ctl update` asks (the answer is why not) or when a
/// message panicked in the actor: then to the running program again, unless
/// [`crate::handover::PANIC_HANDOVERS`] panics were handed over within the window,
/// when the daemon exits instead (the watchdog or systemd starts one that restores
/// the saved apps, as after a crash).
async fn hand_over_when_asked(
    handle: daemon::Handle,
    kept: crate::handover::Kept,
    mut updates: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<daemon::Error>>,
    mut panics: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use crate::handover::{How, PANIC_HANDOVERS, hand_over, monotonic_ns, own_program, recent_panics};
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    loop {
        tokio::select! {
            Some(reply) = updates.recv() => {
                let why = match own_program() {
                    Some(program) => hand_over(&handle, &kept, How::Update { program }, &args).await,
                    None => daemon::Error::Invalid("cannot find the daemon's own program".to_owned()),
                };
                let _ = reply.send(why);
            }
            Some(()) = panics.recv() => {
                if recent_panics(&kept.panics, monotonic_ns(), false).len() >= PANIC_HANDOVERS {
                    tracing::error!(
                        "the daemon panicked {PANIC_HANDOVERS} times within {:?}; exiting, so that a daemon that restores the saved apps starts",
                        crate::handover::PANIC_WINDOW
                    );
                    std::process::exit(crate::guard::RESTORE_ME);
                }
                tracing::error!("a message panicked in the daemon; handing it over to a fresh copy of its program");
                let why = hand_over(&handle, &kept, How::Panic, &args).await;
                tracing::error!(cause = %why, "the panic's handover could not begin; exiting");
                std::process::exit(crate::guard::RESTORE_ME);
            }
            else => return,
        }
    }
}

/// The home as the previous program held it: its pid-file lock and control socket.
fn reclaim(t: &mut crate::handover::Taken) -> Result<daemon::Claimed, daemon::Error> {
    let io = |what: &'static str| move |source| daemon::Error::Io { what, path: Default::default(), source };
    let unix = t.unix.try_clone().map_err(io("cannot take the control socket over"))?;
    let std_listener = std::os::unix::net::UnixListener::from(unix);
    std_listener.set_nonblocking(true).map_err(io("cannot take the control socket over"))?;
    let listener = UnixListener::from_std(std_listener).map_err(io("cannot take the control socket over"))?;
    let file = std::fs::File::from(t.lock.try_clone().map_err(io("cannot take the pid-file lock over"))?);
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        daemon::Error::Io { what: "cannot take the pid-file lock over", path: Default::default(), source: e.into() }
    })?;
    Ok(daemon::Claimed { lock, listener })
}

/// The descriptors a handover passes on besides the daemon's own: copies of the lock
/// and of the control socket (the originals are owned by what serves them).
fn kept(claimed: &daemon::Claimed, (count, panics): (u32, Vec<u64>)) -> std::io::Result<crate::handover::Kept> {
    use std::os::fd::AsFd;
    let lock_file: &std::fs::File = &claimed.lock;
    Ok(crate::handover::Kept {
        lock: lock_file.as_fd().try_clone_to_owned()?,
        unix: claimed.listener.as_fd().try_clone_to_owned()?,
        tcp: None,
        count,
        panics,
        home: Default::default(),
        log_dir: Default::default(),
        cgroups: false,
    })
}

/// What `serve` starts with besides the settings.
struct Boot {
    initial: Option<(Config, Option<String>)>,
    saved: SavedState,
    restore: bool,
    /// What a previous program handed over (`l4ctl update`).
    taken: Option<crate::handover::Taken>,
    kept: crate::handover::Kept,
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

/// Start the daemon, serve the control API on the Unix socket (and on TCP when
/// `api_listen` is set) until `shutdown` resolves or a client asks it to `kill`, stop
/// every app gracefully, and finish.
async fn serve(
    settings: DaemonSpec,
    listener: UnixListener,
    boot: Boot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), daemon::Error> {
    let Boot { initial, saved, restore, mut taken, mut kept } = boot;
    kept.home = settings.home.clone();
    kept.log_dir = settings.log_dir.clone();
    kept.cgroups = settings.cgroups;
    let stop_asked = taken.as_ref().is_some_and(|t| t.stop_asked);
    // Before any worker starts: they get the limit the daemon was started with back
    // (after a handover, the one the first program was started with).
    if let Some(limit) = taken.as_ref().and_then(|t| t.worker_nofile) {
        crate::os::fds::set_worker_nofile(limit);
    }
    let (tcp_budget, nofile) = crate::os::fds::budget(settings.api_max_connections, api::serve::UNIX_CONNECTIONS);
    tracing::debug!(nofile, tcp_budget, "descriptor budget");
    let handed_tcp = taken.as_mut().and_then(|t| t.tcp.take());
    let came =
        taken.as_ref().map(|t| (t.count, t.from_version.clone(), (t.frozen_mono_ns, t.exec_mono_ns), t.reason.clone()));
    let mut started = daemon::start(&settings, initial, saved, taken.map(|t| t.adopt)).await?;
    let handle = daemon::Handle::new(started.tx.clone(), settings.log_dir.clone());
    // `watch` and `cron_restart`: restarts through the same handle as the API's.
    daemon::triggers::spawn(
        handle.clone(),
        started.triggers.clone(),
        vec![settings.home.clone(), settings.log_dir.clone()],
    );
    // `[nginx] auto_reload`: nginx follows each app's ready instances.
    daemon::follow::spawn(handle.clone());
    let kill = Arc::new(Notify::new());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut api_error = None;
    let tcp = match (settings.api_listen, handed_tcp) {
        (_, Some(fd)) => {
            let std_listener = std::net::TcpListener::from(fd);
            let _ = std_listener.set_nonblocking(true);
            tokio::net::TcpListener::from_std(std_listener).ok()
        }
        (Some(addr), None) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                // Loud: on stderr (the journal under systemd), in the log, and in every
                // `l4ctl start`'s output until fixed. The daemon itself goes on: the
                // Unix socket serves `l4ctl`.
                let why = format!("the TCP status API cannot listen on {addr}: {e}");
                tracing::error!(%addr, cause = %e, "cannot listen for the TCP API; it is off (the Unix socket works)");
                eprintln!("l4ctl: {why}");
                api_error = Some(why);
                None
            }
        },
        (None, None) => None,
    };
    kept.tcp = tcp.as_ref().and_then(|l| std::os::fd::AsFd::as_fd(l).try_clone_to_owned().ok());
    let api_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    // `l4ctl update` (the API asks) and a panic in the actor: this task hands the
    // daemon over (or says why not).
    let (update, updates) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<daemon::Error>>(1);
    let panics = std::mem::replace(&mut started.panics, tokio::sync::mpsc::unbounded_channel().1);
    tokio::spawn(hand_over_when_asked(handle.clone(), kept, updates, panics));
    let now = crate::handover::monotonic_ns();
    let handover = came.map(|(count, from_version, (frozen, exec), reason)| crate::wire::types::Handover {
        count,
        from_version,
        away_ms: now.saturating_sub(frozen) as f64 / 1e6,
        since_exec_ms: now.saturating_sub(exec) as f64 / 1e6,
        reason,
    });
    if let Some(h) = &handover {
        tracing::info!(from = %h.from_version, away_ms = h.away_ms, count = h.count, "took the daemon over from the previous program");
    }
    if stop_asked {
        // SIGTERM reached the previous program while it handed over: stop now.
        tracing::info!("the previous program was asked to stop while handing over; stopping");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    }
    let state = api::ApiState {
        handle: handle.clone(),
        started: Instant::now(),
        home: settings.home.clone(),
        log_dir: settings.log_dir.clone(),
        kill: kill.clone(),
        stopping,
        api_addr,
        api_error,
        log_reads: api::LogReads::default(),
        dashboard: settings.dashboard,
        update,
        handover,
    };
    let tcp_task = tcp.map(|listener| {
        let token = api::token(&settings);
        tracing::info!(addr = ?api_addr, token = ?token, "TCP API listening");
        if let Some(addr) = api_addr {
            let _ = crate::fsutil::atomic_write(&settings.home.join("api.addr"), format!("{addr}\n").as_bytes(), 0o644);
        }
        let router = api::tcp(state.clone(), token);
        let mut stop = state.stopping.clone();
        tokio::spawn(api::serve::serve(listener, router, tcp_budget, "tcp", async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    // `--restore` (the watchdog's restart, the systemd unit): the saved apps come back
    // now, while the API already answers; systemd hears READY=1 after that.
    let (boot, stopping) = (handle.clone(), state.stopping.clone());
    tokio::spawn(async move {
        if restore {
            match boot.start(daemon::Start::Restore).await {
                Ok(r) => tracing::info!(apps = ?r.apps, failed = ?r.failed, "saved apps restored"),
                Err(daemon::Error::NothingToStart) => {}
                Err(e) => tracing::error!(cause = %e, "restoring the saved apps failed"),
            }
        }
        crate::sdnotify::spawn(boot, stopping);
    });
    let app = api::router(state);
    let graceful = async move {
        tokio::select! {
            () = shutdown => {
                // Should a handover be freezing the daemon now, the next program stops.
                crate::handover::STOP_ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!("shutdown requested; stopping every app");
                crate::sdnotify::stopping();
                let _ = handle.shutdown().await;
            }
            () = kill.notified() => {}
        }
        // Ends event streams and the TCP server, so the servers can finish.
        let _ = stopping_tx.send(true);
    };
    api::serve::serve(listener, app, api::serve::UNIX_CONNECTIONS, "unix", graceful).await;
    if let Some(t) = tcp_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    // Every app is stopped: drain the log writers so the last lines reach the files.
    started.finish().await;
    let _ = std::fs::remove_file(Paths::socket(&settings.home));
    tracing::info!("daemon stopped");
    Ok(())
}
