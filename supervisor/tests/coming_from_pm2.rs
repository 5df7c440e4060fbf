//! README "Coming from PM2": `l4ctl import` of a real ecosystem file (the
//! deployment plan's own) runs the same app the same way under `l4ctl start`;
//! files that throw, hang, or need a missing `node` get one sentence.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::helper::{BIN, free_ports, get, pids_with_cmdline, text, wait_for};

/// `l4ctl` in `dir` with its own home (`run/`), nothing from the caller's environment.
fn l4(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--home", "run"])
        .args(args)
        .current_dir(dir)
        .env_remove("L4_HOME")
        .env_remove("L4_CONFIG")
        .output()
        .expect("run l4ctl")
}

/// A temp folder for one test's project.
fn folder() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("l4pm2").tempdir().unwrap()
}

/// Stops the daemon of `dir` when the test ends, passed or failed.
struct Daemon<'a>(&'a Path);
impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = l4(self.0, &["kill"]);
    }
}

/// The plan's "Process Management" ecosystem file, on `port`.
fn plan_ecosystem(port: u16) -> String {
    format!(
        "module.exports = {{
  apps: [{{
    name: 'layer4-chat',
    script: 'server/server.js',
    instances: 1,
    exec_mode: 'cluster',
    env: {{
      NODE_ENV: 'production',
      PORT: {port}
    }},
    max_memory_restart: '1G',
    error_file: './logs/err.log',
    out_file: './logs/out.log',
    log_file: './logs/combined.log'
  }}]
}};
"
    )
}

/// A Node server as a PM2 user has one: binds PORT itself, says so on stdout,
/// warns on stderr, and shuts down on PM2's SIGINT.
const SERVER_JS: &str = r#"
const http = require('http');
const port = Number(process.env.PORT);
http.createServer((req, res) => res.end(JSON.stringify({ env: process.env.NODE_ENV, port })))
  .listen(port, '127.0.0.1', () => { console.log(`listening on ${port}`); console.error('a warning on stderr'); });
process.on('SIGINT', () => { console.log('SIGINT received, closing'); process.exit(0); });
"#;

/// A PM2 project as the plan has it: its ecosystem file and a Node server, on a free port.
fn plan_project() -> (tempfile::TempDir, u16) {
    let dir = folder();
    let port = free_ports(1);
    std::fs::write(dir.path().join("ecosystem.config.js"), plan_ecosystem(port)).unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    std::fs::write(dir.path().join("server/server.js"), SERVER_JS).unwrap();
    (dir, port)
}

