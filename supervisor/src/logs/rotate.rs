//! Rotated file names, retention and compression.
//!
//! A file `dir/<stem>.<ext>` is rotated to `dir/<stem>.<YYYYmmdd-HHMMSS-micros>-<seq>.<ext>`
//! (then `.gz` when compressed). The time part is fixed width and `seq` breaks ties,
//! so names are unique and sort in time order even with several rotations in one
//! second. Compression and deleting old files run on one maintenance thread, fed
//! by a bounded queue: the writers never wait for them. When the queue is full a
//! rotated file stays uncompressed (logged); nothing is lost.
//!
//! Only regular files count as rotated files: a symlink or a folder named like one
//! is never read, compressed or deleted. A compressed file keeps its source's mode.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Jobs waiting for the maintenance thread; beyond this, compression is skipped.
const QUEUE: usize = 256;

/// Split `app-out.log` into (`app-out`, `.log`).
fn stem_ext(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_owned(), name[i..].to_owned()),
        _ => (name, String::new()),
    }
}

/// The name `path` is renamed to when rotated at `at`; never an existing file.
pub fn rotated_name(path: &Path, at: SystemTime, last: &mut String) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    let dt: DateTime<Utc> = at.into();
    let mut stamp = dt.format("%Y%m%d-%H%M%S-%6f").to_string();
    // A clock that went back must not make a newer file sort first.
    if stamp < *last {
        stamp = last.clone();
    }
    *last = stamp.clone();
    let dir = path.parent().unwrap_or(Path::new("."));
    (0..)
        .map(|seq: u32| dir.join(format!("{stem}.{stamp}-{seq:03}{ext}")))
        .find(|p| !p.exists() && !gz(p).exists())
        .expect("an unused sequence number exists")
}

