//! The files of a SQLite store and of the development secret: private to the server's
//! user. The database holds every message and password hash, so its folder (when the
//! server makes it) is 0700 and the database 0600; SQLite gives its `-wal` and `-shm`
//! files the database's mode. A database left world-readable by an earlier version is
//! made 0600 at start. The development secret (`APP_ENV=development` without
//! `JWT_SECRET`) is kept beside the database, 0600, so tokens survive a restart, and it
//! is read only from a regular file of ours that nobody else can read (no symlink is
//! followed).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file of a `sqlite:` URL; None for `:memory:` and other databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Make the database's folder (0700) when it does not exist.
pub fn make_folder(db: &Path) -> io::Result<()> {
    match db.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.exists() => fs::DirBuilder::new().recursive(true).mode(0o700).create(parent),
        _ => Ok(()),
    }
}

/// The database, its `-wal` and its `-shm`, where they exist.
fn files_of(db: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    ["", "-wal", "-shm"].into_iter().map(move |suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Before SQLite opens them: each of the database's files that exists must be a regular
/// file of ours (SQLite would follow a symlink, and write into another user's file).
pub fn check_before_open(db: &Path) -> io::Result<()> {
    for path in files_of(db) {
        if let Ok(meta) = fs::symlink_metadata(&path) {
            ours(&meta, &path)?;
        }
    }
    Ok(())
}

/// `meta` (of `path`, not followed) is a regular file of this user, or an error naming it.
fn ours(meta: &fs::Metadata, path: &Path) -> io::Result<()> {
    if meta.file_type().is_file() && meta.uid() == uid() {
        return Ok(());
    }
    Err(io::Error::other(format!("{} is not a regular file of this user: refusing to use it", path.display())))
}

/// The database, its `-wal` and its `-shm`: 0600, each changed through a handle opened
/// without following symlinks (a file swapped for a link meanwhile is refused, not
/// followed).
///
/// Only before SQLite opens them: closing any descriptor of a file drops every POSIX lock
/// this process holds on it, SQLite's included, and another process on the same database
/// (the old worker of a reload) would then think itself alone, checkpoint and delete the
/// WAL under this one's feet (`disk I/O error`, code 522; sqlite.org/howtocorrupt.html 2.2).
pub fn make_private(db: &Path) -> io::Result<()> {
    for path in files_of(db) {
        let file = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::other(format!("{}: {e}", path.display()))),
        };
        let meta = file.metadata()?;
        ours(&meta, &path)?;
        if meta.mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// The file the development secret is kept in: beside the database.
pub fn secret_path(db: &Path) -> PathBuf {
    db.with_file_name("jwt-secret")
}

/// The development secret at `path`: read when it exists (a regular file of ours that
/// only we can read, 32 bytes at least), else made (48 random bytes, base64) and kept.
pub fn dev_secret(path: &Path) -> io::Result<Vec<u8>> {
    let refuse = |why: &str| io::Error::other(format!("{}: {why}", path.display()));
    // O_NONBLOCK: a FIFO planted there must not hang the start (it is refused below).
    match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(file) => {
            let meta = file.metadata()?;
            if !meta.file_type().is_file() || meta.uid() != uid() || meta.mode() & 0o077 != 0 {
                return Err(refuse("must be a regular file of this user that only it can read (mode 0600)"));
            }
            let mut text = String::new();
            file.take(4096).read_to_string(&mut text)?;
            let secret = text.trim().as_bytes().to_vec();
            if secret.len() < 32 {
                return Err(refuse("holds fewer than 32 bytes"));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 48];
            rand::fill(&mut bytes);
            let secret = base64(&bytes);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?;
            file.write_all(format!("{secret}\n").as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(refuse("is a symlink: refusing to follow it")),
        Err(e) => Err(e),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_one() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn the_dev_secret_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(&dir.path().join("chat.db"));
        let first = dev_secret(&path).unwrap();
        assert!(first.len() >= 64);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(dev_secret(&path).unwrap(), first, "kept");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(dev_secret(&path).is_err(), "readable by others: refused");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(dev_secret(&link).unwrap_err().to_string().contains("symlink"));
    }

    #[test]
    fn a_database_is_made_private_and_a_symlink_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("chat.db");
        make_folder(&db).unwrap();
        assert_eq!(fs::metadata(db.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        fs::write(&db, b"").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&db).unwrap();
        assert_eq!(fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
        let wal = dir.path().join("sub").join("chat.db-wal");
        std::os::unix::fs::symlink("/etc/passwd", &wal).unwrap();
        assert!(check_before_open(&db).is_err());
        assert!(make_private(&db).is_err());
        assert_eq!(sqlite_path("sqlite://data/chat.db?mode=rwc"), Some(PathBuf::from("data/chat.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
