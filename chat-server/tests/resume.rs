//! README "Resume": after a dropped connection or a killed server, clients get every
//! message exactly once and in order, and resent messages are stored once.

use std::collections::BTreeSet;
use std::time::Duration;

use layer4_chat_client::Event;
use layer4_chat_client::protocol::{ClientMsg, Format, ServerMsg};

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

/// Issue 14's replay attack: resumes that ask for 2 rooms of 60 KB messages (48 MB
/// each) and never read. Each costs at most its queue bound; `WRITE_TIMEOUT` closes them
/// with 4001; a client that reads gets every message once, in order.
#[tokio::test]
async fn resumes_that_never_read_cost_their_bound_and_a_reader_gets_every_message_once() {
    const N: u64 = 400;
    let server = Server::start(&[("WRITE_TIMEOUT", "2000")]).await;
    let f = Format::MsgPack;
    let mut writer = server.client(1, "writer", f);
    let body = "x".repeat(60_000);
    for room in ["big1", "big2"] {
        joined(&mut writer, room).await;
        for _ in 0..N {
            writer.send(room, &body).await.unwrap();
        }
    }
    server.wait_metric("chat_messages_in_total", &[], |v| v >= 2.0 * N as f64).await;
    drop(writer);
    let before = server.metric("chat_memory_rss_bytes", &[]).await;
    let resume = ClientMsg::Resume { rooms: [("big1".to_owned(), 0), ("big2".to_owned(), 0)].into() };
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut ws = small_window(&server, &format!("idle{i}")).await;
        raw_send(&mut ws, Format::Json, &resume).await;
        idle.push(ws); // never read
    }
    let mut peak = 0.0f64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        peak = peak.max(server.metric("chat_memory_rss_bytes", &[]).await - before);
        if server.metric("chat_disconnections_total", &[("reason", "slow_consumer")]).await >= 20.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the idle resumes were not closed within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(peak < 64e6, "20 idle resumes of 48 MB grew the server by {:.1} MB", peak / 1e6);
    eprintln!("peak growth with 20 idle resumes: {:.1} MB", peak / 1e6);
    // What they were sent ends with their close: 4001.
    for ws in &mut idle {
        assert_eq!(raw_close_code(ws, Format::Json).await, Some(layer4_chat_client::protocol::close::RESUME));
    }
    // A reader resuming the same rooms gets each message once, in order.
    let mut reader = raw(&server.ws_url(), Some(&server.token(2, "reader")), None).await.unwrap();
    raw_next(&mut reader, Format::Json).await.unwrap();
    raw_send(&mut reader, Format::Json, &resume).await;
    let mut next = std::collections::HashMap::from([("big1".to_owned(), 1u64), ("big2".to_owned(), 1u64)]);
    let mut got = 0;
    while got < 2 * N {
        match raw_next(&mut reader, Format::Json).await {
            Ok(ServerMsg::Message(m)) => {
                let want = next.get_mut(&m.room).unwrap();
                assert_eq!(m.seq, *want, "{} in order, once", m.room);
                assert_eq!(m.body.len(), 60_000);
                *want += 1;
                got += 1;
            }
            Ok(ServerMsg::Joined { seq, .. }) => assert_eq!(seq, N),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(code) => panic!("closed with {code:?} after {got} messages"),
        }
    }
}

/// A reload on SQLite: the new worker opens the file while the old one still runs, and
/// the old one's exit (the last of its connections closing) must not take the WAL from
/// under the new one: nothing in a worker may open the database's files once SQLite
/// holds its locks on them (closing any descriptor drops them all).
#[tokio::test]
async fn a_second_worker_on_the_same_sqlite_file_outlives_the_first_without_an_io_error() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/chat.db", shared.path().display());
    let env = [("DATABASE_URL", url.as_str())];
    let mut old = Server::start(&env).await;
    let mut writer = old.client(1, "ann", Format::Json);
    joined(&mut writer, "r").await;
    for i in 0..20 {
        writer.send("r", &format!("before {i}")).await.unwrap();
    }
    messages(&mut writer, 20).await;
    let new = Server::start(&env).await;
    // The new worker writes too (frames in the shared WAL, read connections open).
    let mut early = new.client(3, "cat", Format::Json);
    joined(&mut early, "r2").await;
    for i in 0..20 {
        early.send("r2", &format!("new {i}")).await.unwrap();
    }
    messages(&mut early, 20).await;
    // The old worker ends as a reload ends it: SIGTERM, drain, exit 0.
    let pid = nix::unistd::Pid::from_raw(old.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(old.wait_exit(Duration::from_secs(20)).await.success());
    // The last process to close a WAL database checkpoints and deletes its -wal: the old
    // worker must not have thought itself the last (the new one's locks were kept).
    assert!(shared.path().join("chat.db-wal").exists(), "the old worker deleted the WAL the new one uses");
    // Many at once: the pools open more connections now, after the old worker left.
    let mut crowd = Vec::new();
    for k in 0..12 {
        crowd.push(new.client(10 + k, &format!("c{k}"), Format::Json));
    }
    for c in &crowd {
        c.join("r2").await.unwrap();
        c.history("r2", None, Some(50)).await.unwrap();
    }
    for (k, c) in crowd.iter_mut().enumerate() {
        expect_event(c, "joined", |e| matches!(e, Event::Joined { .. })).await;
        let h = expect_event(c, "history", |e| matches!(e, Event::History { .. })).await;
        let Event::History { messages: stored, .. } = h else { unreachable!() };
        assert_eq!(stored.len(), 20, "client {k}: the new worker's own messages");
    }
    let mut reader = new.client(2, "bob", Format::Json);
    joined(&mut reader, "r").await;
    reader.history("r", None, Some(100)).await.unwrap();
    let history = expect_event(&mut reader, "history", |e| matches!(e, Event::History { .. })).await;
    let Event::History { messages: stored, .. } = history else { unreachable!() };
    assert_eq!(stored.len(), 20, "the old worker's messages, read by the new one");
    let mut again = new.client(1, "ann", Format::Json);
    joined(&mut again, "r").await;
    for i in 0..20 {
        again.send("r", &format!("after {i}")).await.unwrap();
    }
    let got = messages(&mut reader, 20).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (21..=40).collect::<Vec<_>>());
    assert!(!new.stdout().contains("disk I/O error"), "{}", new.stdout());
}