#[test]
fn the_plan_s_ecosystem_file_imports_and_runs_the_same_app_the_same_way() {
    let (dir, port) = plan_project();
    let d = dir.path();

    // Before the import, `start` of the PM2 file says what to do in one sentence.
    let out = l4(d, &["start", "ecosystem.config.js"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("l4ctl import ecosystem.config.js"), "{said}");

    let out = l4(d, &["import", "ecosystem.config.js"]);
    assert!(out.status.success(), "{}", text(&out));
    let toml = d.join("layer4.toml");
    let mode = std::fs::metadata(&toml).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the env may hold secrets");
    let again = l4(d, &["import", "ecosystem.config.js"]);
    assert_eq!(again.status.code(), Some(2), "an existing file is not replaced: {}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let _daemon = Daemon(d);
    let out = l4(d, &["start", "layer4.toml"]);
    assert!(out.status.success(), "{}\n{}", text(&out), std::fs::read_to_string(&toml).unwrap());
    let body = wait_for(Duration::from_secs(20), "the Node app to answer on its port", || get(port));
    assert_eq!(body, format!("{{\"env\":\"production\",\"port\":{port}}}"));

    // The plan's three files, where the plan put them.
    let logs = d.join("logs");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    wait_for(Duration::from_secs(10), "the app's lines in the plan's files", || {
        (read("out.log").contains("listening on")
            && read("err.log").contains("a warning on stderr")
            && read("combined.log").contains("listening on")
            && read("combined.log").contains("a warning on stderr"))
        .then_some(())
    });
    let status = l4(d, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["instances"][0]["memory_ceiling_bytes"], 1u64 << 30, "{status}");
    assert_eq!(status["instances"][0]["port"], port, "{status}");

    // PM2 stops with SIGINT, and so does the import: the app's handler runs.
    let out = l4(d, &["stop", "layer4-chat"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(10), "the SIGINT handler's line", || {
        read("out.log").contains("SIGINT received").then_some(())
    });
}

#[test]
fn an_ecosystem_file_that_throws_hangs_or_cannot_be_read_gets_one_sentence() {
    let dir = folder();
    let d = dir.path();
    let one_sentence = |out: &Output, code: i32, expect: &str| {
        assert_eq!(out.status.code(), Some(code), "{}", text(out));
        let said = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = said.lines().filter(|l| l.starts_with("l4ctl")).collect();
        assert_eq!(ours.len(), 1, "{said}");
        assert!(ours[0].contains(expect), "expected {expect:?} in {said}");
        assert!(!d.join("layer4.toml").exists(), "nothing written");
    };

    std::fs::write(d.join("throws.config.js"), "if (!process.env.NOPE) throw new Error('DB_HOST is not set');\n")
        .unwrap();
    one_sentence(&l4(d, &["import", "throws.config.js"]), 2, "evaluating it threw: DB_HOST is not set");

    // A file that never finishes: killed at the timeout, with every process it started.
    std::fs::write(
        d.join("hangs.config.js"),
        "require('child_process').spawn('sleep', ['600.4711'], { stdio: 'ignore' });\nwhile (true) {}\n",
    )
    .unwrap();
    let began = Instant::now();
    let out = l4(d, &["import", "hangs.config.js", "--timeout", "1s"]);
    one_sentence(&out, 2, "did not finish evaluating it within 1s");
    assert!(began.elapsed() < Duration::from_secs(15), "took {:?}", began.elapsed());
    assert!(pids_with_cmdline("600.4711").is_empty(), "what the file started was killed with it");

    // A file that starts a server but exports a config is fine: l4ctl does not wait for it.
    std::fs::write(
        d.join("serves.config.js"),
        "require('http').createServer().listen(0);\nmodule.exports = { apps: [{ name: 'x', script: 'x.js' }] };\n",
    )
    .unwrap();
    let out = l4(d, &["import", "serves.config.js", "-o", "-"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("args = [\"x.js\"]"), "{}", text(&out));

    // No node on PATH.
    let out = Command::new(BIN)
        .args(["import", "throws.config.js"])
        .current_dir(d)
        .env("PATH", d.join("empty"))
        .output()
        .unwrap();
    one_sentence(&out, 1, "needs Node.js (`node` on PATH)");

    std::fs::write(d.join("bad.yaml"), "apps:\n  - name: a\n    script: [unclosed\n").unwrap();
    one_sentence(&l4(d, &["import", "bad.yaml"]), 2, "bad.yaml:");
    std::fs::write(d.join("bad.json"), "{ \"apps\": [ { \"script\": \"a.js\", } ] }").unwrap();
    one_sentence(&l4(d, &["import", "bad.json"]), 2, "bad.json:1:");
    std::fs::write(d.join("noapps.json"), "{ \"deploy\": {} }").unwrap();
    one_sentence(&l4(d, &["import", "noapps.json"]), 2, "no `apps`");
}

/// An app that says it is ready as under PM2's `wait_ready`, once `go` exists.
const WAITS_JS: &str = r#"
const fs = require('fs');
const tick = setInterval(() => {
  if (!fs.existsSync('go')) return;
  clearInterval(tick);
  console.log('sending ready');
  process.send('ready');
}, 20);
process.on('SIGINT', () => process.exit(0));
setInterval(() => {}, 1000);
"#;

#[test]
fn wait_ready_apps_say_ready_with_process_send_as_under_pm2() {
    let dir = folder();
    let d = dir.path();
    std::fs::write(d.join("app.js"), WAITS_JS).unwrap();
    std::fs::write(
        d.join("ecosystem.config.js"),
        "module.exports = { apps: [{ name: 'waits', script: 'app.js', wait_ready: true, listen_timeout: 2000 }] };\n",
    )
    .unwrap();
    let out = l4(d, &["import", "ecosystem.config.js"]);
    assert!(out.status.success(), "{}", text(&out));
    let _daemon = Daemon(d);

    // It never says so: the start fails at listen_timeout, as PM2's does.
    let out = l4(d, &["start", "layer4.toml"]);
    assert!(!out.status.success(), "{}", text(&out));

    std::fs::write(d.join("go"), "").unwrap();
    let out = l4(d, &["restart", "waits"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = l4(d, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["instances"][0]["state"], "online", "{status}");
}

/// A Node server that says who it is: GREETING, its arguments and its port.
const GREETER_JS: &str = r#"
const http = require('http');
const port = Number(process.env.PORT);
http.createServer((q, r) => r.end(`${process.env.GREETING} ${process.argv.slice(2).join(' ')} ${port}`)).listen(port, '127.0.0.1');
"#;

#[test]
fn a_script_starts_without_a_config_file_as_pm2_start_and_comes_back_after_kill() {
    let dir = folder();
    let d = dir.path();
    std::fs::write(d.join("app.js"), GREETER_JS).unwrap();
    let port = free_ports(2);
    let _daemon = Daemon(d);
    let p = port.to_string();
    let args =
        ["start", "app.js", "--name", "web", "-i", "2", "--port", &p, "--env-var", "GREETING=hi", "--", "--flag", "x"];
    let out = l4(d, &args);
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..2 {
        let body = wait_for(Duration::from_secs(20), "each instance on its port", || get(port + i));
        assert_eq!(body, format!("hi --flag x {}", port + i));
    }
    let file = d.join("run/apps/web.toml");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Kept like any app: `kill`, then `start` with no argument brings it back.
    assert!(l4(d, &["kill"]).status.success());
    assert!(get(port).is_none(), "stopped with the daemon");
    let out = l4(d, &["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let body = wait_for(Duration::from_secs(20), "the restored app", || get(port + 1));
    assert_eq!(body, format!("hi --flag x {}", port + 1));

    // A program on PATH with arguments; options without a script are one sentence.
    let out = l4(d, &["start", "sleep", "--name", "nap", "--", "1000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(d.join("run/apps/nap.toml")).unwrap().contains("script = \"sleep\""));
    let out = l4(d, &["start", "--name", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = l4(d, &["start", "app.js", "--name", "web2", "-i", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("instances must be between 1 and 1024"), "{}", text(&out));
}

#[test]
fn a_script_started_with_watch_restarts_on_a_change_in_its_folder_and_has_its_cron_time() {
    let dir = folder();
    let d = dir.path();
    std::fs::write(d.join("tick.sh"), "exec sleep 1000\n").unwrap();
    let _daemon = Daemon(d);
    let out = l4(d, &["start", "tick.sh", "--watch", "--cron-restart", "0 3 * * *"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(d.join("run/apps/tick.toml")).unwrap();
    assert!(written.contains("watch = true") && written.contains("cron_restart = \"0 3 * * *\""), "{written}");
    let triggers = || {
        let out = l4(d, &["describe", "tick", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["triggers"].clone()
    };
    let t = wait_for(Duration::from_secs(30), "the watch armed", || Some(triggers()).filter(|t| t["watching"] == true));
    assert!(t["next_cron_restart"].as_str().is_some_and(|n| n.contains("T03:00:00")), "{t}");
    // The daemon's home (`run/`, in the watched folder) writes all along and never counts.
    std::fs::write(d.join("lib.sh"), "x").unwrap();
    let t = wait_for(Duration::from_secs(30), "a restart by the change", || {
        Some(triggers()).filter(|t| t["restarts"] == 1)
    });
    assert_eq!(t["last"], "file change: lib.sh", "{t}");
}

/// The `l4ctl` lines of the README's walkthrough, in order (comments dropped).
fn walkthrough() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("<!-- walkthrough -->").expect("the walkthrough's start marker");
    let end = readme.find("<!-- /walkthrough -->").expect("its end marker");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("l4ctl "))
        .map(|l| l.split('#').next().unwrap().split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let steps = walkthrough();
    assert!(steps.len() >= 6, "{steps:?}");
    let (dir, port) = plan_project();
    let d = dir.path();
    let home = d.join("home");
    let stop = || {
        let _ = Command::new(BIN).arg("kill").current_dir(d).env("L4_HOME", &home).output();
    };
    struct Kill<F: Fn()>(F);
    impl<F: Fn()> Drop for Kill<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _kill = Kill(stop);
    for step in &steps {
        // As the README's reader: in the project folder, their own daemon home.
        let out =
            Command::new(BIN).args(step).current_dir(d).env("L4_HOME", &home).env_remove("L4_CONFIG").output().unwrap();
        assert!(out.status.success(), "l4ctl {}: {}", step.join(" "), text(&out));
        match step[0].as_str() {
            "start" | "reload" | "restart" => {
                let body = wait_for(Duration::from_secs(20), "the app to answer", || get(port));
                assert!(body.contains("\"env\":\"production\""), "{body}");
            }
            "logs" => assert!(String::from_utf8_lossy(&out.stdout).contains("listening on"), "{}", text(&out)),
            "startup" => assert!(String::from_utf8_lossy(&out.stdout).contains("Type=notify"), "{}", text(&out)),
            _ => {}
        }
    }
}
