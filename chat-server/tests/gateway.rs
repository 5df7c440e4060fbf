//! README "Gateway": heartbeat timeout, the connection cap, 401s, oversized and
//! malformed frames, slow consumers and the graceful drain.

use std::time::Duration;

use layer4_chat_client::protocol::{ClientMsg, ErrorCode, Format, ServerMsg, close};
use tokio_tungstenite::tungstenite;

use crate::helper::*;

fn http_status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_silent_connection_times_out_with_4000_and_releases_everything() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "100"), ("CONNECTION_TIMEOUT", "500")]).await;
    let f = Format::Json;
    let mut silent = raw(&server.ws_url(), Some(&server.token(1, "sil")), None).await.unwrap();
    raw_next(&mut silent, f).await.unwrap();
    raw_send(&mut silent, f, &ClientMsg::Join { room: "r".into(), since: None }).await;
    raw_next(&mut silent, f).await.unwrap();
    // A client that reads answers the server's pings and stays.
    let mut live = server.client(2, "live", f);
    joined(&mut live, "r").await;
    assert_eq!(server.metric("chat_room_memberships", &[]).await, 2.0);

    server.wait_metric("chat_disconnections_total", &[("reason", "timeout")], |v| v == 1.0).await;
    assert_eq!(server.metric("chat_room_memberships", &[]).await, 1.0);
    assert_eq!(raw_close_code(&mut silent, f).await, Some(close::TIMEOUT));
    server.wait_metric("chat_connections_active", &[], |v| v == 1.0).await;

    // Well past the timeout, the reading client is still served.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    live.send("r", "still here").await.unwrap();
    let got = messages(&mut live, 1).await;
    assert_eq!(got[0].body, "still here");
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "timeout")]).await, 1.0);
}

#[tokio::test]
async fn the_connection_cap_answers_503_with_retry_after_and_frees_slots() {
    let server = Server::start(&[("MAX_CONNECTIONS", "2")]).await;
    let token = server.token(1, "ann");
    let mut a = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    let _b = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    match raw(&server.ws_url(), Some(&token), None).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let retry: u32 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=5).contains(&retry));
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    assert_eq!(server.metric("chat_connections_rejected_total", &[("reason", "full")]).await, 1.0);
    futures_util::SinkExt::close(&mut a).await.unwrap();
    server.wait_metric("chat_connections_active", &[], |v| v == 1.0).await;
    raw(&server.ws_url(), Some(&token), None).await.expect("a slot is free again");
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_get_401_before_the_upgrade() {
    let server = Server::start(&[]).await;
    assert_eq!(http_status(raw(&server.ws_url(), None, None).await.unwrap_err()), 401);
    assert_eq!(http_status(raw(&server.ws_url(), Some("not-a-jwt"), None).await.unwrap_err()), 401);
    let forged = layer4_chat_server::auth::Auth::new(b"some-other-secret-entirely", Duration::from_secs(60))
        .unwrap()
        .issue(1, "eve");
    assert_eq!(http_status(raw(&server.ws_url(), Some(&forged), None).await.unwrap_err()), 401);
    let expired = layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::ZERO).unwrap().issue(1, "old");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(http_status(raw(&server.ws_url(), Some(&expired), None).await.unwrap_err()), 401);
    let url = format!("{}?token={}", server.ws_url(), server.token(1, "browser"));
    raw(&url, None, None).await.expect("?token= is accepted");
    assert_eq!(
        http_status(raw(&server.ws_url(), Some(&server.token(1, "x")), Some("chat.v9")).await.unwrap_err()),
        400
    );
    assert_eq!(server.metric("chat_connections_rejected_total", &[("reason", "auth")]).await, 4.0);
}

