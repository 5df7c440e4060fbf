//! The rules of one `[[apps]]` table that `validate` applies after parsing:
//! range checks of single values (each reported at the value), the app's log
//! files, and reading its `env_file`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diag::Report;
use super::listen::{Ready, SocketOwner};
use super::schema::AppSection;
use super::{LogFiles, LogSpec, normalize};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Where to point for a value: its own span, or the app's name when it was defaulted.
fn at<T>(v: &Spanned<T>, app: &AppSection) -> Range<usize> {
    if v.span().is_empty() { app.name.span() } else { v.span() }
}

/// Range checks of single values, each reported at the value.
pub(super) fn check_app_values(report: &mut Report<'_>, app: &AppSection) {
    let name = app.name.get_ref();
    let bounded = [
        (&app.kill_timeout, "kill_timeout", HOUR),
        (&app.restart_delay, "restart_delay", DAY),
        (&app.restart_delay_max, "restart_delay_max", DAY),
        (&app.min_uptime, "min_uptime", DAY),
        (&app.listen_timeout, "listen_timeout", HOUR),
    ];
    for (value, key, max) in bounded {
        let d = value.get_ref().0;
        if d > max {
            report.push(
                at(value, app),
                format!("`{key}` of `{name}` must be at most {}", humantime::format_duration(max)),
            );
        }
        if d.is_zero() && key != "restart_delay" {
            report.push(at(value, app), format!("`{key}` of `{name}` must be greater than zero"));
        }
    }
    if app.restart_delay.get_ref().0 > app.restart_delay_max.get_ref().0 {
        let span = if app.restart_delay.span().is_empty() {
            at(&app.restart_delay_max, app)
        } else {
            app.restart_delay.span()
        };
        report.push(span, format!("`restart_delay` of `{name}` is larger than `restart_delay_max`"));
    }
    if let Some(m) = &app.max_memory_restart
        && m.get_ref().0 == 0
    {
        report.push(m.span(), format!("`max_memory_restart` of `{name}` must be greater than zero"));
    }
    if let Some(code) = app.stop_exit_codes.get_ref().iter().find(|c| !(0..=255).contains(*c)) {
        report.push(at(&app.stop_exit_codes, app), format!("exit code {code} in `stop_exit_codes` is outside 0..=255"));
    }
    let needs_port = match app.ready.get_ref() {
        Ready::Http(_) => Some("http"),
        Ready::Tcp => Some("tcp"),
        _ => None,
    };
    if let (Some(kind), None) = (needs_port, &app.port) {
        report.push(at(&app.ready, app), format!("`ready = \"{kind}...\"` of `{name}` needs `port`"));
    }
    let shared = app.port.is_some() && *app.socket.get_ref() == SocketOwner::Supervisor;
    if *app.ready.get_ref() == Ready::Tcp && shared {
        report.push(
            app.ready.span(),
            format!(
                "`ready = \"tcp\"` of `{name}` cannot work while l4ctl holds the socket (the kernel accepts connections before the worker is ready): use \"notify\", or `socket = \"app\"`"
            ),
        );
    }
    if matches!(app.ready.get_ref(), Ready::Http(_)) && shared {
        // During a reload the old run answers on the same socket: a probe would say a
        // new run that never serves is ready.
        report.push(
            app.ready.span(),
            format!(
                "`ready = \"http:...\"` of `{name}` cannot tell a new run from the old one while l4ctl holds the socket (during a reload both answer on it): use \"notify\" (send READY=1 to NOTIFY_SOCKET once serving), or `socket = \"app\"`"
            ),
        );
    }
    if *app.socket.get_ref() == SocketOwner::App && !app.socket.span().is_empty() && app.port.is_none() {
        report.push(app.socket.span(), format!("`socket` of `{name}` needs `port`"));
    }
    if !(1..=super::scale::MAX_INSTANCES).contains(app.reload_parallel.get_ref()) {
        let max = super::scale::MAX_INSTANCES;
        report
            .push(at(&app.reload_parallel, app), format!("`reload_parallel` of `{name}` must be between 1 and {max}"));
    }
    if name.len() > 64 {
        report.push(app.name.span(), format!("app name `{name}` is longer than 64 bytes"));
    }
    let has_nul = app.script.get_ref().contains('\0')
        || app.args.iter().any(|a| a.contains('\0'))
        || app.cwd.as_ref().is_some_and(|c| c.as_os_str().as_encoded_bytes().contains(&0));
    if has_nul {
        report.push(app.script.span(), format!("`script`, `args` or `cwd` of `{name}` contains a NUL byte"));
    }
}

