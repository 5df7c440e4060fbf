//! `watch`, `ignore_watch`, `watch_delay` and `cron_restart` (PM2's options of the
//! same names): what restarts an app other than its own end. Parsed and checked
//! here, every error at its value; the daemon's `triggers` task carries them out.
//!
//! The ignore rule lives here too ([`Ignore`]), so that what the config accepts and
//! what the watcher skips are one definition.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::diag::Report;
use super::glob::Glob;
use super::normalize;
use super::schema::AppSection;

/// Paths in one app's `watch` list at most.
pub const MAX_WATCH_PATHS: usize = 64;
/// Patterns in one app's `ignore_watch` at most.
pub const MAX_IGNORE_PATTERNS: usize = 256;
/// The longest `watch_delay`.
pub const MAX_WATCH_DELAY: Duration = Duration::from_secs(3600);
/// What is not watched when `ignore_watch` is not set (PM2's default, plus editor
/// backups): dependencies, hidden files and folders (`.git`, `.x.swp`), `file~`.
pub const DEFAULT_IGNORE: [&str; 3] = ["node_modules", ".*", "*~"];

/// `watch`: `false` (the default), `true` (the app's `cwd`), or folders and files
/// relative to `cwd` (one string or a list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WatchSection {
    #[default]
    Off,
    Cwd,
    Paths(Vec<String>),
}

impl<'de> Deserialize<'de> for WatchSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WatchSection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a list of folders and files such as [\"src\", \"config\"]")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<WatchSection, E> {
                Ok(if v { WatchSection::Cwd } else { WatchSection::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WatchSection, E> {
                Ok(WatchSection::Paths(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WatchSection, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    paths.push(p);
                }
                Ok(WatchSection::Paths(paths))
            }
        }
        d.deserialize_any(V)
    }
}

/// What restarts an app besides its own end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggers {
    pub watch: Option<WatchSpec>,
    /// A cron expression (five fields, or six with seconds first), in local time.
    pub cron_restart: Option<String>,
}

/// `watch = ...` resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// Absolute folders (watched with everything under them) and files.
    pub paths: Vec<PathBuf>,
    /// The folder `ignore_watch` patterns with a `/` are relative to (the app's `cwd`).
    pub base: PathBuf,
    /// `ignore_watch`, or [`DEFAULT_IGNORE`].
    pub ignore: Vec<String>,
    /// Quiet time after the last change before the restart.
    #[serde(with = "super::duration_ms", rename = "watch_delay_ms")]
    pub delay: Duration,
}

/// `ignore_watch` compiled: a pattern without `/` matches any one name in a path
/// (`node_modules`, `*.log`, `.*`); one with `/` matches the path from the app's
/// `cwd`, or any folder above it (`client/img` ignores `client/img/a.png`).
#[derive(Debug, Clone)]
pub struct Ignore {
    names: Vec<Glob>,
    paths: Vec<Glob>,
}

impl Ignore {
    pub fn new(patterns: &[String]) -> Result<Ignore, String> {
        let (mut names, mut paths) = (Vec::new(), Vec::new());
        for p in patterns {
            let p = p.strip_prefix("./").unwrap_or(p).trim_end_matches('/');
            let globs =
                super::glob::compile(p).map_err(|why| format!("invalid pattern {p:?} in `ignore_watch`: {why}"))?;
            // Per alternative: `{node_modules,build/out}` is one name and one path.
            for g in globs {
                if g.anchored { paths.push(g) } else { names.push(g) }
            }
        }
        Ok(Ignore { names, paths })
    }

    /// Whether `rel` (a path relative to the app's `cwd`) is ignored, judging only
    /// the names after its first `listed` ones: those name a `watch` entry itself,
    /// which is watched even when a pattern would match it (`watch = [".env"]`).
    pub fn matches(&self, rel: &Path, listed: usize) -> bool {
        let names: Vec<std::borrow::Cow<'_, str>> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy()),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
        (listed..names.len()).any(|i| {
            self.names.iter().any(|g| g.matches(&names[i..=i])) || self.paths.iter().any(|g| g.matches(&names[..=i]))
        })
    }
}

/// Parse a `cron_restart` expression as the daemon will.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let cron = expr.parse::<croner::Cron>().map_err(|e| {
        let e = e.to_string();
        let e = e.trim_end_matches('.');
        format!(
            "invalid cron expression {expr:?}: {e}; expected five fields (minute hour day month weekday), or six with seconds first"
        )
    })?;
    if cron.find_next_occurrence(&chrono::Local::now(), false).is_err() {
        return Err(format!("the cron expression {expr:?} names no time that will come"));
    }
    Ok(cron)
}

