//! The arguments of `l4ctl-daemon`: parsed by the daemon binary, built and passed by
//! `l4ctl` when it starts one (`l4ctl daemon` execs it with them).

use std::path::PathBuf;

/// The daemon's arguments (those of `l4ctl daemon`, plus `--config` and `--home`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "l4ctl-daemon",
    version,
    about = "The l4ctl daemon (started by l4ctl; `l4ctl daemon` runs it in the foreground)."
)]
pub struct DaemonArgs {
    /// Config file: its `[daemon]` settings, and (without --no-apps) its apps, loaded at start.
    #[arg(short, long, env = "L4_CONFIG")]
    pub config: Option<PathBuf>,
    /// Daemon home [default: the config's `[daemon] home`, else ~/.layer4].
    #[arg(long, env = "L4_HOME")]
    pub home: Option<PathBuf>,
    /// Log to <log_dir>/l4ctl.log (daily rotation) instead of stderr.
    #[arg(long)]
    pub log_file: bool,
    /// Log folder [default: the config's `[daemon] log_dir`].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// With `--config FILE`: load and start that file at once, with this env profile.
    #[arg(long = "env", value_name = "NAME")]
    pub env_name: Option<String>,
    /// Take only the `[daemon]` settings from `--config`; leave its apps to `l4ctl start`.
    #[arg(long)]
    pub no_apps: bool,
    /// Start the saved apps at once, as `l4ctl start` with no argument does (after a
    /// crash or a reboot; the unit `l4ctl startup` writes passes it).
    #[arg(long)]
    pub restore: bool,
    /// Run as the watchdog of a daemon started with the other arguments: start it again
    /// (with `--restore`) whenever it dies, end when it ends on purpose.
    #[arg(long)]
    pub guard: bool,
}

impl DaemonArgs {
    /// The same arguments as a command line, for starting `l4ctl-daemon`.
    pub fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(c) = &self.config {
            argv.extend(["--config".into(), c.into()]);
        }
        if let Some(h) = &self.home {
            argv.extend(["--home".into(), h.into()]);
        }
        if self.log_file {
            argv.push("--log-file".into());
        }
        if let Some(d) = &self.log_dir {
            argv.extend(["--log-dir".into(), d.into()]);
        }
        if let Some(e) = &self.env_name {
            argv.extend(["--env".into(), e.into()]);
        }
        if self.no_apps {
            argv.push("--no-apps".into());
        }
        if self.restore {
            argv.push("--restore".into());
        }
        if self.guard {
            argv.push("--guard".into());
        }
        argv
    }
}
