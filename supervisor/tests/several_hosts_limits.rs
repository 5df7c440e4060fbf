//! README "Several hosts", its limits, through `l4ctl nginx render --stdout` and a real
//! daemon: another host's table is read up to 8 MiB (exactly 8 MiB is used, one byte
//! more or an endless answer is refused with a sentence, in bounded memory); a host's
//! error sentence reaches the terminal cut to 300 characters, control characters
//! replaced, however it is spelled; a `ca_file` of 1 MiB is read, one byte more is not.
//! The other hosts are hostile servers of the test (a thread on 127.0.0.1:0) or a real
//! `openssl s_server`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use layer4_supervisor::client::MAX_REMOTE_ANSWER;

use crate::helper::{BIN, Env, free_ports, held_port, sh_app, text, wait_for};

/// A host that answers its first connection as `answer` says; the thread ends with
/// the bytes `answer` wrote.
struct Hostile {
    api: String,
    thread: JoinHandle<u64>,
}

impl Hostile {
    fn start(answer: impl FnOnce(&mut TcpStream) -> u64 + Send + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("l4ctl never asked this host: {e}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            let (mut head, mut byte) = (Vec::new(), [0u8; 1]);
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            answer(&mut stream)
        });
        Hostile { api, thread }
    }

    /// An answer with this status line and body.
    fn answering(status: &'static str, body: Vec<u8>) -> Hostile {
        Hostile::start(move |s| {
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).and_then(|()| s.write_all(&body)).map_or(0, |()| body.len() as u64)
        })
    }

    fn written(self) -> u64 {
        self.thread.join().expect("the hostile host's thread")
    }
}

/// A status table of one ready `web` instance on `port`, padded with spaces to `size` bytes
/// (when shorter).
fn table(port: u16, size: usize) -> Vec<u8> {
    let row = serde_json::json!({"id": 0, "app": "web", "instance": 0, "port": port, "state": "online",
        "restarts": 0, "unstable_restarts": 0});
    let mut body = serde_json::to_vec(&serde_json::json!({"schema": 1, "instances": [row]})).unwrap();
    body.resize(size.max(body.len()), b' ');
    body
}

/// A daemon running `web`, with `[nginx] hosts` set to `hosts` (TOML inline tables).
fn daemon(hosts: &[String]) -> Env {
    let nginx = format!(
        "[nginx]\naccess_log = \"off\"\nhost_timeout = \"20s\"\nhosts = [{}]\n\n{}",
        hosts.join(", "),
        sh_app("web", "exec sleep 1000", &format!("port = {}", free_ports(1)))
    );
    let env = Env::new(&nginx);
    env.start();
    env
}

/// The notes `render --stdout` printed on stderr.
fn notes(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter_map(|l| l.strip_prefix("l4ctl: ")).map(str::to_owned).collect()
}

#[test]
fn a_host_s_table_is_read_up_to_8_mib_and_past_it_refused_in_bounded_memory() {
    let exact = Hostile::answering("200 OK", table(4101, MAX_REMOTE_ANSWER));
    let past = Hostile::answering("200 OK", table(4102, MAX_REMOTE_ANSWER + 1));
    // Claims 1 GiB and sends for as long as anyone reads.
    let endless = Hostile::start(|s| {
        let gib = 1u64 << 30;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {gib}\r\n\r\n");
        let (chunk, mut sent) = ([b' '; 64 << 10], 0u64);
        let _ = s.write_all(head.as_bytes());
        while sent < gib {
            match s.write(&chunk) {
                Ok(n) if n > 0 => sent += n as u64,
                _ => break,
            }
        }
        sent
    });
    let hosts = [&exact, &past, &endless].map(|h| format!("{{ api = \"{}\" }}", h.api));
    let env = daemon(&hosts);
    // l4ctl's peak memory, from its parent (Linux counts KiB).
    let rss = "import resource, subprocess, sys\ncode = subprocess.run(sys.argv[1:]).returncode\nprint('maxrss_kib=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\nsys.exit(code)";
    let out = Command::new("python3")
        .args(["-c", rss, BIN, "--config"])
        .arg(env.config())
        .args(["nginx", "render", "--stdout"])
        .current_dir(env.dir.path())
        .env_remove("L4_HOME")
        .env_remove("L4_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = format!("server 127.0.0.1:4101 max_fails=3 fail_timeout=10s;  # {} instance 0", exact.api);
    assert!(stdout.contains(&line), "{line}\n{}", text(&out));
    assert!(!stdout.contains(":4102 "), "{stdout}");
    let notes = notes(&out);
    for host in [&past, &endless] {
        let refused = format!(
            "{api} gave no table (talking to the daemon at {api}: reading the answer: length limit exceeded) and never did: left out",
            api = host.api
        );
        assert!(notes.contains(&refused), "{refused}\n{}", text(&out));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib: u64 = stderr.lines().find_map(|l| l.strip_prefix("maxrss_kib=")?.parse().ok()).expect("l4ctl's peak");
    let (exact, past, endless) = (exact.written(), past.written(), endless.written());
    eprintln!("l4ctl peaked at {kib} KiB; the endless host got {endless} bytes out before l4ctl hung up");
    assert_eq!((exact, past), (MAX_REMOTE_ANSWER as u64, MAX_REMOTE_ANSWER as u64 + 1));
    // Three answers of 8 MiB at once fit well under 256 MiB; reading the endless one would not.
    assert!(kib < 256 << 10, "l4ctl peaked at {kib} KiB");
    // What left the hostile host: the limit, the kernel's socket buffers, no more.
    assert!(endless < 128 << 20, "{endless} bytes were taken from an endless answer");
}

/// The sentence a note gives for `api` having answered `status`, or `None`.
fn said<'a>(notes: &'a [String], api: &str, status: u16) -> Option<&'a str> {
    let head = format!("{api} gave no table ({api} answered HTTP {status}: ");
    notes.iter().find_map(|n| n.strip_prefix(&head)?.strip_suffix(") and never did: left out"))
}

