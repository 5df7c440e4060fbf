//! Handing the running daemon over to its next program in place (`l4ctl update`):
//! same pid, same children, same open pipes and sockets; what the old program knew
//! goes in a sealed memory file named on the new one's command line.
//!
//! [`hand_over`] freezes the actor ([`crate::daemon::Handle::freeze`]), takes every
//! worker pipe back from the log readers once the writers wrote every whole line,
//! writes the [`Document`], keeps every descriptor it names open across `exec`, and
//! execs the daemon's program (the file it was started from, checked by
//! [`crate::os::exec::check_program`]). Should the kernel refuse, it execs the
//! program still running (`/proc/self/exe`) with the same document; should that fail
//! too, the process exits and the watchdog (or systemd) starts a daemon that
//! restores the saved apps: today's path after a crash, said in the log.
//!
//! [`take`] is the other end, in the new program: the document back, with its
//! descriptors owned again. A document it cannot read closes every inherited
//! descriptor and the daemon starts as after a crash (`--restore`), saying why.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::daemon::{Adopt, DaemonImage, Handle};
use crate::logs::{HeldPipe, Stream};
use crate::os::exec;
use crate::wire::types::LogCounters;

/// The document's layout. A field added later must read as absent in the layout
/// before (`#[serde(default)]`); any other change bumps it, and `l4ctl update`
/// refuses to hand over to a program of another layout (`--handover-schema`).
pub const SCHEMA: u32 = 1;

/// Panics handed over within [`PANIC_WINDOW`] before the daemon gives up on them
/// (exits, and the watchdog or systemd starts a daemon that restores the apps).
pub const PANIC_HANDOVERS: usize = 3;
pub const PANIC_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the daemon is handed over.
#[derive(Debug, Clone)]
pub enum How {
    /// `l4ctl update`: to the program installed at the daemon's path, once settled.
    Update { program: PathBuf },
    /// A message panicked in the actor: to the program running, as it is.
    Panic,
}

/// What the old program hands over.
#[derive(Debug, Serialize, Deserialize)]
pub struct Document {
    pub schema: u32,
    /// The version of the program that wrote it.
    pub from_version: String,
    /// `CLOCK_MONOTONIC` at the freeze, in nanoseconds: the reference instant of
    /// every offset in the document, and the start of the time the daemon was away.
    pub frozen_mono_ns: u64,
    /// `CLOCK_MONOTONIC` just before the `exec`.
    #[serde(default)]
    pub exec_mono_ns: u64,
    /// Handovers since the daemon was started (this one included).
    pub count: u32,
    /// `update` or `panic`.
    pub reason: String,
    /// `CLOCK_MONOTONIC` of each panic's handover in the last [`PANIC_WINDOW`].
    pub panics: Vec<u64>,
    pub daemon: DaemonImage,
    pub pipes: Vec<PipeImage>,
    pub log_counters: BTreeMap<String, LogCounters>,
    /// The pid-file lock, the control socket, the TCP API's socket.
    pub lock_fd: RawFd,
    pub unix_fd: RawFd,
    pub tcp_fd: Option<RawFd>,
    /// The descriptor limit workers are started with (the daemon raised its own).
    pub worker_nofile: Option<(u64, u64)>,
    /// The folders and the cgroup setting the lock, sockets and runs belong to.
    pub home: PathBuf,
    pub log_dir: PathBuf,
    pub cgroups: bool,
    /// SIGTERM or SIGINT reached the old program while it handed over.
    pub stop_asked: bool,
}

/// Set when the daemon is asked to stop: a handover under way passes it on.
pub static STOP_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Debug, Serialize, Deserialize)]
pub struct PipeImage {
    pub app: String,
    pub instance: u32,
    pub stderr: bool,
    pub run: String,
    pub fd: RawFd,
    pub partial: Vec<u8>,
    pub discarding: bool,
}

