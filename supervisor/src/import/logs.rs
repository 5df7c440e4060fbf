//! An imported app's log options: the three files (resolved from the app's
//! folder with `~` expanded, as PM2 does; `NULL` and `disable_logs` as
//! `/dev/null`; a file an earlier app writes left to its default), timestamps
//! and their format (moment.js converted to strftime), and `log_type`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::app::Taken;
use super::emit::{Section, one_line};
use super::keys::Keys;
use super::{options, timing};
use crate::config::pm2;

/// Log files (paths resolved as PM2 does, from the app's folder; `~` is the home).
pub(super) fn logs(keys: &mut Keys<'_>, s: &mut Section, app_dir: &Path, out: &Path, name: &str, taken: &mut Taken) {
    let disabled = matches!(keys.take("disable_logs"), Some((_, Value::Bool(true))));
    for key in ["out_file", "error_file", "log_file"] {
        let given = keys.take(key);
        if disabled && given.is_none() {
            s.key_note(key, "/dev/null", "PM2 disable_logs = true");
            continue;
        }
        let Some((pm2_key, v)) = given else { continue };
        match v {
            Value::String(p) if p == "/dev/null" || p == "NULL" => s.key(key, "/dev/null"),
            Value::String(p) => {
                let path = crate::config::normalize(&app_dir.join(expand_home(p)));
                if let Some(owner) = taken.logs.get(&path) {
                    s.comment(format!(
                        "PM2 {} = {}: shared with `{owner}`; layer4 gives each app its own files (two apps on one file would rotate each other's lines away), so it keeps its default.",
                        one_line(pm2_key),
                        one_line(&v.to_string())
                    ));
                    continue;
                }
                taken.logs.insert(path.clone(), name.to_owned());
                s.key(key, relative(out, &path).as_str());
            }
            Value::Bool(true) => {}
            other => s.comment(format!(
                "PM2 {} = {}: layer4 always writes this file; left at its default.",
                one_line(pm2_key),
                one_line(&other.to_string())
            )),
        }
    }
    timing::flag(keys, s, "merge_logs");
    timing::flag(keys, s, "time");
    if let Some((_, v)) = keys.take("log_date_format") {
        match v.as_str() {
            Some(f) if pm2::is_moment(f) => {
                s.key_note("log_date_format", pm2::moment_to_strftime(f), format!("PM2 (moment.js): {}", one_line(f)));
            }
            Some(f) => s.key("log_date_format", f),
            None => s.comment(options::no_equivalent("log_date_format", v)),
        }
    }
    match keys.take("log_type") {
        Some((_, Value::String(t))) if t == "json" => s.key("log_type", "json"),
        Some((_, v)) => s.comment(format!(
            "PM2 log_type = {}: layer4 writes text lines unless log_type = \"json\"; left out.",
            one_line(&v.to_string())
        )),
        None => {}
    }
}

/// PM2 expands a leading `~` to the home folder.
pub(super) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if path == "~" => std::env::var_os("HOME").map_or_else(|| PathBuf::from(path), PathBuf::from),
        _ => PathBuf::from(path),
    }
}

/// `path` relative to `from` when it lies inside it, else absolute.
pub(super) fn relative(from: &Path, path: &Path) -> String {
    match path.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => ".".to_owned(),
        Ok(rest) => rest.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
