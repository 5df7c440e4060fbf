//! The config file's schema as serde sees it: every section and option with its
//! one default. Nothing here touches the file system; `config::load` resolves
//! paths and `config::validate` checks what serde cannot (duplicates, port
//! ranges, cross-field rules).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::listen::{Ready, SocketOwner};
use super::units::{Autorestart, DateFormat, EnvValue, Instances, SignalName, Size, Span};

/// `[daemon]`: where the daemon keeps its socket, pid file and state, and where logs go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Socket, pid file and saved state. Relative to the config file. Default `~/.layer4`.
    pub home: Option<PathBuf>,
    /// Log folder. Relative to the config file. Default `<home>/logs`.
    pub log_dir: Option<PathBuf>,
    /// TCP address of the status API, or `"off"`. Default `127.0.0.1:9615`.
    #[serde(default = "default_api_listen")]
    pub api_listen: ApiListen,
    /// Environment variable (of the daemon) holding the bearer token that allows
    /// changes over TCP. Unset or empty: TCP is read-only.
    pub api_token_env: Option<String>,
    /// How often every instance is sampled (CPU, tree RSS, threads, fds).
    #[serde(default = "default_sample_interval")]
    pub sample_interval: Span,
    /// Open TCP API connections (SSE streams included) at most; past it a new
    /// connection is closed at once.
    #[serde(default = "default_api_max_connections")]
    pub api_max_connections: usize,
    /// One cgroup v2 per run where the daemon can make them; `false`: never (process
    /// groups, `L4_TAG` and the orphan tracking only).
    #[serde(default = "default_cgroups")]
    pub cgroups: bool,
    /// The daemon `l4ctl` starts in the background runs under a small watchdog
    /// process that starts it again at once, with the saved apps, if it dies.
    /// `false`: a daemon that dies stays down until the next `l4ctl start`.
    #[serde(default = "default_true")]
    pub watchdog: bool,
    /// The dashboard page at `/` of the API (TCP and the socket); `false`: none (404).
    #[serde(default = "default_true")]
    pub dashboard: bool,
}

/// `api_listen`: an address, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiListen(pub Option<std::net::SocketAddr>);

impl<'de> Deserialize<'de> for ApiListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "off" {
            return Ok(ApiListen(None));
        }
        s.parse().map(|a| ApiListen(Some(a))).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid api_listen {s:?}: expected \"IP:PORT\" such as \"127.0.0.1:9615\", or \"off\""
            ))
        })
    }
}

/// One `[[apps]]` entry, with PM2's option names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub name: Spanned<String>,
    /// A path (relative to `cwd`) or a program name looked up on `PATH`.
    pub script: Spanned<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// The program that runs `script` (PM2's `interpreter`): `"node"`, `"python3"`, a
    /// path, or `"none"` to run the script itself. Default: by the script's
    /// extension, as PM2 (`.js` node, `.py` python3, ...), else none.
    pub interpreter: Option<String>,
    /// Arguments of the interpreter, before the script (PM2's `interpreter_args`, `node_args`).
    #[serde(default, alias = "node_args")]
    pub interpreter_args: Vec<String>,
    /// Working folder of the process, relative to the config file. Default: the config file's folder.
    pub cwd: Option<PathBuf>,
    #[serde(default = "default_instances")]
    pub instances: Instances,
    /// Instance `i` gets `PORT = port + i`.
    pub port: Option<Spanned<u16>>,
    /// Who binds the ports: `"supervisor"` (passed as fd 3, `LISTEN_FDS`) or `"app"`.
    #[serde(default = "default_socket")]
    pub socket: Spanned<SocketOwner>,
    /// Address of the sockets the supervisor binds.
    #[serde(default = "default_listen_host")]
    pub listen_host: std::net::IpAddr,
    /// When a started instance is `online`: `"none"`, `"notify"`, `"http:/path"`, `"tcp"`.
    #[serde(default = "default_ready")]
    pub ready: Spanned<Ready>,
    /// How long a start may take to become ready before it counts as failed.
    #[serde(default = "default_listen_timeout")]
    pub listen_timeout: Spanned<Span>,
    /// Instances a rolling reload replaces at a time.
    #[serde(default = "default_reload_parallel")]
    pub reload_parallel: Spanned<u32>,
    /// dotenv file, relative to the config file.
    pub env_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    pub max_memory_restart: Option<Spanned<Size>>,
    #[serde(default = "default_kill_signal")]
    pub kill_signal: SignalName,
    #[serde(default = "default_kill_timeout")]
    pub kill_timeout: Spanned<Span>,
    #[serde(default = "default_restart_delay")]
    pub restart_delay: Spanned<Span>,
    #[serde(default = "default_restart_delay_max")]
    pub restart_delay_max: Spanned<Span>,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_min_uptime")]
    pub min_uptime: Spanned<Span>,
    #[serde(default = "default_stop_exit_codes")]
    pub stop_exit_codes: Spanned<Vec<i32>>,
    #[serde(default = "default_autorestart")]
    pub autorestart: Autorestart,
    /// Crash-loop retries before giving up for good (`errored`). Unset: retry forever.
    pub crash_loop_max_retries: Option<u32>,
    /// Start the app when its config is loaded. `false` loads it stopped.
    #[serde(default = "default_true")]
    pub autostart: bool,
    /// Samples in a row at or above `max_memory_restart` before a restart.
    #[serde(default = "default_memory_samples")]
    pub memory_samples: u32,
    /// stdout file. Relative to the config file. Default `<log_dir>/<app>-out.log`.
    pub out_file: Option<PathBuf>,
    /// stderr file. Default `<log_dir>/<app>-err.log`.
    pub error_file: Option<PathBuf>,
    /// Combined file (both streams in arrival order). Default `<log_dir>/<app>.log`.
    pub log_file: Option<PathBuf>,
    /// One set of files for all instances (`true`) or one per instance (`<name>-<i>-out.log`, ...).
    #[serde(default = "default_true")]
    pub merge_logs: bool,
    /// Prefix each line with a timestamp.
    #[serde(default = "default_true")]
    pub time: bool,
    /// strftime format of the timestamp (UTC). Default RFC 3339 with milliseconds.
    pub log_date_format: Option<DateFormat>,
    /// `"text"` (default) or `"json"` (one object per line).
    #[serde(default)]
    pub log_type: LogType,
    /// Longer lines are cut, with a visible marker.
    #[serde(default = "default_max_line")]
    pub max_line: Size,
    #[serde(default)]
    pub log_rotate: LogRotateSection,
    /// Restart on file changes: `true` (the app's `cwd`), or folders and files relative to `cwd`.
    #[serde(default = "super::triggers::default_watch")]
    pub watch: Spanned<super::triggers::WatchSection>,
    /// Globs of what is not watched. Default `["node_modules", ".*", "*~"]`.
    pub ignore_watch: Option<Spanned<Vec<String>>>,
    /// Quiet time after the last change before the restart.
    #[serde(default = "super::triggers::default_watch_delay")]
    pub watch_delay: Spanned<Span>,
    /// Restart on a cron schedule (local time), e.g. `"0 3 * * *"`.
    #[serde(alias = "cron")]
    pub cron_restart: Option<Spanned<String>>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    #[default]
    Text,
    Json,
}

