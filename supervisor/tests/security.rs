//! README "Security": what the daemon trusts. A home or log folder that another user
//! owns or can write to is refused before anything is read from it or run; files
//! planted there (a symbolic link, someone else's `state.json`) are never followed
//! nor trusted; `--home` keeps the app logs under that home. Giving a folder to
//! another user needs root: those tests say so and pass trivially otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helper::*;

/// `nobody`: the "other local user" of these tests.
const OTHER: u32 = 65534;

fn is_root() -> bool {
    root_or_skip("giving a folder to another user")
}

/// Another user's program (it touches `pwned` when run) and a `state.json` text that
/// names it: what a hostile user plants in a home.
fn planted_state(env: &Env) -> (std::path::PathBuf, String) {
    let (evil, pwned) = (env.path("evil.toml"), env.path("pwned"));
    std::fs::write(&evil, sh_app("evil", &format!("touch {}; exec sleep 1000", pwned.display()), "")).unwrap();
    let state = format!(
        "{{\"schema\":1,\"sources\":[{{\"config\":{:?},\"env\":null}}],\"stopped\":[],\"deleted\":[]}}\n",
        evil.display()
    );
    (pwned, state)
}

fn give_away(p: &Path) {
    std::os::unix::fs::lchown(p, Some(OTHER), Some(OTHER)).unwrap();
}

/// `l4ctl --home HOME start FILE` with a config of its own (no `[daemon]`), as root's
/// shell would run it; `HOME` points into the test folder so the default home is never
/// the real one.
fn l4_home(env: &Env, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .current_dir(env.dir.path())
        .env("HOME", env.path("user-home"))
        .env_remove("L4_HOME")
        .env_remove("L4_CONFIG")
        .output()
        .unwrap()
}

/// A bare app file that touches `marker` when its app runs.
fn app_file(env: &Env, name: &str, marker: &str) -> String {
    let file = env.path(name);
    std::fs::write(&file, sh_app("app", &format!("touch {marker}; exec sleep 1000"), "")).unwrap();
    file.to_str().unwrap().to_owned()
}

/// Kill whatever daemon a test may have started under `home`.
struct Killer<'a>(&'a Env, std::path::PathBuf);
impl Drop for Killer<'_> {
    fn drop(&mut self) {
        let _ = l4_home(self.0, &self.1, &["kill"]);
    }
}

#[test]
fn a_home_another_user_owns_is_refused_and_its_saved_state_never_runs() {
    if !is_root() {
        return;
    }
    let env = Env::new("");
    let home = env.path("shared-home");
    std::fs::create_dir(&home).unwrap();
    let (pwned, state) = planted_state(&env);
    std::fs::write(home.join("state.json"), state).unwrap();
    give_away(&home.join("state.json"));
    give_away(&home);
    let _k = Killer(&env, home.clone());
    let file = app_file(&env, "app.toml", env.path("ran").to_str().unwrap());
    let out = l4_home(&env, &home, &["start", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("refusing home folder {}", home.display())) && err.contains("uid 65534"),
        "one sentence naming the folder and its owner: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!home.join("l4ctl.pid").exists(), "nothing was written in the refused home");
    assert!(!pwned.exists() && !env.path("ran").exists(), "nothing ran");
}

#[test]
fn a_home_or_log_folder_others_can_write_to_is_refused_naming_its_mode() {
    let env = Env::new("");
    let home = env.path("open-home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _k = Killer(&env, home.clone());
    let file = app_file(&env, "app.toml", env.path("ran").to_str().unwrap());
    let out = l4_home(&env, &home, &["start", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing home folder") && err.contains("mode 0777"), "{err}");
    // The daemon itself refuses too (as under systemd, where no CLI checks first).
    let out = Command::new(env!("CARGO_BIN_EXE_l4ctl-daemon")).arg("--home").arg(&home).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A log folder of the home's that others can write to.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(home.join("logs")).unwrap();
    std::fs::set_permissions(home.join("logs"), std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = l4_home(&env, &home, &["start", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing log folder"), "{}", text(&out));
    assert!(!env.path("ran").exists(), "nothing ran");
}

#[test]
fn a_state_json_that_is_not_the_daemon_s_own_is_refused() {
    let env = Env::new("");
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    let (pwned, state) = planted_state(&env);
    let planted = env.path("planted.json");
    std::fs::write(&planted, state).unwrap();
    let _k = Killer(&env, home.clone());
    // A symbolic link named state.json: never followed.
    std::os::unix::fs::symlink(&planted, home.join("state.json")).unwrap();
    let out = l4_home(&env, &home, &["start"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state.json: it is a symbolic link"), "{}", text(&out));
    // A file that group or others could have written.
    std::fs::remove_file(home.join("state.json")).unwrap();
    std::fs::copy(&planted, home.join("state.json")).unwrap();
    std::fs::set_permissions(home.join("state.json"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = l4_home(&env, &home, &["start"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing saved state"), "{}", text(&out));
    if is_root() {
        // Another user's file.
        std::fs::set_permissions(home.join("state.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
        give_away(&home.join("state.json"));
        let out = l4_home(&env, &home, &["start"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 65534"), "{}", text(&out));
    }
    assert!(!pwned.exists(), "the planted state never ran");
}

#[test]
fn symbolic_links_planted_in_the_home_are_never_followed() {
    let env = Env::new("");
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    let victim = env.path("root-only");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, home.join("l4ctl.pid")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join("daemon.out")).unwrap();
    let _k = Killer(&env, home.clone());
    let file = app_file(&env, "app.toml", env.path("ran").to_str().unwrap());
    let out = l4_home(&env, &home, &["start", &file]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a symbolic link"), "{}", text(&out));
    std::fs::remove_file(home.join("daemon.out")).unwrap();
    let out = l4_home(&env, &home, &["start", &file]);
    assert!(!out.status.success(), "{}", text(&out));
    let daemon_out = std::fs::read_to_string(home.join("daemon.out")).unwrap_or_default();
    assert!(daemon_out.contains("l4ctl.pid is a symbolic link"), "{}\n{daemon_out}", text(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the link's target is untouched");
    assert!(!env.path("ran").exists());
}

#[test]
fn with_home_and_no_log_dir_app_logs_stay_under_that_home() {
    let env = Env::new("");
    let home = env.path("elsewhere");
    let _k = Killer(&env, home.clone());
    let ran = env.path("ran");
    let file = app_file(&env, "app.toml", ran.to_str().unwrap());
    let out = l4_home(&env, &home, &["start", &file]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(Duration::from_secs(10), "the app to run", || ran.exists().then_some(()));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700, "the home is created private");
    assert_eq!(mode(&home.join("logs")), 0o750, "the log folder is created 0750");
    wait_for(Duration::from_secs(10), "the app's log under the home", || {
        home.join("logs/app-out.log").exists().then_some(())
    });
    assert!(!env.path("user-home/.layer4").exists(), "nothing went to the default home");
}
