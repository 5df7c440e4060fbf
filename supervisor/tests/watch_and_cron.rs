//! README "Watch and cron": real files changed under a real daemon's app, a rolling
//! reload that refuses no connection while a client keeps asking, and a cron
//! expression every second. Every wait is a poll with a deadline; what must not
//! happen is shown by what `describe` says caused each restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::helper::{Env, fd3_worker, free_ports, sh_app, text, wait_for};

/// `l4ctl describe APP --json`.
fn describe(env: &Env, app: &str) -> serde_json::Value {
    let out = env.l4(&["describe", app, "--json"]);
    assert!(out.status.success(), "describe failed: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (restarts caused by watch or cron, the last cause) once `restarts` is `n`.
fn after_restarts(env: &Env, app: &str, n: u64) -> String {
    wait_for(Duration::from_secs(30), &format!("{n} restarts of {app} by its triggers"), || {
        let t = describe(env, app)["triggers"].clone();
        let done = t["restarts"].as_u64() == Some(n) && env.instance(app, 0).state == "online";
        done.then(|| t["last"].as_str().unwrap_or_default().to_owned())
    })
}

#[test]
fn a_file_change_restarts_the_app_once_per_burst_and_ignored_files_and_its_own_logs_never_do() {
    // The app writes its out file, in the watched folder, every 20 ms.
    let app = sh_app(
        "dev",
        "while true; do echo tick; sleep 0.02; done",
        "watch = true\nwatch_delay = 600\nout_file = \"dev-out.log\"\nlog_rotate = { max_size = \"4K\" }",
    );
    let env = Env::new(&app);
    for d in ["src", "node_modules/lib"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.start();
    // The walk runs on the watch thread: armed soon after the start.
    wait_for(Duration::from_secs(30), "the watch armed", || {
        (describe(&env, "dev")["triggers"]["watching"] == true).then_some(())
    });
    let pid0 = env.instance("dev", 0).pid;

    // A burst of ten files is one restart.
    for i in 0..10 {
        std::fs::write(env.path(&format!("src/f{i}.js")), "x").unwrap();
    }
    assert_eq!(after_restarts(&env, "dev", 1), "file change: src/f0.js");
    assert_ne!(env.instance("dev", 0).pid, pid0);

    // A folder made later is watched, down to a file two levels under it.
    std::fs::create_dir_all(env.path("src/new/deep")).unwrap();
    assert_eq!(after_restarts(&env, "dev", 2), "file change: src/new");
    std::fs::write(env.path("src/new/deep/x.js"), "x").unwrap();
    assert_eq!(after_restarts(&env, "dev", 3), "file change: src/new/deep/x.js");

    // The out file, in the watched folder, has been written and rotated all along.
    wait_for(Duration::from_secs(30), "a rotated out file", || {
        std::fs::read_dir(env.dir.path())
            .unwrap()
            .flatten()
            .any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("dev-out.") && n != "dev-out.log"
            })
            .then_some(())
    });
    // Ignored files first, then a real change: had they counted, they would be the
    // first change of this burst, and so its cause.
    for f in ["node_modules/lib/a.js", ".env.swp", "src/app.js~", ".git-like"] {
        std::fs::write(env.path(f), "x").unwrap();
    }
    std::fs::write(env.path("src/sentinel.js"), "x").unwrap();
    assert_eq!(after_restarts(&env, "dev", 4), "file change: src/sentinel.js");
    // Its log, its rotated files and the daemon's folders never counted: every
    // restart of the instance is one of the four.
    let i = env.instance("dev", 0);
    assert_eq!(i.restarts, 4, "{:?}\n{}", i, env.diagnose());
}

#[test]
fn two_apps_watching_one_folder_both_see_a_new_folder_and_neither_counts_the_other_s_log() {
    // `writer` logs into the shared folder every 20 ms; `quiet` watches the same folder.
    let apps = format!(
        "{}\n{}",
        sh_app("quiet", "exec sleep 1000", "watch = true\nwatch_delay = 300"),
        sh_app(
            "writer",
            "while true; do echo tick; sleep 0.02; done",
            "watch = true\nwatch_delay = 300\nout_file = \"writer-out.log\""
        )
    );
    let env = Env::new(&apps);
    std::fs::create_dir(env.path("src")).unwrap();
    env.start();
    for app in ["quiet", "writer"] {
        wait_for(Duration::from_secs(30), "the watch armed", || {
            (describe(&env, app)["triggers"]["watching"] == true).then_some(())
        });
    }
    // A folder made later holds the change: each app watches it, not only the first.
    std::fs::create_dir(env.path("src/new")).unwrap();
    for app in ["quiet", "writer"] {
        assert_eq!(after_restarts(&env, app, 1), "file change: src/new", "{app}");
    }
    std::fs::write(env.path("src/new/a.js"), "x").unwrap();
    for app in ["quiet", "writer"] {
        assert_eq!(after_restarts(&env, app, 2), "file change: src/new/a.js", "{app}: not the other's log");
    }
}

#[test]
fn a_watched_folder_made_later_removed_and_made_again_is_watched_each_time() {
    let env = Env::new(&sh_app("site", "exec sleep 1000", "watch = [\"dist\"]\nwatch_delay = 200"));
    env.start();
    wait_for(Duration::from_secs(30), "the watch armed", || {
        (describe(&env, "site")["triggers"]["watching"] == true).then_some(())
    });
    // Not there at the start: its folder tells when it comes.
    std::fs::create_dir(env.path("dist")).unwrap();
    assert_eq!(after_restarts(&env, "site", 1), "file change: dist");
    std::fs::write(env.path("dist/app.js"), "1").unwrap();
    assert_eq!(after_restarts(&env, "site", 2), "file change: dist/app.js");
    // A build that removes the folder and makes it again.
    std::fs::remove_dir_all(env.path("dist")).unwrap();
    assert_eq!(after_restarts(&env, "site", 3), "file change: dist/app.js", "its file goes first");
    std::fs::create_dir_all(env.path("dist/js")).unwrap();
    assert_eq!(after_restarts(&env, "site", 4), "file change: dist");
    std::fs::write(env.path("dist/js/app.js"), "2").unwrap();
    assert_eq!(after_restarts(&env, "site", 5), "file change: dist/js/app.js");
    let watching = describe(&env, "site")["triggers"]["watch"].as_str().unwrap_or_default().to_owned();
    assert!(watching.starts_with("2 folders under "), "{watching}");
}

#[test]
fn a_file_change_replaces_a_ready_app_by_a_rolling_reload_that_refuses_no_connection() {
    let port = free_ports(2);
    let app = format!(
        "[[apps]]\nname = \"web\"\nscript = \"python3\"\nargs = [\"-u\", \"worker.py\"]\ninstances = 2\nport = {port}\nready = \"notify\"\nwatch = [\"worker.py\"]\nwatch_delay = 100\n"
    );
    let env = Env::new(&app);
    std::fs::write(env.path("worker.py"), fd3_worker("\"pid %d\\n\" % os.getpid()")).unwrap();
    env.start();
    let before: Vec<Option<u32>> = (0..2).map(|i| env.instance("web", i).pid).collect();

    // A client that keeps asking both instances until told to stop.
    let (stop, failures, answers) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, failures, answers) = (stop.clone(), failures.clone(), answers.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for p in [port, port + 1] {
                    let got = TcpStream::connect(("127.0.0.1", p)).and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                        let mut body = String::new();
                        s.read_to_string(&mut body)?;
                        Ok(body)
                    });
                    match got {
                        Ok(b) if b.contains("pid ") => answers.fetch_add(1, Ordering::Relaxed),
                        other => {
                            errors.push(format!("{other:?}"));
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
            errors
        })
    };
    wait_for(Duration::from_secs(10), "the client's first answers", || {
        (answers.load(Ordering::Relaxed) > 10).then_some(())
    });
    std::fs::write(env.path("worker.py"), fd3_worker("\"pid %d (changed)\\n\" % os.getpid()")).unwrap();
    assert_eq!(after_restarts(&env, "web", 1), "file change: worker.py");
    let after: Vec<Option<u32>> = (0..2).map(|i| env.instance("web", i).pid).collect();
    let counted = answers.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(10), "answers from the new runs", || {
        (answers.load(Ordering::Relaxed) > counted + 10).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let errors = client.join().unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "refused or failed requests: {errors:?}");
    for i in 0..2 {
        assert_ne!(after[i as usize], before[i as usize], "instance {i} was replaced");
        let s = env.instance("web", i);
        assert_eq!(s.restarts_by_reason.get("reload"), Some(&1), "a rolling reload, not a restart: {s:?}");
    }
}

