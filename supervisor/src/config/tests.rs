//! Unit tests of config parsing: each rule of the README's config reference.

use std::path::Path;

use super::*;

fn parse_str(src: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/l4/layer4.toml"), src, None)
}

fn diagnostics(src: &str) -> Vec<Diagnostic> {
    match parse_str(src) {
        Err(ConfigError::Invalid(d)) => d.0,
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

#[test]
fn minimal_app_gets_documented_defaults() {
    let c = parse_str("[[apps]]\nname = \"web\"\nscript = \"srv\"\n").unwrap();
    let app = &c.apps[0];
    assert_eq!(app.instances, 1);
    assert_eq!(app.restart.kill_timeout, Duration::from_secs(5));
    assert_eq!(app.restart.restart_delay, Duration::from_millis(100));
    assert_eq!(app.restart.restart_delay_max, Duration::from_secs(30));
    assert_eq!(app.restart.max_restarts, 16);
    assert_eq!(app.restart.min_uptime, Duration::from_secs(1));
    assert!(app.restart.stop_exit_codes.is_empty(), "PM2's default: exit 0 restarts too");
    assert_eq!(app.restart.autorestart, Autorestart::OnFailure);
    assert_eq!(app.cwd, Path::new("/etc/l4"));
    assert!(app.autostart);
}

#[test]
fn paths_are_relative_to_the_config_file() {
    let c = parse_str(
        "[daemon]\nhome = \"../run\"\nlog_dir = \"../logs\"\n[[apps]]\nname = \"a\"\nscript = \"x\"\ncwd = \"..\"\n",
    )
    .unwrap();
    assert_eq!(c.daemon.home, Path::new("/etc/run"));
    assert_eq!(c.daemon.log_dir, Path::new("/etc/logs"));
    assert_eq!(c.apps[0].cwd, Path::new("/etc"));
}

#[test]
fn every_error_is_reported_at_once_with_line_and_column() {
    let src = "\
[[apps]]
name = \"web\"
script = \"srv\"
max_memory_restart = \"1GB?\"
kill_timeout = \"5 parsecs\"
colour = \"blue\"
port = 3000
instances = 2

[[apps]]
name = \"web\"
script = \"srv\"
port = 3001
";
    let d = diagnostics(src);
    let text: Vec<String> = d.iter().map(ToString::to_string).collect();
    let joined = text.join("\n");
    assert!(joined.contains("layer4.toml:4:22: invalid size \"1GB?\""), "{joined}");
    assert!(joined.contains("layer4.toml:5:16: invalid duration \"5 parsecs\""), "{joined}");
    assert!(joined.contains("layer4.toml:6:1: unknown field `colour`"), "{joined}");
    // The second app is still checked although the first one was broken.
    assert!(
        joined.contains("layer4.toml:11:8: duplicate app name `web` (first defined on line 2)") || d.len() >= 3,
        "{joined}"
    );
}

#[test]
fn duplicate_names_and_colliding_ports_are_reported() {
    let src = "\
[[apps]]
name = \"web\"
script = \"srv\"
port = 3000
instances = 2

[[apps]]
name = \"web\"
script = \"srv\"
port = 3001
";
    let joined = diagnostics(src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(joined.contains(":8:8: duplicate app name `web` (first defined on line 2)"), "{joined}");
    assert!(joined.contains(":10:8: ports 3001-3001 of `web` collide with ports 3000-3001 of `web`"), "{joined}");
}

#[test]
fn syntax_errors_point_at_the_problem() {
    let d = diagnostics("[[apps]]\nname = \"web\nscript = 1\n");
    assert_eq!(d[0].line, 2, "{d:?}");
}

#[test]
fn unknown_sections_and_missing_fields_are_named() {
    let joined = diagnostics("[deamon]\nhome = \"x\"\n[[apps]]\nname = \"a\"\n")
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(joined.contains(":1:2: unknown section `deamon`"), "{joined}");
    assert!(joined.contains("missing field `script`"), "{joined}");
}

#[test]
fn env_profiles_are_chosen_with_env_name() {
    let src = "[[apps]]\nname = \"a\"\nscript = \"x\"\n[apps.env]\nAPP_ENV = \"development\"\nN = 1\n[apps.env_production]\nAPP_ENV = \"production\"\n";
    let dev = parse(Path::new("/x/l.toml"), src, None).unwrap();
    assert_eq!(dev.apps[0].env["APP_ENV"], "development");
    assert_eq!(dev.apps[0].env["N"], "1");
    let prod = parse(Path::new("/x/l.toml"), src, Some("production")).unwrap();
    assert_eq!(prod.apps[0].env["APP_ENV"], "production");
}

#[test]
fn env_file_is_read_and_overridden_by_env_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "A=from_file\nB=from_file\n").unwrap();
    let path = dir.path().join("l.toml");
    std::fs::write(
        &path,
        "[[apps]]\nname = \"a\"\nscript = \"x\"\nenv_file = \".env\"\n[apps.env]\nB = \"from_toml\"\n",
    )
    .unwrap();
    let c = load(&path, None).unwrap();
    assert_eq!(c.apps[0].env["A"], "from_file");
    assert_eq!(c.apps[0].env["B"], "from_toml");
}

#[test]
fn missing_env_file_is_an_error_at_its_line() {
    let d = diagnostics("[[apps]]\nname = \"a\"\nscript = \"x\"\nenv_file = \"nope.env\"\n");
    assert_eq!((d[0].line, d[0].column), (4, 12));
    assert!(d[0].message.contains("nope.env not found"), "{d:?}");
}

#[test]
fn autorestart_accepts_pm2_booleans_and_words() {
    let c = parse_str("[[apps]]\nname = \"a\"\nscript = \"x\"\nautorestart = false\n").unwrap();
    assert_eq!(c.apps[0].restart.autorestart, Autorestart::Never);
    let c = parse_str("[[apps]]\nname = \"a\"\nscript = \"x\"\nautorestart = \"always\"\n").unwrap();
    assert_eq!(c.apps[0].restart.autorestart, Autorestart::Always);
}

#[test]
fn instances_max_means_one_per_cpu() {
    let c = parse_str("[[apps]]\nname = \"a\"\nscript = \"x\"\ninstances = \"max\"\n").unwrap();
    assert!(c.apps[0].instances >= 1);
    assert!(!diagnostics("[[apps]]\nname = \"a\"\nscript = \"x\"\ninstances = 0\n").is_empty());
}

#[test]
fn shipped_config_files_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // env files referenced by shipped configs may be examples only; they must still parse.
            if let Err(e) = load(&path, None) {
                panic!("{} does not load: {e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no config files found in {}", dir.display());
}

#[test]
fn shipped_env_example_parses_as_dotenv() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/.env.example");
    let pairs: Vec<(String, String)> = dotenvy::from_path_iter(&path).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(pairs.iter().any(|(k, _)| k == "JWT_SECRET"), "{pairs:?}");
}

