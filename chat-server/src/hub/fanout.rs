//! Redis between workers (`REDIS_URL`): every stored message is published on its
//! room's channel and kept in the room's recent history in Redis; a worker
//! subscribes only to the rooms it has in memory (rooms with local members, and
//! for a minute after the last one left), so a message reaches only the workers
//! that need it.
//!
//! Correctness does not rest on Redis: a message received out of order or after
//! a gap is held and the gap filled from the database ([`super::order`]); after
//! Redis comes back (the connection manager reconnects and resubscribes, or with
//! Sentinel, [`Link`] connects to the promoted primary), each room is
//! brought up to the database's head. Redis being down delays delivery
//! between workers; it never loses or reorders a message.
//!
//! What is kept in Redis, its names and the commands that write it: [`super::layout`]
//! (`REDIS_PREFIX`, default `l4`; on a Redis Cluster, sharded channels).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use layer4_chat_protocol::ChatMessage;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::Rooms;
use super::layout::{Layout, Wire};
use super::link::Link;
use super::order::Deliverer;

/// How often the connection is checked, and how long a PING may take.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The connection to Redis shared by a worker's rooms.
#[derive(Debug)]
pub struct Fanout {
    origin: u64,
    link: Link,
    publish: mpsc::UnboundedSender<ChatMessage>,
    /// A recovery is under way (one at a time); `again`: something failed during it,
    /// so it goes round once more before it ends.
    lost: AtomicBool,
    again: AtomicBool,
    /// Per room, the newest message whose publish failed: published again once Redis is
    /// back, so the other workers see the gap and fill it (a quiet room would not).
    unpublished: std::sync::Mutex<std::collections::HashMap<String, ChatMessage>>,
    rooms: Rooms,
    deliverer: Deliverer,
    layout: Layout,
    /// Why Redis was last lost (for the health check).
    pub last_error: crate::last_error::LastError,
}

