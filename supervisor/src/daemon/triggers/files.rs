//! `watch`: one inotify instance for the whole daemon (one `notify` thread, idle
//! until the kernel reports a change), a watch on each folder of each watched tree,
//! and the rule that turns a kernel event into "this app changed".
//!
//! Folders are walked here, not by `notify`, so that ignored folders (`node_modules`)
//! cost no watch at all, links are never followed, and the count is bounded:
//! [`MAX_WATCH_DIRS`] per app; past it the app is not watched and says why. What
//! never counts as a change: `ignore_watch`, the app's own log files (and their
//! rotated files) wherever they are, and anything in the daemon's home and log folder.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};

use super::entries::{Root, kernel_sentence, root};
use crate::config::WatchSpec;
use crate::config::triggers::Ignore;

/// Folders one app's `watch` may cover; past it the app is not watched (the sentence
/// says to add `ignore_watch` patterns).
pub const MAX_WATCH_DIRS: usize = 8192;

/// Who a watched folder is for: an app's whole tree, or one entry of it: a `watch`
/// entry is also watched through its parent folder, so a file replaced by rename
/// (an editor's save) is seen, and a folder removed and made again (`rm -rf dist`)
/// or made later is walked when it appears.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Tree,
    Entry(OsString),
}

/// An app whose watch had to stop, and why.
pub(super) type Stopped = (String, String);

#[derive(Debug)]
struct AppWatch {
    spec: WatchSpec,
    ignore: Ignore,
    roots: Vec<Root>,
    /// Folders watched for it.
    count: usize,
}

/// Why a folder could not be watched: `fatal` when the app cannot be watched at all
/// (the kernel's limit, [`MAX_WATCH_DIRS`]), else the folder is skipped (gone
/// meanwhile, not readable).
struct NotWatched {
    fatal: bool,
    why: String,
}

pub(super) struct FileWatch {
    watcher: notify::INotifyWatcher,
    /// Each watched folder and who watches it.
    dirs: BTreeMap<PathBuf, BTreeSet<(String, Scope)>>,
    apps: BTreeMap<String, AppWatch>,
    /// The daemon's home and log folder: what l4ctl writes is never a change of an app.
    ours: Vec<PathBuf>,
    /// Every app's log files, also with their folders as the kernel names them.
    logs: Vec<PathBuf>,
}

impl FileWatch {
    /// One inotify instance and its thread, which hands each event to `on_event`
    /// (which must not wait: `watch` calls wait for that thread).
    pub fn new(
        on_event: impl Fn(notify::Result<notify::Event>) + Send + 'static,
        ours: Vec<PathBuf>,
    ) -> Result<FileWatch, String> {
        let watcher = notify::INotifyWatcher::new(on_event, notify::Config::default())
            .map_err(|e| format!("cannot watch files: {}", kernel_sentence(&e)))?;
        Ok(FileWatch { watcher, dirs: BTreeMap::new(), apps: BTreeMap::new(), ours, logs: Vec::new() })
    }

    /// Watch what `spec` names for `app` (instead of what it watched before); the
    /// sentence `describe` shows: what is watched, or why nothing is.
    pub fn set(&mut self, app: &str, spec: &WatchSpec) -> Result<String, String> {
        self.remove(app);
        let ignore = Ignore::new(&spec.ignore)?;
        let roots = spec.paths.iter().map(|p| root(p, &spec.base)).collect();
        let w = AppWatch { spec: spec.clone(), ignore, roots, count: 0 };
        self.apps.insert(app.to_owned(), w);
        if let Err(why) = self.arm(app, true) {
            self.remove(app);
            return Err(why);
        }
        Ok(self.summary(app))
    }

    /// The log files of every app (a config change of any app changes them): never a
    /// change; nothing is walked again.
    pub fn set_logs(&mut self, logs: &[PathBuf]) {
        self.logs = with_real_folders(logs);
    }

    /// Watch each entry of `app` (again: what is watched already stays as it is). Not
    /// `strict` (again after lost events, or after a folder went): an entry whose folder
    /// is missing now is skipped, not an error.
    fn arm(&mut self, app: &str, strict: bool) -> Result<(), String> {
        let reals: Vec<PathBuf> =
            self.apps.get(app).map(|w| w.roots.iter().map(|r| r.real.clone()).collect()).unwrap_or_default();
        for real in reals {
            let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else {
                return Err(format!("cannot watch {}", real.display()));
            };
            match self.add(app, parent, Scope::Entry(name.to_owned())) {
                Ok(()) => {}
                Err(e) if strict || e.fatal => return Err(format!("cannot watch {}: {}", real.display(), e.why)),
                Err(_) => continue,
            }
            if std::fs::symlink_metadata(&real).is_ok_and(|m| m.is_dir()) {
                self.walk(app, &real)?;
            }
        }
        Ok(())
    }

