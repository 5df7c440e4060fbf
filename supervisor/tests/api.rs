//! README "Control API": the same API over TCP, read-only without a token, JSON
//! errors for bad requests, events, Prometheus metrics, scale and rolling reload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helper::*;

const TCP: &str = "api_listen = \"127.0.0.1:0\"\napi_token_env = \"L4_TEST_TOKEN\"";

pub fn api_addr(env: &Env) -> String {
    wait_for(Duration::from_secs(5), "api.addr", || std::fs::read_to_string(env.home().join("api.addr")).ok())
        .trim()
        .to_owned()
}

/// One HTTP/1.1 request over TCP; returns the status code and the body.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let host = if has_host { String::new() } else { format!("Host: {addr}\r\n") };
    let mut req = format!("{method} {path} HTTP/1.1\r\n{host}Connection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn start_with_token(env: &Env, token: Option<&str>) {
    let mut cmd = env.cmd(&["start", env.config().to_str().unwrap()]);
    match token {
        Some(t) => cmd.env("L4_TEST_TOKEN", t),
        None => cmd.env_remove("L4_TEST_TOKEN"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn tcp_is_read_only_without_a_token_and_never_returns_environment_values() {
    let env =
        Env::with_daemon(TCP, &sh_app("web", "echo started; exec sleep 1000", "[apps.env]\nSECRET = \"s3cr3t-value\""));
    start_with_token(&env, None);
    let addr = api_addr(&env);
    let (code, body) = http(&addr, "GET", "/api/v1/status", &[], "");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&addr, "POST", "/api/v1/apps/web/stop", &[], "{}");
    assert_eq!((code, error_code(&body).as_str()), (403, "read_only"), "{body}");
    assert_eq!(env.instance("web", 0).state, "online", "nothing was stopped");
    for path in ["/api/v1/status", "/api/v1/apps/web", "/api/v1/health", "/metrics"] {
        let (code, body) = http(&addr, "GET", path, &[], "");
        assert_eq!(code, 200, "{path}: {body}");
        assert!(!body.contains("s3cr3t-value"), "{path} returned an environment value");
    }
    // What workers print (log lines, crash tails) is not shown without the token.
    for path in ["/api/v1/apps/web/logs?lines=5", "/api/v1/crashes", "/api/v1/apps/web/logs"] {
        let (code, body) = http(&addr, "GET", path, &[], "");
        assert_eq!((code, error_code(&body).as_str()), (403, "read_only"), "{path}: {body}");
        assert!(!body.contains("started"), "{path}: {body}");
    }
}

#[test]
fn logs_and_crash_reports_over_tcp_need_the_token() {
    let env = Env::with_daemon(TCP, &sh_app("web", "echo password=hunter2; exec sleep 1000", ""));
    start_with_token(&env, Some("tok-123"));
    let addr = api_addr(&env);
    for path in ["/api/v1/apps/web/logs?lines=5", "/api/v1/crashes"] {
        let (code, body) = http(&addr, "GET", path, &[], "");
        assert_eq!((code, error_code(&body).as_str()), (401, "unauthorized"), "{path}: {body}");
        let (code, body) = http(&addr, "GET", path, &[("Authorization", "Bearer tok-12")], "");
        assert_eq!(code, 401, "{path}: {body}");
    }
    let logs = wait_for(Duration::from_secs(5), "the line over TCP with the token", || {
        let (code, body) =
            http(&addr, "GET", "/api/v1/apps/web/logs?lines=5", &[("Authorization", "Bearer tok-123")], "");
        (code == 200 && body.contains("hunter2")).then_some(body)
    });
    assert!(logs.contains("password=hunter2"), "{logs}");
    let (code, body) = http(&addr, "GET", "/api/v1/crashes", &[("Authorization", "Bearer tok-123")], "");
    assert_eq!(code, 200, "{body}");
    // The Unix socket (0600) keeps them without a token.
    let out = env.l4(&["logs", "web", "--lines", "5", "--nostream"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hunter2"), "{}", text(&out));
}

#[test]
fn changes_over_tcp_need_the_bearer_token() {
    let env = Env::with_daemon(TCP, &sh_app("web", "exec sleep 1000", ""));
    start_with_token(&env, Some("tok-123"));
    let addr = api_addr(&env);
    let (code, body) = http(&addr, "POST", "/api/v1/apps/web/stop", &[], "{}");
    assert_eq!((code, error_code(&body).as_str()), (401, "unauthorized"));
    let (code, _) = http(&addr, "POST", "/api/v1/apps/web/stop", &[("Authorization", "Bearer tok-12")], "{}");
    assert_eq!(code, 401);
    let (code, body) = http(&addr, "POST", "/api/v1/apps/web/stop", &[("Authorization", "Bearer tok-123")], "{}");
    assert_eq!(code, 200, "{body}");
    assert_eq!(env.instance("web", 0).state, "stopped");
    let (_, health) = http(&addr, "GET", "/api/v1/health", &[], "");
    assert!(!health.contains("tok-123"));
}

#[test]
fn bad_requests_get_json_errors() {
    let env = Env::with_daemon(TCP, &sh_app("web", "exec sleep 1000", ""));
    start_with_token(&env, Some("t"));
    let addr = api_addr(&env);
    let auth = [("Authorization", "Bearer t")];
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("GET", "/api/v1/nope", String::new(), 404, "not_found"),
        ("DELETE", "/api/v1/status", String::new(), 405, "method_not_allowed"),
        ("GET", "/api/v1/apps/ghost", String::new(), 404, "unknown_app"),
        ("POST", "/api/v1/start", "{not json".into(), 400, "bad_request"),
        ("POST", "/api/v1/apps/web/scale", "{\"instances\": 0}".into(), 400, "bad_request"),
        ("POST", "/api/v1/apps/web/scale", "{\"instances\": \"two\"}".into(), 422, "bad_request"),
        ("POST", "/api/v1/start", format!("{{\"config\": \"{}\"}}", "x".repeat(100_000)), 413, "body_too_large"),
        ("GET", "/api/v1/apps/web/logs?stream=sideways", String::new(), 400, "bad_request"),
    ];
    for (method, path, body, want, code) in cases {
        let (got, reply) = http(&addr, method, path, &auth, &body);
        assert_eq!((got, error_code(&reply).as_str()), (want, code), "{method} {path}: {reply}");
    }
    let (got, reply) = http(&addr, "GET", "/api/v1/status", &[("Host", "evil.example:9615")], "");
    assert_eq!((got, error_code(&reply).as_str()), (403, "bad_host"), "DNS rebinding: {reply}");
    assert_eq!(env.instance("web", 0).state, "online", "the daemon survived");
}

#[test]
fn metrics_are_valid_prometheus_text() {
    let env = Env::with_daemon(TCP, &sh_app("web", "echo hello; exec sleep 1000", "instances = 2"));
    start_with_token(&env, None);
    let addr = api_addr(&env);
    wait_for(Duration::from_secs(5), "a sample", || {
        env.status().instances.iter().all(|i| i.memory_bytes.is_some()).then_some(())
    });
    let (code, body) = http(&addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "l4_instance_up",
        "l4_instance_memory_bytes",
        "l4_instance_state",
        "l4_app_log_lines_total",
        "l4_daemon_memory_bytes",
    ] {
        assert!(names.contains(&want), "{want} missing in\n{body}");
    }
    let up = scrape.samples.iter().filter(|s| s.metric == "l4_instance_up").count();
    assert_eq!(up, 2);
}

#[test]
fn events_stream_state_changes_and_restarts_with_reasons() {
    let env = Env::with_daemon(TCP, &sh_app("web", "exec sleep 1000", ""));
    start_with_token(&env, None);
    let addr = api_addr(&env);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    reader.read_line(&mut head).unwrap();
    assert!(head.contains("200"), "{head}");
    let out = env.l4(&["restart", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut seen = String::new();
    let got = wait_for(Duration::from_secs(10), "a restart event", || {
        let mut line = String::new();
        if reader.read_line(&mut line).is_ok() {
            seen.push_str(&line);
        }
        seen.lines().find(|l| l.starts_with("data:") && l.contains("\"type\":\"restart\"")).map(str::to_owned)
    });
    assert!(got.contains("\"reason\":\"manual\""), "{got}");
    assert!(seen.contains("\"to\":\"stopping\""), "{seen}");
}

#[test]
fn scale_and_rolling_reload() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", "port = 4800"));
    env.start();
    let out = env.l4(&["scale", "web", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = env.status();
    let ports: Vec<Option<u16>> = s.instances.iter().map(|i| i.port).collect();
    assert_eq!(ports, vec![Some(4800), Some(4801), Some(4802)]);
    assert!(s.instances.iter().all(|i| i.state == "online"));
    let before: Vec<Option<u32>> = s.instances.iter().map(|i| i.pid).collect();
    let out = env.l4(&["reload", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = env.status();
    for (i, old) in after.instances.iter().zip(&before) {
        assert_ne!(i.pid, *old, "instance {} was not replaced", i.instance);
        assert_eq!((i.state.as_str(), i.restarts_by_reason.get("reload")), ("online", Some(&1)));
        assert_eq!(i.last_exit.as_ref().map(|e| e.reason.as_str()), Some("reloaded"));
    }
    let out = env.l4(&["scale", "web", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.status().instances.len(), 1);
}

#[test]
fn a_rolling_reload_stops_at_an_instance_whose_new_run_fails_and_the_old_run_keeps_serving() {
    let env =
        Env::new(&sh_app("web", "[ -f broken ] && exit 1; exec sleep 1000", "instances = 2\nrestart_delay = \"5s\""));
    env.start();
    let old = env.instance("web", 0).pid.unwrap();
    std::fs::write(env.path("broken"), "").unwrap();
    let out = env.l4(&["reload", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("web:0 was not replaced: crashed with exit code 1; the old run (pid {old}) keeps serving");
    assert!(stderr.contains(&expected), "{}", text(&out));
    let first = env.instance("web", 0);
    assert_eq!((first.state.as_str(), first.pid), ("online", Some(old)), "the old run is still the instance");
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), None).is_ok(), "and it still runs");
    assert_eq!(env.instance("web", 1).restarts, 0, "instance 1 was left alone");
}

#[test]
fn a_run_that_never_says_ready_fails_its_start_and_a_reload_to_it_keeps_the_old_run() {
    // Ready (READY=1 through NOTIFY_SOCKET) unless the file `mute` exists. The main
    // process itself says it (python in its place, then sleep in python's): a child that
    // says it and exits at once may be gone before the daemon reads the datagram, and a
    // READY=1 of a process that no longer exists cannot be told to be this run's.
    let script = "[ -f mute ] && echo \"muted run $$\" >&2; [ -f mute ] || exec python3 -c 'import os,socket; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.connect(os.environ[\"NOTIFY_SOCKET\"]); s.send(b\"READY=1\"); os.execvp(\"sleep\", [\"sleep\", \"1000\"])'; exec sleep 1000";
    let env = Env::new(&sh_app(
        "web",
        script,
        "ready = \"notify\"\nlisten_timeout = \"1s\"\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"",
    ));
    env.start();
    let old = env.instance("web", 0).pid.unwrap();
    std::fs::write(env.path("mute"), "").unwrap();
    let out = env.l4(&["reload", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected =
        format!("web:0 was not replaced: not ready within 1s (listen_timeout); the old run (pid {old}) keeps serving");
    assert!(text(&out).contains(&expected), "{}", text(&out));
    assert_eq!(env.instance("web", 0).pid, Some(old));
    // Its crash report is of the failed new run: its pid and its stderr.
    let r = &reports(&env)[0];
    assert_eq!(r["reason"], "not-ready", "{r}");
    let pid = r["pid"].as_u64().expect("the failed run's pid");
    assert_ne!(pid, u64::from(old));
    assert!(r["stderr_tail"].as_str().unwrap().contains(&format!("muted run {pid}")), "{r}");
    // A fresh start that is never ready: killed and reported, with the reason.
    env.l4(&["stop", "web"]);
    let out = env.l4(&["start", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("web:0 is waiting-restart: not ready within 1s (listen_timeout)"), "{}", text(&out));
}

#[test]
fn a_tcp_api_address_already_taken_is_said_at_every_start_not_just_logged() {
    let (port, _held) = crate::helper::held_port();
    let env = Env::with_daemon(&format!("api_listen = \"127.0.0.1:{port}\""), &sh_app("a", "exec sleep 1000", ""));
    let out = env.start();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("warning: the TCP status API cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("set `[daemon] api_listen`"), "{err}");
    // The Unix socket still serves l4ctl, and health says why TCP is off.
    assert_eq!(env.instance("a", 0).state, "online");
    let sock = env.home().join("l4ctl.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    write!(s, "GET /api/v1/health HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"api_error\":\"the TCP status API cannot listen on"), "{answer}");
}

#[test]
fn reload_config_says_a_changed_api_listen_needs_a_daemon_restart() {
    let app = sh_app("a", "exec sleep 1000", "");
    let env = Env::new(&app);
    env.start();
    let quiet = env.l4(&["reload-config"]);
    assert!(
        quiet.status.success() && !String::from_utf8_lossy(&quiet.stderr).contains("api_listen"),
        "{}",
        text(&quiet)
    );
    std::fs::write(
        env.config(),
        format!("[daemon]\nhome = \"run\"\nlog_dir = \"logs\"\napi_listen = \"127.0.0.1:0\"\n\n{app}"),
    )
    .unwrap();
    let out = env.l4(&["reload-config"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api_listen is 127.0.0.1:0 in the config but the daemon serves off"), "{err}");
    assert!(err.contains("`l4ctl kill` then `l4ctl start`"), "{err}");
}
