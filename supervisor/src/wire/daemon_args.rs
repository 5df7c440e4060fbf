//! The arguments of `l4ctl-daemon`: parsed by the daemon binary, built and passed by
//! `l4ctl` when it starts one (`l4ctl daemon` execs it with them). Parsed by hand
//! rather than with clap: the daemon is started by `l4ctl` with a fixed set of
//! flags, and clap's code would stay resident in it for nothing (about 150 KB).

use std::ffi::OsString;
use std::path::PathBuf;

/// `l4ctl-daemon --help`.
pub const USAGE: &str = "l4ctl-daemon: the l4ctl daemon (started by l4ctl; `l4ctl daemon` runs it in the foreground)

Usage: l4ctl-daemon [OPTIONS]

Options:
  -c, --config <FILE>  its [daemon] settings, and (without --no-apps) its apps, loaded at start [env: L4_CONFIG]
      --home <DIR>     daemon home [default: the config's [daemon] home, else ~/.layer4] [env: L4_HOME]
      --log-file       log to <log_dir>/l4ctl.log (daily rotation) instead of stderr
      --log-dir <DIR>  log folder [default: the config's [daemon] log_dir]
      --env <NAME>     with --config: load and start that file at once, with this env profile
      --no-apps        take only the [daemon] settings from --config
      --restore        start the saved apps at once (after a crash or a reboot)
      --guard          run as the watchdog of a daemon started with the other arguments
      --handover <FD>  (l4ctl update) take over from the daemon that exec'd this program
      --handover-schema  print the handover layout this program reads, and exit
  -h, --help           print this
  -V, --version        print the version
";

/// The daemon's arguments (those of `l4ctl daemon`, plus `--config` and `--home`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonArgs {
    /// Config file: its `[daemon]` settings, and (without --no-apps) its apps, loaded at start.
    pub config: Option<PathBuf>,
    /// Daemon home [default: the config's `[daemon] home`, else ~/.layer4].
    pub home: Option<PathBuf>,
    /// Log to <log_dir>/l4ctl.log (daily rotation) instead of stderr.
    pub log_file: bool,
    /// Log folder [default: the config's `[daemon] log_dir`].
    pub log_dir: Option<PathBuf>,
    /// With `--config FILE`: load and start that file at once, with this env profile.
    pub env_name: Option<String>,
    /// Take only the `[daemon]` settings from `--config`; leave its apps to `l4ctl start`.
    pub no_apps: bool,
    /// Start the saved apps at once, as `l4ctl start` with no argument does (after a
    /// crash or a reboot; the unit `l4ctl startup` writes passes it).
    pub restore: bool,
    /// Run as the watchdog of a daemon started with the other arguments: start it again
    /// (with `--restore`) whenever it dies, end when it ends on purpose.
    pub guard: bool,
    /// The sealed memory file a daemon left when it exec'd this program in its place
    /// (`l4ctl update`): take its apps and descriptors over.
    pub handover: Option<i32>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(DaemonArgs),
    Help,
    Version,
    /// `--handover-schema`: what `l4ctl update` asks a new program before handing over.
    HandoverSchema,
}

impl DaemonArgs {
    /// Parse the arguments after the program name; `L4_CONFIG` and `L4_HOME` (from
    /// `env`) stand in for `--config` and `--home`. The error is the sentence to print.
    pub fn parse_from(
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Parsed, String> {
        let mut a = DaemonArgs::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let text = arg.to_string_lossy().into_owned();
            let (flag, inline) = match text.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(OsString::from(v))),
                _ => (text.clone(), None),
            };
            let mut value = |name: &str| {
                inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "-c" | "--config" => a.config = Some(value("--config")?.into()),
                "--home" => a.home = Some(value("--home")?.into()),
                "--log-dir" => a.log_dir = Some(value("--log-dir")?.into()),
                "--env" => a.env_name = Some(value("--env")?.to_string_lossy().into_owned()),
                "--log-file" => a.log_file = true,
                "--no-apps" => a.no_apps = true,
                "--restore" => a.restore = true,
                "--guard" => a.guard = true,
                "--handover" => {
                    let v = value("--handover")?;
                    let fd = v
                        .to_string_lossy()
                        .parse()
                        .map_err(|_| format!("--handover needs a descriptor number, got {v:?}"))?;
                    a.handover = Some(fd);
                }
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--handover-schema" => return Ok(Parsed::HandoverSchema),
                other => return Err(format!("unexpected argument `{other}`\n\n{USAGE}")),
            }
        }
        a.config = a.config.or_else(|| env("L4_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
        a.home = a.home.or_else(|| env("L4_HOME").filter(|v| !v.is_empty()).map(PathBuf::from));
        Ok(Parsed::Run(a))
    }

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
        if let Some(fd) = self.handover {
            argv.extend(["--handover".into(), fd.to_string().into()]);
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::{DaemonArgs, Parsed};

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        DaemonArgs::parse_from(args.iter().map(Into::into), |_| None)
    }

    #[test]
    fn what_argv_writes_parses_back_to_the_same_arguments() {
        let a = DaemonArgs {
            config: Some("/etc/l4 dir/layer4.toml".into()),
            home: Some("/srv/home".into()),
            log_file: true,
            log_dir: Some("/var/log/l4".into()),
            env_name: Some("production".into()),
            no_apps: true,
            restore: true,
            guard: true,
            handover: Some(7),
        };
        assert_eq!(DaemonArgs::parse_from(a.argv(), |_| None), Ok(Parsed::Run(a)));
        assert_eq!(parse(&[]), Ok(Parsed::Run(DaemonArgs::default())));
        assert_eq!(
            parse(&["--config=x.toml", "-c", "y.toml"]),
            Ok(Parsed::Run(DaemonArgs { config: Some("y.toml".into()), ..Default::default() }))
        );
    }

    #[test]
    fn the_environment_stands_in_for_config_and_home_and_flags_win() {
        let env = |k: &str| Some(format!("/from/{k}").into());
        let Ok(Parsed::Run(a)) = DaemonArgs::parse_from(["--home".into(), "/flag".into()], env) else { panic!() };
        assert_eq!((a.config.unwrap(), a.home.unwrap()), ("/from/L4_CONFIG".into(), "/flag".into()));
    }

    #[test]
    fn help_version_and_mistakes() {
        assert_eq!(parse(&["--help"]), Ok(Parsed::Help));
        assert_eq!(parse(&["-V"]), Ok(Parsed::Version));
        assert!(parse(&["--nope"]).unwrap_err().starts_with("unexpected argument `--nope`"));
        assert!(parse(&["--home"]).unwrap_err().starts_with("--home needs a value"));
    }
}
