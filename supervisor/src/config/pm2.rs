//! What PM2 users write, understood: PM2's `log_date_format` is a moment.js format
//! (`YYYY-MM-DD HH:mm:ss`), layer4's is strftime (`%Y-%m-%d %H:%M:%S`). A moment.js
//! format is refused with its strftime equivalent in the sentence (rather than printed
//! literally at the start of every line), and `l4ctl import` converts it. Also PM2's
//! option names: their other spellings, and for those with no layer4 key, the
//! sentence that says what to do (used by `l4ctl import` and by the config's own
//! unknown-key errors).

/// moment.js tokens, longest first, and their strftime fields (chrono's).
const TOKENS: &[(&str, &str)] = &[
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%-m"),
    ("DDDD", "%j"),
    ("DD", "%d"),
    ("Do", "%-d"),
    ("D", "%-d"),
    ("dddd", "%A"),
    ("ddd", "%a"),
    ("HH", "%H"),
    ("H", "%-H"),
    ("hh", "%I"),
    ("h", "%-I"),
    ("mm", "%M"),
    ("m", "%-M"),
    ("ss", "%S"),
    ("s", "%-S"),
    ("SSS", "%3f"),
    ("A", "%p"),
    ("a", "%P"),
    ("ZZ", "%z"),
    ("Z", "%:z"),
    ("X", "%s"),
];

/// Tokens only a moment.js format has: a strftime format never holds them without `%`.
const TELLTALE: &[&str] = &["YYYY", "MM", "DD", "HH", "mm", "ss", "SSS"];

/// Whether `format` is a moment.js format rather than strftime (text in `[...]`, which
/// moment.js prints as it is, does not count).
pub fn is_moment(format: &str) -> bool {
    let mut outside = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('[') {
        outside.push_str(&rest[..open]);
        match rest[open..].find(']') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    outside.push_str(rest);
    !outside.contains('%') && TELLTALE.iter().any(|t| outside.contains(t))
}

/// The strftime equivalent of a moment.js format (`[text]` is literal text).
pub fn moment_to_strftime(format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(end) = rest.find(']')
        {
            out.push_str(&rest[1..end].replace('%', "%%"));
            rest = &rest[end + 1..];
            continue;
        }
        for (token, field) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(field);
                rest = after;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// PM2's other spellings of one option, first the name layer4 uses.
pub const ALIASES: &[&[&str]] = &[
    &["script", "exec"],
    &["interpreter", "exec_interpreter"],
    &["interpreter_args", "node_args"],
    &["error_file", "error", "err", "err_file", "err_log"],
    &["out_file", "out", "output", "out_log"],
    &["log_file", "log"],
    &["merge_logs", "combine_logs"],
    &["instances", "i"],
    &["cron_restart", "cron"],
    &["pid_file", "pid"],
];

/// PM2 also reads every option in camelCase (`maxMemoryRestart`); this is the
/// snake_case name it stands for. `windowsHide` is PM2's own spelling and stays.
pub fn snake(key: &str) -> String {
    if key == "windowsHide" || !key.chars().any(|c| c.is_ascii_uppercase()) {
        return key.to_owned();
    }
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Options with no layer4 key: the comment that takes their place.
pub const NO_EQUIVALENT: &[(&str, &str)] = &[
    (
        "watch_options",
        "chokidar's options have no layer4 equivalent: layer4 watches with inotify, never follows links, and skips `ignore_watch`, the app's log files and the daemon's folders",
    ),
    (
        "instance_var",
        "layer4 gives every instance L4_INSTANCE (0, 1, ...) and L4_INSTANCES; read those instead of PM2's NODE_APP_INSTANCE",
    ),
    (
        "increment_var",
        "layer4 increments only PORT (`port`, instance i gets port + i); for another variable read L4_INSTANCE and add it yourself",
    ),
    ("source_map_support", "add --enable-source-maps to the node arguments (`args` before the script) instead"),
    (
        "filter_env",
        "layer4 passes the daemon's environment, then env_file, [apps.env] and the profile; start the daemon with a clean environment (as systemd does) to keep variables out",
    ),
    ("pid_file", "layer4 keeps no pid files: `l4ctl status --json` and the status API give every pid"),
    ("shutdown_with_message", "layer4 stops with `kill_signal` (a signal, never an IPC message): handle it in the app"),
    ("kill_retry_time", "layer4 sends kill_signal once and SIGKILL after kill_timeout"),
    ("treekill", "layer4 always signals the app's whole process group, and its cgroup where it has one"),
    (
        "namespace",
        "layer4 has no namespaces: `l4ctl stop all`, or one config file per group started with its own --home",
    ),
    (
        "uid",
        "layer4 runs apps as the daemon's user: run the daemon as that user (`l4ctl daemon` from a systemd unit with User=)",
    ),
    ("gid", "layer4 runs apps with the daemon's group: run the daemon as that user and group"),
    ("user", "layer4 runs apps as the daemon's user: run the daemon as that user"),
    ("vizion", "layer4 does not track git revisions of apps"),
    ("post_update", "layer4 runs no commands on update: run them in your deploy script before `l4ctl reload`"),
    ("force", "layer4 never starts the same app twice: `l4ctl start` of a loaded app starts it again"),
    ("automation", "PM2.io monitoring: layer4 serves its metrics itself (status API, /metrics for Prometheus)"),
    ("pmx", "PM2.io monitoring: layer4 serves its metrics itself (status API, /metrics for Prometheus)"),
    ("trace", "PM2.io tracing has no layer4 equivalent"),
    ("disable_trace", "PM2.io tracing has no layer4 equivalent"),
    ("deep_monitoring", "PM2.io monitoring: layer4 serves its metrics itself (status API, /metrics for Prometheus)"),
    ("append_env_to_name", "layer4 keeps the app's name whatever --env is chosen"),
    ("windowsHide", "Windows only"),
    ("node_version", "layer4 runs the `node` on the daemon's PATH: give a path in `script` to pick another"),
    (
        "exec_mode",
        "every layer4 instance is its own process; `instances` with a `port` gives each its own port (port + i) behind the rendered Nginx",
    ),
];

/// The interpreter PM2 picks for a script by its extension.
pub fn interpreter_for(script: &str) -> Option<&'static str> {
    let ext = std::path::Path::new(script).extension()?.to_str()?;
    Some(match ext {
        "js" | "cjs" | "mjs" => "node",
        "py" => "python3",
        "sh" => "bash",
        "rb" => "ruby",
        "pl" => "perl",
        "php" => "php",
        "ts" | "tsx" => "ts-node",
        "coffee" => "coffee",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm2_date_formats_convert_to_strftime() {
        for (moment, strftime) in [
            ("YYYY-MM-DD HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
            ("YYYY-MM-DD HH:mm:ss Z", "%Y-%m-%d %H:%M:%S %:z"),
            ("YYYY-MM-DDTHH:mm:ss.SSSZZ", "%Y-%m-%dT%H:%M:%S.%3f%z"),
            ("DD/MM/YY hh:mm A", "%d/%m/%y %I:%M %p"),
            ("[at] HH:mm [100%]", "at %H:%M 100%%"),
        ] {
            assert!(is_moment(moment), "{moment}");
            assert_eq!(moment_to_strftime(moment), strftime, "{moment}");
        }
        assert!(!is_moment("%Y-%m-%d %H:%M:%S%.3f"));
        assert!(!is_moment("[app]"), "no date token: literal text, not a moment format");
    }
}