#[test]
fn cron_restart_every_second_restarts_the_app_and_a_stopped_app_stays_stopped() {
    let env = Env::new(&sh_app("tick", "exec sleep 1000", "cron_restart = \"* * * * * *\""));
    env.start();
    let d = describe(&env, "tick");
    assert!(d["triggers"]["next_cron_restart"].as_str().is_some_and(|t| t.len() >= 19), "{d}");
    let pid0 = env.instance("tick", 0).pid;
    let last = wait_for(Duration::from_secs(30), "two restarts by cron_restart", || {
        let t = describe(&env, "tick")["triggers"].clone();
        (t["restarts"].as_u64() >= Some(2)).then(|| t["last"].as_str().unwrap_or_default().to_owned())
    });
    assert_eq!(last, "cron_restart * * * * * *");
    assert_ne!(env.instance("tick", 0).pid, pid0);

    let out = env.l4(&["stop", "tick"]);
    assert!(out.status.success(), "{}", text(&out));
    // A restart under way when the stop came may end in another sentence: the next
    // cron time says the app is stopped.
    wait_for(Duration::from_secs(30), "a cron time passed while stopped", || {
        let why = describe(&env, "tick")["triggers"]["last_error"].as_str().map(str::to_owned);
        why.filter(|w| w.contains("`tick` is stopped: not restarted"))
    });
    assert_eq!(env.instance("tick", 0).state, "stopped");
    let out = env.l4(&["describe", "tick"]);
    let page = text(&out);
    assert!(page.contains("cron_restart") && page.contains("\"* * * * * *\" (next "), "{page}");
}
