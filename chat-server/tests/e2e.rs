//! The production setup of the plan, end to end: `Client -> nginx -> 3 chat
//! workers under l4ctl -> PostgreSQL`, with Redis between the workers. 200
//! clients in four rooms, through a real nginx whose config `l4ctl nginx render`
//! wrote, keep sending while `l4ctl reload` replaces every worker and then while
//! one worker is SIGKILLed. Nothing may be lost, duplicated or reordered, no
//! health request through nginx may fail, and no connection attempt may be refused.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use layer4_chat_client::client::{Client, ClientConfig, Event};
use layer4_chat_client::protocol::Format;

use crate::cluster::Cluster;
use crate::fanout::Redis;
use crate::helper::{Backend, Database, SECRET, joined};

const CLIENTS: usize = 200;
const ROOMS: usize = 4;
/// Clients `0..SENDERS` also send, one message every `SEND_EVERY`.
const SENDERS: usize = 20;
const SEND_EVERY: Duration = Duration::from_millis(100);

/// nginx on a temp prefix, in front of `include`.
pub struct Nginx {
    args: Vec<String>,
}

impl Nginx {
    pub fn start(dir: &std::path::Path, include: &std::path::Path) -> Nginx {
        let d = dir.display();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n include {};\n}}\n",
            include.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let args: Vec<String> =
            ["-p", &format!("{d}/"), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")]
                .map(String::from)
                .to_vec();
        let out = Command::new("nginx").args(&args).output().expect("nginx is installed (.ci/test installs it)");
        assert!(out.status.success(), "nginx: {}", String::from_utf8_lossy(&out.stderr));
        Nginx { args }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx").args(&self.args).args(["-s", "stop"]).output();
    }
}

/// `n` clients of `url`, client `k` joined to `room{k % rooms}` (user `k + 1`);
/// `tweak` sets their reconnection and heartbeat.
pub async fn room_clients(url: &str, n: usize, rooms: usize, tweak: impl Fn(&mut ClientConfig)) -> Vec<Client> {
    let auth = layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap();
    let mut clients = Vec::new();
    for k in 0..n {
        let mut config = ClientConfig::new(url, auth.issue(k as i64 + 1, &format!("u{k}"))).format(Format::Json);
        tweak(&mut config);
        let mut client = Client::start(config);
        joined(&mut client, &format!("room{}", k % rooms)).await;
        clients.push(client);
    }
    clients
}

/// Sender `k` sends `"{k}-{i}"` to `room{k % rooms}` every `every` until `stop`; the
/// messages sent per room, and the tasks.
pub fn send_until(
    stop: &Arc<AtomicBool>,
    senders: Vec<layer4_chat_client::client::Sender>,
    rooms: usize,
    every: Duration,
) -> (Arc<Vec<AtomicU64>>, Vec<tokio::task::JoinHandle<()>>) {
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..rooms).map(|_| AtomicU64::new(0)).collect());
    let tasks = senders
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    s.send(&format!("room{}", k % rooms), &format!("{k}-{i}")).await.unwrap();
                    sent[k % rooms].fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(every).await;
                }
            })
        })
        .collect();
    (sent, tasks)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    /// Disconnections: when they happened (not when this test read them), the close
    /// code (None: no close frame, or a failed attempt) and why.
    drops: Vec<(Instant, Option<u16>, String)>,
}

