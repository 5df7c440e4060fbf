//! `[error_tracking]`: where crash reports go besides `crashes.jsonl` (README,
//! "Crash reports"). The DSN and the webhook URL may carry credentials: they are
//! never serialized into an API answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::units::Span;

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorTrackingSection {
    /// Sentry DSN; the daemon's `SENTRY_DSN` when unset.
    pub sentry_dsn: Option<String>,
    /// Each report is POSTed here as JSON.
    pub webhook_url: Option<String>,
    /// `release` of Sentry events.
    pub release: Option<String>,
    /// Reports waiting for delivery at most; more are dropped (and counted).
    pub queue: Option<usize>,
    /// Per attempt.
    pub timeout: Option<Span>,
    /// Attempts after the first.
    pub retries: Option<u32>,
    /// A crash episode ends after this long without its crash (then its final
    /// count is sent).
    pub episode_quiet: Option<Span>,
    /// PEM certificates to trust for https instead of the bundled Mozilla roots
    /// (a self-hosted Sentry with its own CA); relative to the config file.
    pub ca_file: Option<PathBuf>,
}

/// The resolved section.
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorTracking {
    pub sentry_dsn: Option<String>,
    pub webhook_url: Option<String>,
    pub release: Option<String>,
    pub queue: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub episode_quiet: Duration,
    pub ca_file: Option<PathBuf>,
}

/// The DSN and the webhook URL may carry keys: Debug says only whether they are set.
impl std::fmt::Debug for ErrorTracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorTracking")
            .field("sentry", &self.sentry_dsn.is_some())
            .field("webhook", &self.webhook_url.is_some())
            .field("release", &self.release)
            .field("queue", &self.queue)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("episode_quiet", &self.episode_quiet)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ErrorTrackingSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorTrackingSection")
            .field("sentry_dsn", &self.sentry_dsn.as_ref().map(|_| "<set>"))
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl ErrorTracking {
    /// `env_dsn`: the daemon's `SENTRY_DSN`, used when the file names none;
    /// `base`: the config file's folder.
    pub fn resolve(section: &ErrorTrackingSection, env_dsn: Option<String>, base: &Path) -> ErrorTracking {
        let sentry_dsn = section.sentry_dsn.clone().or(env_dsn).filter(|d| !d.is_empty());
        let webhook_url = section.webhook_url.clone().filter(|u| !u.is_empty());
        ErrorTracking {
            sentry_dsn,
            webhook_url,
            release: section.release.clone(),
            queue: section.queue.unwrap_or(100).clamp(1, 10_000),
            timeout: section.timeout.map_or(Duration::from_secs(5), |t| t.0),
            retries: section.retries.unwrap_or(3).min(10),
            episode_quiet: section.episode_quiet.map_or(Duration::from_secs(600), |t| t.0),
            ca_file: section.ca_file.as_ref().map(|f| base.join(f)),
        }
    }

    /// Problems with the values, for the config report (`base`: the file's folder).
    pub fn check(section: &ErrorTrackingSection, base: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dsn) = section.sentry_dsn.as_deref().filter(|d| !d.is_empty())
            && let Err(e) = super::dsn::Dsn::parse(dsn)
        {
            out.push(format!("`[error_tracking] sentry_dsn`: {e}"));
        }
        if let Some(url) = section.webhook_url.as_deref().filter(|u| !u.is_empty()) {
            let uri = url.parse::<ureq::http::Uri>().ok();
            let scheme_ok = uri.as_ref().and_then(|u| u.scheme_str()).is_some_and(|s| s == "http" || s == "https");
            if !scheme_ok || uri.as_ref().and_then(|u| u.host()).is_none_or(str::is_empty) {
                out.push("`[error_tracking] webhook_url` must be an http:// or https:// URL with a host".to_owned());
            }
        }
        if let Some(ca) = &section.ca_file {
            let path = base.join(ca);
            match std::fs::read_to_string(&path) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => out.push(format!("`[error_tracking] ca_file`: {} holds no PEM certificate", path.display())),
                Err(e) => out.push(format!("`[error_tracking] ca_file`: cannot read {}: {e}", path.display())),
            }
        }
        if section.episode_quiet.is_some_and(|t| t.0 < Duration::from_secs(1)) {
            out.push("`[error_tracking] episode_quiet` must be at least 1s".to_owned());
        }
        if section.timeout.is_some_and(|t| t.0 < Duration::from_millis(1) || t.0 > Duration::from_secs(60)) {
            out.push("`[error_tracking] timeout` must be between 1ms and 60s".to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_never_shows_the_dsn_or_the_webhook_url() {
        let section = super::ErrorTrackingSection {
            sentry_dsn: Some("https://secretkey@sentry.example.com/1".into()),
            webhook_url: Some("https://hooks.example.com/x?token=secret-token".into()),
            ..Default::default()
        };
        let resolved = super::ErrorTracking::resolve(&section, None, std::path::Path::new("/"));
        for text in [format!("{section:?}"), format!("{resolved:?}")] {
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
