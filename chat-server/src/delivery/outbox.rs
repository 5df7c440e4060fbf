//! One connection's outbound byte stream: every frame for the client goes through it,
//! whole and in order.
//!
//! Frames arrive already encoded (a room message is framed once per format and shared
//! by every member). Two ways out, both under the outbox's lock so frames never
//! interleave:
//! - replies to the connection's own requests are written at once with a non-blocking
//!   `write` when nothing is queued (the connection task is running anyway);
//! - room broadcasts are queued, and the worker's [`Flushers`](super::flush::Flushers)
//!   write them: one vectored write of up to `MESSAGE_BATCH_SIZE` frames per connection
//!   per pass, spread over one flusher per CPU. A delivery to an idle connection costs a
//!   queue push and one syscall, with no per-connection task wake-up; under load, frames
//!   pile up between passes and go out several per syscall.
//!
//! When the socket is full, the connection task takes over: it waits for writability
//! and drains the queue itself, and broadcasts only queue meanwhile.
//!
//! Bounded in bytes of *live* traffic (room broadcasts): past `max_live_bytes` the queue
//! is dropped (except a frame already half written), marked overflowed, and the
//! connection closes with 4001 ("resume"), so a slow reader costs at most its bound.
//! Replies to the client's own requests (acks, history pages, replay pages) are not
//! refused, but they are kept under the same bound by their producers: requests are
//! read only while the queue is under it ([`Outbox::pause_reads`]), a replay page is
//! queued only while it is under half of it, and a history reply carries at most half
//! of it. A queue that has not moved for `WRITE_TIMEOUT` ([`Outbox::progress`], watched by
//! the connection task) closes the connection with 4001 too. Control frames (ping, pong, close, written by
//! tungstenite) are accepted even after an overflow, so the close frame can follow the
//! backlog out.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use layer4_chat_protocol::{Format, Payload};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Encodes one message as a complete, unmasked server frame (text for JSON, binary
/// for MessagePack).
pub fn frame(payload: Payload) -> Bytes {
    let (data, opcode) = match payload {
        Payload::Text(t) => (Bytes::from(t), OpCode::Data(Data::Text)),
        Payload::Binary(b) => (Bytes::from(b), OpCode::Data(Data::Binary)),
    };
    let mut out = Vec::with_capacity(data.len() + 10);
    // Formatting into a Vec cannot fail.
    let _ = Frame::message(data, opcode, true).format(&mut out);
    Bytes::from(out)
}

/// Why the outbox no longer carries data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Live traffic passed the bound: close with 4001.
    Overflowed,
    /// The socket failed: the client is gone.
    Broken,
}

#[derive(Debug)]
pub struct Outbox {
    pub format: Format,
    /// Which flusher writes this connection's broadcasts.
    pub shard: usize,
    max_live_bytes: usize,
    batch: usize,
    stream: Arc<TcpStream>,
    inner: Mutex<Inner>,
    wake: Notify,
    /// In a flusher's list already.
    scheduled: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Frames (or what remains of the first one), each with 0 when it is not live
    /// traffic, else the time its message was stored (milliseconds since the epoch) when
    /// its delivery is timed ([`super::measure::timed`]), else 1.
    queue: VecDeque<(Bytes, u64)>,
    live_bytes: usize,
    /// The first frame is partly written: it must be finished before anything else.
    head_started: bool,
    /// The socket was full at the last write: the connection task drains the queue.
    blocked: bool,
    /// Bytes queued, of every kind.
    queued_bytes: usize,
    /// The connection task stopped reading its client because too much is queued.
    reads_paused: bool,
    /// The connection task waits for the queue to fall under half the bound (a replay's
    /// next page): whoever writes it there (a flusher, too) wakes the task.
    under_half_wanted: bool,
    stopped: Option<Stopped>,
    /// Bytes written from the queue, ever (no clock on the queueing side).
    written: u64,
    /// Live frames held for this connection by rooms it is replaying ([`Outbox::hold`]).
    held: usize,
}