impl Fanout {
    /// Connect (RESP3, pushes, automatic resubscription) and start the publisher and
    /// the receiver. `history`: messages kept per room in Redis.
    pub async fn connect(
        url: &str,
        tls: &crate::config::backends::RedisTls,
        prefix: &str,
        history: usize,
        rooms: Rooms,
        deliverer: Deliverer,
    ) -> redis::RedisResult<Arc<Fanout>> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let link = Link::connect(url, tls, push_tx).await?;
        let layout = Layout { prefix: prefix.to_owned(), sharded: link.con().sharded(), history };
        let (publish, publish_rx) = mpsc::unbounded_channel();
        let fanout = Arc::new(Fanout {
            origin: rand::random(),
            link,
            publish,
            lost: AtomicBool::new(false),
            again: AtomicBool::new(false),
            unpublished: Default::default(),
            rooms,
            deliverer,
            layout,
            last_error: Default::default(),
        });
        tokio::spawn(fanout.clone().publisher(publish_rx));
        tokio::spawn(fanout.clone().receiver(push_rx));
        tokio::spawn(fanout.clone().heartbeat());
        Ok(fanout)
    }

    fn channel(&self, room: &str) -> String {
        self.layout.channel(room)
    }

    /// Publish a newly stored message to the other workers (in the order called).
    pub fn publish(&self, msg: &ChatMessage) {
        let _ = self.publish.send(msg.clone());
    }

    /// Subscribe to a room's channel; returns once Redis confirmed (or failed).
    pub async fn subscribe(self: &Arc<Self>, room: &str) {
        if let Err(e) = self.link.con().subscribe(self.channel(room)).await {
            tracing::warn!(room, error = %e, "cannot subscribe to the room on Redis; resubscribing when it is back");
            self.mark_lost(&e.to_string());
        }
    }

    /// Whether Redis answers now (no recovery under way).
    pub fn ok(&self) -> bool {
        !self.lost.load(Ordering::Relaxed)
    }

    /// Redis failed (`why`): once it answers again, resubscribe and resynchronise every room.
    fn mark_lost(self: &Arc<Self>, why: &str) {
        self.last_error.set(why);
        self.again.store(true, Ordering::Relaxed);
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::warn!("lost Redis; messages between workers wait until it is back");
            tokio::spawn(self.clone().recover());
        }
    }

    /// A check every [`HEARTBEAT`] (what recovery waits for, [`Link::usable`]): a primary
    /// whose host vanished without a reset (or a partition, or a demotion) sends no
    /// disconnection, and a worker whose members only read would otherwise never notice,
    /// nor follow a promoted replica.
    async fn heartbeat(self: Arc<Self>) {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            if !self.lost.load(Ordering::Relaxed)
                && !matches!(tokio::time::timeout(HEARTBEAT, self.link.usable()).await, Ok(true))
            {
                self.mark_lost("no answer to the heartbeat within 2 s");
            }
        }
    }

    pub async fn unsubscribe(&self, room: &str) {
        let _ = self.link.con().unsubscribe(self.channel(room)).await;
    }

    /// The messages `after < seq <= upto` of `room` from the Redis history, when it
    /// holds all of them.
    pub async fn recent(&self, room: &str, after: u64, upto: u64) -> Option<Vec<ChatMessage>> {
        let mut con = self.link.con();
        let min = format!("({after}");
        let raw: Vec<Vec<u8>> = con.zrangebyscore(self.layout.history_key(room), min, upto).await.ok()?;
        let msgs: Vec<ChatMessage> = raw
            .iter()
            .filter_map(|b| rmp_serde::from_slice::<Wire>(b).ok())
            .map(|w| w.msg)
            .filter(|m| m.room == room)
            .collect();
        let complete = msgs.len() as u64 == upto - after && msgs.iter().zip(after + 1..).all(|(m, seq)| m.seq == seq);
        complete.then_some(msgs)
    }

    /// Publishes in order, pipelining what is queued ([`Layout::publish`]).
    async fn publisher(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<ChatMessage>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            // On a cluster, one pipeline per room, all at once: a shard being failed over
            // does not hold up the rooms of the others (a room's order is within its pipeline).
            let con = self.link.con();
            let sent = self.layout.publish(self.origin, &batch).into_iter().map(|pipe| {
                let mut con = con.clone();
                async move { pipe.query_async::<()>(&mut con).await }
            });
            let failed = futures_util::future::join_all(sent).await.into_iter().find_map(Result::err);
            if let Some(e) = failed {
                // Published again once Redis is back: the other workers fill the gap
                // from the database when they see it.
                tracing::warn!(error = %e, "cannot publish to Redis");
                let mut unpublished = self.unpublished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for msg in &batch {
                    if unpublished.get(&msg.room).is_none_or(|m| m.seq < msg.seq) {
                        unpublished.insert(msg.room.clone(), msg.clone());
                    }
                }
                drop(unpublished);
                self.mark_lost(&format!("cannot publish: {e}"));
            }
            batch.clear();
        }
    }

    /// Messages from other workers into local rooms; a dropped connection starts a recovery.
    async fn receiver(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    let Some(Value::BulkString(payload)) = push.data.get(1) else { continue };
                    let Ok(wire) = rmp_serde::from_slice::<Wire>(payload) else { continue };
                    if wire.origin == self.origin {
                        continue;
                    }
                    let room = super::lock_rooms(&self.rooms).get(wire.msg.room.as_str()).cloned();
                    if let Some(room) = room {
                        self.deliverer.deliver(&room, wire.msg);
                    }
                }
                PushKind::Disconnection => self.mark_lost("disconnected"),
                // Redis dropped a subscription we did not (a cluster moved the room's slot to
                // another shard, or our own unsubscribe of a room swept from memory landed
                // after it was joined again): subscribe again and catch up, if it is held.
                PushKind::SUnsubscribe | PushKind::Unsubscribe => {
                    let Some(Value::BulkString(channel)) = push.data.first() else { continue };
                    let Some(name) = std::str::from_utf8(channel).ok().and_then(|c| self.layout.room_of(c)) else {
                        continue;
                    };
                    let room = super::lock_rooms(&self.rooms).get(name).cloned();
                    if let Some(room) = room {
                        let fanout = self.clone();
                        tokio::spawn(async move {
                            fanout.subscribe(&room.name).await;
                            fanout.catch_up(&room, tokio::time::Instant::now() + Duration::from_secs(30)).await;
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Once Redis answers again (with Sentinel, the primary the sentinels name now):
    /// subscribe every room in memory, bring each up to the database's head (messages
    /// published meanwhile were not received), and publish again the newest message of
    /// each room whose publish failed. One recovery at a time; a failure during it makes
    /// it go round again.
    async fn recover(self: Arc<Self>) {
        loop {
            self.again.store(false, Ordering::Relaxed);
            loop {
                self.link.follow_primary().await;
                if self.link.usable().await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let list: Vec<_> = super::lock_rooms(&self.rooms).values().cloned().collect();
            // One SUBSCRIBE for every room (in slices, so one command stays small); on a
            // cluster one SSUBSCRIBE per room (a command's channels must share a slot), 32
            // at a time, every room tried even when some fail.
            let per_command = if self.layout.sharded { 1 } else { 1000 };
            let con = self.link.con();
            let commands: Vec<Vec<String>> =
                list.chunks(per_command).map(|slice| slice.iter().map(|r| self.channel(&r.name)).collect()).collect();
            let tries = commands.into_iter().map(|channels| {
                let mut con = con.clone();
                async move { con.subscribe(channels).await }
            });
            let failed = futures_util::stream::iter(tries).buffer_unordered(32).filter_map(|r| async move { r.err() });
            if let Some(e) = std::pin::pin!(failed).next().await {
                tracing::warn!(error = %e, "cannot resubscribe the rooms on Redis; trying again in a second");
                // Redis answers but refuses SUBSCRIBE (an ACL, say): do not spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.again.store(true, Ordering::Relaxed);
            }
            if self.again.load(Ordering::Relaxed) {
                continue;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            for room in &list {
                self.catch_up(room, deadline).await;
            }
            let unpublished: Vec<ChatMessage> = {
                let mut map = self.unpublished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                map.drain().map(|(_, m)| m).collect()
            };
            for msg in &unpublished {
                self.publish(msg);
            }
            self.lost.store(false, Ordering::Relaxed);
            // A failure that came after `again` was read: go round once more.
            if !self.again.load(Ordering::Relaxed) || self.lost.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    rooms = list.len(),
                    republished = unpublished.len(),
                    "Redis is back; rooms resubscribed and resynchronised"
                );
                return;
            }
        }
    }

    /// Bring `room` up to the database's head, trying again with a growing pause until
    /// `deadline` (half a minute for a whole recovery: a database that restarts with
    /// Redis, say); past it, once.
    async fn catch_up(&self, room: &Arc<super::Room>, deadline: tokio::time::Instant) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.deliverer.sync(room).await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(room = %room.name, error = %e, "cannot resynchronise the room after Redis came back; its next message will");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
