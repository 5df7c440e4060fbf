//! Human output: the status table and `describe`. JSON output is the API's own
//! types printed as they are, so the two can never drift apart.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::wire::types::{AppDescription, InstanceStatus, StatusReport};

/// The status table; with `colour`, each state in PM2's colours (online green,
/// errored and crash-loop red, waiting-restart yellow, starting and stopping
/// cyan, stopped grey), painted after the layout so the columns stay aligned.
pub(super) fn table(report: &StatusReport, colour: bool) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(["id", "app", "inst", "pid", "port", "state", "↺", "uptime", "cpu", "mem"]);
    for i in &report.instances {
        t.add_row([
            i.id.to_string(),
            i.app.clone(),
            i.instance.to_string(),
            opt(i.pid),
            opt(i.port),
            state(i),
            i.restarts.to_string(),
            i.uptime_ms.map_or("-".into(), duration),
            i.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
            i.memory_bytes.map_or("-".into(), bytes),
        ]);
    }
    if report.instances.is_empty() {
        return "no apps are loaded (l4ctl start path/to/layer4.toml)".into();
    }
    let mut out = if colour { paint_states(&t.to_string(), report) } else { t.to_string() };
    for (app, dropped) in report.log_dropped_bytes.iter().filter(|(_, d)| **d > 0) {
        out.push_str(&format!(
            "\n{app}: {} of log lines dropped: a log file could not be written (full disk?); see the daemon's log",
            bytes(*dropped)
        ));
    }
    out
}

/// Colour each row's state cell (the sixth column) of a rendered table.
fn paint_states(table: &str, report: &StatusReport) -> String {
    use crate::lifecycle::State;
    let mut rows = report.instances.iter();
    let mut out = String::with_capacity(table.len() + 16 * report.instances.len());
    for line in table.lines() {
        // Data rows are the lines after the header that hold cell separators.
        let is_row = line.starts_with('│') && !line.contains(" state ") && line.contains('┆');
        let instance = if is_row { rows.next() } else { None };
        match instance {
            Some(i) => {
                let code = match i.state {
                    State::Online => "32",
                    State::Errored | State::CrashLoop => "31",
                    State::WaitingRestart => "33",
                    State::Starting | State::Stopping => "36",
                    State::Stopped => "90",
                };
                let mut cells: Vec<&str> = line.split('┆').collect();
                let painted;
                if let Some(cell) = cells.get(5) {
                    let text = cell.trim();
                    painted = cell.replacen(text, &format!("\x1b[{code}m{text}\x1b[0m"), 1);
                    cells[5] = &painted;
                    out.push_str(&cells.join("┆"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// A figure, or `-`.
pub(super) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn state(i: &InstanceStatus) -> String {
    match i.next_retry_ms {
        Some(ms) => format!("{} (retry in {})", i.state, duration(ms)),
        None => i.state.to_string(),
    }
}

/// `1234` ms -> `1s`, then `5m`, `2h`, `3d`, as PM2 shows uptime.
pub(super) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub(super) fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.1}G", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1}M", f / (K * K))
    } else {
        format!("{:.1}K", f / K)
    }
}

pub(super) fn description(d: &AppDescription) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    line("app", d.name.clone());
    line("config file", d.config_file.display().to_string());
    line("env profile", d.env_profile.clone().unwrap_or_else(|| "-".into()));
    if let Some(obj) = d.config.as_object() {
        // Nested settings (`restart`, `logs`) one per line under their group;
        // the log files are listed below with the counters.
        for (k, v) in obj.iter().filter(|(k, _)| !["name", "triggers"].contains(&k.as_str())) {
            match v.as_object() {
                Some(group) => {
                    for (sub, v) in group.iter().filter(|(sub, _)| *sub != "files") {
                        line(&format!("{k}.{}", unit_free(sub)), readable(sub, v));
                    }
                }
                None => line(unit_free(k), readable(k, v)),
            }
        }
    }
    triggers(d, &mut line);
    line("env (names only)", if d.env_names.is_empty() { "-".into() } else { d.env_names.join(", ") });
    for f in &d.log_files {
        let who = f.instance.map_or_else(String::new, |i| format!(" ({i})"));
        line(&format!("out file{who}"), f.out.display().to_string());
        line(&format!("error file{who}"), f.err.display().to_string());
        line(&format!("log file{who}"), f.combined.display().to_string());
    }
    let c = &d.log_counters;
    line(
        "log counters",
        format!(
            "{} lines, {} bytes, {} rotations, {} cut, {} bytes dropped",
            c.lines, c.bytes, c.rotations, c.cut_lines, c.dropped_bytes
        ),
    );
    for i in &d.instances {
        line(
            &format!("instance {}", i.instance),
            format!("id {} pid {} state {} restarts {}", i.id, opt(i.pid), state(i), i.restarts),
        );
        if let Some(e) = &i.last_exit {
            let how = match (&e.code, &e.signal) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => e.error.clone().unwrap_or_default(),
            };
            line("  last exit", format!("{} ({how}) at {} after {}", e.reason, e.at, duration(e.uptime_ms)));
        }
        if let Some(ms) = i.next_retry_ms {
            line("  next retry", format!("in {}", duration(ms)));
        }
    }
    out
}

/// `watch` and `cron_restart`: what they are set to and what they did.
fn triggers(d: &AppDescription, line: &mut impl FnMut(&str, String)) {
    let spec = d.config.get("triggers");
    let watch = spec.and_then(|t| t.get("watch")).filter(|w| !w.is_null());
    let cron = spec.and_then(|t| t.get("cron_restart")).and_then(|c| c.as_str());
    let state = d.triggers.clone().unwrap_or_default();
    match watch {
        Some(w) => {
            let get = |k: &str| w.get(k).cloned().unwrap_or_default();
            let what = format!(
                "{} (ignoring {}; delay {})",
                readable("paths", &get("paths")),
                readable("ignore", &get("ignore")),
                readable("watch_delay_ms", &get("watch_delay_ms"))
            );
            line("watch", what);
            line("  watching", opt(state.watch.as_deref()));
        }
        None => line("watch", "false".into()),
    }
    line(
        "cron_restart",
        cron.map_or_else(|| "-".into(), |c| format!("{c:?} (next {})", opt(state.next_cron_restart.as_deref()))),
    );
    if watch.is_some() || cron.is_some() {
        let last =
            state.last.as_ref().map_or_else(|| "-".into(), |l| format!("{l} at {}", opt(state.last_at.as_deref())));
        line("  restarts by them", format!("{}, last: {last}", state.restarts));
        if let Some(e) = &state.last_error {
            line("  last not done", e.clone());
        }
    }
}

/// `kill_timeout_ms` shows as `kill_timeout`: the value carries its unit.
fn unit_free(key: &str) -> &str {
    key.strip_suffix("_ms").or_else(|| key.strip_suffix("_bytes")).unwrap_or(key)
}

/// A config value as a person reads it: no JSON quotes, `-` for unset,
/// milliseconds as durations, byte counts as sizes, arguments as a shell shows them.
fn readable(key: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    let number = v.as_u64();
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let words: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s)
                        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) =>
                    {
                        format!("{s:?}")
                    }
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if words.is_empty() { "-".into() } else { words.join(" ") }
        }
        _ if key.ends_with("_ms") => number.map_or_else(
            || v.to_string(),
            |ms| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string(),
        ),
        _ if key.ends_with("_bytes") || key == "max_size" || key == "max_line" => {
            number.map_or_else(|| v.to_string(), bytes)
        }
        other => other.to_string(),
    }
}

