//! A crash report as a Sentry event, in an envelope posted to the DSN's ingest
//! endpoint (`/api/<project>/envelope/`, `X-Sentry-Auth` with the DSN's public
//! key). Pure: the sender lives in the daemon.

use serde_json::{Value, json};

use super::CrashReport;

pub use crate::config::dsn::Dsn;

/// Stderr sent with an event, at most (Sentry caps event sizes).
const TAIL_IN_EVENT: usize = 16 << 10;

/// The event for `report` (`release` from `[error_tracking]`).
pub fn event(report: &CrashReport, event_id: &str, release: Option<&str>) -> Value {
    let (kind, value) = match (&report.panic, &report.signal, report.exit_code) {
        (Some(p), _, _) => ("panic".to_owned(), p.message.clone()),
        (None, _, _) if report.reason == "oom" => {
            ("oom".to_owned(), format!("{} killed by the kernel's OOM killer (memory cgroup limit)", report.app))
        }
        (None, Some(sig), _) => (sig.clone(), format!("{} killed by {sig}", report.app)),
        (None, None, Some(code)) => (report.reason.clone(), format!("{} exited with code {code}", report.app)),
        (None, None, None) => (report.reason.clone(), format!("{} {}", report.app, report.reason)),
    };
    // A count update of an episode: the same fingerprint, so the same Sentry issue.
    let value = match (&report.episode, &report.last_at) {
        (Some(state), Some(last)) => {
            format!("{value} ({state}: {} crashes in this episode, the last at {last})", report.count)
        }
        _ => value,
    };
    // Sentry lists frames oldest first; Rust prints the innermost first.
    let frames: Vec<Value> = report
        .panic
        .iter()
        .flat_map(|p| p.frames.iter().rev())
        .map(|f| json!({ "function": f.function, "filename": f.file, "lineno": f.line, "colno": f.column, "in_app": f.file.as_deref().is_some_and(|file| !file.starts_with("/rustc/")) }))
        .collect();
    let mut exception = json!({
        "type": kind,
        "value": value,
        "mechanism": { "type": "l4ctl", "handled": report.level != "fatal" },
    });
    if !frames.is_empty() {
        exception["stacktrace"] = json!({ "frames": frames });
    }
    let tail = &report.stderr_tail
        [report.stderr_tail.ceil_char_boundary(report.stderr_tail.len().saturating_sub(TAIL_IN_EVENT))..];
    let mut event = json!({
        "event_id": event_id,
        "timestamp": report.at,
        "platform": "native",
        "level": report.level,
        "logger": "l4ctl",
        "exception": { "values": [exception] },
        "tags": {
            "app": report.app,
            "instance": report.instance.to_string(),
            "reason": report.reason,
            "exit": report.exit_code.map(|c| c.to_string()).or_else(|| report.signal.clone()).unwrap_or_default(),
            "episode": report.episode.as_deref().unwrap_or("first"),
        },
        "fingerprint": [report.fingerprint],
        "extra": {
            "pid": report.pid,
            "uptime_ms": report.uptime_ms,
            "restarts": report.restarts,
            "rss_bytes": report.rss_bytes,
            "count": report.count,
            "last_at": report.last_at,
            "thread": report.panic.as_ref().and_then(|p| p.thread.clone()),
            "location": report.panic.as_ref().and_then(|p| p.location.clone()),
            "stderr_tail": tail,
        },
    });
    if let Some(r) = release {
        event["release"] = json!(r);
    }
    event
}