/// The composition root's own descriptors that a handover passes on.
#[derive(Debug)]
pub struct Kept {
    pub lock: OwnedFd,
    pub unix: OwnedFd,
    pub tcp: Option<OwnedFd>,
    /// Handovers so far.
    pub count: u32,
    /// `CLOCK_MONOTONIC` of the recent panics' handovers.
    pub panics: Vec<u64>,
    pub home: PathBuf,
    pub log_dir: PathBuf,
    pub cgroups: bool,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock `Instant` reads, kept by `exec`).
pub fn monotonic_ns() -> u64 {
    let mut ts = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to a valid local.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Hand the daemon over (its argv after the name: `args`). Returns only when it
/// could not even begin (busy, shutting down, an untrusted program): the daemon goes
/// on as before. Once the actor is frozen it does not return.
pub async fn hand_over(handle: &Handle, kept: &Kept, how: How, args: &[OsString]) -> crate::daemon::Error {
    let (program, force, reason) = match &how {
        How::Update { program } => {
            if let Err(why) = exec::check_program(program) {
                return crate::daemon::Error::Invalid(why);
            }
            match schema_of(program).await {
                Ok(SCHEMA) => {}
                Ok(other) => {
                    return crate::daemon::Error::Invalid(format!(
                        "{} reads handovers of layout {other}, this daemon writes {SCHEMA}: stop and start the daemon instead (l4ctl kill; l4ctl start)",
                        program.display()
                    ));
                }
                Err(why) => return crate::daemon::Error::Invalid(why),
            }
            (program.clone(), false, "update")
        }
        How::Panic => (PathBuf::from("/proc/self/exe"), true, "panic"),
    };
    let program = program.as_path();
    let (reference, frozen_mono_ns) = (Instant::now(), monotonic_ns());
    let crate::daemon::Frozen { image: mut daemon, mut logs, tails } = match handle.freeze(reference, force).await {
        Ok(frozen) => frozen,
        Err(e) => return e,
    };
    tracing::info!(program = %program.display(), reason, "handing the daemon over to its next program");
    let (held, log_counters) = logs.hand_over(std::time::Duration::from_secs(5)).await;
    // Now that no reader feeds them: each run's stderr tail, whole.
    daemon.fill_tails(tails);
    exec_with(Frozen { daemon, held, log_counters, frozen_mono_ns }, kept, &how, program, reason, args)
}

/// What is left of a frozen daemon once its pipes are back.
struct Frozen {
    daemon: DaemonImage,
    held: Vec<HeldPipe>,
    log_counters: BTreeMap<String, LogCounters>,
    /// `CLOCK_MONOTONIC` at the freeze.
    frozen_mono_ns: u64,
}

/// Write the document and exec (in one go: nothing awaits between the descriptors
/// made inheritable and the exec). Cold, as all of a handover's code: kept out of
/// the pages the daemon runs every day.
#[cold]
#[inline(never)]
fn exec_with(
    frozen: Frozen,
    kept: &Kept,
    how: &How,
    program: &Path,
    reason: &str,
    args: &[OsString],
) -> crate::daemon::Error {
    let Frozen { daemon, held, log_counters, frozen_mono_ns } = frozen;
    let mut keep: Vec<RawFd> = vec![kept.lock.as_raw_fd(), kept.unix.as_raw_fd()];
    keep.extend(kept.tcp.as_ref().map(AsRawFd::as_raw_fd));
    keep.extend(daemon.sockets.iter().map(|s| s.3));
    keep.extend(daemon.notify_fd);
    keep.extend(daemon.node_ipc.iter().map(|n| n.1));
    let pipes: Vec<PipeImage> = held
        .iter()
        .map(|p| PipeImage {
            app: p.app.clone(),
            instance: p.instance,
            stderr: p.stream == Stream::Err,
            run: p.run.clone(),
            fd: p.fd.as_raw_fd(),
            partial: p.partial.clone(),
            discarding: p.discarding,
        })
        .collect();
    keep.extend(pipes.iter().map(|p| p.fd));
    let doc = Document {
        schema: SCHEMA,
        from_version: env!("CARGO_PKG_VERSION").to_owned(),
        frozen_mono_ns,
        exec_mono_ns: 0,
        count: kept.count + 1,
        reason: reason.to_owned(),
        panics: recent_panics(&kept.panics, frozen_mono_ns, matches!(how, &How::Panic)),
        daemon,
        pipes,
        log_counters,
        lock_fd: kept.lock.as_raw_fd(),
        unix_fd: kept.unix.as_raw_fd(),
        tcp_fd: kept.tcp.as_ref().map(AsRawFd::as_raw_fd),
        worker_nofile: crate::os::fds::worker_nofile(),
        home: kept.home.clone(),
        log_dir: kept.log_dir.clone(),
        cgroups: kept.cgroups,
        stop_asked: false,
    };
    let failed = |why: String| -> ! {
        tracing::error!(cause = %why, "the handover failed after the daemon stopped; exiting so that the watchdog starts a daemon that restores the saved apps");
        std::process::exit(crate::guard::RESTORE_ME)
    };
    // From here to the new program's handlers, these signals wait (the mask and what
    // is pending outlive exec); a stop asked before this point goes in the document.
    exec::block_signals();
    let doc = Document {
        stop_asked: STOP_ASKED.load(std::sync::atomic::Ordering::SeqCst),
        exec_mono_ns: monotonic_ns(),
        ..doc
    };
    let json = serde_json::to_vec(&doc).unwrap_or_else(|e| failed(format!("cannot write the handover: {e}")));
    let memfd = exec::sealed_memfd("l4ctl-handover", &json)
        .unwrap_or_else(|e| failed(format!("cannot make the handover file: {e}")));
    keep.push(memfd.as_raw_fd());
    for fd in keep {
        // SAFETY: every number is of a descriptor this process holds open until exec.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Err(e) = exec::keep_across_exec(fd) {
            failed(format!("cannot keep descriptor {} across exec: {e}", fd.as_raw_fd()));
        }
    }
    let mut argv: Vec<OsString> = strip_handover(args);
    argv.extend(["--handover".into(), memfd.as_raw_fd().to_string().into()]);
    let refused = exec::exec(program, &argv);
    tracing::error!(program = %program.display(), cause = %refused, "cannot exec the new program; going on with the one running");
    let again = exec::exec(Path::new("/proc/self/exe"), &argv);
    drop(held);
    failed(format!("cannot exec {}: {refused}; nor the running program: {again}", program.display()))
}

