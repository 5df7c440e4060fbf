//! Where the CLI's requests go: the local daemon's Unix socket (mode 0600, no
//! token), or another host's daemon over its TCP API (`[nginx] hosts`), plain
//! or through TLS when the URL says `https` (rustls with ring, the web's roots or
//! a private CA), with the host's token in `Authorization: Bearer`.
//! The URL is checked by `config::parse_url` (an IP address over `http`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A daemon's TCP API on another host.
pub struct Remote {
    /// As configured, without a trailing slash: what messages name.
    pub url: String,
    /// What `connect` dials (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    token: Option<String>,
    connect_timeout: Duration,
}

impl Remote {
    /// How long the connection, the TLS handshake and the answer's head may each take.
    pub(super) fn timeout(&self) -> Duration {
        self.connect_timeout
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Remote").field("url", &self.url).field("token", &self.token.is_some()).finish()
    }
}

impl Remote {
    /// `url` is `http://IP:PORT` or `https://HOST:PORT` (no path); `ca_file` holds the
    /// PEM certificates to trust instead of the web's roots.
    pub fn new(
        url: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
    ) -> Result<Remote, String> {
        let parts = crate::config::parse_url(url)?;
        let tls = if parts.https {
            let name = ServerName::try_from(parts.host.clone()).map_err(|e| format!("{url}: {e}"))?;
            Some((connector(ca_file)?, name))
        } else {
            None
        };
        Ok(Remote {
            url: url.trim_end_matches('/').to_owned(),
            authority: parts.authority(),
            host: parts.host,
            port: parts.port,
            tls,
            token,
            connect_timeout,
        })
    }

    pub(super) fn authority(&self) -> &str {
        &self.authority
    }

    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// A peer that vanishes mid-answer (a host cut off during a long reload wave) is
/// noticed within about 30 s: probes after 15 s of silence, 3 of them 5 s apart.
fn keepalive(tcp: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(tcp, sockopt::KeepAlive, &true);
    let _ = setsockopt(tcp, sockopt::TcpKeepIdle, &15);
    let _ = setsockopt(tcp, sockopt::TcpKeepInterval, &5);
    let _ = setsockopt(tcp, sockopt::TcpKeepCount, &3);
}

/// Largest `ca_file` read.
const MAX_CA_FILE: u64 = 1 << 20;

fn connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            // A CA swapped by someone else would let them read the token: the file must
            // be ours (or root's) and closed to others' writes, as the config file is.
            let file = crate::trust::open_owned(path, "ca_file")
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("ca_file {} does not exist", path.display()))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CA_FILE + 1), &mut bytes)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            if bytes.len() as u64 > MAX_CA_FILE {
                return Err(format!("ca_file {} is larger than {MAX_CA_FILE} bytes", path.display()));
            }
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca_file {} is not PEM: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {} holds no PEM certificate", path.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A byte stream to a daemon, whichever way it was reached.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why no stream could be opened.
pub(super) enum ConnectError {
    /// Nothing listens there (the socket is missing, or the port refuses).
    Absent,
    Other(String),
}

/// Open a stream to the socket, or to the remote host when there is one.
pub(super) async fn connect(
    socket: &PathBuf,
    remote: Option<&Remote>,
) -> Result<TokioIo<Box<dyn Stream>>, ConnectError> {
    let absent =
        |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused);
    let Some(remote) = remote else {
        return match UnixStream::connect(socket).await {
            Ok(s) => Ok(TokioIo::new(Box::new(s))),
            Err(e) if absent(&e) => Err(ConnectError::Absent),
            Err(e) => Err(ConnectError::Other(e.to_string())),
        };
    };
    let dial = TcpStream::connect((remote.host.as_str(), remote.port));
    let tcp = match tokio::time::timeout(remote.connect_timeout, dial).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if absent(&e) => return Err(ConnectError::Absent),
        Ok(Err(e)) => return Err(ConnectError::Other(e.to_string())),
        Err(_) => {
            return Err(ConnectError::Other(format!("no connection within {} ms", remote.connect_timeout.as_millis())));
        }
    };
    let _ = tcp.set_nodelay(true);
    keepalive(&tcp);
    let Some((tls, name)) = &remote.tls else { return Ok(TokioIo::new(Box::new(tcp))) };
    match tokio::time::timeout(remote.connect_timeout, tls.connect(name.clone(), tcp)).await {
        Ok(Ok(s)) => Ok(TokioIo::new(Box::new(s))),
        Ok(Err(e)) => Err(ConnectError::Other(format!("TLS: {e}"))),
        Err(_) => {
            Err(ConnectError::Other(format!("no TLS handshake within {} ms", remote.connect_timeout.as_millis())))
        }
    }
}
