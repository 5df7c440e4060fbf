//! `[nginx] hosts`: the other hosts' daemons, each reached over its TCP API
//! (`[daemon] api_listen` there). `l4ctl nginx render|check|reload` puts their
//! ready instances into the one upstream, and `l4ctl reload APP --hosts all`
//! replaces their instances one host at a time (README, "Several hosts").
//!
//! ```toml
//! [nginx]
//! hosts = [{ api = "http://10.0.0.2:9615", token_env = "L4_API_TOKEN" }]
//! ```
//!
//! Each entry is checked here, at `file:line:col`: the URL's form, the variable's
//! name, the address nginx dials. The token itself is read from the environment of
//! the command that uses it, never from the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::diag::Report;
use super::normalize;

/// Most hosts one `[nginx]` may list (each is asked for its table on every render).
pub const MAX_HOSTS: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HostSection {
    /// The daemon's TCP API: `http://IP:PORT`, or `https://NAME:PORT` behind a TLS proxy.
    api: Spanned<String>,
    /// The variable that holds that daemon's API token (needed by `reload --hosts`).
    token_env: Option<Spanned<String>>,
    /// What nginx dials for that host's workers. Default: the host of `api`.
    address: Option<Spanned<String>>,
    /// PEM certificates to trust for an `https` API instead of the web's roots.
    ca_file: Option<PathBuf>,
}

/// One other host, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSpec {
    /// `scheme://host:port`, whatever the file wrote.
    pub api: String,
    pub token_env: Option<String>,
    /// A bare IP address or name, brackets kept for IPv6 (`[fd00::2]`).
    pub address: String,
    pub ca_file: Option<PathBuf>,
}

/// The pieces of an `api` URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub https: bool,
    /// For connecting and for TLS: brackets stripped from an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The host as the URL wrote it (brackets kept).
    pub raw_host: String,
}

impl UrlParts {
    /// `host:port` for the `Host` header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.raw_host, self.port)
    }

    /// `scheme://host:port`: one spelling per API, whatever the file wrote.
    pub fn canonical(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority())
    }
}

/// What nginx dials for `text`: an IPv6 address in brackets, a name or IPv4 as is.
fn nginx_address(text: &str) -> Option<String> {
    if let Ok(v6) = text.parse::<std::net::Ipv6Addr>() {
        return Some(format!("[{v6}]"));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(|v6| format!("[{v6}]"));
    }
    let name = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    name.then(|| text.to_owned())
}

/// Check an `api` URL: `http(s)://host[:port]`, nothing after it.
pub fn parse_url(url: &str) -> Result<UrlParts, String> {
    if url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'#') {
        return Err(format!("{url:?} must not hold spaces, control characters or a #fragment"));
    }
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    };
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    if !(path.is_empty() || path == "/") {
        return Err(format!("{url:?} must be the API's root (no path): the routes are added to it"));
    }
    if url.contains('@') {
        return Err(format!("{url:?} must not carry credentials: name a variable in `token_env`"));
    }
    let raw = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("{url:?} names no host"))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = raw.trim_start_matches('[').trim_end_matches(']').to_owned();
    if !https && host.parse::<std::net::IpAddr>().is_err() && host != "localhost" {
        return Err(format!(
            "{url:?}: over http the host must be an IP address (the daemon refuses a Host that is a name, against DNS rebinding); a name is fine behind https"
        ));
    }
    Ok(UrlParts { https, host, port, raw_host: raw.to_owned() })
}

/// Whether `name` can be an environment variable's name.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Check each entry and resolve its `ca_file` against the config file's folder.
pub(super) fn resolve(report: &mut Report<'_>, hosts: Vec<HostSection>, base: &Path) -> Vec<HostSpec> {
    if hosts.len() > MAX_HOSTS {
        let at = hosts[MAX_HOSTS].api.span();
        report.push(at, format!("`[nginx] hosts` lists {} hosts; at most {MAX_HOSTS}", hosts.len()));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for host in hosts {
        let parts = match parse_url(host.api.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                report.push(host.api.span(), format!("`hosts` `api`: {e}"));
                continue;
            }
        };
        let api = parts.canonical();
        if seen.contains(&api) {
            report.push(host.api.span(), format!("`hosts` lists {api} twice"));
        }
        seen.push(api.clone());
        if let Some(var) = &host.token_env
            && !is_var_name(var.get_ref())
        {
            report.push(var.span(), format!("`token_env` {:?} is not a variable name", var.get_ref()));
        }
        let address = match &host.address {
            Some(a) => nginx_address(a.get_ref()).unwrap_or_else(|| {
                report.push(a.span(), format!("`address` {:?} is not an IP address or host name", a.get_ref()));
                String::new()
            }),
            None => nginx_address(&parts.raw_host).unwrap_or_else(|| parts.raw_host.clone()),
        };
        out.push(HostSpec {
            api,
            token_env: host.token_env.map(Spanned::into_inner),
            address,
            ca_file: host.ca_file.map(|p| normalize(&base.join(p))),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{is_var_name, parse_url};

    #[test]
    fn urls_are_checked() {
        let p = parse_url("http://10.0.0.2:9615").unwrap();
        assert_eq!(
            (p.https, p.host.as_str(), p.port, p.authority()),
            (false, "10.0.0.2", 9615, "10.0.0.2:9615".into())
        );
        let p = parse_url("http://[fd00::2]:9615/").unwrap();
        assert_eq!((p.host.as_str(), p.authority()), ("fd00::2", "[fd00::2]:9615".into()));
        let p = parse_url("https://api.example.com").unwrap();
        assert_eq!((p.https, p.port), (true, 443));
        assert_eq!(parse_url("http://10.0.0.2:9615/").unwrap().canonical(), "http://10.0.0.2:9615");
        assert_eq!(parse_url("https://api.example.com").unwrap().canonical(), "https://api.example.com:443");
        for bad in [
            "http://10.0.0.2:9615/#x\n}",
            "http://10.0.0.2:9615 ",
            "10.0.0.2:9615",
            "ftp://10.0.0.2",
            "http://10.0.0.2:9615/api",
            "http://host.example:9615",
            "http://user:pw@10.0.0.2:1",
            "http://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn addresses_for_nginx_put_ipv6_in_brackets() {
        use super::nginx_address;
        assert_eq!(nginx_address("fd00::3").as_deref(), Some("[fd00::3]"));
        assert_eq!(nginx_address("[fd00::3]").as_deref(), Some("[fd00::3]"));
        assert_eq!(nginx_address("10.0.0.3").as_deref(), Some("10.0.0.3"));
        assert_eq!(nginx_address("l4-b.internal").as_deref(), Some("l4-b.internal"));
        for bad in ["[zz]", "x;y", "", "a b", "[fd00::3"] {
            assert_eq!(nginx_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn variable_names() {
        assert!(is_var_name("L4_API_TOKEN") && is_var_name("_x1"));
        assert!(!is_var_name("") && !is_var_name("1X") && !is_var_name("A-B") && !is_var_name("A B"));
    }
}
