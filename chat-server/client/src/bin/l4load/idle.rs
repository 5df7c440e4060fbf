//! `l4load idle`: open `--connections` at `--connect-rate`, hold them `--hold` seconds
//! while answering pings, and report handshake latency and the server's RSS growth per
//! connection (RSS at the end of the hold minus RSS before, over connections held).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::net::{connect, on_threads, threads};
use crate::{Common, proc};

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
}

pub fn run(args: IdleArgs) -> anyhow::Result<String> {
    let common = Arc::new(args.common.clone());
    let n = args.connections;
    let threads = threads(&common);
    let rss_before = common.watch_pid.and_then(proc::rss);
    let start = Instant::now();
    let connect_window = Duration::from_secs_f64(n as f64 / f64::from(common.connect_rate.max(1)));
    let hold_until = start + connect_window + Duration::from_secs(10) + Duration::from_secs_f64(args.hold);
    let connected = Arc::new(AtomicU64::new(0));
    let closed_early = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (connected, pid) = (connected.clone(), common.watch_pid);
        std::thread::spawn(move || {
            let mut max = 0;
            while Instant::now() < hold_until {
                if let Some(rss) = pid.and_then(proc::rss) {
                    max = max.max(rss);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = connected;
            (max, pid.and_then(proc::rss))
        })
    };
    let results = on_threads(threads, {
        let (common, connected, closed_early) = (common.clone(), connected.clone(), closed_early.clone());
        move |t, threads| {
            let (common, connected, closed_early) = (common.clone(), connected.clone(), closed_early.clone());
            async move {
                let mine: Vec<usize> = (t..n).step_by(threads).collect();
                let mut handshakes = Histogram::<u64>::new(3).expect("histogram");
                let mut failures: Vec<String> = Vec::new();
                let mut tasks = Vec::with_capacity(mine.len());
                for i in mine {
                    let due = start + Duration::from_secs_f64(i as f64 / f64::from(common.connect_rate.max(1)));
                    tokio::time::sleep_until(due.into()).await;
                    let begun = Instant::now();
                    match connect(&common).await {
                        Ok(mut ws) => {
                            let _ = handshakes.record(begun.elapsed().as_micros() as u64);
                            connected.fetch_add(1, Relaxed);
                            let closed_early = closed_early.clone();
                            tasks.push(tokio::spawn(async move {
                                let end = tokio::time::Instant::from_std(hold_until);
                                loop {
                                    match tokio::time::timeout_at(end, ws.next()).await {
                                        Err(_) => break,
                                        Ok(Some(Ok(_))) => continue,
                                        Ok(_) => {
                                            closed_early.fetch_add(1, Relaxed);
                                            break;
                                        }
                                    }
                                }
                                ws
                            }));
                        }
                        Err(e) => failures.push(format!("{e:#}")),
                    }
                }
                // Keep every socket open until all threads are past the hold.
                let mut sockets = Vec::with_capacity(tasks.len());
                for task in tasks {
                    if let Ok(ws) = task.await {
                        sockets.push(ws);
                    }
                }
                (handshakes, failures, sockets.len())
            }
        }
    });
    let (max_rss, end_rss) = watcher.join().unwrap_or((0, None));
    let mut handshakes = Histogram::<u64>::new(3)?;
    let mut failures = Vec::new();
    for (h, f, _) in &results {
        handshakes.add(h)?;
        failures.extend(f.iter().cloned());
    }
    let held = connected.load(Relaxed).saturating_sub(closed_early.load(Relaxed));
    let per_conn = match (rss_before, end_rss) {
        (Some(before), Some(end)) if held > 0 => Some((end.saturating_sub(before)) as f64 / held as f64),
        _ => None,
    };
    failures.sort();
    failures.dedup();
    Ok(json!({
        "mode": "idle",
        "connections": n,
        "connected": connected.load(Relaxed),
        "failed": n as u64 - connected.load(Relaxed),
        "errors": failures.iter().take(5).collect::<Vec<_>>(),
        "closed_during_hold": closed_early.load(Relaxed),
        "handshake_ms": { "p50": handshakes.value_at_quantile(0.5) as f64 / 1e3, "p99": handshakes.value_at_quantile(0.99) as f64 / 1e3, "max": handshakes.max() as f64 / 1e3 },
        "server_rss_before": rss_before,
        "server_rss_max": max_rss,
        "server_rss_end": end_rss,
        "server_bytes_per_connection": per_conn,
    })
    .to_string())
}
