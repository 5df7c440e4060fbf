//! The folder and file rules of `trust`, on real folders. Giving a file to another
//! user needs root; those cases say so and pass trivially otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

const NOBODY: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn give_away(p: &Path) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving {} to another user needs root", p.display());
        return false;
    }
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    true
}

#[test]
fn a_missing_folder_is_created_with_its_mode_and_parents_private() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("a/b/home");
    private_dir(&home, HOME_MODE, "home folder").unwrap();
    for d in [t.path().join("a"), t.path().join("a/b"), home.clone()] {
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
    }
    let logs = t.path().join("logs");
    private_dir(&logs, LOG_DIR_MODE, "log folder").unwrap();
    assert_eq!(std::fs::metadata(&logs).unwrap().permissions().mode() & 0o777, 0o750);
    // An existing folder keeps its mode when nobody else can write to it.
    chmod(&logs, 0o755);
    private_dir(&logs, LOG_DIR_MODE, "log folder").unwrap();
    assert_eq!(std::fs::metadata(&logs).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn a_folder_others_can_write_to_is_refused_naming_its_mode() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    chmod(&home, 0o777);
    let e = private_dir(&home, HOME_MODE, "home folder").unwrap_err().to_string();
    assert!(e.contains("refusing home folder") && e.contains("0777") && e.contains(&home.display().to_string()), "{e}");
    chmod(&home, 0o770);
    assert!(matches!(check_dir(&home, "home folder"), Err(Refused::Writable { mode: 0o770, .. })));
}

#[test]
fn a_folder_of_another_user_is_refused_naming_the_owner() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    if !give_away(&home) {
        return;
    }
    let e = private_dir(&home, HOME_MODE, "home folder").unwrap_err().to_string();
    assert!(e.contains("belongs to uid 65534") && e.contains("not to uid 0"), "{e}");
}

#[test]
fn parents_must_be_root_s_or_ours_and_closed_unless_sticky() {
    let t = tempfile::tempdir().unwrap();
    let shared = t.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let e = private_dir(&shared.join("home"), HOME_MODE, "home folder").unwrap_err();
    assert!(matches!(e, Refused::ParentWritable { .. }), "{e}");
    assert!(!shared.join("home").exists(), "nothing is created under a folder that is refused");
    chmod(&shared, 0o1777);
    private_dir(&shared.join("home"), HOME_MODE, "home folder").unwrap();
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    if give_away(&theirs) {
        let e = private_dir(&theirs.join("home"), HOME_MODE, "home folder").unwrap_err();
        assert!(matches!(e, Refused::ParentOwner { owner: NOBODY, .. }), "{e}");
    }
}

#[test]
fn a_symlink_of_another_user_on_the_way_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    check_dir(&link, "home folder").unwrap();
    if give_away(&link) {
        let e = check_dir(&link, "home folder").unwrap_err();
        assert!(matches!(e, Refused::ForeignLink { .. }), "{e}");
    }
}

#[test]
fn a_file_read_back_is_never_a_link_nor_someone_else_s() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state.json");
    assert!(open_owned(&state, "saved state").unwrap().is_none(), "missing is not an error");
    let target = t.path().join("elsewhere");
    std::fs::write(&target, "{}").unwrap();
    std::os::unix::fs::symlink(&target, &state).unwrap();
    let e = open_owned(&state, "saved state").unwrap_err().to_string();
    assert!(e.contains("symbolic link") && e.contains("state.json"), "{e}");
    std::fs::remove_file(&state).unwrap();
    std::fs::write(&state, "{}").unwrap();
    chmod(&state, 0o666);
    assert!(matches!(open_owned(&state, "saved state"), Err(Refused::Writable { .. })));
    chmod(&state, 0o600);
    assert!(open_owned(&state, "saved state").unwrap().is_some());
    if give_away(&state) {
        assert!(matches!(open_owned(&state, "saved state"), Err(Refused::Owner { owner: NOBODY, .. })));
    }
}