/// What the terminal may show of `text`: its first 300 characters, control ones as spaces.
fn shown(text: &str) -> String {
    text.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[test]
fn a_host_s_error_sentence_is_cut_to_300_characters_without_control_characters() {
    // 10,000 characters of colours, bells, line breaks, C1 controls and a clipboard write.
    let piece = "\x1b[31mred\x1b[0m\x07\r\n\u{9b}2J\x1b]52;c;ZXZpbA==\x07\t\0é";
    let long: String = piece.chars().cycle().take(10_000).collect();
    let json = serde_json::to_vec(&serde_json::json!({"error": {"code": "internal", "message": long}})).unwrap();
    let sentence = Hostile::answering("500 Internal Server Error", json);
    // Not JSON: the body itself is the sentence (with a byte that is not UTF-8).
    let mut raw = long.clone().into_bytes();
    raw[7] = 0xff;
    let page = Hostile::answering("502 Bad Gateway", raw.clone());
    // A code whose 64th byte falls inside a character.
    let code = format!("x{}", "é".repeat(40));
    let json = serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": "go away"}})).unwrap();
    let coded = Hostile::answering("403 Forbidden", json);
    let hosts = [&sentence, &page, &coded].map(|h| format!("{{ api = \"{}\" }}", h.api));
    let env = daemon(&hosts);
    let out = env.l4(&["nginx", "render", "--stdout"]);
    assert!(out.status.success(), "{}", text(&out));
    let notes = notes(&out);
    let got = said(&notes, &sentence.api, 500).unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(got, shown(&long));
    let got = said(&notes, &page.api, 502).unwrap_or_else(|| panic!("{}", text(&out)));
    assert_eq!(got, shown(&format!("HTTP 502 Bad Gateway: {}", String::from_utf8_lossy(&raw))));
    assert_eq!(said(&notes, &coded.api, 403), Some("go away"), "{}", text(&out));
    for got in [said(&notes, &sentence.api, 500), said(&notes, &page.api, 502)].into_iter().flatten() {
        assert_eq!(got.chars().count(), 300, "{got:?}");
        assert!(!got.chars().any(char::is_control), "{got:?}");
    }
    for host in [sentence, page, coded] {
        assert!(host.written() > 0);
    }
}

/// A real TLS server (`openssl s_server -WWW`) serving the files under a folder, stopped
/// when dropped.
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    fn start(dir: &std::path::Path, served: &std::path::Path) -> TlsServer {
        let said = dir.join("s_server.out");
        let child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-WWW", "-cert"])
            .arg(dir.join("api.pem"))
            .arg("-key")
            .arg(dir.join("api.key"))
            .current_dir(served)
            .stdout(std::fs::File::create(&said).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut server = TlsServer { port: 0, child };
        server.port = wait_for(Duration::from_secs(20), "openssl s_server to listen", || {
            let out = std::fs::read_to_string(&said).ok()?;
            out.lines().find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:")?.trim().parse().ok())
        });
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ca_file_of_1_mib_is_read_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=layer4 test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    // The certificate, then text outside any PEM section up to exactly 1 MiB.
    let mut at_limit = std::fs::read(&cert).unwrap();
    while at_limit.len() < 1 << 20 {
        at_limit.extend_from_slice(b"# not a PEM section: padding up to the limit\n");
    }
    at_limit.truncate(1 << 20);
    let (at, past) = (dir.path().join("at-limit.pem"), dir.path().join("past-limit.pem"));
    std::fs::write(&at, &at_limit).unwrap();
    at_limit.push(b'\n');
    std::fs::write(&past, &at_limit).unwrap();
    let served = dir.path().join("www");
    std::fs::create_dir_all(served.join("api/v1")).unwrap();
    std::fs::write(served.join("api/v1/status"), table(4103, 0)).unwrap();
    let tls = TlsServer::start(dir.path(), &served);
    let (closed, _) = held_port();
    let (secure, other) = (format!("https://127.0.0.1:{}", tls.port), format!("https://127.0.0.1:{closed}"));
    let env = daemon(&[
        format!("{{ api = \"{secure}\", ca_file = {:?} }}", at.display().to_string()),
        format!("{{ api = \"{other}\", ca_file = {:?} }}", past.display().to_string()),
    ]);
    let out = env.l4(&["nginx", "render", "--stdout"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = format!("server 127.0.0.1:4103 max_fails=3 fail_timeout=10s;  # {secure} instance 0");
    assert!(stdout.contains(&line), "{line}\n{}", text(&out));
    let refused = format!(
        "{other} gave no table (ca_file {} is larger than 1048576 bytes) and never did: left out",
        past.display()
    );
    assert!(notes(&out).contains(&refused), "{refused}\n{}", text(&out));
}
