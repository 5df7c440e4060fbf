//! README "TLS", end to end: browsers' way in. A real nginx rendered by `l4ctl nginx
//! render` with `listen_tls` serves `wss://` and `https://` (plain HTTP only redirects)
//! to three workers under l4ctl that store in a TLS-only PostgreSQL (verify-full, a
//! private CA) and fan out through a TLS-only Redis (client certificates). The Rust
//! client and `l4chat` reach it with `--ca-file`; messages arrive once and in order
//! across an `l4ctl reload`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use layer4_chat_client::client::{Client, ClientConfig, Event};
use layer4_chat_client::protocol::Format;

use crate::cluster::Cluster;
use crate::e2e::Nginx;
use crate::helper::{SECRET, joined, l4chat};
use crate::pki::TlsServers;

const READERS: usize = 10;
const ROOM: &str = "secure";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_over_wss_with_tls_postgres_and_redis_a_reload_loses_nothing() {
    let Some(tls) = TlsServers::start() else { return };
    let ca = tls.pki.ca.display().to_string();
    let nginx_dir = tls.dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let output = nginx_dir.join("layer4.conf");
    // Held until nginx starts, so the workers' ports cannot take them.
    let holds =
        [std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap()];
    let (https_port, http_port) = (holds[0].local_addr().unwrap().port(), holds[1].local_addr().unwrap().port());
    let section = format!(
        "[nginx]\nserver_name = \"localhost\"\nlisten = \"127.0.0.1:{http_port}\"\nlisten_tls = \"127.0.0.1:{https_port}\"\nssl_certificate = {:?}\nssl_certificate_key = {:?}\noutput = {:?}\naccess_log = \"off\"\n",
        tls.pki.server_cert.display().to_string(),
        tls.pki.server_key.display().to_string(),
        output.display().to_string(),
    );
    let database = tls.pg_url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let files = tls.redis_files();
    let mut env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", database),
        ("REDIS_URL", tls.redis_url("localhost")),
        ("HEARTBEAT_INTERVAL", "2000".into()),
        ("CONNECTION_TIMEOUT", "10000".into()),
    ];
    env.extend(files.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(3, &env, &section));
    let out = cluster.l4(&["nginx", "render"]);
    assert!(out.status.success(), "{}", cluster.diagnose(&out));
    drop(holds);
    let _nginx = Nginx::start(&nginx_dir, &output);

    // Plain HTTP answers with the way to TLS.
    let (status, headers, _) =
        layer4_chat_client::http::get(&format!("http://localhost:{http_port}"), "/ws").await.unwrap();
    assert_eq!(status, 308);
    assert_eq!(headers["location"], format!("https://localhost:{https_port}/ws").as_str());

    // Readers and three senders over wss://, trusting the private CA.
    let client_tls = layer4_chat_client::tls::config(Some(&tls.pki.ca)).unwrap();
    let auth = layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap();
    let url = format!("wss://localhost:{https_port}/ws");
    let client = |k: usize| {
        let mut config = ClientConfig::new(url.clone(), auth.issue(k as i64 + 1, &format!("u{k}")))
            .format(if k.is_multiple_of(2) { Format::Json } else { Format::MsgPack })
            .tls(client_tls.clone());
        config.backoff_base = Duration::from_millis(50);
        config.backoff_max = Duration::from_millis(500);
        Client::start(config)
    };
    let mut readers = Vec::new();
    for k in 0..READERS {
        let mut c = client(k);
        joined(&mut c, ROOM).await;
        readers.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sending: Vec<_> = (0..3)
        .map(|s| {
            let (stop, sender) = (stop.clone(), readers[s].sender());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sender.send(ROOM, &format!("{s}-{i}")).await.unwrap();
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                i
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.pids();
    let out = tokio::task::block_in_place(|| cluster.l4(&["reload", "chat"]));
    assert!(out.status.success(), "{}", cluster.diagnose(&out));
    assert!(before.iter().zip(cluster.pids()).all(|(b, a)| *b != a), "every worker replaced");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for s in sending {
        total += s.await.unwrap();
    }

    // l4chat over https:// and wss://: health, then one line into the room.
    let server = format!("https://localhost:{https_port}");
    let run = |args: &[&str]| Command::new(l4chat()).args(["--server", &server]).args(args).output().unwrap();
    let out = run(&["--ca-file", &ca, "health"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"status\""), "{out:?}");
    let out = run(&["health"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("localhost's certificate is not signed by a trusted CA (give its CA with --ca-file)"),
        "{err}"
    );
    let mut chat = Command::new(l4chat())
        .args(["--server", &server, "--ca-file", &ca, "chat", "--history", "5", ROOM])
        .env("L4_TOKEN", auth.issue(99, "l4chat-user"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until the readers have its line: at end of input l4chat leaves.
    let mut stdin = chat.stdin.take().unwrap();
    stdin.write_all(b"hello over wss\n").unwrap();
    total += 1;

    // Every reader: every message once, in order, the senders' in their order.
    for (k, mut reader) in readers.into_iter().enumerate() {
        let mut seqs = Vec::new();
        let mut bodies = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while (seqs.len() as u64) < total {
            match tokio::time::timeout_at(deadline, reader.next_event()).await {
                Ok(Some(Event::Message(m))) => {
                    seqs.push(m.seq);
                    bodies.push(m.body);
                }
                Ok(Some(Event::Closed { reason })) => panic!("reader {k} closed: {reason}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("reader {k}: {} of {total} messages", seqs.len()),
            }
        }
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "reader {k}: once each, in order");
        for s in 0..3 {
            let mine: Vec<&String> = bodies.iter().filter(|b| b.starts_with(&format!("{s}-"))).collect();
            let want: Vec<String> = (0..mine.len()).map(|i| format!("{s}-{i}")).collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>(), "reader {k}: sender {s}'s order");
        }
        // Not necessarily last: a sender that reconnected after the reload may resend its
        // last line after it.
        assert_eq!(bodies.iter().filter(|b| *b == "hello over wss").count(), 1, "reader {k}");
    }
    // l4chat printed the room's history and its own line as the room numbered it.
    drop(stdin);
    let out = chat.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.lines().filter(|l| l.starts_with('#')).count() >= 5, "{printed}");
    assert!(printed.lines().any(|l| l.starts_with('#') && l.ends_with(" l4chat-user: hello over wss")), "{printed}");
}
