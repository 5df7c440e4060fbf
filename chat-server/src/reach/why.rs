//! Why a connection to the database or Redis failed, in one sentence: the error chains
//! of sqlx, redis, rustls and std are walked for the cause an operator can act on (a
//! name that does not resolve, a refused port, a certificate not trusted or for another
//! name, a port that does not speak TLS, a refused password), and anything else is
//! said as the library says it.

use std::error::Error;
use std::sync::Arc;

use rustls::CertificateError;

/// The far end of a connection, as named in its URL (no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `DATABASE_URL` or `REDIS_URL`.
    pub setting: &'static str,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub tls: bool,
    /// Where a private CA is given: `sslrootcert=/path/ca.pem` or `REDIS_CA_FILE`.
    pub ca_hint: &'static str,
}

impl Endpoint {
    pub fn new(setting: &'static str, url: &str) -> Endpoint {
        let parsed = url::Url::parse(url).ok();
        let postgres = setting == "DATABASE_URL";
        let param = |name: &str| {
            parsed.as_ref().and_then(|u| u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()))
        };
        // An IPv6 literal without its brackets (what a lookup takes); libpq's host= and
        // port= in the query win, as they do for sqlx.
        let host = match parsed.as_ref().and_then(url::Url::host) {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Domain(d)) => d.to_owned(),
            None => "localhost".into(),
        };
        let host = param("host").filter(|_| postgres).unwrap_or(host);
        let port = param("port")
            .filter(|_| postgres)
            .and_then(|p| p.parse().ok())
            .or_else(|| parsed.as_ref().and_then(url::Url::port))
            .unwrap_or(if postgres { 5432 } else { 6379 });
        let user = parsed.as_ref().map(|u| u.username().to_owned()).unwrap_or_default();
        let database = parsed.as_ref().map(|u| u.path().trim_start_matches('/').to_owned()).unwrap_or_default();
        let mode =
            parsed.as_ref().and_then(|u| u.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned()));
        let tls = if postgres { !matches!(mode.as_deref(), Some("disable")) } else { url.starts_with("rediss://") };
        let ca_hint = if postgres { "add sslrootcert=/path/ca.pem to DATABASE_URL" } else { "set REDIS_CA_FILE" };
        Endpoint { setting, host, port, user, database, tls, ca_hint }
    }

    fn at(&self) -> String {
        if self.host.contains(':') {
            format!("{}: [{}]:{}", self.setting, self.host, self.port)
        } else {
            format!("{}: {}:{}", self.setting, self.host, self.port)
        }
    }

    /// A Unix socket folder (`host=/run/postgresql`), not a network address.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

/// One sentence for a failed connection to `to`.
pub fn sentence(to: &Endpoint, err: &(dyn Error + 'static)) -> String {
    let at = to.at();
    let mut causes = Vec::new();
    chain(err, &mut causes);
    for e in &causes {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                // A bad signature: a CA of the same name is trusted, but it did not sign this one.
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
                    format!(
                        "{at}: the server's certificate is not signed by a CA this worker trusts ({} with the CA that signed it)",
                        to.ca_hint
                    )
                }
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
                    format!(
                        "{at}: the server's certificate is not valid for the name {} (it is for {})",
                        to.host,
                        presented.join(", ")
                    )
                }
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                    format!("{at}: the server's certificate is not valid for the name {}", to.host)
                }
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => format!("{at}: the server's certificate has expired"),
                rustls::Error::InvalidCertificate(other) => {
                    format!("{at}: the server's certificate is refused ({other:?})")
                }
                rustls::Error::AlertReceived(alert) => format!(
                    "{at}: the server ended the TLS handshake ({alert:?}): it may want a client certificate, or not trust the one given"
                ),
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    format!("{at}: the server did not answer in TLS (is {} its TLS port?)", to.port)
                }
                other => format!("{at}: TLS failed: {other}"),
            };
        }
        if let Some(found) = e.downcast_ref::<sqlx::Error>().and_then(|db| postgres(to, &at, db)) {
            return found;
        }
        if let Some(r) = e.downcast_ref::<redis::RedisError>() {
            if r.kind() == redis::ErrorKind::AuthenticationFailed || r.code() == Some("WRONGPASS") {
                return format!("{at}: the server refused the password{}", user(to));
            }
            if r.code() == Some("NOAUTH") {
                return format!("{at}: the server requires a password (rediss://:PASSWORD@host:port in REDIS_URL)");
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!("{at}: the connection was refused (nothing listens there)");
                }
                std::io::ErrorKind::TimedOut => {
                    let tls =
                        if to.tls { " (a TLS handshake to a port that does not speak TLS waits too)" } else { "" };
                    return format!("{at}: no answer in time{tls}");
                }
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset if to.tls => {
                    return format!(
                        "{at}: the server closed the connection during the TLS handshake (is {} its TLS port? does it want a client certificate?)",
                        to.port
                    );
                }
                _ if io.to_string().contains("failed to lookup address") => {
                    return format!("{at}: the name {} does not resolve (DNS)", to.host);
                }
                _ => {}
            }
        }
    }
    format!("{at}: {err}")
}

