//! Delivery of crash reports to Sentry and the webhook, through `l4ctl-send`.
//!
//! The daemon carries no TLS stack (its resident size is mostly code): it turns a
//! report into [`Job`]s (a Sentry envelope, the webhook's JSON) and writes them,
//! one JSON line each, to a short-lived `l4ctl-send` process that does the
//! HTTP(S) POSTs with a per-attempt timeout and retries, and answers one
//! [`Outcome`] line per job. The daemon's own panic hook uses the same path
//! without waiting for the answers.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CrashReport;
use super::sentry::{self, Dsn};
use crate::config::ErrorTracking;

/// One POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    /// `sentry` or `webhook`.
    pub sink: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What became of one [`Job`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: u64,
    pub sink: String,
    pub delivered: bool,
    pub attempts: u32,
    /// The last HTTP status, when there was an answer.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Where reports go and how: `[error_tracking]` resolved, DSN parsed.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub sentry: Option<Dsn>,
    pub webhook: Option<String>,
    pub release: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub ca_file: Option<PathBuf>,
}

impl Destinations {
    /// `None` when nothing is configured (or the DSN does not parse: logged).
    pub fn from_config(cfg: &ErrorTracking) -> Option<Destinations> {
        let sentry = cfg
            .sentry_dsn
            .as_deref()
            .and_then(|d| Dsn::parse(d).map_err(|e| tracing::error!(cause = %e, "Sentry is off")).ok());
        let webhook = cfg.webhook_url.clone();
        (sentry.is_some() || webhook.is_some()).then(|| Destinations {
            sentry,
            webhook,
            release: cfg.release.clone(),
            timeout: cfg.timeout,
            retries: cfg.retries,
            ca_file: cfg.ca_file.clone(),
        })
    }

    /// The POSTs that deliver `report`; `id` numbers them.
    pub fn jobs(&self, report: &CrashReport, id: &mut u64) -> Vec<Job> {
        let mut out = Vec::new();
        let mut next = || {
            *id += 1;
            *id
        };
        if let Some(dsn) = &self.sentry {
            let event_id = format!("{:032x}", event_id(report.id));
            let event = sentry::event(report, &event_id, self.release.as_deref());
            let body = sentry::envelope(dsn, &event, &super::now_rfc3339());
            out.push(Job {
                id: next(),
                sink: "sentry".into(),
                url: dsn.envelope_url(),
                headers: vec![
                    ("content-type".into(), "application/x-sentry-envelope".into()),
                    ("x-sentry-auth".into(), dsn.auth_header()),
                ],
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        if let Some(url) = &self.webhook {
            out.push(Job {
                id: next(),
                sink: "webhook".into(),
                url: url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_string(report).unwrap_or_default(),
            });
        }
        out
    }

    /// How long one job may take in the sender, at most: every attempt timing out
    /// plus the waits between them, and a second of slack.
    pub fn job_deadline(&self) -> Duration {
        (self.timeout + BACKOFF_CAP) * (self.retries + 1) + Duration::from_secs(1)
    }

    /// The sender's command line (no secrets: they travel in the jobs, on a pipe).
    fn sender_args(&self) -> Vec<String> {
        let mut args = vec![
            "--timeout-ms".to_owned(),
            self.timeout.as_millis().to_string(),
            "--retries".to_owned(),
            self.retries.to_string(),
        ];
        if let Some(ca) = &self.ca_file {
            args.extend(["--ca-file".to_owned(), ca.display().to_string()]);
        }
        args
    }
}

impl Destinations {
    /// `l4ctl-send` beside the running binary, with these settings, jobs on stdin.
    pub fn sender_command(&self) -> std::process::Command {
        let program = crate::fsutil::sibling_exe("l4ctl-send").unwrap_or_else(|_| PathBuf::from("l4ctl-send"));
        let mut cmd = std::process::Command::new(program);
        cmd.args(self.sender_args()).stdin(std::process::Stdio::piped());
        cmd
    }
}

/// A unique Sentry event id per report and daemon run.
fn event_id(id: u64) -> u128 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (seed << 16) ^ u128::from(id) ^ (u128::from(std::process::id()) << 96)
}

/// The destinations the panic hook uses (the daemon sets them after reading its config).
static HOOK_DESTINATIONS: Mutex<Option<Arc<Destinations>>> = Mutex::new(None);

pub fn set_hook_destinations(d: Option<Arc<Destinations>>) {
    *HOOK_DESTINATIONS.lock().unwrap_or_else(|p| p.into_inner()) = d;
}

/// Daemon panics handed to a sender at most (a panic storm must not become a
/// process storm); later ones are only journaled.
const DETACHED_MAX: u32 = 10;

/// From the panic hook: start a sender and hand it the report's jobs. A panic
/// inside a task is caught by the runtime and the daemon goes on: do not wait.
/// One outside any task ends the daemon (and a service manager then kills what
/// is left in its cgroup): wait for the sender, at most one attempt's timeout.
pub(super) fn send_detached(report: &CrashReport) {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Some(dest) = HOOK_DESTINATIONS.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
    if STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= DETACHED_MAX {
        return;
    }
    let fatal = tokio::task::try_id().is_none();
    let mut id = 0;
    let jobs = dest.jobs(report, &mut id);
    let child = dest.sender_command().stdout(std::process::Stdio::null()).spawn();
    match child {
        Ok(mut child) => {
            crate::os::helpers::spawned(child.id(), false);
            if let Some(mut stdin) = child.stdin.take() {
                for job in jobs {
                    let _ = writeln!(stdin, "{}", serde_json::to_string(&job).unwrap_or_default());
                }
            } // closed here: the sender ends after the last job
            if fatal {
                let deadline = std::time::Instant::now() + dest.timeout + Duration::from_secs(1);
                while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Err(e) => tracing::error!(cause = %e, "cannot start l4ctl-send for the daemon's panic report"),
    }
}

/// Waits between attempts double from one second up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(8);

/// Why the sender stopped (each job's own failure is an outcome, not this).
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("reading jobs: {0}")]
    Read(std::io::Error),
    #[error("writing outcomes: {0}")]
    Write(std::io::Error),
    #[error("cannot read ca_file {}: {source}", path.display())]
    CaUnreadable { path: PathBuf, source: std::io::Error },
    #[error("ca_file {}: {message}", path.display())]
    CaInvalid { path: PathBuf, message: String },
}

/// The sender's settings (its command line).
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub ca_file: Option<PathBuf>,
}

/// The sender's loop: a job per input line, an outcome per output line, until the
/// input ends. A line that is not a job is answered with an error outcome (id 0).
pub fn serve(settings: &SenderSettings, input: impl BufRead, mut output: impl Write) -> Result<(), SenderError> {
    let agent = agent(settings)?;
    for line in input.lines() {
        let line = line.map_err(SenderError::Read)?;
        if line.trim().is_empty() {
            continue;
        }
        let outcome = match serde_json::from_str::<Job>(&line) {
            Ok(job) => deliver(&agent, settings, &job),
            Err(e) => Outcome {
                id: 0,
                sink: String::new(),
                delivered: false,
                attempts: 0,
                status: None,
                error: Some(format!("not a job: {e}")),
            },
        };
        let text = serde_json::to_string(&outcome).map_err(|e| SenderError::Write(e.into()))?;
        writeln!(output, "{text}").and_then(|()| output.flush()).map_err(SenderError::Write)?;
    }
    Ok(())
}

fn agent(settings: &SenderSettings) -> Result<ureq::Agent, SenderError> {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
    let roots = match &settings.ca_file {
        Some(path) => RootCerts::Specific(Arc::new(read_certs(path, |pem| {
            ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e.to_string())),
                })
                .collect::<Result<Vec<Certificate<'static>>, String>>()
        })?)),
        None => RootCerts::WebPki,
    };
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .new_agent())
}

