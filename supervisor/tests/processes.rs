//! README "Lifecycle": environment, process groups, stop and kill_timeout, reaping.

use std::time::{Duration, Instant};

use crate::helper::*;

#[test]
fn instances_get_port_env_layers_and_l4_variables() {
    let env = Env::new("");
    std::fs::write(env.path(".env"), "FROM_FILE=file\nLAYER=file\n").unwrap();
    env.write_config(&sh_app(
        "web",
        "env > out-$L4_INSTANCE.env; exec sleep 1000",
        "instances = 2\nport = 4600\nenv_file = \".env\"\n[apps.env]\nLAYER = \"env\"\nPROFILE = \"dev\"\n[apps.env_production]\nPROFILE = \"prod\"",
    ));
    let out = env
        .cmd(&["start", env.config().to_str().unwrap(), "--env", "production"])
        .env("FROM_DAEMON", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}\n{}", text(&out), text(&env.l4(&["describe", "web"])), env.diagnose());
    for i in 0..2 {
        let path = env.path(&format!("out-{i}.env"));
        let vars = wait_for(Duration::from_secs(5), "env dump", || {
            std::fs::read_to_string(&path).ok().filter(|s| s.contains("L4_INSTANCES"))
        });
        for expected in [
            format!("PORT={}", 4600 + i),
            format!("L4_INSTANCE={i}"),
            "L4_APP=web".into(),
            "L4_INSTANCES=2".into(),
            "FROM_DAEMON=yes".into(),
            "FROM_FILE=file".into(),
            "LAYER=env".into(),
            "PROFILE=prod".into(),
            "L4_LOG_TIME=1".into(),
        ] {
            assert!(vars.lines().any(|l| l == expected), "instance {i} lacks {expected}:\n{vars}");
        }
    }
}

#[test]
fn stop_ends_every_process_of_the_instance_including_setsid_grandchildren() {
    let env = Env::new(&sh_app("tree", "sleep 1001 & sleep 1002 & setsid sleep 1003 & wait", ""));
    env.start();
    wait_for(Duration::from_secs(5), "three sleeps", || (pids_with_cmdline("sleep 100").len() >= 3).then_some(()));
    let escaped = pids_with_cmdline("sleep 1003");
    let out = env.l4(&["stop", "tree"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("tree", 0).state, "stopped");
    for marker in ["sleep 1001", "sleep 1002", "sleep 1003"] {
        assert!(pids_with_cmdline(marker).iter().all(|p| !escaped.contains(p) || !alive(*p)), "{marker} survived");
    }
    assert!(env.tagged_pids().is_empty(), "processes left: {:?}", env.tagged_pids());
}

#[test]
fn kill_timeout_escalates_to_sigkill() {
    let env =
        Env::new(&sh_app("stubborn", "trap '' TERM; while true; do sleep 0.05; done", "kill_timeout = \"300ms\""));
    env.start();
    let t = Instant::now();
    let out = env.l4(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(took >= Duration::from_millis(300), "stopped before kill_timeout: {took:?}");
    let i = env.instance("stubborn", 0);
    let exit = i.last_exit.expect("last exit");
    assert_eq!(exit.signal.as_deref(), Some("SIGKILL"), "{exit:?}");
    assert!(env.tagged_pids().is_empty());
}

#[test]
fn orphaned_grandchildren_are_reaped_not_left_as_zombies() {
    // The worker's child starts a grandchild and exits; the grandchild is re-parented
    // to the daemon (child subreaper) and exits soon after.
    let env = Env::new(&sh_app("orphans", "sh -c 'sleep 0.2 &' ; exec sleep 1000", ""));
    env.start();
    let daemon = env.daemon_pid();
    std::thread::sleep(Duration::from_millis(0));
    wait_for(Duration::from_secs(5), "no zombie children of the daemon", || {
        let zombies: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| {
                        let rest = s[s.rfind(')')? + 2..].to_owned();
                        let f: Vec<&str> = rest.split(' ').collect();
                        Some(f[0] == "Z" && f[1] == daemon.to_string())
                    })
                    .unwrap_or(false)
            })
            .collect();
        let grandchild_gone = pids_with_cmdline("sleep 0.2").is_empty();
        (grandchild_gone && zombies.is_empty()).then_some(())
    });
}

