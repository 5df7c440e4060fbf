//! The rooms of one worker and the send path: store first, then publish in order.
//!
//! Owns which rooms are in memory (created on first join, dropped a minute after their
//! last member left) and the rule that a message is durable before anyone sees it:
//! [`Hub::send`] (in [`send`]) stores a room's messages in batches by one writer at a
//! time and queues them for every member in sequence order. Cross-worker fan-out
//! (Redis) plugs in behind `publish` in the cluster work.

pub mod room;
#[cfg(test)]
mod room_tests;
pub mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gateway::flush::Flushers;
use crate::stats::Stats;
use crate::store::{Store, StoreError};
pub use room::{Entry, Joined, Room};

/// How long an empty room stays in memory (with its cache) after its last member left.
const IDLE_ROOM: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    pub store: Store,
    pub stats: Arc<Stats>,
    pub flushers: Arc<Flushers>,
    cache_size: usize,
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
    pub fn new(store: Store, stats: Arc<Stats>, cache_size: usize) -> Hub {
        let flushers = Flushers::start(std::thread::available_parallelism().map_or(2, |n| n.get()));
        Hub { rooms: Mutex::new(HashMap::new()), store, stats, flushers, cache_size }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The room, created and loaded (its newest sequence number) on first use.
    pub async fn room(&self, name: &str) -> Result<Arc<Room>, StoreError> {
        let room = {
            let mut rooms = self.rooms();
            match rooms.get(name) {
                Some(room) => room.clone(),
                None => {
                    let name: Arc<str> = Arc::from(name);
                    let room = Arc::new(Room::new(name.clone(), self.cache_size));
                    rooms.insert(name, room.clone());
                    room
                }
            }
        };
        room.loaded
            .get_or_try_init(|| async {
                let head = self.store.head(&room.name).await?;
                room.set_head(head);
                Ok::<(), StoreError>(())
            })
            .await?;
        Ok(room)
    }

    /// Drops rooms that have had no members for a minute and that nobody is joining.
    pub fn sweep(&self) {
        let cutoff = Instant::now().checked_sub(IDLE_ROOM).unwrap_or_else(Instant::now);
        self.rooms().retain(|_, room| Arc::strong_count(room) > 1 || !room.idle_since_before(cutoff));
    }

    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Room memberships across all rooms (a connection in three rooms counts three).
    pub fn membership_count(&self) -> usize {
        self.rooms().values().map(|r| r.member_count()).sum()
    }
}
