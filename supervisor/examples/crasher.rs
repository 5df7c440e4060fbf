//! A worker for the crash-report tests: `crasher panic` panics in main (Rust's
//! own panic output, exit 101); `crasher task-panic` prints the structured panic
//! line (as chat-server does, but split across two writes) for a panic in a thread
//! and keeps running.

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
                // In two writes with a pause between, so the daemon reads it in two
                // pieces (as it may when a worker writes token by token).
                let line = format!("{line}\n");
                let (first, second) = line.split_at(line.find("panic").unwrap_or(line.len() / 2));
                let _ = std::io::stderr().write_all(first.as_bytes());
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = std::io::stderr().write_all(second.as_bytes());
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
