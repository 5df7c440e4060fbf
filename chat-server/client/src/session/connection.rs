//! One connection of the client's background task, from the welcome to its end:
//! restore (resume every room, resend every unacked send), then pump frames, commands
//! and the heartbeat, keeping the state in [`super::State`] up to date. A send, join or
//! resume the server refuses `unavailable` (its storage is away) is tried again on the
//! same connection after a growing backoff.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::pace::Pace;
use super::{End, State, Ws, retry};
use crate::client::{ClientConfig, Cmd, Event};
use crate::protocol::{ClientMsg, ErrorCode, FrameRef, Payload, ServerMsg, close};

/// Resent messages awaiting their ack at most, after a reconnect.
const RESEND_WINDOW: usize = 64;

pub(super) struct Session<'a> {
    config: &'a ClientConfig,
    ws: Ws,
    events: &'a mpsc::Sender<Event>,
    last_sent: Instant,
    last_received: Instant,
    ping_sent: Option<Instant>,
    /// Unacked messages still to resend on this connection, oldest first.
    backlog: VecDeque<String>,
    /// Resent and not yet acked (or refused).
    in_flight: usize,
    /// From the welcome: larger bodies are refused here, not sent (the server would close).
    max_message_size: usize,
    /// From the welcome: every frame waits its turn under the server's rate.
    pace: Pace,
    /// The server's storage was unavailable for a send, a join or a resume: when to try
    /// them again on this connection, and how many times in a row it has been.
    retry: Option<Instant>,
    retries: u32,
    /// The sends refused `unavailable` (oldest first), and the rooms whose join or resume was.
    retry_ids: Vec<String>,
    retry_rooms: std::collections::BTreeSet<String>,
}

impl<'a> Session<'a> {
    pub(super) fn new(config: &'a ClientConfig, ws: Ws, events: &'a mpsc::Sender<Event>) -> Self {
        let now = Instant::now();
        Session {
            config,
            ws,
            events,
            last_sent: now,
            last_received: now,
            ping_sent: None,
            backlog: VecDeque::new(),
            in_flight: 0,
            max_message_size: usize::MAX,
            pace: Pace::unknown(),
            retry: None,
            retries: 0,
            retry_ids: Vec::new(),
            retry_rooms: std::collections::BTreeSet::new(),
        }
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), End> {
        let frame = match self.config.format.encode(msg) {
            Payload::Text(t) => Message::Text(t.into()),
            Payload::Binary(b) => Message::Binary(b.into()),
        };
        let wait = self.pace.take(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.last_sent = Instant::now();
        self.ws.send(frame).await.map_err(|e| retry(format!("send failed: {e}")))
    }

    async fn emit(&self, event: Event) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Stop("the application dropped the client".into()))
    }

    /// How the connection ended, and whether it got as far as the welcome.
    pub(super) async fn run(mut self, state: &mut State, cmds: &mut mpsc::Receiver<Cmd>) -> (End, bool) {
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
                () = sleep_until(self.retry.unwrap_or(deadline)), if self.retry.is_some() => self.retry_now(state).await?,
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
                Some(ServerMsg::Welcome { user, max_message_size, max_requests_per_second, .. }) => {
                    self.max_message_size = max_message_size;
                    self.pace = Pace::for_server(max_requests_per_second);
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
        // Resent a window at a time, reading in between: a large backlog written all at
        // once would have its echoes and acks pile up unread on the server.
        self.backlog = state.unacked.iter().map(|(id, _, _)| id.clone()).collect();
        self.in_flight = 0;
        self.pump(state).await
    }

    /// Sends backlogged messages until `RESEND_WINDOW` are awaiting their ack.
    async fn pump(&mut self, state: &State) -> Result<(), End> {
        while self.in_flight < RESEND_WINDOW {
            let Some(id) = self.backlog.pop_front() else { break };
            let Some((id, room, body)) = state.unacked.iter().find(|(pending, _, _)| *pending == id).cloned() else {
                continue; // acked or refused meanwhile
            };
            self.in_flight += 1;
            self.send(&ClientMsg::Send { room, id, body }).await?;
        }
        Ok(())
    }

    /// The storage outage's backoff is over: join or resume again the rooms that were
    /// refused, and send again the refused sends, in their order.
    async fn retry_now(&mut self, state: &State) -> Result<(), End> {
        self.retry = None;
        for room in std::mem::take(&mut self.retry_rooms) {
            if let Some(r) = state.rooms.get(&room) {
                let since = r.last;
                self.send(&ClientMsg::Join { room, since }).await?;
            }
        }
        let ids = std::mem::take(&mut self.retry_ids);
        for id in ids.into_iter().rev() {
            self.backlog.push_front(id);
        }
        self.pump(state).await
    }

    /// The storage was unavailable: try again after the backoff (exponential, full
    /// jitter, as for a reconnection), on this connection.
    fn retry_later(&mut self) {
        if self.retry.is_none() {
            let (base, max) = (self.config.backoff_base, self.config.backoff_max);
            let ceiling = max.min(base.saturating_mul(1 << self.retries.min(16)));
            self.retry = Some(Instant::now() + ceiling.mul_f64(rand::random_range(0.0..1.0)));
            self.retries = self.retries.saturating_add(1);
        }
    }

    /// An ack or a final refusal of a send: room for the next backlogged one.
    async fn settled(&mut self, state: &State) -> Result<(), End> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.pump(state).await
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
                self.retries = 0;
                state.unacked.retain(|(pending, _, _)| *pending != id);
                self.settled(state).await?;
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
                    self.settled(state).await?;
                } else if code == ErrorCode::Unavailable && (id.is_some() || tracked) {
                    // The server could not store a send, or not join or resume a room we
                    // follow (its database is away a moment): the same again on this
                    // connection after the backoff, which grows while it lasts (a storage
                    // outage gets fewer tries from every client, not more; a room is never
                    // silently left). The connection itself is fine: no reconnection.
                    let queued = match &id {
                        Some(id) if state.unacked.iter().any(|(pending, _, _)| pending == id) => {
                            if !self.retry_ids.contains(id) {
                                self.retry_ids.push(id.clone());
                            }
                            self.settled(state).await?;
                            true
                        }
                        Some(_) => false, // acked or refused meanwhile
                        None => match room.clone() {
                            Some(r) => {
                                self.retry_rooms.insert(r);
                                true
                            }
                            None => false,
                        },
                    };
                    if queued {
                        self.retry_later();
                    }
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
                if self.backlog.is_empty() {
                    self.send(&ClientMsg::Send { room, id, body }).await
                } else {
                    // Behind the backlog, so the room gets this client's messages in order.
                    self.backlog.push_back(id);
                    self.pump(state).await
                }
            }
            Some(Cmd::History { room, before, limit }) => self.send(&ClientMsg::History { room, before, limit }).await,
        }
    }
}
