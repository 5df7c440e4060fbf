//! Where a daemon lives and the names it gives its files there, and the environment
//! variables that mark its processes: what the daemon creates and the CLI looks for.
//! Resolving the home (`--home`, else the config's `[daemon] home`, else `~/.layer4`) is
//! here too, since the daemon binary and `l4ctl` must agree on it.

use std::path::{Path, PathBuf};

use crate::config;

/// The config file used when none is given and it exists (relative to the working folder).
pub const DEFAULT_CONFIG: &str = "config/layer4.toml";

/// Environment variable naming the home of the daemon that started a process.
pub const SUPERVISOR_VAR: &str = "L4_SUPERVISOR";
/// Environment variable identifying one run of one instance: `<daemon run>/app/index/serial`,
/// unique across daemons so one daemon never touches another's processes.
pub const TAG_VAR: &str = "L4_TAG";

/// The names of a daemon's files in its home.
#[derive(Debug, Clone, Copy)]
pub struct Paths;

impl Paths {
    /// The control socket (0600).
    pub fn socket(home: &Path) -> PathBuf {
        home.join("l4ctl.sock")
    }

    /// The pid file, locked for the daemon's life: one daemon per home.
    pub fn pid_file(home: &Path) -> PathBuf {
        home.join("l4ctl.pid")
    }

    /// The saved state the daemon restores its apps from.
    pub fn saved_state(home: &Path) -> PathBuf {
        home.join("state.json")
    }
}

/// Where the daemon lives, and which config file (if any) applies.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub home: PathBuf,
    pub log_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// The daemon's settings (`[daemon]` of the config, with `--home` applied).
    pub daemon: config::DaemonSpec,
}

/// Resolve home and config from a config file (else [`DEFAULT_CONFIG`] when it exists)
/// and a home: `home`, else the config's `[daemon] home`, else `~/.layer4`.
pub fn resolve_paths(config: Option<&Path>, home: Option<&Path>) -> Resolved {
    let config = config
        .map(Path::to_path_buf)
        .or_else(|| Path::new(DEFAULT_CONFIG).is_file().then(|| PathBuf::from(DEFAULT_CONFIG)))
        .map(|p| config::absolute(&p));
    let from_file = config.as_deref().and_then(config::peek_daemon);
    let explicit_home = home.map(config::absolute);
    let home = explicit_home
        .clone()
        .or_else(|| from_file.as_ref().map(|d| d.home.clone()))
        .unwrap_or_else(config::default_home);
    let mut daemon = from_file.unwrap_or_else(|| config::DaemonSpec::defaults(home.clone()));
    if explicit_home.is_some() {
        daemon.log_dir = home.join("logs");
    }
    daemon.home = home.clone();
    Resolved { home, log_dir: daemon.log_dir.clone(), config, daemon }
}