#[tokio::test]
async fn an_oversized_frame_closes_only_its_connection_with_1009() {
    let server = Server::start(&[("MAX_MESSAGE_SIZE", "1024")]).await;
    let f = Format::Json;
    let mut other = server.client(2, "other", f);
    joined(&mut other, "r").await;
    let mut big = raw(&server.ws_url(), Some(&server.token(1, "big")), None).await.unwrap();
    raw_next(&mut big, f).await.unwrap();
    raw_send(&mut big, f, &ClientMsg::Send { room: "r".into(), id: "x".into(), body: "a".repeat(4096) }).await;
    assert_eq!(raw_close_code(&mut big, f).await, Some(close::TOO_BIG));
    other.send("r", "unaffected").await.unwrap();
    assert_eq!(messages(&mut other, 1).await[0].body, "unaffected");
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "too_big")]).await, 1.0);
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_errors_then_a_close() {
    use futures_util::SinkExt;
    let server = Server::start(&[]).await;
    let f = Format::Json;
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    raw_next(&mut ws, f).await.unwrap();
    ws.send(tungstenite::Message::Text("{".into())).await.unwrap();
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Error { code: ErrorCode::Malformed, .. }));
    ws.send(tungstenite::Message::Text(r#"{"type":"dance"}"#.into())).await.unwrap();
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Error { code: ErrorCode::UnknownType, .. }));
    ws.send(tungstenite::Message::Binary(vec![0x93, 1, 2, 3].into())).await.unwrap();
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Error { code: ErrorCode::Malformed, .. }));
    raw_send(&mut ws, f, &ClientMsg::Send { room: "nowhere".into(), id: "1".into(), body: "x".into() }).await;
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Error { code: ErrorCode::NotJoined, .. }));
    raw_send(&mut ws, f, &ClientMsg::Join { room: "bad room".into(), since: None }).await;
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Error { code: ErrorCode::BadRoom, .. }));
    for _ in 0..8 {
        ws.send(tungstenite::Message::Text("nonsense".into())).await.unwrap();
    }
    assert_eq!(raw_close_code(&mut ws, f).await, Some(close::INVALID_DATA));
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "abuse")]).await, 1.0);
}

/// A raw JSON client in `room` whose socket has a 4 KiB receive buffer, so the server's
/// writes to it block as soon as it stops reading.
async fn small_window_member(server: &Server, name: &str, room: &str) -> RawWs {
    let f = Format::Json;
    let mut ws = small_window(server, name).await;
    raw_send(&mut ws, f, &ClientMsg::Join { room: room.into(), since: None }).await;
    raw_next(&mut ws, f).await.unwrap();
    ws
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4001_without_stalling_the_room() {
    let server = Server::start(&[("MAX_MESSAGE_SIZE", "16384"), ("QUEUE_MAX_BYTES", "65536")]).await;
    let f = Format::Json;
    // A reader that never reads.
    let mut slow = small_window_member(&server, "slow", "flood").await;

    let mut fast = server.client(2, "fast", f);
    joined(&mut fast, "flood").await;
    let body = "x".repeat(8000);
    for _ in 0..1000 {
        fast.send("flood", &body).await.unwrap();
    }
    assert_eq!(messages(&mut fast, 1000).await.len(), 1000, "the room kept flowing");
    server.wait_metric("chat_queue_drops_total", &[], |v| v >= 1.0).await;
    // The deliveries it did not get, with why; the fast member's were all made.
    server.wait_metric("chat_deliveries_dropped_total", &[("reason", "slow_consumer")], |v| v >= 1.0).await;
    // Reading now drains the socket, so the close frame queued behind the backlog arrives.
    assert_eq!(raw_close_code(&mut slow, f).await, Some(close::RESUME));
    server.wait_metric("chat_disconnections_total", &[("reason", "slow_consumer")], |v| v == 1.0).await;
    let rss = server.metric("chat_memory_rss_bytes", &[]).await;
    assert!(rss < 100e6, "RSS {rss} stayed bounded");
}

/// `GET path` on an open keep-alive connection: status and body.
async fn get_on(stream: &mut tokio::net::TcpStream, path: &str) -> (u16, serde_json::Value) {
    let head = format!("GET {path} HTTP/1.1\r\n");
    {
        use tokio::io::AsyncWriteExt;
        stream.write_all(head.as_bytes()).await.unwrap();
    }
    get_rest(stream, "host: x\r\n\r\n").await
}

/// Send the `rest` of a request whose first line was sent, and read the answer.
async fn get_rest(stream: &mut tokio::net::TcpStream, rest: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some(end) = text.find("\r\n\r\n") else { continue };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap();
        if buf.len() >= end + 4 + length {
            let status = text[9..12].parse().unwrap();
            return (status, serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap());
        }
    }
}

