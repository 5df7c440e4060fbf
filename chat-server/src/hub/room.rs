//! One room in memory: its members, its newest sequence number and a cache of its
//! recent messages with their encoded frames.
//!
//! Owns the ordering guarantee for members: everything a member receives from this room
//! (the `joined` notice, replayed messages, live messages) is queued while holding the
//! room's state lock, so a member sees each sequence number once and in order. A member
//! that resumes is held as *pending* while its replay is queued page by page as it reads
//! ([`crate::gateway::replay`]): live messages are kept aside for it (counted toward its
//! queue bound) until the last page is queued, then appended.
//!
//! Messages reach a room from its own writer and, with several workers, from Redis, in
//! any order. A message past `head + 1` is *held* until the gap is filled (from the
//! database, by [`super::order`]), so members never see a gap; one at or below `head`
//! was delivered already and is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use layer4_chat_protocol::{ChatMessage, ErrorCode, Format, ServerMsg};

use crate::delivery::flush::Flushers;
use crate::delivery::outbox::{Outbox, Stopped, frame};

/// A stored message with its frames, encoded at most once per format and shared by
/// every recipient (the bytes are reference-counted).
#[derive(Debug)]
pub struct Entry {
    pub msg: ChatMessage,
    json: OnceLock<Bytes>,
    msgpack: OnceLock<Bytes>,
}

impl Entry {
    pub fn new(msg: ChatMessage) -> Entry {
        Entry { msg, json: OnceLock::new(), msgpack: OnceLock::new() }
    }

    /// The complete WebSocket frame for `format`.
    pub fn frame(&self, format: Format) -> Bytes {
        let cell = match format {
            Format::Json => &self.json,
            Format::MsgPack => &self.msgpack,
        };
        cell.get_or_init(|| frame(format.encode(&ServerMsg::Message(self.msg.clone())))).clone()
    }
}

/// Live messages held for one member while its replay runs, at most (their bytes also
/// count toward its queue bound).
const MAX_PENDING: usize = 10_000;

#[derive(Debug)]
struct Member {
    outbox: Arc<Outbox>,
    /// Some while a replay is in flight: live messages wait here.
    pending: Option<Vec<Arc<Entry>>>,
    /// The frame bytes in `pending`.
    pending_bytes: usize,
}

/// Messages held past a gap at most; beyond this the newest are dropped (the fill
/// fetches them from the database anyway).
const MAX_HELD: usize = 10_000;

#[derive(Debug, Default)]
struct State {
    head: u64,
    /// `head` was read from the database: until then everything is held.
    loaded: bool,
    members: HashMap<u64, Member>,
    cache: VecDeque<Arc<Entry>>,
    empty_since: Option<Instant>,
    /// Messages past a gap, by sequence number.
    held: BTreeMap<u64, Arc<Entry>>,
    /// A fill of the gap before `held` is under way.
    filling: bool,
}

/// What [`Room::publish`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub delivered: u64,
    pub overflowed: u64,
    /// The caller must start a fill ([`super::order`]): a message is held past a gap.
    pub fill: bool,
}

#[derive(Debug)]
pub struct Room {
    pub name: Arc<str>,
    cache_size: usize,
    state: Mutex<State>,
    /// Sends waiting to be stored, and whether a writer is at work ([`super::send`]).
    appends: Mutex<super::send::Appends>,
    pub(super) loaded: tokio::sync::OnceCell<()>,
    /// One catch-up from the database at a time for resumes past the head
    /// (`gateway/requests.rs`): the others wait for it and find the room caught up.
    pub catch_up: tokio::sync::Mutex<()>,
}

/// What [`Room::join`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Live from `head`.
    Live { head: u64 },
    /// The gap is larger than the replay limit: joined live, `resume_too_far` sent.
    TooFar { head: u64 },
    /// `joined` was queued and the member is pending: queue `after < seq <= head`
    /// page by page ([`Room::cached_page`], else the store), then call
    /// [`Room::finish_join`].
    Replay { after: u64, head: u64 },
}

