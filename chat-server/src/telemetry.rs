//! Logging for a worker, and its panic report.
//!
//! Logs go to stdout (the supervisor captures and rotates them); `RUST_LOG` overrides
//! the default `info`. A panic, in any thread or tokio task, is written to stderr as
//! one JSON line the supervisor can recognise without parsing free text:
//! `{"event":"panic","message":...,"location":"file:line:col","thread":...,"backtrace":[...]}`.

use std::io::Write;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_target(false).try_init();
    install_panic_hook();
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
