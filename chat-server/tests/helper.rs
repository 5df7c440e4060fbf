//! Starts the real `chat-server` binary on a free 127.0.0.1 port in a temp dir, against
//! SQLite or a fresh PostgreSQL database, and gives tests clients, tokens and raw sockets.
//! Everything it starts is killed (and every database it created dropped) on drop.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use layer4_chat_client::http;
use layer4_chat_client::protocol::{ClientMsg, Format, FrameRef, Payload, ServerMsg};
use layer4_chat_client::{Client, ClientConfig, Event};
use layer4_chat_server::auth::Auth;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

pub const SECRET: &str = "integration-test-secret-0123456789";
/// An admin URL for creating test databases: `L4_TEST_PG` (set by `.ci/test`), else
/// the trust-auth superuser of this machine kind.
pub fn pg_admin() -> String {
    std::env::var("L4_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A database for one test: a file in the server's temp dir, or a PostgreSQL database
/// created here and dropped on drop.
pub struct Database {
    pub url: String,
    pg_name: Option<String>,
}

impl Database {
    pub async fn create(backend: Backend, dir: &std::path::Path) -> Database {
        match backend {
            Backend::Sqlite => Database { url: format!("sqlite://{}/chat.db", dir.display()), pg_name: None },
            Backend::Postgres => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("l4test_{}_{n}", std::process::id());
                psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                psql(&format!("CREATE DATABASE {name}")).await;
                let admin = pg_admin();
                let url = format!("{}/{name}", &admin[..admin.rfind('/').expect("URL with a database")]);
                Database { url, pg_name: Some(name) }
            }
        }
    }
}

async fn psql(sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_admin())
        .await
        .expect("PostgreSQL at L4_TEST_PG or 127.0.0.1:5432 (see .ci/test)");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql.to_string())).await.expect(sql);
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let _ = Command::new("psql")
                .arg(pg_admin())
                .args(["-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    /// Kept for its drop, which removes a PostgreSQL database.
    _db: Database,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub async fn start(env: &[(&str, &str)]) -> Server {
        Server::start_on(Backend::Sqlite, env).await
    }

    pub async fn start_on(backend: Backend, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(backend, dir.path()).await;
        let port = free_port();
        let mut vars: BTreeMap<String, String> = [
            ("PORT", port.to_string()),
            ("DATABASE_URL", db.url.clone()),
            ("JWT_SECRET", SECRET.to_string()),
            ("APP_ENV", "production".to_string()),
            // Tests register their users; production closes registration by default.
            ("REGISTRATION", "open".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in env {
            vars.insert(k.to_string(), v.to_string());
        }
        let mut server = Server { child: None, port, dir, env: vars, _db: db };
        server.spawn().await;
        server
    }

    /// Starts the binary (again) with the same settings and waits until it is healthy.
    pub async fn spawn(&mut self) {
        let log = |name: &str| {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join(name)).unwrap();
            Stdio::from(file)
        };
        let child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .expect("spawn chat-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = http::get(&self.base(), "/api/health/websocket").await {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("chat-server exited during start: {status}\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "chat-server not healthy within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs SQL on the server's own database (PostgreSQL tests only).
    pub fn psql(&self, sql: &str) {
        let status = Command::new("psql").arg(&self._db.url).args(["-q", "-c", sql]).status().unwrap();
        assert!(status.success(), "psql: {sql}");
    }

    /// What the server printed on stdout (its log) so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "chat-server still running after {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn token(&self, id: i64, name: &str) -> String {
        Auth::new(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap().issue(id, name)
    }

    pub fn client(&self, id: i64, name: &str, format: Format) -> Client {
        let mut config = ClientConfig::new(self.ws_url(), self.token(id, name)).format(format);
        config.backoff_base = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(300);
        Client::start(config)
    }

    pub async fn metrics(&self) -> prometheus_parse::Scrape {
        let (status, _, body) = http::get(&self.base(), "/metrics").await.unwrap();
        assert_eq!(status, 200);
        let text = String::from_utf8(body.to_vec()).unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    /// The value of a metric with the given labels.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let scrape = self.metrics().await;
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no metric {name} {labels:?}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("unexpected metric type for {name}"),
        }
    }

    /// Polls a metric until `pred` holds (deadline 10 s).
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(name, labels).await;
            if pred(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{name} {labels:?} stuck at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the next event matching `pred`, skipping others (deadline 10 s).
pub async fn expect_event(client: &mut Client, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(event)) if pred(&event) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("client stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within 10 s"),
        }
    }
}

/// Joins `room` and waits for the server's `joined`.
pub async fn joined(client: &mut Client, room: &str) {
    client.join(room).await.unwrap();
    expect_event(client, "joined", |e| matches!(e, Event::Joined { .. })).await;
}

/// Collects `n` room messages from a client (deadline 20 s), failing on a Closed event.
pub async fn messages(client: &mut Client, n: usize) -> Vec<layer4_chat_client::protocol::ChatMessage> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(Event::Message(m))) => out.push(m),
            Ok(Some(Event::Closed { reason })) => panic!("client closed: {reason}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("client stopped"),
            Err(_) => panic!("only {} of {n} messages within 20 s", out.len()),
        }
    }
    out
}

