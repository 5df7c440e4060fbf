//! The chat client: one background task keeps a connection alive and hands the
//! application an ordered stream of [`Event`]s.
//!
//! Guarantees to the application, across any number of reconnects:
//! - each room's messages arrive exactly once and in sequence order (the task remembers
//!   the last sequence per room, asks the server to resume from it, and drops anything
//!   at or below it);
//! - every message passed to [`Client::send`] is stored exactly once: it stays in an
//!   unacked list and is resent with its original id after a reconnect until acked (the
//!   server treats a resend of a stored id as a no-op and acks the original).
//!
//! Liveness follows the plan: a ping when nothing was sent for `ping_after` (45 s), and
//! a reconnect when nothing at all arrives within `pong_timeout` (15 s) of it; any
//! incoming frame (the server's own pings included) counts as life. Reconnects wait
//! `random(0, min(backoff_max, backoff_base * 2^attempt))` (exponential backoff with
//! full jitter), and never less than a 503's `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::protocol::{ChatMessage, ErrorCode, Format};
use crate::session;

/// How to reach the server and how patient to be.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/ws`, or `wss://` (TLS).
    pub url: String,
    pub token: String,
    pub format: Format,
    pub ping_after: Duration,
    pub pong_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Give up after this many failed connection attempts in a row (None: never).
    pub max_attempts: Option<u32>,
    /// TLS for `wss://` (None: [`crate::tls::default_config`], the public roots and the
    /// process's `--ca-file`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: token.into(),
            format: Format::Json,
            ping_after: Duration::from_secs(45),
            pong_timeout: Duration::from_secs(15),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_attempts: None,
            tls: None,
        }
    }

    /// TLS of its own for `wss://` (see [`crate::tls::config`] for a private CA).
    pub fn tls(mut self, tls: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }
}

