//! README "Monit and the dashboard": `l4ctl monit` in a real terminal (a private
//! tmux server, 80×24, keys sent and the screen read back), and the history the
//! daemon keeps for charts. The page itself is tested in Chromium by
//! `clients/dashboard/e2e` (`.ci/test` runs it).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::helper::{BIN, Env, sh_app, text, wait_for};

/// A tmux server of its own (its socket in the test's folder), one 80×24 window.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn run(env: &Env, command: &str) -> Tmux {
        let tmux = Tmux { socket: env.path("tmux.sock") };
        let out = tmux.cmd().args(["new-session", "-d", "-x", "80", "-y", "24", command]).output().expect("run tmux");
        assert!(out.status.success(), "tmux: {}", text(&out));
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).env_remove("TMUX").env("TERM", "xterm-256color");
        c
    }

    fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p"]).output().expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        assert!(self.cmd().arg("send-keys").args(keys).status().expect("send-keys").success());
    }

    /// Poll `check` against the screen; past `limit`, fail showing the screen.
    fn wait<T>(&self, limit: Duration, what: &str, mut check: impl FnMut(&Tmux) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The row of `name` (`app:N`) in the table: its cells.
    fn row(&self, name: &str) -> Option<Vec<String>> {
        let screen = self.screen();
        let line = screen.lines().find(|l| l.split_whitespace().nth(1) == Some(name))?;
        Some(line.trim_matches(|c| c == '│' || c == ' ').split_whitespace().map(str::to_owned).collect())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Where the captured screen is kept for people to look at.
fn artifact(name: &str, body: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

#[test]
fn monit_shows_restarts_rising_restarts_an_instance_with_a_key_and_draws_its_charts() {
    let apps = [
        sh_app("tick", "while true; do echo tick; sleep 0.5; done", "instances = 2\nmax_memory_restart = \"200M\""),
        sh_app("crashy", "echo boom >&2; sleep 0.3; exit 3", "restart_delay = 100"),
    ]
    .concat();
    let env = Env::with_daemon("api_listen = \"off\"\nsample_interval = \"1s\"", &apps);
    env.start();
    let command = format!("{BIN} --config {} monit", env.config().display());
    let tmux = Tmux::run(&env, &command);

    // The table lists every instance; the crashing one's restarts rise while we look.
    let restarts = |tmux: &Tmux| tmux.row("crashy:0").and_then(|r| r.get(5)?.parse::<u32>().ok());
    let first = tmux.wait(Duration::from_secs(20), "crashy:0 in the table", restarts);
    tmux.wait(Duration::from_secs(30), "crashy:0's restarts rising on screen", |t| {
        restarts(t).filter(|&n| n >= first + 2)
    });
    assert!(tmux.row("tick:0").is_some() && tmux.row("tick:1").is_some(), "{}", tmux.screen());

    // The charts of the selected instance (tick:0, the first row) draw (within a few
    // seconds; the deadline is generous for a loaded machine).
    let braille = |s: &str| s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c));
    tmux.wait(Duration::from_secs(20), "the CPU and memory charts drawn", |t| braille(&t.screen()).then_some(()));

    // `r` restarts the selected instance: its pid changes, on screen and in the daemon.
    let pid = env.instance("tick", 0).pid.expect("tick:0 runs");
    tmux.keys(&["r"]);
    let shown = tmux.wait(Duration::from_secs(20), "tick:0's new pid on screen", |t| {
        let row = t.row("tick:0")?;
        let now: u32 = row.get(3)?.parse().ok()?;
        (now != pid).then_some(now)
    });
    assert_eq!(env.instance("tick", 0).pid, Some(shown));
    assert_eq!(env.instance("tick", 1).restarts, 0, "only the selected instance restarts");
    tmux.wait(Duration::from_secs(10), "the action's sentence", |t| {
        t.screen().contains("restart tick:0: done").then_some(())
    });

    // `+` scales the app up by one; `l` shows its logs full height; `q` quits.
    tmux.keys(&["+"]);
    tmux.wait(Duration::from_secs(20), "tick:2 after +", |t| t.row("tick:2").map(|_| ()));
    tmux.keys(&["l"]);
    tmux.wait(Duration::from_secs(10), "the logs pane", |t| {
        let s = t.screen();
        (s.contains(" tick logs ") && s.contains("tick") && !s.contains("name")).then_some(())
    });
    tmux.keys(&["l"]);
    tmux.wait(Duration::from_secs(10), "the table again", |t| t.row("tick:0").map(|_| ()));
    artifact("monit-80x24.txt", &tmux.screen());

    // A resize redraws at the new size (the frame's right border at the new width), and back.
    for (cols, rows) in [(120, 40), (80, 24)] {
        let size = [cols.to_string(), rows.to_string()];
        let resized = tmux.cmd().args(["resize-window", "-x", &size[0], "-y", &size[1]]).status().unwrap();
        assert!(resized.success());
        tmux.wait(Duration::from_secs(10), &format!("the screen redrawn at {cols}x{rows}"), |t| {
            let screen = t.screen();
            let top = screen.lines().next()?;
            (top.chars().count() == cols && top.ends_with('┐') && screen.lines().count() == rows).then_some(())
        });
    }
    // The daemon going away is said on screen (the last table stays); when one runs
    // again, monit follows it without a restart.
    assert!(env.l4(&["kill"]).status.success());
    tmux.wait(Duration::from_secs(20), "the sentence for a daemon that is gone", |t| {
        t.screen().contains("no daemon is running").then_some(())
    });
    env.start();
    tmux.wait(Duration::from_secs(30), "the table of the new daemon", |t| {
        let screen = t.screen();
        (!screen.contains("no daemon is running") && t.row("tick:0").is_some_and(|r| r[2] == "online")).then_some(())
    });

    tmux.keys(&["q"]);
    wait_for(Duration::from_secs(10), "monit quit", || {
        let out = tmux.cmd().args(["list-sessions"]).output().ok()?;
        (!out.status.success()).then_some(())
    });
}

#[test]
fn monit_without_a_terminal_says_what_to_use_instead() {
    let env = Env::new(&sh_app("idle", "sleep 600", ""));
    env.start();
    let out = env.l4(&["monit"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"), "{}", text(&out));
}

#[test]
fn history_keeps_an_instances_figures_across_its_restarts_with_a_mark_for_each() {
    // Over TCP without a token: the history is part of the open overview.
    let daemon = "api_listen = \"127.0.0.1:0\"\nsample_interval = \"1s\"";
    let env = Env::with_daemon(daemon, &sh_app("idle", "sleep 600", ""));
    env.start();
    let addr = crate::api::api_addr(&env);
    let history = || -> serde_json::Value {
        let (code, body) = crate::api::http(&addr, "GET", "/api/v1/apps/idle/history", &[], "");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let before = wait_for(Duration::from_secs(20), "a bucket with memory", || {
        let h = history();
        let first = h["instances"][0]["memory_bytes"][0].as_u64().filter(|&b| b > 0)?;
        Some((h["instances"][0]["start"].as_u64()?, first))
    });
    let out = env.l4(&["restart", "idle"]);
    assert!(out.status.success(), "{}", text(&out));
    let h = history();
    assert_eq!(h["step_secs"], 5);
    let inst = &h["instances"][0];
    assert_eq!(inst["marks"][0]["kind"], "restart", "{h}");
    assert_eq!(inst["marks"][0]["detail"], "manual", "{h}");
    assert_eq!(inst["cpu_percent"].as_array().map(Vec::len), inst["memory_bytes"].as_array().map(Vec::len));
    // What was kept before the restart is still there: the slot keeps its past.
    assert_eq!(inst["start"].as_u64(), Some(before.0), "{h}");
    assert!(inst["memory_bytes"][0].as_u64().is_some_and(|b| b >= before.1), "{h}");
    let (code, body) = crate::api::http(&addr, "GET", "/api/v1/apps/nope/history", &[], "");
    assert_eq!(code, 404, "{body}");
}
