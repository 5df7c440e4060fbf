//! `<log_dir>/crashes.jsonl`: one JSON object per report and per count update of
//! one (same `id`, with `episode`), appended with one write each; at 10 MiB the file moves to `crashes.jsonl.1` (3 kept).
//! Read back at start ([`recent`]) so that reports, ids and episodes outlive a daemon.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::CrashReport;

const MAX_BYTES: u64 = 10 << 20;
const KEEP: u32 = 3;

fn path(log_dir: &Path) -> PathBuf {
    log_dir.join("crashes.jsonl")
}

/// Append `report` (rotating first when the file is full).
pub fn append(log_dir: &Path, report: &CrashReport) -> std::io::Result<()> {
    let file = path(log_dir);
    if std::fs::metadata(&file).is_ok_and(|m| m.len() >= MAX_BYTES) {
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
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file)?;
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