/// Read `client`'s events until it has `target[room]` messages (set once the senders stop).
fn collect(mut client: Client, room: usize, target: Arc<Vec<AtomicU64>>) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while (seen.seqs.len() as u64) < target[room].load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), client.next_event()).await {
                Ok(Some(Event::Message(m))) => seen.seqs.push(m.seq),
                Ok(Some(Event::Disconnected { code, reason, at, .. })) => seen.drops.push((at, code, reason)),
                Ok(Some(Event::Closed { reason })) => panic!("client closed: {reason}"),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_a_reload_and_a_killed_worker_lose_refuse_and_reorder_nothing() {
    let (redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    // Held until nginx starts, so the workers' ports cannot take it.
    let nginx_hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nginx_port = nginx_hold.local_addr().unwrap().port();
    let nginx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let output = nginx_dir.join("layer4.conf");
    let section = format!(
        "[nginx]\nlisten = \"127.0.0.1:{nginx_port}\"\noutput = {:?}\naccess_log = {:?}\n",
        output.display().to_string(),
        nginx_dir.join("access.log").display().to_string()
    );
    let env = [
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", db.url.clone()),
        ("HEARTBEAT_INTERVAL", "2000".into()),
        ("CONNECTION_TIMEOUT", "10000".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(3, &env, &section));
    let out = cluster.l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}", cluster.diagnose(&out));
    drop(nginx_hold);
    let _nginx = Nginx::start(&nginx_dir, &output);

    // 200 clients through nginx, 50 per room.
    let url = format!("ws://127.0.0.1:{nginx_port}/ws");
    let clients = room_clients(&url, CLIENTS, ROOMS, |config| {
        config.backoff_base = Duration::from_millis(50);
        config.backoff_max = Duration::from_millis(500);
    })
    .await;
    let target: Arc<Vec<AtomicU64>> = Arc::new((0..ROOMS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let senders: Vec<_> = clients[..SENDERS].iter().map(Client::sender).collect();
    let seen: Vec<_> = clients.into_iter().enumerate().map(|(k, c)| collect(c, k % ROOMS, target.clone())).collect();

    // Health through nginx, on a new connection each time, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (health_total, health_failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let health = {
        let (stop, total, failed) = (stop.clone(), health_total.clone(), health_failed.clone());
        let base = format!("http://127.0.0.1:{nginx_port}");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = layer4_chat_client::http::get(&base, "/api/health/websocket").await;
                total.fetch_add(1, Ordering::Relaxed);
                if !matches!(got, Ok((200, _, _))) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("health through nginx failed: {got:?}");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (sent, sending) = send_until(&stop, senders, ROOMS, SEND_EVERY);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.pids();
    let reload_started = Instant::now();
    let out = tokio::task::block_in_place(|| cluster.l4(&["reload", "chat"]));
    let reload_ended = Instant::now();
    assert!(out.status.success(), "{}", cluster.diagnose(&out));
    let after = cluster.pids();
    assert!(
        before.iter().zip(&after).all(|(b, a)| b != a && a.is_some()),
        "every worker replaced: {before:?} -> {after:?}"
    );
    // The old workers drain after the reload answers (each over DRAIN_WINDOW): the
    // reload's window ends when the last of them is gone, and only then is a worker killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while before.iter().flatten().any(|&pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
        assert!(Instant::now() < deadline, "the old workers did not end: {before:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health_after_reload = health_failed.load(Ordering::Relaxed);
    let victim = after[1].unwrap() as i32;
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.status()["instances"][1]["state"] != "online" || cluster.pids()[1] == Some(victim as u64) {
        assert!(Instant::now() < deadline, "the killed worker did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for s in sending {
        s.await.unwrap();
    }
    health.await.unwrap();
    for (room, n) in sent.iter().enumerate() {
        target[room].store(n.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    let mut per_room: BTreeMap<usize, u64> = BTreeMap::new();
    let mut moved = 0;
    let deadline = Duration::from_secs(60);
    for (k, task) in seen.into_iter().enumerate() {
        let got = tokio::time::timeout(deadline, task)
            .await
            .unwrap_or_else(|_| panic!("client {k} did not get everything"))
            .unwrap();
        let room = k % ROOMS;
        let n = target[room].load(Ordering::Relaxed);
        assert_eq!(got.seqs, (1..=n).collect::<Vec<_>>(), "client {k} of room{room}: every message once, in order");
        *per_room.entry(room).or_default() = n;
        for (at, code, reason) in &got.drops {
            // From the reload until the kill: the old workers' drains (1012), nothing else.
            if (reload_started..killed_at).contains(at) {
                assert_eq!(
                    *code,
                    Some(1012),
                    "client {k}: during the reload only the drain's 1012 may end a connection ({reason})"
                );
                moved += 1;
            }
            assert!(
                !reason.contains("refused") && !reason.contains("HTTP 5"),
                "client {k}: a connection attempt failed: {reason}"
            );
        }
    }
    eprintln!(
        "messages per room {per_room:?}; {moved} connections moved by the reload; health requests through nginx: {} ({} failed); reload took {:.2} s",
        health_total.load(Ordering::Relaxed),
        health_failed.load(Ordering::Relaxed),
        (reload_ended - reload_started).as_secs_f64()
    );
    assert!(per_room.values().all(|n| *n > 20), "the senders kept sending: {per_room:?}");
    assert!(moved >= CLIENTS, "every client was moved off its old worker at least once ({moved} drains)");
    assert_eq!(health_after_reload, 0, "no health request through nginx failed during the reload");
    assert_eq!(health_failed.load(Ordering::Relaxed), 0, "nor while a worker was SIGKILLed and restarted");
}
