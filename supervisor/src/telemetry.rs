//! Tracing set-up for the daemon: to stderr in the foreground (systemd's journal
//! picks it up), or, when the CLI started the daemon in the background, to daily
//! files `<log_dir>/l4ctl.YYYY-MM-DD.log` (UTC, [`KEEP`] kept), with
//! `<log_dir>/l4ctl.log` a symlink to the newest. `RUST_LOG` overrides the default
//! `info`.
//!
//! The files are written by [`DailyFile`], not tracing-appender: they quote crash
//! reports and app errors, so they are created 0600 and opened without following a
//! symlink, neither of which tracing-appender can do.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::filter::Targets;

/// Daily files kept (the newest ones).
pub const KEEP: usize = 14;
/// Owner-only: the daemon's log quotes what apps printed.
const MODE: u32 = 0o600;

/// The daemon's log in `dir`: appends go to today's file (UTC), opened on the first
/// write of each day; a line that cannot be written is dropped (tracing-subscriber
/// reports it on stderr, the only other place there is).
#[derive(Debug)]
pub struct DailyFile {
    dir: PathBuf,
    /// Days since the epoch of the open file.
    day: i64,
    file: Option<File>,
}

impl DailyFile {
    pub fn new(dir: &Path) -> DailyFile {
        DailyFile { dir: dir.to_path_buf(), day: -1, file: None }
    }

    /// The file of `day` (days since the epoch).
    pub fn path_of(dir: &Path, day: i64) -> PathBuf {
        let date = chrono::DateTime::from_timestamp(day * 86_400, 0).unwrap_or_default().format("%Y-%m-%d");
        dir.join(format!("l4ctl.{date}.log"))
    }

    /// Open `day`'s file, point `l4ctl.log` at it and delete the files past `KEEP`.
    fn open(&mut self, day: i64) -> io::Result<()> {
        self.day = day;
        self.file = None;
        let path = DailyFile::path_of(&self.dir, day);
        let file = crate::nofollow::append(&path, MODE, 0)?;
        crate::nofollow::restrict_mode(&file, MODE)?;
        self.file = Some(file);
        let tmp = self.dir.join(".l4ctl.log.link");
        let _ = std::fs::remove_file(&tmp);
        if let Some(name) = path.file_name() {
            let _ =
                std::os::unix::fs::symlink(name, &tmp).and_then(|()| std::fs::rename(&tmp, self.dir.join("l4ctl.log")));
        }
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut days: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("l4ctl.")
                    .and_then(|r| r.strip_suffix(".log"))
                    .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
            })
            .map(|e| e.path())
            .collect();
        days.sort();
        let excess = days.len().saturating_sub(KEEP);
        for old in &days[..excess] {
            let _ = crate::nofollow::remove_regular(old);
        }
    }
}

impl io::Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let day = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64) / 86_400;
        // A file that could not be opened is tried again on the next line.
        if day != self.day || self.file.is_none() {
            self.open(day)?;
        }
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the daemon's log file could not be opened today")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Install the global subscriber. File logging writes synchronously (the daemon logs a
/// few lines per event, and a writer thread would cost more memory than it saves).
pub fn init(log_dir: Option<&Path>) {
    use tracing_subscriber::prelude::*;
    let (filter, refused) = filter(std::env::var("RUST_LOG").ok().as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    let stderr = || tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match log_dir {
        Some(dir) => {
            let mut daily = DailyFile::new(dir);
            let today = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64) / 86_400;
            match daily.open(today) {
                Ok(()) => registry
                    .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(daily)))
                    .init(),
                Err(e) => {
                    registry.with(stderr()).init();
                    tracing::warn!(cause = %e, dir = %dir.display(), "cannot log to file; logging to stderr");
                }
            }
        }
        None => registry.with(stderr()).init(),
    }
    if let Some(why) = refused {
        tracing::warn!(%why, "RUST_LOG is not a level or a list of target=level; logging at info");
    }
}

/// `RUST_LOG` as a level (`debug`) or a list of `target=level` with an optional default
/// (`info,layer4_supervisor=debug`): tracing's `Targets`, not `EnvFilter`, whose regular
/// expressions (span and field filters) would stay resident in the daemon (about 170 KB
/// of code) for what no one asks of a supervisor's log. Unset or empty: `info`; not
/// understood: `info`, and the reason.
fn filter(rust_log: Option<&str>) -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => (info(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (info(), Some(format!("{v:?}: {e}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn rust_log_takes_a_level_or_targets_and_anything_else_is_info_with_the_reason() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        let (t, why) = filter(Some("debug"));
        assert!(why.is_none() && t.would_enable("hyper", &Level::DEBUG));
        let (t, why) = filter(Some("warn,layer4_supervisor=trace"));
        assert!(why.is_none());
        assert!(t.would_enable("layer4_supervisor::daemon", &Level::TRACE) && !t.would_enable("hyper", &Level::INFO));
        let (t, why) = filter(None);
        assert!(why.is_none() && t.default_level() == Some(LevelFilter::INFO));
        let (t, why) = filter(Some("[span{field=x}]=debug,=="));
        assert!(why.is_some_and(|w| w.contains("[span")), "the reason names the value");
        assert_eq!(t.default_level(), Some(LevelFilter::INFO));
    }

    #[test]
    fn daily_files_are_owner_only_linked_pruned_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DailyFile::new(dir.path());
        for day in 20_000..20_000 + KEEP as i64 + 2 {
            log.open(day).unwrap();
            log.file.as_mut().unwrap().write_all(b"line\n").unwrap();
        }
        let newest = DailyFile::path_of(dir.path(), 20_000 + KEEP as i64 + 1);
        assert!(newest.ends_with("l4ctl.2024-10-19.log"), "{}", newest.display());
        assert_eq!(std::fs::metadata(&newest).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_link(dir.path().join("l4ctl.log")).unwrap(), newest.file_name().unwrap());
        assert!(!DailyFile::path_of(dir.path(), 20_001).exists(), "pruned");
        assert!(DailyFile::path_of(dir.path(), 20_002).exists(), "kept");

        let outside = dir.path().join("outside");
        std::fs::write(&outside, "").unwrap();
        let link = DailyFile::path_of(dir.path(), 30_000);
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let err = log.open(30_000).unwrap_err();
        assert!(err.to_string().ends_with("is a symbolic link; refusing to follow it"), "{err}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "");
    }
}
