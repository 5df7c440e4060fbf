//! Replays, queued page by page as the client reads: what a `resume` or a `join` with
//! `since` missed is never queued whole (a resume of 2 rooms of 1000 messages of 60 KB
//! would be 120 MB for one connection), but one page at a time, and the next page only
//! once the connection's queue is under half of `QUEUE_MAX_BYTES`. A page is at most
//! half the bound: from the room's cache by bytes, from Redis or the database in
//! `QUEUE_MAX_BYTES / 2 / MAX_MESSAGE_SIZE` messages (1 to 256), so a page fetched but
//! not yet queued is bounded too. Meanwhile the member is pending in its room: live
//! messages wait there (counted toward the bound), and follow the last page.
//!
//! A client that does not read keeps its replay where it is, holding at most the
//! bound; `WRITE_TIMEOUT` then closes it with 4001 ([`super::conn`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use layer4_chat_protocol::{ChatMessage, ServerMsg, close};

use super::conn::{Conn, Exit};
use crate::Ctx;
use crate::hub::Room;
use crate::stats::Reason;

/// A replay under way: `after < seq <= head` of `room` is still to queue.
#[derive(Debug)]
pub(super) struct Replay {
    pub room: Arc<Room>,
    pub after: u64,
    pub head: u64,
}

/// Most messages fetched for one page from Redis or the database.
const MAX_PAGE_ROWS: usize = 256;

/// Bytes of one replay page (and of one history reply): half the queue bound.
pub(crate) fn page_budget(ctx: &Ctx) -> usize {
    (ctx.settings.queue_max_bytes / 2).max(1)
}

/// Messages fetched at most for one page, so that even messages of the largest size
/// stay within [`page_budget`].
pub(crate) fn page_rows(ctx: &Ctx) -> usize {
    (page_budget(ctx) / ctx.settings.max_message_size.max(1)).clamp(1, MAX_PAGE_ROWS)
}

impl Conn {
    /// Whether a replay page should be queued now.
    pub(super) fn replay_due(&self) -> bool {
        !self.replays.is_empty() && self.outbox.under_half()
    }

    /// Queue the next page of the first replay; after its last page, the room's live
    /// messages follow and the replay is done. A failed fetch ends the connection (4001:
    /// the client resumes again).
    pub(super) async fn replay_page(&mut self, ctx: &Ctx) -> Option<Exit> {
        let replay = self.replays.front_mut()?;
        let (room, after, head) = (replay.room.clone(), replay.after, replay.head);
        let budget = page_budget(ctx);
        let format = self.outbox.format;
        let last = if let Some((frames, last)) = room.cached_page(after, head, budget, format) {
            ctx.stats.replayed_from_cache.fetch_add(frames.len() as u64, Relaxed);
            for frame in frames {
                self.outbox.push(frame);
            }
            last
        } else {
            let upto = head.min(after + page_rows(ctx) as u64);
            match fetch(ctx, &room.name, after, upto).await {
                Ok((messages, from_redis)) => {
                    let counter = if from_redis { &ctx.stats.replayed_from_redis } else { &ctx.stats.replayed_from_db };
                    counter.fetch_add(messages.len() as u64, Relaxed);
                    for msg in messages {
                        self.outbox.reply(&ServerMsg::Message(msg));
                    }
                    upto
                }
                Err(e) => {
                    tracing::warn!(room = %room.name, error = %e, "replay failed");
                    return Some((Reason::Error, Some((close::RESUME, "replay failed: reconnect and resume"))));
                }
            }
        };
        // The room may have been left while the page was fetched.
        match self.replays.front_mut() {
            Some(r) if Arc::ptr_eq(&r.room, &room) => r.after = last,
            _ => return None,
        }
        if last >= head {
            self.replays.pop_front();
            room.finish_join(self.id, head);
        }
        None
    }

    /// Forget the replay of a room the client left.
    pub(super) fn drop_replay(&mut self, room: &Room) {
        self.replays.retain(|r| !std::ptr::eq(Arc::as_ptr(&r.room), room));
    }
}

/// The messages `after < seq <= upto`: from the Redis history when it holds them all
/// (a client that moved from another worker), else from the database. True: from Redis.
async fn fetch(
    ctx: &Ctx,
    room: &str,
    after: u64,
    upto: u64,
) -> Result<(Vec<ChatMessage>, bool), crate::store::StoreError> {
    if let Some(fanout) = ctx.hub.fanout.get()
        && let Some(messages) = fanout.recent(room, after, upto).await
    {
        return Ok((messages, true));
    }
    Ok((ctx.hub.store.range(room, after, upto).await?, false))
}
