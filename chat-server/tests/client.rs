//! README "Client library": heartbeat, backoff with full jitter, giving up.

use std::time::Duration;

use layer4_chat_client::protocol::Format;
use layer4_chat_client::{Client, ClientConfig, Event};

use nix::sys::signal::Signal;

use crate::helper::*;

#[tokio::test]
async fn an_unanswered_ping_makes_the_client_reconnect_and_resume() {
    let server = Server::start(&[]).await;
    let mut config = ClientConfig::new(server.ws_url(), server.token(1, "ann")).format(Format::Json);
    config.ping_after = Duration::from_millis(200);
    config.pong_timeout = Duration::from_millis(300);
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    let mut client = Client::start(config);
    joined(&mut client, "r").await;
    server.signal(Signal::SIGSTOP);
    let event = expect_event(&mut client, "disconnect", |e| matches!(e, Event::Disconnected { .. })).await;
    server.signal(Signal::SIGCONT);
    let Event::Disconnected { reason, .. } = event else { unreachable!() };
    assert!(reason.contains("ping"), "{reason}");
    expect_event(&mut client, "reconnect", |e| matches!(e, Event::Connected { resumed: true, .. })).await;
    expect_event(&mut client, "rejoined", |e| matches!(e, Event::Joined { .. })).await;
}

#[tokio::test]
async fn reconnects_back_off_with_full_jitter_and_give_up_after_max_attempts() {
    let mut server = Server::start(&[]).await;
    let mut config = ClientConfig::new(server.ws_url(), server.token(1, "ann"));
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(80);
    config.max_attempts = Some(6);
    let mut client = Client::start(config);
    expect_event(&mut client, "connected", |e| matches!(e, Event::Connected { .. })).await;
    server.kill();
    let mut delays = Vec::new();
    loop {
        match expect_event(&mut client, "disconnect or close", |e| {
            matches!(e, Event::Disconnected { .. } | Event::Closed { .. })
        })
        .await
        {
            Event::Disconnected { retry_in, .. } => delays.push(retry_in),
            Event::Closed { reason } => {
                assert!(reason.contains("gave up after 6 attempts"), "{reason}");
                break;
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(delays.len(), 6);
    for (attempt, delay) in delays.iter().enumerate() {
        let ceiling = Duration::from_millis(80).min(Duration::from_millis(10) * (1 << (attempt + 1)));
        assert!(*delay <= ceiling, "attempt {}: {delay:?} > {ceiling:?}", attempt + 1);
    }
    let first = delays[0];
    assert!(delays.iter().any(|d| *d != first), "jitter: {delays:?}");
}

#[tokio::test]
async fn a_body_over_the_servers_limit_is_refused_by_the_client_without_losing_the_connection() {
    let server = Server::start(&[("MAX_MESSAGE_SIZE", "1024")]).await;
    let mut client = server.client(1, "ann", Format::Json);
    joined(&mut client, "r").await;
    let big = client.send("r", &"x".repeat(2000)).await.unwrap();
    let Event::Error { code, id, .. } = expect_event(&mut client, "error", |e| matches!(e, Event::Error { .. })).await
    else {
        unreachable!()
    };
    assert_eq!((code, id), (layer4_chat_client::protocol::ErrorCode::BadBody, Some(big)));
    client.send("r", "small").await.unwrap();
    assert_eq!(messages(&mut client, 1).await[0].body, "small");
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "too_big")]).await, 0.0);
}