impl Room {
    pub fn new(name: Arc<str>, cache_size: usize) -> Room {
        Room {
            name,
            cache_size,
            state: Mutex::new(State { empty_since: Some(Instant::now()), ..State::default() }),
            appends: Mutex::new(super::send::Appends::default()),
            loaded: tokio::sync::OnceCell::new(),
            catch_up: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn appends(&self) -> std::sync::MutexGuard<'_, super::send::Appends> {
        self.appends.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The head read from the database on first use: held messages at or below it are
    /// dropped, the ones right after it delivered (`fill`: a gap is left to fetch).
    pub(super) fn set_loaded(&self, head: u64, flushers: &Flushers) -> Published {
        let mut s = self.lock();
        s.head = s.head.max(head);
        s.loaded = true;
        let mut out = Published::default();
        Self::drain_held(&mut s, self.cache_size, flushers, &mut out);
        out
    }

    /// The gap to fill: `(head, last missing)`, or None (and the fill ends) when none is left.
    pub(super) fn gap(&self) -> Option<(u64, u64)> {
        let mut s = self.lock();
        match s.held.keys().next() {
            Some(&first) if s.loaded => Some((s.head, first - 1)),
            _ => {
                s.filling = false;
                None
            }
        }
    }

    pub fn head(&self) -> u64 {
        self.lock().head
    }

    fn joined_notice(&self, head: u64) -> ServerMsg {
        ServerMsg::Joined { room: self.name.to_string(), seq: head }
    }

    /// Queues `joined` with the current head for a member that joins again; under the
    /// state lock, so no live message can overtake it with a lower sequence.
    pub fn rejoined(&self, outbox: &Outbox) {
        let s = self.lock();
        outbox.reply(&self.joined_notice(s.head));
    }

    pub fn join(&self, conn: u64, outbox: &Arc<Outbox>, since: Option<u64>, replay_limit: usize) -> Joined {
        let mut s = self.lock();
        let head = s.head;
        s.empty_since = None;
        let live = Member { outbox: outbox.clone(), pending: None, pending_bytes: 0 };
        match since {
            Some(after) if after < head && (head - after) as usize > replay_limit => {
                outbox.reply(&self.joined_notice(head));
                outbox.reply(&ServerMsg::Error {
                    code: ErrorCode::ResumeTooFar,
                    text: format!(
                        "{} messages of {} were missed, more than the {replay_limit} a resume replays; \
                         fetch them with history before {}",
                        head - after,
                        self.name,
                        head + 1
                    ),
                    room: Some(self.name.to_string()),
                    id: None,
                });
                s.members.insert(conn, live);
                Joined::TooFar { head }
            }
            Some(after) if after < head => {
                outbox.reply(&self.joined_notice(head));
                s.members.insert(conn, Member { pending: Some(Vec::new()), ..live });
                Joined::Replay { after, head }
            }
            _ => {
                outbox.reply(&self.joined_notice(head));
                s.members.insert(conn, live);
                Joined::Live { head }
            }
        }
    }

    /// The frames of the cached messages `after < seq <= upto`, oldest first, until
    /// they reach `budget` bytes (one at least), with the last one's sequence number;
    /// None when the cache no longer holds `after + 1`.
    pub fn cached_page(&self, after: u64, upto: u64, budget: usize, format: Format) -> Option<(Vec<Bytes>, u64)> {
        let s = self.lock();
        if s.cache.front().is_none_or(|first| first.msg.seq > after + 1) {
            return None;
        }
        let (mut frames, mut bytes, mut last) = (Vec::new(), 0, after);
        for entry in s.cache.iter().filter(|e| e.msg.seq > after && e.msg.seq <= upto) {
            if bytes >= budget {
                break;
            }
            let frame = entry.frame(format);
            bytes += frame.len();
            frames.push(frame);
            last = entry.msg.seq;
        }
        // Nothing in range: the cache moved on past `upto` (cannot happen while the
        // member is pending, as `upto` is at most the head it joined at).
        (last > after).then_some((frames, last))
    }

    /// The replay up to `head` is queued: queue what arrived meanwhile and make the
    /// member live.
    pub fn finish_join(&self, conn: u64, head: u64) {
        let mut s = self.lock();
        let Some(member) = s.members.get_mut(&conn) else { return };
        let outbox = member.outbox.clone();
        let waiting = member.pending.take().unwrap_or_default();
        outbox.release(std::mem::take(&mut member.pending_bytes));
        for entry in waiting.into_iter().filter(|e| e.msg.seq > head) {
            outbox.push(entry.frame(outbox.format));
        }
    }

    /// Removes a member; true if it was one.
    pub fn leave(&self, conn: u64) -> bool {
        let mut s = self.lock();
        let gone = s.members.remove(&conn);
        if let Some(member) = &gone {
            member.outbox.release(member.pending_bytes);
        }
        let was = gone.is_some();
        if s.members.is_empty() && s.empty_since.is_none() {
            s.empty_since = Some(Instant::now());
        }
        was
    }

    /// Records a stored message and queues it for every member, in sequence order: one
    /// past a gap is held (and `fill` asks the caller to fill the gap), one already
    /// delivered is dropped.
    pub fn publish(&self, entry: Arc<Entry>, flushers: &Flushers) -> Published {
        let mut s = self.lock();
        let mut out = Published::default();
        let seq = entry.msg.seq;
        if seq <= s.head {
            return out;
        }
        if seq > s.head + 1 || !s.loaded {
            if s.held.len() < MAX_HELD || s.held.keys().next_back().is_some_and(|&last| seq < last) {
                s.held.insert(seq, entry);
                if s.held.len() > MAX_HELD {
                    s.held.pop_last();
                }
            }
            out.fill = s.loaded && !std::mem::replace(&mut s.filling, true);
            return out;
        }
        Self::deliver(&mut s, self.cache_size, entry, flushers, &mut out);
        Self::drain_held(&mut s, self.cache_size, flushers, &mut out);
        out
    }

    /// Delivers held messages that follow `head` without a gap (`out.fill`: a gap is left).
    fn drain_held(s: &mut State, cache_size: usize, flushers: &Flushers, out: &mut Published) {
        while let Some(entry) = s.held.first_entry() {
            let seq = *entry.key();
            if seq <= s.head {
                entry.remove();
            } else if seq == s.head + 1 {
                let entry = entry.remove();
                Self::deliver(s, cache_size, entry, flushers, out);
            } else {
                out.fill = !std::mem::replace(&mut s.filling, true);
                return;
            }
        }
    }

    fn deliver(s: &mut State, cache_size: usize, entry: Arc<Entry>, flushers: &Flushers, out: &mut Published) {
        s.head = entry.msg.seq;
        if cache_size > 0 {
            if s.cache.len() == cache_size {
                s.cache.pop_front();
            }
            s.cache.push_back(entry.clone());
        }
        // One message in `TIMED_EVERY` has its deliveries timed (every member's).
        let timed = crate::delivery::measure::timed(entry.msg.seq, entry.msg.ts);
        for member in s.members.values_mut() {
            match &mut member.pending {
                Some(waiting) => {
                    // Counted with the connection's live queue (all its rooms) against its bound.
                    let bytes = entry.frame(member.outbox.format).len();
                    if waiting.len() < MAX_PENDING && member.outbox.hold(bytes) {
                        member.pending_bytes += bytes;
                        waiting.push(entry.clone());
                    } else {
                        // Held too long: the client reads too slowly to catch up (or it left).
                        let held = waiting.len() as u64 + 1;
                        if member.outbox.stopped() == Some(Stopped::Broken) {
                            crate::delivery::measure::dropped(0, held);
                        } else {
                            crate::delivery::measure::dropped(held, 0);
                        }
                        member.outbox.overflow();
                        member.outbox.release(std::mem::take(&mut member.pending_bytes));
                        out.overflowed += 1;
                        member.pending = None;
                    }
                }
                None => match member.outbox.push_live(entry.frame(member.outbox.format), timed) {
                    Ok(schedule) => {
                        out.delivered += 1;
                        if schedule {
                            flushers.schedule(&member.outbox);
                        }
                    }
                    Err(Stopped::Overflowed) => {
                        out.overflowed += 1;
                        crate::delivery::measure::dropped(1, 0);
                    }
                    // The client is gone; its connection task is leaving the room.
                    Err(Stopped::Broken) => crate::delivery::measure::dropped(0, 1),
                },
            }
        }
    }

    /// Whether the room can be dropped from memory: no members since `older_than`.
    pub fn idle_since_before(&self, older_than: Instant) -> bool {
        let s = self.lock();
        s.members.is_empty() && s.empty_since.is_some_and(|t| t <= older_than)
    }

    pub fn member_count(&self) -> usize {
        self.lock().members.len()
    }
}
