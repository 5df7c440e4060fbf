//! Sending recorded crash reports to Sentry and the webhook, off the actor:
//! reports wait in a bounded queue (a full queue drops the newest and counts it),
//! one task turns each into jobs and hands them to an `l4ctl-send` process
//! ([`crate::crash::outbound`]) started when there is work and ended (stdin
//! closed) when the queue is empty. A down or hanging endpoint therefore never
//! slows the daemon, and the daemon carries no TLS stack.

use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::crash::CrashReport;
use crate::crash::outbound::{Destinations, Job, Outcome};

/// Delivery counters, for `l4ctl crashes` and the API.
#[derive(Debug, Default)]
pub(super) struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
}

/// What the API shows of delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeliveryStats {
    pub sentry: bool,
    pub webhook: bool,
    /// POSTs answered 2xx.
    pub sent: u64,
    /// POSTs that failed every attempt (the report is in crashes.jsonl).
    pub failed: u64,
    /// Reports not queued because the queue was full.
    pub dropped: u64,
    /// Reports waiting or being sent.
    pub queued: u64,
}

/// Where recorded reports are handed over; without a sender when no sink is configured.
#[derive(Debug, Clone, Default)]
pub(super) struct Outbox {
    tx: Option<mpsc::Sender<CrashReport>>,
    dest: Option<Arc<Destinations>>,
    counters: Arc<Counters>,
}

impl Outbox {
    /// Start the delivery task for `dest` (`queue`: reports waiting at most). The
    /// counters carry over from `previous` (a changed `[error_tracking]`), whose task
    /// finishes what it has queued.
    pub fn start(dest: Option<Arc<Destinations>>, queue: usize, previous: &Outbox) -> Outbox {
        let counters = previous.counters.clone();
        let Some(d) = dest.clone() else { return Outbox { tx: None, dest, counters } };
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(run(d, rx, counters.clone()));
        Outbox { tx: Some(tx), dest, counters }
    }

    /// Queue a report; never waits.
    pub fn send(&self, report: &CrashReport) {
        let Some(tx) = &self.tx else { return };
        // Counted before it can be dequeued, so the task's decrement never comes first.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if tx.try_send(report.clone()).is_err() {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = report.id, "the crash report queue is full; report not sent (it is in crashes.jsonl)");
        }
    }

    pub fn stats(&self) -> DeliveryStats {
        let c = &self.counters;
        DeliveryStats {
            sentry: self.dest.as_ref().is_some_and(|d| d.sentry.is_some()),
            webhook: self.dest.as_ref().is_some_and(|d| d.webhook.is_some()),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
        }
    }
}

async fn run(dest: Arc<Destinations>, mut rx: mpsc::Receiver<CrashReport>, counters: Arc<Counters>) {
    let mut next_id = 0;
    while let Some(first) = rx.recv().await {
        let mut sender: Option<Sender> = None;
        let mut report = Some(first);
        // Every report queued meanwhile goes to the same sender process.
        while let Some(r) = report.take().or_else(|| rx.try_recv().ok()) {
            for job in dest.jobs(&r, &mut next_id) {
                if sender.is_none() {
                    sender =
                        Sender::start(&dest).map_err(|e| tracing::error!(cause = %e, "cannot start l4ctl-send")).ok();
                }
                let outcome = match &mut sender {
                    Some(s) => s.run(&job, dest.job_deadline()).await,
                    None => Err(Failure { cause: "l4ctl-send is not running".to_owned(), stuck: false }),
                };
                match outcome {
                    Ok(o) if o.delivered => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(sink = %o.sink, attempts = o.attempts, "crash report delivered");
                    }
                    Ok(o) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(sink = %o.sink, attempts = o.attempts, cause = o.error.as_deref().unwrap_or("?"), "a crash report was not delivered (it is in crashes.jsonl)");
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(sink = %job.sink, cause = %e, "a crash report was not delivered (it is in crashes.jsonl)");
                        // A sender that timed out is stuck: kill it (it has not answered,
                        // so it has not exited and its pid is still its own). One that
                        // ended is only dropped: the reaper has its pid.
                        if let Some(s) = sender.take()
                            && e.stuck
                        {
                            s.kill();
                        }
                    }
                }
            }
            counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
        // Dropping the sender closes its stdin: it ends after the last job.
    }
}

/// Why a job got no outcome.
struct Failure {
    cause: String,
    /// The sender did not answer in time (rather than ending).
    stuck: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cause)
    }
}

/// One running `l4ctl-send`.
struct Sender {
    child: Child,
    stdin: pipe::Sender,
    stdout: tokio::io::Lines<BufReader<pipe::Receiver>>,
    stderr: pipe::Receiver,
}

impl Sender {
    fn start(dest: &Destinations) -> std::io::Result<Sender> {
        let mut child = dest.sender_command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        super::helpers::spawned(child.id(), false);
        let fd = |f: Option<OwnedFd>| f.ok_or_else(|| std::io::Error::other("no pipe"));
        let stdin = fd(child.stdin.take().map(OwnedFd::from))?;
        let stdout = fd(child.stdout.take().map(OwnedFd::from))?;
        let stderr = fd(child.stderr.take().map(OwnedFd::from))?;
        Ok(Sender {
            stdin: pipe::Sender::from_owned_fd(stdin)?,
            stdout: BufReader::new(pipe::Receiver::from_owned_fd(stdout)?).lines(),
            stderr: pipe::Receiver::from_owned_fd(stderr)?,
            child,
        })
    }

    /// Hand over one job and wait for its outcome, at most `deadline`.
    async fn run(&mut self, job: &Job, deadline: Duration) -> Result<Outcome, Failure> {
        let mut line = serde_json::to_vec(job).map_err(|e| Failure { cause: e.to_string(), stuck: false })?;
        line.push(b'\n');
        let exchange = async {
            self.stdin.write_all(&line).await.map_err(|e| format!("writing to l4ctl-send: {e}"))?;
            match self.stdout.next_line().await {
                Ok(Some(answer)) => {
                    serde_json::from_str::<Outcome>(&answer).map_err(|e| format!("l4ctl-send said {answer:?}: {e}"))
                }
                Ok(None) => Err("l4ctl-send ended without an answer".to_owned()),
                Err(e) => Err(format!("reading from l4ctl-send: {e}")),
            }
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(cause)) => Err(Failure { cause: format!("{cause}{}", self.said().await), stuck: false }),
            Err(_) => Err(Failure { cause: format!("no answer from l4ctl-send within {deadline:?}"), stuck: true }),
        }
    }

    /// What an ended sender wrote to stderr (why it ended: a bad `ca_file`, say).
    async fn said(&mut self) -> String {
        let mut text = String::new();
        let read = tokio::io::AsyncReadExt::read_to_string(&mut self.stderr, &mut text);
        let _ = tokio::time::timeout(Duration::from_millis(200), read).await;
        match text.trim() {
            "" => String::new(),
            said => format!(": {said}"),
        }
    }

    /// Stop a sender that is stuck (the daemon's reaper collects it).
    fn kill(mut self) {
        let _ = self.child.kill();
    }
}
