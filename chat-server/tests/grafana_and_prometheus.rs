//! README "Grafana and Prometheus": every metric the dashboard in
//! `templates/grafana/layer4.json` names is in the `/metrics` of a real l4ctl daemon
//! (over its TCP API) or of the chat-server worker it runs, and the scrape example
//! names the jobs the dashboard reads.

use std::collections::BTreeSet;

use crate::cluster::Cluster;

/// The names of the samples in a Prometheus text answer.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

/// Every `l4_*` and `chat_*` name in the dashboard's queries (not `$chat_job`).
fn named(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut token = String::new();
            for c in expr.chars().chain(std::iter::once(' ')) {
                if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                    token.push(c);
                    continue;
                }
                if token.starts_with("l4_") || token.starts_with("chat_") {
                    names.insert(std::mem::take(&mut token));
                }
                token.clear();
            }
        }
    }
    names
}

async fn metrics(addr: &str) -> String {
    let (status, _, body) = layer4_chat_client::http::get(&format!("http://{addr}"), "/metrics").await.unwrap();
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_names_exists_in_the_two_metrics_outputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/grafana");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("layer4.json")).unwrap()).unwrap();
    let names = named(&dashboard);
    // What the dashboard is for: instances, restarts by reason, memory against the
    // ceiling, connections, deliveries, queue drops, replay, p99 latency.
    for wanted in [
        "l4_instance_up",
        "l4_instance_restarts_total",
        "l4_instance_memory_bytes",
        "l4_instance_memory_ceiling_bytes",
        "chat_connections_active",
        "chat_messages_out_total",
        "chat_queue_drops_total",
        "chat_replayed_messages_total",
        "chat_send_duration_seconds_bucket",
    ] {
        assert!(names.contains(wanted), "the dashboard does not show {wanted}");
    }

    // A daemon with the TCP API, one worker with a memory ceiling, restarted once (so
    // `l4_instance_restarts_total` has a reason).
    let cluster = Cluster::start_full(1, &[], "api_listen = \"127.0.0.1:0\"", "max_memory_restart = \"512M\"", "");
    let out = cluster.l4(&["restart", "chat"]);
    assert!(out.status.success(), "{}", cluster.diagnose(&out));
    let addr = std::fs::read_to_string(cluster.dir.path().join("run/api.addr")).unwrap();
    // Figures such as CPU appear once sampled twice: poll until every name is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let daemon = exposed(&metrics(addr.trim()).await);
        let worker = exposed(&metrics(&format!("127.0.0.1:{}", cluster.port)).await);
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| if n.starts_with("l4_") { !daemon.contains(*n) } else { !worker.contains(*n) })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in the dashboard but not in the daemon's or the worker's /metrics after 30 s: {missing:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The latency the p99 panel reads counts a send, once it is stored.
    let mut client = cluster.client(0, 1, "ada");
    crate::helper::joined(&mut client, "room").await;
    client.send("room", "hello").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics(&format!("127.0.0.1:{}", cluster.port)).await;
        if text.lines().any(|l| l == "chat_send_duration_seconds_count 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the send was not counted: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Every panel reads through the datasource variable; the daemon's `instance` label is
    // `exported_instance` once scraped (Prometheus keeps `instance` for the target), so no
    // query of `l4_instance_*` matches or labels by `instance`; the scrape example has
    // both jobs.
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        assert!(!panel["targets"].as_array().unwrap().is_empty(), "{}", panel["title"]);
        for t in panel["targets"].as_array().unwrap() {
            let (expr, legend) = (t["expr"].as_str().unwrap(), t["legendFormat"].as_str().unwrap());
            if expr.contains("l4_instance_") {
                assert!(!legend.contains("{{instance}}") && !expr.contains(", instance)"), "{expr} / {legend}");
            }
        }
    }
    let scrape = std::fs::read_to_string(root.join("prometheus.yml")).unwrap();
    for job in ["job_name: l4ctl", "job_name: chat"] {
        assert!(scrape.contains(job), "prometheus.yml has no `{job}`");
    }
}
