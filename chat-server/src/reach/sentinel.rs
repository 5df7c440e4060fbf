//! `REDIS_URL` naming Redis Sentinel:
//! `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`
//! (`rediss+sentinel://` for TLS to the primary, with `REDIS_CA_FILE` and the client
//! certificate as for `rediss://`). The sentinels are asked over plain TCP, without
//! the credentials (they are the primary's); the redis crate's `Sentinel` finds the
//! primary of `SERVICE` and confirms it with `ROLE`. The worker connects to that
//! primary as to any `REDIS_URL` and asks again whenever the connection is lost,
//! so it follows a failover (`hub/fanout.rs`).

use std::time::Duration;

/// Most sentinels one URL may list.
pub const MAX_SENTINELS: usize = 16;

/// How long asking the sentinels for the primary may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl SentinelUrl {
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Err("must start with redis+sentinel:// or rediss+sentinel://".into());
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f.to_owned())),
            None => (rest, None),
        };
        if rest.contains('?') {
            return Err("takes no query: redis+sentinel://HOST:PORT,.../SERVICE[/DB]".into());
        }
        let (authority, path) = rest.split_once('/').ok_or("names no service: add /SERVICE (e.g. /mymaster)")?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host.rsplit_once(':').ok_or_else(|| format!("sentinel {host:?} is not HOST:PORT"))?;
            let port = port.parse::<u16>().ok().filter(|p| *p > 0);
            let port = port.ok_or_else(|| format!("sentinel {host:?} is not HOST:PORT"))?;
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b)) {
                return Err(format!("sentinel {host:?} is not HOST:PORT"));
            }
            sentinels.push((name.to_owned(), port));
        }
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
        Ok(SentinelUrl { sentinels, service: service.to_owned(), db, userinfo, tls, fragment })
    }

    /// The `redis://` (or `rediss://`) URL of the primary at `host:port`, with this
    /// URL's credentials, database and fragment.
    pub fn primary_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let auth = self.userinfo.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let fragment = self.fragment.as_ref().map(|f| format!("#{f}")).unwrap_or_default();
        format!("{scheme}://{auth}{host}:{port}/{}{fragment}", self.db)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss+sentinel" } else { "redis+sentinel" };
        let auth = match self.userinfo.as_deref().map(|u| u.split_once(':')) {
            Some(Some((user, _))) => format!("{user}:***@"),
            Some(None) => "***@".into(),
            None => String::new(),
        };
        let hosts: Vec<String> = self.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("{scheme}://{auth}{}/{}/{}", hosts.join(","), self.service, self.db)
    }

    /// Ask the sentinels, in turn, where the primary of the service is now.
    pub async fn primary(&self) -> redis::RedisResult<(String, u16)> {
        let urls: Vec<String> = self.sentinels.iter().map(|(h, p)| format!("redis://{h}:{p}")).collect();
        let mut sentinel = redis::sentinel::Sentinel::build(urls)?;
        let asked = tokio::time::timeout(ASK_TIMEOUT, sentinel.async_master_for(&self.service, None)).await;
        let client = asked.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "no sentinel answered in time", self.redacted()))
        })??;
        match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                Ok((host.clone(), *port))
            }
            other => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the sentinels named a primary that is not host:port",
                other.to_string(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SentinelUrl;

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
        for bad in [
            "redis://h:1/m",
            "redis+sentinel://h:1",
            "redis+sentinel://h/m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m?db=1",
            "redis+sentinel://h;x:1/m",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
