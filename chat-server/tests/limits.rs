//! README "Limits": what an abusive client meets. Login floods are refused per address
//! (a client behind a trusted proxy counts by its forwarded address) and per user name,
//! registration can be closed, and connections per user, rooms per worker, room
//! creations per user and requests per connection are bounded, each with its own code;
//! the reference client keeps under the request rate by itself.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use layer4_chat_client::protocol::{ClientMsg, ErrorCode, Format, ServerMsg, close};

use crate::helper::*;

/// A POST from `source` (see `raw_http`).
async fn post_from(source: IpAddr, port: u16, path: &str, body: &str, extra: &str) -> (u16, Option<u64>, String) {
    raw_http(source, port, "POST", path, extra, body).await
}

fn credentials(user: &str, password: &str) -> String {
    serde_json::json!({ "username": user, "password": password }).to_string()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_login_flood_from_one_address_is_refused_and_another_address_logs_in_fast() {
    let server = Server::start(&[]).await;
    let port = server.port;
    layer4_chat_client::http::register(&server.base(), "legit", "legit-password").await.unwrap();
    let before = server.metric("chat_memory_rss_bytes", &[]).await;
    // What one login costs on this machine now (an Argon2 check): the bound below is
    // counted in these, not in seconds, so a loaded machine does not fail the test.
    let mut one = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let (status, _, body) =
            post_from(ip("127.0.0.2"), port, "/api/auth/login", &credentials("legit", "legit-password"), "").await;
        assert_eq!(status, 200, "{body}");
        one = one.max(t.elapsed());
    }
    // 300 logins at once from 127.0.0.1, each to its own user name with a wrong password.
    let flood: Vec<_> = (0..300)
        .map(|i| {
            tokio::spawn(async move {
                post_from(ip("127.0.0.1"), port, "/api/auth/login", &credentials(&format!("user{i}"), "wrong-pass"), "")
                    .await
            })
        })
        .collect();
    // Meanwhile, logins from another address.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let (status, _, body) =
            post_from(ip("127.0.0.2"), port, "/api/auth/login", &credentials("legit", "legit-password"), "").await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    let mut limited = 0;
    for task in flood {
        let (status, retry, body) = task.await.unwrap();
        match status {
            401 => {}
            429 => {
                assert!(body.contains("rate_limited") && retry.is_some_and(|r| r >= 1), "{body} {retry:?}");
                limited += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // The flood's first 30 reach the two hashing threads: a login from elsewhere may
    // wait behind them (about 16 logins' time), never behind all 300 (150).
    assert!(
        slowest < (one * 40).max(Duration::from_secs(1)),
        "a login from another address took {slowest:?} (one login alone: {one:?})"
    );
    assert!(limited >= 300 - 30, "AUTH_RATE_PER_IP (30 a minute) let {} through", 300 - limited);
    let grown = server.metric("chat_memory_rss_bytes", &[]).await - before;
    assert!(grown < 50e6, "RSS grew {grown} bytes");
    assert!(server.metric("chat_rate_limited_total", &[]).await >= f64::from(limited));
}

#[tokio::test]
async fn failed_logins_are_counted_per_user_name_and_a_trusted_proxy_s_client_by_its_address() {
    let server =
        Server::start(&[("LOGIN_FAILURES_PER_USER", "3"), ("AUTH_RATE_PER_IP", "5"), ("TRUSTED_PROXIES", "127.0.0.1")])
            .await;
    let port = server.port;
    layer4_chat_client::http::register(&server.base(), "target", "right-password").await.unwrap();
    // Three failures from three addresses (behind the trusted loopback proxy).
    for n in 1..=3 {
        let xff = format!("X-Forwarded-For: 203.0.113.{n}\r\n");
        let (status, _, _) =
            post_from(ip("127.0.0.1"), port, "/api/auth/login", &credentials("target", "wrong-password"), &xff).await;
        assert_eq!(status, 401);
    }
    // The fourth attempt, even with the right password, waits.
    let xff = "X-Forwarded-For: 203.0.113.9\r\n";
    let (status, retry, body) =
        post_from(ip("127.0.0.1"), port, "/api/auth/login", &credentials("target", "right-password"), xff).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited") && retry.is_some_and(|r| (1..=20).contains(&r)), "{body} {retry:?}");
    // Per address: 203.0.113.9 has its own budget of 5; the direct peer 127.0.0.1 is
    // the proxy, never counted in its place.
    // (Each attempt names another user: LOGIN_FAILURES_PER_USER is 3.)
    for n in 0..4 {
        let xff = "X-Forwarded-For: 198.51.100.7\r\n";
        let body = credentials(&format!("a{n}"), "y-password");
        let (status, _, _) = post_from(ip("127.0.0.1"), port, "/api/auth/login", &body, xff).await;
        assert_eq!(status, 401);
    }
    // A client that is not a trusted proxy cannot pick its address with the header.
    for n in 0..5 {
        let xff = format!("X-Forwarded-For: 192.0.2.{n}\r\n");
        let body = credentials(&format!("b{n}"), "y-password");
        let (status, _, _) = post_from(ip("127.0.0.3"), port, "/api/auth/login", &body, &xff).await;
        assert_eq!(status, 401);
    }
    let body = credentials("c0", "y-password");
    let (status, _, _) = post_from(ip("127.0.0.3"), port, "/api/auth/login", &body, "").await;
    assert_eq!(status, 429, "127.0.0.3 spent its 5, whatever it forwarded");
}

#[tokio::test]
async fn registration_is_closed_in_production_unless_opened() {
    let server = Server::start(&[("REGISTRATION", "")]).await; // production default
    let (status, _, body) =
        post_from(ip("127.0.0.1"), server.port, "/api/auth/register", &credentials("newbie", "pass-word"), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("registration_closed"), "{body}");
    let dev = Server::start(&[("REGISTRATION", ""), ("APP_ENV", "development")]).await;
    let (status, _, body) =
        post_from(ip("127.0.0.1"), dev.port, "/api/auth/register", &credentials("newbie", "pass-word"), "").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_user_has_at_most_max_connections_per_user() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_USER", "2")]).await;
    let token = server.token(5, "many");
    let mut first = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    raw_next(&mut first, Format::Json).await.unwrap();
    let mut second = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    raw_next(&mut second, Format::Json).await.unwrap();
    match raw(&server.ws_url(), Some(&token), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("too_many_connections"), "{body}");
        }
        other => panic!("a third connection: {:?}", other.map(|_| ())),
    }
    // Another user is not affected; and a closed connection gives its slot back.
    let mut other = raw(&server.ws_url(), Some(&server.token(6, "other")), None).await.unwrap();
    raw_next(&mut other, Format::Json).await.unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut ws) = raw(&server.ws_url(), Some(&token), None).await {
            raw_next(&mut ws, Format::Json).await.unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.metric("chat_connections_rejected_total", &[("reason", "per_user")]).await >= 1.0);
}