/// `l4ctl crashes`: one line per report, newest first.
pub fn crashes(v: &serde_json::Value) -> String {
    let list = v["crashes"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no crash reports\n");
    }
    for r in list {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let how = match (r["exit_code"].as_i64(), r["signal"].as_str()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) => sig.to_owned(),
            _ => s("reason"),
        };
        let what = match r["panic"].as_object() {
            Some(p) => format!(
                "panicked at {}: {}",
                p.get("location").and_then(|l| l.as_str()).unwrap_or("?"),
                p.get("message").and_then(|m| m.as_str()).unwrap_or("").lines().next().unwrap_or("")
            ),
            None => s("reason"),
        };
        out.push_str(&format!(
            "#{} {} {}:{} {} {} x{} {}\n",
            r["id"],
            s("at"),
            s("app"),
            r["instance"],
            s("level"),
            how,
            r["count"],
            what
        ));
    }
    let d = &v["delivery"];
    let sinks: Vec<&str> = [("sentry", "Sentry"), ("webhook", "webhook")]
        .into_iter()
        .filter(|(k, _)| d[*k].as_bool() == Some(true))
        .map(|(_, name)| name)
        .collect();
    if !sinks.is_empty() {
        out.push_str(&format!(
            "delivery to {}: {} sent, {} failed, {} dropped (queue full), {} waiting\n",
            sinks.join(" and "),
            d["sent"],
            d["failed"],
            d["dropped"],
            d["queued"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_like_pm2() {
        assert_eq!(super::duration(450), "450ms");
        assert_eq!(super::duration(61_000), "1m");
        assert_eq!(super::duration(3 * 86_400_000), "3d");
        assert_eq!(super::bytes(3 * 1024 * 1024), "3.0M");
    }

    #[test]
    fn states_are_painted_in_pm2_colours_and_the_columns_stay_aligned() {
        use crate::lifecycle::State;
        use crate::wire::types::{InstanceStatus, StatusReport};
        let report = StatusReport::of(vec![
            InstanceStatus::example("web", 0, Some(10), State::Online, Some(5000)),
            InstanceStatus::example("web", 1, None, State::Errored, None),
            InstanceStatus::example("online", 0, None, State::Stopped, None),
        ]);
        let plain = super::table(&report, false);
        let painted = super::table(&report, true);
        assert!(!plain.contains('\x1b'));
        assert!(painted.contains("\x1b[32monline\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[31merrored\x1b[0m"), "{painted}");
        assert!(painted.contains("\x1b[90mstopped\x1b[0m"), "{painted}");
        // The app named `online` keeps its name unpainted: only the state column is.
        assert!(painted.contains("┆ online ┆"), "{painted}");
        let strip =
            |t: &str| t.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[90m", "").replace("\x1b[0m", "");
        assert_eq!(strip(&painted), plain);
    }
}
