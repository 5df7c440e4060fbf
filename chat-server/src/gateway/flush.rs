//! Flushers: the tasks that write room broadcasts to sockets, one per CPU.
//!
//! A broadcast queues its frame in every member's [`Outbox`] and hands each outbox that
//! was idle to one flusher (by connection id), which then makes one vectored write per
//! connection. This replaces a task wake-up per connection and per message with one per
//! flusher per message, spreads the writes over the CPUs, and lets frames that arrive
//! while a flusher is busy leave together in one syscall. An outbox whose socket is full
//! is handed back to its connection task, which waits for writability.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::outbox::Outbox;

/// A pass that writes to this many connections counts as busy.
const BUSY_PASS: usize = 64;
const PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Debug)]
struct Shard {
    pending: Mutex<Vec<Arc<Outbox>>>,
    wake: Notify,
}

#[derive(Debug)]
pub struct Flushers {
    shards: Vec<Shard>,
}

impl Flushers {
    /// Starts `n` flusher tasks on the current runtime; they live as long as it does.
    pub fn start(n: usize) -> Arc<Flushers> {
        let shards = (0..n.max(1)).map(|_| Shard { pending: Mutex::new(Vec::new()), wake: Notify::new() }).collect();
        let flushers = Arc::new(Flushers { shards });
        for i in 0..flushers.shards.len() {
            let flushers = flushers.clone();
            tokio::spawn(async move {
                let shard = &flushers.shards[i];
                let mut batch = Vec::new();
                loop {
                    std::mem::swap(&mut batch, &mut *shard.pending.lock().unwrap_or_else(|p| p.into_inner()));
                    if batch.is_empty() {
                        // A schedule() since the last pass left a permit: no wake-up is lost.
                        shard.wake.notified().await;
                        continue;
                    }
                    let (started, written) = (std::time::Instant::now(), batch.len());
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
                        tokio::time::sleep(started.elapsed().min(PAUSE_MAX)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            });
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