impl Inner {
    /// Accounts for `n` bytes written from the front of the queue.
    fn consume(&mut self, mut n: usize, shard: usize) {
        self.queued_bytes -= n.min(self.queued_bytes);
        self.written += n as u64;
        let mut now = 0;
        while n > 0 {
            let Some((front, stored)) = self.queue.front_mut() else { return };
            let take = n.min(front.len());
            front.advance(take);
            let stored = *stored;
            if stored != 0 {
                self.live_bytes -= take;
            }
            n -= take;
            if front.is_empty() {
                if stored > 1 {
                    if now == 0 {
                        now = super::measure::now_ms();
                    }
                    super::measure::written(shard, stored, now);
                }
                self.queue.pop_front();
                self.head_started = false;
            } else {
                self.head_started = true;
            }
        }
    }
}

impl Outbox {
    pub fn new(format: Format, max_live_bytes: usize, batch: usize, stream: Arc<TcpStream>, shard: usize) -> Outbox {
        Outbox {
            format,
            shard,
            max_live_bytes,
            batch: batch.max(1),
            stream,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            scheduled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the frame now if the socket takes it, else queues it for the connection
    /// task. False when nothing was sent or queued (overflowed, or the socket is gone).
    fn send(&self, frame: Bytes, control: bool) -> bool {
        let mut inner = self.lock();
        match inner.stopped {
            Some(Stopped::Broken) => return false,
            Some(Stopped::Overflowed) if !control => return false,
            _ => {}
        }
        let mut rest = frame;
        if inner.queue.is_empty() {
            match self.stream.try_write(&rest) {
                Ok(n) if n == rest.len() => return true,
                Ok(n) => {
                    rest.advance(n);
                    inner.head_started = n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => inner.blocked = true,
                Err(_) => {
                    inner.stopped = Some(Stopped::Broken);
                    drop(inner);
                    self.wake.notify_one();
                    return false;
                }
            }
        }
        inner.queued_bytes += rest.len();
        inner.queue.push_back((rest, 0));
        drop(inner);
        self.wake.notify_one();
        true
    }

    /// Queues a room broadcast (of a message stored at `stored_ms`) for the flushers:
    /// `Ok(true)` if a flusher must be told. The frame is dropped when the connection
    /// overflowed, now or before (a queue drop), or when its socket already failed (the
    /// client is gone).
    pub fn push_live(&self, frame: Bytes, stored_ms: u64) -> Result<bool, Stopped> {
        let mut inner = self.lock();
        if let Some(stopped) = inner.stopped {
            return Err(stopped);
        }
        if inner.live_bytes + inner.held + frame.len() > self.max_live_bytes {
            self.overflow_locked(&mut inner);
            return Err(Stopped::Overflowed);
        }
        inner.live_bytes += frame.len();
        inner.queued_bytes += frame.len();
        inner.queue.push_back((frame, stored_ms.max(1)));
        // `stored_ms` is 1 for a delivery that is not timed (see `measure::timed`).
        if inner.blocked {
            return Ok(false); // the connection task is waiting for writability
        }
        drop(inner);
        Ok(!self.scheduled.swap(true, Ordering::AcqRel))
    }

    /// Called by a flusher before it writes: later broadcasts schedule it again.
    pub fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Release);
    }

    /// Wakes the connection task (the socket is full, or the outbox stopped).
    pub fn wake_task(&self) {
        self.wake.notify_one();
    }

    /// A reply or a replayed message.
    pub fn push(&self, frame: Bytes) {
        self.send(frame, false);
    }

    /// Encodes and sends a reply.
    pub fn reply<T: serde::Serialize>(&self, msg: &T) {
        self.push(frame(self.format.encode(msg)));
    }

    /// A control frame written by tungstenite (pong, ping, close).
    pub fn push_control(&self, bytes: Bytes) -> bool {
        self.send(bytes, true)
    }

    /// Stops data frames: the connection closes with 4001.
    pub fn overflow(&self) {
        let mut inner = self.lock();
        self.overflow_locked(&mut inner);
    }

    fn overflow_locked(&self, inner: &mut Inner) {
        // Live frames queued (counted delivered) and dropped now: purged, unless the
        // socket had failed already (then nothing could have written them anyway).
        let broken = inner.stopped == Some(Stopped::Broken);
        if inner.stopped.is_none() {
            inner.stopped = Some(Stopped::Overflowed);
        }
        let keep = usize::from(inner.head_started).min(inner.queue.len());
        if !broken {
            super::measure::purged(inner.queue.iter().skip(keep).filter(|(_, stored)| *stored != 0).count() as u64);
        }
        inner.queue.truncate(keep);
        inner.live_bytes = inner.queue.iter().filter(|(_, stored)| *stored != 0).map(|(b, _)| b.len()).sum();
        inner.queued_bytes = inner.queue.iter().map(|(b, _)| b.len()).sum();
        inner.queue.shrink_to_fit();
        self.wake.notify_one();
    }

    /// Whether the connection task should stop reading requests: replies are bounded
    /// per request but not across requests, so a client that sends without reading
    /// would otherwise make its queue grow without bound. Reading resumes (with a
    /// wake-up) once the queue is under half the bound.
    pub fn pause_reads(&self) -> bool {
        let mut inner = self.lock();
        if inner.queued_bytes > self.max_live_bytes {
            inner.reads_paused = true;
        } else if inner.queued_bytes <= self.max_live_bytes / 2 {
            inner.reads_paused = false;
        }
        inner.reads_paused
    }

    pub fn stopped(&self) -> Option<Stopped> {
        self.lock().stopped
    }

    /// A room holds a live frame of `bytes` for this connection while it replays: counted
    /// with the live queue against the bound. False (and the outbox overflows) past it.
    pub fn hold(&self, bytes: usize) -> bool {
        let mut inner = self.lock();
        if inner.stopped.is_some() || inner.live_bytes + inner.held + bytes > self.max_live_bytes {
            self.overflow_locked(&mut inner);
            return false;
        }
        inner.held += bytes;
        true
    }

    /// A room gave back `bytes` it held (queued now, or dropped).
    pub fn release(&self, bytes: usize) {
        let mut inner = self.lock();
        inner.held = inner.held.saturating_sub(bytes);
    }

    /// Whether the queue is under half the bound; if not, the connection task is woken
    /// once it is (by whoever writes it down), as for paused reads.
    pub fn under_half(&self) -> bool {
        let mut inner = self.lock();
        let under = inner.queued_bytes <= self.max_live_bytes / 2;
        inner.under_half_wanted = !under;
        under
    }

    /// None when nothing is queued; else the bytes written from the queue so far, which
    /// stay the same while the client takes nothing.
    pub fn progress(&self) -> Option<u64> {
        let inner = self.lock();
        (!inner.queue.is_empty()).then_some(inner.written)
    }

    /// Writes queued frames, up to `batch` per vectored write, until the queue is empty
    /// (Ok(false)) or the socket is full (Ok(true): wait for writability, then call again).
    pub fn write_queued(&self) -> Result<bool, Stopped> {
        let mut inner = self.lock();
        loop {
            if inner.stopped == Some(Stopped::Broken) {
                return Err(Stopped::Broken);
            }
            if (inner.reads_paused || inner.under_half_wanted) && inner.queued_bytes <= self.max_live_bytes / 2 {
                // The client caught up: the connection task may read its requests, or
                // queue a replay's next page, again.
                inner.reads_paused = false;
                inner.under_half_wanted = false;
                self.wake.notify_one();
            }
            if inner.queue.is_empty() {
                inner.blocked = false;
                if inner.queue.capacity() > 64 {
                    inner.queue = VecDeque::new(); // a burst's memory goes back
                }
                return Ok(false);
            }
            let slices: Vec<IoSlice<'_>> = inner.queue.iter().take(self.batch).map(|(b, _)| IoSlice::new(b)).collect();
            match self.stream.try_write_vectored(&slices) {
                Ok(0) => {
                    inner.stopped = Some(Stopped::Broken);
                    return Err(Stopped::Broken);
                }
                Ok(n) => inner.consume(n, self.shard),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    inner.blocked = true;
                    return Ok(true);
                }
                Err(_) => {
                    inner.stopped = Some(Stopped::Broken);
                    return Err(Stopped::Broken);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Resolves when something was queued (or the outbox stopped) since the last wake.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Resolves when the socket can take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.stream.writable().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A connected pair; the far end's receive buffer is small so the near end fills up.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let far = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (near, _) = listener.accept().await.unwrap();
        near.set_nodelay(true).unwrap();
        (Arc::new(near), far)
    }

    #[tokio::test]
    async fn replies_go_out_at_once_and_broadcasts_wait_for_one_flusher_pass() {
        let (near, mut far) = pair().await;
        let o = Outbox::new(Format::Json, 1 << 20, 100, near, 0);
        o.push(Bytes::from_static(b"ab"));
        assert!(o.is_empty(), "a reply is written at once");
        assert_eq!(o.push_live(Bytes::from_static(b"c"), 1), Ok(true), "a broadcast asks for a flusher");
        assert_eq!(o.push_live(Bytes::from_static(b"!"), 1), Ok(false), "once");
        o.unschedule();
        assert_eq!(o.write_queued(), Ok(false));
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc!");
    }

    #[tokio::test]
    async fn frames_go_straight_out_while_the_socket_keeps_up() {
        let (near, mut far) = pair().await;
        let o = Outbox::new(Format::Json, 1 << 20, 100, near, 0);
        o.push(Bytes::from_static(b"abc"));
        assert!(o.is_empty(), "written at once, nothing queued");
        let mut buf = [0u8; 3];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
    }

    #[tokio::test]
    async fn a_full_socket_queues_in_order_then_overflows_at_the_bound_keeping_frames_whole() {
        let (near, mut far) = pair().await;
        let o = Outbox::new(Format::Json, 256 * 1024, 100, near, 0);
        let frame = |i: u8| Bytes::from(vec![i; 1000]);
        let mut i = 0u8;
        // Fill the socket: broadcasts written by a "flusher" until the socket is full.
        loop {
            assert!(o.push_live(frame(i), 1).is_ok());
            i = i.wrapping_add(1);
            if o.write_queued().unwrap() {
                break;
            }
        }
        let mut accepted = 0;
        while o.push_live(frame(i), 1).is_ok() {
            i = i.wrapping_add(1);
            accepted += 1;
        }
        assert!(accepted > 100, "the bound is in bytes: {accepted} frames were queued");
        assert_eq!(o.stopped(), Some(Stopped::Overflowed));
        assert_eq!(o.push_live(frame(0), 1), Err(Stopped::Overflowed), "counted as a queue drop");
        assert!(o.push_control(Bytes::from_static(b"CLOSE")), "control frames still go out");
        // Drain: the bytes the far end reads are whole 1000-byte frames, then CLOSE.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        while o.write_queued().unwrap() {
            o.writable().await.unwrap();
        }
        drop(o);
        let all = reader.await.unwrap();
        assert!(all.ends_with(b"CLOSE"));
        let body = &all[..all.len() - 5];
        assert_eq!(body.len() % 1000, 0, "no frame was cut");
        for (n, chunk) in body.chunks(1000).enumerate() {
            assert!(chunk.iter().all(|b| *b == n as u8), "frame {n} in order and whole");
        }
    }

    #[tokio::test]
    async fn a_task_waiting_for_the_queue_under_half_is_woken_by_whoever_writes_it_there() {
        let (near, mut far) = pair().await;
        let o = Outbox::new(Format::Json, 4000, 100, near, 0);
        for _ in 0..3 {
            o.push_live(Bytes::from(vec![b'x'; 1000]), 1).unwrap(); // 3000 queued, for a flusher
        }
        assert!(!o.under_half(), "3000 of 4000 queued");
        // A flusher writes the queue down: the waiting task learns of it.
        o.unschedule();
        assert_eq!(o.write_queued(), Ok(false));
        tokio::time::timeout(std::time::Duration::from_secs(5), o.wait()).await.expect("woken");
        assert!(o.under_half());
        let mut buf = vec![0u8; 3000];
        far.read_exact(&mut buf).await.unwrap();
    }

    #[tokio::test]
    async fn a_broadcast_to_a_broken_socket_is_not_a_queue_drop() {
        let (near, far) = pair().await;
        let o = Outbox::new(Format::Json, 1 << 20, 100, near, 0);
        drop(far);
        // Writes to a peer that closed fail once its reset came back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while o.stopped() != Some(Stopped::Broken) {
            assert!(std::time::Instant::now() < deadline, "the socket never failed");
            o.push(Bytes::from_static(b"ping"));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(o.push_live(Bytes::from_static(b"late"), 1), Err(Stopped::Broken));
    }
}
