//! `GET /metrics`: Prometheus text format (version 0.0.4), rendered from one
//! snapshot of the daemon's table. Label values are app names (letters, digits,
//! `.`, `_`, `-`), instance numbers and fixed words, so they need no escaping.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, ApiState};
use crate::wire::metrics::MetricsSnapshot;

pub async fn metrics(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let snap = s.handle.metrics().await?;
    let body = render(&snap, s.started.elapsed().as_secs_f64());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(snap: &MetricsSnapshot, uptime_s: f64) -> String {
    let mut out = String::with_capacity(4096);
    let rows = &snap.status.instances;
    let labels = |i: &crate::wire::types::InstanceStatus| format!("app=\"{}\",instance=\"{}\"", i.app, i.instance);

    family(&mut out, "l4_instance_up", "gauge", "1 when the instance is online.");
    for i in rows {
        let _ =
            writeln!(out, "l4_instance_up{{{}}} {}", labels(i), u8::from(i.state == crate::lifecycle::State::Online));
    }
    family(&mut out, "l4_instance_state", "gauge", "1 for the instance's current state, 0 for the others.");
    for i in rows {
        for st in crate::lifecycle::State::ALL {
            let _ = writeln!(out, "l4_instance_state{{{},state=\"{st}\"}} {}", labels(i), u8::from(i.state == st));
        }
    }
    family(&mut out, "l4_instance_memory_bytes", "gauge", "RSS of the instance's whole process tree.");
    for i in rows.iter().filter(|i| i.memory_bytes.is_some()) {
        let _ = writeln!(out, "l4_instance_memory_bytes{{{}}} {}", labels(i), i.memory_bytes.unwrap_or(0));
    }
    family(
        &mut out,
        "l4_instance_memory_ceiling_bytes",
        "gauge",
        "The instance's max_memory_restart, when it has one.",
    );
    for i in rows {
        if let Some(c) = i.memory_ceiling_bytes {
            let _ = writeln!(out, "l4_instance_memory_ceiling_bytes{{{}}} {c}", labels(i));
        }
    }
    family(
        &mut out,
        "l4_instance_cpu_percent",
        "gauge",
        "CPU use of the process tree over the last sample, percent of one core.",
    );
    for i in rows.iter().filter(|i| i.cpu_percent.is_some()) {
        let _ = writeln!(out, "l4_instance_cpu_percent{{{}}} {}", labels(i), i.cpu_percent.unwrap_or(0.0));
    }
    family(&mut out, "l4_instance_uptime_seconds", "gauge", "Time since the instance's process started.");
    for i in rows.iter().filter(|i| i.uptime_ms.is_some()) {
        let _ =
            writeln!(out, "l4_instance_uptime_seconds{{{}}} {}", labels(i), i.uptime_ms.unwrap_or(0) as f64 / 1000.0);
    }
    family(&mut out, "l4_instance_restarts_total", "counter", "Restarts, by why the run before ended.");
    for i in rows {
        for (reason, n) in &i.restarts_by_reason {
            let _ = writeln!(out, "l4_instance_restarts_total{{{},reason=\"{reason}\"}} {n}", labels(i));
        }
    }
    family(&mut out, "l4_app_log_lines_total", "counter", "Lines written to the app's logs.");
    for (app, c) in &snap.logs {
        let _ = writeln!(out, "l4_app_log_lines_total{{app=\"{app}\"}} {}", c.lines);
    }
    family(
        &mut out,
        "l4_app_log_bytes_total",
        "counter",
        "Bytes of lines written to the app's logs (without prefixes).",
    );
    for (app, c) in &snap.logs {
        let _ = writeln!(out, "l4_app_log_bytes_total{{app=\"{app}\"}} {}", c.bytes);
    }
    family(&mut out, "l4_app_log_rotations_total", "counter", "Log file rotations.");
    for (app, c) in &snap.logs {
        let _ = writeln!(out, "l4_app_log_rotations_total{{app=\"{app}\"}} {}", c.rotations);
    }
    family(
        &mut out,
        "l4_app_log_dropped_bytes_total",
        "counter",
        "Bytes of log lines dropped because a log file could not be written (a full disk).",
    );
    for (app, c) in &snap.logs {
        let _ = writeln!(out, "l4_app_log_dropped_bytes_total{{app=\"{app}\"}} {}", c.dropped_bytes);
    }
    let (ticks, page) = crate::os::procs::clock_ticks_and_page_size();
    if let Some(me) = crate::os::procs::read_stat(std::process::id() as i32) {
        family(&mut out, "l4_daemon_memory_bytes", "gauge", "RSS of the l4ctl daemon.");
        let _ = writeln!(out, "l4_daemon_memory_bytes {}", me.rss_pages * page);
        family(&mut out, "l4_daemon_cpu_seconds_total", "counter", "CPU time used by the l4ctl daemon.");
        let _ = writeln!(out, "l4_daemon_cpu_seconds_total {}", me.cpu_ticks as f64 / ticks as f64);
    }
    family(&mut out, "l4_daemon_uptime_seconds", "gauge", "Time since the daemon started.");
    let _ = writeln!(out, "l4_daemon_uptime_seconds {uptime_s}");
    out
}
