//! A worker for the crash-report tests: `crasher panic` panics in main (Rust's
//! own panic output, exit 101); `crasher task-panic` prints the structured panic
//! line (as chat-server does) for a panic in a thread and keeps running.

use std::io::Write;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("panic") => {
            eprintln!("crasher: about to fail");
            let v: Vec<u32> = Vec::new();
            if v.is_empty() {
                panic!("boom from crasher");
            }
        }
        Some("task-panic") => {
            std::panic::set_hook(Box::new(|info| {
                let message = info.payload().downcast_ref::<&str>().copied().unwrap_or("?");
                let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let line = serde_json::json!({"event": "panic", "message": message, "location": location, "thread": "task", "backtrace": []});
                let _ = writeln!(std::io::stderr(), "{line}");
            }));
            let _ = std::thread::spawn(|| panic!("a task failed")).join();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        other => {
            eprintln!("usage: crasher panic|task-panic (got {other:?})");
            std::process::exit(2);
        }
    }
}
