//! `l4ctl-send`: POSTs crash reports for the daemon (README, "Crash reports").
//! Jobs arrive as JSON lines on stdin, outcomes leave as JSON lines on stdout;
//! it ends when stdin ends. Kept out of the daemon so that the daemon carries no
//! TLS stack.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use layer4_supervisor::crash::outbound::{SenderSettings, serve};

#[derive(Debug, Parser)]
#[command(version, about = "Deliver crash reports for l4ctl-daemon (jobs on stdin, outcomes on stdout)")]
struct Args {
    /// Per attempt, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Attempts after the first.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// PEM file of the certificates to trust instead of the bundled Mozilla roots.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = SenderSettings {
        timeout: Duration::from_millis(args.timeout_ms),
        retries: args.retries,
        ca_file: args.ca_file,
    };
    match serve(&settings, std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4ctl-send: {e}");
            ExitCode::FAILURE
        }
    }
}
