//! Starting one process for one instance: program lookup, environment (daemon's,
//! then `env_file`, `[apps.env]`, `[apps.env_NAME]`, then `PORT`, `L4_APP`,
//! `L4_INSTANCE`, `L4_INSTANCES`), its own session and process group, a parent-
//! death signal so it never outlives a SIGKILLed daemon, and its stdout/stderr
//! on pipes that the log pipeline reads.
//!
//! An instance with a supervisor-owned socket gets it as fd 3 with `LISTEN_FDS=1`,
//! `LISTEN_FDNAMES` and `LISTEN_PID` (systemd's socket-passing convention).
//! `LISTEN_PID` must be the child's own pid, known only after the fork, so such a
//! child is exec'd by [`Inherit`] with an environment built before the fork and
//! the pid written into it in the child (no allocation between fork and exec).
//!
//! Processes are started with `std::process` and the returned `Child` is
//! dropped at once: the supervisor reaps every child itself with `waitpid(-1)`
//! (it is a subreaper and must reap orphans too), so no other part of the
//! daemon may wait on a child.

use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::procs::{SUPERVISOR_VAR, TAG_VAR};
use crate::config::AppSpec;

/// Why a run could not be started; its text is the run's `last_exit.error`.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cwd {} does not exist", .0.display())]
    NoCwd(PathBuf),
    #[error("{}: not found on PATH", .0.display())]
    NotOnPath(PathBuf),
    #[error("{}: no such file", .0.display())]
    NoSuchFile(PathBuf),
    #[error("{}: permission denied (is it executable?)", .0.display())]
    NotExecutable(PathBuf),
    #[error("{}: NUL byte in argument or environment", .0.display())]
    NulByte(PathBuf),
    #[error("{}: {source}", program.display())]
    Other { program: PathBuf, source: std::io::Error },
}

/// Everything needed to start one run of one instance.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub spec: &'a AppSpec,
    pub index: u32,
    pub home: &'a Path,
    /// `<daemon run>/app/index/serial`, unique per run.
    pub tag: &'a str,
    /// The instance's listening socket, passed as fd 3.
    pub listen_fd: Option<RawFd>,
    /// `NOTIFY_SOCKET` for `ready = "notify"`.
    pub notify_socket: Option<&'a Path>,
    /// The child's end of a Node IPC channel (`NODE_CHANNEL_FD`), for `ready = "notify"`
    /// apps whose `script` is `node`:
    /// a Node app's `process.send('ready')` counts as READY=1, as PM2's `wait_ready`.
    pub node_ipc: Option<RawFd>,
}

pub fn spawn(req: &SpawnRequest<'_>) -> Result<Child, SpawnError> {
    let spec = req.spec;
    let (program, args) = program_and_args(spec);
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .env("L4_APP", &spec.name)
        .env("L4_INSTANCE", req.index.to_string())
        .env("L4_INSTANCES", spec.instances.to_string())
        .env(SUPERVISOR_VAR, req.home)
        .env(TAG_VAR, req.tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(port) = spec.port_of(req.index) {
        cmd.env("PORT", port.to_string());
    }
    // Every line gets l4ctl's timestamp: a worker that reads this leaves out its own.
    if spec.logs.time {
        cmd.env("L4_LOG_TIME", "1");
    } else {
        cmd.env_remove("L4_LOG_TIME"); // not from the daemon's own environment either
    }
    // systemd's variables for the daemon itself are never an app's.
    cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
    if let Some(path) = req.notify_socket {
        cmd.env("NOTIFY_SOCKET", path);
    }
    let node_ipc = req.node_ipc;
    match node_ipc {
        Some(fd) => cmd.env("NODE_CHANNEL_FD", fd.to_string()).env("NODE_CHANNEL_SERIALIZATION_MODE", "json"),
        None => cmd.env_remove("NODE_CHANNEL_FD").env_remove("NODE_CHANNEL_SERIALIZATION_MODE"),
    };
    let inherit = match req.listen_fd {
        Some(fd) => {
            cmd.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", &spec.name);
            Some(Inherit::prepare(&cmd, &program, fd)?)
        }
        None => None,
    };
    let daemon = nix::unistd::getpid();
    let nofile = crate::os::fds::worker_nofile();
    // SAFETY: only async-signal-safe calls (setrlimit, setsid, prctl, getppid, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The limit the daemon was started with, not the one it raised for itself.
            if let Some((soft, hard)) = nofile {
                let limit = nix::libc::rlimit { rlim_cur: soft, rlim_max: hard };
                nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit);
            }
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The daemon may have died before the parent-death signal was armed.
            if nix::unistd::getppid() != daemon {
                return Err(std::io::Error::other("the daemon exited during spawn"));
            }
            // The IPC end was made close-on-exec so no other child inherits it.
            if let Some(fd) = node_ipc
                && nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            match &inherit {
                Some(inherit) => Err(inherit.exec()),
                None => Ok(()),
            }
        });
    }
    cmd.spawn().map_err(|e| spawn_error(&program, &spec.cwd, e))
}

