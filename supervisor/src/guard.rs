//! The watchdog of a background daemon (`[daemon] watchdog`, on by default): the
//! process `l4ctl` starts in the background, which runs the real daemon as its
//! child and starts it again at once, with the saved apps (`--restore`), if it
//! dies. Without systemd, a daemon killed by the OOM killer or a stray `kill -9`
//! then no longer leaves every app down until someone runs `l4ctl start`.
//!
//! It ends with the daemon when the daemon ends on purpose (`l4ctl kill`,
//! SIGTERM: exit 0) or cannot start at all (a refused home or config: its exit
//! code is passed on, so `l4ctl` reports it as before). It gives up after
//! [`QUICK_DEATHS`] deaths in a row within [`QUICK`] of their start (a daemon that
//! cannot stay up is not helped by more tries), and waits [`PAUSE`] between tries
//! after the first quick one. It does nothing else: no socket, no files, about
//! 250 KiB of private memory (its code pages are the daemon's own binary,
//! shared), and no wake-ups while the daemon lives.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::wire::daemon_args::DaemonArgs;

/// A death within this long of the start counts as quick.
pub const QUICK: Duration = Duration::from_secs(10);
/// Quick deaths in a row before the watchdog gives up.
pub const QUICK_DEATHS: u32 = 5;
/// The wait before another try after a quick death.
pub const PAUSE: Duration = Duration::from_secs(1);
/// The daemon's exit code when it ran and gave up (panics in a row, a handover that
/// failed half-way): start it again with the saved apps, however soon it ended.
pub const RESTORE_ME: i32 = 70;

/// Run the daemon described by `args` (without `--guard`) until it ends on purpose.
pub fn run(args: &DaemonArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("l4ctl watchdog: cannot find its own program: {e}");
            return ExitCode::from(1);
        }
    };
    let mut daemon = args.clone();
    daemon.guard = false;
    let mut quick = 0u32;
    let mut first = true;
    loop {
        let started = Instant::now();
        let status = match Command::new(&exe).args(daemon.argv()).status() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("l4ctl watchdog: cannot start the daemon: {e}");
                return ExitCode::from(1);
            }
        };
        if status.success() {
            return ExitCode::SUCCESS;
        }
        let lived = started.elapsed();
        // The first run failing at once is a start that failed (home, config, another
        // daemon): say it as the daemon did, without retrying.
        if first && status.code().is_some_and(|c| c != RESTORE_ME) && lived < QUICK {
            return ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1));
        }
        first = false;
        quick = if lived < QUICK { quick + 1 } else { 0 };
        if quick >= QUICK_DEATHS {
            eprintln!(
                "l4ctl watchdog: the daemon died {quick} times within {QUICK:?} of starting; giving up (see l4ctl.log)"
            );
            return ExitCode::from(1);
        }
        eprintln!(
            "l4ctl watchdog: the daemon ended ({status}) after {lived:.1?}; starting it again with the saved apps"
        );
        if quick > 1 {
            std::thread::sleep(PAUSE);
        }
        daemon.restore = true;
    }
}
