//! Claiming a home folder: the checks of the home and log folders (see
//! [`crate::trust`]), the pid-file lock that makes one daemon per home, and the
//! control socket (mode 0600).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use super::Error;

/// The names of a daemon's files in its home.
#[derive(Debug, Clone, Copy)]
pub struct Paths;

impl Paths {
    pub fn socket(home: &Path) -> PathBuf {
        home.join("l4ctl.sock")
    }
    pub fn pid_file(home: &Path) -> PathBuf {
        home.join("l4ctl.pid")
    }
}

/// A claimed home: the pid-file lock (held for the daemon's life) and the bound socket.
#[derive(Debug)]
pub struct Claimed {
    pub lock: Flock<File>,
    pub listener: UnixListener,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Create the home (0700) and the log folder (0750) when missing, and refuse either
/// when someone else owns it, a folder above it, or can write to it. The daemon and
/// the CLI (before it starts one) both check.
pub fn check_folders(home: &Path, log_dir: &Path) -> Result<(), crate::trust::Refused> {
    use crate::trust::{HOME_MODE, LOG_DIR_MODE, private_dir};
    private_dir(home, HOME_MODE, "home folder")?;
    private_dir(log_dir, LOG_DIR_MODE, "log folder")
}

/// Take the pid-file lock of `home` (checked by [`check_folders`]) and bind the
/// control socket (0600). Fails with [`Error::AlreadyRunning`] when another daemon
/// holds the lock.
pub fn claim_home(home: &Path) -> Result<Claimed, Error> {
    let pid_path = Paths::pid_file(home);
    let file = crate::nofollow::read_write(&pid_path, 0o600).map_err(io("cannot open pid file", &pid_path))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, _)| Error::AlreadyRunning {
        home: home.to_path_buf(),
        pid: std::fs::read_to_string(&pid_path).unwrap_or_default().trim().to_owned(),
    })?;
    {
        use std::io::{Seek, Write};
        let f: &mut File = &mut lock;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{}", std::process::id());
    }
    let sock = Paths::socket(home);
    // We hold the lock, so a socket file here is stale.
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(io("cannot bind socket", &sock))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod socket", &sock))?;
    Ok(Claimed { lock, listener })
}