/// The envelope body: header, item header, event, one JSON per line.
pub fn envelope(dsn: &Dsn, event: &Value, sent_at: &str) -> Vec<u8> {
    let payload = serde_json::to_vec(event).unwrap_or_default();
    let head = json!({ "event_id": event["event_id"], "sent_at": sent_at, "dsn": dsn.raw() });
    let item = json!({ "type": "event", "length": payload.len(), "content_type": "application/json" });
    let mut out = Vec::with_capacity(payload.len() + 256);
    for part in [serde_json::to_vec(&head).unwrap_or_default(), serde_json::to_vec(&item).unwrap_or_default(), payload]
    {
        out.extend_from_slice(&part);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash::{Frame, Panic};

    fn report() -> CrashReport {
        CrashReport {
            id: 1,
            at: "2026-11-29T19:00:00.000Z".into(),
            app: "web".into(),
            instance: 2,
            pid: Some(42),
            level: "fatal".into(),
            reason: "crashed".into(),
            exit_code: Some(101),
            signal: None,
            uptime_ms: 1500,
            restarts: 3,
            rss_bytes: Some(1 << 20),
            panic: Some(Panic {
                message: "boom".into(),
                location: Some("src/main.rs:5:9".into()),
                thread: Some("main".into()),
                frames: vec![
                    Frame {
                        function: "rust_begin_unwind".into(),
                        file: Some("/rustc/x/panicking.rs".into()),
                        line: Some(1),
                        column: Some(1),
                    },
                    Frame {
                        function: "web::main".into(),
                        file: Some("./src/main.rs".into()),
                        line: Some(5),
                        column: Some(9),
                    },
                ],
            }),
            fingerprint: "web:panic:src/main.rs:5:9".into(),
            count: 1,
            stderr_tail: "boom\n".into(),
            episode: None,
            last_at: None,
        }
    }

    #[test]
    fn a_panic_is_an_exception_with_frames_oldest_first() {
        let e = event(&report(), "0123456789abcdef0123456789abcdef", Some("1.2.3"));
        let ex = &e["exception"]["values"][0];
        assert_eq!((ex["type"].as_str(), ex["value"].as_str()), (Some("panic"), Some("boom")));
        let frames = ex["stacktrace"]["frames"].as_array().unwrap();
        assert_eq!(frames[0]["function"], "web::main");
        assert_eq!((frames[0]["lineno"].as_u64(), frames[0]["in_app"].as_bool()), (Some(5), Some(true)));
        assert_eq!(frames[1]["in_app"], false);
        assert_eq!((e["level"].as_str(), e["release"].as_str()), (Some("fatal"), Some("1.2.3")));
        assert_eq!(
            (e["tags"]["app"].as_str(), e["tags"]["instance"].as_str(), e["tags"]["exit"].as_str()),
            (Some("web"), Some("2"), Some("101"))
        );
        assert_eq!(e["fingerprint"][0], "web:panic:src/main.rs:5:9");
    }

    #[test]
    fn the_envelope_is_three_json_lines_with_the_payload_length() {
        let d = Dsn::parse("http://k@127.0.0.1:1/2").unwrap();
        let e = event(&report(), "0123456789abcdef0123456789abcdef", None);
        let body = envelope(&d, &e, "2026-11-29T19:00:01Z");
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let item: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(item["length"].as_u64(), Some(lines[2].len() as u64));
        let head: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(head["event_id"], "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_long_tail_of_multibyte_text_is_cut_on_a_character_boundary() {
        let mut r = report();
        r.stderr_tail = format!("{}x", "é".repeat(20_000)); // the cut falls inside an 'é' 
        let tail = event(&r, "e", None)["extra"]["stderr_tail"].as_str().unwrap().to_owned();
        assert!(tail.len() <= TAIL_IN_EVENT && tail.len() >= TAIL_IN_EVENT - 1, "{}", tail.len());
        assert!(tail.starts_with('é') && tail.ends_with("éx"));
    }

    #[test]
    fn an_oom_kill_says_so() {
        let mut r = report();
        (r.panic, r.reason, r.exit_code, r.signal) = (None, "oom".into(), None, Some("SIGKILL".into()));
        let ex = &event(&r, "e", None)["exception"]["values"][0];
        assert_eq!(ex["type"], "oom");
        assert!(ex["value"].as_str().unwrap().contains("OOM killer"), "{ex}");
    }
}
