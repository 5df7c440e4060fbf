//! `[nginx]`: how `l4ctl nginx render|check|reload` turns the live worker table
//! into an Nginx config (README, "Nginx"). Read strictly like every section;
//! paths are relative to the config file, except `access_log`, which is nginx's own
//! (absolute, or "off").

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::diag::Report;
use super::units::Span;
use super::{AppSpec, normalize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NginxSection {
    /// The app whose instances form the upstream. Default: the one app with `port`.
    app: Option<Spanned<String>>,
    /// MiniJinja template. Default: the one built in (`templates/nginx/layer4.conf.j2`).
    template: Option<PathBuf>,
    /// Where the rendered config is installed. Default `<home>/nginx/<app>.conf`.
    output: Option<PathBuf>,
    #[serde(default = "default_server_name")]
    server_name: String,
    /// What follows `listen`: `"80"`, `"127.0.0.1:8080"`, `"443 ssl"`.
    #[serde(default = "default_listen")]
    listen: String,
    /// The TLS server's listen (`ssl` is added): `"443"`, `"127.0.0.1:8443"`. With it,
    /// `listen` (unless `"off"`) only redirects to https.
    listen_tls: Option<Spanned<String>>,
    ssl_certificate: Option<PathBuf>,
    ssl_certificate_key: Option<PathBuf>,
    /// The server's access log, written without query strings (a browser's WebSocket
    /// carries its token in `?token=`), or `"off"`.
    #[serde(default = "default_access_log")]
    access_log: Spanned<String>,
    /// More `server` lines for the upstream, fixed: `"10.0.0.2:3001"` (`hosts` follows
    /// other hosts' live tables instead).
    #[serde(default)]
    upstream_hosts: Vec<Spanned<String>>,
    #[serde(default = "default_max_fails")]
    max_fails: u32,
    #[serde(default = "default_fail_timeout")]
    fail_timeout: Span,
    #[serde(default = "default_long")]
    proxy_read_timeout: Span,
    #[serde(default = "default_long")]
    proxy_send_timeout: Span,
    #[serde(default = "default_connect")]
    proxy_connect_timeout: Spanned<Span>,
    /// The nginx binary used for `nginx -t`.
    #[serde(default = "default_binary")]
    binary: String,
    /// Run after a checked config was installed.
    #[serde(default = "default_reload_command")]
    reload_command: Spanned<String>,
    /// The daemon re-renders, checks, installs and reloads when the app's ready
    /// instances change (and every `interval` with `hosts`).
    #[serde(default)]
    auto_reload: bool,
    /// Other hosts' daemons whose ready instances join the upstream.
    #[serde(default)]
    hosts: Vec<super::hosts::HostSection>,
    /// With `hosts` and `auto_reload`: how often the other hosts are asked.
    #[serde(default = "default_interval")]
    interval: Spanned<Span>,
    /// How long a host that does not answer keeps its last known servers (as `backup`).
    #[serde(default = "default_stale_after")]
    stale_after: Span,
    /// How long one host may take to answer.
    #[serde(default = "default_host_timeout")]
    host_timeout: Spanned<Span>,
}

/// The resolved `[nginx]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NginxSpec {
    pub app: String,
    /// `None`: the built-in template.
    pub template: Option<PathBuf>,
    pub output: PathBuf,
    pub server_name: String,
    /// `"off"`: no plain server (only with `listen_tls`).
    pub listen: String,
    pub listen_tls: Option<String>,
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_certificate_key: Option<PathBuf>,
    /// An absolute path, or `"off"`.
    pub access_log: String,
    pub upstream_hosts: Vec<String>,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub proxy_read_timeout: Duration,
    pub proxy_send_timeout: Duration,
    pub proxy_connect_timeout: Duration,
    pub binary: String,
    pub reload_command: Vec<String>,
    pub auto_reload: bool,
    pub hosts: Vec<super::HostSpec>,
    pub interval: Duration,
    pub stale_after: Duration,
    pub host_timeout: Duration,
}

fn default_server_name() -> String {
    "_".into()
}
fn default_listen() -> String {
    "80".into()
}
/// Where Debian's (and most distributions') nginx writes its access log.
pub const DEFAULT_ACCESS_LOG: &str = "/var/log/nginx/access.log";

fn default_access_log() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_ACCESS_LOG.into())
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_long() -> Span {
    Span(Duration::from_secs(86_400))
}
fn default_connect() -> Spanned<Span> {
    Spanned::new(0..0, Span(Duration::from_secs(5)))
}
fn default_interval() -> Spanned<Span> {
    Spanned::new(0..0, Span(Duration::from_secs(10)))
}
fn default_stale_after() -> Span {
    Span(Duration::from_secs(300))
}
fn default_host_timeout() -> Spanned<Span> {
    Spanned::new(0..0, Span(Duration::from_secs(3)))
}
fn default_binary() -> String {
    "nginx".into()
}
fn default_reload_command() -> Spanned<String> {
    Spanned::new(0..0, "nginx -s reload".into())
}