/// What to exec: the interpreter with its arguments, the script and the app's
/// arguments; or the script itself, found in the app's folder first (as PM2 does,
/// no `./` needed), else on `PATH`.
fn program_and_args(spec: &AppSpec) -> (PathBuf, Vec<String>) {
    let in_folder = |name: &str| {
        if name.contains('/') { Some(spec.cwd.join(name)) } else { Some(spec.cwd.join(name)).filter(|p| p.is_file()) }
    };
    // An executable script chose its interpreter itself (`#!`); the extension's is a default.
    let executable = || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(spec.cwd.join(&spec.script)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match spec.interpreter.as_ref().filter(|_| !(spec.interpreter_by_extension && executable())) {
        Some(interpreter) => {
            let program =
                if interpreter.contains('/') { spec.cwd.join(interpreter) } else { PathBuf::from(interpreter) };
            let mut args = spec.interpreter_args.clone();
            args.push(spec.script.clone());
            args.extend(spec.args.iter().cloned());
            (program, args)
        }
        None => (in_folder(&spec.script).unwrap_or_else(|| PathBuf::from(&spec.script)), spec.args.clone()),
    }
}

fn spawn_error(program: &Path, cwd: &Path, e: std::io::Error) -> SpawnError {
    let program = program.to_path_buf();
    match e.kind() {
        std::io::ErrorKind::NotFound if !cwd.is_dir() => SpawnError::NoCwd(cwd.to_path_buf()),
        std::io::ErrorKind::NotFound if program.components().count() == 1 => SpawnError::NotOnPath(program),
        std::io::ErrorKind::NotFound => SpawnError::NoSuchFile(program),
        std::io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(program),
        _ => SpawnError::Other { program, source: e },
    }
}

/// An exec prepared before the fork for a child that inherits a socket.
struct Inherit {
    fd: RawFd,
    program: CString,
    /// Owns the strings `argv` and `envp` point into.
    _strings: Vec<Vec<u8>>,
    argv: Vec<*const nix::libc::c_char>,
    envp: Vec<*const nix::libc::c_char>,
    /// Where the child writes its pid: `LISTEN_PID=` followed by room for the digits.
    pid_slot: *mut u8,
}

// SAFETY: the pointers point into `_strings`, owned by the same value and never
// moved or changed in the parent; only the forked child writes `pid_slot`.
unsafe impl Send for Inherit {}
unsafe impl Sync for Inherit {}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

impl Inherit {
    /// The program, arguments and full environment `cmd` would exec, with `LISTEN_PID` to fill in.
    fn prepare(cmd: &Command, program: &Path, fd: RawFd) -> Result<Inherit, SpawnError> {
        let mut env: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => env.insert(key.to_owned(), v.to_owned()),
                None => env.remove(key),
            };
        }
        let resolved =
            resolve(program, cmd.get_current_dir().unwrap_or(Path::new(".")), env.get(&OsString::from("PATH")))?;
        let cstring = |bytes: &[u8]| CString::new(bytes).map_err(|_| SpawnError::NulByte(program.to_path_buf()));
        let program_c = cstring(resolved.as_os_str().as_bytes())?;
        let mut strings: Vec<Vec<u8>> = Vec::new();
        strings.push(cstring(program.as_os_str().as_bytes())?.into_bytes_with_nul());
        for arg in cmd.get_args() {
            strings.push(cstring(arg.as_bytes())?.into_bytes_with_nul());
        }
        let argc = strings.len();
        for (key, value) in env.iter().filter(|(k, _)| k.as_bytes() != b"LISTEN_PID") {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            strings.push(cstring(&entry)?.into_bytes_with_nul());
        }
        // Twenty digits and the NUL, all NUL until the child writes its pid.
        let mut slot = LISTEN_PID.to_vec();
        slot.resize(LISTEN_PID.len() + 21, 0);
        strings.push(slot);
        let pid_slot = strings.last_mut().map_or(std::ptr::null_mut(), |s| s.as_mut_ptr());
        let ptrs = |range: &[Vec<u8>]| {
            range.iter().map(|s| s.as_ptr().cast()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        let argv = ptrs(&strings[..argc]);
        let envp = ptrs(&strings[argc..]);
        Ok(Inherit { fd, program: program_c, _strings: strings, argv, envp, pid_slot })
    }

    /// In the forked child: put the socket on fd 3, write `LISTEN_PID`, exec.
    /// Returns only on failure. Async-signal-safe: no allocation, no locks.
    fn exec(&self) -> std::io::Error {
        use nix::libc;
        // SAFETY: plain syscalls on fds we own; `pid_slot` has room for 20 digits and a NUL.
        unsafe {
            let moved = if self.fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(self.fd, 3) };
            if moved < 0 {
                return std::io::Error::last_os_error();
            }
            let mut pid = libc::getpid() as u64;
            let mut digits = [0u8; 20];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let at = self.pid_slot.add(LISTEN_PID.len());
            for i in 0..n {
                *at.add(i) = digits[n - 1 - i];
            }
            libc::execve(self.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
        }
        std::io::Error::last_os_error()
    }
}

/// The file `execvp` would run for `program`: as given when it has a `/`, else
/// the first executable match on `path`.
fn resolve(program: &Path, cwd: &Path, path: Option<&OsString>) -> Result<PathBuf, SpawnError> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(if program.is_absolute() { program.to_path_buf() } else { cwd.join(program) });
    }
    let dirs = path.map_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"), Clone::clone);
    for dir in std::env::split_paths(&dirs) {
        let candidate = if dir.is_absolute() { dir.join(program) } else { cwd.join(dir).join(program) };
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() && candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(SpawnError::NotOnPath(program.to_path_buf()))
}
