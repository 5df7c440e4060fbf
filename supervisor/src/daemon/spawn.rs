//! Starting one process for one instance: program lookup, environment (daemon's,
//! then `env_file`, `[apps.env]`, `[apps.env_NAME]`, then `PORT`, `L4_APP`,
//! `L4_INSTANCE`, `L4_INSTANCES`), its own session and process group, a parent-
//! death signal so it never outlives a SIGKILLed daemon, and its stdout/stderr
//! on pipes that the log pipeline reads.
//!
//! Processes are started with `std::process` and the returned `Child` is
//! dropped at once: the supervisor reaps every child itself with `waitpid(-1)`
//! (it is a subreaper and must reap orphans too), so no other part of the
//! daemon may wait on a child.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::procs::{SUPERVISOR_VAR, TAG_VAR};
use crate::config::AppSpec;

/// Everything needed to start one run of one instance.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub spec: &'a AppSpec,
    pub index: u32,
    pub home: &'a Path,
    /// `<daemon run>/app/index/serial`, unique per run.
    pub tag: &'a str,
}

pub fn spawn(req: &SpawnRequest<'_>) -> Result<Child, String> {
    let spec = req.spec;
    let program = if spec.script.contains('/') { spec.cwd.join(&spec.script) } else { PathBuf::from(&spec.script) };
    let mut cmd = Command::new(&program);
    cmd.args(&spec.args)
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
    let daemon = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (setsid, prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The daemon may have died before the parent-death signal was armed.
            if nix::unistd::getppid() != daemon {
                return Err(std::io::Error::other("the daemon exited during spawn"));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| describe_spawn_error(&program, &spec.cwd, &e))
}

fn describe_spawn_error(program: &Path, cwd: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound if !cwd.is_dir() => format!("cwd {} does not exist", cwd.display()),
        std::io::ErrorKind::NotFound if program.components().count() == 1 => {
            format!("{}: not found on PATH", program.display())
        }
        std::io::ErrorKind::NotFound => format!("{}: no such file", program.display()),
        std::io::ErrorKind::PermissionDenied => format!("{}: permission denied (is it executable?)", program.display()),
        _ => format!("{}: {e}", program.display()),
    }
}
