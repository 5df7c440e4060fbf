//! `<log_dir>/crashes.jsonl`: one JSON object per report and per count update of
//! one (same `id`, with `episode`), appended with one write each; at 10 MiB the file moves to `crashes.jsonl.1` (3 kept).
//! Read back at start ([`recent`]) so that reports, ids and episodes outlive a daemon.
//!
//! Reports carry stderr tails, so the file is mode 0600 (an older, looser file is
//! narrowed on the next append), and it is never opened through a symlink.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::CrashReport;

const MAX_BYTES: u64 = 10 << 20;
const KEEP: u32 = 3;
/// Owner-only: stderr tails may hold secrets.
const MODE: u32 = 0o600;

fn path(log_dir: &Path) -> PathBuf {
    log_dir.join("crashes.jsonl")
}

/// Append `report` (rotating first when the file is full).
pub fn append(log_dir: &Path, report: &CrashReport) -> std::io::Result<()> {
    let file = path(log_dir);
    // symlink_metadata: a symlink is not measured through (and its open fails below).
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.len() >= MAX_BYTES) {
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(
                file.with_extension(format!("jsonl.{n}")),
                file.with_extension(format!("jsonl.{}", n + 1)),
            );
        }
        std::fs::rename(&file, file.with_extension("jsonl.1"))?;
    }
    let mut line = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = crate::nofollow::append(&file, MODE, 0)?;
    crate::nofollow::restrict_mode(&f, MODE)?;
    f.write_all(&line)
}

/// The newest `max` reports of the current file, newest first, each as its latest
/// line says (an update carries the episode's count). Bounded: the file is rotated
/// at 10 MiB. Unreadable lines are skipped; a file that is a symbolic link or that
/// someone else could have written is ignored (logged).
pub fn recent(log_dir: &Path, max: usize) -> Vec<CrashReport> {
    let file = path(log_dir);
    let mut text = Vec::new();
    match crate::trust::open_owned(&file, "crash journal") {
        Ok(Some(f)) => {
            use std::io::Read;
            let _ = f.take(MAX_BYTES + (1 << 20)).read_to_end(&mut text);
        }
        Ok(None) => return vec![],
        Err(e) => {
            tracing::warn!(cause = %e, "earlier crash reports are not read back");
            return vec![];
        }
    }
    let mut newest: Vec<CrashReport> = Vec::new();
    for line in text.split(|b| *b == b'\n').rev() {
        let Ok(report) = serde_json::from_slice::<CrashReport>(line) else { continue };
        if !newest.iter().any(|r| r.id == report.id) {
            newest.push(report);
            if newest.len() == max {
                break;
            }
        }
    }
    newest.sort_by_key(|r| std::cmp::Reverse(r.id));
    newest
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_journal_is_owner_only_and_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let report = CrashReport::new("web", 0, "error", "crashed");
        append(dir.path(), &report).unwrap();
        let file = path(dir.path());
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // A file an older version left readable to all is narrowed on the next append.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(dir.path(), &report).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);

        let outside = dir.path().join("outside");
        std::fs::write(&outside, "").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&outside, &file).unwrap();
        let err = append(dir.path(), &report).unwrap_err();
        assert_eq!(err.to_string(), format!("{} is a symbolic link; refusing to follow it", file.display()));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "");
    }
}
