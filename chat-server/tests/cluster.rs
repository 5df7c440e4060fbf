//! README "Readiness and rolling reload": chat-server workers run by the real
//! `l4ctl` (the workspace's binary beside ours), on sockets l4ctl owns, ready by
//! sd_notify; a reload under load refuses no connection and loses no message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use layer4_chat_client::client::Event;
use layer4_chat_client::protocol::Format;

use crate::helper::{SECRET, joined};

/// The first of `n` consecutive free ports.
pub fn free_ports(n: u16) -> u16 {
    loop {
        let base = crate::helper::free_port();
        if base.checked_add(n).is_some() && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

/// `l4ctl`, built by `cargo test --workspace` next to `chat-server`.
fn l4ctl() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_chat-server")).with_file_name("l4ctl");
    assert!(path.is_file(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

/// A temp folder with an l4ctl config running `chat-server` workers.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    pub fn start(instances: u32, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(instances, env, "")
    }

    /// Like `start`, with `extra` (more sections, such as `[nginx]`) in the config file.
    pub fn start_with(instances: u32, env: &[(&str, &str)], extra: &str) -> Cluster {
        Cluster::start_full(instances, env, "api_listen = \"off\"", "", extra)
    }

    /// Like `start_with`, with `daemon` lines in `[daemon]` and `app` lines in the app.
    pub fn start_full(instances: u32, env: &[(&str, &str)], daemon: &str, app: &str, extra: &str) -> Cluster {
        let dir = tempfile::Builder::new().prefix("l4cluster").tempdir().unwrap();
        let port = free_ports(instances as u16);
        let mut vars: std::collections::BTreeMap<String, String> = [
            ("JWT_SECRET", SECRET.to_owned()),
            ("DATABASE_URL", format!("sqlite://{}/chat.db", dir.path().display())),
            ("APP_ENV", "test".to_owned()),
            ("DRAIN_WINDOW", "300".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env_lines: String = vars.iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
        let config = format!(
            "[daemon]\nhome = \"run\"\nlog_dir = \"logs\"\n{daemon}\n{extra}\n\n[[apps]]\nname = \"chat\"\nscript = {:?}\nport = {port}\ninstances = {instances}\nready = \"notify\"\nlisten_timeout = \"20s\"\nkill_timeout = \"10s\"\n{app}\n[apps.env]\n{env_lines}",
            env!("CARGO_BIN_EXE_chat-server"),
        );
        std::fs::write(dir.path().join("l4.toml"), config).unwrap();
        let cluster = Cluster { dir, port };
        let out = cluster.l4(&["start", "l4.toml"]);
        assert!(out.status.success(), "start failed: {}", cluster.diagnose(&out));
        cluster
    }

    pub fn l4(&self, args: &[&str]) -> Output {
        Command::new(l4ctl())
            .arg("--config")
            .arg(self.dir.path().join("l4.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("L4_HOME")
            .env_remove("L4_CONFIG")
            .output()
            .unwrap()
    }

    /// `l4ctl status --json` (the schema of `layer4_supervisor::api::types::StatusReport`).
    pub fn status(&self) -> serde_json::Value {
        let out = self.l4(&["status", "--json"]);
        assert!(out.status.success(), "{}", self.diagnose(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn pids(&self) -> Vec<Option<u64>> {
        self.status()["instances"].as_array().unwrap().iter().map(|i| i["pid"].as_u64()).collect()
    }

    pub fn ws_url(&self, instance: u16) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port + instance)
    }

    /// A client of worker `instance` with quick reconnects.
    pub fn client(&self, instance: u16, id: i64, name: &str) -> layer4_chat_client::client::Client {
        let token =
            layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap().issue(id, name);
        let mut config =
            layer4_chat_client::client::ClientConfig::new(self.ws_url(instance), token).format(Format::Json);
        config.backoff_base = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(200);
        layer4_chat_client::client::Client::start(config)
    }

    /// A counter of worker `instance`'s `/metrics`, summed over the samples matching `labels`.
    pub async fn metric(&self, instance: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
        let base = format!("http://127.0.0.1:{}", self.port + instance);
        let (_, _, body) = layer4_chat_client::http::get(&base, "/metrics").await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// The command's output and every log file, for failure messages.
    pub fn diagnose(&self, out: &Output) -> String {
        let mut text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for entry in std::fs::read_dir(self.dir.path().join("logs")).into_iter().flatten().flatten() {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: String =
                body.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            text.push_str(&format!("\n--- {}\n{tail}", entry.path().display()));
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.l4(&["kill"]);
    }
}

/// New connections to `port`, one after another until `stop`. A request that
/// reached a worker just as it began to drain may get its documented
/// `503 {"status":"draining"}` (nginx passes those to another instance); anything
/// else but a 200 (a refused or dropped connection above all) is a failure.
fn health_loop(
    port: u16,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let base = format!("http://127.0.0.1:{port}");
        while !stop.load(Ordering::Relaxed) {
            let got = layer4_chat_client::http::get(&base, "/api/health/websocket").await;
            total.fetch_add(1, Ordering::Relaxed);
            let fine = match &got {
                Ok((200, _, _)) => true,
                Ok((503, _, body)) => {
                    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["status"] == "draining")
                }
                _ => false,
            };
            if !fine {
                failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("health failed: {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_l4ctl_refuses_no_connection_and_loses_no_message() {
    let cluster = Cluster::start(1, &[]);
    let before = cluster.pids();
    let mut sub = cluster.client(0, 1, "sub");
    let mut publisher = cluster.client(0, 2, "pub");
    joined(&mut sub, "room").await;
    joined(&mut publisher, "room").await;

    let (stop, failures, total) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let health = health_loop(cluster.port, stop.clone(), failures.clone(), total.clone());
    let sender = publisher.sender();
    let sending = tokio::spawn(async move {
        for i in 0..300 {
            sender.send("room", &i.to_string()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Acks and echoes must be read for the publisher to keep going; what else it hears
    // is kept for the failure message.
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = heard.clone();
    let draining = tokio::spawn(async move {
        while let Some(e) = publisher.next_event().await {
            if !matches!(e, Event::Message(_) | Event::Acked { .. }) {
                kept.lock().unwrap().push(format!("{e:?}"));
            }
        }
    });
    for round in 0..2 {
        let out = tokio::task::block_in_place(|| cluster.l4(&["reload", "chat"]));
        assert!(out.status.success(), "reload {round}: {}", cluster.diagnose(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("chat:0 pid ") && stderr.contains(", ready after "), "{stderr}");
    }
    // As helper::messages, but a shortfall shows what both clients heard and the logs.
    let (mut got, mut sub_heard) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 300 {
        match tokio::time::timeout_at(deadline, sub.next_event()).await {
            Ok(Some(Event::Message(m))) => got.push(m),
            Ok(Some(e)) => sub_heard.push(format!("{e:?}")),
            Ok(None) | Err(_) => {
                let none = Output { status: Default::default(), stdout: vec![], stderr: vec![] };
                panic!(
                    "only {} of 300 messages within 20 s\nsubscriber heard: {sub_heard:?}\npublisher heard: {:?}\n{}",
                    got.len(),
                    heard.lock().unwrap(),
                    cluster.diagnose(&none)
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    health.await.unwrap();
    sending.await.unwrap();
    draining.abort();

    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "every message once, in order");
    let bodies: Vec<u32> = got.iter().map(|m| m.body.parse().unwrap()).collect();
    assert_eq!(bodies, (0..300).collect::<Vec<_>>());
    assert!(total.load(Ordering::Relaxed) > 20, "the health loop ran throughout");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no health request failed during the reloads");
    let after = cluster.status();
    let row = &after["instances"][0];
    assert_eq!(row["state"], "online");
    assert_ne!(row["pid"].as_u64(), before[0], "the worker was replaced");
    assert_eq!(row["restarts_by_reason"]["reload"], 2);
    // The subscriber saw the worker go (1012) and came back without a gap.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), sub.next_event()).await {
        assert!(!matches!(e, Event::Gap { .. } | Event::Closed { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn a_port_held_by_another_process_is_named_in_the_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[daemon]\nhome = \"run\"\nlog_dir = \"logs\"\napi_listen = \"off\"\n[[apps]]\nname = \"chat\"\nscript = {:?}\nport = {port}\nready = \"notify\"\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"\n[apps.env]\nJWT_SECRET = {SECRET:?}\n",
        env!("CARGO_BIN_EXE_chat-server"),
    );
    std::fs::write(dir.path().join("l4.toml"), config).unwrap();
    let l4 = |args: &[&str]| {
        Command::new(l4ctl())
            .arg("--config")
            .arg(dir.path().join("l4.toml"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = l4(&["start", "l4.toml"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = l4(&["kill"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let expected = format!("port {port} is already in use by pid {} (", std::process::id());
    assert!(text.contains(&expected), "{text}");
}

/// Where `text` holds an ISO 8601 date-time (`2026-11-29T...`), by byte offset.
fn timestamps(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len().saturating_sub(10))
        .filter(|&i| {
            (0..4).all(|k| digit(i + k))
                && b[i + 4] == b'-'
                && digit(i + 5)
                && digit(i + 6)
                && b[i + 7] == b'-'
                && digit(i + 8)
                && digit(i + 9)
                && b[i + 10] == b'T'
        })
        .collect()
}

#[test]
fn under_l4ctl_a_log_line_carries_one_timestamp_not_two() {
    let cluster = Cluster::start(1, &[]);
    let path = cluster.dir.path().join("logs/chat-out.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("chat server listening")) {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no listening line in {}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    let line = line.as_str();
    assert_eq!(timestamps(line), vec![0], "l4ctl's prefix only: {line}");
    assert!(line.contains("INFO"), "{line}");
}
