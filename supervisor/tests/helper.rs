//! Test fixtures: a temp folder with a config, a home and a log folder, the real
//! `l4ctl` binary run against it, polling with deadlines, and clean-up of every
//! process the test started (found by the daemon's `L4_SUPERVISOR` tag) even
//! when the test fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use layer4_supervisor::wire::types::{InstanceStatus, StatusReport};

pub const BIN: &str = env!("CARGO_BIN_EXE_l4ctl");

#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Extra `[daemon]` lines (the TCP API is off unless a test turns it on).
    pub daemon: String,
}

impl Env {
    /// A temp folder with `l4.toml` holding `[daemon]` home/log_dir and then `apps`.
    pub fn new(apps: &str) -> Env {
        Env::with_daemon("api_listen = \"off\"", apps)
    }

    /// Like `new`, with these lines in `[daemon]`.
    pub fn with_daemon(daemon: &str, apps: &str) -> Env {
        let dir = tempfile::Builder::new().prefix("l4test").tempdir().expect("tempdir");
        let env = Env { dir, daemon: daemon.to_owned() };
        env.write_config(apps);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("l4.toml")
    }

    pub fn home(&self) -> PathBuf {
        self.path("run")
    }

    pub fn write_config(&self, apps: &str) {
        let text = format!("[daemon]\nhome = \"run\"\nlog_dir = \"logs\"\n{}\n\n{apps}", self.daemon);
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(self.config()).args(args).current_dir(self.dir.path());
        c.env_remove("L4_HOME").env_remove("L4_CONFIG").env_remove("NO_COLOR").env("RUST_LOG", "debug");
        c
    }

    /// Run `l4ctl` to completion.
    pub fn l4(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run l4ctl")
    }

    /// `l4ctl start <config>`, asserting success.
    pub fn start(&self) -> Output {
        let out = self.l4(&["start", self.config().to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "start failed: {}\n{}", text(&out), self.diagnose());
        out
    }

    /// The daemon's own log and the apps' stderr, for failure messages.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.path("logs")).into_iter().flatten().flatten() {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.push_str(&format!("--- {}\n{body}", entry.path().display()));
        }
        out
    }

    pub fn status(&self) -> StatusReport {
        let out = self.l4(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    pub fn instance(&self, app: &str, index: u32) -> InstanceStatus {
        self.status().instances.into_iter().find(|i| i.app == app && i.instance == index).expect("instance listed")
    }

    /// The pid in the pid file, or `None` while a daemon (re)writes it.
    pub fn try_daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.home().join("l4ctl.pid")).ok()?.trim().parse().ok()
    }

    pub fn daemon_pid(&self) -> i32 {
        std::fs::read_to_string(self.home().join("l4ctl.pid")).expect("pid file").trim().parse().expect("pid")
    }

    /// The watchdog processes (`l4ctl-daemon --guard`) of this test's home.
    pub fn watchdogs(&self) -> Vec<i32> {
        let home = self.home().display().to_string();
        pids_with_cmdline("--guard")
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&home))
            })
            .collect()
    }

    /// Every live process started under this test's home.
    pub fn tagged_pids(&self) -> Vec<i32> {
        let entry = format!("L4_SUPERVISOR={}", self.home().display());
        live_pids().into_iter().filter(|&p| environ(p).iter().any(|e| e == &entry)).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill"]).output();
        // A watchdog left by a failed test must not start the daemon again.
        for pid in self.watchdogs() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        for pid in self.tagged_pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the test runs as root; otherwise it says why it skips (`needs`: what
/// needs root) and the caller returns.
pub fn root_or_skip(needs: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: {needs} needs root (.ci/test runs as root)");
    }
    root
}

/// Poll `check` every 10 ms until it returns `Some`, or panic after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn live_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect::<Vec<i32>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !is_zombie(*p))
        .collect()
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

pub fn environ(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| b.split(|c| *c == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default()
}

/// Live processes whose command line contains `marker`.
pub fn pids_with_cmdline(marker: &str) -> Vec<i32> {
    live_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
        })
        .collect()
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// A Python worker on the socket l4ctl passes as fd 3, answering every GET with the
/// Python expression `body`; ready (READY=1) once serving, and on SIGTERM it ends
/// after the request in hand (what a reload needs of a worker: l4ctl keeps the
/// socket open, so waiting connections go to the new run).
pub fn fd3_worker(body: &str) -> String {
    format!(
        r#"import http.server, os, signal, socket, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = ({body}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ready.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
server.serve_forever()
"#
    )
}

/// An `[[apps]]` entry running `sh -c script`.
pub fn sh_app(name: &str, script: &str, extra: &str) -> String {
    format!("[[apps]]\nname = \"{name}\"\nscript = \"sh\"\nargs = [\"-c\", {script:?}]\n{extra}\n")
}

/// `l4ctl crashes --json`: the recent reports and the delivery counters.
pub fn crashes_json(env: &Env) -> serde_json::Value {
    let out = env.l4(&["crashes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The recent crash reports, newest first.
pub fn reports(env: &Env) -> Vec<serde_json::Value> {
    crashes_json(env)["crashes"].as_array().cloned().unwrap_or_default()
}

/// The delivery counters of `l4ctl crashes --json`.
pub fn delivery(env: &Env) -> serde_json::Value {
    crashes_json(env)["delivery"].clone()
}

/// Every line of `logs/crashes.jsonl`.
pub fn journal(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("logs/crashes.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The event of a Sentry envelope: its third line.
pub fn envelope_event(body: &[u8]) -> serde_json::Value {
    serde_json::from_str(std::str::from_utf8(body).unwrap().lines().nth(2).expect("an event line")).unwrap()
}

/// A port held until the returned listener is dropped, so no other pick can take it.
pub fn held_port() -> (u16, std::net::TcpListener) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (l.local_addr().unwrap().port(), l)
}

/// The first of `n` consecutive free ports.
pub fn free_ports(n: u16) -> u16 {
    loop {
        let (base, _held) = held_port();
        if base.checked_add(n).is_some() && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

/// `GET /` through nginx: the body, or `None` for anything but a 200.
pub fn get(port: u16) -> Option<String> {
    get_path(port, "/")
}

pub fn get_path(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: chat.test\r\nconnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then(|| out.rsplit("\r\n\r\n").next().unwrap_or_default().trim().to_owned())
}