#[test]
fn dot_and_dot_dot_are_not_app_names() {
    for name in [".", ".."] {
        let d = diagnostics(&format!("[[apps]]\nname = \"{name}\"\nscript = \"x\"\n"));
        let joined = d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(joined.contains(&format!(":2:8: invalid app name \"{name}\"")), "{joined}");
    }
    // Dots inside a name stay allowed.
    assert!(parse_str("[[apps]]\nname = \"api.v2\"\nscript = \"x\"\n").is_ok());
    assert!(parse_str("[[apps]]\nname = \"...\"\nscript = \"x\"\n").is_ok());
}

#[test]
fn values_out_of_range_are_reported_at_the_value() {
    let src = "\
[[apps]]
name = \"a\"
script = \"x\"
min_uptime = \"0s\"
restart_delay = \"5s\"
restart_delay_max = \"1s\"
kill_timeout = \"400000000000y\"
max_memory_restart = 0
stop_exit_codes = [0, 300]
[apps.env_]
A = \"1\"
";
    let joined = diagnostics(src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    for expected in [
        ":4:14: `min_uptime` of `a` must be greater than zero",
        ":5:17: `restart_delay` of `a` is larger than `restart_delay_max`",
        ":7:16: `kill_timeout` of `a` must be at most 1h",
        ":8:22: `max_memory_restart` of `a` must be greater than zero",
        ":9:19: exit code 300 in `stop_exit_codes` is outside 0..=255",
        ":10:7: an env profile needs a name",
    ] {
        assert!(joined.contains(expected), "missing {expected:?} in\n{joined}");
    }
    let big = diagnostics("[[apps]]\nname = \"a\"\nscript = \"x\"\nkill_timeout = \"2h\"\n");
    assert_eq!((big[0].line, big[0].column), (4, 16), "{big:?}");
}

#[test]
fn an_env_profile_that_no_app_has_is_an_error() {
    let src = "[[apps]]\nname = \"a\"\nscript = \"x\"\n[apps.env_production]\nA = \"1\"\n";
    assert!(parse(Path::new("/x/l.toml"), src, Some("production")).is_ok());
    let err = parse(Path::new("/x/l.toml"), src, Some("prodution")).unwrap_err().to_string();
    assert!(err.contains("--env prodution: no app has an `[apps.env_prodution]` table"), "{err}");
}

#[test]
fn log_options_resolve_per_instance_names() {
    let src = "[daemon]\nlog_dir = \"/var/log/l4\"\n[[apps]]\nname = \"web\"\nscript = \"x\"\ninstances = 2\nmerge_logs = false\nerror_file = \"errs/web.log\"\n[apps.log_rotate]\nmax_size = \"1M\"\ninterval = \"daily\"\ncompress = true\n";
    let c = parse(Path::new("/etc/l4/l.toml"), src, None).unwrap();
    let logs = &c.apps[0].logs;
    assert_eq!(logs.files.len(), 2);
    assert_eq!(logs.files[1].out, Path::new("/var/log/l4/web-1-out.log"));
    assert_eq!(logs.files[1].err, Path::new("/etc/l4/errs/web-1.log"));
    assert_eq!(logs.files[0].combined, Path::new("/var/log/l4/web-0.log"));
    assert_eq!((logs.max_size, logs.compress, logs.interval), (1 << 20, true, RotateInterval::Daily));
    let bad = diagnostics(
        "[[apps]]\nname = \"a\"\nscript = \"x\"\nlog_date_format = \"%Q\"\n[apps.log_rotate]\ninterval = \"weekly\"\n",
    );
    let joined = bad.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(joined.contains(":4:19: invalid log_date_format"), "{joined}");
    assert!(joined.contains(":6:12: unknown variant `weekly`"), "{joined}");
}

#[test]
fn two_log_files_on_one_path_are_rejected() {
    let src = "[[apps]]\nname = \"web\"\nscript = \"x\"\nout_file = \"app.log\"\nerror_file = \"app.log\"\n";
    let joined = diagnostics(src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(joined.contains("log file /etc/l4/app.log of `web` is also used by `web`"), "{joined}");
    let across = "[daemon]\nlog_dir = \"/l\"\n[[apps]]\nname = \"web\"\nscript = \"x\"\ninstances = 2\nmerge_logs = false\n[[apps]]\nname = \"web-1\"\nscript = \"x\"\n";
    let joined = diagnostics(across).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(joined.contains("log file /l/web-1.log of `web-1` is also used by `web`"), "{joined}");
    assert!(
        parse_str("[[apps]]\nname = \"a\"\nscript = \"x\"\nout_file = \"/dev/null\"\nerror_file = \"/dev/null\"\n")
            .is_ok()
    );
}

#[test]
fn a_bad_env_file_line_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "GOOD=1\nSECRET=\"hunter2-unterminated\n").unwrap();
    let path = dir.path().join("l.toml");
    std::fs::write(&path, "[[apps]]\nname = \"a\"\nscript = \"x\"\nenv_file = \".env\"\n").unwrap();
    let err = load(&path, None).unwrap_err().to_string();
    assert!(err.contains("cannot parse"), "{err}");
    assert!(!err.contains("hunter2"), "the secret leaked: {err}");
}

