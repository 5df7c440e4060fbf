//! README "CLI": exit codes and the one-sentence errors.

use std::time::Duration;

use crate::helper::*;

#[test]
fn status_without_a_daemon_is_one_line_and_exit_1() {
    let env = Env::new(&sh_app("a", "sleep 100", ""));
    let out = env.l4(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no daemon is running in"), "{err}");
}

#[test]
fn missing_config_file_is_one_sentence_exit_2() {
    let env = Env::new("");
    let out = env.l4(&["start", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.toml not found"), "{err}");
    assert!(!env.home().join("l4ctl.sock").exists(), "no daemon was started for a missing file");
}

#[test]
fn bad_config_reports_every_error_with_position_and_changes_nothing() {
    let env = Env::new(&sh_app("keep", "exec sleep 1000", ""));
    env.start();
    let before = env.instance("keep", 0).pid;
    std::fs::write(
        env.path("bad.toml"),
        "[daemon]\nhome = \"run\"\n[[apps]]\nname = \"keep\"\nscript = \"sh\"\nmax_memory_restart = \"1GB?\"\nkill_timeout = \"soon\"\nport = 5000\ninstances = 2\n[[apps]]\nname = \"keep\"\nscript = \"sh\"\nport = 5001\ncolour = 1\n",
    )
    .unwrap();
    let out = env.l4(&["start", env.path("bad.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.toml:6:22: invalid size \"1GB?\"",
        "bad.toml:7:16: invalid duration \"soon\"",
        "bad.toml:14:1: unknown field `colour`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(env.instance("keep", 0).pid, before, "the running app was not touched");
}

#[test]
fn unknown_app_is_one_sentence_exit_1() {
    let env = Env::new(&sh_app("a", "exec sleep 1000", ""));
    env.start();
    for verb in ["stop", "restart", "delete", "describe"] {
        let out = env.l4(&[verb, "ghost"]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown app `ghost`"), "{verb}: {}", text(&out));
    }
}

#[test]
fn status_json_has_the_documented_schema() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", "instances = 2\nport = 4700"));
    env.start();
    let out = env.l4(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    let row = &v["instances"][1];
    for key in [
        "id",
        "app",
        "instance",
        "pid",
        "port",
        "state",
        "restarts",
        "unstable_restarts",
        "uptime_ms",
        "cpu_percent",
        "memory_bytes",
        "next_retry_ms",
        "last_exit",
    ] {
        assert!(row.get(key).is_some(), "missing {key} in {row}");
    }
    assert_eq!(row["port"], 4701);
    assert_eq!(row["state"], "online");
    let table = String::from_utf8_lossy(&env.l4(&["ls"]).stdout).into_owned();
    assert!(table.contains("web") && table.contains("online") && table.contains("4701"), "{table}");
}

#[test]
fn describe_never_shows_environment_values() {
    let env = Env::new(&sh_app("a", "exec sleep 1000", "[apps.env]\nSECRET_TOKEN = \"hunter2-value\""));
    env.start();
    for args in [&["describe", "a"][..], &["describe", "a", "--json"], &["status", "--json"]] {
        let out = env.l4(args);
        assert!(out.status.success(), "{}", text(&out));
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(!s.contains("hunter2-value"), "{args:?} leaked a value:\n{s}");
    }
    let d = String::from_utf8_lossy(&env.l4(&["describe", "a"]).stdout).into_owned();
    assert!(d.contains("SECRET_TOKEN"), "names are listed: {d}");
    // A page to read: one setting a line, units shown, no JSON.
    assert!(!d.contains('{') && !d.contains("null"), "{d}");
    assert!(d.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["restart.kill_timeout", "5s"]), "{d}");
    assert!(d.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["logs.max_size", "10.0M"]), "{d}");
}

#[test]
fn one_instance_is_addressed_as_app_colon_n_or_by_its_status_id_as_pm2_ids() {
    let env = Env::new(&sh_app("web", "echo up $L4_INSTANCE; exec sleep 1000", "instances = 2"));
    env.start();
    let id_of = |i: u32| env.instance("web", i).id.to_string();

    let out = env.l4(&["stop", "web:1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("web", 1).state, "stopped");
    assert_eq!(env.instance("web", 0).state, "online", "the other instance is not touched");

    let out = env.l4(&["start", &id_of(1)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("web", 1).state, "online");

    let pid0 = env.instance("web", 0).pid;
    let out = env.l4(&["restart", &id_of(1)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("web", 1).restarts, 2, "stopped-started, then restarted");
    assert_eq!((env.instance("web", 0).pid, env.instance("web", 0).restarts), (pid0, 0));

    // Only that instance's lines.
    let out = env.l4(&["logs", "web:1", "--nostream", "--out"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("up 1") && !shown.contains("up 0"), "{}", text(&out));

    for (args, expect, code) in [
        (&["stop", "web:7"][..], "`web` has no instance 7", 1),
        (&["stop", "999"][..], "no instance has id 999", 1),
        (&["delete", "web:0"][..], "`l4ctl scale web N` removes instances", 1),
        (&["stop", "web:x"][..], "expected APP:INSTANCE", 1),
    ] {
        let out = env.l4(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn signal_reaches_each_running_main_process_and_reset_zeroes_the_restart_counters() {
    let env = Env::new(&sh_app(
        "sig",
        "trap 'echo got usr2 $L4_INSTANCE' USR2; echo trapped $L4_INSTANCE; while true; do sleep 0.05; done",
        "instances = 2",
    ));
    env.start();
    // A signal before the trap is set would end the shell: wait for both to say so.
    wait_for(Duration::from_secs(20), "both traps set", || {
        std::fs::read_to_string(env.path("logs/sig-out.log"))
            .ok()
            .filter(|t| t.contains("trapped 0") && t.contains("trapped 1"))
    });
    let out = env.l4(&["signal", "SIGUSR2", "sig:1"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("SIGUSR2 sent to sig:1 (pid {})", env.instance("sig", 1).pid.unwrap())), "{said}");
    let log = env.path("logs/sig-out.log");
    wait_for(Duration::from_secs(10), "the trap's line", || {
        std::fs::read_to_string(&log).ok().filter(|t| t.contains("got usr2 1"))
    });
    assert!(!std::fs::read_to_string(&log).unwrap().contains("got usr2 0"), "only the one instance");

    let out = env.l4(&["signal", "NOPE", "sig"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    env.l4(&["restart", "sig"]);
    assert_eq!(env.instance("sig", 0).restarts, 1);
    let out = env.l4(&["reset", "sig"]);
    assert!(out.status.success(), "{}", text(&out));
    let i = env.instance("sig", 0);
    assert_eq!((i.restarts, i.restarts_by_reason.len(), i.state.as_str()), (0, 0, "online"));
}

#[test]
fn one_instance_s_command_waits_for_and_reports_that_instance_alone() {
    // Instance 0 crash-loops; instance 1 serves. And an app named with digits only.
    let flaky = sh_app("web", "if [ \"$L4_INSTANCE\" = 0 ]; then exit 1; fi; exec sleep 1000", "instances = 2");
    let env = Env::new(&(flaky + &sh_app("3", "exec sleep 1000", "")));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    wait_for(Duration::from_secs(10), "web:0 restarting", || (env.instance("web", 0).restarts >= 2).then_some(()));

    let out = env.l4(&["restart", "web:1"]);
    assert!(out.status.success(), "a sibling's crash loop is not this command's failure: {}", text(&out));
    let out = env.l4(&["reset", "web"]);
    assert!(out.status.success(), "reset changes no state, so reports no failure: {}", text(&out));
    assert_eq!(env.instance("web", 1).restarts, 0);

    let out = env.l4(&["stop", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("3", 0).state, "stopped", "the app named 3, not the instance with id 3");
    assert_eq!(env.instance("web", 1).state, "online");

    // A signal by number, as kill(1) takes it.
    let out = env.l4(&["signal", "0", "web:1"]);
    assert_eq!(out.status.code(), Some(1), "0 is no signal to send: {}", text(&out));
    let out = env.l4(&["signal", "10", "web:1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SIGUSR1 sent to web:1"), "{}", text(&out));
}

#[test]
fn completions_man_page_save_resurrect_and_pm2_verbs() {
    let env = Env::new(&sh_app("web", "exec sleep 1000", ""));
    let out = env.l4(&["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out));
    let script = env.path("l4ctl.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check));
    assert!(String::from_utf8_lossy(&out.stdout).contains("import"), "every command is completed");
    let man = env.l4(&["man"]);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && page.starts_with(".ie") && page.contains(".TH l4ctl 1"), "{}", text(&man));

    env.start();
    let out = env.l4(&["save"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("brings back: web"), "{}", text(&out));
    assert!(env.l4(&["kill"]).status.success());
    let out = env.l4(&["resurrect"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("web", 0).state, "online");

    for (verb, expect) in [("jlist", "status --json"), ("sendSignal", "l4ctl signal"), ("dump", "saves its apps")] {
        let out = env.l4(&[verb]);
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("`pm2 {verb}` in layer4 is")) && err.contains(expect), "{verb}: {err}");
    }
}

/// An app that binds PORT itself (as a Node or Python app does), in Python.
fn binds_port_itself(name: &str, port: u16, extra: &str) -> String {
    let py = "import socket, os, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(os.environ['PORT'])))\ns.listen()\ntime.sleep(1000)";
    format!("[[apps]]\nname = \"{name}\"\nscript = \"python3\"\nargs = [\"-c\", {py:?}]\nport = {port}\n{extra}\n")
}

#[test]
fn a_failed_start_says_why_in_the_worker_s_words_and_names_socket_app_for_eaddrinuse() {
    let port = free_ports(1);
    // `ready = "notify"`: the start waits for a READY=1 that never comes, so it fails
    // however slowly the worker dies on a loaded machine.
    let env = Env::new(&binds_port_itself("py", port, "ready = \"notify\""));
    let out = env.l4(&["start", env.config().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("its stderr ended with:\n    "), "{err}");
    assert!(err.contains("Address already in use"), "the worker's own words: {err}");
    assert!(err.contains("set socket = \"app\""), "{err}");

    // Switched to socket = "app" by a config reload: l4ctl lets the port go.
    env.write_config(&binds_port_itself("py", port, "socket = \"app\""));
    let out = env.l4(&["reload-config"]);
    assert!(out.status.success(), "{}", text(&out));
    let i = wait_for(Duration::from_secs(20), "py online on its own socket", || {
        Some(env.instance("py", 0)).filter(|i| i.state == "online" && i.uptime_ms.is_some_and(|u| u > 1500))
    });
    assert!(i.pid.is_some());
}

#[test]
fn a_failed_start_carries_exactly_the_last_five_lines_of_stderr() {
    // Seven lines, blank ones between (not counted), then an exit before READY=1.
    let script = "for i in 1 2 3 4 5 6 7; do echo \"line $i of 7\" >&2; echo >&2; done; exit 3";
    let env = Env::new(&sh_app("talker", script, "ready = \"notify\""));
    let out = env.l4(&["start", env.config().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().skip_while(|l| !l.ends_with("its stderr ended with:")).skip(1).collect();
    let quoted: Vec<&str> = tail.iter().take_while(|l| l.starts_with("    ")).map(|l| l.trim()).collect();
    assert_eq!(quoted, ["line 3 of 7", "line 4 of 7", "line 5 of 7", "line 6 of 7", "line 7 of 7"], "{err}");
}

#[test]
fn a_script_cannot_take_the_name_of_an_app_from_a_config_file_and_a_config_without_toml_suffix_is_a_config() {
    let env = Env::new(&sh_app("cfg", "exec sleep 1000", ""));
    env.start();
    std::fs::write(env.path("app.sh"), "exec sleep 1000\n").unwrap();
    let out = env.l4(&["start", "app.sh", "--name", "cfg"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("an app named cfg is already loaded from"), "{}", text(&out));
    // A config file named without .toml is still read as one.
    std::fs::write(
        env.path("prod.conf"),
        std::fs::read_to_string(env.config()).unwrap().replace("\"cfg\"", "\"conf\""),
    )
    .unwrap();
    let out = env.l4(&["start", "prod.conf"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.instance("conf", 0).state, "online");
}
