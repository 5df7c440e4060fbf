//! One WebSocket connection, served by a single task from upgrade to close.
//!
//! Owns the connection's timers and its exit: a WebSocket Ping every
//! `HEARTBEAT_INTERVAL` (the first one at a random point of the interval, so a mass
//! reconnect does not synchronise them), a close with 4000 after `CONNECTION_TIMEOUT`
//! without any frame from the client, 4002 when its token expires, 4001 when its queue
//! overflows, 1009 for an oversized frame, 1007/1008 after repeated bad messages and
//! 1012 at a random point of the drain window on shutdown. Whatever the exit, the
//! connection leaves every room and gives back its slot under the cap.
//!
//! Writing: everything for the client is queued in its [`Outbox`]; each wake takes up to
//! `MESSAGE_BATCH_SIZE` frames, feeds them and flushes once. One task per connection
//! (not a reader and a writer) keeps an idle connection to one small allocation; the
//! large request-handling futures are boxed so they exist only while a request runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use layer4_chat_client::protocol::{ClientMsg, DecodeError, ErrorCode, Format, FrameRef, ServerMsg, close};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::Slot;
use super::io::ConnIo;
use super::outbox::{Outbox, Stopped};
use crate::Ctx;
use crate::auth::{User, now_secs};
use crate::hub::{Joined, Room};
use crate::stats::Reason;

/// Bad messages tolerated before the connection is closed.
const STRIKES: u32 = 10;
const HISTORY_DEFAULT: u32 = 50;
const HISTORY_MAX: u32 = 500;
/// tungstenite's read chunk per connection. A larger frame is still read whole: the
/// buffer grows to the frame's length while it is read.
const READ_BUFFER: usize = 1024;

impl Drop for Conn {
    fn drop(&mut self) {
        self.leave_all();
    }
}

/// How a connection ends: the counter reason and the close frame to send, if any.
type Exit = (Reason, Option<(u16, &'static str)>);

type Ws = WebSocketStream<ConnIo>;

/// A connection's state; dropping it (even while unwinding from a panic) leaves every
/// joined room, so no room keeps a dead member and its socket.
struct Conn {
    id: u64,
    user: User,
    outbox: Arc<Outbox>,
    rooms: HashMap<Arc<str>, Arc<Room>>,
    malformed: u32,
    unknown: u32,
}

pub async fn serve(stream: TcpStream, read_buf: Bytes, ctx: Arc<Ctx>, user: User, format: Format, slot: Slot) {
    let s = &ctx.settings;
    ctx.stats.connections_total.fetch_add(1, Relaxed);
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let id = ctx.next_conn_id();
    let outbox = Arc::new(Outbox::new(format, s.queue_max_bytes, s.message_batch_size, stream.clone(), id as usize));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(s.max_message_size))
        .max_frame_size(Some(s.max_message_size));
    let io = ConnIo { stream, outbox: outbox.clone() };
    // Copy what hyper read past the request (usually nothing) and let its buffer go:
    // keeping the `Bytes` would keep hyper's whole read buffer alive per connection.
    let early = read_buf.to_vec();
    drop(read_buf);
    let mut ws = WebSocketStream::from_partially_read(io, early, Role::Server, Some(config)).await;
    outbox.reply(&ServerMsg::Welcome {
        user: user.name.clone(),
        heartbeat_ms: s.heartbeat_interval.as_millis() as u64,
        timeout_ms: s.connection_timeout.as_millis() as u64,
        max_message_size: s.max_message_size,
    });
    let mut conn = Conn { id, user, outbox, rooms: HashMap::new(), malformed: 0, unknown: 0 };
    let (reason, frame) = run(&mut ws, &ctx, &mut conn).await;
    conn.leave_all();
    ctx.stats.disconnected(reason);
    // A slow consumer gets longer: its close frame waits behind a full socket.
    let patience = if reason == Reason::SlowConsumer { 5 } else { 1 };
    let _ = timeout(Duration::from_secs(patience), goodbye(&mut ws, &conn.outbox, frame)).await;
    drop(slot);
}

/// The closing handshake: our close frame goes out behind everything queued, then we
/// read until the client's close (or the socket ends), so frames still in flight, such
/// as pongs, do not meet a reset.
async fn goodbye(ws: &mut Ws, outbox: &Outbox, frame: Option<(u16, &'static str)>) {
    if let Some((code, text)) = frame {
        let _ = ws.close(Some(CloseFrame { code: code.into(), reason: text.into() })).await;
    }
    loop {
        match outbox.write_queued() {
            Ok(true) if outbox.writable().await.is_ok() => {}
            Ok(false) => break,
            _ => return,
        }
    }
    if frame.is_some() {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
        }
    }
}

const SLOW: Exit = (Reason::SlowConsumer, Some((close::RESUME, "too far behind: reconnect and resume")));

async fn run(ws: &mut Ws, ctx: &Ctx, conn: &mut Conn) -> Exit {
    let s = &ctx.settings;
    let outbox = conn.outbox.clone();
    let mut last_seen = Instant::now();
    let mut next_ping = last_seen + s.heartbeat_interval.mul_f64(rand::random_range(0.1..1.0));
    let mut drain_at: Option<Instant> = None;
    let mut drain = ctx.drain.subscribe();
    // A drain that began between the upgrade and here is not a change for this receiver.
    if *drain.borrow_and_update() {
        drain_at = Some(Instant::now() + s.drain_window.mul_f64(rand::random_range(0.0..1.0)));
    }
    let mut blocked = false;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    loop {
        let mut deadline = next_ping.min(last_seen + s.connection_timeout);
        if let Some(at) = drain_at {
            deadline = deadline.min(at);
        }
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let write = tokio::select! {
            () = outbox.wait() => true,
            ready = outbox.writable(), if blocked => ready.is_ok(),
            frame = ws.next(), if !outbox.pause_reads() => {
                last_seen = Instant::now();
                let handled = match frame {
                    None | Some(Ok(Message::Close(_))) => return (Reason::Client, None),
                    Some(Err(e)) => return read_error(&e),
                    Some(Ok(Message::Text(text))) => Box::pin(conn.handle(ctx, FrameRef::Text(text.as_str()))).await,
                    Some(Ok(Message::Binary(bytes))) => Box::pin(conn.handle(ctx, FrameRef::Binary(&bytes))).await,
                    Some(Ok(_)) => None,
                };
                if let Some(exit) = handled {
                    return exit;
                }
                false
            }
            changed = drain.changed(), if drain_at.is_none() => {
                if changed.is_err() || *drain.borrow() {
                    drain_at = Some(Instant::now() + s.drain_window.mul_f64(rand::random_range(0.0..1.0)));
                }
                false
            }
            () = &mut timer => {
                let now = Instant::now();
                if drain_at.is_some_and(|at| now >= at) {
                    return (Reason::Shutdown, Some((close::RESTART, "server restart: reconnect and resume")));
                }
                if now >= last_seen + s.connection_timeout {
                    return (Reason::Timeout, Some((close::TIMEOUT, "timeout: nothing received")));
                }
                if conn.user.exp < now_secs() {
                    return (Reason::TokenExpired, Some((close::TOKEN_EXPIRED, "token expired")));
                }
                if now >= next_ping {
                    next_ping = now + s.heartbeat_interval;
                    if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                        return (Reason::Error, None);
                    }
                }
                false
            }
        };
        match outbox.stopped() {
            Some(Stopped::Overflowed) => return SLOW,
            Some(Stopped::Broken) => return (Reason::Client, None),
            None => {}
        }
        if write || blocked {
            match outbox.write_queued() {
                Ok(full) => blocked = full,
                Err(Stopped::Overflowed) => return SLOW,
                Err(Stopped::Broken) => return (Reason::Client, None),
            }
        }
    }
}

