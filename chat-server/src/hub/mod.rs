//! The rooms of one worker and the send path: store first, then publish in order.
//!
//! Owns which rooms are in memory (created on first join, at most `MAX_ROOMS`, dropped a
//! minute after their last member left) and the rule that a message is durable before anyone sees it:
//! [`Hub::send`] (in [`send`]) stores a room's messages in batches by one writer at a
//! time and queues them for every member in sequence order ([`order`]). With
//! `REDIS_URL`, [`fanout`] carries each stored message to the other workers that
//! have the room in memory.

pub mod fanout;
mod layout;
mod link;
pub mod order;
pub mod room;
#[cfg(test)]
mod room_tests;
pub mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::delivery::flush::Flushers;
use crate::stats::Stats;
use crate::store::{Store, StoreError};
pub use room::{Entry, Joined, Room};

/// How long an empty room stays in memory (with its cache) after its last member left.
const IDLE_ROOM: Duration = Duration::from_secs(60);

/// The rooms in memory, by name (shared with the Redis receiver).
pub type Rooms = Arc<Mutex<HashMap<Arc<str>, Arc<Room>>>>;

/// The rooms map, also after a panic while it was held.
pub fn lock_rooms(rooms: &Rooms) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
    rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
pub struct Hub {
    rooms: Rooms,
    pub store: Store,
    /// Delivers stored messages in order (holds the flushers and the counters).
    pub deliverer: order::Deliverer,
    /// Set by [`Hub::connect_redis`] when `REDIS_URL` is.
    pub fanout: OnceLock<Arc<fanout::Fanout>>,
    cache_size: usize,
    /// `MAX_ROOMS`.
    max_rooms: usize,
}

/// Why a join could not have its room.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `MAX_ROOMS` rooms are in memory already.
    #[error("this worker holds MAX_ROOMS rooms")]
    TooMany,
    /// The caller may not bring another room into memory before this.
    #[error("too many rooms created")]
    RateLimited(Duration),
}

/// The result of a send: the sequence number, and whether it was a resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The room the message is stored in (a resend names the room of its first send).
    pub room: Arc<str>,
    pub seq: u64,
    pub duplicate: bool,
}

impl Hub {
    /// Starts the flushers too: call it inside the runtime.
    pub fn new(store: Store, stats: Arc<Stats>, cache_size: usize, max_rooms: usize) -> Hub {
        let flushers = Flushers::start(std::thread::available_parallelism().map_or(2, |n| n.get()));
        let deliverer = order::Deliverer { store: store.clone(), flushers, stats };
        let rooms = Arc::new(Mutex::new(HashMap::new()));
        Hub { rooms, store, deliverer, fanout: OnceLock::new(), cache_size, max_rooms }
    }

    /// Connect to Redis for fan-out between workers; `history`: messages kept per room there.
    pub async fn connect_redis(
        &self,
        url: &str,
        tls: &crate::config::backends::RedisTls,
        prefix: &str,
        history: usize,
    ) -> redis::RedisResult<()> {
        let fanout =
            fanout::Fanout::connect(url, tls, prefix, history, self.rooms.clone(), self.deliverer.clone()).await?;
        let _ = self.fanout.set(fanout);
        Ok(())
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        lock_rooms(&self.rooms)
    }

    /// The room, created and loaded (its newest sequence number) on first use; creating
    /// it needs `may_create` to agree and fewer than `MAX_ROOMS` rooms in memory.
    pub async fn room(
        &self,
        name: &str,
        may_create: impl FnOnce() -> Result<(), Duration>,
    ) -> Result<Arc<Room>, RoomError> {
        let room = {
            let mut rooms = self.rooms();
            match rooms.get(name) {
                Some(room) => room.clone(),
                None => {
                    if rooms.len() >= self.max_rooms {
                        return Err(RoomError::TooMany);
                    }
                    may_create().map_err(RoomError::RateLimited)?;
                    let name: Arc<str> = Arc::from(name);
                    let room = Arc::new(Room::new(name.clone(), self.cache_size));
                    rooms.insert(name, room.clone());
                    room
                }
            }
        };
        room.loaded
            .get_or_try_init(|| async {
                // Subscribed before the head is read: a message stored after the read
                // is published after it, so it arrives (held until the load is done).
                if let Some(fanout) = self.fanout.get() {
                    fanout.subscribe(&room.name).await;
                }
                let head = self.store.head(&room.name).await?;
                self.deliverer.loaded(&room, head);
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(room)
    }

    /// Drops rooms that have had no members for a minute and that nobody is joining
    /// (and their Redis subscriptions).
    pub fn sweep(&self) {
        let cutoff = Instant::now().checked_sub(IDLE_ROOM).unwrap_or_else(Instant::now);
        let mut gone = Vec::new();
        self.rooms().retain(|name, room| {
            let keep = Arc::strong_count(room) > 1 || !room.idle_since_before(cutoff);
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        if let (Some(fanout), false) = (self.fanout.get(), gone.is_empty()) {
            let fanout = fanout.clone();
            tokio::spawn(async move {
                for name in gone {
                    fanout.unsubscribe(&name).await;
                }
            });
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Room memberships across all rooms (a connection in three rooms counts three).
    pub fn membership_count(&self) -> usize {
        self.rooms().values().map(|r| r.member_count()).sum()
    }
}
