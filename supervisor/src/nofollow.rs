//! Opening the daemon's files in log folders without following symlinks.
//!
//! Whoever can write a log folder must not be able to make the daemon (often root)
//! append to, read, or chmod a file elsewhere by leaving a symlink where a log file
//! should be. Every open of a log file, `crashes.jsonl` and the daemon's own log goes
//! through here with `O_NOFOLLOW`, and so do the pid file and `daemon.out` in the home;
//! a symlink at the path is an error that names it. Only the last component is
//! checked: the folders themselves are `trust`'s concern.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Open `path` for appending, creating it with `mode` (umask permitting).
pub fn append(path: &Path, mode: u32, extra_flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | extra_flags)
        .open(path)
        .map_err(|e| name_the_link(path, e))
}

/// Open `path` for reading and writing, creating it with `mode` (the pid file).
pub fn read_write(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| name_the_link(path, e))
}

/// Open `path` for reading (`O_NONBLOCK`: a FIFO named as a log file must not block
/// the reader in `open`; only regular files are read back).
pub fn read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| name_the_link(path, e))
}

/// ELOOP from an `O_NOFOLLOW` open, said in words that name the link.
fn name_the_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        io::Error::new(e.kind(), format!("{} is a symbolic link; refusing to follow it", path.display()))
    } else {
        e
    }
}

/// Take away the permission bits of an open file that `mode` does not allow (a file an
/// older version created under a looser umask); never adds a bit.
pub fn restrict_mode(file: &File, mode: u32) -> io::Result<()> {
    let current = file.metadata()?.permissions().mode() & 0o7777;
    if current & !mode == 0 {
        return Ok(());
    }
    file.set_permissions(fs::Permissions::from_mode(current & mode))
}

/// Remove `path` only if it is a regular file (a symlink or a folder named like a
/// rotated log is left alone).
pub fn remove_regular(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => fs::remove_file(path),
        Ok(_) => Err(io::Error::other(format!("{} is not a regular file; not removing it", path.display()))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlink_is_refused_by_name_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "untouched").unwrap();
        let link = dir.path().join("app-out.log");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for err in [super::append(&link, 0o640, 0).unwrap_err(), super::read(&link).unwrap_err()] {
            assert_eq!(err.to_string(), format!("{} is a symbolic link; refusing to follow it", link.display()));
        }
        assert!(super::remove_regular(&link).is_err());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "untouched", "link and target both left");
    }

    #[test]
    fn restrict_mode_only_takes_bits_away() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("crashes.jsonl");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = super::append(&p, 0o600, 0).unwrap();
        super::restrict_mode(&f, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        super::restrict_mode(&f, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o400, "never widened");
    }
}