fn read_error(e: &tungstenite::Error) -> Exit {
    if matches!(e, tungstenite::Error::Capacity(_)) {
        (Reason::TooBig, Some((close::TOO_BIG, "message too big")))
    } else {
        (Reason::Error, None)
    }
}

impl Conn {
    fn leave_all(&mut self) {
        for (_, room) in self.rooms.drain() {
            room.leave(self.id);
        }
    }

    fn error(&self, ctx: &Ctx, code: ErrorCode, text: impl Into<String>) {
        self.room_error(ctx, code, text, None);
    }

    fn room_error(&self, ctx: &Ctx, code: ErrorCode, text: impl Into<String>, room: Option<&str>) {
        self.send_error(ctx, code, text, room, None);
    }

    fn send_error(&self, ctx: &Ctx, code: ErrorCode, text: impl Into<String>, room: Option<&str>, id: Option<&str>) {
        ctx.stats.errors.fetch_add(1, Relaxed);
        let (room, id) = (room.map(str::to_string), id.map(str::to_string));
        self.outbox.reply(&ServerMsg::Error { code, text: text.into(), room, id });
    }

    async fn handle(&mut self, ctx: &Ctx, frame: FrameRef<'_>) -> Option<Exit> {
        let msg = match self.outbox.format.decode::<ClientMsg>(frame) {
            Ok(msg) => msg,
            Err(DecodeError::UnknownType(name)) => {
                self.unknown += 1;
                if self.unknown >= STRIKES {
                    return Some((Reason::Abuse, Some((close::POLICY, "too many unknown messages"))));
                }
                self.error(ctx, ErrorCode::UnknownType, format!("unknown message type {name:?}"));
                return None;
            }
            Err(e) => {
                self.malformed += 1;
                if self.malformed >= STRIKES {
                    return Some((Reason::Abuse, Some((close::INVALID_DATA, "too many malformed messages"))));
                }
                self.error(ctx, ErrorCode::Malformed, e.to_string());
                return None;
            }
        };
        match msg {
            ClientMsg::Join { room, since } => self.join(ctx, &room, since).await,
            ClientMsg::Resume { rooms } => {
                for (room, since) in rooms {
                    if let Some(exit) = self.join(ctx, &room, Some(since)).await {
                        return Some(exit);
                    }
                }
                None
            }
            ClientMsg::Leave { room } => {
                match self.rooms.remove(room.as_str()) {
                    Some(r) => {
                        r.leave(self.id);
                        self.outbox.reply(&ServerMsg::Left { room });
                    }
                    None => self.room_error(ctx, ErrorCode::NotJoined, format!("not in room {room}"), Some(&room)),
                }
                None
            }
            ClientMsg::Send { room, id, body } => {
                self.send(ctx, &room, &id, &body).await;
                None
            }
            ClientMsg::History { room, before, limit } => {
                self.history(ctx, &room, before, limit).await;
                None
            }
            ClientMsg::Ping { t } => {
                self.outbox.reply(&ServerMsg::Pong { t });
                None
            }
        }
    }

