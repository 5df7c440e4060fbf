//! From TOML text to a resolved [`Config`](super::Config): split the document
//! into sections, deserialize each with every error collected, then check the
//! rules that span fields and apps (unique names, port ranges, delays); the
//! rules of a single app are in `app_rules`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::app_rules::{check_app_values, log_spec, read_env_file};
use super::diag::Report;
use super::listen::SocketOwner;
use super::schema::{AppSection, DaemonSection, FileSection, Profiles};
use super::units::EnvValue;
use super::{AppSpec, Config, DaemonSpec, RestartPolicy, normalize};

/// Parse the document and deserialize `[daemon]` and each `[[apps]]`, collecting errors.
pub(super) fn read_sections(report: &mut Report<'_>) -> Option<FileSection> {
    let source = report.source;
    let (doc, syntax) = DeTable::parse_recoverable(source);
    for err in &syntax {
        report.push_toml(err, 0..0);
    }
    if !syntax.is_empty() {
        return None;
    }
    let mut file = FileSection::default();
    for (key, value) in doc.get_ref().iter() {
        match key.get_ref().as_ref() {
            "daemon" => {
                if let Some(d) = report.collect::<DaemonSection>(value) {
                    file.daemon = d;
                }
            }
            "nginx" => file.nginx = report.collect::<super::nginx::NginxSection>(value),
            "error_tracking" => {
                if let Some(section) = report.collect::<super::tracking::ErrorTrackingSection>(value) {
                    let base = report.file.parent().unwrap_or(std::path::Path::new("/")).to_path_buf();
                    for problem in super::tracking::ErrorTracking::check(&section, &base) {
                        report.push(key.span(), problem);
                    }
                    file.error_tracking = Some(section);
                }
            }
            "apps" => {
                let DeValue::Array(items) = value.get_ref() else {
                    report.push(value.span(), "`apps` must be an array of tables: write each app as [[apps]]");
                    continue;
                };
                // Apps that deserialized are checked further even when others did not,
                // so one run reports every problem; any diagnostic still fails the load.
                for item in items.iter() {
                    match read_app(report, item) {
                        Some(app) => file.apps.push(app),
                        None => file.apps_incomplete = true,
                    }
                }
            }
            other => {
                report.push(
                    key.span(),
                    format!("unknown section `{other}`, expected `daemon`, `apps`, `nginx` or `error_tracking`"),
                );
            }
        }
    }
    Some(file)
}

/// One `[[apps]]` table: split off `env_<NAME>` profiles, then deserialize the rest.
fn read_app(report: &mut Report<'_>, item: &Spanned<DeValue<'_>>) -> Option<(AppSection, Profiles)> {
    let DeValue::Table(table) = item.get_ref() else {
        report.push(item.span(), "each entry of `apps` must be a table");
        return None;
    };
    let mut rest = DeTable::new();
    let mut profiles = Profiles::new();
    let mut ok = true;
    for (k, v) in table.iter() {
        let name = k.get_ref().as_ref();
        match name.strip_prefix("env_") {
            Some("") => {
                report.push(k.span(), "an env profile needs a name: `[apps.env_NAME]`");
                ok = false;
            }
            Some(profile) if name != "env_file" => match report.collect::<BTreeMap<String, EnvValue>>(v) {
                Some(map) => {
                    ok &= check_env_keys(report, v, &map);
                    profiles.insert(profile.to_owned(), map);
                }
                None => ok = false,
            },
            _ => {
                rest.insert(k.clone(), v.clone());
            }
        }
    }
    let rest = Spanned::new(item.span(), DeValue::Table(rest));
    let app: AppSection = report.collect(&rest)?;
    let env_value = table.get("env").cloned();
    if let Some(v) = &env_value {
        ok &= check_env_keys(report, v, &app.env);
    }
    let _ = ok;
    Some((app, profiles))
}

fn check_env_keys(report: &mut Report<'_>, at: &Spanned<DeValue<'_>>, map: &BTreeMap<String, EnvValue>) -> bool {
    let mut ok = true;
    for key in map.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            report.push(at.span(), format!("invalid environment variable name {key:?}"));
            ok = false;
        }
    }
    ok
}

