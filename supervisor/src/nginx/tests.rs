//! Golden files of the built-in template with 1, 4 and 0 ready instances, and a
//! real `nginx -t` of each when nginx is installed (`.ci/test` installs it).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn spec() -> NginxSpec {
    NginxSpec {
        app: "layer4-chat".into(),
        template: None,
        output: PathBuf::from("/tmp/unused.conf"),
        server_name: "chat.example.com".into(),
        listen: "80".into(),
        listen_tls: None,
        ssl_certificate: None,
        ssl_certificate_key: None,
        access_log: "/var/log/nginx/access.log".into(),
        upstream_hosts: vec![],
        max_fails: 3,
        fail_timeout: Duration::from_secs(10),
        proxy_read_timeout: Duration::from_secs(86_400),
        proxy_send_timeout: Duration::from_secs(86_400),
        proxy_connect_timeout: Duration::from_secs(5),
        binary: "nginx".into(),
        reload_command: vec!["nginx".into(), "-s".into(), "reload".into()],
        auto_reload: false,
        hosts: vec![],
        interval: Duration::from_secs(10),
        stale_after: Duration::from_secs(300),
        host_timeout: Duration::from_secs(3),
    }
}

fn instance(app: &str, index: u32, state: State) -> InstanceStatus {
    let mut row = InstanceStatus::example(app, index, Some(100 + index), state, None);
    row.port = Some(3001 + index as u16);
    row
}

/// Compare with `golden/<name>`; `L4_BLESS=1` rewrites the file instead.
fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/golden").join(name);
    if std::env::var_os("L4_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{} differs (L4_BLESS=1 to accept)", path.display());
}

/// The ready servers of `instances` on this host.
fn local(s: &NginxSpec, instances: &[InstanceStatus]) -> Vec<Server> {
    ready_servers(s, instances, "127.0.0.1", "")
}

/// `nginx -t` accepts the render for `instances`, when nginx is installed.
fn accepted(instances: &[InstanceStatus]) {
    if Command::new("nginx").arg("-v").output().is_ok() {
        check(&spec(), &local(&spec(), instances)).unwrap();
    }
}

#[test]
fn one_ready_instance() {
    let instances = [instance("layer4-chat", 0, State::Online)];
    let got = render(&spec(), &local(&spec(), &instances)).unwrap();
    golden("nginx-1.conf", &got);
    accepted(&instances);
}

#[test]
fn four_instances_only_ready_ones_and_only_this_app() {
    let mut table: Vec<_> = (0..4).map(|i| instance("layer4-chat", i, State::Online)).collect();
    table.push(instance("layer4-chat", 4, State::Starting));
    table.push(instance("other", 0, State::Online));
    let mut s = spec();
    s.upstream_hosts = vec!["10.0.0.2:3001".into()];
    s.ssl_certificate = Some("/etc/ssl/chat.pem".into());
    s.ssl_certificate_key = Some("/etc/ssl/chat.key".into());
    s.listen = "443 ssl".into();
    let got = render(&s, &local(&s, &table)).unwrap();
    golden("nginx-4.conf", &got);
    assert_eq!(got.matches("server 127.0.0.1:").count(), 4, "{got}");
}

/// With `listen_tls`: the TLS server on it with the modern protocols and ciphers, and
/// the plain listen only redirecting there; `nginx -t` loads a real certificate.
#[test]
fn a_tls_server_with_modern_settings_and_plain_http_redirecting_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("chat.pem"), dir.path().join("chat.key"));
    let mut s = spec();
    s.listen = "127.0.0.1:8080".into();
    s.listen_tls = Some("127.0.0.1:8443".into());
    s.ssl_certificate = Some("/etc/ssl/chat.pem".into());
    s.ssl_certificate_key = Some("/etc/ssl/chat.key".into());
    let instances = [instance("layer4-chat", 0, State::Online)];
    let got = render(&s, &local(&s, &instances)).unwrap();
    golden("nginx-tls.conf", &got);
    assert!(got.contains("listen 127.0.0.1:8443 ssl;") && got.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{got}");
    assert!(got.contains("return 308 https://$host:8443$request_uri;"), "{got}");
    // Port 443 needs no port in the redirect; "off" leaves the TLS server alone.
    s.listen_tls = Some("443".into());
    assert!(render(&s, &local(&s, &instances)).unwrap().contains("return 308 https://$host$request_uri;"));
    s.listen = "off".into();
    let alone = render(&s, &local(&s, &instances)).unwrap();
    assert!(!alone.contains("return 308") && alone.matches("server {").count() == 1, "{alone}");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if Command::new("nginx").arg("-v").output().is_ok() && made.is_ok_and(|o| o.status.success()) {
        s.listen = "127.0.0.1:8080".into();
        s.listen_tls = Some("127.0.0.1:8443".into());
        s.ssl_certificate = Some(cert);
        s.ssl_certificate_key = Some(key);
        check(&s, &local(&s, &instances)).unwrap();
    }
}

#[test]
fn no_ready_instance_still_renders_a_valid_upstream() {
    let instances = [instance("layer4-chat", 0, State::CrashLoop)];
    let got = render(&spec(), &local(&spec(), &instances)).unwrap();
    golden("nginx-0.conf", &got);
    assert!(got.contains("server 127.0.0.1:65535 down;"), "{got}");
    accepted(&instances);
}

