//! Where the worker's data lives and how it is reached: `DATABASE_URL` (SQLite, or
//! PostgreSQL with libpq's TLS parameters) and `REDIS_URL` (`rediss://` for TLS, with
//! `REDIS_CA_FILE` and a client certificate). Checked up front, so a setting that
//! cannot work is an error at `--check` and at start, never a surprise at the first
//! connection: the mode is one libpq knows, every file named exists, holds PEM of the
//! right kind, and a private key is not readable by others.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Parser;

/// libpq's `sslmode` values taken. `allow` sqlx does not implement; `verify-ca` it
/// implements by trusting the public roots besides `sslrootcert` without checking the
/// name, which would let any public CA's certificate for any name through.
pub const SSLMODES: &[&str] = &["disable", "prefer", "require", "verify-full"];

/// sqlx's other spellings of the TLS parameters, and the environment variables it reads
/// past these checks: refused, so what is checked is what is used.
const ALIASES: &[(&str, &str)] = &[
    ("ssl-mode", "sslmode"),
    ("ssl-root-cert", "sslrootcert"),
    ("ssl-ca", "sslrootcert"),
    ("ssl-cert", "sslcert"),
    ("ssl-key", "sslkey"),
];
const PG_ENV: &[&str] = &["PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"];

/// How the Redis connection is secured, beyond what `rediss://` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// `REDIS_CA_FILE`: the only roots trusted (instead of the system's).
    pub ca_file: Option<PathBuf>,
    /// `REDIS_CLIENT_CERT` and `REDIS_CLIENT_KEY`.
    pub client: Option<(PathBuf, PathBuf)>,
}