    /// Watch each entry of `app` again (not strict); an app whose watch cannot go on is
    /// dropped and said in `stopped`.
    fn rearm(&mut self, app: &str, stopped: &mut Vec<Stopped>) {
        if let Err(why) = self.arm(app, false) {
            self.remove(app);
            stopped.push((app.to_owned(), why));
        }
    }

    /// What is watched for `app`, as `describe` shows it.
    pub fn summary(&self, app: &str) -> String {
        let Some(w) = self.apps.get(app) else { return "not watched".into() };
        let roots: Vec<String> = w.roots.iter().map(|r| r.given.display().to_string()).collect();
        format!("{} folder{} under {}", w.count, if w.count == 1 { "" } else { "s" }, roots.join(", "))
    }

    /// Stop watching for `app`.
    pub fn remove(&mut self, app: &str) {
        self.apps.remove(app);
        let mut empty = Vec::new();
        for (dir, owners) in &mut self.dirs {
            owners.retain(|(a, _)| a != app);
            if owners.is_empty() {
                empty.push(dir.clone());
            }
        }
        for dir in empty {
            self.dirs.remove(&dir);
            let _ = self.watcher.unwatch(&dir);
        }
    }

    /// The apps this event changes, each with the path that did; folders that appear
    /// are watched from now on, folders that go are forgotten. Second: the apps whose
    /// watch had to stop, each with its sentence.
    pub fn changed(&mut self, event: &notify::Event) -> (Vec<(String, PathBuf)>, Vec<Stopped>) {
        let (mut changed, mut stopped) = (Vec::new(), Vec::new());
        if event.need_rescan() {
            // Events were lost: every app counts as changed, and folders made meanwhile
            // are watched now (what is watched stays).
            let apps: Vec<String> = self.apps.keys().cloned().collect();
            for app in apps {
                self.rearm(&app, &mut stopped);
                changed.push((app, PathBuf::from("(events were lost: the queue overflowed)")));
            }
            return (changed, stopped);
        }
        // Reads and opens never get here: the watch thread drops them (`entries::noise`).
        for path in &event.paths {
            let owners: Vec<(String, Scope)> = [Some(path.as_path()), path.parent()]
                .into_iter()
                .flatten()
                .filter_map(|d| self.dirs.get(d))
                .flat_map(|o| o.iter().cloned())
                .collect();
            for (app, scope) in owners {
                if let Scope::Entry(name) = &scope
                    && path.file_name() != Some(name.as_os_str())
                    && !self.dirs.contains_key(path)
                {
                    continue;
                }
                if !self.counts(&app, path) {
                    continue;
                }
                // A folder made (or moved) here is watched too, for each app it is in.
                if !matches!(event.kind, EventKind::Remove(_))
                    && !self.dirs.get(path).is_some_and(|o| o.contains(&(app.clone(), Scope::Tree)))
                    && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
                    && let Err(why) = self.walk(&app, path)
                {
                    self.remove(&app);
                    stopped.push((app.clone(), why));
                }
                if !changed.iter().any(|(a, _)| a == &app) {
                    changed.push((app, path.clone()));
                }
            }
        }
        // A folder that was removed or moved away is no longer watched (the kernel
        // dropped its watch): one made again at its path is a new folder.
        let gone: &[PathBuf] = match event.kind {
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => &event.paths,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => &event.paths[..event.paths.len().min(1)],
            _ => &[],
        };
        let mut again = BTreeSet::new();
        for path in gone {
            again.extend(self.forget(path));
        }
        // The entries watched through a folder that went: through their folder's
        // parents again, when those are there.
        for app in again {
            self.rearm(&app, &mut stopped);
        }
        (changed, stopped)
    }

