//! `chat-server`: reads its settings, takes the listening socket it was given
//! (`LISTEN_FDS`, as l4ctl and systemd pass it) or binds `HOST:PORT`, and serves
//! until SIGTERM/SIGINT.
//! Exit codes: 0 after a clean drain, 1 on a runtime failure, 2 on invalid settings.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use layer4_chat_server::config::Settings;

/// Allocations of 1 MiB and more get their own mapping, returned to the kernel when
/// freed. glibc's default raises that threshold after the first such free (up to 32
/// MiB), after which a password hash's 19 MiB block stays in the arena of whichever
/// thread hashed it: 30 logins grew a worker by 500 MB. Fixing it also fixes the trim
/// threshold at its 128 KiB default, and a heap shrunk and grown again on every burst of
/// frees costs the delivery path (+25 % CPU per delivery in bench/ws.sh): the trim
/// threshold is set as high as glibc's own would go, and freed memory goes back to the
/// kernel by the periodic `malloc_trim` instead (`housekeeping`).
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[derive(Debug, Parser)]
#[command(version, about = "layer4 chat server worker (settings from the environment; see README)")]
struct Args {
    /// TOML file with settings (keys: the variable names in lower case); the environment overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the settings, connect to the database and Redis (TLS and login included), and exit: 0 when all is well, 1 with the reason when a connection fails, 2 for invalid settings.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    // Files the server makes (the SQLite database, its -wal and -shm, the development
    // secret) are its user's alone.
    // SAFETY: umask only sets this process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    let args = Args::parse();
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat-server: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return check(&settings);
    }
    layer4_chat_server::telemetry::init();
    match serve(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let listener = match inherited().context("reading LISTEN_FDS")? {
            Some(listener) => listener,
            None => tokio::net::TcpListener::bind((settings.host, settings.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?,
        };
        layer4_chat_server::run(settings, listener, shutdown_signal()).await.map_err(anyhow::Error::from)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(())
}

/// The first socket passed by the supervisor (fd 3 with `LISTEN_FDS` and our pid
/// in `LISTEN_PID`), if any.
fn inherited() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let Some(fd) = sd_notify::listen_fds()?.next() else { return Ok(None) };
    // SAFETY: `listen_fds` checked that LISTEN_PID is this process, so fd 3 was
    // passed to us and nothing else in this process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("fd 3 is not a listening TCP socket")?;
    Ok(Some(listener))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `--check`: the settings are valid, and the database and Redis answer as the worker
/// will reach them (TLS and authentication included); exit 1 with the sentence if not.
fn check(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chat-server: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(layer4_chat_server::reach::check(settings)) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            println!("settings ok: {settings:?}");
            ExitCode::SUCCESS
        }
        Err(sentence) => {
            eprintln!("chat-server: {sentence}");
            ExitCode::FAILURE
        }
    }
}
