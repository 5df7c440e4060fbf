//! README "Updating l4ctl in place", limits and refusals: a program of another
//! handover layout, or one from before `l4ctl update`, is refused with nothing
//! changed; a new program that cannot read what it was given says so and restores
//! the saved apps, as after a crash.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::helper::text;
use crate::updating_in_place::{Fleet, WORKERS};

/// Install a shell script as the daemon's program.
fn install_script(fleet: &Fleet, body: &str) {
    let program = fleet.install.bin.join("l4ctl-daemon");
    let fresh = fleet.install.bin.join(".script.new");
    std::fs::write(&fresh, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&fresh, program).unwrap();
}

#[test]
fn a_program_of_another_handover_layout_or_none_is_refused_and_nothing_changes() {
    let mut fleet = Fleet::start(&[]);
    let workers = fleet.table();
    for (body, says) in [
        ("echo 999\n", "reads handovers of layout 999"),
        ("echo \"unexpected argument $1\" >&2; exit 2\n", "cannot take a handover"),
    ] {
        install_script(&fleet, body);
        let out = fleet.install.l4(&fleet.env, &["update"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
        assert!(fleet.env.status().handover.is_none());
        assert_eq!(fleet.table(), workers);
    }
    let (ok, failed) = fleet.stop_load();
    assert_eq!(failed, 0, "{ok} answered");
}

#[test]
fn a_new_program_that_cannot_read_the_handover_restores_the_apps_and_says_so() {
    let mut fleet = Fleet::start(&[]);
    let (daemon, workers) = (fleet.daemon, fleet.table());
    fleet.stop_load();
    // It says it reads this layout, then runs the real program with a descriptor
    // that is no sealed handover in place of the one it was given.
    let real = Path::new(crate::helper::BIN).with_file_name("l4ctl-daemon");
    install_script(
        &fleet,
        &format!(
            "[ \"$1\" = --handover-schema ] && {{ {real} --handover-schema; exit; }}\nexec 9</dev/null\n\
             for a in \"$@\"; do shift; if [ \"$prev\" = --handover ]; then set -- \"$@\" 9; else set -- \"$@\" \"$a\"; fi; prev=$a; done\n\
             exec {real} \"$@\"\n",
            real = real.display()
        ),
    );
    let out = fleet.install.l4(&fleet.env, &["update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("could not take the daemon over and restored the saved apps"), "{}", text(&out));
    assert_eq!(fleet.env.daemon_pid(), daemon, "the same process, restored");
    let restored = fleet.table();
    assert_eq!(restored.len(), WORKERS as usize);
    assert!(restored.iter().all(|w| !workers.iter().any(|o| o.0 == w.0)), "new workers: {restored:?}");
    let log = std::fs::read_to_string(fleet.env.path("logs/l4ctl.log")).unwrap_or_default();
    assert!(log.contains("cannot take over from the previous program"), "{}", fleet.env.diagnose());
}