/// The handshake request for the chat server: the token as `Authorization: Bearer` and
/// the format as the subprotocol.
pub fn handshake_request(
    url: &str,
    token: &str,
    format: Format,
) -> Result<tungstenite::handshake::client::Request, String> {
    let mut request = url.into_client_request().map_err(|e| format!("bad URL: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "bad token".to_string())?;
    let headers = request.headers_mut();
    headers.insert("authorization", bearer);
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(format.protocol()));
    Ok(request)
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection is up (`resumed` after the first one).
    Connected {
        user: String,
        resumed: bool,
    },
    Joined {
        room: String,
        seq: u64,
    },
    Left {
        room: String,
    },
    /// A room message, exactly once and in order.
    Message(ChatMessage),
    /// The message the application sent with this id is stored as `seq`.
    Acked {
        room: String,
        id: String,
        seq: u64,
    },
    History {
        room: String,
        messages: Vec<ChatMessage>,
        more: bool,
    },
    /// The server replayed less than was missed (`resume_too_far`): sequence numbers
    /// `from..=to` of `room` were skipped; page them in with [`Client::history`].
    Gap {
        room: String,
        from: u64,
        to: u64,
    },
    Error {
        code: ErrorCode,
        text: String,
        /// The room and the send (client id) it is about, when there are.
        room: Option<String>,
        id: Option<String>,
    },
    /// The connection dropped; a reconnect follows after `retry_in`.
    Disconnected {
        code: Option<u16>,
        reason: String,
        retry_in: Duration,
        /// When the connection ended: the application may read this event much later.
        at: std::time::Instant,
    },
    /// The client stopped for good (closed by the application, bad token, policy close,
    /// or `max_attempts` reached).
    Closed {
        reason: String,
    },
}

#[derive(Debug)]
pub(crate) enum Cmd {
    Join(String),
    Leave(String),
    Send {
        room: String,
        id: String,
        body: String,
    },
    History {
        room: String,
        before: Option<u64>,
        limit: Option<u32>,
    },
    /// Drop the socket without a close frame (as a network failure would) and reconnect.
    Drop,
    Close(oneshot::Sender<()>),
}

/// A handle to the background task; dropping it stops the task.
///
/// Read [`Client::next_event`] continuously, from one task, while others send through
/// [`Client::sender`] handles: the background task waits for the application to take
/// its events (that is its backpressure), so a task that only sends and never reads
/// events will, after a few thousand messages, wait forever.
#[derive(Debug)]
pub struct Client {
    sender: Sender,
    events: mpsc::Receiver<Event>,
}

/// A cloneable handle for commands (join, leave, send, history), for tasks other than
/// the one reading events.
#[derive(Debug, Clone)]
pub struct Sender {
    cmd: mpsc::Sender<Cmd>,
    next_id: Arc<AtomicU64>,
    /// 64 random bits per client, so a new client's ids never repeat an old one's.
    prefix: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("the client has stopped")]
pub struct Stopped;

impl Client {
    /// Starts the background task, which connects at once and keeps reconnecting.
    pub fn start(config: ClientConfig) -> Client {
        let (cmd, cmd_rx) = mpsc::channel(1024);
        let (events_tx, events) = mpsc::channel(4096);
        tokio::spawn(session::run(config, cmd_rx, events_tx));
        let prefix: Arc<str> = Arc::from(format!("{:016x}", rand::random::<u64>()));
        Client { sender: Sender { cmd, next_id: Arc::new(AtomicU64::new(0)), prefix }, events }
    }

    /// A handle for sending from another task.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    pub async fn join(&self, room: &str) -> Result<(), Stopped> {
        self.sender.join(room).await
    }

    pub async fn leave(&self, room: &str) -> Result<(), Stopped> {
        self.sender.leave(room).await
    }

    /// Sends `body` to `room` with a fresh id, which is returned; the matching
    /// [`Event::Acked`] says it is stored.
    pub async fn send(&self, room: &str, body: &str) -> Result<String, Stopped> {
        self.sender.send(room, body).await
    }

    pub async fn send_with_id(&self, room: &str, id: &str, body: &str) -> Result<(), Stopped> {
        self.sender.send_with_id(room, id, body).await
    }

    pub async fn history(&self, room: &str, before: Option<u64>, limit: Option<u32>) -> Result<(), Stopped> {
        self.sender.history(room, before, limit).await
    }

    /// Simulates a network failure: the socket is dropped and the client reconnects.
    pub async fn drop_connection(&self) -> Result<(), Stopped> {
        self.sender.command(Cmd::Drop).await
    }

    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Closes the connection cleanly (close 1000) and stops the task, within 2 s.
    pub async fn close(self) {
        let Client { sender, events } = self;
        drop(events); // the task must not wait for us to read while it closes
        let (done, wait) = oneshot::channel();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if sender.cmd.send(Cmd::Close(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
    }
}

impl Sender {
    async fn command(&self, cmd: Cmd) -> Result<(), Stopped> {
        self.cmd.send(cmd).await.map_err(|_| Stopped)
    }

    pub async fn join(&self, room: &str) -> Result<(), Stopped> {
        self.command(Cmd::Join(room.to_string())).await
    }

    pub async fn leave(&self, room: &str) -> Result<(), Stopped> {
        self.command(Cmd::Leave(room.to_string())).await
    }

    /// Sends `body` to `room` with a fresh id, which is returned.
    pub async fn send(&self, room: &str, body: &str) -> Result<String, Stopped> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{}-{n}", self.prefix);
        self.send_with_id(room, &id, body).await?;
        Ok(id)
    }

    /// Sends with an id of the caller's choosing (1-64 printable ASCII characters).
    pub async fn send_with_id(&self, room: &str, id: &str, body: &str) -> Result<(), Stopped> {
        self.command(Cmd::Send { room: room.into(), id: id.into(), body: body.into() }).await
    }

    pub async fn history(&self, room: &str, before: Option<u64>, limit: Option<u32>) -> Result<(), Stopped> {
        self.command(Cmd::History { room: room.into(), before, limit }).await
    }
}
