//! The clients' TLS (`wss://`, `https://`): rustls with ring, trusting the public roots
//! (webpki) and, for a private CA, the certificates of a PEM file (`--ca-file`). One
//! configuration per process unless a [`crate::ClientConfig`] brings its own; certificate
//! errors are said in one sentence ([`certificate_problem`]).

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// A configuration trusting the public roots and, when given, every certificate in
/// `ca_file` (PEM).
pub fn config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{shown}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Trust `ca_file` too, for every connection of this process that brings no
/// configuration of its own (what `--ca-file` does). Only the first call counts.
pub fn trust_ca_file(ca_file: &Path) -> Result<(), String> {
    let config = config(Some(ca_file))?;
    DEFAULT.set(config).map_err(|_| "the process's TLS roots are already set".to_string())
}

/// The process's configuration: the public roots, and the `--ca-file` if one was given.
pub fn default_config() -> Arc<ClientConfig> {
    // Without a file to read, only the builder could fail, and ring supports every safe
    // default version.
    DEFAULT.get_or_init(|| config(None).unwrap_or_else(|e| unreachable!("rustls with ring: {e}"))).clone()
}

/// The sentence for a certificate `host` presented that was not accepted, if `err` is
/// one (found through io and tungstenite errors); None for other errors.
pub fn certificate_problem(host: &str, err: &(dyn Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
                    Some(format!("{host}'s certificate is not signed by a trusted CA (give its CA with --ca-file)"))
                }
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
                    Some(format!("{host}'s certificate is not valid for {host} (it is for {})", presented.join(", ")))
                }
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                    Some(format!("{host}'s certificate is not valid for {host}"))
                }
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => Some(format!("{host}'s certificate has expired")),
                rustls::Error::InvalidCertificate(other) => {
                    Some(format!("{host}'s certificate is refused ({other:?})"))
                }
                _ => None,
            };
        }
        let inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &(dyn Error + 'static));
        current = inner.or_else(|| e.source());
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_inside_io_and_tungstenite_is_one_sentence() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let err = tokio_tungstenite::tungstenite::Error::Io(io);
        let s = certificate_problem("chat.example", &err).unwrap();
        assert_eq!(s, "chat.example's certificate is not signed by a trusted CA (give its CA with --ca-file)");
        let refused = tokio_tungstenite::tungstenite::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(certificate_problem("chat.example", &refused), None);
    }

    #[test]
    fn a_file_without_certificates_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("l4tls-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let err = config(Some(&dir)).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
