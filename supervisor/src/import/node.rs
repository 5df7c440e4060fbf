//! Evaluating a JavaScript ecosystem file the way PM2 does: with the machine's
//! `node`, in a child process of its own, in the file's folder, with the
//! caller's environment (ecosystem files often read `process.env`).
//!
//! The child imports the file (`import()`, so `.js`, `.cjs` and `.mjs`, CommonJS or
//! ES modules, all work), awaits it, and writes `JSON.stringify` of the export to
//! a file in a private temporary folder; a failure writes `{"error", "at"}`
//! there instead. The file's own `console.log` goes to our stderr, never into
//! the config. The child runs in its own process group: past the timeout the
//! whole group is killed, so a file that hangs (or starts a server) is one
//! sentence, not a stuck `l4ctl`; and node dies with `l4ctl` (Ctrl-C).

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ImportError;

/// The largest config `node` may hand back.
pub const MAX_EXPORT: u64 = 4 << 20;

const SCRIPT: &str = r#"
const fs = require('fs');
const { pathToFileURL } = require('url');
const [file, out] = process.argv.slice(1);
const fail = (e) => {
  const stack = String((e && e.stack) || e);
  const at = stack.split('\n').find((l) => l.includes(file)) || '';
  const message = (e && e.message !== undefined) ? String(e.message) : String(e);
  fs.writeFileSync(out, JSON.stringify({ error: message.split('\n')[0], at: at.trim() }));
  process.exit(3);
};
import(pathToFileURL(file).href)
  .then((m) => (m && m.default !== undefined ? m.default : m))
  .then((conf) => { fs.writeFileSync(out, JSON.stringify({ config: conf === undefined ? null : conf })); process.exit(0); }, fail)
  .catch(fail);
"#;

/// Evaluate `file` (absolute) with `node` and return its export as JSON.
pub fn evaluate(file: &Path, timeout: Duration) -> Result<serde_json::Value, ImportError> {
    let name = file.display().to_string();
    let dir = tempfile::Builder::new()
        .prefix("l4ctl-import-")
        .tempdir()
        .map_err(|e| ImportError::Io { what: "a temporary folder".into(), source: e })?;
    let out = dir.path().join("export.json");
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from).unwrap_or_else(|_| Stdio::null());
    let folder = file.parent().unwrap_or(Path::new("/"));
    let mut command = Command::new("node");
    command
        .arg("-e")
        .arg(SCRIPT)
        .arg(file)
        .arg(&out)
        .current_dir(folder)
        .stdin(Stdio::null())
        .stdout(stderr)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe. If l4ctl dies (Ctrl-C reaches only its
    // own group), node goes with it rather than running on.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImportError::NoNode { file: name.clone() },
        _ => ImportError::Io { what: "node".into(), source: e },
    })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(ImportError::NodeTimeout { file: name, timeout });
            }
        }
    };
    // Whatever the file started in the background goes with it.
    kill_group(child.id());
    let answer = match read_bounded(&out) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(ImportError::TooLarge { file: name, limit: MAX_EXPORT });
        }
        Err(_) => return Err(ImportError::NodeFailed { file: name, status: status.to_string() }),
    };
    let answer: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|_| ImportError::NodeFailed { file: name.clone(), status: status.to_string() })?;
    if let Some(error) = answer.get("error") {
        let at = answer.get("at").and_then(|v| v.as_str()).unwrap_or_default();
        return Err(ImportError::Threw {
            file: name,
            message: error.as_str().unwrap_or_default().to_owned(),
            at: at.to_owned(),
        });
    }
    Ok(answer.get("config").cloned().unwrap_or_default())
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The export file, refused past [`MAX_EXPORT`] (`FileTooLarge`).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_EXPORT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_EXPORT {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
}
