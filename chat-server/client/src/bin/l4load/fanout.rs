//! `l4load fanout`: `--rooms` rooms (one by default), `--subscribers` readers and
//! `--publishers` writers spread over them round-robin (reader `i` and writer `p` in
//! room `i % rooms` and `p % rooms`), an open-loop publish schedule of `--rate`
//! messages/s (all rooms together) for `--secs`, then up to `--drain` seconds for the
//! last deliveries. A message is expected by every connected reader of its room.
//!
//! Each payload carries its *scheduled* send time (ns since the shared start), so latency
//! includes any time the message spent queued anywhere, publisher included. A run is
//! "clean" when nothing was lost, p99 < 50 ms and the rate was kept (every message sent,
//! schedule lag p99 <= 20 ms, no send failed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::net::{Ws, connect, on_threads, threads};
use crate::{Common, Protocol, proc};

#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Frame size in bytes (the payload is padded to it).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Seconds between the last connection and the first message.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Rooms `<room>-0` ... (with more than one); `--publishers` must be a multiple.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Post through the HTTP API for the app's backend with this API key (the chat
    /// server's `API_KEYS`) instead of sending on the publishers' WebSockets.
    #[arg(long)]
    pub api_key: Option<String>,
}

struct Shared {
    args: FanoutArgs,
    run: u32,
    t0: OnceLock<Instant>,
    barrier: Barrier,
    received: AtomicU64,
    sent: AtomicU64,
    /// Per room: messages sent to it, and its readers that joined.
    sent_to: Vec<AtomicU64>,
    members: Vec<AtomicU64>,
    send_failures: AtomicU64,
    publisher_frames: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    lag: Mutex<Histogram<u64>>,
    expected_total: u64,
    connect_failures: Mutex<Vec<String>>,
}

