//! Unit tests of `files.rs`: the folder limit, and what never counts as a change.

use super::*;

fn spec(root: &Path) -> WatchSpec {
    WatchSpec {
        paths: vec![root.to_path_buf()],
        base: root.to_path_buf(),
        ignore: crate::config::triggers::DEFAULT_IGNORE.iter().map(|s| (*s).to_owned()).collect(),
        delay: std::time::Duration::from_secs(1),
    }
}

#[test]
fn a_tree_of_max_watch_dirs_folders_is_watched_and_one_more_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("app");
    // The root and MAX_WATCH_DIRS - 1 folders under it, 100 per parent; an ignored
    // and a linked folder cost nothing.
    for i in 0..MAX_WATCH_DIRS - 1 {
        std::fs::create_dir_all(root.join(format!("d{}/e{i}", i / 100))).unwrap();
    }
    let parents = (MAX_WATCH_DIRS - 1).div_ceil(100);
    for i in 0..parents {
        std::fs::remove_dir(root.join(format!("d{}/e{}", i, i * 100))).unwrap();
    }
    std::fs::create_dir_all(root.join("node_modules/x/y")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
    let mut w = FileWatch::new(|_| {}, vec![]).unwrap();
    let at_limit = w.set("a", &spec(&root)).unwrap();
    assert_eq!(at_limit, format!("{MAX_WATCH_DIRS} folders under {}", root.display()));
    std::fs::create_dir(root.join("one-more")).unwrap();
    let why = w.set("a", &spec(&root)).unwrap_err();
    assert!(why.starts_with(&format!("not watched: more than {MAX_WATCH_DIRS} folders under")), "{why}");
    assert!(why.contains("add `ignore_watch` patterns"), "{why}");
    assert!(w.dirs.is_empty(), "nothing of a refused app stays watched");
}

#[test]
fn log_files_rotated_files_and_the_daemons_folders_are_never_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut w = FileWatch::new(|_| {}, vec![root.join("run")]).unwrap();
    w.set_logs(&[root.join("app-out.log")]);
    w.set("a", &spec(&root)).unwrap();
    assert!(!w.counts("a", &root.join("app-out.log")));
    assert!(!w.counts("a", &root.join("app-out.20261204-101010-000001-000.log.gz")));
    assert!(!w.counts("a", &root.join("app-out.20261204-101010-000001-000.log.gz.tmp")));
    assert!(!w.counts("a", &root.join("run/state.json")));
    assert!(!w.counts("a", &root.join(".git/index")));
    assert!(w.counts("a", &root.join("app-out.js")));
    assert!(w.counts("a", &root.join("app.log")));
}
