//! The client's background task: connect, resume, pump frames, reconnect.
//!
//! Owns the state that must survive reconnects (the last sequence seen per room and
//! the unacked sends) and the rules in [`crate::client`]'s module docs. Commands that
//! arrive while disconnected are applied to that state and take effect on the next
//! connection.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{ClientConfig, Cmd, Event};
use crate::protocol::{ClientMsg, ErrorCode, FrameRef, Payload, ServerMsg, close};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Default)]
struct RoomState {
    /// Newest sequence delivered to the application.
    last: Option<u64>,
    /// The room's head announced by the latest `joined` of a resume.
    resumed_head: Option<u64>,
    /// The server refused a send with `not_joined`: resend this room's unacked messages
    /// once the rejoin is confirmed.
    resend: bool,
}

#[derive(Debug, Default)]
struct State {
    rooms: BTreeMap<String, RoomState>,
    /// (id, room, body), oldest first.
    unacked: VecDeque<(String, String, String)>,
    connected_before: bool,
}

/// How a connection (or an attempt) ended.
enum End {
    Retry { code: Option<u16>, reason: String, at_least: Duration },
    Stop(String),
}

fn retry(reason: impl Into<String>) -> End {
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
        if events.send(Event::Disconnected { code, reason, retry_in }).await.is_err() {
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
    let mut request = config.url.as_str().into_client_request().map_err(|e| End::Stop(format!("bad URL: {e}")))?;
    let headers = request.headers_mut();
    let bearer =
        HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|_| End::Stop("bad token".into()))?;
    headers.insert("authorization", bearer);
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(config.format.protocol()));
    let ws_config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(8 * 1024);
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
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
            match status {
                400 | 401 | 403 | 404 | 426 => Err(End::Stop(format!("HTTP {status}: {body}"))),
                _ => Err(End::Retry { code: None, reason: format!("HTTP {status}: {body}"), at_least: retry_after }),
            }
        }
        Ok(Err(e)) => Err(retry(e.to_string())),
        Err(_) => Err(retry("connect timed out")),
    }
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

struct Session<'a> {
    config: &'a ClientConfig,
    ws: Ws,
    events: &'a mpsc::Sender<Event>,
    last_sent: Instant,
    last_received: Instant,
    ping_sent: Option<Instant>,
    /// From the welcome: larger bodies are refused here, not sent (the server would close).
    max_message_size: usize,
}

impl<'a> Session<'a> {
    fn new(config: &'a ClientConfig, ws: Ws, events: &'a mpsc::Sender<Event>) -> Self {
        let now = Instant::now();
        Session {
            config,
            ws,
            events,
            last_sent: now,
            last_received: now,
            ping_sent: None,
            max_message_size: usize::MAX,
        }
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), End> {
        let frame = match self.config.format.encode(msg) {
            Payload::Text(t) => Message::Text(t.into()),
            Payload::Binary(b) => Message::Binary(b.into()),
        };
        self.last_sent = Instant::now();
        self.ws.send(frame).await.map_err(|e| retry(format!("send failed: {e}")))
    }

