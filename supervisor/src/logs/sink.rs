//! One log file of an app, the bytes waiting for it, and what happens when writing
//! to it fails (README "Logs": a full disk never destroys logs).
//!
//! A failed write (ENOSPC, EDQUOT, EIO or any other error, and a file that cannot be
//! opened) never counts toward `max_size`: only bytes that reached the file do, so a
//! partial write counts what it wrote. The bytes not written stay in the buffer and
//! are tried again after [`BACKOFF`], so a full disk costs one attempt a second, not
//! one per line. While the file fails the buffer holds at most [`HELD`] bytes; whole
//! lines beyond that are dropped and counted, and the file is [`Sink::full`]: the
//! writer then reads the app's output once per backoff only. The writer does not
//! rotate a failing file, so rotation and retention never run, and never delete,
//! because of it.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::writer::period_of;
use crate::config::RotateInterval;

/// A buffer is written to its file once it holds this much.
pub(super) const FLUSH_AT: usize = 1 << 20;
/// Bytes a failing file keeps for when writing works again: the size its buffer
/// reaches under a flood anyway, so a full disk costs no more memory than a flood.
pub(super) const HELD: usize = FLUSH_AT;
/// Wait after a failed write or open before the next attempt.
pub(super) const BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// Log files may hold what apps print about users and secrets: not world-readable.
const MODE: u32 = 0o640;

/// One open file and the bytes waiting for it.
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) path: PathBuf,
    pub(super) file: Option<File>,
    /// Bytes in the file: written ones only.
    pub(super) size: u64,
    pub(super) buf: Vec<u8>,
    /// Hour or day number of the content, for interval rotation.
    pub(super) period: i64,
    /// A regular file. Anything else (`/dev/null`, a FIFO, a terminal) is written
    /// to but never renamed, removed or measured.
    pub(super) regular: bool,
    /// `/dev/null`: lines for it are not even formatted.
    pub(super) discard: bool,
    /// Set while writing fails: no attempt before this instant.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    pub(super) cause: Option<String>,
    /// The last line offered was refused: the held bytes reached `HELD`.
    dropping: bool,
    /// The file's folder passed the trust checks: a rotation or retry opens again in
    /// it without walking the path (only the daemon's user can change it then).
    folder_trusted: bool,
}

impl Sink {
    pub(super) fn new(path: PathBuf, interval: RotateInterval) -> Sink {
        let discard = path == Path::new("/dev/null");
        let buf = if discard { Vec::new() } else { Vec::with_capacity(64 << 10) };
        let mut sink = Sink {
            path,
            file: None,
            size: 0,
            buf,
            period: 0,
            regular: true,
            discard,
            retry_at: None,
            cause: None,
            dropping: false,
            folder_trusted: false,
        };
        sink.open(Instant::now());
        let meta = sink.file.as_ref().and_then(|f| f.metadata().ok());
        // A stream of the system's (/dev/stdout may be the daemon's regular daemon.out)
        // is never renamed: only what the path itself names, unfollowed, can be.
        sink.regular = !system_stream(&sink.path) && meta.as_ref().is_none_or(|m| m.is_file());
        let mtime = meta.and_then(|m| m.modified().ok()).unwrap_or_else(SystemTime::now);
        sink.period = period_of(interval, mtime);
        sink
    }

    /// Open the path anew as the operator asks (`reload-logs`): the folder may be
    /// another one now, so it is checked again.
    pub(super) fn reopen(&mut self, now: Instant) {
        self.folder_trusted = false;
        self.open(now);
    }

