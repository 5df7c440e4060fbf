//! One WebSocket connection, served by a single task from upgrade to close.
//!
//! Owns the connection's timers and its exit: a WebSocket Ping every
//! `HEARTBEAT_INTERVAL` (the first one at a random point of the interval, so a mass
//! reconnect does not synchronise them), a close with 4000 after `CONNECTION_TIMEOUT`
//! without any frame from the client, 4002 when its token expires, 4001 when its queue
//! overflows or has not moved for `WRITE_TIMEOUT`, 1009 for an oversized frame, 1002 for a
//! frame that breaks RFC 6455, 1007 for text that is not UTF-8, 1008 past
//! `MAX_REQUESTS_PER_SECOND` frames, 1007/1008 after repeated bad messages and
//! 1012 at a random point of the drain window on shutdown. On `/echo` ([`Service::Echo`])
//! every message goes back to the client instead of being read as a request. Whatever the exit, the
//! connection leaves every room and gives back its slot under the cap.
//!
//! Writing: everything for the client goes through its [`Outbox`]; this task drains it
//! when the socket was full (flushers write broadcasts otherwise), and stops reading
//! requests while too much is queued; it also queues replays page by page as the queue
//! drains ([`super::replay`]). One task per connection (not a reader and a
//! writer) keeps an idle connection to one small allocation; requests are handled in
//! [`super::requests`], boxed, so their futures exist only while a request runs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use layer4_chat_protocol::{Format, FrameRef, Payload, ServerMsg, close};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::Slot;
use super::io::ConnIo;
use super::replay::Replay;
use crate::Ctx;
use crate::auth::{User, now_ms, now_secs};
use crate::delivery::outbox::{Outbox, Stopped};
use crate::hub::Room;
use crate::limits::UserSlot;
use crate::limits::bucket::Bucket;
use crate::stats::Reason;

/// tungstenite's read chunk per connection. A larger frame is still read whole: the
/// buffer grows to the frame's length while it is read.
const READ_BUFFER: usize = 1024;

impl Drop for Conn {
    fn drop(&mut self) {
        self.leave_all();
    }
}

