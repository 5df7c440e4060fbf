//! The config file: loading, validation and the resolved [`Config`] the daemon runs.
//!
//! `load` reads one TOML file and returns either a fully resolved config (paths
//! absolute, `env_file` read, `env_<NAME>` chosen) or every problem found, each
//! with `file:line:col`. It never starts, stops or changes anything; callers
//! apply a config only when it loaded without a single diagnostic.

mod app_rules;
mod diag;
pub mod dsn;
mod glob;
mod hosts;
mod listen;
mod nginx;
pub mod pm2;
pub mod scale;
mod schema;
mod suggest;
mod tracking;
pub mod triggers;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use diag::{Diagnostic, Diagnostics};
pub use hosts::{HostSpec, MAX_HOSTS, UrlParts, parse_url};
pub use listen::{Ready, SocketOwner};
pub use nginx::{NginxSpec, tls_port};
pub use schema::{LogType, RotateInterval};
pub use tracking::{ErrorTracking, ErrorTrackingSection};
pub use triggers::{Triggers, WatchSpec};
pub use units::{Autorestart, Instances, SignalName, Size, Span};

/// Errors from loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found")]
    NotFound { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A loaded, validated config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (absolute).
    pub file: PathBuf,
    pub daemon: DaemonSpec,
    pub apps: Vec<AppSpec>,
    /// `[nginx]`, when the file has one.
    pub nginx: Option<NginxSpec>,
    /// `[error_tracking]` (with the loading process's `SENTRY_DSN`), when the file
    /// has one: applying the file makes it the daemon's.
    pub error_tracking: Option<ErrorTracking>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    pub home: PathBuf,
    pub log_dir: PathBuf,
    /// TCP address of the status API; `None`: only the Unix socket.
    pub api_listen: Option<std::net::SocketAddr>,
    /// Name of the environment variable holding the API token.
    pub api_token_env: Option<String>,
    pub sample_interval: Duration,
    /// Open TCP API connections at most (`[daemon] api_max_connections`).
    pub api_max_connections: usize,
    /// A cgroup per run where cgroup v2 is writable (`[daemon] cgroups`).
    pub cgroups: bool,
    /// A background daemon runs under a watchdog that restarts it (`[daemon] watchdog`).
    pub watchdog: bool,
    /// The dashboard page at `/` (`[daemon] dashboard`).
    pub dashboard: bool,
    /// `[error_tracking]` (with the daemon's `SENTRY_DSN`).
    pub error_tracking: ErrorTracking,
}

impl DaemonSpec {
    /// Resolve `[daemon]` and `[error_tracking]` (absent: the `SENTRY_DSN` of this
    /// process alone) against the folder of the config file.
    fn resolve(section: &schema::DaemonSection, tracking: Option<&ErrorTrackingSection>, base: &Path) -> DaemonSpec {
        let home = section.home.as_ref().map_or_else(default_home, |h| normalize(&base.join(h)));
        let log_dir = section.log_dir.as_ref().map_or_else(|| home.join("logs"), |l| normalize(&base.join(l)));
        DaemonSpec {
            home,
            log_dir,
            api_listen: section.api_listen.0,
            api_token_env: section.api_token_env.clone().filter(|v| !v.is_empty()),
            sample_interval: section.sample_interval.0,
            api_max_connections: section.api_max_connections,
            cgroups: section.cgroups,
            watchdog: section.watchdog,
            dashboard: section.dashboard,
            error_tracking: ErrorTracking::resolve(
                tracking.unwrap_or(&ErrorTrackingSection::default()),
                std::env::var("SENTRY_DSN").ok(),
                base,
            ),
        }
    }

    /// The settings of a daemon without a config file.
    pub fn defaults(home: PathBuf) -> DaemonSpec {
        let mut spec = DaemonSpec::resolve(&schema::DaemonSection::default(), None, Path::new("/"));
        spec.log_dir = home.join("logs");
        spec.home = home;
        spec
    }
}

/// One app as the daemon runs it. Two specs compare equal exactly when a running
/// app does not need a restart to match the file. It reads back what it writes
/// (without `env`), for the daemon's handover to its next binary.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub script: String,
    pub args: Vec<String>,
    /// What runs `script`, resolved (`interpreter`, else by extension); `None`: the script runs itself.
    pub interpreter: Option<String>,
    /// `interpreter` came from the extension: an executable script (its own `#!`
    /// line, a virtualenv's python) still runs itself.
    pub interpreter_by_extension: bool,
    pub interpreter_args: Vec<String>,
    pub cwd: PathBuf,
    pub instances: u32,
    pub port: Option<u16>,
    /// The address l4ctl binds `port + i` on and passes to instance `i` as fd 3;
    /// `None`: the app binds `PORT` itself (or has no port).
    pub listen: Option<std::net::IpAddr>,
    pub ready: Ready,
    /// Instances a rolling reload replaces at a time.
    pub reload_parallel: u32,
    /// `env_file`, then `[apps.env]`, then `[apps.env_NAME]`. Never sent over the API.
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    #[serde(rename = "max_memory_restart_bytes")]
    pub max_memory_restart: Option<Size>,
    pub kill_signal: SignalName,
    pub restart: RestartPolicy,
    pub autostart: bool,
    pub memory_samples: u32,
    pub logs: LogSpec,
    /// `watch` and `cron_restart`.
    pub triggers: Triggers,
}

