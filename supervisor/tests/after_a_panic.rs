//! README "Updating l4ctl in place", after a panic: a message that panics in the
//! daemon (the debug builds' failpoint, SIGUSR2 with `L4_FAILPOINT_PANIC_ON_USR2`)
//! hands the daemon over to a fresh copy of its program, and the workers notice
//! nothing; past 3 panics within 60 s the daemon exits and the watchdog starts one
//! that restores the apps, as after any crash.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helper::{text, wait_for};
use crate::updating_in_place::{Fleet, lines_by_instance};

#[test]
fn a_panic_in_the_daemon_is_handed_over_three_times_then_the_apps_are_restored_as_after_a_crash() {
    let mut fleet = Fleet::start(&[("L4_FAILPOINT_PANIC_ON_USR2", "1")]);
    let daemon = fleet.daemon;
    let workers = fleet.table();
    for n in 1..=3u32 {
        kill(Pid::from_raw(daemon), Signal::SIGUSR2).unwrap();
        let h = wait_for(Duration::from_secs(20), "the panic's handover", || {
            let out = fleet.env.l4(&["status", "--json"]);
            let s: layer4_supervisor::wire::types::StatusReport = serde_json::from_slice(&out.stdout).ok()?;
            s.handover.filter(|h| h.count == n)
        });
        assert_eq!(h.reason, "panic");
        assert_eq!(fleet.env.daemon_pid(), daemon);
        assert_eq!(fleet.table(), workers, "panic {n}: same pids, start times and restart counters");
    }
    let (ok, failed) = fleet.stop_load();
    assert_eq!(failed, 0, "no request failed ({ok} answered)");
    // Each panic is a crash report of the daemon's own.
    let reports = crate::helper::reports(&fleet.env);
    let own = reports.iter().filter(|r| r["app"] == "l4ctl-daemon").count();
    assert!(own >= 3, "{reports:?}");

    // The fourth within a minute: the daemon exits, the watchdog starts another one,
    // and it restores the apps (new workers).
    kill(Pid::from_raw(daemon), Signal::SIGUSR2).unwrap();
    wait_for(Duration::from_secs(30), "a new daemon", || fleet.env.try_daemon_pid().filter(|p| *p != daemon));
    let restored = fleet.table();
    assert!(restored.iter().all(|w| !workers.iter().any(|o| o.0 == w.0)), "{restored:?} vs {workers:?}");
    assert!(fleet.env.status().handover.is_none());

    // Across the three handovers every line is there once and in order: each run's
    // lines are 0..N (the first runs' end may be cut by the exit, not their middle).
    let out = fleet.env.l4(&["kill"]);
    assert!(out.status.success(), "{}", text(&out));
    for (instance, seen) in lines_by_instance(&fleet.env.path("logs/web-out.log")) {
        let mut expect = 0;
        for n in seen {
            assert!(n == expect || (n == 0 && expect > 0), "instance {instance}: line {n} after {}", expect as i64 - 1);
            expect = n + 1;
        }
    }
}