/// A send refused `unavailable` is tried again on the same connection after the
/// backoff, until it is stored: once, and without a reconnection.
#[tokio::test]
async fn a_send_that_meets_a_storage_outage_is_stored_once_after_it() {
    let server = Server::start_on(Backend::Postgres, &[]).await;
    let mut config = ClientConfig::new(server.ws_url(), server.token(1, "ann"));
    config.backoff_base = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(400);
    let mut client = Client::start(config);
    joined(&mut client, "r").await;
    server.psql("ALTER TABLE messages RENAME TO messages_away");
    let id = client.send("r", "during the outage").await.unwrap();
    let error = expect_event(&mut client, "error", |e| matches!(e, Event::Error { .. })).await;
    assert!(
        matches!(&error, Event::Error { code: layer4_chat_client::protocol::ErrorCode::Unavailable, id: Some(i), .. } if *i == id),
        "{error:?}"
    );
    // Tried again (and refused again) while the table is away.
    expect_event(&mut client, "a second refusal", |e| matches!(e, Event::Error { .. })).await;
    server.psql("ALTER TABLE messages_away RENAME TO messages");
    // The broadcast comes before the ack; wait for both.
    let (mut delivered, mut acked) = (Vec::new(), None);
    while acked.is_none() {
        let event = expect_event(&mut client, "message or ack", |e| {
            matches!(e, Event::Message(_) | Event::Acked { .. } | Event::Disconnected { .. })
        })
        .await;
        match event {
            Event::Message(m) => delivered.push(m),
            Event::Acked { id, seq, .. } => acked = Some((id, seq)),
            other => panic!("the connection was fine: {other:?}"),
        }
    }
    assert_eq!(acked, Some((id, 1)));
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body, "during the outage");
    client.send("r", "after").await.unwrap();
    let next = messages(&mut client, 1).await;
    assert_eq!((next[0].seq, next[0].body.as_str()), (2, "after"), "stored once: the next one is 2");
}

/// A resume the server cannot serve (its database fails while it loads the room) is
/// retried after the backoff until it works: the client never silently stops following
/// a room, and gets what was sent meanwhile once and in order.
#[tokio::test]
async fn a_resume_that_meets_a_storage_outage_is_retried_until_the_room_is_back() {
    let mut server = Server::start_on(Backend::Postgres, &[]).await;
    let mut sub = server.client(1, "sub", Format::Json);
    joined(&mut sub, "r").await;
    let mut publisher = server.client(2, "pub", Format::Json);
    joined(&mut publisher, "r").await;
    for i in 0..5 {
        publisher.send("r", &format!("m{i}")).await.unwrap();
    }
    assert_eq!(messages(&mut sub, 5).await.len(), 5);
    // A restarted server has no room in memory: the resume must load it, and cannot.
    server.psql("ALTER TABLE messages RENAME TO messages_away");
    server.kill();
    server.spawn().await;
    let refused = expect_event(&mut sub, "an unavailable resume", |e| {
        matches!(e, Event::Error { code: layer4_chat_client::protocol::ErrorCode::Unavailable, .. })
    })
    .await;
    assert!(matches!(&refused, Event::Error { room: Some(r), id: None, .. } if r == "r"), "{refused:?}");
    server.psql("ALTER TABLE messages_away RENAME TO messages");
    let mut again = server.client(2, "pub", Format::Json);
    joined(&mut again, "r").await;
    for i in 5..10 {
        again.send("r", &format!("m{i}")).await.unwrap();
    }
    let got = messages(&mut sub, 5).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (6..=10).collect::<Vec<_>>());
}

/// `l4chat chat` for scripts: piped lines are sent and it exits 0 only once they are
/// stored; a refused token is one sentence and exit 1 at once.
#[tokio::test]
async fn l4chat_sends_piped_lines_and_exits_once_they_are_stored_and_a_bad_token_is_one_sentence() {
    use std::io::Write;
    let server = Server::start(&[]).await;
    let base = server.base();
    let chat = move |token: String| {
        let mut child = std::process::Command::new(l4chat())
            .args(["--server", &base, "chat", "--history", "0", "piped"])
            .env("L4_TOKEN", token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"one\n\ntwo\n").unwrap();
        child
    };
    let out = tokio::task::spawn_blocking({
        let child = chat(server.token(7, "script"));
        move || child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Stored before it exited: a reader joining now finds both in the history.
    let mut reader = server.client(8, "reader", Format::Json);
    joined(&mut reader, "piped").await;
    reader.history("piped", None, Some(10)).await.unwrap();
    let Event::History { messages, .. } =
        expect_event(&mut reader, "history", |e| matches!(e, Event::History { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["one", "two"]);

    let started = std::time::Instant::now();
    let child = chat("not-a-token".into());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "it gave up at once");
    assert_eq!(
        err.trim(),
        "l4chat: the server refused the connection (HTTP 401): the token is not valid (invalid_token)"
    );
}
