//! README "Start with the machine": the unit `l4ctl startup` writes is one systemd
//! accepts, and the daemon speaks sd_notify to it (READY=1 once its apps are back,
//! STATUS=, WATCHDOG=1 while its actor answers, STOPPING=1), tested against a
//! NOTIFY_SOCKET the test binds.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::helper::*;

/// Every datagram until `done` says so or `limit` passes.
fn receive_until(sock: &UnixDatagram, limit: Duration, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !done(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned));
        }
    }
    got
}

/// A NOTIFY_SOCKET bound in the test's folder, as systemd's.
fn notify_socket(env: &Env) -> (UnixDatagram, std::path::PathBuf) {
    let path = env.path("systemd-notify.sock");
    (UnixDatagram::bind(&path).unwrap(), path)
}

/// `l4ctl daemon` as systemd runs it: NOTIFY_SOCKET, WATCHDOG_USEC and `extra`.
fn under_systemd(
    env: &Env,
    sock: &std::path::Path,
    watchdog_usec: &str,
    extra: &[(&str, &str)],
) -> std::process::Child {
    env.cmd(&["daemon"])
        .env("NOTIFY_SOCKET", sock)
        .env("WATCHDOG_USEC", watchdog_usec)
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_daemon_tells_systemd_ready_status_watchdog_and_stopping() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", ""));
    let (sock, sock_path) = notify_socket(&env);
    let mut daemon = under_systemd(&env, &sock_path, "400000", &[]);
    let got = receive_until(&sock, Duration::from_secs(30), |g| g.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3);
    let ready = got.iter().position(|l| l == "READY=1").unwrap_or_else(|| panic!("no READY=1 in {got:?}"));
    assert!(got.contains(&"STATUS=1 app, 1 of 1 instance online".to_owned()), "{got:?}");
    let first_ping = got.iter().position(|l| l == "WATCHDOG=1").unwrap_or_else(|| panic!("no ping in {got:?}"));
    assert!(ready < first_ping, "READY=1 comes first: {got:?}");
    // The app is online by READY=1, and systemd's variables are the daemon's, not its.
    let pid = env.instance("web", 0).pid.unwrap() as i32;
    let vars = environ(pid);
    assert!(!vars.iter().any(|v| v.starts_with("NOTIFY_SOCKET=") || v.starts_with("WATCHDOG_")), "{vars:?}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let got = receive_until(&sock, Duration::from_secs(30), |g| g.iter().any(|l| l == "STOPPING=1"));
    assert!(got.contains(&"STOPPING=1".to_owned()), "{got:?}");
    let status = wait_for(Duration::from_secs(30), "the daemon to exit", || daemon.try_wait().unwrap());
    assert!(status.success(), "{status:?}");

    // At boot, as the unit `l4ctl startup` writes runs it: no --config, --restore. The
    // saved app comes back before READY=1.
    let mut daemon = std::process::Command::new(BIN)
        .args(["--home", env.home().to_str().unwrap(), "daemon", "--restore"])
        .current_dir(env.dir.path())
        .env_remove("L4_CONFIG")
        .env_remove("L4_HOME")
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = receive_until(&sock, Duration::from_secs(30), |g| g.iter().any(|l| l == "READY=1"));
    assert!(got.contains(&"STATUS=1 app, 1 of 1 instance online".to_owned()), "{got:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for(Duration::from_secs(30), "the daemon to exit", || daemon.try_wait().unwrap());
}

#[test]
fn ready_waits_at_most_sixty_seconds_for_an_app_that_never_settles() {
    // Starting for up to an hour: it never says READY=1 and its listen_timeout is 1 h.
    let env = Env::new(&sh_app("slow", "exec sleep 1000", "ready = \"notify\"\nlisten_timeout = \"1h\""));
    let (sock, sock_path) = notify_socket(&env);
    let started = Instant::now();
    let mut daemon = under_systemd(&env, &sock_path, "600000000", &[]);
    let got = receive_until(&sock, Duration::from_secs(150), |g| g.iter().any(|l| l == "READY=1"));
    let waited = started.elapsed();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for(Duration::from_secs(30), "the daemon to exit", || daemon.try_wait().unwrap());
    assert!(got.contains(&"READY=1".to_owned()), "READY=1 within 150 s: {got:?}");
    assert!(got.contains(&"STATUS=1 app, 0 of 1 instance online".to_owned()), "{got:?}");
    // Sixty seconds after the apps were asked for (the daemon's start is part of `waited`).
    assert!(waited >= Duration::from_secs(60), "READY=1 came after {waited:?}, before the app settled");
    eprintln!("READY=1 after {waited:?}");
}

#[test]
fn startup_writes_a_notify_unit_that_systemd_accepts_and_unstartup_removes_it() {
    let env = Env::new("");
    let out = env.l4(&["startup", "--print", "--user", "root"]);
    assert!(out.status.success(), "{}", text(&out));
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "User=root",
        "KillMode=mixed",
        "Delegate=yes",
        "Environment=\"L4_HOME=/root/.layer4\"",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
    }
    assert!(
        unit.contains(&format!("ExecStart=\"{BIN}\" --home \"/root/.layer4\" daemon --log-file --restore")),
        "{unit}"
    );
    assert!(unit.lines().any(|l| l.starts_with("Environment=\"PATH=")), "the PATH it was written with: {unit}");

    let dir = env.path("units");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let out = env.l4(&["startup", "--user", "root", "--unit-dir", d, "--no-enable"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = dir.join("l4ctl-root.service");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), unit);

    match std::process::Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&written).output() {
        Ok(check) => {
            let said = String::from_utf8_lossy(&check.stderr);
            // Only complaints about this unit count (the host's own units are not ours).
            let ours: Vec<&str> = said.lines().filter(|l| l.contains("l4ctl-root.service")).collect();
            assert!(check.status.success() && ours.is_empty(), "systemd-analyze verify: {}", text(&check));
        }
        Err(e) => eprintln!("skipped: systemd-analyze verify: {e} (.ci/test installs systemd when it is missing)"),
    }

    let out = env.l4(&["unstartup", "--user", "root", "--unit-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!written.exists());
    let out = env.l4(&["startup", "--user", "nobody-here-at-all", "--print"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_watchdog_pings_stop_when_the_daemon_s_actor_stops_answering() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", ""));
    let (sock, sock_path) = notify_socket(&env);
    // The actor stalls 2 s in (a debug-build failpoint); the runtime, its timers and the
    // API's tasks go on, so only an answer-based ping can notice.
    let mut daemon = under_systemd(&env, &sock_path, "200000", &[("L4_FAILPOINT_DAEMON_STALL_MS", "2000")]);
    let pings = |g: &[String]| g.iter().filter(|l| *l == "WATCHDOG=1").count();
    let got = receive_until(&sock, Duration::from_secs(30), |g| pings(g) >= 2);
    assert!(pings(&got) >= 2, "pings while it answers: {got:?}");
    // Well past the stall (2 s after the start), a 2 s window: not one ping.
    let drained = Instant::now() + Duration::from_secs(4);
    while Instant::now() < drained {
        receive_until(&sock, Duration::from_millis(200), |_| false);
    }
    let quiet = receive_until(&sock, Duration::from_secs(2), |_| false);
    // The stalled daemon answers nothing, `l4ctl kill` included: end it before judging,
    // so a failure does not hang the clean-up.
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(pings(&quiet), 0, "a stalled actor must stop the pings: {quiet:?}");
}
