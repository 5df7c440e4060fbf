//! README "Resume": after a dropped connection or a killed server, clients get every
//! message exactly once and in order, and resent messages are stored once.

use std::collections::BTreeSet;

use layer4_chat_client::Event;
use layer4_chat_client::protocol::Format;

use crate::helper::*;

/// A publisher sends 300 messages in the background while the subscriber drops its
/// socket three times.
async fn dropped_connections_lose_nothing(backend: Backend, env: &[(&str, &str)]) -> Server {
    const N: usize = 300;
    let server = Server::start_on(backend, env).await;
    let mut sub = server.client(1, "sub", Format::Json);
    let mut publisher = server.client(2, "pub", Format::MsgPack);
    joined(&mut sub, "feed").await;
    joined(&mut publisher, "feed").await;
    let sending = tokio::spawn(async move {
        for i in 0..N {
            publisher.send("feed", &i.to_string()).await.unwrap();
            if i % 10 == 9 {
                // Pacing, so the drops below happen while messages are still coming.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        publisher
    });
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(messages(&mut sub, 50).await);
        sub.drop_connection().await.unwrap();
        // Keep what arrives until the new connection is up, so each drop is a real one.
        loop {
            match expect_event(&mut sub, "reconnect", |_| true).await {
                Event::Message(m) => got.push(m),
                Event::Connected { resumed: true, .. } => break,
                _ => {}
            }
        }
    }
    got.extend(messages(&mut sub, N - got.len()).await);
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "{backend:?} {env:?}");
    sending.await.unwrap();
    server.wait_metric("chat_resumes_total", &[], |v| v >= 3.0).await;
    server
}

#[tokio::test]
async fn resume_after_a_dropped_connection_is_served_from_the_room_cache() {
    let server = dropped_connections_lose_nothing(Backend::Sqlite, &[]).await;
    assert!(server.metric("chat_replayed_messages_total", &[("source", "cache")]).await > 0.0);
    assert_eq!(server.metric("chat_replayed_messages_total", &[("source", "database")]).await, 0.0);
}

#[tokio::test]
async fn resume_beyond_the_cache_is_served_from_the_database_on_both_backends() {
    for backend in BACKENDS {
        let server = dropped_connections_lose_nothing(backend, &[("ROOM_CACHE", "0")]).await;
        assert!(server.metric("chat_replayed_messages_total", &[("source", "database")]).await > 0.0, "{backend:?}");
    }
}

#[tokio::test]
async fn a_killed_server_loses_no_message_and_stores_none_twice_on_both_backends() {
    for backend in BACKENDS {
        let mut server = Server::start_on(backend, &[]).await;
        let mut sub = server.client(1, "sub", Format::MsgPack);
        let mut publisher = server.client(2, "pub", Format::Json);
        joined(&mut sub, "feed").await;
        joined(&mut publisher, "feed").await;
        for i in 0..50 {
            publisher.send("feed", &i.to_string()).await.unwrap();
        }
        let mut got = messages(&mut sub, 20).await;
        server.kill();
        for i in 50..100 {
            publisher.send("feed", &i.to_string()).await.unwrap();
        }
        server.spawn().await;
        got.extend(messages(&mut sub, 100 - got.len()).await);
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "{backend:?}");
        let bodies: BTreeSet<u32> = got.iter().map(|m| m.body.parse().unwrap()).collect();
        assert_eq!(bodies, (0..100).collect(), "{backend:?}: every message once");
        // Every send is acked, and the store holds exactly 100 rows.
        let mut acked = BTreeSet::new();
        while acked.len() < 100 {
            if let Event::Acked { seq, .. } =
                expect_event(&mut publisher, "ack", |e| matches!(e, Event::Acked { .. })).await
            {
                acked.insert(seq);
            }
        }
        assert_eq!(acked, (1..=100).collect(), "{backend:?}");
        publisher.history("feed", None, Some(500)).await.unwrap();
        let Event::History { messages, more, .. } =
            expect_event(&mut publisher, "history", |e| matches!(e, Event::History { .. })).await
        else {
            unreachable!()
        };
        assert_eq!((messages.len(), more), (100, false), "{backend:?}");
    }
}

#[tokio::test]
async fn a_large_backlog_queued_while_the_server_is_down_is_stored_once_each_in_order() {
    // 6 MB queued offline: resent a window at a time, with the echoes read in between.
    let mut server = Server::start(&[("MAX_MESSAGE_SIZE", "4096"), ("QUEUE_MAX_BYTES", "262144")]).await;
    let mut client = server.client(1, "ann", Format::Json);
    joined(&mut client, "r").await;
    server.kill();
    expect_event(&mut client, "disconnect", |e| matches!(e, Event::Disconnected { .. })).await;
    // 3000 × 2 KB: more than the socket buffers hold, so it cannot all be written unread.
    let pad = "x".repeat(2000);
    for i in 0..3000 {
        client.send("r", &format!("{i:04} {pad}")).await.unwrap();
    }
    server.spawn().await;
    let got = messages(&mut client, 3000).await;
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=3000).collect::<Vec<_>>());
    let bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    let sent: Vec<String> = (0..3000).map(|i| format!("{i:04} {pad}")).collect();
    assert_eq!(bodies, sent, "stored once each, in the order sent");
    assert_eq!(server.metric("chat_disconnections_total", &[("reason", "slow_consumer")]).await, 0.0);
}
