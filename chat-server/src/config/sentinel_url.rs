//! `REDIS_URL` naming Redis Sentinel, as configuration (asking the sentinels is
//! `reach/sentinel.rs`'s):
//! `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`
//! (`rediss+sentinel://` for TLS to the primary, with `REDIS_CA_FILE` and the client
//! certificate as for `rediss://`). The sentinels are asked in turn, each within
//! 1 s, over plain TCP and without the credentials (they are the
//! primary's): `SENTINEL GET-MASTER-ADDR-BY-NAME SERVICE`. The worker connects to
//! that primary as to any `REDIS_URL` (its credentials, database and TLS), checks
//! with `ROLE` that it is one (`hub/link.rs`), and asks again whenever the
//! connection is lost, so it follows a failover (`hub/fanout.rs`).

/// Most sentinels one URL may list.
pub const MAX_SENTINELS: usize = 16;

/// A parsed `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub service: String,
    pub db: u32,
    /// `USER:PASSWORD` as written (percent-encoded), for the primary.
    userinfo: Option<String>,
    pub tls: bool,
    /// `#insecure`, for the primary.
    fragment: Option<String>,
}

/// Whether `url` names Sentinel (`redis+sentinel://` or `rediss+sentinel://`).
pub fn is_sentinel(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.write_str(&self.redacted())
    }
}

/// `HOST:PORT[,HOST:PORT...]` (an IPv6 address in brackets), each a `what` in errors;
/// shared with `redis+cluster://` URLs.
pub fn host_list(hosts: &str, what: &str) -> Result<Vec<(String, u16)>, String> {
    let mut list = Vec::new();
    for host in hosts.split(',') {
        let bad = || format!("{what} {host:?} is not HOST:PORT (an IPv6 address in brackets)");
        let (name, port) = host.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        let name = match name.strip_prefix('[') {
            Some(inner) => {
                inner.strip_suffix(']').filter(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()).ok_or_else(bad)?
            }
            None if name.contains(':') => return Err(bad()),
            None => name,
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b)) {
            return Err(bad());
        }
        list.push((name.to_owned(), port));
    }
    Ok(list)
}

/// `[USERINFO@]REST[#FRAGMENT]` after the scheme: the credentials first (they may hold
/// `#`, `/` or `?`; nothing after them holds `@`), so that no error about the rest can
/// quote them; shared with `redis+cluster://` URLs.
pub fn split_credentials(rest: &str) -> (Option<String>, &str, Option<String>) {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, rest),
    };
    match rest.split_once('#') {
        Some((r, f)) => (userinfo, r, Some(f.to_owned())),
        None => (userinfo, rest, None),
    }
}

/// `USER:***@` (or `***@`) for written credentials: the password never shown.
pub fn redacted_userinfo(userinfo: Option<&str>) -> String {
    match userinfo.map(|u| u.split_once(':')) {
        Some(Some((user, _))) => format!("{user}:***@"),
        Some(None) => "***@".into(),
        None => String::new(),
    }
}

