//! The web page a worker serves at `/` (`crate::web`): the one built into the binary
//! (`WEB_UI=on`, the default), a team's own build from `WEB_ROOT`, or none
//! (`WEB_UI=off`). A `WEB_ROOT` folder is read once at start, every folder and file
//! opened as `super::trust` says (what it holds runs in users' browsers), within
//! [`MAX_FILES`] files, [`MAX_BYTES`] bytes and [`MAX_DEPTH`] folders deep; a change
//! needs a restart (`l4ctl reload`).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;

use super::Parser;
use super::trust;

pub const VARIABLES: &[&str] = &["WEB_UI", "WEB_ROOT"];

/// Files a `WEB_ROOT` may hold.
pub const MAX_FILES: usize = 1000;
/// Bytes a `WEB_ROOT` may hold, all files together.
pub const MAX_BYTES: u64 = 32 << 20;
/// Folders below `WEB_ROOT`.
pub const MAX_DEPTH: usize = 8;

#[derive(Clone, Default)]
pub enum WebPage {
    /// The page built into the binary.
    #[default]
    Embedded,
    /// `WEB_ROOT`'s files by URL path (`/index.html`, `/assets/app.js`).
    Folder(Arc<Vec<(String, Bytes)>>),
    Off,
}

impl std::fmt::Debug for WebPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebPage::Embedded => f.write_str("Embedded"),
            WebPage::Folder(files) => write!(f, "Folder({} files)", files.len()),
            WebPage::Off => f.write_str("Off"),
        }
    }
}

pub(super) fn parse(p: &mut Parser) -> WebPage {
    let on = match p.text("WEB_UI").as_deref().map(str::trim) {
        None | Some("" | "on" | "1" | "true") => true,
        Some("off" | "0" | "false") => false,
        Some(other) => {
            p.fail("WEB_UI", format!("{other:?} is neither on nor off"));
            true
        }
    };
    let root = p.text("WEB_ROOT").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    match (on, root) {
        (false, Some(_)) => {
            p.fail("WEB_ROOT", "is set while WEB_UI=off: unset one of them".into());
            WebPage::Off
        }
        (false, None) => WebPage::Off,
        (true, None) => WebPage::Embedded,
        (true, Some(root)) => match load(Path::new(&root)) {
            Ok(files) => WebPage::Folder(Arc::new(files)),
            Err(e) => {
                p.fail("WEB_ROOT", format!("{root}: {e}"));
                WebPage::Embedded
            }
        },
    }
}

/// Every file below `root` by URL path; `index.html` must be there.
fn load(root: &Path) -> Result<Vec<(String, Bytes)>, String> {
    let dir = trust::open_folder(root, "the folder")?;
    let mut files = Vec::new();
    let mut bytes = 0;
    walk(root, &dir, "", 0, &mut files, &mut bytes)?;
    if !files.iter().any(|(path, _)| path == "/index.html") {
        return Err("holds no index.html".into());
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn walk(
    path: &Path,
    dir: &File,
    prefix: &str,
    depth: usize,
    files: &mut Vec<(String, Bytes)>,
    bytes: &mut u64,
) -> Result<(), String> {
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { return Err(format!("{}: a name that is not UTF-8", path.display())) };
        if text.starts_with('.') {
            continue; // .gitkeep, .DS_Store
        }
        let url = format!("{prefix}/{text}");
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(format!("{url}: names are served as URL paths: use A-Z a-z 0-9 . _ -"));
        }
        let folder = entry.file_type().map_err(|e| e.to_string())?.is_dir();
        let (file, meta) = trust::open_in(dir, &name, folder).map_err(|e| format!("{url}: {e}"))?;
        if folder {
            if depth + 1 > MAX_DEPTH {
                return Err(format!("{url}: more than {MAX_DEPTH} folders deep"));
            }
            walk(&entry.path(), &file, &url, depth + 1, files, bytes)?;
            continue;
        }
        if files.len() >= MAX_FILES {
            return Err(format!("holds more than {MAX_FILES} files"));
        }
        let content = trust::read_file(file, &meta, MAX_BYTES - *bytes).map_err(|e| format!("{url}: {e}"))?;
        *bytes += content.len() as u64;
        files.push((url, Bytes::from(content)));
    }
    Ok(())
}
