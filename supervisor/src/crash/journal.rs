//! `<log_dir>/crashes.jsonl`: one JSON object per report and per count update of
//! one (same `id`, with `episode`), appended with one write each; at 10 MiB the file moves to `crashes.jsonl.1` (3 kept).

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