/// The error code of the next `error` on `ws` (other messages are skipped).
async fn next_error(ws: &mut RawWs) -> ErrorCode {
    loop {
        match raw_next(ws, Format::Json).await {
            Ok(ServerMsg::Error { code, .. }) => return code,
            Ok(_) => {}
            Err(code) => panic!("closed with {code:?}"),
        }
    }
}

#[tokio::test]
async fn rooms_are_bounded_per_worker_and_room_creation_per_user() {
    let server = Server::start(&[("MAX_ROOMS", "3"), ("ROOM_CREATION_RATE", "2")]).await;
    let join = |room: &str| ClientMsg::Join { room: room.into(), since: None };
    let mut ann = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    raw_next(&mut ann, Format::Json).await.unwrap();
    for room in ["a1", "a2"] {
        raw_send(&mut ann, Format::Json, &join(room)).await;
        assert!(matches!(raw_next(&mut ann, Format::Json).await, Ok(ServerMsg::Joined { .. })));
    }
    raw_send(&mut ann, Format::Json, &join("a3")).await;
    assert_eq!(next_error(&mut ann).await, ErrorCode::RateLimited, "ann's third new room within a minute");
    let mut bob = raw(&server.ws_url(), Some(&server.token(2, "bob")), None).await.unwrap();
    raw_next(&mut bob, Format::Json).await.unwrap();
    raw_send(&mut bob, Format::Json, &join("a1")).await;
    assert!(matches!(raw_next(&mut bob, Format::Json).await, Ok(ServerMsg::Joined { .. })), "a room in memory");
    raw_send(&mut bob, Format::Json, &join("b1")).await;
    assert!(matches!(raw_next(&mut bob, Format::Json).await, Ok(ServerMsg::Joined { .. })));
    raw_send(&mut bob, Format::Json, &join("b2")).await;
    assert_eq!(next_error(&mut bob).await, ErrorCode::TooManyRooms, "the worker holds MAX_ROOMS (3)");
    assert!(server.metric("chat_rate_limited_total", &[]).await >= 1.0);
}

