//! `l4chat`: try a chat server by hand.
//!
//! ```text
//! l4chat register ann 'correct horse'      # prints a token
//! l4chat login ann 'correct horse'
//! l4chat health
//! l4chat chat --token $TOKEN lobby         # lines typed are sent; messages are printed
//! echo hi | l4chat chat --token $TOKEN lobby # exits 0 once `hi` is stored
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use layer4_chat_client::protocol::Format;
use layer4_chat_client::{Client, ClientConfig, Event, http};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(version, about = "Talk to a layer4 chat server by hand")]
struct Args {
    /// Server address: http://host:port, or https://host (the WebSocket is then wss://).
    #[arg(long, global = true, env = "L4_SERVER", default_value = "http://127.0.0.1:3001")]
    server: String,
    /// PEM file of a private CA to trust besides the public roots (https:// and wss://).
    #[arg(long, global = true, env = "L4_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create an account and print its token.
    Register { username: String, password: String },
    /// Print a token for an existing account.
    Login { username: String, password: String },
    /// Print the worker's health JSON.
    Health,
    /// Join a room: print its messages, send each line read from stdin.
    Chat {
        room: String,
        #[arg(long, env = "L4_TOKEN")]
        token: String,
        /// Print the last N messages first.
        #[arg(long, default_value_t = 20)]
        history: u32,
        #[arg(long)]
        msgpack: bool,
        /// At the end of input, wait this long (seconds) for the server to store the
        /// lines sent; exit 1 if it has not.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("l4chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(ca) = &args.ca_file {
        layer4_chat_client::tls::trust_ca_file(ca).map_err(|e| anyhow::anyhow!("--ca-file {e}"))?;
    }
    match args.cmd {
        Cmd::Register { username, password } => {
            println!("{}", http::register(&args.server, &username, &password).await?.token)
        }
        Cmd::Login { username, password } => {
            println!("{}", http::login(&args.server, &username, &password).await?.token)
        }
        Cmd::Health => {
            let (status, _, body) = http::get(&args.server, "/api/health/websocket").await?;
            println!("{}", String::from_utf8_lossy(&body));
            anyhow::ensure!(status == 200, "HTTP {status}");
        }
        Cmd::Chat { room, token, history, msgpack, wait } => {
            let format = if msgpack { Format::MsgPack } else { Format::Json };
            chat(ClientConfig::new(ws_url(&args.server), token).format(format), &room, history, wait).await?;
        }
    }
    Ok(())
}

/// `http://host:port` -> `ws://host:port/ws`, `https://host` -> `wss://host/ws`.
fn ws_url(server: &str) -> String {
    let server = server.trim_end_matches('/');
    let url = match server.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some(("http", rest)) => format!("ws://{rest}"),
        _ => server.to_owned(),
    };
    format!("{url}/ws")
}

/// Prints the room and sends each line read; at the end of input it waits until every
/// line sent is stored (acked), so `echo hi | l4chat chat ROOM` exits 0 only once `hi`
/// is in the room. A refused token or a line the server refuses ends it with exit 1.
async fn chat(config: ClientConfig, room: &str, history: u32, wait: u64) -> anyhow::Result<()> {
    let mut client = Client::start(config);
    client.join(room).await?;
    client.history(room, None, Some(history)).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = std::collections::HashSet::new();
    let mut refused = 0;
    let mut input_done = false;
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(u64::MAX / 4));
    tokio::pin!(deadline);
    loop {
        if input_done && pending.is_empty() {
            client.close().await;
            anyhow::ensure!(refused == 0, "the server refused {refused} line(s)");
            return Ok(());
        }
        tokio::select! {
            line = lines.next_line(), if !input_done => match line? {
                Some(line) if !line.trim().is_empty() => { pending.insert(client.send(room, line.trim()).await?); }
                Some(_) => {}
                None => {
                    input_done = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + std::time::Duration::from_secs(wait));
                }
            },
            () = &mut deadline => anyhow::bail!("{} line(s) not stored within {wait} s", pending.len()),
            event = client.next_event() => match event {
                Some(Event::Message(m)) => println!("#{} {}: {}", m.seq, m.user, m.body),
                Some(Event::History { messages, .. }) => {
                    for m in messages { println!("#{} {}: {}", m.seq, m.user, m.body); }
                }
                Some(Event::Acked { id, .. }) => { pending.remove(&id); }
                Some(Event::Closed { reason }) => anyhow::bail!("{reason}"),
                Some(Event::Disconnected { reason, retry_in, .. }) => eprintln!("(disconnected: {reason}; retrying in {retry_in:?})"),
                Some(Event::Error { code, text, id, .. }) => {
                    eprintln!("(error {}: {text})", code.as_str());
                    // A line the server will never take is not waited for.
                    if let Some(id) = id.filter(|_| code.is_permanent_for_send()) && pending.remove(&id) {
                        refused += 1;
                    }
                }
                Some(_) => {}
                None => anyhow::bail!("the connection ended"),
            },
        }
    }
}
