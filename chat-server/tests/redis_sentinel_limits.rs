//! README "Redis Sentinel", its limits: each sentinel gets 1 s (`chat-server --check`
//! leaves one that takes the connection and never answers for the next one, a real
//! `redis-server --sentinel`, and PINGs the primary it names; with only silent ones it
//! says so); a resume past a worker's head waits at most 5 s for its room to catch up
//! from a database that does not answer (a transaction of the test holds the messages
//! table), gets `unavailable`, and once the database answers again the same resume is
//! answered with the database's head.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use layer4_chat_client::protocol::{ClientMsg, ErrorCode, Format, ServerMsg};
use sqlx::{Connection, Executor};

use crate::fanout::{Redis, cluster};
use crate::helper::{Backend, Database, SECRET, free_port, joined, messages, raw, raw_next, raw_send};
use crate::redis_sentinel::{query, until};

/// How long one sentinel may take (`reach::sentinel::SENTINEL_TIMEOUT`).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a resume waits for its room to catch up (`gateway::requests::CATCH_UP_LIMIT`).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// A real `redis-server --sentinel` watching `primary` as `mymaster`, stopped when dropped.
struct Sentinel {
    port: u16,
    child: Child,
}

impl Sentinel {
    fn start(dir: &Path, primary: u16) -> Sentinel {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsentinel monitor mymaster 127.0.0.1 {primary} 1\n",
            dir.display()
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/test installs it)");
        let sentinel = Sentinel { port, child };
        until(Duration::from_secs(20), "the sentinel to name the primary", || {
            let cmd = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("mymaster").clone();
            query::<(String, String)>("127.0.0.1", port, &cmd) == Some(("127.0.0.1".into(), primary.to_string()))
        });
        sentinel
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chat-server --check` with `REDIS_URL=url` (SQLite in memory): exit code, stdout,
/// stderr and how long it took; killed, and the test failed, past 60 s.
pub fn check(url: &str) -> (i32, String, String, Duration) {
    let began = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--check")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("DATABASE_URL", "sqlite::memory:")
        .env("REDIS_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chat-server --check still runs after 60 s with {url}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = began.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr), took)
}

/// A port that takes connections (the kernel's backlog) and never answers.
fn silent() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Whether someone connected to `listener`.
fn asked(listener: &std::net::TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

#[test]
fn check_leaves_a_silent_sentinel_after_one_second_and_pings_the_primary_the_next_one_names() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = Redis::start();
    let sentinel = Sentinel::start(tmp.path(), primary.port);
    let (held, quiet) = silent();
    let url = format!("redis+sentinel://127.0.0.1:{quiet},127.0.0.1:{}/mymaster", sentinel.port);
    let (code, stdout, stderr, took) = check(&url);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let pinged = format!("Redis redis://127.0.0.1:{}/0: PING answered without TLS in ", primary.port);
    assert!(stdout.contains(&pinged), "{stdout}");
    assert!(stdout.contains(&format!("(the primary of mymaster at 127.0.0.1:{}, from ", primary.port)), "{stdout}");
    assert!(asked(&held), "the silent sentinel, listed first, was asked first");
    // It had its second, and no more than a loaded machine adds to it.
    assert!(took >= SENTINEL_TIMEOUT && took < SENTINEL_TIMEOUT + Duration::from_secs(10), "{took:?}");

    // Only silent ones: a sentence, after a second each.
    let ((first, one), (second, two)) = (silent(), silent());
    let url = format!("redis+sentinel://127.0.0.1:{one},127.0.0.1:{two}/mymaster");
    let (code, stdout, stderr, took) = check(&url);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("the sentinels: "), "{stderr}");
    assert!(stderr.contains(&format!("redis://127.0.0.1:{two}: no answer in 1000 ms")), "{stderr}");
    assert!(asked(&first) && asked(&second), "each sentinel was asked in turn");
    assert!(took >= 2 * SENTINEL_TIMEOUT && took < 2 * SENTINEL_TIMEOUT + Duration::from_secs(10), "{took:?}");
}

/// Worker 1 missed messages (Redis down); a client that saw them resumes there while a
/// transaction holds the messages table: the catch-up cannot read, and the resume is
/// answered `unavailable` within the limit instead of hanging or taking a stale head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_catch_up_from_a_stalled_database_is_answered_unavailable_after_5_s() {
    let (mut redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster(2, &redis, &db).await;
    let mut watcher = cluster.client(1, 1, "watcher");
    let mut publisher = cluster.client(0, 2, "pub");
    joined(&mut watcher, "stalled").await;
    joined(&mut publisher, "stalled").await;
    for i in 0..5 {
        publisher.send("stalled", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut watcher, 5).await.len(), 5);
    redis.kill();
    for i in 5..10 {
        publisher.send("stalled", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut publisher, 10).await.last().unwrap().seq, 10);

    let mut lock = sqlx::PgConnection::connect(&db.url).await.unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let token =
        layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::from_secs(60)).unwrap().issue(2, "pub");
    let mut ws = raw(&cluster.ws_url(1), Some(&token), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap(); // welcome
    let resume = ClientMsg::Resume { rooms: [("stalled".to_owned(), 10)].into() };
    let sent = Instant::now();
    raw_send(&mut ws, Format::Json, &resume).await;
    // raw_next gives up after 10 s: a resume that hangs fails here.
    match raw_next(&mut ws, Format::Json).await.unwrap() {
        ServerMsg::Error { code: ErrorCode::Unavailable, room: Some(room), .. } => assert_eq!(room, "stalled"),
        other => panic!("unexpected {other:?}"),
    }
    let waited = sent.elapsed();
    assert!(waited >= CATCH_UP_LIMIT, "answered after {waited:?}, before the catch-up's limit");
    let early = tokio::time::timeout(Duration::from_millis(100), watcher.next_event()).await;
    assert!(early.is_err(), "the watcher got something while the database was held: {early:?}");

    // The database answers again: the same resume gets the database's head.
    lock.execute("ROLLBACK").await.unwrap();
    raw_send(&mut ws, Format::Json, &resume).await;
    match raw_next(&mut ws, Format::Json).await.unwrap() {
        ServerMsg::Joined { seq, .. } => assert_eq!(seq, 10, "joined at the database's head"),
        other => panic!("unexpected {other:?}"),
    }
    let caught_up: Vec<u64> = messages(&mut watcher, 5).await.iter().map(|m| m.seq).collect();
    assert_eq!(caught_up, (6..=10).collect::<Vec<_>>());
    eprintln!("the stalled resume was answered after {waited:?}");
}