/// How long the new program may take to say which handover layout it reads.
const SCHEMA_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ask `program --handover-schema` which layout it reads (a program from before
/// `l4ctl update` does not know the flag and is refused).
async fn schema_of(program: &Path) -> Result<u32, String> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(program)
        .arg("--handover-schema")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if let Some(pid) = child.id() {
        crate::os::helpers::spawned(pid, false);
    }
    let mut said = Vec::new();
    let mut out = child.stdout.take().ok_or("no output")?.take(64);
    let read = tokio::time::timeout(SCHEMA_WAIT, out.read_to_end(&mut said)).await;
    if read.is_err() {
        // Still running (so not reaped: its pid is still its own).
        let _ = child.start_kill();
    }
    // Reaped by the daemon's reaper or here, whichever comes first.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), child.wait()).await;
    let text = String::from_utf8_lossy(&said);
    match (read, text.trim().parse()) {
        (Ok(Ok(_)), Ok(n)) => Ok(n),
        _ => Err(format!(
            "{} cannot take a handover (it does not answer --handover-schema): stop and start the daemon instead (l4ctl kill; l4ctl start)",
            program.display()
        )),
    }
}

/// The panics' handovers still inside [`PANIC_WINDOW`] at `now`, and this one.
pub fn recent_panics(earlier: &[u64], now: u64, this: bool) -> Vec<u64> {
    let window = PANIC_WINDOW.as_nanos() as u64;
    let mut recent: Vec<u64> = earlier.iter().copied().filter(|t| now.saturating_sub(*t) < window).collect();
    if this {
        recent.push(now);
    }
    recent
}

/// `args` without a `--handover N` of the previous handover.
fn strip_handover(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--handover" {
            it.next();
        } else if !a.to_string_lossy().starts_with("--handover=") {
            out.push(a.clone());
        }
    }
    out
}

