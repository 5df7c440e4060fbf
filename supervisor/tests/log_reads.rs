//! docs/api.md "Limits" and README "Logs": reading logs back is bounded. A log of
//! 1000 lines of 60 KB (60 MB) is read through the API and `l4ctl logs`: the
//! newest lines that fit in 8 MiB, in order; more than 10,000 lines is refused;
//! a third read at once gets 429; the daemon's memory comes back afterwards.
//! On a terminal, `l4ctl logs` shows control sequences other than colours as text.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helper::*;

const MIB: usize = 1 << 20;

/// An app whose combined log holds 1000 lines `L<i> ` + 60,000 x, all in one file.
fn big_log() -> Env {
    let env = Env::new(&sh_app(
        "big",
        "x=$(head -c 60000 /dev/zero | tr '\\0' x); i=0; \
         while [ $i -lt 1000 ]; do i=$((i+1)); echo \"L$i $x\"; done; exec sleep 1000",
        "[apps.log_rotate]\nmax_size = \"1G\"",
    ));
    env.start();
    wait_for(Duration::from_secs(60), "1000 lines written", || {
        let out = env.l4(&["describe", "big", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["log_counters"]["lines"].as_u64() == Some(1000)).then_some(())
    });
    // Counted is not yet on disk: wait for the file itself to hold the last line.
    wait_for(Duration::from_secs(60), "the 1000th line in the file", || {
        let text = std::fs::read(env.path("logs/big.log")).ok()?;
        (text.ends_with(b"\n") && newlines(&text) >= 1000).then_some(())
    });
    env
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

fn socket(env: &Env) -> PathBuf {
    env.home().join("l4ctl.sock")
}

/// Send a GET over the Unix socket without reading the answer.
fn send(sock: &Path, path: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n").unwrap();
    s
}

/// Status, head (lowercased) and body of an answer whose request was sent on `s`.
fn answer(mut s: UnixStream) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head, raw[split + 4..].to_vec())
}

fn get(sock: &Path, path: &str) -> (u16, String, Vec<u8>) {
    answer(send(sock, path))
}