pub const VARIABLES: &[&str] =
    &["REDIS_CA_FILE", "REDIS_CLIENT_CERT", "REDIS_CLIENT_KEY", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"];

impl Parser {
    /// `DATABASE_URL` as sqlx is to get it: `require` with a root certificate checks the
    /// chain (libpq's rule), and with sqlx that is done as `verify-full`.
    pub(super) fn database_url(&mut self) -> String {
        for name in PG_ENV {
            if self.text(name).is_some() {
                let key = name.trim_start_matches("PG").to_ascii_lowercase();
                self.fail(name, format!("is not read: give {key}=... in DATABASE_URL, where it is checked"));
            }
        }
        let url = self.text("DATABASE_URL").unwrap_or_else(|| "sqlite://data/chat.db".to_string());
        if url.starts_with("sqlite:") {
            return url;
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            self.fail("DATABASE_URL", "must start with sqlite: or postgres://".to_string());
            return url;
        }
        let Ok(mut parsed) = url::Url::parse(&url) else {
            self.fail("DATABASE_URL", "is not a URL (postgres://user:password@host:5432/database)".to_string());
            return url;
        };
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        for (alias, name) in ALIASES {
            if keys.iter().any(|k| k == alias) {
                self.fail("DATABASE_URL", format!("spell {alias} as {name} (libpq's name, the one checked)"));
            }
        }
        for name in ["sslmode", "sslrootcert", "sslcert", "sslkey", "password", "host", "port"] {
            if keys.iter().filter(|k| *k == name).count() > 1 {
                self.fail("DATABASE_URL", format!("gives {name} more than once"));
            }
        }
        let param = |name: &str| parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let mode = param("sslmode");
        if let Some(mode) = &mode
            && !SSLMODES.contains(&mode.as_str())
        {
            let also = match mode.as_str() {
                "allow" => " (allow is not supported: use prefer)",
                "verify-ca" => {
                    " (verify-ca would also take any public CA's certificate for any name: use verify-full, with the host name the certificate names)"
                }
                _ => "",
            };
            self.fail("DATABASE_URL", format!("sslmode={mode} is not one of {}{also}", SSLMODES.join(", ")));
        }
        let root = param("sslrootcert");
        if let Some(path) = &root {
            self.pem_file("DATABASE_URL", "sslrootcert", Path::new(path), Pem::Certificates);
        }
        match (param("sslcert"), param("sslkey")) {
            (Some(cert), Some(key)) => {
                self.pem_file("DATABASE_URL", "sslcert", Path::new(&cert), Pem::Certificates);
                self.pem_file("DATABASE_URL", "sslkey", Path::new(&key), Pem::Key);
            }
            (None, None) => {}
            _ => self.fail("DATABASE_URL", "sslcert and sslkey go together (a client certificate and its key)".into()),
        }
        if mode.as_deref() == Some("require") && root.is_some() {
            set_query(&mut parsed, |k| k == "sslmode", "verify-full");
            return parsed.to_string();
        }
        url
    }

    /// `REDIS_URL` and the TLS files that go with `rediss://`.
    pub(super) fn redis(&mut self, development: bool) -> (Option<String>, RedisTls) {
        let url = self.text("REDIS_URL").filter(|s| !s.is_empty());
        let tls = url.as_deref().is_some_and(|u| {
            u.starts_with("rediss://") || u.starts_with("rediss+sentinel://") || u.starts_with("rediss+cluster://")
        });
        if let Some(url) = &url {
            if super::sentinel_url::is_sentinel(url) {
                if let Err(e) = super::sentinel_url::SentinelUrl::parse(url) {
                    self.fail("REDIS_URL", e);
                }
            } else if super::cluster_url::is_cluster(url) {
                if let Err(e) = super::cluster_url::ClusterUrl::parse(url) {
                    self.fail("REDIS_URL", e);
                }
            } else if !(url.starts_with("redis://") || tls) {
                self.fail(
                    "REDIS_URL",
                    "must start with redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
                        .to_string(),
                );
            } else if let Err(e) = url::Url::parse(url) {
                self.fail(
                    "REDIS_URL",
                    format!("is not a URL ({e}): redis://[:PASSWORD@]host:port[/db], a password percent-encoded"),
                );
            }
            match url.split_once('#').map(|(_, f)| f) {
                None => {}
                Some("insecure") if !tls => self.fail("REDIS_URL", "#insecure is for rediss:// URLs".into()),
                Some("insecure") if !development => self.fail(
                    "REDIS_URL",
                    "#insecure turns off the server's certificate check and is refused unless APP_ENV=development; give the server's CA in REDIS_CA_FILE instead".into(),
                ),
                Some("insecure") => {}
                Some(_) => self.fail("REDIS_URL", "the only fragment it may have is #insecure".into()),
            }
        }
        let mut out = RedisTls::default();
        let needs_tls = |p: &mut Parser, name: &str| {
            if !tls {
                p.fail(name, "needs a rediss://, rediss+sentinel:// or rediss+cluster:// REDIS_URL (TLS)".into());
            }
        };
        if let Some(ca) = self.text("REDIS_CA_FILE").filter(|s| !s.is_empty()) {
            needs_tls(self, "REDIS_CA_FILE");
            self.pem_file("REDIS_CA_FILE", "the file", Path::new(&ca), Pem::Certificates);
            out.ca_file = Some(ca.into());
        }
        let cert = self.text("REDIS_CLIENT_CERT").filter(|s| !s.is_empty());
        let key = self.text("REDIS_CLIENT_KEY").filter(|s| !s.is_empty());
        match (cert, key) {
            (Some(cert), Some(key)) => {
                needs_tls(self, "REDIS_CLIENT_CERT");
                self.pem_file("REDIS_CLIENT_CERT", "the file", Path::new(&cert), Pem::Certificates);
                self.pem_file("REDIS_CLIENT_KEY", "the file", Path::new(&key), Pem::Key);
                out.client = Some((cert.into(), key.into()));
            }
            (None, None) => {}
            (Some(_), None) => self.fail("REDIS_CLIENT_KEY", "must be set with REDIS_CLIENT_CERT".into()),
            (None, Some(_)) => self.fail("REDIS_CLIENT_CERT", "must be set with REDIS_CLIENT_KEY".into()),
        }
        (url, out)
    }

    /// A PEM file the worker will read: a certificate (chain) or a private key that only
    /// its owner (or root's group) can read, as libpq requires of `sslkey`.
    fn pem_file(&mut self, name: &str, what: &str, path: &Path, kind: Pem) {
        if let Err(problem) = check_pem(path, kind) {
            self.fail(name, format!("{what} {}: {problem}", path.display()));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pem {
    Certificates,
    Key,
}

fn check_pem(path: &Path, kind: Pem) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    if kind == Pem::Key {
        use std::os::unix::fs::MetadataExt;
        // libpq's rule: owned by this user and 0600 or less, or owned by root and 0640 or less.
        let mode = meta.mode() & 0o777;
        // SAFETY: geteuid only reads this process's effective user id.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!("is owned by user {}: a private key must be this user's or root's", meta.uid()));
        }
        let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
        if mode & !allowed != 0 {
            return Err(format!("has mode {mode:o}: a private key must not be readable by others (chmod 600)"));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    match kind {
        Pem::Certificates => {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
            match certs {
                Ok(certs) if !certs.is_empty() => Ok(()),
                Ok(_) => Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
                Err(e) => Err(format!("is not PEM: {e}")),
            }
        }
        Pem::Key => {
            PrivateKeyDer::from_pem_slice(&bytes).map(drop).map_err(|e| format!("holds no PEM private key: {e}"))
        }
    }
}

/// `scheme://user:password@host/db?password=x` -> `scheme://user:***@host/db?password=***`;
/// a URL that does not parse is not shown at all.
pub fn redact_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_string();
    }
    if super::sentinel_url::is_sentinel(url) {
        return super::sentinel_url::SentinelUrl::parse(url)
            .map_or_else(|_| "<a URL that does not parse>".into(), |u| u.redacted());
    }
    if super::cluster_url::is_cluster(url) {
        return super::cluster_url::ClusterUrl::parse(url)
            .map_or_else(|_| "<a URL that does not parse>".into(), |u| u.redacted());
    }
    let Ok(mut parsed) = url::Url::parse(url) else { return "<a URL that does not parse>".into() };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        set_query(&mut parsed, |k| k.eq_ignore_ascii_case("password"), "***");
    }
    parsed.to_string()
}

/// Every query parameter whose key `which` picks gets `value`; the others stay as they are.
fn set_query(url: &mut url::Url, which: impl Fn(&str) -> bool, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if which(&k) { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_in_the_authority_and_the_query_and_a_bad_url_is_not_shown() {
        assert_eq!(redact_url("postgres://chat:s3cret@db:5432/chat"), "postgres://chat:***@db:5432/chat");
        assert_eq!(
            redact_url("postgres://chat@db.example?password=s3cret&sslmode=require"),
            "postgres://chat@db.example?password=***&sslmode=require"
        );
        assert_eq!(redact_url("rediss://:s3cret@cache:6380/#insecure"), "rediss://:***@cache:6380/#insecure");
        assert_eq!(redact_url("postgres://chat:s3/cret@db"), "<a URL that does not parse>");
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
    }
}
