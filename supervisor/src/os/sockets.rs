//! The listening sockets the daemon owns: one per instance of an app with
//! `port` and `socket = "supervisor"`, bound on the first start and handed to
//! every run of that instance as fd 3 (`LISTEN_FDS=1`). Connections that
//! arrive while no worker accepts (a restart, a reload step) wait in the
//! kernel's queue instead of being refused. A socket is closed when its
//! instance is stopped, removed, or moves to another address.
//!
//! A port held by another process is reported with that process's pid and
//! name, found through `/proc/net/tcp*` and `/proc/*/fd`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};

/// Why an instance's socket could not be bound; its text is the run's `last_exit.error`.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("port {port} is already in use by pid {pid} ({name})")]
    HeldBy { port: u16, pid: i32, name: String },
    #[error("port {0} is already in use")]
    InUse(u16),
    #[error("cannot listen on {addr}: {source}")]
    Other { addr: SocketAddr, source: std::io::Error },
}

/// Pending connections the kernel keeps per socket while no worker accepts.
const BACKLOG: i32 = 1024;

#[derive(Debug, Default)]
pub struct Sockets {
    held: HashMap<(String, u32), (SocketAddr, TcpListener)>,
}

impl Sockets {
    /// The socket of `app`'s instance `index` on `addr`, bound now if needed.
    pub fn get_or_bind(&mut self, app: &str, index: u32, addr: SocketAddr) -> Result<RawFd, BindError> {
        let key = (app.to_owned(), index);
        if let Some((held, listener)) = self.held.get(&key)
            && *held == addr
        {
            return Ok(listener.as_raw_fd());
        }
        self.held.remove(&key);
        let listener = bind(addr)?;
        let fd = listener.as_raw_fd();
        tracing::info!(app, instance = index, %addr, "listening for the instance");
        self.held.insert(key, (addr, listener));
        Ok(fd)
    }

    /// Every socket held, `(app, index, address, descriptor)` (for a handover).
    pub fn held(&self) -> Vec<(String, u32, SocketAddr, RawFd)> {
        self.held.iter().map(|((app, i), (addr, l))| (app.clone(), *i, *addr, l.as_raw_fd())).collect()
    }

    /// Hold a socket the previous daemon handed over.
    pub fn adopt(&mut self, app: &str, index: u32, addr: SocketAddr, fd: std::os::fd::OwnedFd) {
        self.held.insert((app.to_owned(), index), (addr, TcpListener::from(fd)));
    }

    /// Close the socket of one instance (stopped or removed).
    pub fn release(&mut self, app: &str, index: u32) {
        if let Some((addr, _)) = self.held.remove(&(app.to_owned(), index)) {
            tracing::info!(app, instance = index, %addr, "socket closed");
        }
    }
}

/// Bind `addr` (close-on-exec, `SO_REUSEADDR` as std sets it) with a long backlog.
fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let port = addr.port();
    let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => match holder_of(port) {
            Some((pid, name)) => BindError::HeldBy { port, pid, name },
            None => BindError::InUse(port),
        },
        _ => BindError::Other { addr, source: e },
    })?;
    // std listens with a backlog of 128; a reload step may queue more than that.
    let _ = nix::sys::socket::listen(
        &listener,
        nix::sys::socket::Backlog::new(BACKLOG).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    );
    Ok(listener)
}

/// The pid and name of a process with a socket listening on `port`, if `/proc` shows one.
pub fn holder_of(port: u16) -> Option<(i32, String)> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for pid in super::procs::all_pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                return Some((pid, name.trim().to_owned()));
            }
        }
    }
    None
}

/// Inodes of sockets in LISTEN state (`0A`) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port_hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            (local.ends_with(&port_hex) && *state == "0A").then(|| inode.parse().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_inodes_match_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:0BB9 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 100 0 0 10 0\n\
           2: 0100007F:0BBA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 3001), vec![4242]);
        assert_eq!(listening_inodes(table, 3003), Vec::<u64>::new());
    }

    #[test]
    fn a_taken_port_names_the_process_that_holds_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).unwrap_err().to_string();
        let me = std::process::id();
        assert!(err.starts_with(&format!("port {} is already in use by pid {me} (", addr.port())), "{err}");
    }
}