    async fn emit(&self, event: Event) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Stop("the application dropped the client".into()))
    }

    /// How the connection ended, and whether it got as far as the welcome.
    async fn run(mut self, state: &mut State, cmds: &mut mpsc::Receiver<Cmd>) -> (End, bool) {
        match self.serve(state, cmds).await {
            Ok(never) => match never {},
            Err(end) => (end, self.max_message_size != usize::MAX),
        }
    }

    async fn serve(
        &mut self,
        state: &mut State,
        cmds: &mut mpsc::Receiver<Cmd>,
    ) -> Result<std::convert::Infallible, End> {
        let user = self.welcome().await?;
        self.emit(Event::Connected { user, resumed: state.connected_before }).await?;
        state.connected_before = true;
        self.restore(state).await?;
        let silence = self.config.ping_after + self.config.pong_timeout;
        loop {
            let deadline = match self.ping_sent {
                Some(at) => at + self.config.pong_timeout,
                None => self.last_sent + self.config.ping_after,
            }
            .min(self.last_received + silence);
            tokio::select! {
                biased;
                frame = self.ws.next() => {
                    self.ping_sent = None;
                    self.last_received = Instant::now();
                    self.incoming(state, frame).await?;
                }
                cmd = cmds.recv() => self.command(state, cmd).await?,
                () = sleep_until(deadline) => {
                    if self.ping_sent.is_some() {
                        return Err(retry("no reply to a ping within the pong timeout"));
                    }
                    if self.last_received.elapsed() >= silence {
                        // Sending all along does not prove the way back works.
                        return Err(retry("nothing received for ping_after + pong_timeout"));
                    }
                    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
                    self.send(&ClientMsg::Ping { t }).await?;
                    self.ping_sent = Some(Instant::now());
                }
            }
        }
    }

    /// The server speaks first; nothing else is sent before its welcome.
    async fn welcome(&mut self) -> Result<String, End> {
        let first = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await;
        match first {
            Ok(Some(Ok(frame))) => match self.decode(&frame) {
                Some(ServerMsg::Welcome { user, max_message_size, .. }) => {
                    self.max_message_size = max_message_size;
                    Ok(user)
                }
                _ => Err(retry("the server did not start with a welcome")),
            },
            Ok(Some(Err(e))) => Err(retry(e.to_string())),
            Ok(None) => Err(retry("closed before the welcome")),
            Err(_) => Err(retry("no welcome within 10 s")),
        }
    }

    /// After (re)connecting: rejoin every room (resuming from the last sequence seen)
    /// and resend every unacked message with its original id.
    async fn restore(&mut self, state: &mut State) -> Result<(), End> {
        let resume: BTreeMap<String, u64> =
            state.rooms.iter().filter_map(|(name, r)| Some((name.clone(), r.last?))).collect();
        let fresh: Vec<String> = state.rooms.iter().filter(|(_, r)| r.last.is_none()).map(|(n, _)| n.clone()).collect();
        if !resume.is_empty() {
            self.send(&ClientMsg::Resume { rooms: resume }).await?;
        }
        for room in fresh {
            self.send(&ClientMsg::Join { room, since: None }).await?;
        }
        let unacked: Vec<_> = state.unacked.iter().cloned().collect();
        for (id, room, body) in unacked {
            self.send(&ClientMsg::Send { room, id, body }).await?;
        }
        Ok(())
    }

    fn decode(&self, frame: &Message) -> Option<ServerMsg> {
        let frame = match frame {
            Message::Text(t) => FrameRef::Text(t.as_str()),
            Message::Binary(b) => FrameRef::Binary(b),
            _ => return None,
        };
        self.config.format.decode(frame).ok()
    }

    async fn incoming(
        &mut self,
        state: &mut State,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        let frame = match frame {
            None => return Err(retry("connection closed")),
            Some(Err(e)) => return Err(retry(e.to_string())),
            Some(Ok(Message::Close(close))) => {
                let (code, reason) = close.map_or((1005, String::new()), |c| (u16::from(c.code), c.reason.to_string()));
                return Err(if close::should_reconnect(code) {
                    End::Retry { code: Some(code), reason, at_least: Duration::ZERO }
                } else {
                    End::Stop(format!("closed by the server: {code} {reason}"))
                });
            }
            Some(Ok(frame)) => frame,
        };
        let Some(msg) = self.decode(&frame) else { return Ok(()) };
        match msg {
            ServerMsg::Message(m) => {
                let Some(room) = state.rooms.get_mut(&m.room) else { return Ok(()) };
                let last = room.last;
                if last.is_some_and(|last| m.seq <= last) {
                    return Ok(());
                }
                room.last = Some(m.seq);
                if let Some(last) = last.filter(|last| m.seq > last + 1) {
                    // Never expected (numbers have no gaps), but never silent either.
                    self.emit(Event::Gap { room: m.room.clone(), from: last + 1, to: m.seq - 1 }).await?;
                }
                self.emit(Event::Message(m)).await
            }
            ServerMsg::Joined { room, seq } => {
                let resend = state.rooms.get_mut(&room).is_some_and(|r| std::mem::take(&mut r.resend));
                if resend {
                    let again: Vec<_> = state.unacked.iter().filter(|(_, r, _)| *r == room).cloned().collect();
                    for (id, room, body) in again {
                        self.send(&ClientMsg::Send { room, id, body }).await?;
                    }
                }
                if let Some(r) = state.rooms.get_mut(&room) {
                    match r.last {
                        None => r.last = Some(seq),
                        // The room restarted below what we saw (its store was reset):
                        // follow the server's numbering from here.
                        Some(last) if seq < last => r.last = Some(seq),
                        Some(_) => r.resumed_head = Some(seq),
                    }
                }
                self.emit(Event::Joined { room, seq }).await
            }
            ServerMsg::Ack { room, id, seq } => {
                state.unacked.retain(|(pending, _, _)| *pending != id);
                self.emit(Event::Acked { room, id, seq }).await
            }
            ServerMsg::Error { code: ErrorCode::ResumeTooFar, room: Some(room), text, .. } => {
                let Some(r) = state.rooms.get_mut(&room) else { return Ok(()) };
                match (r.last, r.resumed_head.take()) {
                    (Some(last), Some(head)) if head > last => {
                        r.last = Some(head);
                        self.emit(Event::Gap { room, from: last + 1, to: head }).await
                    }
                    _ => {
                        self.emit(Event::Error { code: ErrorCode::ResumeTooFar, text, room: Some(room), id: None })
                            .await
                    }
                }
            }
            ServerMsg::Error { code, text, id, room } => {
                let tracked = room.as_ref().is_some_and(|r| state.rooms.contains_key(r));
                if code == ErrorCode::NotJoined && tracked && id.is_some() {
                    // The server lost this membership (a rejoin failed): join again from
                    // where we are; the send stays unacked and goes again after `joined`.
                    if let Some(r) = room.as_ref().and_then(|r| state.rooms.get_mut(r)) {
                        r.resend = true;
                        let since = r.last;
                        self.send(&ClientMsg::Join { room: room.clone().unwrap_or_default(), since }).await?;
                    }
                } else if let Some(id) = id.as_ref().filter(|_| code.is_permanent_for_send()) {
                    // A send the server will never accept is not resent.
                    state.unacked.retain(|(pending, _, _)| pending != id);
                }
                self.emit(Event::Error { code, text, room, id }).await
            }
            ServerMsg::History { room, messages, more } => self.emit(Event::History { room, messages, more }).await,
            ServerMsg::Left { room } => self.emit(Event::Left { room }).await,
            ServerMsg::Welcome { .. } | ServerMsg::Pong { .. } => Ok(()),
        }
    }

    async fn command(&mut self, state: &mut State, cmd: Option<Cmd>) -> Result<(), End> {
        match cmd {
            None => {
                let _ = self.ws.close(None).await;
                Err(End::Stop("the application dropped the client".into()))
            }
            Some(Cmd::Close(done)) => {
                let frame = CloseFrame { code: close::NORMAL.into(), reason: "bye".into() };
                let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(Some(frame))).await;
                let _ = done.send(());
                Err(End::Stop("closed by the application".into()))
            }
            Some(Cmd::Drop) => Err(retry("connection dropped by the application")),
            Some(Cmd::Join(room)) => {
                let since = state.rooms.entry(room.clone()).or_default().last;
                self.send(&ClientMsg::Join { room, since }).await
            }
            Some(Cmd::Leave(room)) => {
                state.rooms.remove(&room);
                self.send(&ClientMsg::Leave { room }).await
            }
            Some(Cmd::Send { room, id, body }) => {
                // Frame overhead is under 200 bytes; a body the server would close the
                // connection for (1009) is refused here instead.
                if body.len() + room.len() + id.len() + 200 > self.max_message_size {
                    let text = format!("the body is larger than the server's {} bytes", self.max_message_size);
                    let (room, id) = (Some(room), Some(id));
                    return self.emit(Event::Error { code: ErrorCode::BadBody, text, room, id }).await;
                }
                state.unacked.push_back((id.clone(), room.clone(), body.clone()));
                self.send(&ClientMsg::Send { room, id, body }).await
            }
            Some(Cmd::History { room, before, limit }) => self.send(&ClientMsg::History { room, before, limit }).await,
        }
    }
}