/// A bare JSON WebSocket whose receive buffer is small (4 KiB), so that a client that
/// does not read fills the server's side at once; the `welcome` is read.
pub async fn small_window(server: &Server, name: &str) -> RawWs {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], server.port).into()).await.unwrap();
    let mut request = server.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", server.token(1, name)).parse().unwrap());
    let (mut ws, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap();
    ws
}

pub type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare WebSocket (no client library), for abuse and protocol tests.
pub async fn raw(url: &str, token: Option<&str>, protocol: Option<&str>) -> Result<RawWs, tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(protocol) = protocol {
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

pub async fn raw_send(ws: &mut RawWs, format: Format, msg: &ClientMsg) {
    use futures_util::SinkExt;
    let frame = match format.encode(msg) {
        Payload::Text(t) => Message::Text(t.into()),
        Payload::Binary(b) => Message::Binary(b.into()),
    };
    ws.send(frame).await.unwrap();
}

/// The next protocol message (skipping pings), or the close code (deadline 10 s).
pub async fn raw_next(ws: &mut RawWs, format: Format) -> Result<ServerMsg, Option<u16>> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.expect("a frame within 10 s");
        match frame {
            Some(Ok(Message::Text(t))) => return Ok(format.decode(FrameRef::Text(&t)).unwrap()),
            Some(Ok(Message::Binary(b))) => return Ok(format.decode(FrameRef::Binary(&b)).unwrap()),
            Some(Ok(Message::Close(c))) => return Err(c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                eprintln!("raw socket error: {e}");
                return Err(None);
            }
            None => return Err(None),
        }
    }
}

/// Reads until the server closes; returns the close code.
pub async fn raw_close_code(ws: &mut RawWs, format: Format) -> Option<u16> {
    loop {
        if let Err(code) = raw_next(ws, format).await {
            return code;
        }
    }
}

/// `l4chat` beside the chat-server binary (`cargo test --workspace` builds it for the
/// client crate's own tests).
pub fn l4chat() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_chat-server")).with_file_name("l4chat");
    assert!(path.is_file(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

/// One HTTP/1.1 request on a connection of its own from `source` (a loopback address of
/// the test's choosing), `headers` being whole lines (`"Name: value\r\n"`): the status,
/// the `Retry-After` value and the body.
pub async fn raw_http(
    source: std::net::IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Option<u64>, String) {
    let (status, head, body) = raw_request(source, port, method, path, headers, body).await;
    let retry = header(&head, "retry-after").parse().ok();
    (status, retry, body)
}

/// The same, with every header of the answer (names in lower case).
pub async fn raw_request(
    source: std::net::IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// A header of an answer (`""` when absent).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}
