//! The PM2 options layer4 has no key for, each with the sentence the imported
//! file carries instead: why, and what to do. Kept as data so the README's
//! mapping table and the importer cannot disagree about which options exist.

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
        "watch",
        "layer4 does not watch files yet: restart on deploy with `l4ctl reload APP` (no refused connection when the app has readiness)",
    ),
    ("ignore_watch", "goes with `watch`, which layer4 does not have yet"),
    ("watch_delay", "goes with `watch`, which layer4 does not have yet"),
    ("watch_options", "goes with `watch`, which layer4 does not have yet"),
    (
        "cron_restart",
        "layer4 has no cron restart yet: a system timer (cron or a systemd timer) running `l4ctl reload APP` does the same",
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
];

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
