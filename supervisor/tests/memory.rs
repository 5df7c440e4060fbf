//! README "Memory ceiling": the whole process tree is measured, and a worker past
//! `max_memory_restart` is restarted with reason `memory`.

use std::time::Duration;

use crate::helper::*;

/// A child that grows by 8 MiB every 50 ms while the worker itself stays small.
const LEAKY_CHILD: &str =
    "python3 -c 'import time\na=[]\nwhile True:\n    a.append(b\"x\" * (8 << 20)); time.sleep(0.05)' & exec sleep 1000";

#[test]
fn a_leaking_child_makes_the_tree_pass_the_ceiling_and_the_worker_restarts_for_memory() {
    let env = Env::new(&sh_app("leaky", LEAKY_CHILD, "max_memory_restart = \"64M\"\nkill_timeout = \"2s\""));
    env.start();
    let first = env.instance("leaky", 0);
    assert_eq!(first.memory_ceiling_bytes, Some(64 << 20));
    let i = wait_for(Duration::from_secs(20), "a memory restart", || {
        Some(env.instance("leaky", 0)).filter(|i| i.restarts_by_reason.get("memory").is_some_and(|n| *n >= 1))
    });
    let exit = i.last_exit.expect("last exit");
    assert_eq!(exit.reason, "memory", "{exit:?}");
    assert!(i.pid != first.pid);
    let out = env.l4(&["describe", "leaky"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("memory"), "{}", text(&out));
    // And a crash report with reason memory.
    let report = wait_for(Duration::from_secs(10), "a memory crash report", || {
        let out = env.l4(&["crashes", "leaky", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["crashes"].as_array()?.iter().find(|r| r["reason"] == "memory").cloned()
    });
    assert_eq!(
        (report["level"].as_str(), report["fingerprint"].as_str()),
        (Some("error"), Some("leaky:memory")),
        "{report}"
    );
}

#[test]
fn status_counts_the_whole_tree() {
    let env = Env::new(&sh_app(
        "tree",
        "python3 -c 'import time; a = b\"x\" * (40 << 20); time.sleep(1000)' & exec sleep 1000",
        "",
    ));
    env.start();
    let i = wait_for(Duration::from_secs(10), "tree RSS over 40 MiB", || {
        Some(env.instance("tree", 0)).filter(|i| i.memory_bytes.is_some_and(|m| m > 40 << 20))
    });
    assert!(i.threads.is_some_and(|t| t >= 2), "{i:?}");
    assert!(i.open_fds.is_some_and(|n| n >= 3), "{i:?}");
}

/// A worker that says READY=1 (after `READY_AFTER` seconds, default 0) and, in its first run
/// only, then grows by `GROW_MIB` every 100 ms up to `GROW_TO_MIB`.
const NOTIFY_WORKER: &str = r#"import os, socket, time
first = not os.path.exists("ran")
open("ran", "w").close()
if not first:
    time.sleep(float(os.environ.get("READY_AFTER", "0")))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1")
a = []
while first and len(a) * int(os.environ["GROW_MIB"]) < int(os.environ["GROW_TO_MIB"]):
    a.append(b"x" * (int(os.environ["GROW_MIB"]) << 20))
    time.sleep(0.1)
time.sleep(1000)
"#;

fn notify_app(env_lines: &str) -> String {
    format!(
        "[[apps]]\nname = \"ready\"\nscript = \"python3\"\nargs = [\"worker.py\"]\nready = \"notify\"\nlisten_timeout = \"20s\"\nmax_memory_restart = \"64M\"\nkill_timeout = \"2s\"\n[apps.env]\n{env_lines}\n"
    )
}

#[test]
fn with_readiness_a_worker_over_its_ceiling_is_replaced_and_stopped_only_once_the_new_one_is_ready() {
    // 80 MiB: over the 64 MiB ceiling, under the 96 MiB backstop.
    let env = Env::new(&notify_app("GROW_MIB = \"16\"\nGROW_TO_MIB = \"80\"\nREADY_AFTER = \"1\""));
    std::fs::write(env.path("worker.py"), NOTIFY_WORKER).unwrap();
    env.start();
    let first = env.instance("ready", 0).pid.unwrap();
    // The replacement starts while the old run still serves (it is ready one second later).
    wait_for(Duration::from_secs(20), "the replacement to start beside the old run", || {
        let i = env.instance("ready", 0);
        (i.state == "starting" && alive(first as i32)).then_some(())
    });
    let i = wait_for(Duration::from_secs(20), "the replacement to be online", || {
        Some(env.instance("ready", 0)).filter(|i| i.state == "online" && i.pid != Some(first))
    });
    assert_eq!(i.restarts_by_reason.get("memory"), Some(&1), "{i:?}");
    assert_eq!(i.last_exit.as_ref().map(|e| e.reason.as_str()), Some("memory"));
    wait_for(Duration::from_secs(5), "the old run to stop", || (!alive(first as i32)).then_some(()));
    // The report is of the old run: its pid, its RSS over the ceiling.
    let r = reports(&env).into_iter().next().expect("a memory report");
    assert_eq!((r["reason"].as_str(), r["pid"].as_u64()), (Some("memory"), Some(u64::from(first))), "{r}");
    assert!(r["rss_bytes"].as_u64().unwrap() >= 64 << 20, "{r}");
}

#[test]
fn the_old_run_of_a_memory_replace_is_killed_at_the_backstop_without_waiting_for_its_successor() {
    // Grows to 400 MiB, 32 MiB per 100 ms; the successor is ready only after 5 s.
    let env = Env::new(&notify_app("GROW_MIB = \"32\"\nGROW_TO_MIB = \"400\"\nREADY_AFTER = \"5\""));
    std::fs::write(env.path("worker.py"), NOTIFY_WORKER).unwrap();
    env.start();
    let first = env.instance("ready", 0).pid.unwrap();
    wait_for(Duration::from_secs(10), "the old run to be killed at 1.5x", || (!alive(first as i32)).then_some(()));
    let i = env.instance("ready", 0);
    assert_eq!(i.state, "starting", "killed before its successor was ready: {i:?}");
    let r = wait_for(Duration::from_secs(5), "the old run's report", || reports(&env).into_iter().next());
    assert_eq!((r["reason"].as_str(), r["signal"].as_str()), (Some("memory"), Some("SIGKILL")), "a memory kill: {r}");
    assert_eq!(r["pid"].as_u64(), Some(u64::from(first)));
    wait_for(Duration::from_secs(20), "the successor to be online", || {
        (env.instance("ready", 0).state == "online").then_some(())
    });
}