#[tokio::test]
async fn sigterm_stops_accepting_drains_with_1012_reports_draining_and_exits_0() {
    let mut server = Server::start(&[("DRAIN_WINDOW", "1500")]).await;
    let f = Format::Json;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut ws = raw(&server.ws_url(), Some(&server.token(i + 1, "c")), None).await.unwrap();
        raw_next(&mut ws, f).await.unwrap();
        clients.push(ws);
    }
    // A request in flight when the drain begins: half of it now, the rest once draining.
    let mut inflight = tokio::net::TcpStream::connect(server.base().trim_start_matches("http://")).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        inflight.write_all(b"GET /api/health/websocket HTTP/1.1\r\n").await.unwrap();
    }
    // Accepted after `inflight` (the queue is in order), so its answer shows both were.
    let mut kept = tokio::net::TcpStream::connect(server.base().trim_start_matches("http://")).await.unwrap();
    assert_eq!(get_on(&mut kept, "/api/health/websocket").await.0, 200);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // New connections are no longer accepted (under l4ctl they go to the successor).
    loop {
        match raw(&server.ws_url(), Some(&server.token(9, "late")), None).await {
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Before the signal is handled a WebSocket may still open (it is drained later).
            Err(e) => assert!(std::time::Instant::now() < deadline, "still accepting while draining: {e}"),
            Ok(_) => assert!(std::time::Instant::now() < deadline, "still accepting WebSockets while draining"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The request in flight is answered (draining), then its connection is closed.
    let (status, health) = get_rest(&mut inflight, "host: x\r\n\r\n").await;
    assert_eq!((status, health["status"].as_str()), (503, Some("draining")));
    // An idle keep-alive connection is closed rather than left open.
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut kept, &mut byte)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the idle connection was closed: {n:?}");
    for ws in &mut clients {
        assert_eq!(raw_close_code(ws, f).await, Some(close::RESTART));
    }
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_client_that_sends_without_reading_is_not_read_until_it_catches_up() {
    use futures_util::SinkExt;
    let server = Server::start(&[("MAX_MESSAGE_SIZE", "16384"), ("QUEUE_MAX_BYTES", "65536")]).await;
    let f = Format::Json;
    let mut writer = server.client(2, "w", f);
    writer.join("big").await.unwrap();
    for _ in 0..20 {
        writer.send("big", &"x".repeat(8000)).await.unwrap();
    }
    messages(&mut writer, 20).await;

    let mut ws = small_window_member(&server, "greedy", "big").await;
    let before = server.metric("chat_memory_rss_bytes", &[]).await;
    // 300 requests of ~40 KB of replies each (12 MB), without reading any of them.
    let history = ClientMsg::History { room: "big".into(), before: None, limit: Some(20) };
    let frame = match f.encode(&history) {
        layer4_chat_client::protocol::Payload::Text(t) => tungstenite::Message::Text(t.into()),
        _ => unreachable!(),
    };
    for _ in 0..300 {
        ws.feed(frame.clone()).await.unwrap();
    }
    ws.flush().await.unwrap();
    let watch_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        let grown = server.metric("chat_memory_rss_bytes", &[]).await - before;
        assert!(grown < 24e6, "the server queued {grown} bytes for a client that does not read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the client reads, every request is answered, each with the newest messages
    // up to half of QUEUE_MAX_BYTES (32 KiB: 5 of 8000 bytes, the one that reaches it
    // included) and `more`.
    let mut replies = 0;
    while replies < 300 {
        if let ServerMsg::History { messages, more, .. } = raw_next(&mut ws, f).await.unwrap() {
            assert_eq!((messages.len(), more), (5, true));
            assert_eq!(messages.last().map(|m| m.seq), Some(20), "the newest ones");
            replies += 1;
        }
    }
}

#[tokio::test]
async fn an_expiring_token_closes_with_4002_when_it_expires_not_at_the_next_heartbeat() {
    // Heartbeat and timeout far away: only the token's expiry can end this connection soon.
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "60000"), ("CONNECTION_TIMEOUT", "120000")]).await;
    let f = Format::Json;
    let token =
        layer4_chat_server::auth::Auth::new(SECRET.as_bytes(), Duration::from_secs(1)).unwrap().issue(1, "brief");
    let started = std::time::Instant::now();
    let mut ws = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    raw_next(&mut ws, f).await.unwrap();
    let code =
        tokio::time::timeout(Duration::from_secs(5), raw_close_code(&mut ws, f)).await.expect("closed within 5 s");
    assert_eq!(code, Some(close::TOKEN_EXPIRED));
    assert!(started.elapsed() < Duration::from_millis(3500), "closed {:?} after connecting", started.elapsed());
    server.wait_metric("chat_disconnections_total", &[("reason", "token_expired")], |v| v == 1.0).await;
}

