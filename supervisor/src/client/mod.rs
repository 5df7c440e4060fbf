//! The CLI side of the control API: HTTP/1.1 with hyper directly, over the
//! daemon's Unix socket or, for another host, its TCP API ([`transport`]). One
//! connection per call: the daemon answers in microseconds, so a pool would only
//! add start-up cost to a short-lived CLI. An answer is read up to [`MAX_ANSWER`]
//! bytes, a streamed one line by line up to [`MAX_LINE`].

pub mod transport;

use std::path::{Path, PathBuf};

use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;

use transport::ConnectError;
pub use transport::Remote;

use crate::wire::types::{ErrorBody, ErrorDetail};

/// Longest line of a streamed answer (a reload's final status table included).
pub const MAX_LINE: usize = 16 << 20;

/// Largest answer read whole (a status of thousands of instances is a few MB).
pub const MAX_ANSWER: usize = 64 << 20;

/// Largest answer read whole from another host's daemon.
pub const MAX_REMOTE_ANSWER: usize = 8 << 20;

/// Longest error sentence of another host kept (its control characters replaced).
const MAX_REMOTE_SENTENCE: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is running in {home} (start one with `l4ctl start`)")]
    NotRunning { home: PathBuf },
    #[error("{}", .detail.message)]
    Api { status: StatusCode, detail: ErrorDetail },
    #[error("no daemon answers at {url} (connection refused)")]
    Unreachable { url: String },
    #[error("talking to the daemon at {at}: {message}")]
    Protocol { at: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Client {
    pub home: PathBuf,
    pub socket: PathBuf,
    /// Another host's daemon, instead of the socket.
    pub remote: Option<Arc<Remote>>,
}

impl Client {
    pub fn new(home: &Path) -> Self {
        Client { home: home.to_path_buf(), socket: crate::wire::home::Paths::socket(home), remote: None }
    }

    /// A client of another host's daemon (its TCP API).
    pub fn remote(home: &Path, remote: Arc<Remote>) -> Self {
        Client { remote: Some(remote), ..Client::new(home) }
    }

    /// What this client talks to: the socket's path or the remote URL.
    pub fn at(&self) -> String {
        match &self.remote {
            Some(r) => r.url.clone(),
            None => self.socket.display().to_string(),
        }
    }

    pub(crate) fn protocol(&self, message: impl ToString) -> ClientError {
        ClientError::Protocol { at: self.at(), message: message.to_string() }
    }

    /// Whether a daemon listens on the socket (one whose connection budget is full
    /// still does: starting another would only fail on its lock).
    pub async fn is_up(&self) -> bool {
        transport::connect(&self.socket, self.remote.as_deref()).await.is_ok()
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let resp = self.request(method, path, body).await?;
        let limit = if self.remote.is_some() { MAX_REMOTE_ANSWER } else { MAX_ANSWER };
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| self.protocol(format!("bad answer: {e}")))
    }

    /// A POST whose answer is one JSON value per line (`application/x-ndjson`):
    /// `on_line` gets each as it arrives. A line is at most [`MAX_LINE`] bytes.
    pub async fn post_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        mut on_line: impl FnMut(T),
    ) -> Result<(), ClientError> {
        let resp = self.request(Method::POST, path, Some(body)).await?;
        self.each_line(resp, |line| {
            if !line.trim_ascii().is_empty() {
                on_line(serde_json::from_slice(line).map_err(|e| self.protocol(format!("bad answer: {e}")))?);
            }
            Ok(())
        })
        .await
    }

    /// `GET /api/v1/events` until the daemon ends the stream: `on_event` gets each
    /// event's JSON (`type`, `app`, `instance`...) as it comes.
    pub async fn events(&self, mut on_event: impl FnMut(serde_json::Value)) -> Result<(), ClientError> {
        let resp = self.request(Method::GET, "/api/v1/events", None).await?;
        self.each_line(resp, |line| {
            if let Some(data) = line.strip_prefix(b"data:") {
                on_event(
                    serde_json::from_slice(data.trim_ascii()).map_err(|e| self.protocol(format!("bad event: {e}")))?,
                );
            }
            Ok(())
        })
        .await
    }

    /// Each line of an answer as it arrives (the last one even without its newline);
    /// a line is at most [`MAX_LINE`] bytes.
    async fn each_line(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        mut on_line: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut body = resp.into_body();
        let (mut buf, mut scanned) = (Vec::<u8>::new(), 0);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.protocol(e))?;
            let Some(data) = frame.data_ref() else { continue };
            buf.extend_from_slice(data);
            while let Some(end) = buf[scanned..].iter().position(|&b| b == b'\n').map(|at| scanned + at) {
                on_line(&buf[..end])?;
                buf.drain(..=end);
                scanned = 0;
            }
            scanned = buf.len();
            if buf.len() > MAX_LINE {
                return Err(self.protocol(format!("an answer line longer than {MAX_LINE} bytes")));
            }
        }
        on_line(&buf)
    }

    /// Send one request; an answer that is not a success becomes [`ClientError::Api`].
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = match transport::connect(&self.socket, self.remote.as_deref()).await {
            Ok(s) => s,
            Err(ConnectError::Absent) => {
                return Err(match &self.remote {
                    Some(r) => ClientError::Unreachable { url: r.url.clone() },
                    None => ClientError::NotRunning { home: self.home.clone() },
                });
            }
            Err(ConnectError::Other(e)) => return Err(self.protocol(e)),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.map_err(|e| self.protocol(e))?;
        tokio::spawn(conn);
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap_or_default()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.remote.as_deref().map_or("l4ctl", Remote::authority))
            .header("content-type", "application/json");
        if let Some(token) = self.remote.as_deref().and_then(Remote::token) {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| self.protocol(e))?;
        let resp = match self.remote.as_deref() {
            // Another host answers the head within its timeout (a stream may then take long).
            Some(remote) => match tokio::time::timeout(remote.timeout(), sender.send_request(req)).await {
                Ok(answer) => answer.map_err(|e| self.protocol(e))?,
                Err(_) => return Err(self.protocol(format!("no answer within {} ms", remote.timeout().as_millis()))),
            },
            None => sender.send_request(req).await.map_err(|e| self.protocol(e))?,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| self.protocol(format!("reading the answer: {e}")))?
                .to_bytes();
            let mut detail =
                serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_else(|_| ErrorDetail {
                    code: "http".into(),
                    message: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                    diagnostics: vec![],
                });
            if let Some(remote) = &self.remote {
                // Another host's words reach this terminal and the daemon's log: bounded,
                // without control characters, and saying where they come from.
                let said: String = detail
                    .message
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(MAX_REMOTE_SENTENCE)
                    .collect();
                detail.message = format!("{} answered HTTP {}: {said}", remote.url, status.as_u16());
                // On a character: `truncate` inside one panics.
                detail.code.truncate(detail.code.floor_char_boundary(64));
            }
            return Err(ClientError::Api { status, detail });
        }
        Ok(resp)
    }
}