/// Cross-field checks and path resolution.
pub(super) fn resolve(
    report: &mut Report<'_>,
    file: FileSection,
    base: &Path,
    path: &Path,
    env_name: Option<&str>,
    daemon_log_dir: Option<&Path>,
) -> Option<Config> {
    let mut daemon = DaemonSpec::resolve(&file.daemon, file.error_tracking.as_ref(), base);
    if let Some(dir) = daemon_log_dir.filter(|_| file.daemon.log_dir.is_none()) {
        daemon.log_dir = dir.to_path_buf();
    }
    let log_dir = daemon.log_dir.clone();
    if daemon.sample_interval < Duration::from_millis(100) || daemon.sample_interval > Duration::from_secs(60) {
        report.push(0..0, "`[daemon] sample_interval` must be between 100ms and 60s");
    }
    if !(1..=65536).contains(&daemon.api_max_connections) {
        report.push(0..0, "`[daemon] api_max_connections` must be between 1 and 65536");
    }
    let mut apps = Vec::new();
    let mut ports: Vec<(Range<u32>, String)> = Vec::new();
    let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut profile_found = false;
    let mut app_spans: Vec<Range<usize>> = Vec::new();
    let app_count = file.apps.len();
    for (app, profiles) in file.apps {
        let name = app.name.get_ref().clone();
        let name_span = app.name.span();
        app_spans.push(name_span.clone());
        if let Some(first) = names.get(&name) {
            let line = report.source[..first.start].matches('\n').count() + 1;
            report.push(name_span.clone(), format!("duplicate app name `{name}` (first defined on line {line})"));
        } else {
            names.insert(name.clone(), name_span.clone());
        }
        // `.` and `..` are path segments: HTTP clients resolve `/api/v1/apps/../logs`
        // before sending it, so such an app could not be reached through the API.
        let reserved = ["all", ".", ".."].contains(&name.as_str());
        if name.is_empty() || reserved || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            report.push(
                name_span,
                format!(
                    "invalid app name {name:?}: use letters, digits, '.', '_' or '-', and not \"all\", \".\" or \"..\""
                ),
            );
        }
        if app.script.get_ref().trim().is_empty() {
            report.push(app.script.span(), "`script` must not be empty");
        }
        let instances = app.instances.resolve();
        if let Some(port) = &app.port {
            let range = super::scale::port_range(*port.get_ref(), instances);
            if !super::scale::ports_valid(&range) {
                report.push(
                    port.span(),
                    format!("port range {}..{} of `{name}` is outside 1..65535", range.start, range.end - 1),
                );
            }
            for (other, other_name) in &ports {
                if super::scale::overlap(&range, other) {
                    report.push(
                        port.span(),
                        format!(
                            "ports {}-{} of `{name}` collide with ports {}-{} of `{other_name}`",
                            range.start,
                            range.end - 1,
                            other.start,
                            other.end - 1
                        ),
                    );
                }
            }
            ports.push((range, name.clone()));
        }
        check_app_values(report, &app);
        let mut env = BTreeMap::new();
        let env_file = app.env_file.as_ref().map(|f| normalize(&base.join(f.get_ref())));
        if let (Some(spanned), Some(env_path)) = (&app.env_file, &env_file) {
            match read_env_file(env_path) {
                Ok(pairs) => env.extend(pairs),
                Err(msg) => report.push(spanned.span(), msg),
            }
        }
        env.extend(app.env.iter().map(|(k, v)| (k.clone(), v.0.clone())));
        if let Some(profile) = env_name.and_then(|n| profiles.get(n)) {
            profile_found = true;
            env.extend(profile.iter().map(|(k, v)| (k.clone(), v.0.clone())));
        }
        let cwd = app.cwd.as_ref().map_or_else(|| base.to_path_buf(), |c| normalize(&base.join(c)));
        let triggers = super::triggers::resolve(report, &app, &cwd);
        apps.push(AppSpec {
            name,
            script: app.script.get_ref().clone(),
            args: app.args.clone(),
            interpreter: match app.interpreter.as_deref() {
                Some("none") => None,
                Some(i) => Some(i.to_owned()),
                None => super::pm2::interpreter_for(app.script.get_ref()).map(str::to_owned),
            },
            interpreter_args: app.interpreter_args.clone(),
            interpreter_by_extension: app.interpreter.is_none(),
            cwd,
            instances,
            port: app.port.as_ref().map(|p| *p.get_ref()),
            listen: app
                .port
                .as_ref()
                .filter(|_| *app.socket.get_ref() == SocketOwner::Supervisor)
                .map(|_| app.listen_host),
            ready: app.ready.get_ref().clone(),
            reload_parallel: *app.reload_parallel.get_ref(),
            env,
            env_file,
            max_memory_restart: app.max_memory_restart.as_ref().map(|m| *m.get_ref()),
            kill_signal: app.kill_signal,
            restart: RestartPolicy {
                autorestart: app.autorestart,
                stop_exit_codes: app.stop_exit_codes.get_ref().clone(),
                min_uptime: app.min_uptime.get_ref().0,
                max_restarts: app.max_restarts,
                restart_delay: app.restart_delay.get_ref().0,
                restart_delay_max: app.restart_delay_max.get_ref().0,
                crash_loop_max_retries: app.crash_loop_max_retries,
                kill_timeout: app.kill_timeout.get_ref().0,
                wait_ready: app.ready.get_ref().waits(),
                can_overlap: app.port.is_none() || *app.socket.get_ref() == SocketOwner::Supervisor,
                listen_timeout: app.listen_timeout.get_ref().0,
            },
            autostart: app.autostart,
            memory_samples: app.memory_samples.max(1),
            logs: log_spec(report, &app, base, &log_dir, instances),
            triggers,
        });
    }
    // Two log files on one path would rotate each other's lines away.
    let mut seen_logs: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (app, span) in apps.iter().zip(&app_spans) {
        for f in &app.logs.files {
            for path in [&f.out, &f.err, &f.combined] {
                if path == Path::new("/dev/null") {
                    continue;
                }
                if let Some(owner) = seen_logs.get(path) {
                    let msg = format!("log file {} of `{}` is also used by `{owner}`", path.display(), app.name);
                    report.push(span.clone(), msg);
                } else {
                    seen_logs.insert(path.clone(), app.name.clone());
                }
            }
        }
    }
    if let Some(n) = env_name
        && !profile_found
        && app_count > 0
    {
        // A typo in `--env` must not silently run the development environment.
        report.push(0..0, format!("--env {n}: no app has an `[apps.env_{n}]` table"));
    }
    // With an app already refused, checks across apps would only add false follow-on errors.
    let nginx = file
        .nginx
        .filter(|_| !file.apps_incomplete)
        .and_then(|n| super::nginx::resolve(report, n, &apps, base, &daemon.home));
    let error_tracking = file.error_tracking.is_some().then(|| daemon.error_tracking.clone());
    Some(Config { file: path.to_path_buf(), daemon, apps, nginx, error_tracking })
}
