//! `l4load soak`: a population of chat users for a long run under faults (bench/soak.sh).
//!
//! `--clients` clients, each in one of `--rooms` rooms (client i in room i mod rooms, with
//! token i mod the lines of `--tokens`), come and go until `--secs` have passed: a visit
//! (see [`visit`]) lasts `--stay-min`..`--stay-max` seconds, then the client is away
//! `--away-min`..`--away-max` seconds and comes back as a new client. Each sends a message
//! every `--send-every` seconds and keeps the plan's client heartbeat (a ping after
//! `--ping-after` s of silence, a reconnect after `--pong-timeout` s more). `--flaky-percent`
//! of the clients reach the server through a [`link`] that drops for `--drop-min`..
//! `--drop-max` seconds after each `--up-min`..`--up-max` seconds up.
//!
//! The report (JSON on stdout) is the clients' own view (see [`tally`]); `--records` gets a
//! JSON line for every connection that ended and every attempt that failed, every link drop,
//! and every visit that did not get all of its messages, for the driver to explain.

mod link;
mod tally;
mod visit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use layer4_chat_client::ClientConfig;
use serde_json::json;
use tokio::time::Instant;

use crate::Common;
use crate::net::{on_threads, threads};
use link::{Link, Schedule};
use tally::{Tally, add, unix_ms};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bearer tokens, one per line: client i uses line i mod their number.
    #[arg(long)]
    pub tokens: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Seconds from the start until every client leaves.
    #[arg(long)]
    pub secs: f64,
    #[arg(long, default_value_t = 60.0)]
    pub stay_min: f64,
    #[arg(long, default_value_t = 1200.0)]
    pub stay_max: f64,
    #[arg(long, default_value_t = 5.0)]
    pub away_min: f64,
    #[arg(long, default_value_t = 60.0)]
    pub away_max: f64,
    #[arg(long, default_value_t = 30.0)]
    pub send_every: f64,
    #[arg(long, default_value_t = 1.0)]
    pub flaky_percent: f64,
    #[arg(long, default_value_t = 5.0)]
    pub drop_min: f64,
    #[arg(long, default_value_t = 60.0)]
    pub drop_max: f64,
    #[arg(long, default_value_t = 30.0)]
    pub up_min: f64,
    #[arg(long, default_value_t = 180.0)]
    pub up_max: f64,
    #[arg(long, default_value_t = 45.0)]
    pub ping_after: f64,
    #[arg(long, default_value_t = 15.0)]
    pub pong_timeout: f64,
    /// Seconds a leaving client waits for its goodbye to come back and its sends to be acked.
    #[arg(long, default_value_t = 60.0)]
    pub leave_timeout: f64,
    /// JSON lines: connections ended, attempts failed, link drops, incomplete visits.
    #[arg(long)]
    pub records: PathBuf,
}

struct Setup {
    args: SoakArgs,
    tokens: Vec<String>,
    upstream: SocketAddr,
    /// The URL's path and query, for a flaky client's relay.
    path: String,
    tally: Tally,
    start: Instant,
    deadline: Instant,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn range(low: f64, high: f64) -> Duration {
    secs(if high > low { rand::random_range(low..high) } else { low })
}

pub fn run(args: SoakArgs) -> anyhow::Result<String> {
    let tokens: Vec<String> = std::fs::read_to_string(&args.tokens)
        .with_context(|| format!("--tokens {}", args.tokens.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if tokens.is_empty() || args.clients == 0 || args.rooms == 0 {
        bail!("need at least one token, one client and one room");
    }
    let url = url::Url::parse(&args.common.url).context("bad --url")?;
    if url.scheme() != "ws" {
        bail!("soak speaks ws:// only (its flaky links relay plain TCP)");
    }
    let upstream = SocketAddr::from(([127, 0, 0, 1], url.port().unwrap_or(80)));
    let path = format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default());
    let records =
        std::fs::File::create(&args.records).with_context(|| format!("--records {}", args.records.display()))?;
    let tally = Tally::new(Box::new(std::io::BufWriter::new(records)))?;
    let start = Instant::now();
    let deadline = start + secs(args.secs);
    let threads = threads(&args.common);
    let setup = Arc::new(Setup { args, tokens, upstream, path, tally, start, deadline });
    let wall = std::time::Instant::now();
    let per_thread = setup.clone();
    on_threads(threads, move |t, n| {
        let setup = per_thread.clone();
        async move {
            let mut clients = tokio::task::JoinSet::new();
            for i in (t..setup.args.clients).step_by(n) {
                clients.spawn(client(setup.clone(), i));
            }
            while clients.join_next().await.is_some() {}
        }
    });
    setup.tally.flush();
    let a = &setup.args;
    let mut report = setup.tally.report(wall.elapsed());
    report["clients"] = json!(a.clients);
    report["rooms"] = json!(a.rooms);
    report["flaky_clients"] = json!(flaky_count(a));
    Ok(report.to_string())
}

fn flaky_count(a: &SoakArgs) -> usize {
    ((a.clients as f64) * a.flaky_percent / 100.0).round() as usize
}

/// One client's life: its visits, one after another, until the deadline.
async fn client(setup: Arc<Setup>, i: usize) {
    let a = &setup.args;
    let rate = f64::from(a.common.connect_rate.max(1));
    tokio::time::sleep_until(setup.start + secs(i as f64 / rate)).await;
    let mut url = a.common.url.clone();
    let mut link = None;
    if i < flaky_count(a) {
        match Link::start(setup.upstream).await {
            Ok(l) => {
                url = format!("ws://127.0.0.1:{}{}", l.port, setup.path);
                let schedule =
                    Schedule { up: (secs(a.up_min), secs(a.up_max)), down: (secs(a.drop_min), secs(a.drop_max)) };
                let runner = setup.clone();
                tokio::spawn(l.clone().run(schedule, setup.deadline, move |down| {
                    let c = &runner.tally.counts;
                    add(&c.link_drops, 1);
                    add(&c.link_down_ms, (down * 1000.0) as u64);
                    runner.tally.record(json!({"kind": "link_down", "t": unix_ms(SystemTime::now()), "client": i,
                        "secs": down}));
                }));
                link = Some(l);
            }
            Err(e) => eprintln!("l4load: client {i}: no relay for its flaky link: {e}"),
        }
    }
    let room_no = (i % a.rooms) as u32;
    let room = format!("soak-{room_no}");
    let mut config = ClientConfig::new(url, setup.tokens[i % setup.tokens.len()].clone());
    config.ping_after = secs(a.ping_after);
    config.pong_timeout = secs(a.pong_timeout);
    loop {
        let now = Instant::now();
        // A visit is at least `--stay-min` long: none starts too close to the end.
        if now + secs(a.stay_min) > setup.deadline {
            break;
        }
        let leave_at = (now + range(a.stay_min, a.stay_max)).min(setup.deadline);
        visit::visit(visit::Plan {
            tally: &setup.tally,
            config: config.clone(),
            client_no: i,
            room: &room,
            room_no,
            leave_at,
            leave_timeout: secs(a.leave_timeout),
            send_every: secs(a.send_every),
            link: link.as_deref(),
        })
        .await;
        let away = range(a.away_min, a.away_max);
        if Instant::now() + away >= setup.deadline {
            break;
        }
        tokio::time::sleep(away).await;
    }
}
