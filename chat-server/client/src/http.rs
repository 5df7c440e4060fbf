//! Plain HTTP/1.1 calls: `POST /api/auth/register` and `/api/auth/login`, and a GET
//! for the health and metrics endpoints.
//!
//! A small hyper client on one TCP connection per call (TLS for `https://`, with the
//! process's roots, see `tls`); these run once per session, so there is no pool.

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;

/// For connecting, and again for the whole exchange.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("bad server address {0:?}: expected http://host:port or https://host")]
    Address(String),
    /// The server's certificate is not accepted (one sentence, see `tls`).
    #[error("{0}")]
    Certificate(String),
    #[error("cannot reach {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("{status}: {error}: {message}")]
    Refused { status: u16, error: String, message: String },
    #[error("unexpected reply: {0}")]
    Reply(String),
}

/// A token and the user it names.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub token: String,
    pub user: SessionUser,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionUser {
    pub id: i64,
    pub name: String,
}

/// Creates an account; `base` is `http://host:port` or `https://host`.
pub async fn register(base: &str, username: &str, password: &str) -> Result<Session, AuthError> {
    post_credentials(base, "/api/auth/register", username, password).await
}

pub async fn login(base: &str, username: &str, password: &str) -> Result<Session, AuthError> {
    post_credentials(base, "/api/auth/login", username, password).await
}

async fn post_credentials(base: &str, path: &str, username: &str, password: &str) -> Result<Session, AuthError> {
    let body = json!({ "username": username, "password": password }).to_string();
    let (status, bytes) = post(base, path, body).await?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&bytes).map_err(|e| AuthError::Reply(e.to_string()));
    }
    #[derive(Deserialize)]
    struct Failure {
        error: String,
        message: String,
    }
    match serde_json::from_slice::<Failure>(&bytes) {
        Ok(f) => Err(AuthError::Refused { status, error: f.error, message: f.message }),
        Err(_) => Err(AuthError::Reply(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)))),
    }
}

/// One POST with a JSON body; returns the status and the body.
pub async fn post(base: &str, path: &str, body: String) -> Result<(u16, Bytes), AuthError> {
    let (status, _, bytes) = request(base, "POST", path, Some(body)).await?;
    Ok((status, bytes))
}

/// One GET; returns the status, the headers and the body.
pub async fn get(base: &str, path: &str) -> Result<(u16, hyper::HeaderMap, Bytes), AuthError> {
    request(base, "GET", path, None).await
}

async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, hyper::HeaderMap, Bytes), AuthError> {
    let url = url::Url::parse(base).map_err(|_| AuthError::Address(base.into()))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(AuthError::Address(base.into())),
    };
    let host = url.host_str().ok_or_else(|| AuthError::Address(base.into()))?.to_owned();
    let port = url.port_or_known_default().ok_or_else(|| AuthError::Address(base.into()))?;
    let addr = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let connect = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port));
    let stream = tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| AuthError::Reply(format!("no connection to {addr} within {TIMEOUT:?}")))?
        .map_err(|source| AuthError::Connect { addr: addr.clone(), source })?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &addr)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| AuthError::Reply(e.to_string()))?;
    if !tls {
        return exchange(stream, request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
        .map_err(|_| AuthError::Address(base.into()))?;
    let connector = tokio_rustls::TlsConnector::from(crate::tls::default_config());
    let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| AuthError::Reply(format!("no TLS handshake with {addr} within {TIMEOUT:?}")))?
        .map_err(|e| match crate::tls::certificate_problem(&host, &e) {
            Some(sentence) => AuthError::Certificate(sentence),
            None => AuthError::Connect { addr: addr.clone(), source: e },
        })?;
    exchange(stream, request).await
}

/// One request and its whole answer on a connected stream (TLS or not).
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(u16, hyper::HeaderMap, Bytes), AuthError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok::<_, AuthError>((status, headers, bytes))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| AuthError::Reply(format!("no reply within {TIMEOUT:?}")))?
}
