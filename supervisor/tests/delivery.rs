//! README "Crash reports", delivery: reports reach Sentry (an envelope) and the
//! webhook (JSON) over http and https through `l4ctl-send`, and a down, hanging
//! or untrusted endpoint never slows the daemon or loses a report silently.

use std::time::Duration;

use crate::crashes::crasher;
use crate::helper::*;

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
                    log.lock().unwrap().push(("(held)".to_owned(), String::new(), Vec::new()));
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
    assert!(event["extra"]["location"].as_str().unwrap().contains("examples/crasher.rs:"), "{event}");
    assert_eq!((event["level"].as_str(), event["release"].as_str()), (Some("fatal"), Some("chat@1.2.3")));
    assert_eq!(
        (event["tags"]["app"].as_str(), event["tags"]["instance"].as_str(), event["tags"]["exit"].as_str()),
        (Some("rusty"), Some("0"), Some("101"))
    );
    // Sentry's own Rust types parse the envelope the same way.
    let envelope = sentry_types::protocol::v7::Envelope::from_slice(body).expect("a valid Sentry envelope");
    let parsed = envelope.event().expect("an event item");
    assert_eq!(format!("{}", parsed.event_id.simple()), event["event_id"].as_str().unwrap());
    assert_eq!(parsed.level, sentry_types::protocol::v7::Level::Fatal);
    assert_eq!(parsed.release.as_deref(), Some("chat@1.2.3"));
    assert_eq!(parsed.tags.get("app").map(String::as_str), Some("rusty"));
    let ex = &parsed.exception.values[0];
    assert_eq!((ex.ty.as_str(), ex.value.as_deref()), ("panic", Some("boom from crasher")));
    let frames = &ex.stacktrace.as_ref().expect("frames").frames;
    assert!(frames.iter().any(|f| f.function.as_deref().is_some_and(|n| n.contains("crasher::main"))));
    assert_eq!(
        parsed.fingerprint.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        vec![event["fingerprint"][0].as_str().unwrap().to_owned()]
    );
    assert!(parsed.fingerprint[0].starts_with("rusty:panic:"), "{:?}", parsed.fingerprint);
    let (_, _, hook) = got.iter().find(|(p, _, _)| p == "/hook").expect("a webhook call");
    let report: serde_json::Value = serde_json::from_slice(hook).unwrap();
    assert_eq!(report["panic"]["message"], "boom from crasher");
}