    /// Stop counting `path` and every folder under it as watched (the kernel dropped
    /// their watches); the apps that watched one of them for an entry of theirs.
    fn forget(&mut self, path: &Path) -> BTreeSet<String> {
        let under: Vec<PathBuf> = self
            .dirs
            .range(path.to_path_buf()..)
            .map(|(d, _)| d)
            .take_while(|d| d.starts_with(path))
            .cloned()
            .collect();
        let mut entries = BTreeSet::new();
        for dir in under {
            for (app, scope) in self.dirs.remove(&dir).unwrap_or_default() {
                match scope {
                    Scope::Tree => {
                        if let Some(w) = self.apps.get_mut(&app) {
                            w.count = w.count.saturating_sub(1);
                        }
                    }
                    Scope::Entry(_) => {
                        entries.insert(app);
                    }
                }
            }
            let _ = self.watcher.unwatch(&dir);
        }
        entries
    }

    /// Whether a change of `path` (as the kernel names it) is a change of `app`.
    fn counts(&self, app: &str, path: &Path) -> bool {
        let Some(w) = self.apps.get(app) else { return false };
        // The path as written in the config: under which entry, and how many of its names are the entry's.
        // The innermost entry holding it (`watch = [".", ".env"]`: `.env` is its own entry).
        let Some((given, root)) = w
            .roots
            .iter()
            .filter_map(|r| {
                let below = path.strip_prefix(&r.real).ok()?;
                Some((if below.as_os_str().is_empty() { r.given.clone() } else { r.given.join(below) }, r))
            })
            .max_by_key(|(_, r)| r.real.components().count())
        else {
            return false;
        };
        if self.ours.iter().any(|d| path.starts_with(d) || given.starts_with(d)) {
            return false;
        }
        // A log file, by the path written in its config or by the kernel's.
        let name = given.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let folders = [given.parent(), path.parent()];
        if self.logs.iter().any(|log| folders.contains(&log.parent()) && crate::logs::rotate::belongs_to(log, &name)) {
            return false;
        }
        match given.strip_prefix(&w.spec.base) {
            Ok(rel) => !w.ignore.matches(rel, root.listed),
            Err(_) => !w.ignore.matches(given.strip_prefix(&root.given).unwrap_or(&given), 0),
        }
    }

    /// Watch `top` and every folder under it that is not ignored, never through a link.
    fn walk(&mut self, app: &str, top: &Path) -> Result<(), String> {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match self.add(app, &dir, Scope::Tree) {
                Ok(()) => {}
                Err(e) if e.fatal => return Err(e.why),
                // Gone meanwhile, or not ours to read: skipped, the rest is watched.
                Err(e) => {
                    tracing::debug!(app, folder = %dir.display(), "not watched: {}", e.why);
                    continue;
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                // The entry's own type: a link to a folder is not followed.
                if entry.file_type().is_ok_and(|t| t.is_dir()) && self.counts(app, &entry.path()) {
                    stack.push(entry.path());
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, app: &str, dir: &Path, scope: Scope) -> Result<(), NotWatched> {
        let tree = scope == Scope::Tree;
        let known = self.dirs.get(dir).is_some_and(|o| o.contains(&(app.to_owned(), scope.clone())));
        if known {
            return Ok(());
        }
        if tree && self.apps.get(app).is_some_and(|w| w.count >= MAX_WATCH_DIRS) {
            let roots = self
                .apps
                .get(app)
                .map(|w| w.roots.iter().map(|r| r.given.display().to_string()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            return Err(NotWatched {
                fatal: true,
                why: format!(
                    "not watched: more than {MAX_WATCH_DIRS} folders under {roots}; add `ignore_watch` patterns for the folders that are not code, or list the code's folders in `watch`"
                ),
            });
        }
        // Whenever a new owner comes (adding to a watch the kernel still has is harmless;
        // one it dropped, with its folder, is made again).
        {
            self.watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| NotWatched {
                fatal: matches!(e.kind, notify::ErrorKind::MaxFilesWatch),
                why: format!("cannot watch {}: {}", dir.display(), kernel_sentence(&e)),
            })?;
        }
        self.dirs.entry(dir.to_path_buf()).or_default().insert((app.to_owned(), scope));
        if tree && let Some(w) = self.apps.get_mut(app) {
            w.count += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;

/// Each log file as written, and with its folder as the kernel names it (a link in
/// the path resolved), so either spelling of a change is known as a log's.
fn with_real_folders(logs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = logs.to_vec();
    for log in logs {
        if let (Some(dir), Some(name)) = (log.parent(), log.file_name())
            && let Ok(real) = std::fs::canonicalize(dir)
            && real != dir
        {
            out.push(real.join(name));
        }
    }
    out
}