/// How a connection ends: the counter reason and the close frame to send, if any.
pub(super) type Exit = (Reason, Option<(u16, &'static str)>);

/// The request bucket holds this many seconds of `MAX_REQUESTS_PER_SECOND`.
const REQUEST_BURST_SECONDS: f64 = 2.0;

type Ws = WebSocketStream<ConnIo>;

/// A connection's state; dropping it (even while unwinding from a panic) leaves every
/// joined room, so no room keeps a dead member and its socket.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) user: User,
    /// Sends every message back instead of reading it as a request (`/echo`).
    pub(super) echo: bool,
    pub(super) outbox: Arc<Outbox>,
    pub(super) rooms: HashMap<Arc<str>, Arc<Room>>,
    /// Replays under way, queued one page at a time, first come first served.
    pub(super) replays: VecDeque<Replay>,
    /// Per room, the first send of this connection that was not stored: later sends to
    /// the room are refused until it is resent, so a connection's messages are stored
    /// in the order it sent them (empty, and unallocated, unless the database failed;
    /// a list, not a map: 24 bytes on every connection, and a room appears at most once).
    pub(super) unstored: Vec<(Arc<str>, String)>,
    pub(super) malformed: u32,
    pub(super) unknown: u32,
    /// It asked for a replay once already (counted once per connection).
    pub(super) resumed: bool,
}

/// What a connection serves.
#[derive(Debug)]
pub enum Service {
    /// The chat protocol, for a user (`/ws`), with its place under `MAX_CONNECTIONS_PER_USER`.
    Chat(User, UserSlot),
    /// Every message sent back as it came (`/echo`, for conformance suites).
    Echo,
}

/// Serve one upgraded connection; `slot` (its place under `MAX_CONNECTIONS`) and its
/// user's slot are given back when it ends.
pub async fn serve(stream: TcpStream, read_buf: Bytes, ctx: Arc<Ctx>, service: Service, format: Format, slot: Slot) {
    let opened = std::time::Instant::now();
    let (user, user_slot) = match service {
        Service::Chat(user, user_slot) => (user, Some(user_slot)),
        // Nobody, and a token that never expires.
        Service::Echo => (User { id: 0, name: String::new(), exp: u64::MAX }, None),
    };
    let echo = user_slot.is_none();
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
    let io = ConnIo { stream: stream.clone(), outbox: outbox.clone() };
    // Copy what hyper read past the request (usually nothing) and let its buffer go:
    // keeping the `Bytes` would keep hyper's whole read buffer alive per connection.
    let early = read_buf.to_vec();
    drop(read_buf);
    let mut ws = WebSocketStream::from_partially_read(io, early, Role::Server, Some(config)).await;
    if !echo {
        outbox.reply(&ServerMsg::Welcome {
            user: user.name.clone(),
            heartbeat_ms: s.heartbeat_interval.as_millis() as u64,
            timeout_ms: s.connection_timeout.as_millis() as u64,
            max_message_size: s.max_message_size,
            max_requests_per_second: s.limits.max_requests_per_second,
        });
    }
    let mut conn = Conn {
        id,
        user,
        echo,
        outbox,
        rooms: HashMap::new(),
        replays: VecDeque::new(),
        unstored: Vec::new(),
        malformed: 0,
        unknown: 0,
        resumed: false,
    };
    let (reason, frame) = run(&mut ws, &ctx, &mut conn).await;
    conn.leave_all();
    ctx.stats.disconnected(reason, opened.elapsed());
    // A slow consumer gets longer: its close frame waits behind a full socket.
    let patience = if reason == Reason::SlowConsumer { 5 } else { 1 };
    let _ = timeout(Duration::from_secs(patience), goodbye(&mut ws, &conn.outbox, &stream, frame)).await;
    drop((slot, user_slot));
}

/// The closing handshake: our close frame (or the answer to the client's) goes out
/// behind everything queued. After a close of ours, what the client still sends is read
/// and discarded until its Close arrives, within the caller's patience: closing a socket
/// with unread bytes would send a reset, and the client could lose our close frame (it
/// would see 1006). After 1009 (the rest of the oversized frame is still coming) and
/// after a frame tungstenite refused (1002, 1007) it reads no frames any more: bytes are
/// discarded until the client closes its side or the patience ends. The socket is never half-closed before that: a proxy
/// (Nginx) closes the client's side on our FIN and the client's answer would meet a
/// reset.
async fn goodbye(ws: &mut Ws, outbox: &Outbox, stream: &TcpStream, frame: Option<(u16, &'static str)>) {
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
    if frame.is_none() {
        return;
    }
    loop {
        match ws.next().await {
            Some(Ok(msg)) if msg.is_close() => break,
            Some(Ok(_)) => {}
            // The stream ended: after a read error (1009, 1002, 1007) tungstenite reads no
            // more frames, while the client may still be sending.
            _ => break discard_until_closed(stream).await,
        }
    }
}

/// Read and discard until the peer closes its side (or the socket fails). The buffer
/// is on the heap: on the stack it would be part of every connection task's future
/// (this runs inside `goodbye`, awaited in `serve`), 4 KiB per idle connection.
async fn discard_until_closed(stream: &TcpStream) {
    let mut buf = vec![0u8; 4096];
    while stream.readable().await.is_ok() {
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Answer a client's Close (RFC 6455 §5.5.1): tungstenite queued an echo of its code and
/// reason when it read the frame, sent by a flush behind everything queued; a Close
/// without a code is answered with 1000.
async fn answer_close(ws: &mut Ws, outbox: &Outbox, frame: Option<&CloseFrame>) {
    if frame.is_some() {
        let _ = ws.flush().await;
    } else {
        let mut bytes = Vec::with_capacity(4);
        let normal = CloseFrame { code: close::NORMAL.into(), reason: "".into() };
        let _ = tungstenite::protocol::frame::Frame::close(Some(normal)).format(&mut bytes);
        outbox.push_control(Bytes::from(bytes));
    }
}

/// Far enough for a token that never expires in practice (and an `Instant` that cannot overflow).
const YEAR: Duration = Duration::from_secs(365 * 86_400);

const SLOW: Exit = (Reason::SlowConsumer, Some((close::RESUME, "too far behind: reconnect and resume")));

async fn run(ws: &mut Ws, ctx: &Ctx, conn: &mut Conn) -> Exit {
    let s = &ctx.settings;
    let outbox = conn.outbox.clone();
    let mut last_seen = Instant::now();
    let mut next_ping = last_seen + s.heartbeat_interval.mul_f64(rand::random_range(0.1..1.0));
    // The token is expired once the clock passes `exp` (whole seconds): close then,
    // not at the next heartbeat tick.
    let left =
        Duration::from_secs(conn.user.exp.saturating_add(1)).saturating_sub(Duration::from_millis(now_ms() as u64));
    let expires_at = last_seen.checked_add(left).unwrap_or(last_seen + YEAR);
    let mut drain_at: Option<Instant> = None;
    // Each connection closes at its own random point of the drain window.
    let drain_deadline = || Some(Instant::now() + s.drain_window.mul_f64(rand::random_range(0.0..1.0)));
    let mut drain = ctx.drain.subscribe();
    // A drain that began between the upgrade and here is not a change for this receiver.
    if *drain.borrow_and_update() {
        drain_at = drain_deadline();
    }
    let mut blocked = false;
    // Two seconds' worth of burst: frames that waited in the socket while this process
    // was short of CPU arrive together, and a client pacing itself under the rate (as the
    // reference client does) must not pay for the server's own delay.
    let rate = f64::from(s.limits.max_requests_per_second);
    let burst = rate * REQUEST_BURST_SECONDS;
    let mut requests = Bucket::full(burst, last_seen.into_std());
    // Bytes written from the queue and since when, while that does not change.
    let mut stuck: Option<(u64, Instant)> = None;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    loop {
        let mut deadline = next_ping.min(last_seen + s.connection_timeout).min(expires_at);
        if let Some(at) = drain_at {
            deadline = deadline.min(at);
        }
        // Frames queued and none taken since `stuck.1`: the client does not read.
        stuck = match (outbox.progress(), stuck) {
            (None, _) => None,
            (Some(now), Some((before, since))) if now == before => Some((before, since)),
            (Some(now), _) => Some((now, Instant::now())),
        };
        if let Some((_, since)) = stuck {
            deadline = deadline.min(since + s.write_timeout);
        }
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let write = tokio::select! {
            () = outbox.wait() => true,
            ready = outbox.writable(), if blocked => ready.is_ok(),
            frame = ws.next(), if !outbox.pause_reads() => {
                last_seen = Instant::now();
                // Every frame counts, pings included: a flood is closed, not served.
                if requests.take(rate, burst, last_seen.into_std()).is_err() {
                    return (Reason::Abuse, Some((close::POLICY, "too many requests")));
                }
                let handled = match frame {
                    None => return (Reason::Client, None),
                    Some(Ok(Message::Close(frame))) => {
                        answer_close(ws, &outbox, frame.as_ref()).await;
                        return (Reason::Client, None);
                    }
                    Some(Err(e)) => return read_error(&e),
                    Some(Ok(Message::Text(text))) if conn.echo => {
                        outbox.push(crate::delivery::outbox::frame(Payload::Text(text.as_str().to_owned())));
                        None
                    }
                    Some(Ok(Message::Binary(bytes))) if conn.echo => {
                        outbox.push(crate::delivery::outbox::frame(Payload::Binary(bytes.to_vec())));
                        None
                    }
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
                    drain_at = drain_deadline();
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
                if stuck.is_some_and(|(at, since)| outbox.progress() == Some(at) && now >= since + s.write_timeout) {
                    return SLOW;
                }
                // The wall clock too: it may have jumped since the timer was set.
                if now >= expires_at || conn.user.exp < now_secs() {
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
        // Replays go on while the client takes them: a page whenever the queue is
        // under half its bound.
        while !blocked && conn.replay_due() {
            if let Some(exit) = Box::pin(conn.replay_page(ctx)).await {
                return exit;
            }
            if outbox.stopped() == Some(Stopped::Overflowed) {
                return SLOW; // the room's held messages passed the bound meanwhile
            }
            match outbox.write_queued() {
                Ok(full) => blocked = full,
                Err(Stopped::Overflowed) => return SLOW,
                Err(Stopped::Broken) => return (Reason::Client, None),
            }
        }
    }
}

/// A frame the connection cannot go on after (RFC 6455 §7.1.7: fail the connection
/// with a Close saying why, then wait for the client's as after any close of ours).
fn read_error(e: &tungstenite::Error) -> Exit {
    match e {
        tungstenite::Error::Capacity(_) => (Reason::TooBig, Some((close::TOO_BIG, "message too big"))),
        tungstenite::Error::Utf8(_) => (Reason::Error, Some((close::INVALID_DATA, "text is not UTF-8"))),
        tungstenite::Error::Protocol(_) => (Reason::Error, Some((close::PROTOCOL, "protocol error"))),
        _ => (Reason::Error, None),
    }
}
