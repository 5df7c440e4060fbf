//! README "Several hosts": one nginx in front of two daemons' workers (here two
//! homes on 127.0.0.1, each its own "host" with its own TCP API; the test across
//! network namespaces is chat-server's `several_hosts`). The upstream holds both
//! hosts' ready instances; `reload --hosts all` replaces them one host at a time
//! while every request through nginx succeeds; a host whose daemon is gone keeps
//! its last known servers as `backup` until `stale_after`, then is left out; an
//! `https` API behind a TLS proxy is read with the configured CA.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::helper::{Env, fd3_worker, free_ports, get, held_port, text, wait_for};
use crate::nginx::Nginx;

const TOKEN_VAR: &str = "L4_TEST_TOKEN_B";
const TOKEN: &str = "b-token-0123456789";

fn web(port: u16, label: &str) -> String {
    format!(
        "[[apps]]\nname = \"web\"\nscript = \"python3\"\nargs = [\"worker.py\"]\ninstances = 2\nport = {port}\nready = \"notify\"\nenv = {{ HOST_LABEL = \"{label}\" }}\n"
    )
}

fn pids(env: &Env) -> Vec<u32> {
    env.status().instances.iter().filter(|i| i.app == "web").filter_map(|i| i.pid).collect()
}

#[test]
fn one_upstream_for_two_hosts_reload_across_them_and_a_lost_host_is_backup_then_gone() {
    let (nginx_port, nginx_hold) = held_port();
    let (api_b, api_hold) = held_port();
    let (tls_port, tls_hold) = held_port();
    let (port_a, port_b) = (free_ports(2), free_ports(2));
    let worker = fd3_worker("\"%s %s\\n\" % (os.environ[\"HOST_LABEL\"], os.environ[\"L4_INSTANCE\"])");
    let b = Env::with_daemon(
        &format!("api_listen = \"127.0.0.1:{api_b}\"\napi_token_env = \"{TOKEN_VAR}\""),
        &web(port_b, "b"),
    );
    std::fs::write(b.path("worker.py"), &worker).unwrap();
    drop(api_hold);
    let out = b.cmd(&["start", b.config().to_str().unwrap()]).env(TOKEN_VAR, TOKEN).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), b.diagnose());

    let a = Env::new("");
    std::fs::write(a.path("worker.py"), &worker).unwrap();
    std::fs::create_dir_all(a.path("nginx")).unwrap();
    let config = |reload: &str, api: &str, extra: &str| {
        format!(
            "[nginx]\nlisten = \"127.0.0.1:{nginx_port}\"\noutput = \"nginx/layer4.conf\"\naccess_log = \"off\"\nauto_reload = true\ninterval = \"1s\"\nstale_after = \"4s\"\nreload_command = {reload:?}\nhosts = [{{ api = \"{api}\", token_env = \"{TOKEN_VAR}\"{extra} }}]\n\n{}",
            web(port_a, "a")
        )
    };
    let plain = format!("http://127.0.0.1:{api_b}");
    a.write_config(&config("true", &plain, ""));
    a.start();
    // The daemon renders on its own (auto_reload): a's instances and b's.
    let installed = a.path("nginx/layer4.conf");
    wait_for(Duration::from_secs(20), "the daemon's own render of both hosts", || {
        std::fs::read_to_string(&installed).ok().filter(|c| c.matches("server 127.0.0.1:").count() == 4)
    });
    let out = a.l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(4 ready instance(s) of web on 2 host(s))"), "{}", text(&out));
    let conf = std::fs::read_to_string(&installed).unwrap();
    assert_eq!(conf.matches("server 127.0.0.1:").count(), 4, "{conf}");
    assert_eq!(conf.matches(&format!("# {plain} instance")).count(), 2, "{conf}");
    let mode = std::fs::metadata(a.path("run/nginx/hosts.json")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);

    // nginx, with a TLS proxy in front of b's API beside the chat server.
    let (cert, key) = (a.path("api.pem"), a.path("api.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=layer4 test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    std::fs::write(
        a.path("nginx/tls-proxy.conf"),
        format!(
            "server {{\n listen 127.0.0.1:{tls_port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};\n location / {{ proxy_pass http://127.0.0.1:{api_b}; proxy_buffering off; }}\n}}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    drop((nginx_hold, tls_hold));
    let nginx = Nginx::start(&a, &a.path("nginx/*.conf").display().to_string());
    a.write_config(&config(&nginx.reload_command(), &plain, ""));
    wait_for(Duration::from_secs(10), "both hosts behind nginx", || {
        let seen: std::collections::HashSet<String> =
            (0..16).filter_map(|_| get(nginx_port)).filter_map(|b| b.split(' ').next().map(str::to_owned)).collect();
        (seen.len() == 2).then_some(())
    });

    // The API through TLS, with the test's CA; without it the host does not answer.
    let secure = format!("https://127.0.0.1:{tls_port}");
    a.write_config(&config(&nginx.reload_command(), &secure, &format!(", ca_file = {:?}", cert.display().to_string())));
    let out = a.l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = std::fs::read_to_string(&installed).unwrap();
    assert_eq!(shown.matches(&format!("# {secure} instance")).count(), 2, "{shown}\n{}", text(&out));
    a.write_config(&config(&nginx.reload_command(), &secure, ""));
    let out = a.l4(&["nginx", "render", "--stdout"]);
    // It answered a moment ago: its servers stay, as backup (in a dry run, which keeps
    // nothing).
    assert!(text(&out).contains(&format!("{secure} gave no table")), "{}", text(&out));
    assert!(text(&out).contains("UnknownIssuer"), "{}", text(&out));
    assert!(text(&out).contains("its 2 last known server(s), from "), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches(" backup;").count(), 2, "{}", text(&out));
    a.write_config(&config(&nginx.reload_command(), &plain, ""));

    // A rolling reload across both hosts while requests flow through nginx.
    let (before_a, before_b) = (pids(&a), pids(&b));
    let out = a.l4(&["reload", "web", "--hosts", "all"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("{TOKEN_VAR} (the token_env of {plain}) is not set")), "{}", text(&out));
    let out = a.cmd(&["reload", "web", "--hosts", "all"]).env(TOKEN_VAR, "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("refuses its token") && text(&out).contains("nothing was reloaded"), "{}", text(&out));
    assert_eq!((pids(&a), pids(&b)), (before_a.clone(), before_b.clone()), "a refused reload replaces nothing");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let counter = if get(nginx_port).is_some() { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let out = a.cmd(&["reload", "web", "--hosts", "all"]).env(TOKEN_VAR, TOKEN).output().unwrap();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}\n{}", b.diagnose());
    let first = said.find("host 1/2: this host").unwrap_or(usize::MAX);
    let second = said.find(&format!("host 2/2: {plain}")).unwrap_or(0);
    assert!(first < second, "{said}");
    assert!(said.contains("reloaded web on 2 hosts"), "{said}");
    let (after_a, after_b) = (pids(&a), pids(&b));
    assert!(before_a.iter().all(|p| !after_a.contains(p)) && after_a.len() == 2, "{before_a:?} {after_a:?}");
    assert!(before_b.iter().all(|p| !after_b.contains(p)) && after_b.len() == 2, "{before_b:?} {after_b:?}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("requests through nginx during the reload across hosts: {ok} ok, {failed} failed");
    assert!(ok > 0 && failed == 0, "{ok} ok, {failed} failed\n{said}");

    // Host b's daemon and workers are gone: its servers turn backup, then leave.
    // (Once a's daemon has asked b itself, every `interval`, after the reload.)
    let cache = a.path("run/nginx/hosts.json");
    let since = std::fs::metadata(&cache).and_then(|m| m.modified()).ok();
    wait_for(Duration::from_secs(20), "a's daemon to ask b again", || {
        let now = std::fs::metadata(&cache).and_then(|m| m.modified()).ok();
        (now != since && std::fs::read_to_string(&cache).ok()?.contains(&plain)).then_some(())
    });
    // The whole host at once: its watchdog, its daemon (and API), its workers.
    let sigkill = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    for pid in b.watchdogs().into_iter().chain([b.daemon_pid()]).chain(b.tagged_pids()) {
        let _ = sigkill(pid);
    }
    let backup = wait_for(Duration::from_secs(20), "b's servers kept as backup", || {
        std::fs::read_to_string(&installed).ok().filter(|c| c.matches(" backup;").count() == 2)
    });
    assert_eq!(backup.matches("server 127.0.0.1:").count(), 4, "{backup}");
    let gone = wait_for(Duration::from_secs(30), "b left out after stale_after", || {
        std::fs::read_to_string(&installed).ok().filter(|c| c.matches("server 127.0.0.1:").count() == 2)
    });
    assert!(!gone.contains(&plain) && !gone.contains("backup"), "{gone}");
    for _ in 0..20 {
        assert_eq!(get(nginx_port).as_deref().and_then(|b| b.split(' ').next()), Some("a"), "{}", a.diagnose());
    }
    let log = std::fs::read_to_string(a.path("logs/l4ctl.log")).unwrap_or_default();
    assert!(log.contains("nginx follows the app"), "{}", a.diagnose());
}