/// The document a previous program left in descriptor `fd`, with every descriptor
/// it names owned again, for [`crate::daemon::start`]; and the parts the
/// composition root keeps. A document that cannot be read is refused with the
/// sentence (the caller closes every inherited descriptor and restores).
#[cold]
#[inline(never)]
pub fn take(fd: RawFd) -> Result<Taken, String> {
    let memfd = exec::adopt_fd(fd).map_err(|e| format!("descriptor {fd}: {e}"))?;
    let bytes = exec::read_sealed(memfd).map_err(|e| e.to_string())?;
    let doc: Document = serde_json::from_slice(&bytes).map_err(|e| format!("unreadable handover: {e}"))?;
    if doc.schema != SCHEMA {
        return Err(format!("handover schema {} (this program reads {SCHEMA})", doc.schema));
    }
    // Everything adoption converts, checked now: a failure here restores instead.
    let away = std::time::Duration::from_nanos(monotonic_ns().saturating_sub(doc.frozen_mono_ns));
    let reference = Instant::now().checked_sub(away).unwrap_or_else(Instant::now);
    doc.daemon.check(reference)?;
    let own = |fd: RawFd| exec::adopt_fd(fd).map_err(|e| format!("descriptor {fd}: {e}"));
    let lock = own(doc.lock_fd)?;
    let unix = own(doc.unix_fd)?;
    let tcp = doc.tcp_fd.map(own).transpose()?;
    let sockets = doc.daemon.sockets.iter().map(|s| own(s.3)).collect::<Result<Vec<_>, _>>()?;
    let notify = doc.daemon.notify_fd.map(own).transpose()?;
    let node_ipc =
        doc.daemon.node_ipc.iter().map(|(pid, fd)| Ok((*pid, own(*fd)?))).collect::<Result<Vec<_>, String>>()?;
    let mut pipes = Vec::new();
    for p in doc.pipes {
        pipes.push(HeldPipe {
            app: p.app,
            instance: p.instance,
            stream: if p.stderr { Stream::Err } else { Stream::Out },
            run: p.run,
            fd: own(p.fd)?,
            partial: p.partial,
            discarding: p.discarding,
        });
    }
    Ok(Taken {
        adopt: Adopt { image: doc.daemon, reference, pipes, counters: doc.log_counters, sockets, notify, node_ipc },
        lock,
        unix,
        tcp,
        count: doc.count,
        reason: doc.reason,
        panics: doc.panics,
        from_version: doc.from_version,
        frozen_mono_ns: doc.frozen_mono_ns,
        exec_mono_ns: doc.exec_mono_ns,
        worker_nofile: doc.worker_nofile,
        home: doc.home,
        log_dir: doc.log_dir,
        cgroups: doc.cgroups,
        stop_asked: doc.stop_asked,
    })
}

/// A handover read back.
#[derive(Debug)]
pub struct Taken {
    pub adopt: Adopt,
    pub lock: OwnedFd,
    pub unix: OwnedFd,
    pub tcp: Option<OwnedFd>,
    pub count: u32,
    pub reason: String,
    pub panics: Vec<u64>,
    pub from_version: String,
    pub frozen_mono_ns: u64,
    pub exec_mono_ns: u64,
    pub worker_nofile: Option<(u64, u64)>,
    pub home: PathBuf,
    pub log_dir: PathBuf,
    pub cgroups: bool,
    pub stop_asked: bool,
}

/// Close every descriptor above stderr: what a handover that could not be read
/// left open (the pid-file lock among them) must not outlive it.
pub fn close_inherited() {
    // SAFETY: plain syscall; nothing in this process owns a descriptor above 2 yet.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// The daemon's own program, as started: what a handover execs (a new file
/// installed at that path is the new program).
pub fn own_program() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let text = exe.to_string_lossy();
    Some(PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text)))
}

/// The descriptor number of a kept file, for [`Kept`].
pub fn dup(fd: &impl AsFd) -> std::io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}
