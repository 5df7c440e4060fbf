//! How `watch` meets the kernel: a `watch` entry as the kernel names it (a link at
//! the entry resolved once), the events that never count (reads and opens), and
//! `notify`'s errors as sentences that name the kernel's limit when it is the cause.

use std::path::{Path, PathBuf};

use notify::event::{EventKind, MetadataKind, ModifyKind};

/// One `watch` entry: as written (resolved against `cwd`) and as the kernel names it
/// (a link at the entry itself is followed once; links under it never are).
#[derive(Debug)]
pub(super) struct Root {
    pub given: PathBuf,
    pub real: PathBuf,
    /// Names of `given` after `cwd`: the entry itself, never matched by `ignore_watch`.
    pub listed: usize,
}

/// Kernel events that never count: reads, opens, access times (`notify` asks the
/// kernel for opens, and a walk opens every folder it lists).
pub fn noise(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)))
}

/// A `watch` entry as the kernel names it: a link at the entry (or above it) is
/// resolved once; an entry that does not exist yet keeps its resolved folder.
pub(super) fn root(given: &Path, base: &Path) -> Root {
    let real = std::fs::canonicalize(given).unwrap_or_else(|_| match (given.parent(), given.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_or_else(|_| given.to_path_buf(), |p| p.join(name))
        }
        _ => given.to_path_buf(),
    });
    let listed = given.strip_prefix(base).map_or(0, |rel| rel.components().count());
    Root { given: given.to_path_buf(), real, listed }
}

/// A `notify` error as a sentence, naming the kernel limit when that is the cause.
pub(super) fn kernel_sentence(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").unwrap_or_default();
            format!(
                "the kernel's limit of inotify watches for this user is reached (fs.inotify.max_user_watches = {}); raise it with sysctl, or watch fewer folders",
                limit.trim()
            )
        }
        _ => e.to_string(),
    }
}