#[test]
fn error_tracking_values_are_checked_with_the_file_s_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a certificate").unwrap();
    let src = "\
[error_tracking]
sentry_dsn = \"https://key@sentry.example.com/notanumber\"
webhook_url = \"https:///hook?token=secret\"
ca_file = \"notes.txt\"
timeout = \"500us\"
episode_quiet = \"10ms\"
[[apps]]
name = \"a\"
script = \"x\"
";
    let file = dir.path().join("l4.toml");
    let joined = match parse(&file, src, None) {
        Err(ConfigError::Invalid(d)) => d.to_string(),
        other => panic!("expected diagnostics, got {other:?}"),
    };
    for expected in [
        "`[error_tracking] sentry_dsn`: invalid Sentry DSN",
        "`[error_tracking] webhook_url` must be an http:// or https:// URL with a host",
        &format!("`[error_tracking] ca_file`: {} holds no PEM certificate", dir.path().join("notes.txt").display()),
        "`[error_tracking] timeout` must be between 1ms and 60s",
        "`[error_tracking] episode_quiet` must be at least 1s",
    ] {
        assert!(joined.contains(expected), "missing {expected:?} in\n{joined}");
    }
    assert!(!joined.contains("secret"), "a URL's token is never echoed: {joined}");
    let missing = parse(&file, "[error_tracking]\nca_file = \"nope.pem\"\n", None).unwrap_err().to_string();
    assert!(missing.contains("cannot read") && missing.contains("nope.pem"), "{missing}");
}

