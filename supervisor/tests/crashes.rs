//! README "Crash reports": abnormal ends of real workers (a Rust panic, a signal,
//! a crash loop) and a panic a worker survives become reports with the parsed
//! panic, in `l4ctl crashes` and `crashes.jsonl`; a crash loop is one report.

use std::path::PathBuf;
use std::time::Duration;

use crate::helper::*;

/// target/<profile>/examples/crasher, built on demand when `cargo test` did not.
pub fn crasher() -> PathBuf {
    let exe = PathBuf::from(BIN).with_file_name("examples").join("crasher");
    if !exe.is_file() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "layer4-supervisor", "--example", "crasher"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    exe
}

#[test]
fn a_rust_panic_is_reported_with_its_message_location_and_frames() {
    let app = format!(
        "[[apps]]\nname = \"rusty\"\nscript = {:?}\nargs = [\"panic\"]\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"\n[apps.env]\nRUST_BACKTRACE = \"1\"\n",
        crasher().display().to_string()
    );
    let env = Env::new(&app);
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let r = wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    assert_eq!(
        (r["level"].as_str(), r["reason"].as_str(), r["exit_code"].as_i64()),
        (Some("fatal"), Some("crashed"), Some(101)),
        "{r}"
    );
    assert_eq!(r["panic"]["message"], "boom from crasher", "{r}");
    assert!(r["panic"]["location"].as_str().unwrap().contains("examples/crasher.rs:"), "{r}");
    assert_eq!(r["panic"]["thread"], "main");
    let frames = r["panic"]["frames"].as_array().unwrap();
    assert!(frames.iter().any(|f| f["function"].as_str().is_some_and(|n| n.contains("crasher::main"))), "{r}");
    assert!(r["stderr_tail"].as_str().unwrap().contains("crasher: about to fail"));
    assert!(r["fingerprint"].as_str().unwrap().starts_with("rusty:panic:"), "{r}");
    assert!(r["pid"].as_u64().is_some() && r["restarts"].as_u64().is_some());
    let lines = journal(&env);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], r["id"]);
}

#[test]
fn a_panic_the_worker_survives_is_a_non_fatal_report() {
    let app = format!(
        "[[apps]]\nname = \"tasky\"\nscript = {:?}\nargs = [\"task-panic\"]\n",
        crasher().display().to_string()
    );
    let env = Env::new(&app);
    env.start();
    let pid = env.instance("tasky", 0).pid;
    let r = wait_for(Duration::from_secs(10), "a non-fatal report", || reports(&env).into_iter().next());
    assert_eq!((r["level"].as_str(), r["reason"].as_str()), (Some("error"), Some("panic")), "{r}");
    assert_eq!(r["panic"]["message"], "a task failed");
    let i = env.instance("tasky", 0);
    assert_eq!((i.state.as_str(), i.pid), ("online", pid), "still the same run");
}

#[test]
fn death_by_signal_names_the_signal() {
    let env =
        Env::new(&sh_app("segv", "sleep 0.3; kill -SEGV $$", "restart_delay = \"10s\"\nrestart_delay_max = \"10s\""));
    env.start();
    let r = wait_for(Duration::from_secs(10), "a crash report", || reports(&env).into_iter().next());
    assert_eq!((r["signal"].as_str(), r["exit_code"].as_i64()), (Some("SIGSEGV"), None), "{r}");
    assert_eq!(r["fingerprint"], "segv:crashed:SIGSEGV");
}

#[test]
fn a_crash_loop_is_one_report_with_a_count() {
    let env = Env::new(&sh_app(
        "loop",
        "echo failing >&2; exit 3",
        "restart_delay = \"10ms\"\nrestart_delay_max = \"20ms\"\nmax_restarts = 1000",
    ));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let r = wait_for(Duration::from_secs(20), "ten crashes in one report", || {
        reports(&env).into_iter().find(|r| r["count"].as_u64().is_some_and(|c| c >= 10))
    });
    assert_eq!(reports(&env).len(), 1, "one report, not one per restart");
    assert_eq!(r["fingerprint"], "loop:crashed:exit 3");
    // The first report, then the count at 10 as an update of it (same id).
    let lines = wait_for(Duration::from_secs(5), "the count-10 update in crashes.jsonl", || {
        let j = journal(&env);
        (j.len() >= 2).then_some(j)
    });
    assert_eq!((lines[0]["count"].as_u64(), lines[0].get("episode")), (Some(1), None), "{lines:?}");
    assert_eq!((lines[1]["count"].as_u64(), lines[1]["episode"].as_str()), (Some(10), Some("ongoing")));
    assert_eq!(lines[0]["id"], lines[1]["id"]);
    let out = env.l4(&["crashes", "loop"]);
    assert!(text(&out).contains("loop:0 fatal exit 3 x"), "{}", text(&out));
}

/// A memory cgroup of the test's own, under this process's (needs root).
struct MemCgroup {
    dir: PathBuf,
}

