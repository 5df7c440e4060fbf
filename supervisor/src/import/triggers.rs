//! PM2's `watch`, `ignore_watch`, `watch_delay` and `cron_restart` to layer4's keys
//! of the same names. A value layer4 would refuse (a pattern that is not a glob, a
//! cron expression it cannot read) becomes a comment, so the result always loads.

use serde_json::Value;

use super::emit::{Section, one_line};
use super::keys::Keys;
use crate::config::triggers::{Ignore, parse_cron};

/// The four options, each taken once.
pub fn triggers(keys: &mut Keys<'_>, s: &mut Section) {
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(t) => Some(vec![t.clone()]),
            Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
            _ => None,
        }
    };
    let shown = |v: &Value| one_line(&v.to_string());
    if let Some((k, v)) = keys.take("watch") {
        match (v, strings(v)) {
            (Value::Bool(b), _) => s.key("watch", *b),
            (_, Some(paths))
                if !paths.is_empty()
                    && paths.len() <= crate::config::triggers::MAX_WATCH_PATHS
                    && paths.iter().all(|p| !p.trim().is_empty()) =>
            {
                s.key("watch", paths)
            }
            _ => s.comment(format!(
                "PM2 {} = {}: not true, false or a list of paths layer4 reads; not watched.",
                one_line(k),
                shown(v)
            )),
        }
    }
    if let Some((k, v)) = keys.take("ignore_watch") {
        let patterns = strings(v).unwrap_or_default();
        let (mut good, mut bad): (Vec<String>, Vec<String>) =
            patterns.into_iter().partition(|p| Ignore::new(std::slice::from_ref(p)).is_ok());
        // layer4 reads at most this many.
        bad.extend(good.split_off(good.len().min(crate::config::triggers::MAX_IGNORE_PATTERNS)));
        if !good.is_empty() {
            s.key_note("ignore_watch", good, "globs: a pattern without '/' matches any one name in a path");
        }
        if !bad.is_empty() || strings(v).is_none() {
            s.comment(format!(
                "PM2 {} = {}: {} not a glob layer4 reads (PM2 also took regular expressions); left out.",
                one_line(k),
                shown(v),
                if bad.is_empty() { "the value is".to_owned() } else { format!("{} is", bad.join(", ")) }
            ));
        }
    }
    if let Some((k, v)) = keys.take("watch_delay") {
        let longest = crate::config::triggers::MAX_WATCH_DELAY.as_millis() as u64;
        match v.as_u64().filter(|ms| *ms <= longest) {
            Some(ms) => s.key_note("watch_delay", ms as i64, "milliseconds, as in PM2"),
            None => {
                s.comment(format!("PM2 {} = {}: not milliseconds up to an hour; 1s is used.", one_line(k), shown(v)))
            }
        }
    }
    if let Some((k, v)) = keys.take("cron_restart") {
        match v.as_str().map(|c| (c, parse_cron(c))) {
            Some((c, Ok(_))) => s.key_note("cron_restart", c, "local time, as PM2"),
            Some((_, Err(why))) => s.comment(format!("PM2 {} = {}: {why}; left out.", one_line(k), shown(v))),
            None => s.comment(format!("PM2 {} = {}: not a cron expression; left out.", one_line(k), shown(v))),
        }
    }
}
