//! README "Updating l4ctl in place": `l4ctl update` hands the daemon over to the
//! `l4ctl-daemon` freshly installed at its path, under load, and the workers notice
//! nothing: same pids and start times, no refused connection, every log line once
//! and in order, restart counters unchanged.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::io::{Read, Write};

use crate::helper::{Env, fd3_worker, free_ports, text, wait_for};

pub const WORKERS: u32 = 8;
const UPDATES: u32 = 10;

/// A copy of `l4ctl` and `l4ctl-daemon` in a folder of the test's own, so that a
/// new daemon program can be installed where the running one came from.
pub struct Install {
    pub bin: PathBuf,
}

impl Install {
    fn new(env: &Env) -> Install {
        let bin = env.path("bin");
        std::fs::create_dir(&bin).unwrap();
        let built = Path::new(crate::helper::BIN).parent().unwrap().to_path_buf();
        std::fs::copy(built.join("l4ctl"), bin.join("l4ctl")).unwrap();
        let install = Install { bin };
        install.daemon();
        install
    }

    /// Install the built daemon program anew (a new file renamed over the old, as a
    /// package manager does); its inode.
    pub fn daemon(&self) -> u64 {
        let built = Path::new(crate::helper::BIN).with_file_name("l4ctl-daemon");
        let fresh = self.bin.join(".l4ctl-daemon.new");
        std::fs::copy(built, &fresh).unwrap();
        std::fs::rename(&fresh, self.bin.join("l4ctl-daemon")).unwrap();
        std::fs::metadata(self.bin.join("l4ctl-daemon")).unwrap().ino()
    }

    pub fn l4(&self, env: &Env, args: &[&str]) -> std::process::Output {
        self.l4_with(env, args, &[])
    }

    /// With these variables too (they reach a daemon it starts).
    pub fn l4_with(&self, env: &Env, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        let mut c = Command::new(self.bin.join("l4ctl"));
        c.arg("--config").arg(env.config()).args(args).current_dir(env.dir.path());
        c.env_remove("L4_HOME").env_remove("L4_CONFIG").env("RUST_LOG", "debug").envs(vars.iter().copied());
        c.output().unwrap()
    }
}

/// One `GET /` to a worker: answered 200, or why not.
fn request(port: u16) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    if answer.starts_with("HTTP/1.0 200") { Ok(()) } else { Err(format!("answer {answer:?}")) }
}

/// Field 22 of `/proc/<pid>/stat`: the start time, in clock ticks since boot.
pub fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

/// Per instance, the numbers of its `line N` in `file`, in file order.
pub fn lines_by_instance(file: &Path) -> BTreeMap<u32, Vec<u64>> {
    let mut seen: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let (Some(i), Some(n)) = (line.find("] line "), line.find('[')) else { continue };
        let instance: u32 = line[n + 1..i].parse().unwrap();
        seen.entry(instance).or_default().push(line[i + 7..].parse().unwrap());
    }
    seen
}