fn read_certs<C>(path: &Path, parse: impl Fn(&[u8]) -> Result<Vec<C>, String>) -> Result<Vec<C>, SenderError> {
    let invalid = |message: String| SenderError::CaInvalid { path: path.to_path_buf(), message };
    let pem = std::fs::read(path).map_err(|source| SenderError::CaUnreadable { path: path.to_path_buf(), source })?;
    let certs = parse(&pem).map_err(invalid)?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// POST with retries, 1 s, 2 s, 4 s ... (at most [`BACKOFF_CAP`]) apart.
fn deliver(agent: &ureq::Agent, settings: &SenderSettings, job: &Job) -> Outcome {
    let mut outcome =
        Outcome { id: job.id, sink: job.sink.clone(), delivered: false, attempts: 0, status: None, error: None };
    let mut delay = Duration::from_secs(1);
    for attempt in 0..=settings.retries {
        outcome.attempts = attempt + 1;
        let mut request = agent.post(&job.url);
        for (k, v) in &job.headers {
            request = request.header(k, v);
        }
        match request.send(job.body.as_bytes()) {
            Ok(response) => {
                let status = response.status().as_u16();
                outcome.status = Some(status);
                if (200..300).contains(&status) {
                    outcome.delivered = true;
                    outcome.error = None;
                    return outcome;
                }
                outcome.error = Some(format!("HTTP {status}"));
                // A redirect (not followed) or a 4xx other than 408/429 will not
                // change on a retry.
                if status < 500 && status != 408 && status != 429 {
                    return outcome;
                }
            }
            // The URL may carry a token: never repeat it.
            Err(e) => outcome.error = Some(e.to_string().replace(&job.url, "<url>")),
        }
        if attempt < settings.retries {
            std::thread::sleep(delay);
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    }
    outcome
}
