//! What `l4ctl nginx` keeps in the home's `nginx/` folder besides the hosts'
//! last known servers (`hosts.rs`): a lock per app, so that two renders (the
//! daemon's helper after a scale and after a change, a user's command) never
//! interleave their gather, install and reload; and the render nginx last
//! reloaded with, so that `reload --if-changed` compares with what nginx runs,
//! not with the installed file (a failed reload, or a `render` without one,
//! leaves the two apart and the next `--if-changed` reloads).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Largest remembered render read back.
const MAX_LOADED: u64 = 4 << 20;

fn folder(home: &Path) -> PathBuf {
    home.join("nginx")
}

/// Hold the app's lock until the returned guard is dropped (waits for another holder).
pub fn lock(home: &Path, app: &str) -> std::io::Result<Flock<File>> {
    std::fs::create_dir_all(folder(home))?;
    let path = folder(home).join(format!("{app}.lock"));
    let file = crate::nofollow::read_write(&path, 0o600)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))
}

fn loaded_path(home: &Path, app: &str) -> PathBuf {
    folder(home).join(format!("{app}.loaded.conf"))
}

/// The render nginx last reloaded with, when it is known.
pub fn loaded(home: &Path, app: &str) -> Option<String> {
    let file = crate::trust::open_owned(&loaded_path(home, app), "the render nginx last loaded").ok()??;
    let mut text = String::new();
    file.take(MAX_LOADED).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Remember `rendered` as what nginx now runs.
pub fn mark_loaded(home: &Path, app: &str, rendered: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(folder(home))?;
    crate::fsutil::atomic_write(&loaded_path(home, app), rendered.as_bytes(), 0o600)
}