/// `WORKERS` instances of a port app that also floods its stdout (`line N`), started
/// from an [`Install`], and a thread sending requests to them round robin.
pub struct Fleet {
    pub env: Env,
    pub install: Install,
    pub daemon: i32,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    load: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    /// Started, every worker online, requests flowing; `vars` reach the daemon.
    pub fn start(vars: &[(&str, &str)]) -> Fleet {
        let port = free_ports(WORKERS as u16);
        let flood = "import sys, threading, time\ndef flood():\n    n = 0\n    while True:\n        sys.stdout.write(f'line {n}\\n'); sys.stdout.flush(); n += 1\n        if n % 8 == 0: time.sleep(0.002)\nthreading.Thread(target=flood, daemon=True).start()\n";
        let env = Env::new(&format!(
            "[[apps]]\nname = \"web\"\nscript = \"worker.py\"\ninterpreter = \"python3\"\ninstances = {WORKERS}\nport = {port}\nready = \"notify\"\n"
        ));
        std::fs::write(env.path("worker.py"), format!("{flood}{}", fd3_worker("'ok'"))).unwrap();
        let install = Install::new(&env);
        let out = install.l4_with(&env, &["start", env.config().to_str().unwrap()], vars);
        assert!(out.status.success(), "{}\n{}", text(&out), env.diagnose());
        let mut fleet = Fleet {
            daemon: env.daemon_pid(),
            env,
            install,
            stop: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            load: None,
        };
        fleet.table();
        let (stop, ok, failed) = (fleet.stop.clone(), fleet.ok.clone(), fleet.failed.clone());
        fleet.load = Some(std::thread::spawn(move || {
            let mut i = 0u16;
            while !stop.load(Ordering::Relaxed) {
                match request(port + i % WORKERS as u16) {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(why) => {
                        eprintln!("request failed: {why}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i = i.wrapping_add(1);
            }
        }));
        fleet
    }

    /// Once every worker is online: `(pid, start time, restarts)` of each.
    pub fn table(&self) -> Vec<(u32, u64, u32)> {
        let s = wait_for(Duration::from_secs(30), "every worker online", || {
            let s = self.env.status();
            (s.instances.iter().filter(|i| i.state == "online").count() == WORKERS as usize).then_some(s)
        });
        s.instances.iter().map(|i| (i.pid.unwrap(), start_time(i.pid.unwrap()), i.restarts)).collect()
    }

    /// Stop the requests: `(answered, failed)`.
    pub fn stop_load(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.load.take() {
            t.join().unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[test]
fn update_replaces_the_daemon_program_ten_times_under_load_and_the_workers_notice_nothing() {
    let mut fleet = Fleet::start(&[]);
    let (env, install, daemon) = (&fleet.env, &fleet.install, fleet.daemon);
    let workers = fleet.table();

    // A program others could have written is refused, and nothing changes.
    use std::os::unix::fs::PermissionsExt;
    let program = install.bin.join("l4ctl-daemon");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = install.l4(env, &["update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("group or others may write to it"), "{}", text(&out));
    assert!(env.status().handover.is_none());
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut away = Vec::new();
    for n in 1..=UPDATES {
        let inode = install.daemon();
        let out = install.l4(env, &["update"]);
        let said = text(&out);
        assert!(out.status.success(), "update {n}: {said}\n{}", env.diagnose());
        assert!(said.contains("0.1.0 → 0.1.0") && said.contains(&format!("pid {daemon} kept")), "{said}");
        let ms: f64 = said.split("away ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        away.push(ms);
        assert_eq!(std::fs::metadata(format!("/proc/{daemon}/exe")).unwrap().ino(), inode, "the new program runs");
        let now = env.status();
        assert_eq!(now.handover.as_ref().map(|h| (h.count, h.reason.as_str())), Some((n, "update")), "{now:?}");
        assert_eq!(now.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(fleet.table(), workers, "update {n}: same pids, start times and restart counters");
    }
    // `l4ctl --version` names the daemon that answers, and its handovers.
    let out = Command::new(install.bin.join("l4ctl")).arg("--version").env("L4_HOME", env.home()).output().unwrap();
    let said = text(&out);
    assert!(said.contains(&format!("l4ctl-daemon {} (pid {daemon}", env!("CARGO_PKG_VERSION"))), "{said}");
    assert!(said.contains(&format!("updated in place {UPDATES} times")), "{said}");
    let (ok, failed) = fleet.stop_load();
    assert_eq!(failed, 0, "no request failed ({ok} answered)");
    assert!(ok > 0);

    // Stopping flushes the last lines: each instance's are 0..N, once, in order.
    let out = fleet.install.l4(&fleet.env, &["kill"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines = lines_by_instance(&fleet.env.path("logs/web-out.log"));
    assert_eq!(lines.len(), WORKERS as usize, "{:?}", lines.keys());
    let mut total = 0;
    for (instance, seen) in &lines {
        let expected: Vec<u64> = (0..seen.len() as u64).collect();
        assert!(
            seen == &expected,
            "instance {instance}: {} lines, first break at {:?}",
            seen.len(),
            seen.iter().zip(&expected).position(|(a, b)| a != b)
        );
        total += seen.len();
    }
    away.sort_by(f64::total_cmp);
    eprintln!(
        "{UPDATES} updates: away {:.1}-{:.1} ms (median {:.1}); {ok} requests answered, 0 failed; {total} log lines, each once and in order",
        away[0],
        away[away.len() - 1],
        away[away.len() / 2]
    );
}
