//! `chat-server`: reads its settings, binds `HOST:PORT` and serves until SIGTERM/SIGINT.
//! Exit codes: 0 after a clean drain, 1 on a runtime failure, 2 on invalid settings.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use layer4_chat_server::config::Settings;

#[derive(Debug, Parser)]
#[command(version, about = "layer4 chat server worker (settings from the environment; see README)")]
struct Args {
    /// TOML file with settings (keys: the variable names in lower case); the environment overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the settings and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat-server: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("settings ok: {settings:?}");
        return ExitCode::SUCCESS;
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
        let addr = (settings.host, settings.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        layer4_chat_server::run(settings, listener, shutdown_signal()).await.map_err(anyhow::Error::from)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(())
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
