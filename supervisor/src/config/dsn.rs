//! A Sentry DSN (`https://<public key>@<host>[:port]/<project>`): checked when the
//! config is read (`[error_tracking] sentry_dsn`), used by the crash delivery to post
//! envelopes. A value of the config, so it lives here, below `crash/`.

/// A parsed DSN: `https://<public key>@<host>[:port]/<project>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub scheme: String,
    pub public_key: String,
    /// `host[:port]`, with any path prefix before the project id.
    pub host: String,
    pub prefix: String,
    pub project: String,
    raw: String,
}

impl Dsn {
    pub fn parse(text: &str) -> Result<Dsn, String> {
        let bad = || "invalid Sentry DSN: expected https://<public key>@<host>/<project id>".to_owned();
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let (key, rest) = rest.split_once('@').ok_or_else(bad)?;
        let key = key.split(':').next().unwrap_or_default();
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        let path = path.trim_end_matches('/');
        let (prefix, project) = match path.rsplit_once('/') {
            Some((p, id)) => (format!("/{p}"), id),
            None => (String::new(), path),
        };
        if key.is_empty() || host.is_empty() || project.is_empty() || !project.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Dsn {
            scheme: scheme.into(),
            public_key: key.into(),
            host: host.into(),
            prefix,
            project: project.into(),
            raw: text.into(),
        })
    }

    /// The DSN as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Where envelopes go.
    pub fn envelope_url(&self) -> String {
        format!("{}://{}{}/api/{}/envelope/", self.scheme, self.host, self.prefix, self.project)
    }

    pub fn auth_header(&self) -> String {
        format!(
            "Sentry sentry_version=7, sentry_key={}, sentry_client=l4ctl/{}",
            self.public_key,
            env!("CARGO_PKG_VERSION")
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_into_the_envelope_endpoint_and_auth() {
        let d = Dsn::parse("https://abc123@o1.ingest.sentry.io/4505").unwrap();
        assert_eq!(d.envelope_url(), "https://o1.ingest.sentry.io/api/4505/envelope/");
        assert!(d.auth_header().starts_with("Sentry sentry_version=7, sentry_key=abc123, sentry_client=l4ctl/"));
        let local = Dsn::parse("http://key@127.0.0.1:9000/sentry/7").unwrap();
        assert_eq!(local.envelope_url(), "http://127.0.0.1:9000/sentry/api/7/envelope/");
        for bad in ["", "abc", "ftp://k@h/1", "https://h/1", "https://k@h/", "https://k@h/proj"] {
            assert!(Dsn::parse(bad).is_err(), "{bad}");
        }
    }
}
