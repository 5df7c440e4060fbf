//! README "Restart policy": restarts, backoff, crash loop, stop_exit_codes.

use std::time::Duration;

use crate::helper::*;

#[test]
fn a_crashing_worker_backs_off_then_enters_crash_loop_and_keeps_retrying() {
    let env = Env::new(&sh_app(
        "crasher",
        "exit 3",
        "restart_delay = \"20ms\"\nmax_restarts = 4\nrestart_delay_max = \"400ms\"",
    ));
    // Whether `start` still sees the first run online is a race; what follows is not.
    env.l4(&["start", env.config().to_str().unwrap()]);
    let i = wait_for(Duration::from_secs(10), "crash-loop", || {
        Some(env.instance("crasher", 0)).filter(|i| i.state == "crash-loop")
    });
    assert!(i.next_retry_ms.is_some_and(|ms| ms <= 400), "{i:?}");
    let exit = i.last_exit.as_ref().expect("last exit");
    assert_eq!((exit.reason.as_str(), exit.code), ("crashed", Some(3)));
    // It never gives up: it keeps starting at the capped delay.
    let before = i.restarts;
    wait_for(Duration::from_secs(5), "more retries", || {
        (env.instance("crasher", 0).restarts >= before + 2).then_some(())
    });
    assert_eq!(env.instance("crasher", 0).state, "crash-loop");
    let table = String::from_utf8_lossy(&env.l4(&["status"]).stdout).into_owned();
    assert!(table.contains("crash-loop (retry in"), "{table}");
}

#[test]
fn a_killed_worker_is_restarted_at_once() {
    let env = Env::new(&sh_app("victim", "exec sleep 1000", "min_uptime = \"100ms\""));
    env.start();
    std::thread::sleep(Duration::from_millis(150));
    let first = env.instance("victim", 0).pid.expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let i = wait_for(Duration::from_secs(5), "a new pid", || {
        Some(env.instance("victim", 0)).filter(|i| i.pid.is_some_and(|p| p != first) && i.state == "online")
    });
    assert_eq!(i.restarts, 1);
    assert_eq!(i.last_exit.and_then(|e| e.signal).as_deref(), Some("SIGKILL"));
}

#[test]
fn stop_exit_codes_end_the_instance_without_restart() {
    let env = Env::new(&sh_app("oneshot", "sleep 0.1; exit 7", "stop_exit_codes = [0, 7]"));
    env.start();
    let i = wait_for(Duration::from_secs(5), "stopped", || {
        Some(env.instance("oneshot", 0)).filter(|i| i.state == "stopped")
    });
    assert_eq!(i.restarts, 0);
    assert_eq!(i.last_exit.map(|e| (e.reason, e.code)), Some(("exited".into(), Some(7))));
}

#[test]
fn an_app_that_exits_0_on_its_own_is_restarted_as_pm2_does_and_no_crash_is_reported() {
    let env = Env::new(&sh_app("done", "sleep 1.2; exit 0", ""));
    env.start();
    let i = wait_for(Duration::from_secs(15), "a restart after exit 0", || {
        Some(env.instance("done", 0)).filter(|i| i.restarts >= 1)
    });
    assert_eq!(i.last_exit.map(|e| (e.reason, e.code)), Some(("exited".into(), Some(0))));
    assert!(crate::helper::reports(&env).is_empty(), "exit 0 is not a crash");
}

#[test]
fn restart_and_delete() {
    let env = Env::new(&(sh_app("a", "exec sleep 1000", "") + &sh_app("b", "exec sleep 1000", "")));
    env.start();
    let a = env.instance("a", 0).pid;
    let out = env.l4(&["restart", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    let now = env.instance("a", 0);
    assert_ne!(now.pid, a);
    assert_eq!((now.state.as_str(), now.restarts), ("online", 1));
    let out = env.l4(&["delete", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    let apps: Vec<String> = env.status().instances.into_iter().map(|i| i.app).collect();
    assert_eq!(apps, vec!["b".to_string()]);
}

#[test]
fn start_exits_1_naming_the_instance_that_cannot_start() {
    let env = Env::new("[[apps]]\nname = \"ghost\"\nscript = \"no-such-program-l4\"\n");
    let out = env.l4(&["start", env.config().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost:0 is waiting-restart"), "{}", text(&out));
    let d = String::from_utf8_lossy(&env.l4(&["describe", "ghost"]).stdout).into_owned();
    assert!(d.contains("spawn-failed (no-such-program-l4: not found on PATH)"), "{d}");
}

#[test]
fn a_worker_killed_by_a_realtime_signal_is_restarted() {
    let env = Env::new(&sh_app("rt", "exec sleep 1000", "min_uptime = \"100ms\""));
    env.start();
    let first = env.instance("rt", 0).pid.expect("pid");
    let sigrtmin1 = nix::libc::SIGRTMIN() + 1;
    assert_eq!(unsafe { nix::libc::kill(first as i32, sigrtmin1) }, 0);
    let i = wait_for(Duration::from_secs(5), "a new pid", || {
        Some(env.instance("rt", 0)).filter(|i| i.pid.is_some_and(|p| p != first) && i.state == "online")
    });
    assert_eq!(i.last_exit.and_then(|e| e.signal), Some(format!("signal {sigrtmin1}")));
}

#[test]
fn start_reports_a_worker_that_dies_at_once_as_failed() {
    let env = Env::new(&sh_app("dies", "exit 3", "restart_delay = \"10s\"\nrestart_delay_max = \"10s\""));
    let out = env.l4(&["start", env.config().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dies:0 is waiting-restart"), "{}", text(&out));
}

#[test]
fn autostart_false_loads_the_app_stopped_until_named() {
    let env = Env::new(&(sh_app("on", "exec sleep 1000", "") + &sh_app("off", "exec sleep 1000", "autostart = false")));
    env.start();
    assert_eq!(env.instance("off", 0).state, "stopped");
    assert_eq!(env.instance("on", 0).state, "online");
    let out = env.l4(&["start", "off"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("off", 0).state, "online");
}