/// Where and how an app's output is written (README, "Logs").
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LogSpec {
    /// One set when `merge_logs` (instance `None`), else one per instance.
    pub files: Vec<LogFiles>,
    pub merge_logs: bool,
    pub time: bool,
    /// strftime format (UTC); `None`: RFC 3339 with milliseconds.
    pub date_format: Option<String>,
    pub log_type: LogType,
    pub max_line: usize,
    pub max_size: u64,
    pub interval: RotateInterval,
    pub retain: u32,
    pub compress: bool,
}

/// The trio of files for all instances or for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogFiles {
    pub instance: Option<u32>,
    pub out: PathBuf,
    pub err: PathBuf,
    pub combined: PathBuf,
}

impl LogSpec {
    /// The files that lines of `instance` go to.
    pub fn files_of(&self, instance: u32) -> Option<&LogFiles> {
        self.files.iter().find(|f| f.instance.is_none() || f.instance == Some(instance))
    }
}

impl AppSpec {
    /// The port of instance `index` (`port + index`), when the app has ports.
    pub fn port_of(&self, index: u32) -> Option<u16> {
        self.port.and_then(|p| u16::try_from(u32::from(p) + index).ok())
    }
}

/// Everything the lifecycle state machine needs to decide about restarts and stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RestartPolicy {
    pub autorestart: Autorestart,
    pub stop_exit_codes: Vec<i32>,
    #[serde(with = "duration_ms", rename = "min_uptime_ms")]
    pub min_uptime: Duration,
    pub max_restarts: u32,
    #[serde(with = "duration_ms", rename = "restart_delay_ms")]
    pub restart_delay: Duration,
    #[serde(with = "duration_ms", rename = "restart_delay_max_ms")]
    pub restart_delay_max: Duration,
    pub crash_loop_max_retries: Option<u32>,
    /// How long a stop waits after `kill_signal` before SIGKILL.
    #[serde(with = "duration_ms", rename = "kill_timeout_ms")]
    pub kill_timeout: Duration,
    /// A start waits for a sign of readiness (`ready` is not `"none"`).
    pub wait_ready: bool,
    /// A new run can start beside the old one (a replace): false for an app that
    /// binds its port itself (`socket = "app"` with a `port`), which is restarted instead.
    pub can_overlap: bool,
    /// How long a start may take to become ready.
    #[serde(with = "duration_ms", rename = "listen_timeout_ms")]
    pub listen_timeout: Duration,
}

pub(crate) mod duration_ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(std::time::Duration::from_millis)
    }
}

/// Where the daemon's files live when no config file says otherwise: `$HOME/.layer4`.
pub fn default_home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/lib/layer4"), |h| PathBuf::from(h).join(".layer4"))
}

/// Load and validate `path`. `env_name` picks the `[apps.env_NAME]` tables (`--env NAME`).
pub fn load(path: &Path, env_name: Option<&str>) -> Result<Config, ConfigError> {
    load_with(path, env_name, None)
}

/// [`load`] as the daemon whose log folder is `log_dir` reads it: apps of a file
/// without `[daemon] log_dir` log there, so a daemon started with `--home DIR`
/// keeps them under DIR rather than in the default home.
pub fn load_under(path: &Path, env_name: Option<&str>, log_dir: &Path) -> Result<Config, ConfigError> {
    load_with(path, env_name, Some(log_dir))
}

fn load_with(path: &Path, env_name: Option<&str>, log_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let file = absolute(path);
    let source = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConfigError::NotFound { path: file }),
        Err(e) => return Err(ConfigError::Read { path: file, source: e }),
    };
    parse_with(&file, &source, env_name, log_dir)
}

/// Validate `source` as if read from `file` (which is used for relative paths and messages).
pub fn parse(file: &Path, source: &str, env_name: Option<&str>) -> Result<Config, ConfigError> {
    parse_with(file, source, env_name, None)
}

fn parse_with(
    file: &Path,
    source: &str,
    env_name: Option<&str>,
    log_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let mut report = diag::Report::new(file, source);
    let raw = validate::read_sections(&mut report);
    let base = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config = raw.and_then(|raw| validate::resolve(&mut report, raw, &base, file, env_name, log_dir));
    match config {
        Some(c) if report.diagnostics.is_empty() => Ok(c),
        _ => Err(ConfigError::Invalid(Diagnostics(report.diagnostics))),
    }
}

/// Read only `[daemon]`, to find the daemon's home and settings before anything
/// else. `None` when the file does not exist or its `[daemon]` section is invalid
/// (a full `load` reports why).
pub fn peek_daemon(path: &Path) -> Option<DaemonSpec> {
    #[derive(serde::Deserialize)]
    struct Partial {
        #[serde(default)]
        daemon: schema::DaemonSection,
        // Read leniently: a mistake there must not hide `[daemon] home` (a full
        // `load` reports it).
        error_tracking: Option<toml::Value>,
    }
    let file = absolute(path);
    let text = std::fs::read_to_string(&file).ok()?;
    let partial: Partial = toml::from_str(&text).ok()?;
    let tracking = partial.error_tracking.and_then(|v| v.try_into::<ErrorTrackingSection>().ok());
    Some(DaemonSpec::resolve(&partial.daemon, tracking.as_ref(), file.parent().unwrap_or(Path::new("/"))))
}

/// `path` made absolute against the current folder, without touching the file system.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path)
    };
    normalize(&joined)
}

/// Remove `.` and `..` components lexically, so `config/../run` shows as `run`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