    /// (Re)open the path now, whatever the backoff; a failure starts one. `size` is
    /// then the file's.
    pub(super) fn open(&mut self, now: Instant) {
        // O_NONBLOCK: a FIFO without a reader must not block the writer thread.
        let opened = if system_stream(&self.path) {
            // /dev/stdout and /dev/stderr are the kernel's own links.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().append(true).custom_flags(nix::libc::O_NONBLOCK).open(&self.path)
        } else {
            // The folder as the daemon's own log folder: ours, written by nobody else,
            // and so are the folders above it (no one else can swap one for a link).
            let dir = self.path.parent().unwrap_or(Path::new("/"));
            let checked = if self.folder_trusted {
                Ok(())
            } else {
                crate::trust::private_dir(dir, crate::trust::LOG_DIR_MODE, "log folder")
                    .map_err(|e| io::Error::other(e.to_string()))
            };
            self.folder_trusted = checked.is_ok();
            checked
                .and_then(|()| crate::nofollow::append(&self.path, MODE, nix::libc::O_NONBLOCK))
                .and_then(|f| own_file(&self.path, f))
        };
        match opened {
            Ok(f) => {
                self.size = f.metadata().map_or(0, |m| m.len());
                self.file = Some(f);
                self.retry_at = None;
                self.cause = None;
            }
            Err(e) => {
                self.file = None;
                self.fail(&e, now);
            }
        }
    }

    /// Writing failed: wait `BACKOFF` before the next attempt.
    fn fail(&mut self, e: &io::Error, now: Instant) {
        self.retry_at = Some(now + BACKOFF);
        self.cause = Some(e.to_string());
    }

    /// Let the next `write_out` try whatever the backoff (the writer is ending).
    pub(super) fn retry_now(&mut self) {
        self.retry_at = None;
    }

    /// The last write or open failed and no later one succeeded.
    pub(super) fn failing(&self) -> bool {
        self.retry_at.is_some()
    }

    /// When the next attempt is due, if this file holds bytes it could not write.
    pub(super) fn retry_due(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.buf.is_empty())
    }

    /// Takes no more lines: `/dev/null`, or a failing file whose held bytes reached `HELD`.
    pub(super) fn full(&self) -> bool {
        self.discard || (self.dropping && self.failing())
    }

    /// Queue one whole line (`len` bytes in `parts`). A failing file that would pass
    /// `HELD` refuses it instead: false when the line is dropped.
    pub(super) fn push(&mut self, parts: &[&[u8]], len: usize) -> bool {
        self.dropping = self.failing() && self.buf.len() + len > HELD;
        if self.dropping {
            return false;
        }
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        true
    }

    /// Write the buffer, unless an earlier failure's backoff runs past `now`.
    pub(super) fn write_out(&mut self, now: Instant) {
        if self.buf.is_empty() || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        if self.file.is_none() {
            self.open(now);
        }
        let Some(f) = &mut self.file else { return };
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match f.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.size += done as u64;
        self.buf.drain(..done);
        match result {
            Ok(()) => {
                self.retry_at = None;
                self.cause = None;
            }
            Err(e) => self.fail(&e, now),
        }
    }

    /// Give up on what the buffer holds (the files are being replaced, or the writer
    /// ends): the number of bytes lost.
    pub(super) fn abandon(&mut self) -> u64 {
        let lost = self.buf.len() as u64;
        self.buf.clear();
        self.dropping = false;
        lost
    }
}

/// `/dev/null`, `/dev/stdout`, `/dev/stderr` and `/dev/fd/N`: the system's streams,
/// opened as they are and never rotated (`/dev/shm` and the like are folders anyone
/// may write, checked as any other).
fn system_stream(path: &Path) -> bool {
    matches!(path.to_str(), Some("/dev/null" | "/dev/stdout" | "/dev/stderr")) || path.starts_with("/dev/fd/")
}