/// A frame of `args.size` bytes. Ids start with a per-run prefix: the chat server treats a
/// repeated (user, id) as a resend and would not deliver it again.
fn payload(args: &FanoutArgs, run: u32, publisher: usize, j: u64, ts: u64) -> String {
    let (head, tail) = match args.common.protocol {
        Protocol::L4 => (
            format!(
                r#"{{"type":"send","room":"{}","id":"{run:x}-{publisher}-{j}","body":"t={ts} "#,
                room_name(args, publisher)
            ),
            "\"}".to_string(),
        ),
        Protocol::Raw => (format!(r#"{{"t":{ts},"id":"{run:x}-{publisher}-{j}","p":""#), "\"}".to_string()),
    };
    let pad = args.size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// The scheduled time carried by a delivered frame: `t=<ns>` (l4 body) or `"t":<ns>` (raw).
fn timestamp(frame: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(frame, b"t=")
        .map(|i| i + 2)
        .or_else(|| memchr::memmem::find(frame, b"\"t\":").map(|i| i + 4))?;
    let mut value: u64 = 0;
    let mut digits = 0;
    for b in frame[at..].iter().take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(value)
}

/// The room of reader or writer `index`.
fn room_name(args: &FanoutArgs, index: usize) -> String {
    if args.rooms <= 1 { args.room.clone() } else { format!("{}-{}", args.room, index % args.rooms) }
}

async fn join(ws: &mut Ws, shared: &Shared, room: &str) -> anyhow::Result<()> {
    if shared.args.common.protocol == Protocol::Raw {
        return Ok(());
    }
    let first = ws.next().await; // welcome
    anyhow::ensure!(matches!(first, Some(Ok(_))), "no welcome");
    ws.send(Message::Text(format!(r#"{{"type":"join","room":"{room}"}}"#).into())).await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(t) = frame?
            && t.contains(r#""type":"joined""#)
        {
            return Ok(());
        }
    }
    anyhow::bail!("closed before joined")
}

pub fn run(args: FanoutArgs) -> anyhow::Result<String> {
    anyhow::ensure!(args.rooms >= 1, "--rooms must be at least 1");
    anyhow::ensure!(args.publishers.is_multiple_of(args.rooms), "--publishers must be a multiple of --rooms");
    let total_messages = (args.rate * args.secs).round() as u64;
    let shared = Arc::new(Shared {
        // Each message reaches the readers of its room (an even share of them).
        expected_total: total_messages * (args.subscribers / args.rooms) as u64,
        sent_to: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        members: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        run: rand::random(),
        t0: OnceLock::new(),
        barrier: Barrier::new(threads(&args.common)),
        received: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        send_failures: AtomicU64::new(0),
        publisher_frames: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new(3)?),
        lag: Mutex::new(Histogram::new(3)?),
        connect_failures: Mutex::new(Vec::new()),
        args,
    });
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (shared, done) = (shared.clone(), done.clone());
        std::thread::spawn(move || {
            while shared.t0.get().is_none() && !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let common = &shared.args.common;
            let pids: Vec<i32> = common.watch_pid.into_iter().chain(common.also_watch.iter().copied()).collect();
            let (server0, client0) = (proc::cpu_of(&pids), proc::cpu(None));
            let began = Instant::now();
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let (server1, client1) = (proc::cpu_of(&pids), proc::cpu(None));
            let server = server0.zip(server1).map(|(a, b)| Spent {
                total: (b.total() - a.total()).as_secs_f64(),
                user: (b.user - a.user).as_secs_f64(),
            });
            let client = client0.zip(client1).map(|(a, b)| (b.total() - a.total()).as_secs_f64());
            (server, client, began.elapsed().as_secs_f64())
        })
    };
    let threads = threads(&shared.args.common);
    on_threads(threads, {
        let shared = shared.clone();
        move |t, threads| thread_main(shared.clone(), t, threads)
    });
    done.store(true, Relaxed);
    let (server, client_cpu, window) = sampler.join().unwrap_or((None, None, 0.0));
    Ok(report(&shared, total_messages, server, client_cpu, window))
}

async fn thread_main(shared: Arc<Shared>, t: usize, threads: usize) {
    let a = &shared.args;
    let start = Instant::now();
    let (mut subs, mut pubs) = (Vec::new(), Vec::new());
    // Connections are spread round-robin; subscribers first, then publishers.
    let total = a.subscribers + a.publishers;
    for i in (t..total).step_by(threads) {
        let due = start
            + Duration::from_secs_f64((i / threads) as f64 * threads as f64 / f64::from(a.common.connect_rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let index = if i < a.subscribers { i } else { i - a.subscribers };
        let connected = async {
            let mut ws = connect(&a.common).await?;
            join(&mut ws, &shared, &room_name(a, index)).await?;
            anyhow::Ok(ws)
        };
        match tokio::time::timeout(Duration::from_secs(20), connected).await {
            Ok(Ok(ws)) if i < a.subscribers => {
                shared.members[i % a.rooms].fetch_add(1, Relaxed);
                subs.push(ws)
            }
            Ok(Ok(ws)) => pubs.push((i - a.subscribers, ws)),
            Ok(Err(e)) => shared.connect_failures.lock().expect("lock").push(format!("{e:#}")),
            Err(_) => shared.connect_failures.lock().expect("lock").push("connect timed out".into()),
        }
    }
    let waiter = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || {
            if shared.barrier.wait().is_leader() {
                let _ = shared.t0.set(Instant::now() + Duration::from_secs_f64(shared.args.settle));
            }
        }
    });
    let _ = waiter.await;
    while shared.t0.get().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let t0 = *shared.t0.get().expect("set");
    let publish_end = t0 + Duration::from_secs_f64(a.secs);
    let deadline = publish_end + Duration::from_secs_f64(a.drain);
    let mut tasks = Vec::new();
    for ws in subs {
        tasks.push(tokio::spawn(subscriber(shared.clone(), ws, t0, deadline)));
    }
    for (p, ws) in pubs {
        tasks.push(tokio::spawn(publisher(shared.clone(), ws, p, t0, deadline)));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Reads a subscriber's frames straight off the socket once it has joined: one read
/// takes every frame that arrived, so the generator does not cost more per delivery than
/// the servers it measures. Server frames are unmasked; pings are answered with pongs.
async fn subscriber(shared: Arc<Shared>, ws: Ws, t0: Instant, deadline: Instant) {
    match ws.into_inner() {
        MaybeTlsStream::Plain(stream) => read_frames(shared, stream, t0, deadline).await,
        MaybeTlsStream::Rustls(stream) => read_frames(shared, stream, t0, deadline).await,
        _ => {}
    }
}

/// The subscriber's loop on its socket, TLS or not.
async fn read_frames<S>(shared: Arc<Shared>, mut stream: S, t0: Instant, deadline: Instant)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut latencies: Vec<u64> = Vec::with_capacity(256);
    let flush = |latencies: &mut Vec<u64>| {
        shared.received.fetch_add(latencies.len() as u64, Relaxed);
        let mut h = shared.latency.lock().expect("lock");
        for l in latencies.drain(..) {
            let _ = h.record(l);
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    'read: loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0); // a frame larger than the buffer
        }
        let n = match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf[len..])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        len += n;
        let now = t0.elapsed().as_nanos() as u64;
        let mut pos = 0;
        while let Some((opcode, payload, size)) = parse_frame(&buf[pos..len]) {
            match opcode {
                0x1 | 0x2 => {
                    if let Some(ts) = timestamp(&buf[pos..len][payload]) {
                        latencies.push(now.saturating_sub(ts) / 1000);
                    }
                }
                0x8 => break 'read,
                0x9 => {
                    let ping = buf[pos..len][payload].to_vec();
                    // Flushed: a TLS stream holds what is written until then.
                    if stream.write_all(&pong(&ping)).await.is_err() || stream.flush().await.is_err() {
                        break 'read;
                    }
                }
                _ => {}
            }
            pos += size;
        }
        buf.copy_within(pos..len, 0);
        len -= pos;
        if latencies.len() >= 256 {
            flush(&mut latencies);
            if shared.received.load(Relaxed) >= shared.expected_total {
                break;
            }
        }
    }
    flush(&mut latencies);
}

/// (opcode, payload range, frame size) of the unmasked frame at the start of `b`, if whole.
fn parse_frame(b: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&first, &second) = (b.first()?, b.get(1)?);
    let (len, start) = match second & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize, 10),
        l => (l as usize, 2),
    };
    (b.len() >= start + len).then_some((first & 0x0f, start..start + len, start + len))
}

/// A client pong (masked, as every client frame must be; the zero mask leaves the bytes as they are).
fn pong(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x8a, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload[..payload.len().min(125)]);
    frame
}

