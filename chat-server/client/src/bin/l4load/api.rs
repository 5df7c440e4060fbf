//! `l4load fanout --api-key`: the publishers post over the chat server's HTTP API for
//! the app's backend (`POST /api/rooms/{room}/messages`, one keep-alive HTTP/1.1
//! connection each) instead of sending on their WebSocket, so the same run compares the
//! two ways in. Each post waits for its answer (201) before the next.

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

pub struct Poster {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: String,
    host: String,
    auth: String,
}

impl Poster {
    /// A connection to the server of `ws_url` (ws:// only), posting into `room`.
    pub async fn connect(ws_url: &str, room: &str, key: &str) -> anyhow::Result<Poster> {
        let url = url::Url::parse(ws_url).context("bad --url")?;
        if url.scheme() != "ws" {
            bail!("--api-key posts over plain HTTP: give a ws:// --url");
        }
        let host = url.host_str().context("--url has no host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Poster {
            sender,
            path: format!("/api/rooms/{room}/messages"),
            host: format!("{host}:{port}"),
            auth: format!("Bearer {key}"),
        })
    }

    /// One post of `body` as message `id`; an error unless the server stored it (201).
    pub async fn post(&mut self, id: &str, body: &str) -> anyhow::Result<()> {
        let json = serde_json::json!({ "id": id, "body": body }).to_string();
        let request = Request::post(&self.path)
            .header("host", &self.host)
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::CREATED {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    }
}