impl MemCgroup {
    fn new(limit: u64) -> MemCgroup {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let name = format!("l4test-oom-{}", std::process::id());
        let v1 = text.lines().find_map(|l| {
            let mut p = l.splitn(3, ':').skip(1);
            let (controllers, path) = (p.next()?, p.next()?);
            controllers.split(',').any(|c| c == "memory").then(|| path.trim_start_matches('/').to_owned())
        });
        let (dir, limit_file) = match v1 {
            Some(rel) => (PathBuf::from("/sys/fs/cgroup/memory").join(rel).join(&name), "memory.limit_in_bytes"),
            None => {
                let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().trim_start_matches('/').to_owned();
                (PathBuf::from("/sys/fs/cgroup").join(rel).join(&name), "memory.max")
            }
        };
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot make the memory cgroup {}: {e}", dir.display()));
        std::fs::write(dir.join(limit_file), limit.to_string())
            .unwrap_or_else(|e| panic!("cannot limit {}: {e} (is the memory controller delegated?)", dir.display()));
        // No swap to escape to: past the limit the kernel OOM-kills (v1: memory + swap
        // at the same limit; v2: no swap at all). Absent when the machine has no swap.
        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        MemCgroup { dir }
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Empty once the daemon and its workers are gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_kernel_oom_kill_is_reported_as_oom_not_as_a_plain_sigkill() {
    if !root_or_skip("making a memory cgroup") {
        return;
    }
    let cgroup = MemCgroup::new(128 << 20);
    let env = Env::new(&sh_app(
        "hog",
        "exec python3 -c \"x = b'x' * (400 << 20); import time; time.sleep(60)\"",
        "restart_delay = \"30s\"\nrestart_delay_max = \"30s\"",
    ));
    {
        let env = &env;
        let _cleanup = &cgroup; // dropped after env: the daemon is gone by then
        // The daemon (and so its workers) starts inside the limited cgroup.
        let out = std::process::Command::new("sh")
            .args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(cgroup.dir.join("cgroup.procs"))
            .arg(BIN)
            .arg("--config")
            .arg(env.config())
            .arg("start")
            .arg(env.config())
            .current_dir(env.dir.path())
            .env_remove("L4_HOME")
            .env_remove("L4_CONFIG")
            .output()
            .unwrap();
        let r = wait_for(Duration::from_secs(20), "the OOM kill's report", || reports(env).into_iter().next());
        assert_eq!((r["reason"].as_str(), r["signal"].as_str()), (Some("oom"), Some("SIGKILL")), "{r}\n{}", text(&out));
        assert_eq!((r["level"].as_str(), r["fingerprint"].as_str()), (Some("fatal"), Some("hog:oom")));
        let listed = env.l4(&["crashes"]);
        assert!(text(&listed).contains("hog:0 fatal SIGKILL x1 oom"), "{}", text(&listed));
        // The daemon itself, small, was not the victim.
        assert!(env.l4(&["status"]).status.success());
    }
    drop(env);
}

#[test]
fn crash_history_ids_and_episodes_survive_a_daemon_restart() {
    let env = Env::new(&format!(
        "{}{}",
        sh_app(
            "loop",
            "echo failing >&2; exit 3",
            "restart_delay = \"50ms\"\nrestart_delay_max = \"50ms\"\nmax_restarts = 1000"
        ),
        sh_app(
            "later",
            "echo other >&2; exit 4",
            "autostart = false\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\""
        ),
    ));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let first = wait_for(Duration::from_secs(10), "a crash loop of 3", || {
        reports(&env).into_iter().find(|r| r["count"].as_u64().is_some_and(|c| c >= 3))
    });
    let id = first["id"].as_u64().unwrap();
    assert!(id > 1_600_000_000_000, "ids are milliseconds since the epoch: {id}");
    let out = env.l4(&["kill"]);
    assert!(out.status.success(), "{}", text(&out));
    // The count at the end is journaled (not only 10, 100, ...), so the next daemon goes on from it.
    let at_kill = journal(&env)
        .iter()
        .filter(|l| l["id"].as_u64() == Some(id))
        .filter_map(|l| l["count"].as_u64())
        .max()
        .unwrap();
    assert!(at_kill >= 3, "{:?}", journal(&env));

    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    // The report is listed again, and the loop goes on counting in the same episode.
    let again = wait_for(Duration::from_secs(10), "the loop counted on in its old report", || {
        reports(&env)
            .into_iter()
            .find(|r| r["id"].as_u64() == Some(id) && r["count"].as_u64().is_some_and(|c| c > at_kill))
    });
    assert_eq!(again["fingerprint"], "loop:crashed:exit 3");
    assert_eq!(reports(&env).len(), 1, "no new report for the same episode: {:?}", reports(&env));
    // A new crash after the restart gets a new, later id.
    let out = env.l4(&["start", "later"]);
    assert!(!text(&out).is_empty());
    let other = wait_for(Duration::from_secs(10), "the other app's report", || {
        reports(&env).into_iter().find(|r| r["app"] == "later")
    });
    assert!(other["id"].as_u64().unwrap() > id, "{other}");
    let mut ids: Vec<(u64, String)> = journal(&env)
        .iter()
        .map(|l| (l["id"].as_u64().unwrap(), l["fingerprint"].as_str().unwrap().to_owned()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "one id per report across both daemon runs: {ids:?}");
}