async fn publisher(shared: Arc<Shared>, ws: Ws, p: usize, t0: Instant, deadline: Instant) {
    let a = &shared.args;
    let (mut sink, mut stream) = ws.split();
    let reader = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline.into(), stream.next()).await {
                shared.publisher_frames.fetch_add(1, Relaxed);
            }
        })
    };
    let total = (a.rate * a.secs).round() as u64;
    let mut lags = Vec::new();
    let mut poster = match &a.api_key {
        Some(key) => match crate::api::Poster::connect(&a.common.url, &room_name(a, p), key).await {
            Ok(p) => Some(p),
            Err(e) => {
                shared.connect_failures.lock().expect("lock").push(e.to_string());
                None
            }
        },
        None => None,
    };
    for j in (p as u64..total).step_by(a.publishers) {
        let due = t0 + Duration::from_secs_f64(j as f64 / a.rate);
        tokio::time::sleep_until(due.into()).await;
        lags.push(Instant::now().saturating_duration_since(due).as_micros() as u64);
        let ts = (due - t0).as_nanos() as u64;
        let sent = match (&mut poster, &a.api_key) {
            (Some(poster), _) => {
                let body = format!("t={ts} {}", "x".repeat(a.size.saturating_sub(40)));
                poster.post(&format!("{:x}-{p}-{j}", shared.run), &body).await.map_err(|e| e.to_string())
            }
            (None, Some(_)) => Err("no API connection".to_owned()),
            (None, None) => {
                sink.send(Message::Text(payload(a, shared.run, p, j, ts).into())).await.map_err(|e| e.to_string())
            }
        };
        match sent {
            Ok(()) => {
                shared.sent.fetch_add(1, Relaxed);
                shared.sent_to[p % a.rooms].fetch_add(1, Relaxed);
            }
            Err(_) => {
                shared.send_failures.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    {
        let mut h = shared.lag.lock().expect("lock");
        for l in lags {
            let _ = h.record(l);
        }
    }
    let _ = reader.await;
}

/// A process's CPU seconds over the window: all of it, and the part in user space.
#[derive(Debug, Clone, Copy)]
struct Spent {
    total: f64,
    user: f64,
}

fn report(shared: &Shared, total: u64, server: Option<Spent>, client_cpu: Option<f64>, window: f64) -> String {
    let a = &shared.args;
    let latency = shared.latency.lock().expect("lock");
    let lag = shared.lag.lock().expect("lock");
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    let sent = shared.sent.load(Relaxed);
    let received = shared.received.load(Relaxed);
    let expected: u64 = shared
        .sent_to
        .iter()
        .zip(&shared.members)
        .map(|(sent, members)| sent.load(Relaxed) * members.load(Relaxed))
        .sum();
    let loss = if expected == 0 { 0.0 } else { 100.0 * (expected.saturating_sub(received)) as f64 / expected as f64 };
    let lag_p99_ms = lag.value_at_quantile(0.99) as f64 / 1e3;
    let rate_kept = sent == total && lag_p99_ms <= 20.0 && shared.send_failures.load(Relaxed) == 0;
    let server_cpu = server.map(|s| s.total);
    let per_delivery = server_cpu.filter(|_| received > 0).map(|s| s * 1e6 / received as f64);
    // The loopback receive path runs in the sender's context and counts as its system
    // time: user-space CPU is what the server's own code costs.
    let user_per_delivery = server.filter(|_| received > 0).map(|s| s.user * 1e6 / received as f64);
    let mut failures = shared.connect_failures.lock().expect("lock").clone();
    failures.dedup();
    json!({
        "mode": "fanout",
        "via": if a.api_key.is_some() { "api" } else { "websocket" },
        "protocol": format!("{:?}", a.common.protocol).to_lowercase(),
        "subscribers": a.subscribers,
        "publishers": a.publishers,
        "rooms": a.rooms,
        "rate": a.rate,
        "size": a.size,
        "secs": a.secs,
        "connect_failures": failures.len(),
        "connect_errors": failures.iter().take(3).collect::<Vec<_>>(),
        "sent": sent,
        "target": total,
        "lag_p99_ms": lag_p99_ms,
        "expected": expected,
        "received": received,
        "deliveries_per_s": received as f64 / a.secs,
        "loss_percent": loss,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1e3 },
        "publisher_frames": shared.publisher_frames.load(Relaxed),
        "server_cpu_s": server_cpu,
        "server_cpu_percent": server_cpu.map(|s| 100.0 * s / window.max(1e-9)),
        "server_us_per_delivery": per_delivery,
        "server_user_s": server.map(|s| s.user),
        "server_user_us_per_delivery": user_per_delivery,
        "client_cpu_s": client_cpu,
        "window_s": window,
        "rate_kept": rate_kept,
        "clean": rate_kept && loss == 0.0 && ms(0.99) < 50.0,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_whole_and_only_whole() {
        let mut bytes = vec![0x81, 3, b'a', b'b', b'c', 0x89, 0];
        assert_eq!(parse_frame(&bytes), Some((1, 2..5, 5)));
        assert_eq!(parse_frame(&bytes[5..]), Some((9, 2..2, 2)));
        assert_eq!(parse_frame(&bytes[..4]), None);
        bytes = vec![0x82, 126, 1, 0];
        bytes.extend(std::iter::repeat_n(7, 256));
        assert_eq!(parse_frame(&bytes), Some((2, 4..260, 260)));
        assert_eq!(pong(b"hi"), vec![0x8a, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn timestamps_are_found_in_both_payload_shapes() {
        assert_eq!(timestamp(br#"{"type":"message","body":"t=123 xx","ts":9}"#), Some(123));
        assert_eq!(timestamp(br#"{"t":456,"id":"p-1","p":"xx"}"#), Some(456));
        assert_eq!(timestamp(br#"{"type":"ack","id":"p0-1","seq":3}"#), None);
    }
}
