//! Following log files for `l4ctl logs`: the history before the follow point
//! (read by [`super::tail`], bounded), then new lines as they are written. The
//! writer rotates by renaming, so a follower keeps reading the renamed file through
//! its open descriptor to the end, then opens the new file at its start: no line is
//! missed or repeated across a rotation. `l4ctl flush` also replaces the file (a
//! new inode); a file truncated in place by someone else is noticed when it is
//! shorter than what was read.
//!
//! The daemon serves these reads over its API: a symlink at a log's path is never
//! followed, so no one who can write the log folder can read another file through it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::tail::{Tail, after_last_newline, newest};

/// A whole file's content, gunzipped when its name ends in `.gz` (for tests and
/// tools that check every line; `l4ctl logs` reads bounded tails, see [`super::tail`]).
pub fn read_maybe_gz(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(crate::nofollow::read(path)?).read_to_end(&mut out)?;
    } else {
        crate::nofollow::read(path)?.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Follows one file across rotations and truncations.
#[derive(Debug)]
pub struct Follower {
    pub path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Start at the current end of `path` (lines before it come from `history`).
    pub fn at_end(path: &Path) -> Follower {
        let mut f = Follower { path: path.to_path_buf(), file: None, inode: 0, offset: 0, partial: Vec::new() };
        if let Ok(file) = crate::nofollow::read(path) {
            if let Ok(meta) = file.metadata() {
                f.inode = meta.ino();
                // Start after the last whole line; a partial one is completed by `poll`.
                f.offset = after_last_newline(&file, meta.len());
            }
            f.file = Some(file);
        }
        f
    }

    /// The `n` lines before the point where following starts (older ones from
    /// rotated files), at most `budget` bytes, so that history and followed lines
    /// neither overlap nor gap.
    pub fn history(&self, n: usize, budget: usize) -> Tail {
        let current = self.file.as_ref().filter(|f| f.metadata().is_ok_and(|m| m.is_file()));
        newest(&self.path, current.map(|f| (f, self.offset)), n, budget)
    }

    /// Complete new lines since the last call.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain(&mut out);
        // Rotated (a new inode at the path) or created: the old file is read to its end above.
        let current = std::fs::metadata(&self.path).ok();
        match current {
            Some(meta) if meta.ino() != self.inode || self.file.is_none() => {
                // The writer may have flushed into the old file between our read and
                // its rename; nothing is written to it after the rename: read it once more.
                self.drain(&mut out);
                if let Ok(file) = crate::nofollow::read(&self.path) {
                    self.inode = meta.ino();
                    self.offset = 0;
                    self.file = Some(file);
                    self.drain(&mut out);
                }
            }
            _ => {}
        }
        out
    }

    fn drain(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(file) = &mut self.file else { return };
        if file.metadata().is_ok_and(|m| m.len() < self.offset) {
            // Truncated by `l4ctl flush`.
            self.offset = 0;
            self.partial.clear();
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = file.read_to_end(&mut buf) else { return };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        if let Some(last_nl) = memchr::memrchr(b'\n', &self.partial) {
            let rest = self.partial.split_off(last_nl + 1);
            let whole = std::mem::replace(&mut self.partial, rest);
            out.extend(whole[..whole.len() - 1].split(|b| *b == b'\n').map(<[u8]>::to_vec));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn follows_across_a_rename_rotation_without_missing_or_repeating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        writeln!(f, "old").unwrap();
        let mut follower = Follower::at_end(&path);
        write!(f, "1\n2\npart").unwrap();
        assert_eq!(follower.poll(), vec![b"1".to_vec(), b"2".to_vec()]);
        writeln!(f, "ial").unwrap();
        std::fs::rename(&path, dir.path().join("a.20260101-000000-000000-000.log")).unwrap();
        let mut g = std::fs::File::create(&path).unwrap();
        writeln!(g, "3").unwrap();
        assert_eq!(follower.poll(), vec![b"partial".to_vec(), b"3".to_vec()]);
        // `l4ctl flush` replaces the file with an empty one, which may refill past the old offset.
        std::fs::remove_file(&path).unwrap();
        let mut g = std::fs::File::create(&path).unwrap();
        writeln!(g, "4").unwrap();
        assert_eq!(follower.poll(), vec![b"4".to_vec()]);
        // The current file has one line; the rest comes from the newest rotated file.
        let last = super::super::tail::last_lines(&path, 3, super::super::tail::MAX_BYTES);
        assert_eq!(last.lines, vec![b"2".to_vec(), b"partial".to_vec(), b"4".to_vec()]);
    }
}
