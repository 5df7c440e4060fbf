//! Files whose content decides what the server does: the backend's keys (who users
//! are) and a `WEB_ROOT` page (what runs in users' browsers). Whoever can replace such
//! a file takes over the server's users, so it is opened the way such a file must be:
//! its folder first, which must be owned by this user or root and writable by no one
//! else (or sticky, like `/tmp`, where only a file's owner may replace it); then the
//! file inside that folder without following a symlink (`openat`, `O_NOFOLLOW`), which
//! must be a regular file owned by this user or root and writable by no one else.

use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A folder checked as above.
pub fn open_folder(path: &Path, what: &str) -> Result<File, String> {
    let dir = File::open(path).map_err(|e| format!("{what}: {e}"))?;
    let meta = dir.metadata().map_err(|e| format!("{what}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("{what} is not a folder"));
    }
    trusted_owner(meta.uid(), meta.mode(), what, meta.mode() & libc::S_ISVTX != 0)?;
    Ok(dir)
}

/// `name` inside `dir`, never through a symlink: a regular file or a folder, checked.
pub fn open_in(dir: &File, name: &OsStr, folder: bool) -> Result<(File, Metadata), String> {
    let cname = CString::new(name.as_bytes()).map_err(|_| "a name with a NUL byte".to_string())?;
    let kind = if folder { libc::O_DIRECTORY } else { libc::O_NONBLOCK };
    // SAFETY: openat on a descriptor we own and a NUL-terminated name; the result is
    // checked and owned by the File below.
    let fd = unsafe {
        libc::openat(dir.as_raw_fd(), cname.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | kind)
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link; name the file itself".to_string(),
            _ => e.to_string(),
        });
    }
    // SAFETY: fd was just opened and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !folder && !meta.is_file() {
        return Err("is not a regular file".into());
    }
    trusted_owner(meta.uid(), meta.mode(), if folder { "the folder" } else { "the file" }, false)?;
    Ok((file, meta))
}

/// The bytes of a trusted file of at most `max` bytes.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or("names no file")?;
    let dir = open_folder(folder, "its folder")?;
    let (file, meta) = open_in(&dir, name, false)?;
    read_file(file, &meta, max)
}

/// The bytes of an opened file, if it has at most `max`.
pub fn read_file(file: File, meta: &Metadata, max: u64) -> Result<Vec<u8>, String> {
    if meta.len() > max {
        return Err(format!("has {} bytes; at most {max} are read", meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("has more than {max} bytes"));
    }
    Ok(bytes)
}

/// Owned by this user or root, and writable by no one else (a sticky folder may be:
/// there only a file's owner may replace it).
pub fn trusted_owner(uid: u32, mode: u32, what: &str, sticky: bool) -> Result<(), String> {
    // SAFETY: geteuid only reads this process's effective user id.
    let me = unsafe { libc::geteuid() };
    if uid != me && uid != 0 {
        return Err(format!("{what} is owned by user {uid}, who could replace it: it must be this user's or root's"));
    }
    if mode & 0o022 != 0 && !sticky {
        return Err(format!("{what} has mode {:o}: others could replace it (chmod go-w)", mode & 0o7777));
    }
    Ok(())
}