/// Check `[nginx]` against the apps and resolve its paths.
pub(super) fn resolve(
    report: &mut Report<'_>,
    section: NginxSection,
    apps: &[AppSpec],
    base: &Path,
    home: &Path,
) -> Option<NginxSpec> {
    let with_port: Vec<&AppSpec> = apps.iter().filter(|a| a.port.is_some()).collect();
    let app = match &section.app {
        Some(name) => {
            match apps.iter().find(|a| a.name == *name.get_ref()) {
                Some(a) if a.port.is_none() => {
                    report.push(name.span(), format!("`[nginx] app`: `{}` has no `port`", a.name))
                }
                Some(_) => {}
                None => report.push(name.span(), format!("`[nginx] app`: no app is named `{}`", name.get_ref())),
            }
            name.get_ref().clone()
        }
        None if with_port.len() == 1 => with_port[0].name.clone(),
        None => {
            report.push(0..0, format!("`[nginx]` needs `app`: {} apps have a `port`", with_port.len()));
            String::new()
        }
    };
    for host in &section.upstream_hosts {
        let ok = host
            .get_ref()
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok || host.get_ref().contains(char::is_whitespace) || host.get_ref().contains(';') {
            report.push(host.span(), format!("`upstream_hosts` entry {:?} is not HOST:PORT", host.get_ref()));
        }
    }
    if section.ssl_certificate.is_some() != section.ssl_certificate_key.is_some() {
        report.push(0..0, "`[nginx]` needs both `ssl_certificate` and `ssl_certificate_key`, or neither");
    }
    if let Some(tls) = &section.listen_tls {
        if section.ssl_certificate.is_none() {
            report.push(tls.span(), "`listen_tls` needs `ssl_certificate` and `ssl_certificate_key`");
        }
        if tls_port(tls.get_ref()).is_none() || tls.get_ref().contains([';', '{', '}', '\n']) {
            report.push(tls.span(), format!("`listen_tls` {:?} is not PORT or ADDRESS:PORT", tls.get_ref()));
        }
        if section.listen.split_whitespace().any(|w| w == "ssl") || tls_port(&section.listen) == tls_port(tls.get_ref())
        {
            report.push(
                tls.span(),
                "with `listen_tls`, `listen` is the plain server that redirects: another port, without `ssl`",
            );
        }
    } else if section.listen == "off" {
        report.push(0..0, "`[nginx] listen = \"off\"` leaves no server: set `listen_tls`");
    }
    let connect = section.proxy_connect_timeout.get_ref().0;
    if connect > Duration::from_secs(75) || connect.is_zero() {
        // nginx caps it at 75 s; the plan's 86400 would be cut silently.
        report.push(
            section.proxy_connect_timeout.span(),
            "`proxy_connect_timeout` must be between 1ms and 75s (nginx's limit)",
        );
    }
    let reload_command: Vec<String> = section.reload_command.get_ref().split_whitespace().map(str::to_owned).collect();
    if reload_command.is_empty() {
        report.push(section.reload_command.span(), "`reload_command` must not be empty");
    }
    for text in [&section.server_name, &section.listen] {
        if text.is_empty() || text.contains([';', '{', '}', '\n']) {
            report.push(0..0, format!("`[nginx]` value {text:?} must be non-empty and free of ; {{ }} and newlines"));
        }
    }
    let access_log = section.access_log.get_ref();
    if access_log != "off"
        && (!access_log.starts_with('/') || access_log.contains([';', '{', '}', '\n', ' ', '"', '\'']))
    {
        report.push(
            section.access_log.span(),
            format!(
                "`access_log` {access_log:?} must be an absolute path without spaces, quotes or ; {{ }}, or \"off\""
            ),
        );
    }
    let interval = section.interval.get_ref().0;
    if interval < Duration::from_secs(1) {
        report.push(section.interval.span(), "`interval` must be at least 1s");
    }
    let host_timeout = section.host_timeout.get_ref().0;
    // Under the 60 s the daemon gives its helper for the whole render and reload.
    if !(Duration::from_millis(100)..=Duration::from_secs(20)).contains(&host_timeout) {
        report.push(section.host_timeout.span(), "`host_timeout` must be between 100ms and 20s");
    }
    let hosts = super::hosts::resolve(report, section.hosts, base);
    let at = |p: &Option<PathBuf>| p.as_ref().map(|p| normalize(&base.join(p)));
    Some(NginxSpec {
        output: at(&section.output).unwrap_or_else(|| home.join("nginx").join(format!("{app}.conf"))),
        app,
        template: at(&section.template),
        server_name: section.server_name,
        listen: section.listen,
        listen_tls: section.listen_tls.map(Spanned::into_inner),
        ssl_certificate: at(&section.ssl_certificate),
        ssl_certificate_key: at(&section.ssl_certificate_key),
        access_log: section.access_log.into_inner(),
        upstream_hosts: section.upstream_hosts.into_iter().map(Spanned::into_inner).collect(),
        max_fails: section.max_fails,
        fail_timeout: section.fail_timeout.0,
        proxy_read_timeout: section.proxy_read_timeout.0,
        proxy_send_timeout: section.proxy_send_timeout.0,
        proxy_connect_timeout: connect,
        binary: section.binary,
        reload_command,
        auto_reload: section.auto_reload,
        hosts,
        interval,
        stale_after: section.stale_after.0,
        host_timeout,
    })
}

/// The port of a `listen_tls` value (`"443"`, `"127.0.0.1:8443"`, `"[::]:443 http2"`).
pub fn tls_port(listen: &str) -> Option<u16> {
    let address = listen.split_whitespace().next()?;
    let port = address.rsplit_once(':').map_or(address, |(_, p)| p);
    port.parse().ok().filter(|p| *p > 0)
}