#[tokio::test]
async fn a_request_flood_on_one_connection_is_closed_with_1008() {
    let server = Server::start(&[("MAX_REQUESTS_PER_SECOND", "20")]).await;
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "flood")), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap();
    // Within the rate: answered.
    raw_send(&mut ws, Format::Json, &ClientMsg::Ping { t: Some(1) }).await;
    assert!(matches!(raw_next(&mut ws, Format::Json).await, Ok(ServerMsg::Pong { .. })));
    use futures_util::SinkExt;
    for _ in 0..200 {
        if ws.send(tokio_tungstenite::tungstenite::Message::Ping(Vec::new().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(raw_close_code(&mut ws, Format::Json).await, Some(close::POLICY));
    server.wait_metric("chat_disconnections_total", &[("reason", "abuse")], |v| v >= 1.0).await;
}

/// The reference client paces itself under the rate its welcome gives: 300 sends in a
/// loop against a server that takes 200 frames a second are all stored, none closed.
#[tokio::test]
async fn the_reference_client_paces_its_sends_under_the_server_s_rate() {
    let server = Server::start(&[("MAX_REQUESTS_PER_SECOND", "200")]).await;
    let mut client = server.client(1, "eager", Format::Json);
    joined(&mut client, "r").await;
    let sender = client.sender();
    let sending = tokio::spawn(async move {
        for i in 0..300 {
            sender.send("r", &i.to_string()).await.unwrap();
        }
    });
    let got = messages(&mut client, 300).await;
    sending.await.unwrap();
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=300).collect::<Vec<_>>());
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "abuse")]).await, 0.0);
}

#[tokio::test]
async fn password_checks_past_the_hashing_queue_get_503_at_once() {
    // Two hash at once and one may wait: of 40 logins at once from 40 addresses, most are
    // busy.
    let server = Server::start(&[("HASHING_QUEUE", "1"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let port = server.port;
    let logins: Vec<_> = (0..40)
        .map(|n| {
            tokio::spawn(async move {
                let xff = format!("X-Forwarded-For: 198.51.100.{n}\r\n");
                let t = Instant::now();
                let answer = post_from(
                    ip("127.0.0.1"),
                    port,
                    "/api/auth/login",
                    &credentials(&format!("u{n}"), "pass-word"),
                    &xff,
                )
                .await;
                (answer, t.elapsed())
            })
        })
        .collect();
    let (mut busy, mut checked) = (0, 0);
    for task in logins {
        let ((status, retry, body), took) = task.await.unwrap();
        match status {
            503 => {
                assert!(body.contains("busy") && retry == Some(1), "{body}");
                assert!(took < Duration::from_millis(500), "refused at once, not queued: {took:?}");
                busy += 1;
            }
            401 => checked += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert!(busy >= 1 && checked >= 3, "{busy} busy, {checked} checked");
    assert_eq!(busy + checked, 40);
}
