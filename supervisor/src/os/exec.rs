//! What replacing the daemon's program in place asks of the kernel (`l4ctl update`):
//! a sealed memory file for the state it hands over, descriptors kept open across
//! `exec`, the check of the program it execs, and the `exec` itself.
//!
//! The same pid goes on running the new program, so workers stay its children and
//! their parent-death signal does not fire: the daemon forks them from its one
//! runtime thread ([`crate::server`]) and that same thread calls `exec` (the kernel
//! sends the signal when the thread that forked a child ends).

use std::ffi::{CString, OsString};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{FcntlArg, FdFlag, SealFlag, fcntl};

/// The largest handover read back (a daemon with the most instances writes far less).
pub const MAX_HANDOVER: u64 = 64 << 20;

/// A memory file holding `bytes`, sealed so that nothing can change it any more.
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(file.into())
}

/// Take over descriptor `fd` (given on the command line by the daemon that exec'd
/// this one): it must be open, and it is closed on a later `exec` again.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: only looked at: F_GETFD fails with EBADF when nothing is open there.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(borrowed, FcntlArg::F_GETFD)?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC))?;
    // SAFETY: the descriptor is open (F_GETFD succeeded) and nothing else in this
    // process owns it: it was inherited across exec and named once on the command line.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read back a handover: a sealed memory file (anything else is refused), whole,
/// up to [`MAX_HANDOVER`].
pub fn read_sealed(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS)?;
    let want = (SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK).bits();
    if seals & want != want {
        return Err(io::Error::other("the handover is not a sealed memory file"));
    }
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut file).take(MAX_HANDOVER + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_HANDOVER {
        return Err(io::Error::other(format!("the handover is larger than {MAX_HANDOVER} bytes")));
    }
    Ok(bytes)
}

/// Keep `fd` open in the program `exec` starts next.
pub fn keep_across_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl(fd, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Refuse to exec `program` unless only root or the daemon's user could have put it
/// there: a regular file (no symbolic link), theirs, that group and others cannot
/// write, in folders with the same guarantees ([`crate::trust::check_dir`]).
pub fn check_program(program: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(program).map_err(|e| format!("cannot use {}: {e}", program.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(format!("refusing {}: it is not a regular file", program.display()));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "refusing {}: it belongs to uid {}, not to root or uid {me}",
            program.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "refusing {}: group or others may write to it (mode {:04o})",
            program.display(),
            meta.mode() & 0o7777
        ));
    }
    if meta.mode() & 0o111 == 0 {
        return Err(format!("refusing {}: it is not executable", program.display()));
    }
    let folder = program.parent().unwrap_or(Path::new("/"));
    crate::trust::check_dir(folder, "program folder").map_err(|e| e.to_string())
}

/// Replace this process's program with `program` run with `args`, in place (same
/// pid, same environment). Returns only when the kernel refused.
pub fn exec(program: &Path, args: &[OsString]) -> io::Error {
    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::other("an argument holds a NUL byte"));
    let argv: Result<Vec<CString>, io::Error> = std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| c(a.as_bytes()))
        .collect();
    let (path, argv) = match (c(program.as_os_str().as_bytes()), argv) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match nix::unistd::execv(&path, &argv) {
        Err(errno) => errno.into(),
    }
}

/// The signals a handover holds back until the next program handles them: a stop,
/// a reload, a log reopen, a child's end (and the debug builds' failpoint).
fn held_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGCHLD] {
        set.add(s);
    }
    set
}

/// Hold [`held_signals`] back in this thread (the one that execs): what arrives
/// waits, pending, into the next program.
pub fn block_signals() {
    let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&held_signals()), None);
}

/// Let [`held_signals`] in again, once their handlers are installed (a program that
/// was handed over starts with them held; workers must not inherit that).
pub fn unblock_signals() {
    let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&held_signals()), None);
}

/// The descriptor number of `fd`, for the command line of the next program.
pub fn number(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_handover_reads_back_whole_and_cannot_be_changed() {
        let fd = sealed_memfd("test", b"state").unwrap();
        let again = fd.try_clone().unwrap();
        let mut file = std::fs::File::from(again);
        assert!(file.write_all(b"x").is_err(), "sealed against writes");
        assert_eq!(read_sealed(fd).unwrap(), b"state");
    }

    #[test]
    fn a_handover_of_max_handover_bytes_is_read_and_one_byte_more_is_refused() {
        let at = vec![b'x'; MAX_HANDOVER as usize];
        assert_eq!(read_sealed(sealed_memfd("at", &at).unwrap()).unwrap().len(), at.len());
        let past = vec![b'x'; MAX_HANDOVER as usize + 1];
        let refused = read_sealed(sealed_memfd("past", &past).unwrap()).unwrap_err();
        assert!(refused.to_string().contains("larger than"), "{refused}");
    }

    #[test]
    fn an_unsealed_file_is_not_taken_for_a_handover() {
        let file = tempfile::tempfile().unwrap();
        assert!(read_sealed(file.into()).is_err());
    }

    #[test]
    fn a_program_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("l4ctl-daemon");
        std::fs::write(&program, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_program(&program).unwrap_err().contains("may write to it"));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_program(&program).unwrap_err().contains("not executable"));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&program, &link).unwrap();
        assert!(check_program(&link).unwrap_err().contains("not a regular file"));
    }
}
