//! README "Crash reports", https: reports reach a real TLS endpoint (Python's
//! ssl module, a fresh self-signed certificate) that `ca_file` trusts, and an
//! endpoint nobody trusts is a counted, logged failed delivery.

use std::path::PathBuf;
use std::time::Duration;

use crate::crashes::crasher;
use crate::helper::*;

/// A real TLS endpoint (Python's ssl + http.server) with a fresh self-signed
/// certificate for 127.0.0.1; it records every request.
struct HttpsEndpoint {
    port: u16,
    cert: PathBuf,
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _dir: tempfile::TempDir,
}

impl HttpsEndpoint {
    fn start() -> HttpsEndpoint {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (installed by .ci/test)");
        assert!(out.status.success(), "{}", text(&out));
        let mut child = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/https_endpoint.py"))
            .args([&cert, &key])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap().trim().parse().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        HttpsEndpoint { port, cert, child, seen, _dir: dir }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpsEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_app(port: u16, extra: &str) -> String {
    format!(
        "[error_tracking]\nsentry_dsn = \"https://testkey@127.0.0.1:{port}/42\"\nwebhook_url = \"https://127.0.0.1:{port}/hook\"\n{extra}\n[[apps]]\nname = \"rusty\"\nscript = {:?}\nargs = [\"panic\"]\nrestart_delay = \"10s\"\nrestart_delay_max = \"10s\"\n",
        crasher().display().to_string()
    )
}

#[test]
fn a_report_reaches_an_https_endpoint_that_trusts_the_configured_ca() {
    let endpoint = HttpsEndpoint::start();
    let env = Env::new(&https_app(endpoint.port, &format!("ca_file = {:?}", endpoint.cert.display().to_string())));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let got = wait_for(Duration::from_secs(15), "the envelope and the webhook over https", || {
        let r = endpoint.requests();
        (r.len() >= 2).then_some(r)
    });
    let envelope = got.iter().find(|r| r["path"] == "/api/42/envelope/").expect("an envelope");
    assert!(envelope["headers"]["x-sentry-auth"].as_str().unwrap().contains("sentry_key=testkey"), "{envelope}");
    let event = envelope_event(envelope["body"].as_str().unwrap().as_bytes());
    assert_eq!(event["exception"]["values"][0]["value"], "boom from crasher", "{event}");
    let hook = got.iter().find(|r| r["path"] == "/hook").expect("a webhook call");
    assert_eq!(serde_json::from_str::<serde_json::Value>(hook["body"].as_str().unwrap()).unwrap()["app"], "rusty");
    let d = wait_for(Duration::from_secs(5), "both counted as sent", || {
        let d = delivery(&env);
        (d["sent"] == 2).then_some(d)
    });
    assert_eq!((d["failed"].as_u64(), d["dropped"].as_u64()), (Some(0), Some(0)), "{d}");
}

#[test]
fn an_untrusted_https_endpoint_fails_the_delivery_and_says_so() {
    // No ca_file: the bundled public roots do not trust a self-signed certificate.
    let endpoint = HttpsEndpoint::start();
    let env = Env::new(&https_app(endpoint.port, "retries = 0\ntimeout = \"2s\""));
    let _ = env.l4(&["start", env.config().to_str().unwrap()]);
    let d = wait_for(Duration::from_secs(15), "two failed deliveries", || {
        let d = delivery(&env);
        (d["failed"] == 2).then_some(d)
    });
    assert_eq!(d["sent"], 0, "{d}");
    assert!(endpoint.requests().is_empty(), "no request crosses an untrusted TLS handshake");
    let out = env.l4(&["crashes"]);
    assert!(text(&out).contains("delivery to Sentry and webhook: 0 sent, 2 failed"), "{}", text(&out));
    let log = env.diagnose();
    assert!(log.contains("was not delivered"), "{log}");
}

/// The resident daemon links no TLS stack, which keeps its memory row (README
/// "Benchmarks") where it is: `l4ctl-send` carries it for deliveries, and the CLI for
/// the `https` APIs of `[nginx] hosts` (README "Several hosts").
#[test]
fn the_daemon_links_no_tls_stack() {
    let dir = std::path::Path::new(BIN).parent().unwrap();
    // Code linked, not type names in debug info: the symbol table (binutils' nm).
    let links = |name: &str| {
        let out = std::process::Command::new("nm").arg("--defined-only").arg(dir.join(name)).output();
        let out = out.expect("nm (binutils, beside the C toolchain Rust links with)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        memchr::memmem::find(&out.stdout, b"rustls").is_some()
    };
    assert!(links("l4ctl-send"), "the sender is expected to carry rustls");
    assert!(!links("l4ctl-daemon"), "l4ctl-daemon links rustls");
    assert!(links("l4ctl"), "the CLI is expected to carry rustls");
}