fn gz(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Whether a file named `name` is `current` itself, a rotated file of it, or its
/// compression's temp file (what `watch` must not count as a change of the app).
pub fn belongs_to(current: &Path, name: &str) -> bool {
    current.file_name().is_some_and(|n| n.to_string_lossy() == name)
        || is_rotated(current, name.strip_suffix(".tmp").unwrap_or(name))
}

/// Whether a file named `name` is a rotated file of `current` (plain or `.gz`).
fn is_rotated(current: &Path, name: &str) -> bool {
    let (stem, ext) = stem_ext(current);
    let Some(rest) = name.strip_prefix(&stem).and_then(|r| r.strip_prefix('.')) else { return false };
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let Some(stamp) = rest.strip_suffix(ext.as_str()) else { return false };
    // YYYYmmdd-HHMMSS-ffffff-sss
    stamp.len() == 26
        && stamp.bytes().enumerate().all(|(i, b)| if [8, 15, 22].contains(&i) { b == b'-' } else { b.is_ascii_digit() })
}

/// Rotated files of `current`, oldest first (both plain and `.gz`).
pub fn rotated_files(current: &Path) -> Vec<PathBuf> {
    let dir = current.parent().unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(dir) else { return vec![] };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        // The entry's own type: a symlink is not followed.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| is_rotated(current, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    // While a file is being compressed both `x.log` and `x.log.gz` exist for a moment:
    // keep the `.gz`, which is complete (it appears by rename) and outlives the plain one.
    found.dedup_by(|gz_name, plain| {
        let same = gz(plain) == *gz_name;
        if same {
            std::mem::swap(gz_name, plain);
        }
        same
    });
    found
}

/// Work for the maintenance thread.
#[derive(Debug)]
pub enum Job {
    /// gzip a rotated file, then apply retention to its log.
    Compress { rotated: PathBuf, current: PathBuf, retain: u32 },
    /// Delete all but the newest `retain` rotated files of `current`.
    Retain { current: PathBuf, retain: u32 },
}

/// Handle to the maintenance thread.
#[derive(Debug, Clone)]
pub struct Maint {
    tx: SyncSender<Job>,
}

impl Maint {
    pub fn start() -> Maint {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new().name("l4-log-maint".into()).spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!(cause = %e, "cannot start the log maintenance thread; rotated logs stay uncompressed");
        }
        Maint { tx }
    }

    /// A handle whose jobs go nowhere.
    pub fn disconnected() -> Maint {
        Maint { tx: sync_channel(1).0 }
    }

    pub fn submit(&self, job: Job) {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => tracing::warn!(?job, "log maintenance queue full; skipping this job"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn run(rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Compress { rotated, current, retain } => {
                if let Err(e) = compress(&rotated) {
                    tracing::warn!(file = %rotated.display(), cause = %e, "cannot compress rotated log");
                }
                retain_newest(&current, retain);
            }
            Job::Retain { current, retain } => retain_newest(&current, retain),
        }
    }
}

/// `x.log` -> `x.log.gz` (through a temp file, fsynced, with the mode of `x.log`),
/// then remove `x.log`.
pub fn compress(path: &Path) -> io::Result<()> {
    let target = gz(path);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let source = crate::nofollow::read(path)?;
        let mode = source.metadata()?.permissions().mode() & 0o777;
        let mut input = BufReader::with_capacity(256 << 10, source);
        // A new file, never through a symlink someone left at the temp name (a stale
        // temp file of a crash is removed first; removing a symlink does not follow it).
        // Created owner-only, then given the source's mode, which no umask narrows.
        let _ = fs::remove_file(&tmp);
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        io::copy(&mut input, &mut enc)?;
        let file = enc.finish()?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        fs::remove_file(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.and_then(|()| File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all())
}

fn retain_newest(current: &Path, retain: u32) {
    let files = rotated_files(current);
    let excess = files.len().saturating_sub(retain as usize);
    for old in &files[..excess] {
        let _ = crate::nofollow::remove_regular(old);
        let _ = crate::nofollow::remove_regular(&gz(old));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rotated_names_are_unique_and_sort_in_time_order_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("web-out.log");
        let at = UNIX_EPOCH + Duration::from_secs(1_764_417_600);
        let mut last = String::new();
        let mut names = Vec::new();
        for _ in 0..3 {
            let n = rotated_name(&current, at, &mut last);
            fs::write(&n, "x").unwrap();
            names.push(n);
        }
        let earlier_clock = rotated_name(&current, at - Duration::from_secs(5), &mut last);
        fs::write(&earlier_clock, "x").unwrap();
        names.push(earlier_clock);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(rotated_files(&current), names);
        assert!(names[0].to_string_lossy().ends_with("web-out.20251129-120000-000000-000.log"), "{names:?}");
    }

    #[test]
    fn compress_and_retain_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("a.log");
        fs::write(dir.path().join("a-out.log"), "other log").unwrap();
        let mut last = String::new();
        let mut rotated = Vec::new();
        for i in 0..4 {
            let at = UNIX_EPOCH + Duration::from_secs(1_764_417_600 + i);
            let n = rotated_name(&current, at, &mut last);
            fs::write(&n, format!("line {i}\n")).unwrap();
            rotated.push(n);
        }
        compress(&rotated[3]).unwrap();
        assert!(!rotated[3].exists());
        retain_newest(&current, 2);
        let left = rotated_files(&current);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[1].to_string_lossy().ends_with(".log.gz"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(File::open(&left[1]).unwrap()), &mut text)
            .unwrap();
        assert_eq!(text, "line 3\n");
        assert!(dir.path().join("a-out.log").exists(), "another log's file is not touched");
    }

    #[test]
    fn a_compressed_file_keeps_its_source_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o640, 0o644] {
            let plain = dir.path().join(format!("a.20260101-000000-000000-{mode:03o}.log"));
            fs::write(&plain, "line\n").unwrap();
            fs::set_permissions(&plain, fs::Permissions::from_mode(mode)).unwrap();
            compress(&plain).unwrap();
            assert_eq!(fs::metadata(gz(&plain)).unwrap().permissions().mode() & 0o777, mode);
        }
    }

    #[test]
    fn a_symlink_named_like_a_rotated_file_is_never_read_compressed_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("a.log");
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, "secret\n").unwrap();
        let link = dir.path().join("a.20260101-000000-000000-000.log");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let real = dir.path().join("a.20260101-000001-000000-000.log");
        fs::write(&real, "line\n").unwrap();
        assert_eq!(rotated_files(&current), vec![real.clone()]);
        let err = compress(&link).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(!gz(&link).exists());
        retain_newest(&current, 0);
        assert!(fs::symlink_metadata(&link).is_ok() && !real.exists(), "only the regular file is deleted");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "secret\n");
    }
}
