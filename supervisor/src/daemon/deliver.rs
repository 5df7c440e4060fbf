//! Sending recorded crash reports to Sentry (an envelope) and to the webhook (the
//! report as JSON), off the actor: reports wait in a bounded queue (a full queue
//! drops the newest and says so), each attempt has a timeout, failures are retried
//! with backoff. A down or hanging endpoint therefore never slows the daemon.
//!
//! Plain `http://` endpoints only in this build: the daemon carries no TLS stack
//! (its resident size is mostly code); an `https://` DSN or webhook is refused at
//! start with that reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::config::ErrorTracking;
use crate::crash::CrashReport;
use crate::crash::sentry::{self, Dsn};

/// Where recorded reports are handed over; `None` when no sink is configured.
#[derive(Debug, Clone, Default)]
pub(super) struct Outbox {
    tx: Option<mpsc::Sender<CrashReport>>,
    pub dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// Start the sender task for the sinks `cfg` names.
    pub fn start(cfg: &ErrorTracking) -> Outbox {
        let sentry = cfg.sentry_dsn.as_deref().and_then(|d| match Dsn::parse(d) {
            Ok(d) if d.scheme == "http" => Some(d),
            Ok(_) => {
                tracing::error!(
                    "Sentry DSN is https: this build sends to http:// endpoints only (see README); Sentry is off"
                );
                None
            }
            Err(e) => {
                tracing::error!(cause = %e, "Sentry is off");
                None
            }
        });
        let webhook = cfg.webhook_url.clone().filter(|u| {
            let ok = u.starts_with("http://");
            if !ok {
                tracing::error!(
                    "webhook_url is not http://: this build sends to http:// endpoints only; the webhook is off"
                );
            }
            ok
        });
        if sentry.is_none() && webhook.is_none() {
            return Outbox::default();
        }
        let (tx, rx) = mpsc::channel(cfg.queue);
        let sender =
            Sender { sentry, webhook, release: cfg.release.clone(), timeout: cfg.timeout, retries: cfg.retries };
        tokio::spawn(sender.run(rx));
        Outbox { tx: Some(tx), dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queue a report; never waits.
    pub fn send(&self, report: &CrashReport) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(report.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = report.id, "the crash report queue is full; report not sent (it is in crashes.jsonl)");
        }
    }
}

struct Sender {
    sentry: Option<Dsn>,
    webhook: Option<String>,
    release: Option<String>,
    timeout: Duration,
    retries: u32,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<CrashReport>) {
        while let Some(report) = rx.recv().await {
            if let Some(dsn) = &self.sentry {
                let event_id = format!("{:032x}", rand_id(report.id));
                let event = sentry::event(&report, &event_id, self.release.as_deref());
                let sent_at = crate::crash::now_rfc3339();
                let body = sentry::envelope(dsn, &event, &sent_at);
                let headers = [
                    ("content-type", "application/x-sentry-envelope".to_owned()),
                    ("x-sentry-auth", dsn.auth_header()),
                ];
                self.deliver("sentry", &dsn.envelope_url(), &headers, body).await;
            }
            if let Some(url) = &self.webhook {
                let body = serde_json::to_vec(&report).unwrap_or_default();
                self.deliver("webhook", url, &[("content-type", "application/json".to_owned())], body).await;
            }
        }
    }

    /// POST with retries (1 s, 2 s, 4 s, ... apart).
    async fn deliver(&self, sink: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) {
        let mut delay = Duration::from_secs(1);
        for attempt in 0..=self.retries {
            match tokio::time::timeout(self.timeout, post(url, headers, body.clone())).await {
                Ok(Ok(status)) if (200..300).contains(&status) => return,
                Ok(Ok(status)) => tracing::warn!(sink, status, attempt, "crash report refused"),
                Ok(Err(e)) => tracing::warn!(sink, cause = %e, attempt, "cannot send a crash report"),
                Err(_) => tracing::warn!(sink, attempt, "sending a crash report timed out"),
            }
            if attempt < self.retries {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::error!(sink, "a crash report was not delivered (it is in crashes.jsonl)");
    }
}

/// A per-daemon-run unique event id from the report id.
fn rand_id(id: u64) -> u128 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (seed << 16) ^ u128::from(id) ^ (u128::from(std::process::id()) << 96)
}

/// One HTTP/1.1 POST to an `http://host[:port]/path` URL; the status code.
async fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> std::io::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other("not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let addr = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut request = hyper::Request::post(path).header(hyper::header::HOST, authority);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let request =
        request.body(http_body_util::Full::new(hyper::body::Bytes::from(body))).map_err(std::io::Error::other)?;
    let response = send.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}