/// `[apps.log_rotate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRotateSection {
    #[serde(default = "default_max_size")]
    pub max_size: Size,
    /// `"daily"`, `"hourly"` or `"none"`.
    #[serde(default)]
    pub interval: RotateInterval,
    /// Rotated files kept per log; older ones are deleted.
    #[serde(default = "default_retain")]
    pub retain: u32,
    /// gzip rotated files (off the write path).
    #[serde(default)]
    pub compress: bool,
}

impl Default for LogRotateSection {
    fn default() -> Self {
        LogRotateSection {
            max_size: default_max_size(),
            interval: RotateInterval::None,
            retain: default_retain(),
            compress: false,
        }
    }
}

/// Time-based rotation, on top of `max_size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotateInterval {
    #[default]
    None,
    Hourly,
    Daily,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            home: None,
            log_dir: None,
            api_listen: default_api_listen(),
            api_token_env: None,
            sample_interval: default_sample_interval(),
            api_max_connections: default_api_max_connections(),
            cgroups: default_cgroups(),
            watchdog: true,
            dashboard: true,
        }
    }
}

/// The whole file, after `env_<NAME>` tables were split off each app.
#[derive(Debug, Clone, Default)]
pub struct FileSection {
    pub daemon: DaemonSection,
    pub nginx: Option<super::nginx::NginxSection>,
    pub error_tracking: Option<super::tracking::ErrorTrackingSection>,
    pub apps: Vec<(AppSection, Profiles)>,
    /// An `[[apps]]` entry was refused (and reported): checks across apps are skipped.
    pub apps_incomplete: bool,
}

/// A default value: its span is empty, so diagnostics point at the app's name instead.
fn unset(d: Duration) -> Spanned<Span> {
    Spanned::new(0..0, Span(d))
}
fn default_cgroups() -> bool {
    true
}
fn default_api_max_connections() -> usize {
    256
}
fn default_api_listen() -> ApiListen {
    ApiListen(Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9615))))
}
fn default_socket() -> Spanned<SocketOwner> {
    Spanned::new(0..0, SocketOwner::Supervisor)
}
fn default_ready() -> Spanned<Ready> {
    Spanned::new(0..0, Ready::None)
}
fn default_listen_host() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}
fn default_listen_timeout() -> Spanned<Span> {
    unset(Duration::from_secs(10))
}
fn default_reload_parallel() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_sample_interval() -> Span {
    Span(Duration::from_secs(1))
}
fn default_memory_samples() -> u32 {
    2
}
fn default_instances() -> Instances {
    Instances::Count(1)
}
fn default_kill_signal() -> SignalName {
    SignalName(nix::sys::signal::Signal::SIGTERM)
}
fn default_kill_timeout() -> Spanned<Span> {
    unset(Duration::from_secs(5))
}
fn default_restart_delay() -> Spanned<Span> {
    unset(Duration::from_millis(100))
}
fn default_restart_delay_max() -> Spanned<Span> {
    unset(Duration::from_secs(30))
}
fn default_max_restarts() -> u32 {
    16
}
fn default_min_uptime() -> Spanned<Span> {
    unset(Duration::from_secs(1))
}
/// None, as PM2: an app that exits 0 on its own is restarted like any other.
fn default_stop_exit_codes() -> Spanned<Vec<i32>> {
    Spanned::new(0..0, Vec::new())
}
fn default_autorestart() -> Autorestart {
    Autorestart::OnFailure
}
fn default_true() -> bool {
    true
}
fn default_max_line() -> Size {
    Size(64 << 10)
}
fn default_max_size() -> Size {
    Size(10 << 20)
}
fn default_retain() -> u32 {
    30
}

/// `[apps.env_NAME]` tables of one app, by `NAME`.
pub type Profiles = BTreeMap<String, BTreeMap<String, EnvValue>>;
