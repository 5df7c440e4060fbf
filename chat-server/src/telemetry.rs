//! Logging for a worker, and its panic report.
//!
//! Logs go to stdout (the supervisor captures and rotates them); `RUST_LOG` overrides
//! the default `info`; without a timestamp of their own when l4ctl stamps each line
//! (`L4_LOG_TIME=1`). A panic, in any thread or tokio task, is written to stderr as
//! one JSON line the supervisor can recognise without parsing free text:
//! `{"event":"panic","message":...,"location":"file:line:col","thread":...,"backtrace":[...]}`.

use std::io::Write;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_target(false);
    // Under l4ctl with `time = true` every line is stamped there: one timestamp, not two.
    let _ = if supervisor_stamps_lines() { fmt.without_time().try_init() } else { fmt.try_init() };
    install_panic_hook();
}

/// `L4_LOG_TIME=1`: set by l4ctl when it prefixes each captured line with the time.
fn supervisor_stamps_lines() -> bool {
    std::env::var("L4_LOG_TIME").is_ok_and(|v| v == "1")
}

/// Replaces the default panic output with the structured line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_string()
        };
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let thread = std::thread::current().name().unwrap_or("<unnamed>").to_string();
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        let frames: Vec<&str> = backtrace.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let line = serde_json::json!({
            "event": "panic",
            "message": message,
            "location": location,
            "thread": thread,
            "backtrace": frames,
        });
        // One write, so a reader of the pipe never sees half a line.
        let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
    }));
}

/// Now as `2026-11-29T15:04:05.123Z`.
pub fn iso8601_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