/// Resolve the log options of one app; per-instance names when `merge_logs = false`.
pub(super) fn log_spec(
    report: &mut Report<'_>,
    app: &AppSection,
    base: &Path,
    log_dir: &Path,
    instances: u32,
) -> LogSpec {
    let name = app.name.get_ref();
    let pick = |explicit: &Option<PathBuf>, default: String| {
        explicit.as_ref().map_or_else(|| log_dir.join(default), |p| normalize(&base.join(p)))
    };
    let merged = LogFiles {
        instance: None,
        out: pick(&app.out_file, format!("{name}-out.log")),
        err: pick(&app.error_file, format!("{name}-err.log")),
        combined: pick(&app.log_file, format!("{name}.log")),
    };
    let files = if app.merge_logs {
        vec![merged]
    } else {
        (0..instances)
            .map(|i| LogFiles {
                instance: Some(i),
                out: per_instance(&merged.out, &app.out_file, i, &format!("{name}-{i}-out.log")),
                err: per_instance(&merged.err, &app.error_file, i, &format!("{name}-{i}-err.log")),
                combined: per_instance(&merged.combined, &app.log_file, i, &format!("{name}-{i}.log")),
            })
            .collect()
    };
    if app.max_line.0 < 16 {
        report.push(app.name.span(), format!("`max_line` of `{name}` must be at least 16 bytes"));
    }
    if app.log_rotate.max_size.0 < 1024 {
        report.push(app.name.span(), format!("`log_rotate.max_size` of `{name}` must be at least 1K"));
    }
    LogSpec {
        files,
        merge_logs: app.merge_logs,
        time: app.time,
        date_format: app.log_date_format.as_ref().map(|f| f.0.clone()),
        log_type: app.log_type,
        max_line: usize::try_from(app.max_line.0).unwrap_or(usize::MAX),
        max_size: app.log_rotate.max_size.0,
        interval: app.log_rotate.interval,
        retain: app.log_rotate.retain,
        compress: app.log_rotate.compress,
    }
}

/// A per-instance file name: the default pattern, or `-<i>` before the extension of a given name.
fn per_instance(merged: &Path, explicit: &Option<PathBuf>, i: u32, default: &str) -> PathBuf {
    if explicit.is_none() {
        return merged.with_file_name(default);
    }
    let stem = merged.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match merged.extension() {
        Some(ext) => merged.with_file_name(format!("{stem}-{i}.{}", ext.to_string_lossy())),
        None => merged.with_file_name(format!("{stem}-{i}")),
    }
}

pub(super) fn read_env_file(path: &PathBuf) -> Result<Vec<(String, String)>, String> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| match e {
        dotenvy::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("env_file {} not found", path.display())
        }
        other => format!("cannot read env_file {}: {other}", path.display()),
    })?;
    // Never echo the offending line: it may hold a secret, and this message reaches
    // the API and the daemon log.
    iter.map(|item| {
        item.map_err(|e| match e {
            dotenvy::Error::LineParse(_, index) => {
                format!("env_file {}: cannot parse the line at byte {index} (dotenv syntax)", path.display())
            }
            dotenvy::Error::EnvVar(_) => format!("env_file {}: a ${{VAR}} substitution failed", path.display()),
            dotenvy::Error::Io(io) => format!("env_file {}: {io}", path.display()),
            _ => format!("env_file {}: invalid", path.display()),
        })
    })
    .collect()
}
