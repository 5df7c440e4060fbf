//! What a connection does with each client message: join (starting a replay, queued by
//! [`super::replay`]), resume, leave, send, history, ping, and the error replies and
//! strike counts for bad frames.
//!
//! Runs inside the connection task (boxed, so the future exists only while a request
//! runs); replies go through the connection's outbox like everything else.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use layer4_chat_protocol::{ClientMsg, DecodeError, ErrorCode, FrameRef, ServerMsg, close};

use super::conn::{Conn, Exit};
use super::replay::Replay;
use crate::Ctx;
use crate::hub::{Joined, RoomError};

/// How long a resume may wait for its room to catch up from the database.
const CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::stats::Reason;

/// Bad messages tolerated before the connection is closed.
const STRIKES: u32 = 10;
pub(crate) const HISTORY_DEFAULT: u32 = 50;
pub(crate) const HISTORY_MAX: u32 = 500;

impl Conn {
    pub(super) fn leave_all(&mut self) {
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

    pub(super) async fn handle(&mut self, ctx: &Ctx, frame: FrameRef<'_>) -> Option<Exit> {
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
                        self.unstored.retain(|(n, _)| *n != r.name);
                        self.drop_replay(&r);
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
        if !layer4_chat_protocol::valid_room(name) {
            self.room_error(ctx, ErrorCode::BadRoom, layer4_chat_protocol::ROOM_RULE, Some(name));
            return None;
        }
        if let Some(room) = self.rooms.get(name) {
            match self.replays.iter().find(|r| Arc::ptr_eq(&r.room, room)) {
                // Its replay is under way: the same `joined` as when it began.
                Some(r) => self.outbox.reply(&ServerMsg::Joined { room: name.to_string(), seq: r.head }),
                None => room.rejoined(&self.outbox),
            }
            return None;
        }
        if self.rooms.len() >= ctx.settings.max_rooms_per_connection {
            let text = format!("at most {} rooms per connection", ctx.settings.max_rooms_per_connection);
            self.room_error(ctx, ErrorCode::TooManyRooms, text, Some(name));
            return None;
        }
        let user = self.user.id;
        let room = match ctx.hub.room(name, || ctx.limits.room_creation.take(&user, std::time::Instant::now())).await {
            Ok(room) => room,
            Err(RoomError::TooMany) => {
                let text =
                    format!("this server holds its most rooms ({}); try again later", ctx.settings.limits.max_rooms);
                self.room_error(ctx, ErrorCode::TooManyRooms, text, Some(name));
                return None;
            }
            Err(RoomError::RateLimited(wait)) => {
                ctx.stats.rate_limited.fetch_add(1, Relaxed);
                let text = format!("too many new rooms; try again in {} s", wait.as_secs() + 1);
                self.room_error(ctx, ErrorCode::RateLimited, text, Some(name));
                return None;
            }
            Err(RoomError::Store(e)) => {
                tracing::warn!(room = name, error = %e, "join failed");
                self.room_error(ctx, ErrorCode::Unavailable, "storage unavailable; try again", Some(name));
                return None;
            }
        };
        if since.is_some() {
            ctx.stats.resumes.fetch_add(1, Relaxed);
            if !self.resumed {
                self.resumed = true;
                ctx.stats.connections_resumed.fetch_add(1, Relaxed);
            }
        }
        // The client saw more of the room than this worker holds (the worker missed
        // messages: cut off from Redis, say, or its catch-up failed): the room is
        // brought up to the database first, never answered with a head below what the
        // client saw (which it would take for a reset store, and see messages twice).
        if let Some(after) = since.filter(|after| *after > room.head())
            && !self.caught_up(ctx, &room, after).await
        {
            self.room_error(ctx, ErrorCode::Unavailable, "storage unavailable; try again", Some(name));
            return None;
        }
        match room.join(self.id, &self.outbox, since, ctx.settings.replay_limit) {
            Joined::Live { .. } => {}
            Joined::TooFar { .. } => {
                ctx.stats.errors.fetch_add(1, Relaxed);
            }
            Joined::Replay { after, head } => self.replays.push_back(Replay { room: room.clone(), after, head }),
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
        if !layer4_chat_protocol::valid_id(id) {
            let text = layer4_chat_protocol::ID_RULE;
            self.send_error(ctx, ErrorCode::BadId, text, Some(name), Some(id));
            return;
        }
        if body.is_empty() {
            self.send_error(ctx, ErrorCode::BadBody, "the body is empty", Some(name), Some(id));
            return;
        }
        if let Some((_, first)) = self.unstored.iter().find(|(n, first)| n.as_ref() == name && first != id) {
            // Storing it now would put it before a message sent earlier.
            let text = format!("message {id} was not stored: {first}, sent before it, was not; resend {first} first");
            self.send_error(ctx, ErrorCode::Unavailable, text, Some(name), Some(id));
            return;
        }
        match ctx.hub.send(&room, &self.user, id, body).await {
            Ok(sent) => {
                self.unstored.retain(|(n, _)| n.as_ref() != name);
                self.outbox.reply(&ServerMsg::Ack { room: sent.room.to_string(), id: id.to_string(), seq: sent.seq })
            }
            Err(e) => {
                tracing::warn!(room = name, error = %e, "send failed");
                if !self.unstored.iter().any(|(n, _)| n.as_ref() == name) {
                    self.unstored.push((room.name.clone(), id.to_string()));
                }
                let text = format!("message {id} was not stored; resend it with the same id");
                self.send_error(ctx, ErrorCode::Unavailable, text, Some(name), Some(id));
            }
        }
    }

    /// Whether `room` holds everything up to `after` now, or the database does not
    /// either (a store restored from an older copy: the client follows the room as it
    /// is). One catch-up per room at a time, within [`CATCH_UP_LIMIT`].
    async fn caught_up(&self, ctx: &Ctx, room: &Arc<crate::hub::Room>, after: u64) -> bool {
        let caught = tokio::time::timeout(CATCH_UP_LIMIT, async {
            let _one = room.catch_up.lock().await;
            if room.head() >= after {
                return Ok(u64::MAX);
            }
            ctx.hub.deliverer.sync(room).await
        })
        .await;
        match caught {
            Ok(Ok(stored)) => room.head() >= after || stored < after,
            Ok(Err(e)) => {
                tracing::warn!(room = %room.name, error = %e, "cannot bring the room up to the database for a resume");
                false
            }
            Err(_) => false,
        }
    }

    async fn history(&mut self, ctx: &Ctx, name: &str, before: Option<u64>, limit: Option<u32>) {
        if !self.rooms.contains_key(name) {
            self.room_error(ctx, ErrorCode::NotJoined, format!("join {name} before reading its history"), Some(name));
            return;
        }
        let limit = limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
        let (budget, rows) = (super::replay::page_budget(ctx), super::replay::page_rows(ctx));
        match ctx.hub.store.history(name, before.unwrap_or(u64::MAX), limit, budget, rows).await {
            Ok((messages, more)) => self.outbox.reply(&ServerMsg::History { room: name.to_string(), messages, more }),
            Err(e) => {
                tracing::warn!(room = name, error = %e, "history failed");
                self.error(ctx, ErrorCode::Unavailable, "storage unavailable; try again");
            }
        }
    }
}
