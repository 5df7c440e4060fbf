//! A room's send path: group commit, then publish in sequence order.
//!
//! Every send joins its room's queue. The first sender that finds no batch in progress
//! becomes the writer: it stores everything queued (up to [`MAX_BATCH`]) with one
//! multi-row INSERT, numbering the messages from the room's head (which only the writer
//! advances), publishes them in order, answers every waiting sender, and repeats while
//! more arrived. At low rates a batch is one message and one INSERT; under load one
//! database round trip carries many messages, so a room is not limited to one round
//! trip per message.
//!
//! A resend of a stored id, or a sequence number another worker took first, makes the
//! INSERT fail as a whole (nothing is stored); the batch is then stored one message at a
//! time by [`Store::append`](crate::store::Store::append), which handles both.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::oneshot;

use super::{Entry, Hub, Room, Sent};
use crate::auth::{User, now_ms};
use crate::store::{Appended, NewMessage, StoreError};

/// Messages stored by one INSERT at most.
pub const MAX_BATCH: usize = 256;

/// Why a send was not stored; the client may resend it with the same id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SendFailed(pub String);

impl From<StoreError> for SendFailed {
    fn from(e: StoreError) -> Self {
        SendFailed(e.to_string())
    }
}

#[derive(Debug)]
pub struct Pending {
    user_id: i64,
    user: String,
    id: String,
    body: String,
    ts: i64,
    reply: oneshot::Sender<Result<Sent, SendFailed>>,
}

/// A room's queue of sends and whether a writer is at work.
#[derive(Debug, Default)]
pub struct Appends {
    waiting: Vec<Pending>,
    writing: bool,
}

/// Ends the writer role if the writer's task is dropped mid-batch: the room must not stay
/// "writing" forever, and the senders still waiting are answered (their reply senders
/// drop, which they see as an interrupted send).
struct Writer<'a>(Option<&'a Room>);

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if let Some(room) = self.0 {
            let mut q = room.appends();
            q.writing = false;
            q.waiting.clear();
        }
    }
}

impl Hub {
    /// Stores the message, then queues it for every member of the room (the sender
    /// included). A resend of an already stored (user, id) returns its first sequence.
    pub async fn send(&self, room: &Room, user: &User, id: &str, body: &str) -> Result<Sent, SendFailed> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            user_id: user.id,
            user: user.name.clone(),
            id: id.into(),
            body: body.into(),
            ts: now_ms(),
            reply,
        };
        let lead = {
            let mut q = room.appends();
            q.waiting.push(pending);
            !std::mem::replace(&mut q.writing, true)
        };
        if lead {
            let mut writer = Writer(Some(room));
            loop {
                let batch: Vec<Pending> = {
                    let mut q = room.appends();
                    if q.waiting.is_empty() {
                        q.writing = false;
                        writer.0 = None;
                        break;
                    }
                    let n = q.waiting.len().min(MAX_BATCH);
                    q.waiting.drain(..n).collect()
                };
                self.write_batch(room, batch).await;
            }
        }
        answer.await.unwrap_or_else(|_| Err(SendFailed("the send was interrupted; resend it".into())))
    }

    async fn write_batch(&self, room: &Room, batch: Vec<Pending>) {
        let items: Vec<NewMessage<'_>> = batch
            .iter()
            .map(|p| NewMessage {
                room: &room.name,
                user_id: p.user_id,
                user: &p.user,
                client_id: &p.id,
                body: &p.body,
                ts: p.ts,
            })
            .collect();
        let results: Vec<Result<Appended, SendFailed>> = match self.store.append_many(&items, room.head() + 1).await {
            Ok(stored) => stored.into_iter().map(|m| Ok(Appended::Stored(m))).collect(),
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                let mut one_by_one = Vec::with_capacity(items.len());
                for item in &items {
                    one_by_one.push(self.store.append(*item).await.map_err(SendFailed::from));
                }
                one_by_one
            }
            Err(e) => {
                let failed = SendFailed::from(e);
                items.iter().map(|_| Err(failed.clone())).collect()
            }
        };
        drop(items);
        for (pending, result) in batch.into_iter().zip(results) {
            let answer = match result {
                Ok(Appended::Stored(msg)) => {
                    let seq = msg.seq;
                    let (delivered, overflowed) = room.publish(Arc::new(Entry::new(msg)), &self.flushers);
                    self.stats.messages_in.fetch_add(1, Relaxed);
                    self.stats.messages_out.fetch_add(delivered, Relaxed);
                    self.stats.queue_drops.fetch_add(overflowed, Relaxed);
                    Ok(Sent { room: room.name.clone(), seq, duplicate: false })
                }
                Ok(Appended::Duplicate { room, seq }) => Ok(Sent { room: Arc::from(room), seq, duplicate: true }),
                Err(e) => Err(e),
            };
            let _ = pending.reply.send(answer);
        }
    }
}
