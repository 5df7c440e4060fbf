//! Tracing set-up for the daemon: to stderr in the foreground (systemd's journal
//! picks it up), or to `<log_dir>/l4ctl.log` rotated daily when the CLI started
//! the daemon in the background. `RUST_LOG` overrides the default `info`.

use std::path::Path;

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
