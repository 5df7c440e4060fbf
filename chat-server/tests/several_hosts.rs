//! README "Several hosts", on real hosts: three network namespaces joined by a
//! bridge, each running its own `l4ctl` with 2 chat-server workers on its own
//! address; PostgreSQL and Redis (a primary, its replica and three sentinels,
//! all private processes of the test) in a fourth; one nginx in the root
//! namespace, rendered by `l4ctl nginx render` from all three hosts' tables and
//! followed by host 0's daemon (`auto_reload`). 300 clients through nginx in 6
//! rooms, 30 of them sending, while: a rolling reload across the hosts; host 2's
//! link cut for 10 s; the Redis primary SIGKILLed; PostgreSQL restarted. Every
//! client gets every message of its room once and in order; health through
//! nginx fails only while host 2 is cut (and answers 503 `degraded`, by design,
//! while the database restarts). As root only (`.ci/test`); skipped otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use layer4_chat_client::client::{Client, Event};
use layer4_chat_client::protocol::ErrorCode;

use crate::e2e::{Nginx, room_clients, send_until};
use crate::helper::SECRET;
use crate::netns::{Net, Postgres};
use crate::redis_sentinel::{SentinelSet, query, until};

const HOSTS: usize = 3;
const CLIENTS: usize = 300;
const ROOMS: usize = 6;
const SENDERS: usize = 30;
const SEND_EVERY: Duration = Duration::from_millis(200);
const TOKEN: &str = "several-hosts-token-0123456789";

fn l4ctl() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_chat-server")).with_file_name("l4ctl")
}

