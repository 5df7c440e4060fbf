//! The client's background task: connect, resume, pump frames, reconnect.
//!
//! Owns the state that must survive reconnects (the last sequence seen per room and
//! the unacked sends) and the rules in [`crate::client`]'s module docs. Commands that
//! arrive while disconnected are applied to that state and take effect on the next
//! connection.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{ClientConfig, Cmd, Event, handshake_request};

mod connection;
mod pace;

use connection::Session;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Default)]
pub(super) struct RoomState {
    /// Newest sequence delivered to the application.
    last: Option<u64>,
    /// The room's head announced by the latest `joined` of a resume.
    resumed_head: Option<u64>,
    /// The server refused a send with `not_joined`: resend this room's unacked messages
    /// once the rejoin is confirmed.
    resend: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    rooms: BTreeMap<String, RoomState>,
    /// (id, room, body), oldest first.
    unacked: VecDeque<(String, String, String)>,
    connected_before: bool,
}

/// How a connection (or an attempt) ended.
pub(super) enum End {
    Retry { code: Option<u16>, reason: String, at_least: Duration },
    Stop(String),
}

pub(super) fn retry(reason: impl Into<String>) -> End {
    End::Retry { code: None, reason: reason.into(), at_least: Duration::ZERO }
}

pub(crate) async fn run(config: ClientConfig, mut cmds: mpsc::Receiver<Cmd>, events: mpsc::Sender<Event>) {
    let mut state = State::default();
    let mut attempt: u32 = 0;
    loop {
        let end = match connect(&config).await {
            Ok(ws) => {
                let (end, welcomed) = Session::new(&config, ws, &events).run(&mut state, &mut cmds).await;
                // Only a connection that got as far as the welcome resets the backoff: a
                // server that accepts and closes at once must not be hammered.
                if welcomed {
                    attempt = 0;
                }
                end
            }
            Err(end) => end,
        };
        let at = std::time::Instant::now();
        let (code, reason, at_least) = match end {
            End::Stop(reason) => {
                let _ = events.send(Event::Closed { reason }).await;
                return;
            }
            End::Retry { code, reason, at_least } => (code, reason, at_least),
        };
        attempt += 1;
        if let Some(max) = config.max_attempts.filter(|max| attempt > *max) {
            let _ = events.send(Event::Closed { reason: format!("gave up after {max} attempts: {reason}") }).await;
            return;
        }
        let ceiling = config.backoff_max.min(config.backoff_base.saturating_mul(1 << attempt.min(16)));
        let retry_in = ceiling.mul_f64(rand::random_range(0.0..1.0)).max(at_least);
        if events.send(Event::Disconnected { code, reason, retry_in, at }).await.is_err() {
            return;
        }
        let wake = Instant::now() + retry_in;
        loop {
            tokio::select! {
                () = sleep_until(wake) => break,
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(Cmd::Close(done)) => {
                        let _ = events.send(Event::Closed { reason: "closed by the application".into() }).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => state.offline(cmd),
                },
            }
        }
    }
}

async fn connect(config: &ClientConfig) -> Result<Ws, End> {
    let request = handshake_request(&config.url, &config.token, config.format).map_err(End::Stop)?;
    let ws_config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(8 * 1024);
    let tls = config.tls.clone().unwrap_or_else(crate::tls::default_config);
    let connector = tokio_tungstenite::Connector::Rustls(tls);
    let attempt = tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config), true, Some(connector));
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Duration::ZERO, |s: u64| Duration::from_secs(s.min(60)));
            // The server's error body in one sentence (`{"error","message"}`), not raw JSON.
            let said = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| Some(format!("{} ({})", v.get("message")?.as_str()?, v.get("error")?.as_str()?)));
            let body = said.unwrap_or(body);
            match status {
                400 | 401 | 403 | 404 | 426 => {
                    Err(End::Stop(format!("the server refused the connection (HTTP {status}): {body}")))
                }
                _ => Err(End::Retry { code: None, reason: format!("HTTP {status}: {body}"), at_least: retry_after }),
            }
        }
        // A certificate the client does not accept will not change by retrying.
        Ok(Err(e)) => match crate::tls::certificate_problem(&host(&config.url), &e) {
            Some(sentence) => Err(End::Stop(sentence)),
            None => Err(retry(e.to_string())),
        },
        Err(_) => Err(retry("connect timed out")),
    }
}

/// The host of a URL, for messages.
fn host(url: &str) -> String {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| url.to_owned())
}

impl State {
    /// A command while disconnected: remembered for the next connection.
    fn offline(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join(room) => {
                self.rooms.entry(room).or_default();
            }
            Cmd::Leave(room) => {
                self.rooms.remove(&room);
            }
            Cmd::Send { room, id, body } => self.unacked.push_back((id, room, body)),
            Cmd::History { .. } | Cmd::Drop | Cmd::Close(_) => {}
        }
    }
}
