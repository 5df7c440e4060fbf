//! Tracing set-up for the daemon: to stderr in the foreground (systemd's journal
//! picks it up), or, when the CLI started the daemon in the background, to daily
//! files `<log_dir>/l4ctl.YYYY-MM-DD.log` (UTC, 14 kept) through tracing-appender,
//! with `<log_dir>/l4ctl.log` a symlink to today's file. `RUST_LOG` overrides the
//! default `info`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The log folder when logging to files, and the date the symlink points at.
static FILE_LOG: OnceLock<(PathBuf, Mutex<String>)> = OnceLock::new();

/// Point `l4ctl.log` at today's file (cheap when the date has not changed).
pub fn refresh_link() {
    let Some((dir, linked)) = FILE_LOG.get() else { return };
    let today = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).format("%Y-%m-%d").to_string();
    let Ok(mut linked) = linked.lock() else { return };
    if *linked == today {
        return;
    }
    let tmp = dir.join(".l4ctl.log.link");
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(format!("l4ctl.{today}.log"), &tmp).is_ok()
        && std::fs::rename(&tmp, dir.join("l4ctl.log")).is_ok()
    {
        *linked = today;
    }
}

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. File logging writes synchronously (the daemon logs a
/// few lines per event, and a writer thread would cost more memory than it saves).
pub fn init(log_dir: Option<&Path>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match log_dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("l4ctl")
                .filename_suffix("log")
                .max_log_files(14)
                .build(dir);
            match appender {
                Ok(appender) => {
                    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(appender).init();
                    let _ = FILE_LOG.set((dir.to_path_buf(), Mutex::new(String::new())));
                    refresh_link();
                }
                Err(e) => {
                    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
                    tracing::warn!(cause = %e, dir = %dir.display(), "cannot log to file; logging to stderr");
                }
            }
        }
        None => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init(),
    }
}