#[test]
fn template_errors_name_the_file_and_line_and_unknown_variables_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.j2");
    std::fs::write(&path, "upstream x {\n  server {{ nope }};\n}\n").unwrap();
    let mut s = spec();
    s.template = Some(path.clone());
    let err = render(&s, &[]).unwrap_err().to_string();
    assert!(err.starts_with(&format!("template {}: line 2:", path.display())), "{err}");
    assert!(err.contains("undefined"), "{err}");
}

#[test]
fn a_config_nginx_rejects_is_not_installed() {
    if Command::new("nginx").arg("-v").output().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.output = dir.path().join("live.conf");
    std::fs::write(&s.output, "# the live one\n").unwrap();
    s.template = Some(dir.path().join("broken.j2"));
    std::fs::write(dir.path().join("broken.j2"), "upstream broken {\n").unwrap();
    let err = check(&s, &[]).unwrap_err();
    assert!(matches!(err, NginxError::Check(_)), "{err}");
    assert!(err.to_string().contains("unexpected end of file"), "{err}");
    assert_eq!(std::fs::read_to_string(&s.output).unwrap(), "# the live one\n");
}

#[test]
fn the_check_opens_the_access_log_in_its_prefix_but_wants_the_real_folder() {
    if Command::new("nginx").arg("-v").output().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A copied template that spells the directive its own way (a tab, no format).
    let template = dir.path().join("copy.j2");
    std::fs::write(&template, "server {\n    listen 127.0.0.1:9;\n    access_log\t{{ access_log }};\n}\n").unwrap();
    let mut s = spec();
    s.template = Some(template);
    s.access_log = dir.path().join("logs/access.log").display().to_string();
    match check(&s, &[]) {
        Err(NginxError::AccessLog(folder)) => assert_eq!(folder, dir.path().join("logs")),
        other => panic!("a missing folder: {other:?}"),
    }
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    check(&s, &[]).unwrap();
    assert!(!dir.path().join("logs/access.log").exists(), "nginx -t opened the real access log");
}

fn remote(host: &str, port: u16, instance: u32, backup: bool) -> Server {
    Server { host: host.into(), port, instance, origin: format!("http://{host}:9615"), backup }
}

/// Several hosts: this one's instances, another host's live ones, and a third's last
/// known ones as `backup`; nginx takes `backup` beside `least_conn`.
#[test]
fn other_hosts_join_the_upstream_and_the_last_known_ones_are_backup() {
    let mut servers = local(&spec(), &[instance("layer4-chat", 0, State::Online)]);
    servers.push(remote("10.0.0.2", 3001, 0, false));
    servers.push(remote("10.0.0.2", 3002, 1, false));
    servers.push(remote("[fd00::3]", 3001, 0, true));
    let got = render(&spec(), &servers).unwrap();
    golden("nginx-hosts.conf", &got);
    assert!(got.contains("3 ready instance(s) on 3 hosts, 1 last known kept as backup"), "{got}");
    assert!(got.contains("server [fd00::3]:3001 max_fails=3 fail_timeout=10s backup;"), "{got}");
    assert!(!got.contains("65535"), "{got}");
    if Command::new("nginx").arg("-v").output().is_ok() {
        check(&spec(), &servers).unwrap();
    }
}

/// Only last known servers: nginx wants one that is not `backup`, so the placeholder
/// stays (down), and the backups answer behind it.
#[test]
fn only_backups_keep_the_down_placeholder_so_nginx_accepts_it() {
    let servers = [remote("10.0.0.2", 3001, 0, true)];
    let got = render(&spec(), &servers).unwrap();
    assert!(
        got.contains("server 127.0.0.1:65535 down;  # no instance is ready: requests get 502 unless a backup answers"),
        "{got}"
    );
    assert!(got.contains("server 10.0.0.2:3001 max_fails=3 fail_timeout=10s backup;"), "{got}");
    if Command::new("nginx").arg("-v").output().is_ok() {
        check(&spec(), &servers).unwrap();
    }
}

/// A host's table: at most `MAX_SERVERS_PER_HOST` ready servers, no port twice.
#[test]
fn a_host_gives_at_most_max_servers_and_no_port_twice() {
    use crate::config::HostSpec;
    use crate::wire::types::StatusReport;
    let table = |n: u32, same_port: bool| {
        StatusReport::of(
            (0..n)
                .map(|i| {
                    let mut row = instance("layer4-chat", i, State::Online);
                    row.port = Some(if same_port { 3000 } else { 3000 + i as u16 });
                    row
                })
                .collect(),
        )
    };
    let host =
        HostSpec { api: "http://10.0.0.2:9615".into(), token_env: None, address: "10.0.0.2".into(), ca_file: None };
    let at = hosts::MAX_SERVERS_PER_HOST as u32;
    assert_eq!(hosts::checked(&spec(), &host, &table(at, false)).unwrap().len(), hosts::MAX_SERVERS_PER_HOST);
    let past = hosts::checked(&spec(), &host, &table(at + 1, false)).unwrap_err();
    assert!(past.contains("1025 ready instances, more than 1024"), "{past}");
    assert!(hosts::checked(&spec(), &host, &table(2, true)).unwrap_err().contains("inconsistent"));
}