    async fn join(&mut self, ctx: &Ctx, name: &str, since: Option<u64>) -> Option<Exit> {
        if !layer4_chat_client::protocol::valid_room(name) {
            self.room_error(
                ctx,
                ErrorCode::BadRoom,
                "room names are 1-64 characters of A-Z a-z 0-9 _ - . :",
                Some(name),
            );
            return None;
        }
        if let Some(room) = self.rooms.get(name) {
            room.rejoined(&self.outbox);
            return None;
        }
        if self.rooms.len() >= ctx.settings.max_rooms_per_connection {
            let text = format!("at most {} rooms per connection", ctx.settings.max_rooms_per_connection);
            self.room_error(ctx, ErrorCode::TooManyRooms, text, Some(name));
            return None;
        }
        let room = match ctx.hub.room(name).await {
            Ok(room) => room,
            Err(e) => {
                tracing::warn!(room = name, error = %e, "join failed");
                self.room_error(ctx, ErrorCode::Unavailable, "storage unavailable; try again", Some(name));
                return None;
            }
        };
        if since.is_some() {
            ctx.stats.resumes.fetch_add(1, Relaxed);
        }
        match room.join(self.id, &self.outbox, since, ctx.settings.replay_limit) {
            Joined::Live { replayed, .. } => {
                ctx.stats.replayed.fetch_add(replayed as u64, Relaxed);
            }
            Joined::TooFar { .. } => {
                ctx.stats.errors.fetch_add(1, Relaxed);
            }
            Joined::NeedsReplay { after, head } => match ctx.hub.store.range(name, after, head).await {
                Ok(messages) => {
                    let n = room.finish_join(self.id, head, messages) as u64;
                    ctx.stats.replayed.fetch_add(n, Relaxed);
                    ctx.stats.replayed_from_db.fetch_add(n, Relaxed);
                }
                Err(e) => {
                    tracing::warn!(room = name, error = %e, "replay failed");
                    room.leave(self.id);
                    return Some((Reason::Error, Some((close::RESUME, "replay failed: reconnect and resume"))));
                }
            },
        }
        self.rooms.insert(room.name.clone(), room);
        None
    }

    async fn send(&mut self, ctx: &Ctx, name: &str, id: &str, body: &str) {
        let Some(room) = self.rooms.get(name).cloned() else {
            let text = format!("join {name} before sending to it");
            self.send_error(ctx, ErrorCode::NotJoined, text, Some(name), Some(id));
            return;
        };
        if !layer4_chat_client::protocol::valid_id(id) {
            let text = "message ids are 1-64 printable ASCII characters";
            self.send_error(ctx, ErrorCode::BadId, text, Some(name), Some(id));
            return;
        }
        if body.is_empty() {
            self.send_error(ctx, ErrorCode::BadBody, "the body is empty", Some(name), Some(id));
            return;
        }
        match ctx.hub.send(&room, &self.user, id, body).await {
            Ok(sent) => {
                self.outbox.reply(&ServerMsg::Ack { room: sent.room.to_string(), id: id.to_string(), seq: sent.seq })
            }
            Err(e) => {
                tracing::warn!(room = name, error = %e, "send failed");
                let text = format!("message {id} was not stored; resend it with the same id");
                self.send_error(ctx, ErrorCode::Unavailable, text, Some(name), Some(id));
            }
        }
    }

    async fn history(&mut self, ctx: &Ctx, name: &str, before: Option<u64>, limit: Option<u32>) {
        if !self.rooms.contains_key(name) {
            self.room_error(ctx, ErrorCode::NotJoined, format!("join {name} before reading its history"), Some(name));
            return;
        }
        let limit = limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
        match ctx.hub.store.history(name, before.unwrap_or(u64::MAX), limit).await {
            Ok((messages, more)) => self.outbox.reply(&ServerMsg::History { room: name.to_string(), messages, more }),
            Err(e) => {
                tracing::warn!(room = name, error = %e, "history failed");
                self.error(ctx, ErrorCode::Unavailable, "storage unavailable; try again");
            }
        }
    }
}