/// The `line`s of a logs answer, checking its Content-Length.
fn lines_of(head: &str, body: &[u8]) -> (Vec<String>, bool) {
    assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let lines = v["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_owned()).collect();
    (lines, v["truncated"].as_bool().unwrap())
}

/// The newest lines of `file` whose bytes, newlines counted, fit in 8 MiB (at most `n`).
fn newest_that_fit(file: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut budget = 8 * MIB;
    let mut out: Vec<String> = text
        .lines()
        .rev()
        .take(n)
        .take_while(|l| budget.checked_sub(l.len() + 1).map(|b| budget = b).is_some())
        .map(str::to_owned)
        .collect();
    out.reverse();
    out
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn log_reads_answer_the_newest_lines_that_fit_in_8_mib_in_order_and_refuse_more_than_10000() {
    let env = big_log();
    let (sock, file) = (socket(&env), env.path("logs/big.log"));
    let idle = rss_kib(env.daemon_pid());
    // 100 lines (6 MB) fit: all of them, oldest first.
    let (code, head, body) = get(&sock, "/api/v1/apps/big/logs?lines=100");
    assert_eq!(code, 200, "{head}");
    let (lines, truncated) = lines_of(&head, &body);
    assert_eq!((lines.len(), truncated), (100, false));
    assert_eq!(lines, newest_that_fit(&file, 100));
    assert!(lines[0].contains(" L901 ") && lines[99].contains(" L1000 "), "{:.40} .. {:.40}", lines[0], lines[99]);
    // 1000 lines (60 MB) do not: the newest that fit in 8 MiB, and `truncated`.
    let (code, head, body) = get(&sock, "/api/v1/apps/big/logs?lines=1000");
    assert_eq!(code, 200, "{head}");
    let (lines, truncated) = lines_of(&head, &body);
    let expected = newest_that_fit(&file, 1000);
    assert!(truncated && (130..150).contains(&expected.len()), "{} lines", expected.len());
    assert_eq!(lines, expected, "the newest lines that fit, oldest first");
    // The limit itself is accepted; one more is a 400 that says why.
    assert_eq!(get(&sock, "/api/v1/apps/big/logs?lines=10000").0, 200);
    let (code, _, body) = get(&sock, "/api/v1/apps/big/logs?lines=10001");
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((code, err["error"]["code"].as_str()), (400, Some("bad_request")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("10000"), "{err}");
    let (code, _, body) = get(&sock, "/api/v1/apps/big/logs?lines=many");
    assert_eq!(code, 400);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "a JSON error, not text");
    // The buffers of the reads go back to the OS.
    let pid = env.daemon_pid();
    wait_for(Duration::from_secs(10), "the daemon's RSS within 2 MiB of idle", || {
        (rss_kib(pid) <= idle + 2048).then_some(())
    });
    // `l4ctl logs` has the same bounds: the newest lines that fit, and a note on stderr.
    let out = env.l4(&["logs", "big", "--lines", "1000", "--raw", "--nostream"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(printed, expected);
    assert!(String::from_utf8_lossy(&out.stderr).contains("older lines left out"), "{}", text(&out));
    let out = env.l4(&["logs", "big", "--lines", "10001", "--nostream"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10001"), "{}", text(&out));
}

#[test]
fn a_third_log_read_at_once_is_answered_429_with_retry_after() {
    let env = big_log();
    let sock = socket(&env);
    let path = "/api/v1/apps/big/logs?lines=1000";
    // Two reads whose 8 MiB answers nobody reads: they stay in progress.
    let held = [send(&sock, path), send(&sock, path)];
    let (head, body) = wait_for(Duration::from_secs(30), "a read refused while two are in progress", || {
        let (code, head, body) = get(&sock, path);
        // Until both held reads have started, a third one is served in full.
        assert!(code == 200 || code == 429, "{head}");
        (code == 429).then_some((head, body))
    });
    assert!(head.contains("\r\nretry-after: 1"), "{head}");
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "busy", "{err}");
    // The held reads are complete once read.
    for s in held {
        let (code, head, body) = answer(s);
        assert_eq!(code, 200, "{head}");
        let (lines, _) = lines_of(&head, &body);
        assert!(lines.last().unwrap().contains(" L1000 "));
    }
    // And their places are free again.
    wait_for(Duration::from_secs(10), "a read served after the held ones", || {
        (get(&sock, "/api/v1/apps/big/logs?lines=1").0 == 200).then_some(())
    });
}

/// Run `l4ctl` with `args` on a pseudo-terminal (python3's `pty`); its output as the terminal got it.
fn on_a_terminal(env: &Env, args: &[&str]) -> Vec<u8> {
    on_a_terminal_with(env, args, None)
}

/// [`on_a_terminal`] with `NO_COLOR` set to `no_color`.
fn on_a_terminal_with(env: &Env, args: &[&str], no_color: Option<&str>) -> Vec<u8> {
    const PTY: &str = "import os, pty, sys\n\
        pid, fd = pty.fork()\n\
        if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
        out = b''\n\
        while True:\n    try:\n        c = os.read(fd, 65536)\n    except OSError:\n        break\n    if not c:\n        break\n    out += c\n\
        os.waitpid(pid, 0)\n\
        sys.stdout.buffer.write(out)\n";
    let out = Command::new("python3")
        .args(["-c", PTY, BIN, "--config", env.config().to_str().unwrap()])
        .args(args)
        .current_dir(env.dir.path())
        .env_remove("L4_HOME")
        .env_remove("NO_COLOR")
        .env_remove("L4_CONFIG")
        .envs(no_color.map(|v| ("NO_COLOR", v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out.stdout
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn logs_on_a_terminal_show_osc52_as_text_and_keep_colours_and_raw_keeps_the_bytes() {
    let env = Env::new(&sh_app(
        "esc",
        "printf 'clip \\033]52;c;SGVsbG8=\\007 end\\n'; printf '\\033[31mred\\033[0m\\n'; exec sleep 1000",
        "",
    ));
    env.start();
    wait_for(Duration::from_secs(10), "two lines", || {
        std::fs::read(env.path("logs/esc-out.log")).ok().filter(|b| b.iter().filter(|c| **c == b'\n').count() == 2)
    });
    let (osc, osc_text, red) =
        (&b"\x1b]52;c;SGVsbG8=\x07"[..], &b"\\x1b]52;c;SGVsbG8=\\x07 end"[..], &b"\x1b[31mred\x1b[0m"[..]);
    let shown = on_a_terminal(&env, &["logs", "esc", "--out", "--nostream"]);
    assert!(has(&shown, b"\x1b[36mesc|0\x1b[0m "), "a terminal: the prefix is coloured");
    assert!(has(&shown, osc_text) && !has(&shown, osc), "{}", String::from_utf8_lossy(&shown));
    assert!(has(&shown, red), "SGR kept: {}", String::from_utf8_lossy(&shown));
    let raw = on_a_terminal(&env, &["logs", "esc", "--out", "--raw", "--nostream"]);
    assert!(has(&raw, osc) && has(&raw, red), "--raw: bytes as written");
    // Not a terminal (a pipe): escaped too, so `l4ctl logs | less -R` is safe.
    let piped = env.l4(&["logs", "esc", "--out", "--nostream"]).stdout;
    assert!(has(&piped, osc_text) && !has(&piped, osc) && has(&piped, red));
}

#[test]
fn logs_timestamp_puts_the_time_each_line_is_shown_in_front_as_pm2() {
    let env = Env::new(&sh_app("plain", "echo hello; exec sleep 1000", "time = false"));
    env.start();
    wait_for(Duration::from_secs(10), "the line", || {
        std::fs::read_to_string(env.path("logs/plain-out.log")).ok().filter(|t| t.contains("hello"))
    });
    let now = || chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let before = now() - chrono::Duration::seconds(1);
    let out = env.l4(&["logs", "plain", "--out", "--nostream", "--timestamp"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.ends_with("hello")).map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("{}", text(&out)));
    let (stamp, rest) = line.split_once(' ').unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp}: {e}"));
    assert!(at >= before && at <= now(), "{stamp}");
    assert_eq!(rest, "plain|0 [0] hello");
}

#[test]
fn status_on_a_terminal_colours_states_as_pm2_unless_no_color_or_no_color_flag() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", ""));
    env.start();
    let green = &b"\x1b[32monline\x1b[0m"[..];
    assert!(has(&on_a_terminal(&env, &["status"]), green), "online is green on a terminal");
    assert!(!has(&on_a_terminal_with(&env, &["status"], Some("1")), b"\x1b["), "NO_COLOR=1: no colour at all");
    assert!(has(&on_a_terminal_with(&env, &["status"], Some("")), green), "an empty NO_COLOR does not count");
    assert!(!has(&on_a_terminal(&env, &["status", "--no-color"]), b"\x1b["), "--no-color");
    assert!(
        !has(&on_a_terminal(&env, &["logs", "web", "--nostream", "--no-color"]), b"\x1b[3"),
        "--no-color: no coloured prefix"
    );
    assert!(!has(&env.l4(&["status"]).stdout, b"\x1b["), "a pipe gets no colour");
}
