//! Which folders and files the daemon may trust. l4ctl runs as root on shared hosts;
//! a home or log folder that another user owns or can write lets that user plant a
//! symbolic link (root then writes through it) or a `state.json` (root then runs
//! their program). So, as sshd's StrictModes does:
//!
//! - a folder the daemon keeps its files in must belong to the daemon's user (or root)
//!   and be writable by nobody else; it is created 0700 (home) or 0750 (logs) when
//!   missing; this holds for the daemon's log folder and for the folder of every log
//!   file an app names (`out_file` in `/srv/app/logs`, say);
//! - every existing parent must belong to root or to that user and be writable by
//!   nobody else, unless it is sticky (`/tmp`: nobody can rename or remove another
//!   user's entries there); a symbolic link on the way must belong to root or that user;
//! - a file read back from such a folder is opened without following a symbolic link
//!   and must belong to the daemon's user and not be writable by group or others.
//!
//! Every refusal is one sentence that names the path, its owner and its mode.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of a home folder the daemon creates.
pub const HOME_MODE: u32 = 0o700;
/// Mode of a log folder the daemon creates (a log-reading group may list it).
pub const LOG_DIR_MODE: u32 = 0o750;

/// A folder or file the daemon will not use, and why.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("refusing {what} {}: it belongs to {}, not to {} that runs the daemon; chown it or choose another folder", path.display(), who(*owner), who(*me))]
    Owner { what: &'static str, path: PathBuf, owner: u32, me: u32 },
    #[error("refusing {what} {}: its mode {mode:04o} lets group or others write to it; make it writable by its owner only, or choose another folder", path.display())]
    Writable { what: &'static str, path: PathBuf, mode: u32 },
    #[error("refusing {what} {}: its parent {} belongs to {} (mode {mode:04o}); only root or {} may own the folders above it", path.display(), parent.display(), who(*owner), who(*me))]
    ParentOwner { what: &'static str, path: PathBuf, parent: PathBuf, owner: u32, mode: u32, me: u32 },
    #[error("refusing {what} {}: its parent {} (mode {mode:04o}) is writable by group or others and not sticky, so they could put a link in its place; choose a folder under one only its owner can write", path.display(), parent.display())]
    ParentWritable { what: &'static str, path: PathBuf, parent: PathBuf, mode: u32 },
    #[error("refusing {what} {}: the symbolic link {} on its way belongs to {}", path.display(), link.display(), who(*owner))]
    ForeignLink { what: &'static str, path: PathBuf, link: PathBuf, owner: u32 },
    #[error("refusing {what} {}: it is a symbolic link; refusing to follow it", path.display())]
    Symlink { what: &'static str, path: PathBuf },
    #[error("refusing {what} {}: it is not a {}", path.display(), if *dir { "folder" } else { "regular file" })]
    Kind { what: &'static str, path: PathBuf, dir: bool },
    #[error("cannot use {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

/// `uid N (name)`, for the sentences above.
fn who(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Create `dir` (and missing parents) with `mode` when missing, then check it and
/// every parent as the module doc says. `what` names it in a refusal ("home folder").
pub fn private_dir(dir: &Path, mode: u32, what: &'static str) -> Result<(), Refused> {
    // Parents are checked before anything is created in them.
    check_parents(dir, what)?;
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(|source| Refused::Io {
            what,
            path: dir.to_path_buf(),
            source,
        })?;
    }
    check_itself(dir, what)
}

/// Check an existing folder and its parents (the folder itself may be reached through
/// a symbolic link that root or the daemon's user owns).
pub fn check_dir(dir: &Path, what: &'static str) -> Result<(), Refused> {
    check_parents(dir, what)?;
    check_itself(dir, what)
}

/// The folder, not its parents: a folder, ours, that nobody else may write to.
fn check_itself(dir: &Path, what: &'static str) -> Result<(), Refused> {
    let meta = std::fs::metadata(dir).map_err(|source| Refused::Io { what, path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(Refused::Kind { what, path: dir.to_path_buf(), dir: true });
    }
    own_and_closed(&meta, dir, what)
}

/// The folder itself: the daemon's user (or root) owns it and nobody else may write to it.
fn own_and_closed(meta: &Metadata, path: &Path, what: &'static str) -> Result<(), Refused> {
    if meta.uid() != me() && meta.uid() != 0 {
        return Err(Refused::Owner { what, path: path.to_path_buf(), owner: meta.uid(), me: me() });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refused::Writable { what, path: path.to_path_buf(), mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

/// Every existing folder above `dir`, as written and as resolved.
fn check_parents(dir: &Path, what: &'static str) -> Result<(), Refused> {
    let dir = crate::config::absolute(dir);
    // Links on the way as written: someone else's link could be pointed elsewhere later.
    let mut walked = PathBuf::from("/");
    for part in dir.components().skip(1) {
        walked.push(part);
        match std::fs::symlink_metadata(&walked) {
            Ok(m) if m.file_type().is_symlink() && m.uid() != 0 && m.uid() != me() => {
                return Err(Refused::ForeignLink { what, path: dir.clone(), link: walked, owner: m.uid() });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // The real folders above the deepest one that exists.
    let mut existing = dir.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let real = std::fs::canonicalize(existing).map_err(|source| Refused::Io { what, path: dir.clone(), source })?;
    let first = if real == dir { real.parent() } else { Some(real.as_path()) };
    for parent in first.into_iter().flat_map(Path::ancestors) {
        let m = std::fs::metadata(parent).map_err(|source| Refused::Io { what, path: dir.clone(), source })?;
        let mode = m.mode() & 0o7777;
        if m.uid() != 0 && m.uid() != me() {
            return Err(Refused::ParentOwner {
                what,
                path: dir,
                parent: parent.into(),
                owner: m.uid(),
                mode,
                me: me(),
            });
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(Refused::ParentWritable { what, path: dir, parent: parent.into(), mode });
        }
    }
    Ok(())
}

/// Open `path` for reading without following a symbolic link; `Ok(None)` when it
/// does not exist. It must be a regular file of the daemon's user that group and
/// others cannot write.
pub fn open_owned(path: &Path, what: &'static str) -> Result<Option<File>, Refused> {
    let file =
        match OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(Refused::Symlink { what, path: path.to_path_buf() });
            }
            Err(source) => return Err(Refused::Io { what, path: path.to_path_buf(), source }),
        };
    let meta = file.metadata().map_err(|source| Refused::Io { what, path: path.to_path_buf(), source })?;
    if !meta.is_file() {
        return Err(Refused::Kind { what, path: path.to_path_buf(), dir: false });
    }
    own_and_closed(&meta, path, what)?;
    Ok(Some(file))
}

/// Create the home (0700) and the log folder (0750) when missing, and refuse either
/// when someone else owns it, a folder above it, or can write to it. The daemon and
/// the CLI (before it starts one) both check.
pub fn check_folders(home: &Path, log_dir: &Path) -> Result<(), Refused> {
    private_dir(home, HOME_MODE, "home folder")?;
    private_dir(log_dir, LOG_DIR_MODE, "log folder")
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
