//! README "Daemon": socket security, signals, saved state and crash recovery.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helper::*;

#[test]
fn control_socket_is_mode_0600_in_a_0700_home() {
    let env = Env::new(&sh_app("a", "exec sleep 1000", ""));
    env.start();
    let mode = std::fs::metadata(env.home().join("l4ctl.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::metadata(env.home()).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn without_a_watchdog_a_sigkilled_daemon_leaves_no_worker_and_start_restores_the_apps() {
    let env = Env::with_daemon(
        "api_listen = \"off\"\nwatchdog = false",
        &(sh_app("web", "setsid sleep 1004 & exec sleep 1000", "instances = 2")
            + &sh_app("idle", "exec sleep 1000", "")),
    );
    env.start();
    assert!(env.l4(&["stop", "idle"]).status.success());
    wait_for(Duration::from_secs(5), "grandchildren", || (pids_with_cmdline("sleep 1004").len() == 2).then_some(()));
    let workers: Vec<u32> = env.status().instances.iter().filter_map(|i| i.pid).collect();
    kill(Pid::from_raw(env.daemon_pid()), Signal::SIGKILL).unwrap();
    // The workers die with the daemon (parent-death signal).
    wait_for(Duration::from_secs(5), "workers to end", || workers.iter().all(|p| !alive(*p as i32)).then_some(()));
    // `start` with no argument starts a new daemon, which ends the setsid'd leftovers and restores.
    let out = env.l4(&["start"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = env.status();
    let states: Vec<(String, String)> = status.instances.iter().map(|i| (i.app.clone(), i.state.to_string())).collect();
    assert!(states.contains(&("web".into(), "online".into())), "{states:?}");
    assert!(states.contains(&("idle".into(), "stopped".into())), "a stopped app stays stopped: {states:?}");
    let new_pids: Vec<u32> = status.instances.iter().filter_map(|i| i.pid).collect();
    wait_for(Duration::from_secs(5), "old grandchildren gone", || {
        let left: Vec<i32> = pids_with_cmdline("sleep 1004");
        // The restored workers start new ones; the two from before must be gone.
        (left.len() <= 2).then_some(())
    });
    assert!(new_pids.iter().all(|p| !workers.contains(p)));
}

#[test]
fn sigterm_stops_every_app_gracefully_and_exits_0() {
    let env = Env::new(&sh_app("a", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.05; done", "instances = 2"));
    let mut daemon = env.cmd(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(Duration::from_secs(5), "socket", || env.home().join("l4ctl.sock").exists().then_some(()));
    env.start();
    let pids: Vec<u32> = env.status().instances.iter().filter_map(|i| i.pid).collect();
    assert_eq!(pids.len(), 2);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_for(Duration::from_secs(10), "daemon exit", || daemon.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert!(pids.iter().all(|p| !alive(*p as i32)));
    let out = std::fs::read_to_string(env.path("logs/a-out.log")).unwrap();
    assert_eq!(out.matches("bye").count(), 2, "each worker got SIGTERM and exited itself: {out}");
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let env = Env::new(&(sh_app("same", "exec sleep 1000", "") + &sh_app("changed", "exec sleep 1000", "")));
    env.start();
    let same = env.instance("same", 0).pid;
    let changed = env.instance("changed", 0).pid;
    env.write_config(
        &(sh_app("same", "exec sleep 1000", "")
            + &sh_app("changed", "exec sleep 1001", "")
            + &sh_app("added", "exec sleep 1000", "")),
    );
    kill(Pid::from_raw(env.daemon_pid()), Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(5), "reload", || {
        let s = env.status();
        let by = |a: &str| s.instances.iter().find(|i| i.app == a).cloned();
        let c = by("changed")?;
        (c.pid != changed && c.state == "online" && by("added")?.state == "online").then_some(())
    });
    assert_eq!(env.instance("same", 0).pid, same, "an unchanged app is not restarted");
    // An invalid file: logged, nothing changes, the daemon keeps running.
    let before = env.status().instances;
    std::fs::write(env.config(), "[daemon]\nhome = \"run\"\n[[apps]]\nname = 1\n").unwrap();
    kill(Pid::from_raw(env.daemon_pid()), Signal::SIGHUP).unwrap();
    let out = env.l4(&["reload-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("l4.toml:4:8"), "{}", text(&out));
    let after = env.status().instances;
    assert_eq!(before.iter().map(|i| i.pid).collect::<Vec<_>>(), after.iter().map(|i| i.pid).collect::<Vec<_>>());
}

#[test]
fn kill_stops_apps_then_the_daemon() {
    let env = Env::new(&sh_app("a", "exec sleep 1000", ""));
    env.start();
    let daemon = env.daemon_pid();
    let out = env.l4(&["kill"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(2), "the daemon process to end", || (!alive(daemon)).then_some(()));
    assert!(env.tagged_pids().is_empty());
    assert!(!env.home().join("l4ctl.sock").exists());
}

#[test]
fn the_watchdog_gives_up_after_five_quick_deaths_in_a_row_and_says_so() {
    let env = Env::new(&sh_app("idle", "exec sleep 1000", ""));
    // Every run of the daemon aborts 1.5 s after its start (a debug-build failpoint the
    // watchdog's runs inherit): five quick deaths, each well within 10 s of its start.
    let out = env
        .cmd(&["start", env.config().to_str().unwrap()])
        .env("L4_FAILPOINT_DAEMON_ABORT_MS", "1500")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.watchdogs().len(), 1);
    let said = wait_for(Duration::from_secs(90), "the watchdog to give up", || {
        let out = std::fs::read_to_string(env.home().join("daemon.out")).unwrap_or_default();
        (env.watchdogs().is_empty() && out.contains("giving up")).then_some(out)
    });
    let again = said.lines().filter(|l| l.contains("starting it again with the saved apps")).count();
    assert_eq!(again, 4, "four restarts, then the fifth quick death ends it:\n{said}");
    assert!(said.contains("the daemon died 5 times within 10s of starting; giving up (see l4ctl.log)"), "{said}");
    assert!(env.try_daemon_pid().is_none_or(|p| !alive(p)), "no daemon is left");
}

#[test]
fn a_sigkilled_background_daemon_is_started_again_by_its_watchdog_and_its_apps_serve_again() {
    let port = free_ports(1);
    let env = Env::new(&sh_app(
        "web",
        "exec python3 -m http.server --bind 127.0.0.1 $PORT",
        &format!("port = {port}\nsocket = \"app\"\nready = \"tcp\""),
    ));
    env.start();
    let serves = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(serves());
    assert_eq!(env.watchdogs().len(), 1, "the background daemon runs under one watchdog");
    let (first, worker) = (env.daemon_pid(), env.instance("web", 0).pid.unwrap() as i32);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let killed = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "the app to serve again", || {
        let now = env.try_daemon_pid()?;
        (now != first && !alive(worker) && serves()).then_some(())
    });
    // The figure for the notes; the bound that matters is the test's deadline.
    eprintln!("served again {} ms after the SIGKILL", killed.elapsed().as_millis());
    wait_for(Duration::from_secs(30), "web online under the new daemon", || {
        (env.instance("web", 0).state == "online").then_some(())
    });
    // `kill` ends the daemon on purpose: the watchdog ends with it.
    assert!(env.l4(&["kill"]).status.success());
    wait_for(Duration::from_secs(10), "the watchdog to end", || env.watchdogs().is_empty().then_some(()));
}
