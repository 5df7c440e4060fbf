//! README "Guarantees" (panic line) and "Health and metrics" (the periodic log line, the
//! upgrade and connection counters, the backends in the health check).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::helper::*;

/// target/<profile>/examples/panic_demo, built on demand when `cargo test` did not.
fn panic_demo() -> PathBuf {
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let exe = profile_dir.join("examples").join("panic_demo");
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "layer4-chat-server", "--example", "panic_demo"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    exe
}

#[test]
fn a_panic_in_a_task_or_a_thread_is_one_structured_line_on_stderr() {
    let out = Command::new(panic_demo()).env_remove("RUST_BACKTRACE").output().unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alive\n", "a task's panic does not end the process");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let reports: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "panic")
        .collect();
    assert_eq!(reports.len(), 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "nothing but the two lines: {stderr}");
    let (task, main) = (&reports[0], &reports[1]);
    assert_eq!(task["message"], "boom in a task");
    assert!(task["thread"].as_str().unwrap().starts_with("tokio-r"), "{task}");
    assert_eq!(main["message"], "boom on main");
    assert_eq!(main["thread"], "main");
    for r in &reports {
        let location = r["location"].as_str().unwrap();
        assert!(location.starts_with("chat-server/examples/panic_demo.rs:"), "{location}");
        assert_eq!(location.split(':').count(), 3, "file:line:col");
        assert!(!r["backtrace"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn connection_metrics_are_logged_every_interval() {
    let server = Server::start(&[("METRICS_LOG_INTERVAL", "200"), ("RUST_LOG", "info")]).await;
    let _ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.stdout();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("connection metrics")).collect();
        if lines.iter().any(|l| l.contains("active_connections=1") && l.contains("total_connections=1")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no metrics line with the connection: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The raw text of `/metrics` (histograms included, which `Server::metric` does not read).
async fn metrics_text(server: &Server) -> String {
    let (_, _, body) = layer4_chat_client::http::get(&server.base(), "/metrics").await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn upgrades_are_counted_by_outcome_and_closed_connections_by_how_long_they_lasted() {
    use layer4_chat_client::protocol::{ClientMsg, Format};
    let server = Server::start(&[]).await;
    assert!(raw(&server.ws_url(), None, None).await.is_err(), "no token: 401");
    assert!(raw(&server.ws_url(), Some(&server.token(1, "ann")), Some("nope")).await.is_err(), "400");
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    // Two resumes on one connection: one client coming back.
    for room in ["a", "b"] {
        raw_send(&mut ws, Format::Json, &ClientMsg::Join { room: room.into(), since: Some(0) }).await;
    }
    server.wait_metric("chat_resumes_total", &[], |v| v == 2.0).await;
    ws.close(None).await.unwrap();
    server.wait_metric("chat_disconnections_total", &[("reason", "client")], |v| v == 1.0).await;
    assert_eq!(server.metric("chat_upgrade_requests_total", &[]).await, 3.0);
    assert_eq!(server.metric("chat_connections_total", &[]).await, 1.0);
    assert_eq!(server.metric("chat_connections_rejected_total", &[("reason", "auth")]).await, 1.0);
    assert_eq!(server.metric("chat_connections_rejected_total", &[("reason", "handshake")]).await, 1.0);
    assert_eq!(server.metric("chat_connections_resumed_total", &[]).await, 1.0);
    let text = metrics_text(&server).await;
    for line in [
        "chat_connection_duration_seconds_count{reason=\"client\"} 1\n",
        "chat_connection_duration_seconds_bucket{reason=\"client\",le=\"+Inf\"} 1\n",
        "chat_connection_duration_seconds_bucket{reason=\"client\",le=\"86400\"} 1\n",
        "chat_connection_duration_seconds_count{reason=\"timeout\"} 0\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}

#[tokio::test]
async fn one_message_in_sixteen_has_its_deliveries_timed_from_its_store_to_their_writes() {
    use layer4_chat_client::protocol::Format;
    let server = Server::start(&[]).await;
    let (mut ann, mut bob) = (server.client(1, "ann", Format::Json), server.client(2, "bob", Format::MsgPack));
    joined(&mut ann, "r").await;
    joined(&mut bob, "r").await;
    for i in 0..20 {
        ann.send("r", &format!("m{i}")).await.unwrap();
    }
    assert_eq!(messages(&mut bob, 20).await.len(), 20);
    assert_eq!(messages(&mut ann, 20).await.len(), 20);
    // Message 16's two deliveries (both members) are timed, and no other's; each is
    // written by the time its reader saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(&server).await;
        if text.contains("chat_delivery_duration_seconds_count 2\n") {
            assert!(text.contains("chat_delivery_duration_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
            assert!(text.contains("chat_deliveries_dropped_total{reason=\"slow_consumer\"} 0\n"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "deliveries not timed:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_health_check_says_when_redis_was_lost_and_why() {
    let mut redis = crate::fanout::Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let server = Server::start(&[("REDIS_URL", url.as_str())]).await;
    let health = || async {
        let (_, _, body) = layer4_chat_client::http::get(&server.base(), "/api/health/websocket").await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let h = health().await;
    assert_eq!(h["redis"]["status"], "ok", "{h}");
    assert!(h["redis"]["last_error"].is_null(), "{h}");
    assert_eq!(h["database"]["status"], "ok", "{h}");
    redis.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let h = loop {
        let h = health().await;
        if h["redis"]["status"] == "degraded" {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "redis never degraded: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(h["status"], "healthy", "a lost Redis keeps the worker in: {h}");
    let message = h["redis"]["last_error"]["message"].as_str().unwrap();
    assert!(!message.is_empty() && h["redis"]["last_error"]["at"].as_str().unwrap().ends_with('Z'), "{h}");
}
