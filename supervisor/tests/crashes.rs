//! README "Crash reports": abnormal ends of real workers (a Rust panic, a signal,
//! a crash loop) and a panic a worker survives become reports with the parsed
//! panic, in `l4ctl crashes` and `crashes.jsonl`; a crash loop is one report.

use std::path::PathBuf;
use std::time::Duration;

use crate::helper::*;

/// target/<profile>/examples/crasher, built on demand when `cargo test` did not.
fn crasher() -> PathBuf {
    let exe = PathBuf::from(BIN).with_file_name("examples").join("crasher");
    if !exe.is_file() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "layer4-supervisor", "--example", "crasher"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    exe
}

fn reports(env: &Env) -> Vec<serde_json::Value> {
    let out = env.l4(&["crashes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["crashes"].as_array().cloned().unwrap_or_default()
}

fn journal(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("logs/crashes.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_rust_panic_is_reported_with_its_message_location_and_frames() {
    let app = format!(
        "[[apps]]\nname = \"rusty\"\nscript = {:?}\nargs = [\"panic\"]\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"\n[apps.env]\nRUST_BACKTRACE = \"1\"\n",
        crasher().display().to_string()
    );
    let env = Env::new(&app);
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let r = wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    assert_eq!(
        (r["level"].as_str(), r["reason"].as_str(), r["exit_code"].as_i64()),
        (Some("fatal"), Some("crashed"), Some(101)),
        "{r}"
    );
    assert_eq!(r["panic"]["message"], "boom from crasher", "{r}");
    assert!(r["panic"]["location"].as_str().unwrap().contains("examples/crasher.rs:"), "{r}");
    assert_eq!(r["panic"]["thread"], "main");
    let frames = r["panic"]["frames"].as_array().unwrap();
    assert!(frames.iter().any(|f| f["function"].as_str().is_some_and(|n| n.contains("crasher::main"))), "{r}");
    assert!(r["stderr_tail"].as_str().unwrap().contains("crasher: about to fail"));
    assert!(r["fingerprint"].as_str().unwrap().starts_with("rusty:panic:"), "{r}");
    assert!(r["pid"].as_u64().is_some() && r["restarts"].as_u64().is_some());
    let lines = journal(&env);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], r["id"]);
}

#[test]
fn a_panic_the_worker_survives_is_a_non_fatal_report() {
    let app = format!(
        "[[apps]]\nname = \"tasky\"\nscript = {:?}\nargs = [\"task-panic\"]\n",
        crasher().display().to_string()
    );
    let env = Env::new(&app);
    env.start();
    let pid = env.instance("tasky", 0).pid;
    let r = wait_for(Duration::from_secs(10), "a non-fatal report", || reports(&env).into_iter().next());
    assert_eq!((r["level"].as_str(), r["reason"].as_str()), (Some("error"), Some("panic")), "{r}");
    assert_eq!(r["panic"]["message"], "a task failed");
    let i = env.instance("tasky", 0);
    assert_eq!((i.state.as_str(), i.pid), ("online", pid), "still the same run");
}

#[test]
fn death_by_signal_names_the_signal() {
    let env =
        Env::new(&sh_app("segv", "sleep 0.3; kill -SEGV $$", "restart_delay = \"10s\"\nrestart_delay_max = \"10s\""));
    env.start();
    let r = wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    assert_eq!((r["signal"].as_str(), r["exit_code"].as_i64()), (Some("SIGSEGV"), None), "{r}");
    assert_eq!(r["fingerprint"], "segv:crashed:SIGSEGV");
}

#[test]
fn a_crash_loop_is_one_report_with_a_count() {
    let env = Env::new(&sh_app(
        "loop",
        "echo failing >&2; exit 3",
        "restart_delay = \"10ms\"\nrestart_delay_max = \"20ms\"\nmax_restarts = 1000",
    ));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let r = wait_for(Duration::from_secs(20), "ten crashes in one report", || {
        reports(&env).into_iter().find(|r| r["count"].as_u64().is_some_and(|c| c >= 10))
    });
    assert_eq!(reports(&env).len(), 1, "one report, not one per restart");
    assert_eq!(r["fingerprint"], "loop:crashed:exit 3");
    assert_eq!(journal(&env).len(), 1);
    let out = env.l4(&["crashes", "loop"]);
    assert!(text(&out).contains("loop:0 fatal exit 3 x"), "{}", text(&out));
}

/// One request an endpoint received: path, head, body.
type Request = (String, String, Vec<u8>);

/// A local HTTP endpoint recording every request, answering 200, or never
/// answering when `hang`.
struct Endpoint {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
}

impl Endpoint {
    fn start(hang: bool) -> Endpoint {
        Endpoint::start_on(0, hang)
    }

    fn start_on(port: u16, hang: bool) -> Endpoint {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                if hang {
                    held.push(stream); // accepted, never answered
                    continue;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut head, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push((path, head, body));
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            }
        });
        Endpoint { port, seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn tracked_app(endpoint: u16, extra: &str) -> String {
    format!(
        "[error_tracking]\nsentry_dsn = \"http://testkey@127.0.0.1:{endpoint}/42\"\nwebhook_url = \"http://127.0.0.1:{endpoint}/hook\"\nrelease = \"chat@1.2.3\"\n{extra}\n[[apps]]\nname = \"rusty\"\nscript = {:?}\nargs = [\"panic\"]\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"\n[apps.env]\nRUST_BACKTRACE = \"1\"\n",
        crasher().display().to_string()
    )
}

#[test]
fn a_panic_reaches_sentry_as_an_envelope_and_the_webhook_as_json() {
    let endpoint = Endpoint::start(false);
    let env = Env::new(&tracked_app(endpoint.port, ""));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let got = wait_for(Duration::from_secs(15), "the envelope and the webhook", || {
        let r = endpoint.requests();
        (r.len() >= 2).then_some(r)
    });
    let (_, head, body) = got.iter().find(|(p, _, _)| p == "/api/42/envelope/").expect("an envelope");
    assert!(head.to_ascii_lowercase().contains("x-sentry-auth: sentry sentry_version=7, sentry_key=testkey"), "{head}");
    let text = String::from_utf8(body.clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1]["type"], "event");
    let event = &lines[2];
    let ex = &event["exception"]["values"][0];
    assert_eq!((ex["type"].as_str(), ex["value"].as_str()), (Some("panic"), Some("boom from crasher")), "{event}");
    let frames = ex["stacktrace"]["frames"].as_array().unwrap();
    assert!(frames.iter().any(|f| f["function"].as_str().is_some_and(|n| n.contains("crasher::main"))), "{event}");
    assert_eq!((event["level"].as_str(), event["release"].as_str()), (Some("fatal"), Some("chat@1.2.3")));
    assert_eq!(
        (event["tags"]["app"].as_str(), event["tags"]["instance"].as_str(), event["tags"]["exit"].as_str()),
        (Some("rusty"), Some("0"), Some("101"))
    );
    let (_, _, hook) = got.iter().find(|(p, _, _)| p == "/hook").expect("a webhook call");
    let report: serde_json::Value = serde_json::from_slice(hook).unwrap();
    assert_eq!(report["panic"]["message"], "boom from crasher");
}

#[test]
fn a_hanging_endpoint_never_slows_the_daemon() {
    let endpoint = Endpoint::start(true);
    let env = Env::new(&tracked_app(endpoint.port, "timeout = \"30s\"\nretries = 0"));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    let client = layer4_supervisor::client::Client::new(&env.home());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = std::time::Instant::now();
            rt.block_on(client.get::<serde_json::Value>("/api/v1/status")).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    assert!(times[10] < Duration::from_millis(50), "status while the endpoint hangs: median {:?}", times[10]);
    assert!(endpoint.requests().is_empty());
}

#[test]
fn a_report_waits_out_an_endpoint_that_is_down_and_arrives_when_it_is_back() {
    // Reserve a port, then leave it closed: the first attempts are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = Env::new(&tracked_app(port, "timeout = \"1s\"\nretries = 5"));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    std::thread::sleep(Duration::from_millis(1500)); // down through the first retries
    let endpoint = Endpoint::start_on(port, false);
    let got = wait_for(Duration::from_secs(20), "the report after the endpoint came back", || {
        let r = endpoint.requests();
        (r.len() >= 2).then_some(r)
    });
    assert!(got.iter().any(|(p, _, _)| p == "/api/42/envelope/"), "{got:?}");
    assert!(got.iter().any(|(p, _, _)| p == "/hook"));
}
