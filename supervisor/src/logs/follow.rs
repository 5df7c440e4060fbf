//! Reading log files back for `l4ctl logs`: the last N lines, then new lines as
//! they are written. The writer rotates by renaming, so a follower keeps reading
//! the renamed file through its open descriptor to the end, then opens the new
//! file at its start: no line is missed or repeated across a rotation. `l4ctl
//! flush` also replaces the file (a new inode); a file truncated in place by
//! someone else is noticed when it is shorter than what was read.
//!
//! The daemon serves these reads over its API: a symlink at a log's path is never
//! followed, so no one who can write the log folder can read another file through it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::rotate::rotated_files;

/// The last `n` lines of `path`, continuing into its newest rotated files when the
/// current one holds fewer (compressed ones included). Only regular files are read,
/// and only their end: a FIFO or a device named as a log file is never read here.
pub fn last_lines(path: &Path, n: usize) -> Vec<Vec<u8>> {
    let tail = crate::nofollow::read(path)
        .ok()
        .and_then(|f| f.metadata().ok().filter(|m| m.is_file()).map(|m| read_tail(&f, m.len(), n)))
        .unwrap_or_default();
    with_older_lines(path, tail_of_bytes(&tail, n), n)
}

/// `lines` (the newest), preceded by lines of the newest rotated files of `path`
/// until there are `n`.
fn with_older_lines(path: &Path, mut lines: Vec<Vec<u8>>, n: usize) -> Vec<Vec<u8>> {
    let mut older = rotated_files(path);
    while lines.len() < n {
        let Some(prev) = older.pop() else { break };
        let mut more = tail_of_bytes(&read_maybe_gz(&prev).unwrap_or_default(), n - lines.len());
        more.append(&mut lines);
        lines = more;
    }
    lines
}

/// The bytes of `file` before `end`, read backwards in 64 KiB blocks until they hold
/// more than `n` newlines (or the file's start is reached).
fn read_tail(file: &File, end: u64, n: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let (mut start, mut buf, mut newlines) = (end, Vec::new(), 0);
    while start > 0 && newlines <= n {
        let step = (64u64 << 10).min(start);
        start -= step;
        let mut block = vec![0; step as usize];
        if file.read_exact_at(&mut block, start).is_err() {
            return buf;
        }
        newlines += memchr::memchr_iter(b'\n', &block).count();
        block.extend_from_slice(&buf);
        buf = block;
    }
    buf
}

/// A file's content, gunzipped when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(crate::nofollow::read(path)?).read_to_end(&mut out)?;
    } else {
        crate::nofollow::read(path)?.read_to_end(&mut out)?;
    }
    Ok(out)
}

fn tail_of_bytes(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() || n == 0 {
        return vec![];
    }
    let mut lines: Vec<Vec<u8>> = body.rsplit(|b| *b == b'\n').take(n).map(<[u8]>::to_vec).collect();
    lines.reverse();
    lines
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
    /// Start at the current end of `path` (lines before it were printed by `last_lines`).
    pub fn at_end(path: &Path) -> Follower {
        let mut f = Follower { path: path.to_path_buf(), file: None, inode: 0, offset: 0, partial: Vec::new() };
        if let Ok(file) = crate::nofollow::read(path) {
            if let Ok(meta) = file.metadata() {
                f.inode = meta.ino();
                // Start after the last whole line; a partial one is completed by `poll`.
                let tail = read_tail(&file, meta.len(), 0);
                let before = meta.len() - tail.len() as u64;
                f.offset = memchr::memrchr(b'\n', &tail).map_or(before, |i| before + i as u64 + 1);
            }
            f.file = Some(file);
        }
        f
    }

    /// The `n` lines before the point where following starts (older ones from
    /// rotated files), so that history and followed lines neither overlap nor gap.
    pub fn history(&self, n: usize) -> Vec<Vec<u8>> {
        let tail = self.file.as_ref().map(|f| read_tail(f, self.offset, n)).unwrap_or_default();
        with_older_lines(&self.path, tail_of_bytes(&tail, n), n)
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
        assert_eq!(last_lines(&path, 3), vec![b"2".to_vec(), b"partial".to_vec(), b"4".to_vec()]);
    }
}
