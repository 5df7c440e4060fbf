//! Delivering stored messages into a room in sequence order, wherever they come
//! from (the room's own writer, another worker through Redis, the database), and
//! filling gaps from the database.
//!
//! [`Room::publish`] holds a message past a gap and asks for a fill; the fill runs
//! as a task of its own until no gap is left, retrying with backoff while the
//! database is unreachable. [`Deliverer::sync`] brings a room up to the
//! database's head (after a Redis reconnect, or once a subscription is live).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use layer4_chat_protocol::ChatMessage;

use super::{Entry, Room};
use crate::delivery::flush::Flushers;
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// Rows fetched per database query of a fill or sync.
const PAGE: u64 = 1000;

#[derive(Debug, Clone)]
pub struct Deliverer {
    pub store: Store,
    pub flushers: Arc<Flushers>,
    pub stats: Arc<Stats>,
}

impl Deliverer {
    /// Queue a stored message for the room's members; a gap starts a fill.
    pub fn deliver(&self, room: &Arc<Room>, msg: ChatMessage) {
        if self.publish(room, msg) {
            tokio::spawn(self.clone().fill(room.clone()));
        }
    }

    /// The room's head was read from the database: release what was held meanwhile.
    pub fn loaded(&self, room: &Arc<Room>, head: u64) {
        let p = room.set_loaded(head, &self.flushers);
        self.count(p);
        if p.fill {
            tokio::spawn(self.clone().fill(room.clone()));
        }
    }

    /// Publish without starting a fill; true when one is needed.
    fn publish(&self, room: &Room, msg: ChatMessage) -> bool {
        let p = room.publish(Arc::new(Entry::new(msg)), &self.flushers);
        self.count(p);
        p.fill
    }

    fn count(&self, p: super::room::Published) {
        self.stats.messages_out.fetch_add(p.delivered, Relaxed);
        self.stats.queue_drops.fetch_add(p.overflowed, Relaxed);
    }

    /// Fetch the messages missing before the held ones until no gap is left.
    async fn fill(self, room: Arc<Room>) {
        let mut delay = Duration::from_millis(50);
        while let Some((head, last)) = room.gap() {
            match self.store.range(&room.name, head, last.min(head + PAGE)).await {
                Ok(rows) if !rows.is_empty() => {
                    for msg in rows {
                        self.publish(&room, msg);
                    }
                    delay = Duration::from_millis(50);
                    continue;
                }
                Ok(_) => tracing::warn!(room = %room.name, head, last, "gap not in the database yet; retrying"),
                Err(e) => tracing::warn!(room = %room.name, error = %e, "cannot fill a gap; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Deliver whatever the database holds beyond the room's head; the database's head.
    pub async fn sync(&self, room: &Arc<Room>) -> Result<u64, StoreError> {
        let stored = self.store.head(&room.name).await?;
        loop {
            let head = room.head();
            if stored <= head {
                return Ok(stored);
            }
            let rows = self.store.range(&room.name, head, stored.min(head + PAGE)).await?;
            if rows.is_empty() {
                return Ok(stored);
            }
            for msg in rows {
                self.deliver(room, msg);
            }
            if room.head() == head {
                return Ok(stored); // held (not loaded yet): the load releases them
            }
        }
    }
}
