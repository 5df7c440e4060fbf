//! One connection's outbound queue: every frame for the client goes through it, so a
//! single writer (the connection task) batches and flushes them.
//!
//! Bounded in bytes of *live* traffic (room broadcasts): past `max_live_bytes` the queue
//! is emptied, marked overflowed and the connection is closed with 4001 ("resume"), so a
//! slow reader costs at most its bound. Replies to the client's own requests (acks,
//! history, replay) are not refused: their size is bounded by the request, and refusing
//! a replay would only make the client ask for it again.
//!
//! Deliberately a mutex around a `VecDeque` rather than a channel: an idle connection
//! owns no allocation here (a tokio mpsc pre-allocates a block of 32 slots).

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::extract::ws::Message;
use layer4_chat_client::protocol::{Format, Payload};
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Outbox {
    pub format: Format,
    max_live_bytes: usize,
    inner: Mutex<Inner>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<(Message, usize)>,
    live_bytes: usize,
    overflowed: bool,
}

/// The queue passed its bound; the connection must close with 4001.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflowed;

pub fn frame(payload: Payload) -> Message {
    match payload {
        Payload::Text(t) => Message::Text(t.into()),
        Payload::Binary(b) => Message::Binary(b.into()),
    }
}

fn len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

impl Outbox {
    pub fn new(format: Format, max_live_bytes: usize) -> Outbox {
        Outbox { format, max_live_bytes, inner: Mutex::new(Inner::default()), wake: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a reply or replayed message.
    pub fn push(&self, msg: Message) {
        let mut inner = self.lock();
        if !inner.overflowed {
            inner.items.push_back((msg, 0));
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Encodes and queues a reply.
    pub fn reply<T: serde::Serialize>(&self, msg: &T) {
        self.push(frame(self.format.encode(msg)));
    }

    /// Queues a broadcast. False when the queue overflowed (now or before): the
    /// connection is being closed with 4001 and the message was not queued.
    pub fn push_live(&self, msg: Message) -> bool {
        let bytes = len(&msg);
        let mut inner = self.lock();
        if inner.overflowed {
            return false;
        }
        if inner.live_bytes + bytes > self.max_live_bytes {
            drop(inner);
            self.overflow();
            return false;
        }
        inner.live_bytes += bytes;
        inner.items.push_back((msg, bytes));
        drop(inner);
        self.wake.notify_one();
        true
    }

    /// Marks the queue overflowed: the connection closes with 4001.
    pub fn overflow(&self) {
        let mut inner = self.lock();
        inner.overflowed = true;
        inner.items = VecDeque::new();
        inner.live_bytes = 0;
        drop(inner);
        self.wake.notify_one();
    }

    /// Moves up to `max` queued frames into `out`. Err once the queue overflowed.
    pub fn take(&self, max: usize, out: &mut Vec<Message>) -> Result<(), Overflowed> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Err(Overflowed);
        }
        let n = max.min(inner.items.len());
        let mut freed = 0;
        for (msg, live) in inner.items.drain(..n) {
            freed += live;
            out.push(msg);
        }
        inner.live_bytes -= freed;
        if inner.items.is_empty() && inner.items.capacity() > 64 {
            // Give a burst's memory back instead of keeping it per idle connection.
            inner.items = VecDeque::new();
        } else if !inner.items.is_empty() {
            drop(inner);
            self.wake.notify_one();
        }
        Ok(())
    }

    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Wakes the writer again if frames are waiting (after a wake-up was consumed elsewhere).
    pub fn rearm(&self) {
        let inner = self.lock();
        if !inner.items.is_empty() || inner.overflowed {
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Resolves when something was queued since the last `take`.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn live_traffic_over_the_bound_overflows_and_frees_the_queue() {
        let o = Outbox::new(Format::Json, 10);
        assert!(o.push_live(Message::Text("12345".into())));
        o.push(Message::Text("reply-not-counted".into()));
        assert!(o.push_live(Message::Text("12345".into())));
        assert!(!o.push_live(Message::Text("1".into())));
        let mut out = Vec::new();
        assert!(o.take(100, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn take_respects_the_batch_size_and_releases_bytes() {
        let o = Outbox::new(Format::Json, 10);
        for _ in 0..5 {
            assert!(o.push_live(Message::Text("ab".into())));
        }
        let mut out = Vec::new();
        o.take(3, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(o.push_live(Message::Text("123456".into())), "3 x 2 bytes were released");
        out.clear();
        o.take(100, &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
