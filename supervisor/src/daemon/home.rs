//! Claiming a home folder (once [`crate::trust::check_folders`] accepted it): the
//! pid-file lock that makes one daemon per home, and the control socket (mode 0600).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use super::Error;
use crate::wire::home::Paths;

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

/// Take the pid-file lock of `home` (checked by [`crate::trust::check_folders`]) and bind the
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