#[tokio::test]
async fn a_browser_upgrade_from_another_origin_is_refused_with_403() {
    let server = Server::start(&[("PUBLIC_URL", "https://chat.example.com/app")]).await;
    let open = |origin: Option<&'static str>| {
        let (url, token) = (server.ws_url(), server.token(1, "web"));
        async move {
            let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            if let Some(o) = origin {
                request.headers_mut().insert("origin", o.parse().unwrap());
            }
            tokio_tungstenite::connect_async(request).await.map(|_| ())
        }
    };
    match open(Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("bad_origin"), "{body}");
        }
        other => panic!("another origin: {other:?}"),
    }
    open(Some("https://chat.example.com")).await.expect("PUBLIC_URL's origin");
    open(None).await.expect("a client that is not a browser sends no Origin");
    let dev = Server::start(&[("APP_ENV", "development")]).await;
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(dev.ws_url()).unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", dev.token(1, "web")).parse().unwrap());
    request.headers_mut().insert("origin", "http://localhost:5173".parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("any origin in development");
}

#[tokio::test]
async fn json_arrays_and_messagepack_arrays_are_malformed() {
    let server = Server::start(&[]).await;
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "arr")), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tungstenite::Message::Text(r#"["ping", 1]"#.into())).await.unwrap();
    match raw_next(&mut ws, Format::Json).await {
        Ok(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("{other:?}"),
    }
    let mut mp = raw(&server.ws_url(), Some(&server.token(2, "arr2")), Some("l4.msgpack")).await.unwrap();
    raw_next(&mut mp, Format::MsgPack).await.unwrap();
    // {"type":"ping"} as an array of its fields: ["ping"].
    let array = rmp_serde::to_vec(&("ping",)).unwrap();
    assert_eq!(array[0], 0x91, "a one-element MessagePack array");
    mp.send(tungstenite::Message::Binary(array.into())).await.unwrap();
    match raw_next(&mut mp, Format::MsgPack).await {
        Ok(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_token_reaches_the_log_at_any_level() {
    let mut server = Server::start(&[("RUST_LOG", "trace")]).await;
    let token = server.token(7, "browser");
    let mut ws = raw(&format!("{}?token={token}", server.ws_url()), None, None).await.expect("?token= is accepted");
    raw_next(&mut ws, Format::Json).await.unwrap();
    raw_send(&mut ws, Format::Json, &ClientMsg::Join { room: "logged".into(), since: None }).await;
    raw_next(&mut ws, Format::Json).await.unwrap();
    let refused = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.refused-signature";
    assert_eq!(http_status(raw(&format!("{}?token={refused}", server.ws_url()), None, None).await.unwrap_err()), 401);
    assert_eq!(http_status(raw(&server.ws_url(), Some(refused), None).await.unwrap_err()), 401);
    drop(ws);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(log.contains("TRACE") || log.contains("trace"), "the trace level was on: {log:.2000}");
    let signature = token.rsplit('.').next().unwrap();
    // (mio's trace lines name its poll tokens, `token=Token(1)`: not ours.)
    for secret in [signature, "refused-signature", "?token=", "token=eyJ"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret:?} is in the log: {lines:#?}");
    }
}

#[tokio::test]
async fn a_message_nested_as_deep_as_a_frame_allows_is_malformed_not_a_crash() {
    use futures_util::SinkExt;
    let server = Server::start(&[]).await;
    let depth = 60_000;
    let mut deep = vec![0x82, 0xa4];
    deep.extend_from_slice(b"type\xa4ping\xa1x");
    deep.extend(std::iter::repeat_n(0x91, depth));
    deep.push(0xc0);
    let mut mp = raw(&server.ws_url(), Some(&server.token(1, "deep")), Some("l4.msgpack")).await.unwrap();
    raw_next(&mut mp, Format::MsgPack).await.unwrap();
    mp.send(tungstenite::Message::Binary(deep.into())).await.unwrap();
    match raw_next(&mut mp, Format::MsgPack).await {
        Ok(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("{other:?}"),
    }
    let json = format!(r#"{{"type":"ping","x":{}{}}}"#, "[".repeat(depth / 2), "]".repeat(depth / 2));
    let mut js = raw(&server.ws_url(), Some(&server.token(2, "deep2")), None).await.unwrap();
    raw_next(&mut js, Format::Json).await.unwrap();
    js.send(tungstenite::Message::Text(json.into())).await.unwrap();
    match raw_next(&mut js, Format::Json).await {
        Ok(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("{other:?}"),
    }
    raw_send(&mut mp, Format::MsgPack, &ClientMsg::Ping { t: Some(1) }).await;
    assert!(matches!(raw_next(&mut mp, Format::MsgPack).await, Ok(ServerMsg::Pong { t: Some(1) })));
}

/// `POST /ws/probe` on a connection of its own: status, code, `Retry-After`.
async fn probe(server: &Server, token: &str, origin: Option<&str>) -> (u16, String, Option<u64>) {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let path = format!("/ws/probe?token={token}");
    let (status, retry, body) = raw_http([127, 0, 0, 1].into(), server.port, "POST", &path, &origin, "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    (status, v["error"].as_str().unwrap_or("").to_string(), retry)
}

#[tokio::test]
async fn the_probe_answers_what_an_upgrade_would_get_and_takes_nothing() {
    let server = Server::start(&[
        ("MAX_CONNECTIONS", "2"),
        ("MAX_CONNECTIONS_PER_USER", "1"),
        ("ALLOWED_ORIGINS", "https://chat.example"),
    ])
    .await;
    let ann = server.token(1, "ann");
    assert_eq!(probe(&server, &ann, Some("https://chat.example")).await.0, 204);
    assert_eq!(probe(&server, "nonsense", None).await.1, "invalid_token");
    assert_eq!(probe(&server, &ann, Some("https://evil.example")).await.1, "bad_origin");
    // The answer names the asking page's origin, so a page on another origin can read it.
    let path = format!("/ws/probe?token={ann}");
    let (status, head, _) = crate::web::request(&server, "POST", &path, "Origin: https://chat.example\r\n").await;
    assert_eq!(status, 204);
    assert_eq!(header(&head, "access-control-allow-origin"), "https://chat.example");
    assert_eq!(header(&head, "access-control-expose-headers"), "retry-after");
    // Probes are not refused upgrades: the counters hold what upgrades did only.
    assert_eq!(server.metric("chat_connections_rejected_total", &[("reason", "auth")]).await, 0.0);
    // Probes took nothing: ann's one place and the two slots are all free.
    let mut first = raw(&server.ws_url(), Some(&ann), None).await.unwrap();
    raw_next(&mut first, Format::Json).await.unwrap();
    assert_eq!(probe(&server, &ann, None).await, (429, "too_many_connections".to_string(), Some(5)));
    let bob = server.token(2, "bob");
    let mut second = raw(&server.ws_url(), Some(&bob), None).await.unwrap();
    raw_next(&mut second, Format::Json).await.unwrap();
    let (status, code, retry) = probe(&server, &server.token(3, "cy"), None).await;
    assert_eq!((status, code.as_str()), (503, "full"));
    assert!(retry.is_some_and(|r| r >= 1));
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while probe(&server, &ann, None).await.0 != 204 {
        assert!(std::time::Instant::now() < deadline, "ann's place is not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
