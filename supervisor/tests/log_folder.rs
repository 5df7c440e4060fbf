//! README "Logs", file modes and symlinks: another local user can read none of the
//! files the daemon writes in its log folder (app logs 0640, rotated and compressed
//! ones keeping that mode, `crashes.jsonl` and the daemon's log 0600), and a symlink
//! where a log file should be is refused, never followed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use layer4_supervisor::logs::rotate::rotated_files;

use crate::helper::*;

/// The second local user of the mode test.
const OTHER_USER: &str = "l4test";

/// Make sure `OTHER_USER` exists (created as a system user without a home if missing).
fn other_user() -> bool {
    let exists = || Command::new("id").arg("-u").arg(OTHER_USER).output().is_ok_and(|o| o.status.success());
    exists()
        || Command::new("useradd")
            .args(["--system", "--no-create-home", OTHER_USER])
            .status()
            .is_ok_and(|s| s.success())
            && exists()
}

/// True when `OTHER_USER` can read `file`.
fn other_can_read(file: &Path) -> bool {
    let out = Command::new("runuser").args(["-u", OTHER_USER, "--", "cat"]).arg(file).output().unwrap();
    out.status.success()
}

fn mode(file: &Path) -> u32 {
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

#[test]
fn another_user_can_read_no_app_log_rotated_log_crash_journal_or_daemon_log() {
    if !root_or_skip("creating a user and reading as one") {
        return;
    }
    if !other_user() {
        eprintln!("skipped: no user {OTHER_USER} and useradd failed");
        return;
    }
    let env = Env::new(
        &(sh_app(
            "chatty",
            "i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo line $i; done; exec sleep 1000",
            "[apps.log_rotate]\nmax_size = \"1K\"\ncompress = true",
        ) + &sh_app("dies", "echo token=s3cr3t >&2; exit 3", "restart_delay = \"10s\"\nrestart_delay_max = \"10s\"")),
    );
    // `start` reports `dies` as failed: that is the point.
    env.l4(&["start", env.config().to_str().unwrap()]);
    let logs = env.path("logs");
    let gz = wait_for(Duration::from_secs(10), "a compressed rotated log", || {
        rotated_files(&logs.join("chatty-out.log")).into_iter().find(|f| f.extension().is_some_and(|e| e == "gz"))
    });
    wait_for(Duration::from_secs(10), "a crash report in crashes.jsonl", || (!journal(&env).is_empty()).then_some(()));
    let daemon_log = logs.join(std::fs::read_link(logs.join("l4ctl.log")).unwrap());
    // Only the files' modes may stand in the way: every folder on the path is open to all.
    for dir in [env.dir.path(), &logs] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let control = logs.join("readable.txt");
    std::fs::write(&control, "anyone\n").unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(other_can_read(&control), "{OTHER_USER} cannot reach the log folder: the test would prove nothing");

    let app_log = logs.join("chatty-out.log");
    let journal = logs.join("crashes.jsonl");
    for (file, want) in [(&app_log, 0o640), (&gz, 0o640), (&journal, 0o600), (&daemon_log, 0o600)] {
        assert_eq!(mode(file), want, "mode of {}", file.display());
        assert!(!other_can_read(file), "{OTHER_USER} can read {}", file.display());
    }
}

#[test]
fn a_symlink_where_a_log_file_should_be_is_refused_by_name_and_its_target_untouched() {
    let env = Env::new(&sh_app("sym", "echo hello; exec sleep 1000", ""));
    let outside = env.path("outside.txt");
    std::fs::write(&outside, "precious\n").unwrap();
    std::fs::create_dir_all(env.path("logs")).unwrap();
    let link = env.path("logs/sym-out.log");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    env.start();
    // The app ran and its other files work.
    wait_for(Duration::from_secs(10), "the line in the combined file", || {
        std::fs::read_to_string(env.path("logs/sym.log")).ok().filter(|s| s.contains("hello"))
    });
    let refusal = format!("{} is a symbolic link; refusing to follow it", link.display());
    wait_for(Duration::from_secs(10), "the refusal in the daemon's log", || {
        std::fs::read_to_string(env.path("logs/l4ctl.log")).ok().filter(|s| s.contains(&refusal))
    });
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n", "the link was followed");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it is");
}
