//! A room's send path: group commit, then publish in sequence order.
//!
//! Every send joins its room's queue. When no writer is at work, the send starts one: a
//! task of its own (not the sender's connection task, which must keep reading its
//! socket), which stores everything queued (up to [`MAX_BATCH`]) with one multi-row
//! INSERT numbered from the room's head (only the writer advances it), publishes the
//! messages in order, answers every waiting sender, and repeats while more arrived. At
//! low rates a batch is one message and one INSERT; under load one database round trip
//! carries many messages, so a room is not limited to one round trip per message.
//!
//! A resend of a stored id, or a sequence number taken elsewhere, makes the INSERT fail
//! as a whole (nothing is stored). The writer then first publishes whatever the database
//! holds beyond the room's head (rows of a batch whose outcome was unknown, so members
//! see no gap), and stores the batch one message at a time with
//! [`Store::append`](crate::store::Store::append), which handles both cases.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use layer4_chat_protocol::ChatMessage;
use tokio::sync::oneshot;

use super::{Hub, Room, Sent};
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

/// What a writer task needs (it outlives no one: it ends when the queue is empty):
/// the store and counters are the deliverer's.
#[derive(Debug, Clone)]
struct Writer {
    deliverer: super::order::Deliverer,
    fanout: Option<Arc<super::fanout::Fanout>>,
}

impl Hub {
    /// Stores the message, then queues it for every member of the room (the sender
    /// included). A resend of an already stored (user, id) returns its first sequence.
    pub async fn send(&self, room: &Arc<Room>, user: &User, id: &str, body: &str) -> Result<Sent, SendFailed> {
        let arrived = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            user_id: user.id,
            user: user.name.clone(),
            id: id.into(),
            body: body.into(),
            ts: now_ms(),
            reply,
        };
        let start_writer = {
            let mut q = room.appends();
            q.waiting.push(pending);
            !std::mem::replace(&mut q.writing, true)
        };
        if start_writer {
            let writer = Writer { deliverer: self.deliverer.clone(), fanout: self.fanout.get().cloned() };
            tokio::spawn(writer.run(room.clone()));
        }
        let sent = answer.await.unwrap_or_else(|_| Err(SendFailed("the send was interrupted; resend it".into())));
        if sent.as_ref().is_ok_and(|s| !s.duplicate) {
            self.deliverer.stats.send_seconds.observe(arrived.elapsed());
        }
        sent
    }
}

impl Writer {
    async fn run(self, room: Arc<Room>) {
        loop {
            let batch: Vec<Pending> = {
                let mut q = room.appends();
                if q.waiting.is_empty() {
                    q.writing = false;
                    return;
                }
                let n = q.waiting.len().min(MAX_BATCH);
                q.waiting.drain(..n).collect()
            };
            self.write_batch(&room, batch).await;
        }
    }

    /// Publishes a newly stored message (here and to the other workers) and says so to
    /// its sender.
    fn stored(&self, room: &Arc<Room>, msg: ChatMessage) -> Sent {
        let seq = msg.seq;
        if let Some(fanout) = &self.fanout {
            fanout.publish(&msg);
        }
        self.deliverer.deliver(room, msg);
        self.deliverer.stats.messages_in.fetch_add(1, Relaxed);
        Sent { room: room.name.clone(), seq, duplicate: false }
    }

    async fn write_batch(&self, room: &Arc<Room>, batch: Vec<Pending>) {
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
        let answers: Vec<Result<Sent, SendFailed>> =
            match self.deliverer.store.append_many(&items, room.head() + 1).await {
                Ok(stored) => stored.into_iter().map(|m| Ok(self.stored(room, m))).collect(),
                Err(StoreError::Conflict) => {
                    // Publish what the database holds beyond the room's head first (a batch
                    // whose INSERT succeeded although the reply was lost), so members see no gap.
                    if let Err(e) = self.deliverer.sync(room).await {
                        // Appending now would number past rows no member has seen.
                        let failed = SendFailed::from(e);
                        for pending in batch {
                            let _ = pending.reply.send(Err(failed.clone()));
                        }
                        return;
                    }
                    let mut answers = Vec::with_capacity(items.len());
                    for item in &items {
                        answers.push(match self.deliverer.store.append(*item).await {
                            // Published at once, so the room's head follows the database.
                            Ok(Appended::Stored(msg)) => Ok(self.stored(room, msg)),
                            Ok(Appended::Duplicate { room, seq }) => {
                                Ok(Sent { room: Arc::from(room), seq, duplicate: true })
                            }
                            Err(e) => Err(e.into()),
                        });
                    }
                    answers
                }
                Err(e) => {
                    let failed = SendFailed::from(e);
                    items.iter().map(|_| Err(failed.clone())).collect()
                }
            };
        drop(items);
        for (pending, answer) in batch.into_iter().zip(answers) {
            let _ = pending.reply.send(answer);
        }
    }
}
