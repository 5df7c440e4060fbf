//! `l4ctl logs`, `flush` and `reload-logs`: the log files of the daemon's apps,
//! read directly from disk (the daemon only says where they are), with the same
//! bounds as the API's log reads: at most `MAX_LINES` lines per file (clap refuses
//! more) and `MAX_BYTES` of history in all, the newest lines that fit.
//!
//! Lines are printed with their control characters escaped ([`super::terminal`]),
//! whether stdout is a terminal or not: `l4ctl logs | less -R`, `| tee` or a
//! `grep --color` still reach a terminal, and the escaping only touches bytes that
//! nobody greps for. `--raw` prints the bytes as they are (and no prefix).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::{Cli, fail, resolve};
use crate::client::Client;
use crate::logs::follow::Follower;
use crate::logs::tail::MAX_BYTES;
use crate::wire::types::AppDescription;

/// Which files `logs` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Combined,
    Out,
    Err,
}

#[derive(Debug, Clone)]
pub struct LogsArgs {
    pub app: Option<String>,
    pub lines: usize,
    pub follow: bool,
    /// The time each line is shown, in front of it.
    pub timestamp: bool,
    /// Only this instance's lines (`app:N`, or an id).
    pub instance: Option<u32>,
    pub which: Which,
    pub raw: bool,
    pub json: bool,
}

struct Source {
    app: String,
    instance: Option<u32>,
    follower: Follower,
}

const COLOURS: [u8; 6] = [36, 32, 35, 33, 34, 31];

pub(super) async fn logs(cli: &Cli, mut args: LogsArgs) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    let named = match super::address::target(&client, args.app.as_deref().unwrap_or("all")).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    // One instance: its app's files, only its lines.
    let app = match super::address::instance_of(&named) {
        Some((app, index)) => {
            args.instance = Some(index);
            app.to_owned()
        }
        None => named,
    };
    let apps = match super::app_names(&client, &app).await {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let mut sources = Vec::new();
    for app in &apps {
        match client.get::<AppDescription>(&format!("/api/v1/apps/{app}")).await {
            Ok(d) => {
                for f in d.log_files {
                    let path: PathBuf = match args.which {
                        Which::Combined => f.combined,
                        Which::Out => f.out,
                        Which::Err => f.err,
                    };
                    sources.push(Source { app: app.clone(), instance: f.instance, follower: Follower::at_end(&path) });
                }
            }
            Err(e) => return fail(&e),
        }
    }
    let tty = super::shell::colour();
    let mut out = std::io::stdout().lock();
    let budget = MAX_BYTES / sources.len().max(1);
    let mut cut = false;
    for (i, s) in sources.iter().enumerate() {
        let history = s.follower.history(args.lines, budget);
        cut |= history.cut;
        for line in history.lines {
            print_line(&mut out, &args, tty, i, s, &line);
        }
    }
    let _ = out.flush();
    drop(out);
    if cut {
        eprintln!("l4ctl: older lines left out: the history shown is at most {} MiB", MAX_BYTES >> 20);
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    follow(&mut sources, &args, tty)
}

/// Print new lines as they come, woken by inotify (and every 500 ms in any case).
fn follow(sources: &mut [Source], args: &LogsArgs, tty: bool) -> ExitCode {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    });
    let mut watcher = watcher.ok();
    if let Some(w) = &mut watcher {
        let mut dirs: Vec<PathBuf> =
            sources.iter().filter_map(|s| s.follower.path.parent().map(|p| p.to_path_buf())).collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            let _ = w.watch(&d, notify::RecursiveMode::NonRecursive);
        }
    }
    loop {
        let mut out = std::io::stdout().lock();
        for (i, s) in sources.iter_mut().enumerate() {
            for line in s.follower.poll() {
                print_line(&mut out, args, tty, i, s, &line);
            }
        }
        if out.flush().is_err() {
            // The reader went away (e.g. `| head`).
            return ExitCode::SUCCESS;
        }
        drop(out);
        let _ = rx.recv_timeout(Duration::from_millis(500));
    }
}

fn print_line(out: &mut impl Write, args: &LogsArgs, tty: bool, i: usize, s: &Source, line: &[u8]) {
    let instance = s.instance.or_else(|| instance_in(line));
    if args.instance.is_some() && instance != args.instance {
        return;
    }
    let who = match instance {
        Some(n) => format!("{}|{n}", s.app),
        None => s.app.clone(),
    };
    let shown = args.timestamp.then(|| {
        chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    });
    let _ = if args.json {
        // JSON escapes every control character itself.
        let mut obj = json!({ "app": s.app, "instance": instance, "line": String::from_utf8_lossy(line) });
        if let Some(t) = shown {
            obj["shown_at"] = json!(t);
        }
        writeln!(out, "{obj}")
    } else if args.raw {
        let stamp = shown.map(|t| format!("{t} ")).unwrap_or_default();
        out.write_all(stamp.as_bytes()).and_then(|()| out.write_all(line)).and_then(|()| out.write_all(b"\n"))
    } else {
        let stamp = shown.map(|t| format!("{t} ")).unwrap_or_default();
        let mut text = if tty {
            format!("{stamp}\x1b[{}m{who}\x1b[0m ", COLOURS[i % COLOURS.len()]).into_bytes()
        } else {
            format!("{stamp}{who} ").into_bytes()
        };
        super::terminal::escape_controls(line, &mut text);
        text.push(b'\n');
        out.write_all(&text)
    };
}

/// `l4ctl flush [APP]` and `l4ctl reload-logs`.
pub(super) async fn log_command(cli: &Cli, app: Option<String>, path: &str, what: &str) -> ExitCode {
    let client = Client::new(&resolve(cli, None).home);
    match client.post::<serde_json::Value>(path, json!({ "app": app })).await {
        Ok(v) => {
            println!("l4ctl: {what} ({} app{})", v["writers"], if v["writers"] == 1 { "" } else { "s" });
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The instance of a line of a merged file: the `[3]` or `[3/err]` tag the writer puts
/// after the timestamp (or first, with `time = false`).
fn instance_in(line: &[u8]) -> Option<u32> {
    let start = if line.first() == Some(&b'[') { 0 } else { memchr::memmem::find(line, b" [")? + 1 };
    let rest = &line[start + 1..];
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || !matches!(rest.get(end), Some(b']' | b'/')) {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_tags_are_read_from_merged_lines() {
        assert_eq!(super::instance_in(b"2026-11-29T13:08:59.701Z [3] hello [9]"), Some(3));
        assert_eq!(super::instance_in(b"2026-11-29T13:08:59.701Z [12/err] x"), Some(12));
        assert_eq!(super::instance_in(b"[0] no time"), Some(0));
        assert_eq!(super::instance_in(b"plain line"), None);
    }
}