/// One host's l4ctl: its folder and config.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn l4(&self, args: &[&str]) -> Output {
        Command::new(l4ctl())
            .arg("--config")
            .arg(self.dir.join("l4.toml"))
            .args(args)
            .current_dir(&self.dir)
            .env("L4_TEST_TOKEN", TOKEN)
            .env_remove("L4_HOME")
            .env_remove("L4_CONFIG")
            .output()
            .unwrap()
    }

    fn pids(&self) -> Vec<u64> {
        let out = self.l4(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["instances"].as_array().into_iter().flatten().filter_map(|i| i["pid"].as_u64()).collect()
    }

    /// Every line about nginx in its logs.
    fn nginx_lines(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten() {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            body.lines().filter(|l| l.contains("nginx")).for_each(|l| text.push_str(&format!("{l}\n")));
        }
        text
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten() {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(40).collect();
            text.push_str(&format!(
                "--- {}\n{}\n",
                entry.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        text
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.l4(&["kill"]);
    }
}

/// What one client saw of its room.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    bodies: Vec<String>,
    /// Sends the server could not store (`unavailable`), resent by the client.
    unavailable: usize,
    reconnects: usize,
}

fn collect(mut client: Client, room: usize, target: Arc<Vec<AtomicU64>>) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while (seen.seqs.len() as u64) < target[room].load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), client.next_event()).await {
                Ok(Some(Event::Message(m))) => {
                    seen.seqs.push(m.seq);
                    seen.bodies.push(m.body);
                }
                Ok(Some(Event::Error { code: ErrorCode::Unavailable, .. })) => seen.unavailable += 1,
                Ok(Some(Event::Disconnected { .. })) => seen.reconnects += 1,
                Ok(Some(Event::Closed { reason })) => panic!("client closed: {reason}"),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_behind_one_nginx_survive_a_reload_a_cut_link_a_redis_failover_and_a_database_restart() {
    let Some(net) = Net::create(HOSTS + 1) else { return };
    let tmp = tempfile::Builder::new().prefix("l4hosts").tempdir().unwrap();
    let db_ns = HOSTS;
    let db_ip = net.address(db_ns);
    let mut pg = tokio::task::block_in_place(|| Postgres::start(&net, db_ns, tmp.path()));
    let redis_dir = tmp.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let spawn = |args: &[&str]| {
        let mut c = net.cmd(db_ns, "redis-server");
        c.args(args);
        c
    };
    let mut redis = tokio::task::block_in_place(|| {
        SentinelSet::start_on(&redis_dir, &db_ip, [6379, 6380, 26379, 26380, 26381], &spawn, None)
    });

    // Three hosts; host 0 holds [nginx] with the two others.
    let nginx_hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nginx_port = nginx_hold.local_addr().unwrap().port();
    let nginx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let output = nginx_dir.join("layer4.conf");
    let d = nginx_dir.display();
    let nginx_reload = format!("nginx -p {d}/ -e {d}/error.log -c {d}/nginx.conf -s reload");
    let mut hosts = Vec::new();
    for h in 0..HOSTS {
        let dir = tmp.path().join(format!("host{h}"));
        std::fs::create_dir_all(&dir).unwrap();
        let others: Vec<String> = (0..HOSTS)
            .filter(|o| *o != h)
            .map(|o| format!("{{ api = \"http://{}:9615\", token_env = \"L4_TEST_TOKEN\" }}", net.address(o)))
            .collect();
        let nginx = if h == 0 {
            format!(
                "[nginx]\nlisten = \"127.0.0.1:{nginx_port}\"\noutput = {:?}\naccess_log = \"off\"\nauto_reload = true\ninterval = \"1s\"\nstale_after = \"2m\"\nfail_timeout = \"10s\"\nmax_fails = 1\nproxy_connect_timeout = \"1s\"\nreload_command = {nginx_reload:?}\nhosts = [{}]\n",
                output.display().to_string(),
                others.join(", ")
            )
        } else {
            String::new()
        };
        let config = format!(
            "[daemon]\nhome = \"run\"\nlog_dir = \"logs\"\napi_listen = \"{ip}:9615\"\napi_token_env = \"L4_TEST_TOKEN\"\n\n{nginx}\n[[apps]]\nname = \"chat\"\nscript = {:?}\nport = 3000\ninstances = 2\nlisten_host = \"{ip}\"\nready = \"notify\"\nlisten_timeout = \"20s\"\nkill_timeout = \"10s\"\n[apps.env]\nJWT_SECRET = {SECRET:?}\nDATABASE_URL = {:?}\nREDIS_URL = {:?}\nAPP_ENV = \"test\"\nDRAIN_WINDOW = \"300\"\nHEARTBEAT_INTERVAL = \"2000\"\nCONNECTION_TIMEOUT = \"6000\"\n",
            env!("CARGO_BIN_EXE_chat-server"),
            pg.url(),
            redis.url(),
            ip = net.address(h),
        );
        std::fs::write(dir.join("l4.toml"), config).unwrap();
        let out = net
            .cmd(h, l4ctl())
            .arg("--config")
            .arg(dir.join("l4.toml"))
            .args(["start", "l4.toml"])
            .current_dir(&dir)
            .env("L4_TEST_TOKEN", TOKEN)
            .output()
            .unwrap();
        let host = Host { dir };
        assert!(
            out.status.success(),
            "host {h}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            host.logs()
        );
        hosts.push(host);
    }
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "every host's two workers", || hosts.iter().all(|h| h.pids().len() == 2))
    });
    let out = hosts[0].l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), hosts[0].logs());
    let rendered = std::fs::read_to_string(&output).unwrap();
    for h in 0..HOSTS {
        assert_eq!(rendered.matches(&format!("server {}:", net.address(h))).count(), 2, "host {h}:\n{rendered}");
    }
    drop(nginx_hold);
    let _nginx = Nginx::start(&nginx_dir, &output);

    // 300 clients through nginx, 50 per room, with the plan's client heartbeat.
    let url = format!("ws://127.0.0.1:{nginx_port}/ws");
    let clients = room_clients(&url, CLIENTS, ROOMS, |config| {
        config.ping_after = Duration::from_secs(1);
        config.pong_timeout = Duration::from_secs(2);
        config.backoff_base = Duration::from_millis(100);
        config.backoff_max = Duration::from_secs(1);
    })
    .await;
    let target: Arc<Vec<AtomicU64>> = Arc::new((0..ROOMS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let senders: Vec<_> = clients[..SENDERS].iter().map(Client::sender).collect();
    let seen: Vec<_> = clients.into_iter().enumerate().map(|(k, c)| collect(c, k % ROOMS, target.clone())).collect();

    // Health through nginx throughout: when each failure happened, and what it was.
    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let checks = Arc::new(AtomicU64::new(0));
    let health = {
        let (stop, failures, checks) = (stop.clone(), failures.clone(), checks.clone());
        let base = format!("http://127.0.0.1:{nginx_port}");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = tokio::time::timeout(
                    Duration::from_secs(5),
                    layer4_chat_client::http::get(&base, "/api/health/websocket"),
                )
                .await;
                checks.fetch_add(1, Ordering::Relaxed);
                match got {
                    Ok(Ok((200, _, _))) => {}
                    Ok(Ok((code, _, body))) => failures
                        .lock()
                        .unwrap()
                        .push((Instant::now(), format!("HTTP {code}: {}", String::from_utf8_lossy(&body)))),
                    Ok(Err(e)) => failures.lock().unwrap().push((Instant::now(), e.to_string())),
                    Err(_) => failures.lock().unwrap().push((Instant::now(), "no answer in 5 s".into())),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (sent, sending) = send_until(&stop, senders, ROOMS, SEND_EVERY);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. A rolling reload across the hosts, one host at a time.
    let before: Vec<Vec<u64>> = tokio::task::block_in_place(|| hosts.iter().map(Host::pids).collect());
    let reload_started = Instant::now();
    let out = tokio::task::block_in_place(|| hosts[0].l4(&["reload", "chat", "--hosts", "all"]));
    let reload_took = reload_started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}\n{}", hosts[0].logs());
    for h in 0..HOSTS {
        assert!(said.contains(&format!("host {}/{HOSTS}", h + 1)), "{said}");
        let after = tokio::task::block_in_place(|| hosts[h].pids());
        assert!(
            before[h].iter().all(|p| !after.contains(p)) && after.len() == 2,
            "host {h}: {:?} -> {after:?}",
            before[h]
        );
    }

    // Host 0's daemon follows the reload: all six servers are back in nginx.
    let all_back = Instant::now();
    loop {
        let conf = std::fs::read_to_string(&output).unwrap_or_default();
        let live = |h: usize| {
            conf.lines().filter(|l| l.contains(&format!("server {}:", net.address(h))) && !l.contains("backup")).count()
        };
        if (0..HOSTS).all(|h| live(h) == 2) {
            break;
        }
        assert!(
            all_back.elapsed() < Duration::from_secs(20),
            "nginx did not follow the reload:\n{conf}\n{}",
            hosts[0].nginx_lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. Host 2's link cut for 10 s: host 0's daemon keeps its servers as backup.
    let cut_at = Instant::now();
    tokio::task::block_in_place(|| net.link(2, false));
    let cut_ip = net.address(2);
    let backup_after = loop {
        let conf = std::fs::read_to_string(&output).unwrap_or_default();
        if conf.lines().filter(|l| l.contains(&format!("server {cut_ip}:")) && l.contains(" backup;")).count() == 2 {
            break Some(cut_at.elapsed());
        }
        if cut_at.elapsed() > Duration::from_secs(9) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed())).await;
    tokio::task::block_in_place(|| net.link(2, true));
    let cut_ended = Instant::now();
    // Host 2 is back in nginx (host 0's daemon asks it every second).
    loop {
        let conf = std::fs::read_to_string(&output).unwrap_or_default();
        let live = conf.lines().filter(|l| l.contains(&format!("server {cut_ip}:")) && !l.contains("backup")).count();
        if live == 2 {
            break;
        }
        assert!(cut_ended.elapsed() < Duration::from_secs(30), "host 2 did not come back in nginx:\n{conf}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. The Redis primary SIGKILLed: the sentinels promote the replica.
    let killed_at = Instant::now();
    let primary = redis.primary;
    tokio::task::block_in_place(|| redis.kill(primary));
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "the promoted replica", || redis.primary_now() == Some(redis.replica))
    });
    let promoted = killed_at.elapsed();
    // Every worker follows it: six connections with subscriptions there.
    let (db_host, new_primary) = (db_ip.clone(), redis.replica);
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "every worker subscribed on the new primary", || {
            let list: Option<String> = query(&db_host, new_primary, redis::cmd("CLIENT").arg("LIST"));
            let workers = |c: &&str| !c.contains(" sub=0 ") && !c.contains("name=sentinel");
            let subscribed = list.map_or(0, |l| l.lines().filter(workers).count());
            subscribed == 2 * HOSTS
        })
    });

    // 4. PostgreSQL restarted (fast shutdown: every connection cut).
    let db_restart = Instant::now();
    tokio::task::block_in_place(|| pg.restart(&net));
    let db_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    stop.store(true, Ordering::Relaxed);
    for s in sending {
        s.await.unwrap();
    }
    health.await.unwrap();
    for (room, n) in sent.iter().enumerate() {
        target[room].store(n.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    let mut per_room: BTreeMap<usize, u64> = BTreeMap::new();
    let (mut unavailable, mut reconnects) = (0, 0);
    for (k, task) in seen.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(90), task)
            .await
            .unwrap_or_else(|_| panic!("client {k} did not get everything\n{}", hosts[0].logs()))
            .unwrap();
        let room = k % ROOMS;
        let n = target[room].load(Ordering::Relaxed);
        assert_eq!(got.seqs, (1..=n).collect::<Vec<_>>(), "client {k} of room{room}: every message once, in order");
        // Each sender's messages in the order it sent them, none twice.
        let mut next: BTreeMap<usize, usize> = BTreeMap::new();
        for body in &got.bodies {
            let (from, i) = body.split_once('-').unwrap();
            let (from, i): (usize, usize) = (from.parse().unwrap(), i.parse().unwrap());
            let want = next.entry(from).or_default();
            assert_eq!(i, *want, "client {k}: {body} out of order or twice");
            *want += 1;
        }
        per_room.insert(room, n);
        unavailable += got.unavailable;
        reconnects += got.reconnects;
    }

    // Health: only while host 2 was cut (until nginx marks it failed) may a request
    // fail; while the database restarts every worker says 503 degraded, by design.
    let failures = failures.lock().unwrap().clone();
    let cut_window = cut_at..cut_ended + Duration::from_secs(12);
    let db_window = db_restart..db_back + Duration::from_secs(3);
    let (mut in_cut, mut degraded) = (0, 0);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (at, what) in &failures {
        *kinds.entry(what.chars().take(60).collect()).or_default() += 1;
        if cut_window.contains(at) {
            in_cut += 1;
        } else if db_window.contains(at) && what.contains("degraded") {
            degraded += 1;
        } else {
            panic!(
                "health through nginx failed outside the cut ({:?} after it began): {what}",
                at.duration_since(cut_at)
            );
        }
    }
    eprintln!(
        "3 hosts, {CLIENTS} clients, messages per room {per_room:?}; reload across hosts {:.1} s; health requests {} ({in_cut} failed while host 2 was cut, {degraded} answered degraded during the database restart); Redis replica promoted {:.1} s after the SIGKILL; PostgreSQL restarted in {:.1} s",
        reload_took.as_secs_f64(),
        checks.load(Ordering::Relaxed),
        promoted.as_secs_f64(),
        (db_back - db_restart).as_secs_f64()
    );
    eprintln!(
        "health failures by kind: {kinds:?}; host 2's servers backup {backup_after:?} after the cut; {reconnects} reconnections; {unavailable} sends refused as unavailable and resent"
    );
    let backup_after =
        backup_after.unwrap_or_else(|| panic!("host 2's servers never turned backup\n{}", hosts[0].nginx_lines()));
    assert!(backup_after < Duration::from_secs(9));
    assert!(per_room.values().all(|n| *n > 50), "the senders kept sending: {per_room:?}");
}