#[test]
fn readiness_that_cannot_name_the_run_is_refused_with_a_shared_socket() {
    for ready in ["tcp", "http:/health"] {
        let src = format!("[[apps]]\nname = \"web\"\nscript = \"x\"\nport = 3000\nready = \"{ready}\"\n");
        let joined = diagnostics(&src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(joined.contains(":5:9:") && joined.contains("while l4ctl holds the socket"), "{ready}: {joined}");
        assert!(joined.contains("use \"notify\""), "{joined}");
    }
    for ok in ["ready = \"notify\"", "ready = \"http:/health\"\nsocket = \"app\"", "ready = \"tcp\"\nsocket = \"app\""]
    {
        let src = format!("[[apps]]\nname = \"web\"\nscript = \"x\"\nport = 3000\n{ok}\n");
        assert!(parse_str(&src).is_ok(), "{ok}");
    }
}

#[test]
fn cgroups_default_to_on_and_can_be_turned_off() {
    let app = "[[apps]]\nname = \"a\"\nscript = \"x\"\n";
    assert!(parse_str(app).unwrap().daemon.cgroups);
    assert!(!parse_str(&format!("[daemon]\ncgroups = false\n{app}")).unwrap().daemon.cgroups);
    let err = parse_str(&format!("[daemon]\ncgroups = \"no\"\n{app}")).unwrap_err().to_string();
    assert!(err.contains(":2:"), "{err}");
}

#[test]
fn api_max_connections_is_checked_at_its_bounds() {
    for ok in [1, 256, 65536] {
        let src = format!("[daemon]\napi_max_connections = {ok}\n[[apps]]\nname = \"a\"\nscript = \"x\"\n");
        assert_eq!(parse_str(&src).unwrap().daemon.api_max_connections, ok);
    }
    for bad in [0, 65537] {
        let src = format!("[daemon]\napi_max_connections = {bad}\n[[apps]]\nname = \"a\"\nscript = \"x\"\n");
        let joined = diagnostics(&src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(joined.contains("`[daemon] api_max_connections` must be between 1 and 65536"), "{bad}: {joined}");
    }
}

#[test]
fn the_nginx_access_log_is_an_absolute_path_or_off() {
    let app = "[[apps]]\nname = \"web\"\nscript = \"srv\"\nport = 3000\n";
    let c = parse_str(&format!("[nginx]\n{app}")).unwrap();
    assert_eq!(c.nginx.unwrap().access_log, "/var/log/nginx/access.log");
    let c = parse_str(&format!("[nginx]\naccess_log = \"off\"\n{app}")).unwrap();
    assert_eq!(c.nginx.unwrap().access_log, "off");
    for bad in ["logs/access.log", "/var/log/a b.log", "/x;y"] {
        let d = diagnostics(&format!("[nginx]\naccess_log = {bad:?}\n{app}"));
        assert!(d.iter().any(|d| d.message.contains("`access_log`") && d.line == 2), "{bad}: {d:?}");
    }
}

#[test]
fn nginx_hosts_are_checked_at_their_line_and_column() {
    let app = "[[apps]]\nname = \"web\"\nscript = \"srv\"\nport = 3000\n";
    let good = "hosts = [\n  { api = \"http://10.0.0.2:9615/\", token_env = \"L4_TOKEN\" },\n  { api = \"https://b.example:9443\", address = \"fd00::3\", ca_file = \"ca.pem\" },\n]\n";
    let c = parse_str(&format!("[nginx]\n{good}stale_after = \"1m\"\n{app}")).unwrap().nginx.unwrap();
    assert_eq!((c.hosts.len(), c.stale_after, c.interval), (2, Duration::from_secs(60), Duration::from_secs(10)));
    assert_eq!((c.hosts[0].api.as_str(), c.hosts[0].address.as_str()), ("http://10.0.0.2:9615", "10.0.0.2"));
    assert_eq!((c.hosts[1].address.as_str(), c.hosts[1].api.as_str()), ("[fd00::3]", "https://b.example:9443"));
    assert!(c.hosts[1].ca_file.as_ref().is_some_and(|p| p.is_absolute()));
    let bad = "hosts = [\n  { api = \"http://b.example:9615\" },\n  { api = \"http://10.0.0.2:1\", token_env = \"A-B\" },\n  { api = \"http://10.0.0.2:1\", address = \"x;y\" },\n]\ninterval = \"10ms\"\nhost_timeout = \"2m\"\n";
    let d = diagnostics(&format!("[nginx]\n{bad}{app}"));
    let at = |text: &str| d.iter().find(|d| d.message.contains(text)).map(|d| (d.line, d.column));
    assert_eq!(at("over http the host must be an IP address"), Some((3, 11)), "{d:?}");
    assert_eq!(at("`token_env` \"A-B\" is not a variable name"), Some((4, 44)), "{d:?}");
    assert_eq!(at("lists http://10.0.0.2:1 twice"), Some((5, 11)), "{d:?}");
    assert!(at("`address` \"x;y\"").is_some(), "{d:?}");
    assert_eq!(at("`interval` must be at least 1s").map(|a| a.0), Some(7), "{d:?}");
    assert_eq!(at("`host_timeout` must be between").map(|a| a.0), Some(8), "{d:?}");
    let d = diagnostics(&format!("[nginx]\nhosts = [{{ api = \"http://10.0.0.4:1\", token = \"t\" }}]\n{app}"));
    assert!(d.iter().any(|d| d.message.contains("unknown field `token`") && d.line == 2), "{d:?}");
}

#[test]
fn nginx_hosts_are_refused_past_max_hosts() {
    let app = "[[apps]]\nname = \"web\"\nscript = \"srv\"\nport = 3000\n";
    let hosts = |n: usize| {
        let list: Vec<String> =
            (0..n).map(|i| format!("{{ api = \"http://10.0.{}.{}:9615\" }}", i / 200, i % 200 + 1)).collect();
        format!("[nginx]\nhosts = [{}]\n{app}", list.join(", "))
    };
    assert_eq!(parse_str(&hosts(super::MAX_HOSTS)).unwrap().nginx.unwrap().hosts.len(), super::MAX_HOSTS);
    let d = diagnostics(&hosts(super::MAX_HOSTS + 1));
    assert!(
        d.iter().any(|d| d.message.contains(&format!("lists {} hosts; at most 64", super::MAX_HOSTS + 1))),
        "{d:?}"
    );
}

#[test]
fn listen_tls_needs_the_certificate_pair_and_a_port_and_off_needs_listen_tls() {
    let app = "[[apps]]\nname = \"web\"\nscript = \"srv\"\nport = 3000\n";
    let pair = "ssl_certificate = \"c.pem\"\nssl_certificate_key = \"c.key\"\n";
    let c = parse_str(&format!("[nginx]\nlisten_tls = \"443\"\n{pair}{app}")).unwrap();
    assert_eq!(c.nginx.unwrap().listen_tls.as_deref(), Some("443"));
    let d = diagnostics(&format!("[nginx]\nlisten_tls = \"443\"\n{app}"));
    assert!(d.iter().any(|d| d.message.contains("`listen_tls` needs `ssl_certificate`") && d.line == 2), "{d:?}");
    let d = diagnostics(&format!("[nginx]\nlisten_tls = \"127.0.0.1:https\"\n{pair}{app}"));
    assert!(d.iter().any(|d| d.message.contains("is not PORT or ADDRESS:PORT")), "{d:?}");
    let d = diagnostics(&format!("[nginx]\nlisten = \"443 ssl\"\nlisten_tls = \"8443\"\n{pair}{app}"));
    assert!(d.iter().any(|d| d.message.contains("another port, without `ssl`")), "{d:?}");
    let d = diagnostics(&format!("[nginx]\nlisten = \"off\"\n{app}"));
    assert!(d.iter().any(|d| d.message.contains("leaves no server")), "{d:?}");
    assert_eq!(super::tls_port("[::]:8443 http2"), Some(8443));
}

#[test]
fn scale_is_refused_past_the_instance_limit_the_port_range_and_another_app_s_ports() {
    let c = parse_str(
        "[[apps]]\nname = \"web\"\nscript = \"x\"\nport = 3000\n[[apps]]\nname = \"api\"\nscript = \"x\"\nport = 3010\ninstances = 2\n[[apps]]\nname = \"split\"\nscript = \"x\"\nmerge_logs = false\n[[apps]]\nname = \"top\"\nscript = \"x\"\nport = 65530\n",
    )
    .unwrap();
    let app = |n: &str| c.apps.iter().find(|a| a.name == n).unwrap();
    let check = |n: &str, count| scale::check_scale(app(n), count, &c.apps);
    assert_eq!(check("web", 10), Ok(()), "3000-3009 stop short of api's 3010");
    assert_eq!(check("web", 11), Err("ports 3000-3010 would collide with `api`".into()));
    assert_eq!(check("web", 0), Err("instances must be between 1 and 1024, got 0".into()));
    assert_eq!(check("web", 1025), Err("instances must be between 1 and 1024, got 1025".into()));
    assert_eq!(check("api", 1024), Ok(()), "its own ports do not count");
    assert_eq!(check("top", 7), Err("ports 65530-65536 are outside 1..65535".into()));
    assert_eq!(check("top", 6), Ok(()));
    assert!(check("split", 2).unwrap_err().contains("merge_logs = false"));
}

#[test]
fn pm2_habits_integer_milliseconds_and_a_moment_date_format_get_their_meaning_or_a_sentence() {
    // PM2 writes durations as integer milliseconds; strings keep their units.
    let c =
        parse_str("[[apps]]\nname = \"web\"\nscript = \"srv\"\nkill_timeout = 3000\nrestart_delay = \"2s\"\n").unwrap();
    assert_eq!(c.apps[0].restart.kill_timeout, Duration::from_millis(3000));
    assert_eq!(c.apps[0].restart.restart_delay, Duration::from_secs(2));
    let joined = |src: &str| diagnostics(src).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let negative = joined("[[apps]]\nname = \"web\"\nscript = \"srv\"\nkill_timeout = -5\n");
    assert!(negative.contains(":4:16: a duration cannot be negative (-5)"), "{negative}");
    let float = joined("[[apps]]\nname = \"web\"\nscript = \"srv\"\nmin_uptime = 1.5\n");
    assert!(float.contains("1.5 is not a duration: write whole milliseconds"), "{float}");
    // PM2's moment.js log_date_format is refused with its strftime equivalent.
    let moment = joined("[[apps]]\nname = \"web\"\nscript = \"srv\"\nlog_date_format = \"YYYY-MM-DD HH:mm:ss Z\"\n");
    assert!(
        moment.contains(":4:19: log_date_format \"YYYY-MM-DD HH:mm:ss Z\" is PM2's moment.js format; layer4 takes strftime: \"%Y-%m-%d %H:%M:%S %:z\""),
        "{moment}"
    );
}

#[test]
fn a_typo_gets_did_you_mean_and_no_follow_on_error_from_the_refused_app() {
    let src = "[nginx]\nserver_name = \"_\"\nlisten = \"80\"\noutput = \"x.conf\"\n\n[[apps]]\nname = \"web\"\nscript = \"srv\"\ninstnaces = 2\nport = 3000\n";
    let err = parse_str(src).unwrap_err().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with(":9:1: unknown key `instnaces`: did you mean `instances`?"), "{err}");
}

#[test]
fn the_interpreter_comes_from_the_extension_as_pm2_unless_given() {
    let c = parse_str(
        "[[apps]]\nname = \"js\"\nscript = \"app.js\"\nnode_args = [\"--enable-source-maps\"]\n\n\
         [[apps]]\nname = \"py\"\nscript = \"job.py\"\ninterpreter = \"/opt/py/bin/python\"\n\n\
         [[apps]]\nname = \"raw\"\nscript = \"tool.sh\"\ninterpreter = \"none\"\n\n\
         [[apps]]\nname = \"bin\"\nscript = \"server\"\n",
    )
    .unwrap();
    let got: Vec<(Option<&str>, &[String])> =
        c.apps.iter().map(|a| (a.interpreter.as_deref(), a.interpreter_args.as_slice())).collect();
    assert_eq!(got[0], (Some("node"), &["--enable-source-maps".to_owned()][..]));
    assert_eq!(got[1].0, Some("/opt/py/bin/python"));
    assert_eq!(got[2].0, None, "interpreter = \"none\" runs the script itself");
    assert_eq!(got[3].0, None, "no extension, no interpreter");
}

#[test]
fn watch_and_cron_restart_resolve_against_cwd_and_their_errors_are_at_their_values() {
    let c = parse_str(
        "[[apps]]\nname = \"a\"\nscript = \"x\"\ncwd = \"srv\"\nwatch = [\"src\", \"../shared/conf.json\"]\nwatch_delay = 250\ncron = \"0 3 * * *\"\n\n[[apps]]\nname = \"b\"\nscript = \"x\"\nwatch = true\n",
    )
    .unwrap();
    let w = c.apps[0].triggers.watch.as_ref().unwrap();
    assert_eq!(w.paths, vec![Path::new("/etc/l4/srv/src"), Path::new("/etc/l4/shared/conf.json")]);
    assert_eq!((w.base.as_path(), w.delay), (Path::new("/etc/l4/srv"), Duration::from_millis(250)));
    assert_eq!(w.ignore, ["node_modules", ".*", "*~"], "PM2's default ignore list, with editor backups");
    assert_eq!(c.apps[0].triggers.cron_restart.as_deref(), Some("0 3 * * *"), "`cron` is PM2's alias");
    let b = c.apps[1].triggers.watch.as_ref().unwrap();
    assert_eq!(
        (b.paths.as_slice(), b.delay),
        ([Path::new("/etc/l4").to_path_buf()].as_slice(), Duration::from_secs(1))
    );
    assert_eq!(parse_str("[[apps]]\nname = \"a\"\nscript = \"x\"\n").unwrap().apps[0].triggers, Triggers::default());

    let d = diagnostics(
        "[[apps]]\nname = \"a\"\nscript = \"x\"\nwatch = []\nignore_watch = [\"src/[\"]\nwatch_delay = \"2h\"\ncron_restart = \"61 * * * *\"\n",
    );
    let at = |line: usize| d.iter().find(|x| x.line == line).map(|x| x.message.clone()).unwrap_or_default();
    assert!(at(4).contains("`watch` of `a` must list 1 to 64 paths"), "{d:?}");
    assert!(at(5).contains("invalid pattern \"src/[\" in `ignore_watch`"), "{d:?}");
    assert!(at(6).contains("`watch_delay` of `a` must be at most 1h"), "{d:?}");
    assert!(at(7).contains("`cron_restart` of `a`: invalid cron expression \"61 * * * *\""), "{d:?}");
    let d = diagnostics("[[apps]]\nname = \"a\"\nscript = \"x\"\nwatch = 3\n");
    assert!(d[0].message.contains("true, false, or a list of folders and files"), "{d:?}");
}

#[test]
fn watch_paths_ignore_patterns_and_watch_delay_are_accepted_at_their_limits_and_refused_past_them() {
    let app = |extra: &str| format!("[[apps]]\nname = \"a\"\nscript = \"x\"\n{extra}\n");
    let list = |n: usize, item: &str| format!("[{}]", vec![format!("{item:?}"); n].join(", "));
    let paths = |n| format!("watch = {}", list(n, "src"));
    assert!(parse_str(&app(&paths(triggers::MAX_WATCH_PATHS))).is_ok());
    let d = diagnostics(&app(&paths(triggers::MAX_WATCH_PATHS + 1)));
    assert!(d[0].message.contains("must list 1 to 64 paths"), "{d:?}");
    let ignore = |n| format!("watch = true\nignore_watch = {}", list(n, "*.log"));
    assert!(parse_str(&app(&ignore(triggers::MAX_IGNORE_PATTERNS))).is_ok());
    let d = diagnostics(&app(&ignore(triggers::MAX_IGNORE_PATTERNS + 1)));
    assert!(d[0].message.contains("has more than 256 patterns"), "{d:?}");
    assert!(parse_str(&app("watch = true\nwatch_delay = \"1h\"")).is_ok());
    let d = diagnostics(&app("watch = true\nwatch_delay = 3600001"));
    assert!(d[0].message.contains("`watch_delay` of `a` must be at most 1h"), "{d:?}");
}