#[test]
fn a_panic_the_worker_survives_reaches_sentry_as_a_handled_error() {
    let endpoint = Endpoint::start(false);
    let env = Env::new(&format!(
        "[error_tracking]\nsentry_dsn = \"http://testkey@127.0.0.1:{}/42\"\n\n[[apps]]\nname = \"tasky\"\nscript = {:?}\nargs = [\"task-panic\"]\n",
        endpoint.port,
        crasher().display().to_string()
    ));
    env.start();
    let (_, _, body) =
        wait_for(Duration::from_secs(10), "the non-fatal event", || endpoint.requests().into_iter().next());
    let event = envelope_event(&body);
    let ex = &event["exception"]["values"][0];
    assert_eq!((event["level"].as_str(), ex["value"].as_str()), (Some("error"), Some("a task failed")), "{event}");
    assert_eq!(ex["mechanism"]["handled"], true);
    assert_eq!(event["tags"]["reason"], "panic");
    assert_eq!(env.instance("tasky", 0).state, "online");
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
    // The sender is connected and waiting for an answer all that time.
    assert!(endpoint.requests().iter().all(|(p, _, _)| p == "(held)"));
    assert!(!endpoint.requests().is_empty(), "l4ctl-send connected");
    let d = delivery(&env);
    assert_eq!((d["queued"].as_u64(), d["sent"].as_u64(), d["failed"].as_u64()), (Some(1), Some(0), Some(0)), "{d}");
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

#[test]
fn a_full_queue_drops_the_newest_reports_counts_them_and_keeps_them_in_the_journal() {
    let endpoint = Endpoint::start(true);
    let apps: String = ["a", "b", "c"]
        .iter()
        .map(|n| sh_app(n, "exit 3", "restart_delay = \"30s\"\nrestart_delay_max = \"30s\""))
        .collect();
    let env = Env::new(&format!(
        "[error_tracking]\nwebhook_url = \"http://127.0.0.1:{}/hook\"\nqueue = 1\ntimeout = \"30s\"\nretries = 0\n\n{apps}",
        endpoint.port
    ));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]); // exits 1: the apps crash
    let d = wait_for(Duration::from_secs(10), "three reports handed over or dropped", || {
        let d = delivery(&env);
        (d["queued"].as_u64().unwrap_or(0) + d["dropped"].as_u64().unwrap_or(0) == 3).then_some(d)
    });
    // One in flight (the endpoint never answers) and one waiting at most: the rest dropped.
    assert!(d["dropped"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!((d["sent"].as_u64(), d["failed"].as_u64()), (Some(0), Some(0)), "{d}");
    let out = env.l4(&["crashes"]);
    assert!(text(&out).contains(&format!("{} dropped (queue full)", d["dropped"])), "{}", text(&out));
    let journal = journal(&env);
    assert_eq!(journal.len(), 3, "every report is in crashes.jsonl: {journal:?}");
}

#[test]
fn a_daemon_panic_is_journaled_and_reaches_sentry_and_the_daemon_goes_on() {
    let endpoint = Endpoint::start(false);
    let env = Env::new(&format!(
        "[error_tracking]\nsentry_dsn = \"http://testkey@127.0.0.1:{}/42\"\n\n{}",
        endpoint.port,
        sh_app("idle", "exec sleep 60", "")
    ));
    let out = env
        .cmd(&["start", env.config().to_str().unwrap()])
        .env("L4_FAILPOINT_DAEMON_PANIC", "injected daemon panic")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got = wait_for(Duration::from_secs(10), "the daemon's panic at the Sentry endpoint", || {
        endpoint.requests().into_iter().find(|(p, _, _)| p == "/api/42/envelope/")
    });
    let event = envelope_event(&got.2);
    assert_eq!(event["exception"]["values"][0]["value"], "injected daemon panic", "{event}");
    assert_eq!(event["tags"]["app"], "l4ctl-daemon");
    let line = journal(&env).into_iter().next().expect("a line in crashes.jsonl");
    assert_eq!((line["app"].as_str(), line["reason"].as_str()), (Some("l4ctl-daemon"), Some("panic")), "{line}");
    assert!(line["panic"]["location"].as_str().unwrap().contains("daemon/mod.rs"), "{line}");
    // A panic in a task is caught by the runtime: the daemon still serves.
    assert_eq!(env.instance("idle", 0).state, "online");
}

#[test]
fn an_episode_that_ends_sends_its_final_count() {
    let endpoint = Endpoint::start(false);
    // Crashes three times, then stays up: the episode goes quiet.
    let script =
        "n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs; [ $n -le 3 ] && exit 3; exec sleep 60";
    let env = Env::new(&format!(
        "[error_tracking]\nsentry_dsn = \"http://testkey@127.0.0.1:{0}/42\"\nwebhook_url = \"http://127.0.0.1:{0}/hook\"\nepisode_quiet = \"2s\"\n\n{1}",
        endpoint.port,
        sh_app("flaky", script, "restart_delay = \"50ms\"\nrestart_delay_max = \"50ms\"\nmax_restarts = 10")
    ));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let hooks = wait_for(Duration::from_secs(15), "the first report and the final count", || {
        let hooks: Vec<serde_json::Value> = endpoint
            .requests()
            .iter()
            .filter(|(p, _, _)| p == "/hook")
            .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
            .collect();
        (hooks.len() >= 2).then_some(hooks)
    });
    assert_eq!((hooks[0]["count"].as_u64(), hooks[0].get("episode")), (Some(1), None), "{hooks:?}");
    assert_eq!((hooks[1]["count"].as_u64(), hooks[1]["episode"].as_str()), (Some(3), Some("ended")), "{hooks:?}");
    assert_eq!(hooks[0]["id"], hooks[1]["id"]);
    let events: Vec<serde_json::Value> = endpoint
        .requests()
        .iter()
        .filter(|(p, _, _)| p == "/api/42/envelope/")
        .map(|(_, _, b)| envelope_event(b))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["fingerprint"], events[1]["fingerprint"], "one Sentry issue");
    let value = events[1]["exception"]["values"][0]["value"].as_str().unwrap();
    assert!(value.contains("ended: 3 crashes in this episode"), "{value}");
    assert_eq!(events[1]["tags"]["episode"], "ended");
    assert_eq!(reports(&env)[0]["count"], 3);
}

#[test]
fn a_changed_error_tracking_section_takes_effect_when_its_file_is_applied_again() {
    let (first, second) = (Endpoint::start(false), Endpoint::start(false));
    let section = |port: u16| format!("[error_tracking]\nwebhook_url = \"http://127.0.0.1:{port}/hook\"\n\n");
    let app = |name: &str| sh_app(name, "exec sleep 60", "restart_delay = \"30s\"\nrestart_delay_max = \"30s\"");
    let env = Env::new(&format!("{}{}", section(first.port), app("one")));
    env.start();
    // A broken [error_tracking] is refused whole and changes nothing.
    env.write_config(&format!("[error_tracking]\nwebhook_url = \"ftp://x\"\n\n{}", app("one")));
    let out = env.l4(&["start", env.config().to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("webhook_url"), "{}", text(&out));
    // The same file reloaded by the daemon itself (as SIGHUP does): refused, kept.
    let out = env.l4(&["reload-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("webhook_url"), "{}", text(&out));
    let kill = |name: &str| {
        let pid = env.instance(name, 0).pid.unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    };
    kill("one");
    wait_for(Duration::from_secs(10), "one's report at the first endpoint", || {
        (!first.requests().is_empty()).then_some(())
    });
    // Now to the second endpoint: `l4ctl start FILE` applies the file's section.
    env.write_config(&format!("{}{}{}", section(second.port), app("one"), app("two")));
    env.start();
    kill("two");
    let got = wait_for(Duration::from_secs(10), "two's report at the second endpoint", || {
        second.requests().into_iter().next()
    });
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&got.2).unwrap()["app"], "two");
    assert_eq!(first.requests().len(), 1, "nothing more went to the old endpoint");
    // The delivery counters carry over the change.
    wait_for(Duration::from_secs(5), "both deliveries counted", || (delivery(&env)["sent"] == 2).then_some(()));
}
