//! README "Guarantees" (panic line) and "Health and metrics" (the periodic log line).

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