#[test]
fn stop_kills_a_stray_that_ignores_sigterm_after_the_worker_exits() {
    let env = Env::new(&sh_app(
        "strays",
        "setsid sh -c \"trap '' TERM; exec sleep 1006\" & trap 'exit 0' TERM; while true; do sleep 0.05; done",
        "",
    ));
    env.start();
    let stray = wait_for(Duration::from_secs(5), "the stray", || pids_with_cmdline("sleep 1006").first().copied());
    let out = env.l4(&["stop", "strays"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(2), "the stray to be killed", || (!alive(stray)).then_some(()));
}

#[test]
fn strays_of_a_crashed_worker_are_killed_while_it_restarts() {
    let env = Env::new(&sh_app(
        "crashy",
        "setsid sh -c \"trap '' TERM; exec sleep 1007\" & sleep 0.3; exit 1",
        "restart_delay = \"2s\"",
    ));
    env.start();
    let first = wait_for(Duration::from_secs(5), "the stray", || pids_with_cmdline("sleep 1007").first().copied());
    wait_for(Duration::from_secs(5), "the first run's stray to be killed", || (!alive(first)).then_some(()));
    // A stray whose sweep is still pending when the daemon shuts down is killed too.
    wait_for(Duration::from_secs(5), "a second run's stray", || {
        pids_with_cmdline("sleep 1007").iter().any(|p| *p != first).then_some(())
    });
    let out = env.l4(&["kill"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(2), "no process left", || env.tagged_pids().is_empty().then_some(()));
}

/// `sh start.sh` without exec: the shell dies on SIGTERM at once, its child drains for
/// `drain_s` seconds, and `stop` waits for it.
fn stop_waits_for_the_drain(env: &Env, drain_s: f64) {
    env.start();
    let t = Instant::now();
    let out = env.l4(&["stop", "leader"]);
    assert!(out.status.success(), "{}", text(&out));
    let drain = Duration::from_secs_f64(drain_s);
    assert!(t.elapsed() >= drain, "stop returned before the group drained: {:?}", t.elapsed());
    wait_for(Duration::from_secs(3), "the drained line in the log", || {
        std::fs::read_to_string(env.path("logs/leader-out.log")).ok().filter(|s| s.contains("drained"))
    });
}

fn draining_leader(drain_s: f64) -> String {
    let child = format!("trap 'sleep {drain_s}; echo drained; exit 0' TERM; while true; do sleep 0.05; done");
    sh_app("leader", &format!("sh -c \"{child}\" & wait"), "")
}

#[test]
fn stop_waits_for_the_group_when_the_leader_exits_first() {
    stop_waits_for_the_drain(&Env::new(&draining_leader(0.4)), 0.4);
}

#[test]
fn without_cgroups_the_orphan_tracking_leaves_a_stopping_run_s_drain_alone() {
    // Full sampling passes (every 5 samples: 0.5 s) see the draining child re-parented
    // to the daemon: its run is still stopping, so it is not what an ended run left.
    let env =
        Env::with_daemon("api_listen = \"off\"\ncgroups = false\nsample_interval = \"100ms\"", &draining_leader(1.5));
    stop_waits_for_the_drain(&env, 1.5);
}

/// SIGKILLs the escaped processes of a test when it ends, passed or not (they carry no
/// `L4_TAG`, so `Env`'s clean-up cannot find them).
struct KillOnDrop(Vec<i32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Whether this machine gives the daemon a cgroup per run (cgroup v2 writable by us).
fn cgroups_writable() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = mountinfo.lines().any(|l| l.contains(" - cgroup2 "));
    if !v2 {
        eprintln!("skipped: no cgroup v2 here (the README says what survives a stop without it)");
    }
    v2 && root_or_skip("making cgroups")
}

/// Live processes running `marker` that carry no `L4_` variable: escaped from their run.
fn escaped(marker: &str) -> Vec<i32> {
    pids_with_cmdline(marker).into_iter().filter(|p| !environ(*p).iter().any(|e| e.starts_with("L4_"))).collect()
}

#[test]
fn stop_ends_a_grandchild_that_left_its_group_and_cleared_its_environment() {
    if !cgroups_writable() {
        return;
    }
    let escape = "setsid env -i sh -c 'trap \"\" TERM; exec sleep 1004' & exec sleep 1000";
    let env = Env::new(&sh_app("escape", escape, ""));
    env.start();
    let escaped =
        wait_for(Duration::from_secs(5), "the escaped grandchild", || escaped("sleep 1004").into_iter().next());
    let _cleanup = KillOnDrop(vec![escaped]);
    let out = env.l4(&["stop", "escape"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(5), "the escaped grandchild to end with its app", || (!alive(escaped)).then_some(()));
}

#[test]
fn a_sigkilled_daemon_s_escaped_grandchildren_end_at_the_next_start() {
    if !cgroups_writable() {
        return;
    }
    let escape = "for i in 1 2 3 4 5 6 7 8 9 10; do setsid env -i sh -c 'trap \"\" TERM; exec sleep 1005' & done; exec sleep 1000";
    // Without the watchdog, so nothing starts a daemon between the SIGKILL and `start`.
    let env = Env::with_daemon("api_listen = \"off\"\nwatchdog = false", &sh_app("escape", escape, ""));
    env.start();
    let escaped = wait_for(Duration::from_secs(5), "ten escaped grandchildren", || {
        let p = escaped("sleep 1005");
        (p.len() == 10).then_some(p)
    });
    let _cleanup = KillOnDrop(escaped.clone());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(env.daemon_pid()), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(5), "the worker to die with the daemon", || {
        pids_with_cmdline("sleep 1000").iter().all(|p| !env.tagged_pids().contains(p)).then_some(())
    });
    assert!(escaped.iter().all(|p| alive(*p)), "they outlive the daemon (nothing can end them then)");
    env.start();
    wait_for(Duration::from_secs(5), "the previous daemon's grandchildren to end", || {
        escaped.iter().all(|p| !alive(*p)).then_some(())
    });
    let out = env.l4(&["delete", "escape"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A daemon that makes no cgroups (`[daemon] cgroups = false`), as on a machine without
/// a writable cgroup v2: the orphan tracking must do.
fn without_cgroups(apps: &str) -> Env {
    Env::with_daemon("api_listen = \"off\"\ncgroups = false", apps)
}

#[test]
fn without_cgroups_a_stop_ends_what_left_the_stopped_app_s_group_and_environment_and_nothing_else() {
    let escape = |n| format!("setsid env -i sh -c 'trap \"\" TERM; exec sleep {n}' & exec sleep 1000");
    let env = without_cgroups(&format!("{}{}", sh_app("one", &escape(1006), ""), sh_app("two", &escape(1007), "")));
    env.start();
    let (one, two) = wait_for(Duration::from_secs(5), "both escaped grandchildren", || {
        Some((escaped("sleep 1006").into_iter().next()?, escaped("sleep 1007").into_iter().next()?))
    });
    let _cleanup = KillOnDrop(vec![one, two]);
    let out = env.l4(&["stop", "one"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(5), "app one's escaped grandchild to end with it", || (!alive(one)).then_some(()));
    assert!(alive(two), "app two's is left alone while two runs");
    let out = env.l4(&["delete", "two"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(5), "app two's to end on delete", || (!alive(two)).then_some(()));
}

#[test]
fn without_cgroups_a_stop_ends_what_was_re_parented_to_the_daemon_before_anything_saw_it() {
    // The subshell exits at once: the escaped process is the daemon's child from the start.
    let escape = "(setsid env -i sh -c 'trap \"\" TERM; exec sleep 1008' &); exec sleep 1000";
    let env = without_cgroups(&sh_app("escape", escape, "instances = 2"));
    env.start();
    let escaped = wait_for(Duration::from_secs(5), "two escaped grandchildren", || {
        let p = escaped("sleep 1008");
        (p.len() == 2).then_some(p)
    });
    let _cleanup = KillOnDrop(escaped.clone());
    let me = std::process::id() as i32;
    let daemon = env.daemon_pid();
    for p in &escaped {
        let ppid = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let ppid: i32 = ppid[ppid.rfind(')').unwrap() + 2..].split(' ').nth(1).unwrap().parse().unwrap();
        assert!(ppid == daemon && ppid != me, "re-parented to the daemon: {ppid}");
    }
    let out = env.l4(&["stop", "escape"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(5), "both to end with their app", || escaped.iter().all(|p| !alive(*p)).then_some(()));
}

#[test]
fn workers_get_the_descriptor_limit_the_daemon_was_started_with() {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard < 2048 {
        eprintln!("skipped: the hard descriptor limit ({hard}) leaves no room to raise");
        return;
    }
    let env = Env::new(&sh_app("limits", "ulimit -n > nofile.txt; exec sleep 1000", ""));
    let mut start = env.cmd(&["start", env.config().to_str().unwrap()]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        start.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1000, hard)
                .map_err(std::io::Error::from)
        });
    }
    let out = start.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let seen = wait_for(Duration::from_secs(5), "the worker's limit", || {
        std::fs::read_to_string(env.path("nofile.txt")).ok().filter(|t| t.ends_with('\n'))
    });
    assert_eq!(seen.trim(), "1000", "the worker keeps the limit it was started under");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", env.daemon_pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert!(!line.split_whitespace().any(|w| w == "1000"), "the daemon raised its own: {line}");
}

#[test]
fn a_script_in_the_app_s_folder_runs_without_dot_slash_with_the_interpreter_pm2_would_pick() {
    let env = Env::new(
        "[[apps]]\nname = \"py\"\nscript = \"job.py\"\nargs = [\"a b\"]\n\n\
         [[apps]]\nname = \"sh\"\nscript = \"run.sh\"\n\n\
         [[apps]]\nname = \"exe\"\nscript = \"serve\"\n\n\
         [[apps]]\nname = \"venv\"\nscript = \"tool.py\"\n",
    );
    // Executable, with its own #! line (as a virtualenv's script): it runs itself, not python3.
    std::fs::write(env.path("tool.py"), "#!/bin/sh\necho shebang says hi\nexec sleep 1000\n").unwrap();
    std::fs::write(
        env.path("job.py"),
        "import sys, time\nprint('python says', sys.argv[1:], flush=True)\ntime.sleep(1000)\n",
    )
    .unwrap();
    // No exec bit: bash runs it, as PM2 would.
    std::fs::write(env.path("run.sh"), "echo bash says $0\nexec sleep 1000\n").unwrap();
    std::fs::write(env.path("serve"), "#!/bin/sh\necho serve says hi\nexec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path("serve"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.path("tool.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.start();
    for (file, line) in [
        ("py-out.log", "python says ['a b']"),
        ("sh-out.log", "bash says run.sh"),
        ("exe-out.log", "serve says hi"),
        ("venv-out.log", "shebang says hi"),
    ] {
        wait_for(Duration::from_secs(10), line, || {
            std::fs::read_to_string(env.path(&format!("logs/{file}"))).ok().filter(|t| t.contains(line))
        });
    }
}
