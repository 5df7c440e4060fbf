//! `l4load`: a bounded load generator for the chat server (and, for comparison, any
//! WebSocket broadcast server), on loopback only.
//!
//! - `idle`: open N connections at a fixed rate, hold them, report handshake latency and
//!   the server's RSS per connection (`--watch-pid`).
//! - `fanout`: N subscribers and P publishers in one room; publish at a fixed, open-loop
//!   rate (message j is due at start + j/rate, and its latency is measured from that
//!   due time, so a stalled server cannot hide its backlog); report deliveries/s, loss,
//!   latency percentiles and the server's CPU per delivery (`--watch-pid`).
//! - `soak`: a population of chat users coming and going in many rooms for a long run,
//!   some on flaky links, with every delivery checked (see `soak`).
//!
//! `--protocol l4` speaks the chat protocol (join a room, `send`, read `message`);
//! `--protocol raw` sends the payload as a bare text frame, for servers that broadcast
//! every frame to every client (the Node `ws` README recipe). Every phase has a deadline,
//! and hosts other than 127.0.0.1/localhost are refused.

mod api;
mod fanout;
mod idle;
mod net;
mod proc;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    L4,
    Raw,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// WebSocket URL (loopback only): ws://, or wss:// (TLS, e.g. through a local nginx).
    #[arg(long, default_value = "ws://127.0.0.1:3001/ws")]
    pub url: String,
    /// PEM file of a private CA to trust besides the public roots (wss://).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Bearer token for the chat server (from `l4chat register`).
    #[arg(long, env = "L4_TOKEN", default_value = "")]
    pub token: String,
    #[arg(long, value_enum, default_value = "l4")]
    pub protocol: Protocol,
    /// Client threads (one single-threaded runtime each); default: number of CPUs.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Server pid whose RSS and CPU to read from /proc.
    #[arg(long)]
    pub watch_pid: Option<i32>,
    /// More server pids whose CPU counts with `--watch-pid`'s (several workers, Redis).
    #[arg(long, value_delimiter = ',')]
    pub also_watch: Vec<i32>,
    /// New connections per second.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
}

#[derive(Debug, Parser)]
#[command(version, about = "Bounded WebSocket load generator for layer4 (loopback only)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Open and hold idle connections.
    Idle(idle::IdleArgs),
    /// One room: subscribers, publishers, a fixed publish rate.
    Fanout(fanout::FanoutArgs),
    /// Chat users coming and going for a long run, some on flaky links (bench/soak.sh).
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let common = match &args.cmd {
        Cmd::Idle(a) => &a.common,
        Cmd::Fanout(a) => &a.common,
        Cmd::Soak(a) => &a.common,
    };
    if let Err(e) = net::check_loopback(&common.url) {
        eprintln!("l4load: {e}");
        return ExitCode::from(2);
    }
    if let Some(ca) = &common.ca_file
        && let Err(e) = layer4_chat_client::tls::trust_ca_file(ca)
    {
        eprintln!("l4load: --ca-file {e}");
        return ExitCode::from(2);
    }
    proc::raise_nofile();
    let result = match args.cmd {
        Cmd::Idle(a) => idle::run(a),
        Cmd::Fanout(a) => fanout::run(a),
        Cmd::Soak(a) => soak::run(a),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("l4load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
