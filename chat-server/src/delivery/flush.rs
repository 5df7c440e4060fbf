//! Flushers: the threads that write room broadcasts to sockets, one per CPU.
//!
//! A broadcast queues its frame in every member's [`Outbox`] and hands each outbox that
//! was idle to one flusher (by connection id), which then makes one vectored write per
//! connection. This replaces a task wake-up per connection and per message with one per
//! flusher per message, spreads the writes over the CPUs, and lets frames that arrive
//! while a flusher is busy leave together in one syscall. An outbox whose socket is full
//! is handed back to its connection task, which waits for writability.
//!
//! After a busy pass (64 connections or more) a flusher rests as long as the pass took,
//! at most 2 ms, so that under load frames leave several per syscall; after a message to
//! a big room the next one usually comes much later, so at low rates this adds nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::outbox::Outbox;

/// A pass that writes to this many connections counts as busy.
const BUSY_PASS: usize = 64;
const PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Debug)]
struct Shard {
    pending: Mutex<Vec<Arc<Outbox>>>,
    wake: Condvar,
}

#[derive(Debug)]
pub struct Flushers {
    shards: Vec<Shard>,
}

impl Flushers {
    /// Starts `n` flusher threads. They are OS threads, not tasks, so the kernel spreads
    /// them over the CPUs at once (tokio would first queue both on the worker that woke
    /// them); their work is non-blocking writes. They live as long as the process.
    pub fn start(n: usize) -> Arc<Flushers> {
        let shards = (0..n.max(1)).map(|_| Shard { pending: Mutex::new(Vec::new()), wake: Condvar::new() }).collect();
        let flushers = Arc::new(Flushers { shards });
        for i in 0..flushers.shards.len() {
            let flushers = flushers.clone();
            let spawned = std::thread::Builder::new().name(format!("flusher-{i}")).spawn(move || {
                let shard = &flushers.shards[i];
                let mut batch = Vec::new();
                loop {
                    {
                        let mut pending = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
                        while pending.is_empty() {
                            pending = shard.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                        }
                        std::mem::swap(&mut batch, &mut *pending);
                    }
                    let (started, written) = (Instant::now(), batch.len());
                    for outbox in batch.drain(..) {
                        outbox.unschedule();
                        if !matches!(outbox.write_queued(), Ok(false)) {
                            outbox.wake_task(); // full socket, overflow or error
                        }
                    }
                    if written >= BUSY_PASS {
                        // Under load, rest as long as the pass took (at most PAUSE_MAX): the
                        // frames that arrive meanwhile leave several per syscall. After a
                        // message to a big room the next one is usually much later, so at
                        // low rates this costs no latency.
                        std::thread::sleep(started.elapsed().min(PAUSE_MAX));
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a flusher thread");
            }
        }
        flushers
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Hands an outbox to its flusher (after `push_live` asked for it).
    pub fn schedule(&self, outbox: &Arc<Outbox>) {
        let shard = &self.shards[outbox.shard % self.shards.len()];
        let mut pending = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push(outbox.clone());
        if pending.len() == 1 {
            drop(pending);
            shard.wake.notify_one();
        }
    }
}
