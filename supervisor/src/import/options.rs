//! The comments `l4ctl import` writes for PM2 options with no layer4 key (the
//! table itself is `config::pm2`'s, shared with the config's own errors).

pub use crate::config::pm2::{ALIASES, NO_EQUIVALENT, snake};

/// The sentence for a top-level key other than `apps`.
pub fn top_level(key: &str, _value: &serde_json::Value) -> String {
    match key {
        "deploy" => "PM2's `deploy` section (git pull and post-deploy over ssh) has no layer4 equivalent: deploy with your own script or CI, then `l4ctl reload APP` on each host.".to_owned(),
        other => format!("`{}` at the top of the ecosystem file is not a PM2 option layer4 knows; it was left out.", super::emit::one_line(other)),
    }
}

/// The comment for an app option with no layer4 key, or for an unknown one.
pub fn no_equivalent(key: &str, value: &serde_json::Value) -> String {
    let shown = super::emit::one_line(&value.to_string());
    let name = super::emit::one_line(key);
    let snake = snake(key);
    // An alias stands for its main name (`cron` for `cron_restart`).
    let main = ALIASES.iter().find(|a| a.contains(&snake.as_str())).map_or(snake.as_str(), |a| a[0]);
    match NO_EQUIVALENT.iter().find(|(k, _)| *k == key || *k == main) {
        Some((_, why)) => format!("PM2 {name} = {shown}: {why}."),
        None => format!("PM2 {name} = {shown}: not a PM2 option layer4 knows; left out."),
    }
}
