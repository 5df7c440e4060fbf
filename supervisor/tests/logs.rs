//! README "Logs": capture, rotation without loss, compression, `l4ctl logs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use layer4_supervisor::logs::follow::read_maybe_gz;
use layer4_supervisor::logs::rotate::rotated_files;

use crate::helper::*;

/// Every line of a log, oldest rotated file first, then the current one.
fn all_lines(current: &Path) -> Vec<String> {
    let mut files = rotated_files(current);
    files.push(current.to_path_buf());
    let mut lines = Vec::new();
    for f in files {
        let bytes = read_maybe_gz(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
    }
    lines
}

/// The numbers after `tag` in `lines` (the payload after the last space).
pub fn numbers(lines: &[String], tag: char) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|w| w.strip_prefix(tag))
        .map(|n| n.parse().unwrap_or_else(|_| panic!("torn number {n:?}")))
        .collect()
}

pub fn counters(env: &Env, app: &str) -> serde_json::Value {
    let out = env.l4(&["describe", app, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["log_counters"].clone()
}

#[test]
fn two_million_lines_rotate_and_compress_without_losing_or_repeating_one() {
    const OUT: u64 = 2_000_000;
    const ERR: u64 = 200_000;
    let env = Env::new(&sh_app(
        "flood",
        &format!("seq -f 'e%.0f' 1 {ERR} >&2 & seq -f 'o%.0f' 1 {OUT}; wait; exec sleep 1000"),
        "[apps.log_rotate]\nmax_size = \"1M\"\ncompress = true\nretain = 10000",
    ));
    env.start();
    wait_for(Duration::from_secs(120), "every line written", || {
        (counters(&env, "flood")["lines"].as_u64() == Some(OUT + ERR)).then_some(())
    });
    let logs = env.path("logs");
    // Compression runs off the write path: wait until it has caught up.
    wait_for(Duration::from_secs(120), "compression to finish", || {
        let all = [logs.join("flood-out.log"), logs.join("flood-err.log"), logs.join("flood.log")];
        all.iter().flat_map(|c| rotated_files(c)).all(|f| f.extension().is_some_and(|e| e == "gz")).then_some(())
    });
    let out = all_lines(&logs.join("flood-out.log"));
    assert_eq!(numbers(&out, 'o'), (1..=OUT).collect::<Vec<_>>(), "stdout lines lost, repeated or out of order");
    assert_eq!(numbers(&all_lines(&logs.join("flood-err.log")), 'e'), (1..=ERR).collect::<Vec<_>>());
    let combined = all_lines(&logs.join("flood.log"));
    assert_eq!(numbers(&combined, 'o'), (1..=OUT).collect::<Vec<_>>(), "combined: stdout order");
    assert_eq!(numbers(&combined, 'e'), (1..=ERR).collect::<Vec<_>>(), "combined: stderr order");
    assert!(combined.iter().any(|l| l.contains(" [0/err] e")), "combined lines carry instance and stream");
    let rotations = counters(&env, "flood")["rotations"].as_u64().unwrap();
    assert!(rotations >= 100, "expected many 1M rotations, got {rotations}");
    for f in rotated_files(&logs.join("flood-out.log")) {
        let size = read_maybe_gz(&f).unwrap().len();
        assert!(size <= 1 << 20, "{} holds {size} bytes, more than max_size", f.display());
    }
}

#[test]
fn two_merged_instances_writing_at_once_never_tear_a_line() {
    // Each line: instance letter repeated 3000 times, then a sequence number.
    let script = "c=$(printf \"\\\\$(printf %o $((97 + L4_INSTANCE)))\"); body=$(head -c 3000 /dev/zero | tr '\\0' \"$c\"); \
                  i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo \"$body $c$i\"; done; exec sleep 1000";
    let env = Env::new(&sh_app("pair", script, "instances = 2"));
    env.start();
    wait_for(Duration::from_secs(60), "4000 lines", || {
        (counters(&env, "pair")["lines"].as_u64() == Some(4000)).then_some(())
    });
    let lines = all_lines(&env.path("logs/pair-out.log"));
    assert_eq!(lines.len(), 4000);
    for line in &lines {
        let (prefix, rest) = line.split_once("] ").expect("prefix");
        let instance: usize = prefix.rsplit('[').next().unwrap().parse().unwrap();
        let c = (b'a' + instance as u8) as char;
        let (body, tail) = rest.split_once(' ').expect("body and number");
        assert!(body.len() == 3000 && body.chars().all(|x| x == c), "torn or mixed line: {line:.80}");
        assert!(tail.starts_with(c), "{tail}");
    }
    for c in ['a', 'b'] {
        assert_eq!(numbers(&lines, c), (1..=2000).collect::<Vec<_>>(), "instance {c}");
    }
}

#[test]
fn long_lines_are_cut_with_a_marker_and_invalid_utf8_is_kept() {
    let env = Env::new(&sh_app(
        "odd",
        "head -c 100000 /dev/zero | tr '\\0' x; echo; printf 'bad \\377\\376 bytes\\n'; printf 'no newline at exit'; exec sleep 1000",
        "max_line = \"1K\"",
    ));
    env.start();
    wait_for(Duration::from_secs(10), "two lines", || {
        (counters(&env, "odd")["lines"].as_u64() >= Some(2)).then_some(())
    });
    let raw = std::fs::read(env.path("logs/odd-out.log")).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let cut = text.lines().next().unwrap();
    assert!(cut.ends_with("[l4ctl: line cut at max_line]"), "{cut:.120}");
    assert_eq!(cut.split(" [l4ctl").next().unwrap().matches('x').count(), 1024);
    assert!(raw.windows(4).any(|w| w == b"\xff\xfe b"), "raw bytes kept");
    assert_eq!(counters(&env, "odd")["cut_lines"], 1);
    // The unterminated last line is written when the pipe closes.
    env.l4(&["stop", "odd"]);
    wait_for(Duration::from_secs(5), "the unterminated line", || {
        // Not read_to_string: the file holds invalid UTF-8 on purpose.
        std::fs::read(env.path("logs/odd-out.log"))
            .ok()
            .filter(|b| String::from_utf8_lossy(b).contains("no newline at exit"))
    });
}

#[test]
fn json_lines_and_per_instance_files_without_timestamps() {
    let env = Env::new(
        &(sh_app("j", "echo hello; echo oops >&2; exec sleep 1000", "log_type = \"json\"")
            + &sh_app(
                "p",
                "echo from $L4_INSTANCE; exec sleep 1000",
                "instances = 2\nmerge_logs = false\ntime = false",
            )),
    );
    env.start();
    let line = wait_for(Duration::from_secs(5), "a json line", || {
        std::fs::read_to_string(env.path("logs/j-out.log")).ok().filter(|s| s.ends_with('\n'))
    });
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!((v["app"].as_str(), v["instance"].as_u64(), v["stream"].as_str()), (Some("j"), Some(0), Some("out")));
    assert_eq!(v["line"], "hello");
    assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    for i in 0..2 {
        let path = env.path(&format!("logs/p-{i}-out.log"));
        let body = wait_for(Duration::from_secs(5), "per-instance file", || {
            std::fs::read_to_string(&path).ok().filter(|s| !s.is_empty())
        });
        assert_eq!(body, format!("from {i}\n"), "no timestamp, no instance tag");
    }
}

#[test]
fn flush_empties_and_reload_logs_reopens_after_an_outside_rotation() {
    let env = Env::new(&sh_app("tick", "i=0; while true; do i=$((i+1)); echo t$i; sleep 0.02; done", ""));
    env.start();
    let path = env.path("logs/tick-out.log");
    wait_for(Duration::from_secs(5), "some lines", || {
        std::fs::read_to_string(&path).ok().filter(|s| s.lines().count() > 5)
    });
    let out = env.l4(&["flush", "tick"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        numbers(&after.lines().map(str::to_owned).collect::<Vec<_>>(), 't').first().is_none_or(|n| *n > 5),
        "{after}"
    );
    // An outside logrotate moves the file away; reload-logs makes the writer open a new one.
    std::fs::rename(&path, env.path("logs/moved.log")).unwrap();
    let out = env.l4(&["reload-logs"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(5), "lines in the reopened file", || {
        std::fs::read_to_string(&path).ok().filter(|s| s.lines().count() > 2)
    });
    // SIGUSR1 does the same.
    std::fs::rename(&path, env.path("logs/moved2.log")).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(env.daemon_pid()), nix::sys::signal::Signal::SIGUSR1).unwrap();
    wait_for(Duration::from_secs(5), "lines after SIGUSR1", || {
        std::fs::read_to_string(&path).ok().filter(|s| s.lines().count() > 2)
    });
    // The daemon's own log is reachable as logs/l4ctl.log.
    let own = std::fs::read_to_string(env.path("logs/l4ctl.log")).unwrap();
    assert!(own.contains("daemon started"), "{own}");
}

#[test]
fn logs_prints_history_then_follows_across_rotations_without_gaps_or_repeats() {
    let env = Env::new(&sh_app(
        "seqw",
        "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo n$i; done; sleep 0.3; \
         while [ $i -lt 600 ]; do i=$((i+1)); echo n$i; sleep 0.002; done; exec sleep 1000",
        "time = false\n[apps.log_rotate]\nmax_size = \"1K\"\nretain = 1000",
    ));
    env.start();
    wait_for(Duration::from_secs(5), "the first 20 lines", || {
        (counters(&env, "seqw")["lines"].as_u64() >= Some(20)).then_some(())
    });
    let out = env.l4(&["logs", "seqw", "--lines", "5", "--out", "--raw", "--nostream"]);
    assert!(out.status.success(), "{}", text(&out));
    let history: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(history.len(), 5, "{history:?}");
    let mut follower = env
        // Following is the default, as `pm2 logs`.
        .cmd(&["logs", "seqw", "--lines", "0", "--out", "--raw"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(30), "n600 in the followed output", || {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        seen.iter().any(|l| l == "[0] n600").then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let got = numbers(&seen, 'n');
    let first = *got.first().expect("some lines");
    assert_eq!(got, (first..=600).collect::<Vec<_>>(), "followed lines have a gap or a repeat");
    assert!(counters(&env, "seqw")["rotations"].as_u64().unwrap() >= 3, "the file rotated while followed");
}