/// A log file could have been made by someone else before its folder was checked: only
/// the daemon's user's own file (regular or a FIFO), with no other name (a hard link to
/// someone else's file), is written.
fn own_file(path: &std::path::Path, file: std::fs::File) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "refusing {}: it belongs to uid {}, not to uid {me} that runs the daemon",
            path.display(),
            meta.uid()
        )));
    }
    if meta.is_file() && meta.nlink() > 1 {
        return Err(std::io::Error::other(format!(
            "refusing {}: it has {} names (a hard link)",
            path.display(),
            meta.nlink()
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/full` fails every write with ENOSPC: the full disk of a unit test.
    fn full() -> Sink {
        Sink::new(PathBuf::from("/dev/full"), RotateInterval::None)
    }

    #[test]
    fn a_failing_file_holds_up_to_its_bound_drops_whole_lines_beyond_and_waits_before_retrying() {
        let mut s = full();
        let t0 = Instant::now();
        let line = [b'x'; 1000];
        assert!(s.push(&[&line, b"\n"], 1001));
        s.write_out(t0);
        assert!(s.failing(), "ENOSPC is a failed write");
        assert!(s.cause.as_deref().is_some_and(|c| c.contains("No space left")), "{:?}", s.cause);
        assert_eq!((s.size, s.buf.len()), (0, 1001), "nothing counted as written, the line held");
        assert!(!s.full());
        let refused = (0..2000).filter(|_| !s.push(&[&line, b"\n"], 1001)).count();
        assert!(s.buf.len() <= HELD, "held {} bytes", s.buf.len());
        assert_eq!(s.buf.len(), (2001 - refused) * 1001, "whole lines held, whole lines refused");
        assert!(refused > 0 && s.full());
        assert_eq!(s.retry_due(), Some(t0 + BACKOFF));
        // Before the backoff ends nothing is tried; after it, the next attempt fails again.
        s.write_out(t0 + BACKOFF / 2);
        assert_eq!(s.retry_due(), Some(t0 + BACKOFF));
        s.write_out(t0 + BACKOFF);
        assert_eq!(s.retry_due(), Some(t0 + BACKOFF * 2));
        assert_eq!(s.size, 0);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_failing_and_resumes_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "").unwrap();
        let path = dir.path().join("a-out.log");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let mut s = Sink::new(path.clone(), RotateInterval::None);
        assert!(s.failing());
        assert_eq!(s.cause, Some(format!("{} is a symbolic link; refusing to follow it", path.display())));
        assert!(s.push(&[b"kept\n"], 5));
        std::fs::remove_file(&path).unwrap();
        let later = Instant::now() + BACKOFF;
        s.write_out(later);
        assert!(!s.failing());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\n");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "", "the link's target was never written");
        assert_eq!(s.size, 5);
    }

    #[test]
    fn someone_else_s_file_or_a_hard_link_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a-out.log");
        std::fs::write(&path, "").unwrap();
        let other = dir.path().join("other");
        std::fs::hard_link(&path, &other).unwrap();
        let s = Sink::new(path.clone(), RotateInterval::None);
        assert!(s.cause.as_deref().is_some_and(|c| c.contains("hard link")), "{:?}", s.cause);
        std::fs::remove_file(&other).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            let s = Sink::new(path.clone(), RotateInterval::None);
            assert!(s.cause.as_deref().is_some_and(|c| c.contains("belongs to uid 65534")), "{:?}", s.cause);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "never written");
    }

    #[test]
    fn the_system_s_streams_are_never_rotated_and_open_folders_are_refused() {
        for stream in ["/dev/stdout", "/dev/stderr", "/dev/null"] {
            assert!(!Sink::new(PathBuf::from(stream), RotateInterval::None).regular, "{stream}");
        }
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("shared");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let s = Sink::new(open.join("a-out.log"), RotateInterval::None);
        assert!(
            s.cause.as_deref().is_some_and(|c| c.contains("refusing log folder") && c.contains("0777")),
            "{:?}",
            s.cause
        );
        assert!(!open.join("a-out.log").exists());
        // A missing folder is made 0750.
        let s = Sink::new(dir.path().join("new/a-out.log"), RotateInterval::None);
        assert!(s.cause.is_none(), "{:?}", s.cause);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("new")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o750);
    }
}