fn user(to: &Endpoint) -> String {
    if to.user.is_empty() { String::new() } else { format!(" of user {}", to.user) }
}

fn postgres(to: &Endpoint, at: &str, err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => Some(format!("{at}: the server refused the password{}", user(to))),
            Some("28000") => Some(format!("{at}: the server refused the login: {}", db.message())),
            Some("3D000") => Some(format!("{at}: the server has no database {:?}", to.database)),
            _ => None,
        },
        sqlx::Error::Tls(e) if e.to_string().contains("does not support TLS") => {
            Some(format!("{at}: the server does not offer TLS, and the sslmode in DATABASE_URL requires it"))
        }
        sqlx::Error::PoolTimedOut => Some(format!("{at}: no answer in time")),
        _ => None,
    }
}

/// `err` and its causes, looking inside `io::Error`s and the `Arc`s redis keeps its
/// causes in (their `source()` skips the error they hold).
fn chain<'a>(err: &'a (dyn Error + 'static), out: &mut Vec<&'a (dyn Error + 'static)>) {
    if out.len() > 16 {
        return;
    }
    out.push(err);
    if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        return chain(inner, out);
    }
    if let Some(inner) = err.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
        return chain(&**inner, out);
    }
    if let Some(next) = err.source() {
        chain(next, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg() -> Endpoint {
        Endpoint::new("DATABASE_URL", "postgres://chat:secret@db.example:6432/chat?sslmode=verify-full")
    }

    #[test]
    fn endpoints_name_host_port_user_and_database_without_the_password() {
        let e = pg();
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str(), e.database.as_str(), e.tls),
            ("db.example", 6432, "chat", "chat", true)
        );
        let r = Endpoint::new("REDIS_URL", "redis://cache");
        assert_eq!((r.port, r.tls), (6379, false));
        let v6 = Endpoint::new("DATABASE_URL", "postgres://u@[::1]:6000/db");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 6000));
        assert!(sentence(&v6, &sqlx::Error::PoolTimedOut).starts_with("DATABASE_URL: [::1]:6000: "));
        let q = Endpoint::new("DATABASE_URL", "postgres:///db?host=/run/postgresql&port=5433");
        assert_eq!((q.host.as_str(), q.port, q.is_socket()), ("/run/postgresql", 5433, true));
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_inside_sqlx_is_found() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let err = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let s = sentence(&pg(), &err);
        assert!(s.starts_with("DATABASE_URL: db.example:6432: the server's certificate is not signed"), "{s}");
        assert!(s.contains("sslrootcert="), "{s}");
    }

    #[test]
    fn refused_and_unknown_errors_are_one_line() {
        let err = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            sentence(&pg(), &err),
            "DATABASE_URL: db.example:6432: the connection was refused (nothing listens there)"
        );
        let err = sqlx::Error::Protocol("odd".into());
        assert!(!sentence(&pg(), &err).contains('\n'));
    }
}