/// `host` as it goes in a URL: an IPv6 address in brackets.
pub fn in_url(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

impl SentinelUrl {
    /// Parse `url`; an error never quotes the credentials.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Err("must start with redis+sentinel:// or rediss+sentinel://".into());
        };
        let (userinfo, rest, fragment) = split_credentials(rest);
        if rest.contains('?') {
            return Err("takes no query: redis+sentinel://HOST:PORT,.../SERVICE[/DB]".into());
        }
        let (hosts, path) = rest.split_once('/').ok_or("names no service: add /SERVICE (e.g. /mymaster)")?;
        let sentinels = host_list(hosts, "sentinel")?;
        if sentinels.len() > MAX_SENTINELS {
            return Err(format!("lists {} sentinels; at most {MAX_SENTINELS}", sentinels.len()));
        }
        let mut parts = path.split('/');
        let service = parts.next().unwrap_or_default();
        if service.is_empty() || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(format!("service {service:?} must be a name of letters, digits, - _ ."));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| format!("database {d:?} is not a number"))?,
        };
        if parts.next().is_some() {
            return Err("has more after /SERVICE/DB".into());
        }
        let parsed = SentinelUrl { sentinels, service: service.to_owned(), db, userinfo, tls, fragment };
        if url::Url::parse(&parsed.primary_url("127.0.0.1", 6379)).is_err() {
            return Err("its credentials do not make a URL: percent-encode the user name and password".into());
        }
        Ok(parsed)
    }

    /// The `redis://` (or `rediss://`) URL of the primary at `host:port`, with this
    /// URL's credentials, database and fragment.
    pub fn primary_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = in_url(host);
        let auth = self.userinfo.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let fragment = self.fragment.as_ref().map(|f| format!("#{f}")).unwrap_or_default();
        format!("{scheme}://{auth}{host}:{port}/{}{fragment}", self.db)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss+sentinel" } else { "redis+sentinel" };
        let auth = redacted_userinfo(self.userinfo.as_deref());
        let hosts: Vec<String> = self.sentinels.iter().map(|(h, p)| format!("{}:{p}", in_url(h))).collect();
        format!("{scheme}://{auth}{}/{}/{}", hosts.join(","), self.service, self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::SentinelUrl;

    #[test]
    fn at_most_max_sentinels() {
        let url = |n: usize| {
            let hosts: Vec<String> = (0..n).map(|i| format!("s{i}:26379")).collect();
            format!("redis+sentinel://{}/m", hosts.join(","))
        };
        assert_eq!(SentinelUrl::parse(&url(super::MAX_SENTINELS)).unwrap().sentinels.len(), super::MAX_SENTINELS);
        assert_eq!(SentinelUrl::parse(&url(super::MAX_SENTINELS + 1)).unwrap_err(), "lists 17 sentinels; at most 16");
    }

    #[test]
    fn urls_parse_and_name_the_primary_with_the_credentials() {
        let u = SentinelUrl::parse("redis+sentinel://:s3cret@10.0.0.5:26379,s2.internal:26380/mymaster/2").unwrap();
        assert_eq!(u.sentinels, vec![("10.0.0.5".into(), 26379), ("s2.internal".into(), 26380)]);
        assert_eq!((u.service.as_str(), u.db, u.tls), ("mymaster", 2, false));
        assert_eq!(u.primary_url("10.0.0.7", 6379), "redis://:s3cret@10.0.0.7:6379/2");
        assert_eq!(u.primary_url("fd00::7", 6379), "redis://:s3cret@[fd00::7]:6379/2");
        assert_eq!(u.redacted(), "redis+sentinel://:***@10.0.0.5:26379,s2.internal:26380/mymaster/2");
        let t = SentinelUrl::parse("rediss+sentinel://[::1]:26379/m#insecure").unwrap();
        assert_eq!(t.primary_url("::1", 6380), "rediss://[::1]:6380/0#insecure");
        assert_eq!(t.redacted(), "rediss+sentinel://[::1]:26379/m/0");
        // A password with a slash or a hash in it: refused without being quoted.
        let e = SentinelUrl::parse("redis+sentinel://:pZq/9x@h:1/m").unwrap_err();
        assert!(!e.contains("pZq") && !e.contains("9x"), "{e}");
        let e = SentinelUrl::parse("redis+sentinel://:pZq#9x@h:1/m").unwrap_err();
        assert!(!e.contains("pZq") && !e.contains("9x"), "{e}");
        let e = SentinelUrl::parse("redis+sentinel://:s3cret@h:1/m/x").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!format!("{:?}", SentinelUrl::parse("redis+sentinel://:s3cret@h:1/m").unwrap()).contains("s3cret"));
        for bad in [
            "redis://h:1/m",
            "redis+sentinel://h:1",
            "redis+sentinel://h/m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m?db=1",
            "redis+sentinel://h;x:1/m",
            "redis+sentinel://::1:26379/m",
            "redis+sentinel://[zz]:26379/m",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
