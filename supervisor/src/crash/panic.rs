//! Finding a Rust panic in a worker's stderr: the structured one-line report
//! (`{"event":"panic","message",...}`, what `chat-server` prints) or Rust's own
//! output (`thread 'main' panicked at src/main.rs:5:9:` + message + backtrace).
//! Pure text in, [`Panic`] out.

use serde::{Deserialize, Serialize};

/// A parsed panic: what Sentry shows as the exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic {
    pub message: String,
    /// `file:line:col`.
    pub location: Option<String>,
    pub thread: Option<String>,
    /// Innermost first, as Rust prints them.
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// The last panic in `text`, in either form.
pub fn last_panic(text: &str) -> Option<Panic> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate().rev() {
        if let Some(p) = structured(line) {
            return Some(p);
        }
        if let Some(p) = rust_default(&lines[i..]) {
            return Some(p);
        }
    }
    None
}

/// One structured panic line.
pub fn structured(line: &str) -> Option<Panic> {
    let line = line.trim();
    if !line.starts_with('{') || !line.contains("\"panic\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "panic" {
        return None;
    }
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let backtrace: Vec<String> = v
        .get("backtrace")
        .and_then(|b| b.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let refs: Vec<&str> = backtrace.iter().map(String::as_str).collect();
    Some(Panic {
        message: text("message").unwrap_or_default(),
        location: text("location"),
        thread: text("thread"),
        frames: frames(&refs),
    })
}

/// Rust's default panic output starting at `lines[0]`.
fn rust_default(lines: &[&str]) -> Option<Panic> {
    let head = lines.first()?.trim_start();
    let rest = head.strip_prefix("thread '")?;
    // `thread 'main' panicked at`, or since Rust 1.92 `thread 'main' (4242) panicked at`.
    let (thread, rest) = rest.split_once("' ")?;
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(") ")?.1,
        None => rest,
    };
    let rest = rest.strip_prefix("panicked at ")?;
    let (location, inline_message) = match rest.strip_suffix(':') {
        // Since Rust 1.73: `panicked at src/main.rs:5:9:`, the message on the next lines.
        Some(loc) => (loc.to_owned(), None),
        // Before: `panicked at 'message', src/main.rs:5:9`.
        None => {
            let (msg, loc) = rest.rsplit_once("', ")?;
            (loc.to_owned(), Some(msg.trim_start_matches('\'').to_owned()))
        }
    };
    let mut message = Vec::new();
    let mut backtrace = Vec::new();
    let mut in_trace = false;
    for line in &lines[1..] {
        if line.starts_with("stack backtrace:") {
            in_trace = true;
        } else if line.starts_with("note: ") || line.starts_with("thread '") {
            if line.starts_with("thread '") {
                break;
            }
        } else if in_trace {
            backtrace.push(*line);
        } else if inline_message.is_none() {
            message.push(*line);
        }
    }
    Some(Panic {
        message: inline_message.unwrap_or_else(|| message.join("\n")),
        location: Some(location),
        thread: Some(thread.to_owned()),
        frames: frames(&backtrace),
    })
}

/// `N: function` lines, each optionally followed by `at file:line:col`.
fn frames(lines: &[&str]) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    for line in lines {
        let t = line.trim();
        if let Some(at) = t.strip_prefix("at ") {
            if let Some(last) = out.last_mut().filter(|f| f.file.is_none()) {
                let mut parts = at.rsplitn(3, ':');
                let (col, ln, file) = (parts.next(), parts.next(), parts.next());
                match (file, ln.and_then(|l| l.parse().ok()), col.and_then(|c| c.parse().ok())) {
                    (Some(file), Some(line), Some(column)) => {
                        last.file = Some(file.to_owned());
                        last.line = Some(line);
                        last.column = Some(column);
                    }
                    _ => last.file = Some(at.to_owned()),
                }
            }
        } else if let Some((n, function)) = t.split_once(": ")
            && n.chars().all(|c| c.is_ascii_digit())
            && !n.is_empty()
        {
            out.push(Frame { function: function.to_owned(), file: None, line: None, column: None });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "starting\nthread 'main' panicked at src/main.rs:5:9:\nattempt to divide by zero\nstack backtrace:\n   0: rust_begin_unwind\n             at /rustc/abc/library/std/src/panicking.rs:665:5\n   1: crasher::main\n             at ./src/main.rs:5:9\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n";

    #[test]
    fn rusts_default_output_with_a_backtrace() {
        let p = last_panic(DEFAULT).unwrap();
        assert_eq!(p.message, "attempt to divide by zero");
        assert_eq!(p.location.as_deref(), Some("src/main.rs:5:9"));
        assert_eq!(p.thread.as_deref(), Some("main"));
        assert_eq!(p.frames.len(), 2);
        assert_eq!(p.frames[1].function, "crasher::main");
        assert_eq!(
            (p.frames[1].file.as_deref(), p.frames[1].line, p.frames[1].column),
            (Some("./src/main.rs"), Some(5), Some(9))
        );
    }

    #[test]
    fn without_a_backtrace_and_in_the_old_format() {
        let p = last_panic(
            "thread 'tokio-runtime-worker' panicked at src/x.rs:1:2:\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
        )
        .unwrap();
        assert_eq!(
            (p.message.as_str(), p.thread.as_deref(), p.frames.len()),
            ("boom", Some("tokio-runtime-worker"), 0)
        );
        let old = last_panic("thread 'main' panicked at 'old style', src/lib.rs:3:4\n").unwrap();
        assert_eq!((old.message.as_str(), old.location.as_deref()), ("old style", Some("src/lib.rs:3:4")));
    }

    #[test]
    fn the_structured_line_and_the_last_of_several() {
        // serde_json writes keys in order: `event` is not first.
        let line = r#"{"backtrace":["0: l4::hub::run","at ./src/hub.rs:10:5"],"event":"panic","location":"src/hub.rs:10:5","message":"task failed","thread":"worker"}"#;
        let text = format!("{DEFAULT}noise\n{line}\n");
        let p = last_panic(&text).unwrap();
        assert_eq!((p.message.as_str(), p.location.as_deref()), ("task failed", Some("src/hub.rs:10:5")));
        assert_eq!(p.frames[0].line, Some(10));
        assert!(last_panic("just an error\n{\"event\":\"other\"}\n").is_none());
    }
}
