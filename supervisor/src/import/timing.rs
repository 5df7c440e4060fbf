//! The time-shaped options of an imported app: readiness, restarts, backoff
//! and stopping. PM2 numbers are milliseconds; strings keep their unit. A value
//! layer4 refuses (zero where it needs more, past its bounds) becomes a comment
//! and the key keeps layer4's default, so the import always loads.

use std::time::Duration;

use serde_json::Value;

use super::emit::{Section, one_line};
use super::keys::Keys;
use super::options;

/// PM2's cap on `exp_backoff_restart_delay`'s growth.
const PM2_BACKOFF_CAP: Duration = Duration::from_secs(15);

/// `ready`: PM2's `wait_ready` is the app saying it is ready; a port suggests `tcp`.
pub(super) fn readiness(keys: &mut Keys<'_>, s: &mut Section, has_port: bool) {
    match keys.take("wait_ready") {
        Some((_, Value::Bool(true))) => {
            s.key_note("ready", "notify", "PM2 wait_ready: online once the app says so");
            s.comment("A Node app says it with process.send('ready') as under PM2 (layer4 gives a `script = \"node\"` app the IPC channel), another by sending READY=1 to NOTIFY_SOCKET. Where PM2 went on after listen_timeout without it, layer4 restarts the run.");
        }
        Some((_, Value::Bool(false))) | None => {
            if has_port {
                s.comment("ready = \"tcp\" would make the app online only once its port accepts, and `l4ctl reload` wait for that (a run that does not accept within listen_timeout is restarted).");
            }
        }
        Some((_, v)) => {
            s.comment(format!("PM2 wait_ready = {}: not true or false; left out.", one_line(&v.to_string())))
        }
    }
    if let Some((_, v)) = keys.take("listen_timeout") {
        duration(s, "listen_timeout", v, Duration::from_secs(3600));
    }
}

/// Restarts, backoff and stopping.
pub(super) fn restart_policy(keys: &mut Keys<'_>, s: &mut Section) {
    flag(keys, s, "autorestart");
    if let Some((_, v)) = keys.take("stop_exit_codes") {
        let codes: Option<Vec<i64>> = match v {
            Value::Number(n) => n.as_i64().map(|c| vec![c]),
            Value::Array(a) => a.iter().map(Value::as_i64).collect(),
            _ => None,
        };
        match codes.filter(|c| c.iter().all(|c| (0..=255).contains(c))) {
            Some(codes) => s.key("stop_exit_codes", codes),
            None => s.comment(format!(
                "PM2 stop_exit_codes = {}: not exit codes 0..255; left out.",
                one_line(&v.to_string())
            )),
        }
    }
    flag(keys, s, "autostart");
    if let Some((_, v)) = keys.take("min_uptime") {
        duration(s, "min_uptime", v, Duration::from_secs(86_400));
    }
    if let Some((_, v)) = keys.take("kill_timeout") {
        duration(s, "kill_timeout", v, Duration::from_secs(3600));
    }
    if let Some((_, v)) = keys.take("max_restarts") {
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => {
                s.key("max_restarts", i64::from(n));
                s.comment("After max_restarts short runs in a row PM2 stopped the app for good; layer4 then retries slowly (crash loop): crash_loop_max_retries = 0 stops it as PM2 did.");
            }
            None => s.comment(options::no_equivalent("max_restarts", v)),
        }
    }
    let day = Duration::from_secs(86_400);
    let exp = keys.take("exp_backoff_restart_delay");
    let fixed = keys.take("restart_delay");
    match (exp, fixed) {
        (Some((_, v)), fixed) => {
            if let Some(first) = duration(s, "restart_delay", v, day) {
                if first < PM2_BACKOFF_CAP {
                    s.key_note(
                        "restart_delay_max",
                        text(PM2_BACKOFF_CAP),
                        "PM2's exponential backoff stops growing at 15 s",
                    );
                } else {
                    s.key_note(
                        "restart_delay_max",
                        text(first),
                        "no growth: PM2's backoff caps at 15 s, below this first step",
                    );
                }
            }
            if let Some((_, f)) = fixed {
                s.comment(format!(
                    "PM2 restart_delay = {}: PM2 uses exp_backoff_restart_delay when both are set; left out.",
                    one_line(&f.to_string())
                ));
            }
        }
        (None, Some((_, v))) => {
            if let Some(d) = duration(s, "restart_delay", v, day)
                && !d.is_zero()
            {
                s.key_note("restart_delay_max", text(d), "the same, so the delay never grows");
            }
            s.comment("PM2 waited restart_delay before every restart; layer4 restarts a run that lasted min_uptime at once, and waits a random delay below restart_delay after a short one.");
        }
        (None, None) => {}
    }
    match keys.take("kill_signal") {
        Some((_, Value::String(sig))) if crate::config::SignalName::parse(sig).is_ok() => {
            s.key("kill_signal", sig.as_str())
        }
        Some((_, v)) => {
            s.key_note(
                "kill_signal",
                "SIGINT",
                format!("PM2's stop signal; kill_signal = {} is not a signal", one_line(&v.to_string())),
            );
        }
        None => s.key_note("kill_signal", "SIGINT", "PM2 stops apps with SIGINT (layer4's default is SIGTERM)"),
    }
}

/// A true/false option under the same name; anything else a comment.
pub(super) fn flag(keys: &mut Keys<'_>, s: &mut Section, key: &str) {
    match keys.take(key) {
        Some((_, Value::Bool(b))) => s.key(key, *b),
        Some((pm2_key, v)) => {
            s.comment(format!("PM2 {} = {}: not true or false; left out.", one_line(pm2_key), one_line(&v.to_string())))
        }
        None => {}
    }
}

/// A PM2 duration as a layer4 key, or a comment when layer4 would refuse it
/// (`restart_delay` may be zero, the others not; none may pass `max`).
fn duration(s: &mut Section, key: &str, v: &Value, max: Duration) -> Option<Duration> {
    let parsed = span(v);
    match parsed {
        Some(d) if d <= max && (!d.is_zero() || key == "restart_delay") => {
            s.key(key, text(d));
            Some(d)
        }
        Some(_) => {
            s.comment(format!(
                "PM2 {key} = {}: layer4 needs more than 0 and at most {}; left at layer4's default.",
                one_line(&v.to_string()),
                humantime::format_duration(max)
            ));
            None
        }
        None => {
            s.comment(format!(
                "PM2 {key} = {}: not a duration layer4 reads (milliseconds, or \"5s\"); left out.",
                one_line(&v.to_string())
            ));
            None
        }
    }
}

/// A PM2 duration: a number of milliseconds, or a string with a unit (`"5s"`) or without (ms).
fn span(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_millis),
        Value::String(t) => match t.trim().parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => humantime::parse_duration(t.trim()).ok(),
        },
        _ => None,
    }
}

/// `3s`, `1500ms`.
fn text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}
