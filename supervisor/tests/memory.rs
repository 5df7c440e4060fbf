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