/// Check and resolve the app's trigger options, reporting each error at its value.
pub(super) fn resolve(report: &mut Report<'_>, app: &AppSection, cwd: &Path) -> Triggers {
    let name = app.name.get_ref();
    let cron_restart = app.cron_restart.as_ref().and_then(|c| match parse_cron(c.get_ref()) {
        Ok(_) => Some(c.get_ref().clone()),
        Err(msg) => {
            report.push(c.span(), format!("`cron_restart` of `{name}`: {msg}"));
            None
        }
    });
    let delay = app.watch_delay.get_ref().0;
    if delay > MAX_WATCH_DELAY {
        report.push(app.watch_delay.span(), format!("`watch_delay` of `{name}` must be at most 1h"));
    }
    let ignore: Vec<String> = match &app.ignore_watch {
        Some(list) => {
            if list.get_ref().len() > MAX_IGNORE_PATTERNS {
                report.push(
                    list.span(),
                    format!("`ignore_watch` of `{name}` has more than {MAX_IGNORE_PATTERNS} patterns"),
                );
            } else if let Err(msg) = Ignore::new(list.get_ref()) {
                report.push(list.span(), msg);
            }
            list.get_ref().clone()
        }
        None => DEFAULT_IGNORE.iter().map(|s| (*s).to_owned()).collect(),
    };
    let paths = match app.watch.get_ref() {
        WatchSection::Off => return Triggers { watch: None, cron_restart },
        WatchSection::Cwd => vec![cwd.to_path_buf()],
        WatchSection::Paths(list) => {
            if list.is_empty() || list.len() > MAX_WATCH_PATHS {
                let msg = format!("`watch` of `{name}` must list 1 to {MAX_WATCH_PATHS} paths (or be true or false)");
                report.push(app.watch.span(), msg);
            }
            if list.iter().any(|p| p.trim().is_empty()) {
                report.push(app.watch.span(), format!("`watch` of `{name}` has an empty path"));
            }
            list.iter().map(|p| normalize(&cwd.join(p))).collect()
        }
    };
    let watch = WatchSpec { paths, base: cwd.to_path_buf(), ignore, delay };
    Triggers { watch: Some(watch), cron_restart }
}

/// `watch`'s default: off.
pub(super) fn default_watch() -> Spanned<WatchSection> {
    Spanned::new(0..0, WatchSection::Off)
}

/// `watch_delay`'s default, as PM2.
pub(super) fn default_watch_delay() -> Spanned<super::Span> {
    Spanned::new(0..0, super::Span(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Ignore {
        fn matches_all(&self, rel: &Path) -> bool {
            self.matches(rel, 0)
        }
    }

    fn ignore(p: &[&str]) -> Ignore {
        Ignore::new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_match_anywhere_and_paths_match_from_the_app_folder_down() {
        let d = ignore(&DEFAULT_IGNORE);
        assert!(d.matches_all(Path::new("node_modules/x/index.js")));
        assert!(d.matches_all(Path::new("src/.git/HEAD")));
        assert!(d.matches_all(Path::new("src/.app.js.swp")));
        assert!(d.matches_all(Path::new("src/app.js~")));
        assert!(!d.matches_all(Path::new("src/app.js")));
        let p = ignore(&["client/img", "*.log", "./tmp/"]);
        assert!(p.matches_all(Path::new("client/img/a.png")));
        assert!(!p.matches_all(Path::new("other/client/img/a.png")));
        assert!(p.matches_all(Path::new("deep/x.log")));
        assert!(p.matches_all(Path::new("tmp/cache")));
        assert!(!p.matches_all(Path::new("src/tmp.js")));
        // A listed entry is watched even when a pattern matches its own name.
        assert!(!d.matches(Path::new(".env"), 1) && d.matches(Path::new(".env"), 0));
        assert!(d.matches(Path::new("conf/.secret"), 1));
    }

    #[test]
    fn a_broken_pattern_and_a_broken_cron_expression_get_a_sentence() {
        let e = Ignore::new(&["src/[".to_owned()]).unwrap_err();
        assert_eq!(e, "invalid pattern \"src/[\" in `ignore_watch`: an unclosed `[`");
        let e = parse_cron("61 * * * *").unwrap_err();
        assert!(e.contains("invalid cron expression \"61 * * * *\""), "{e}");
        assert!(parse_cron("0 3 * * *").is_ok() && parse_cron("* * * * * *").is_ok());
        let e = parse_cron("0 0 30 2 *").unwrap_err();
        assert!(e.contains("names no time that will come"), "{e}");
    }
}
