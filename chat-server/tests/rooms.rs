//! README "Protocol": rooms, ordered delivery, history, idempotent sends, both encodings,
//! on SQLite and PostgreSQL.

use layer4_chat_client::Event;
use layer4_chat_client::protocol::{ClientMsg, ErrorCode, Format, ServerMsg};

use crate::helper::*;

#[tokio::test]
async fn two_clients_exchange_messages_in_order_on_both_backends() {
    for backend in BACKENDS {
        let server = Server::start_on(backend, &[]).await;
        let mut ann = server.client(1, "ann", Format::Json);
        let mut bob = server.client(2, "bob", Format::Json);
        joined(&mut ann, "lobby").await;
        joined(&mut bob, "lobby").await;
        for i in 0..20 {
            ann.send("lobby", &format!("ann {i}")).await.unwrap();
            bob.send("lobby", &format!("bob {i}")).await.unwrap();
        }
        let seen_by_ann = messages(&mut ann, 40).await;
        let seen_by_bob = messages(&mut bob, 40).await;
        assert_eq!(seen_by_ann, seen_by_bob, "{backend:?}");
        let seqs: Vec<u64> = seen_by_ann.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "{backend:?}");
        for who in ["ann", "bob"] {
            let bodies: Vec<&str> = seen_by_ann.iter().filter(|m| m.user == who).map(|m| m.body.as_str()).collect();
            let sent: Vec<String> = (0..20).map(|i| format!("{who} {i}")).collect();
            assert_eq!(bodies, sent, "{backend:?}: each sender's messages keep their order");
        }
    }
}

#[tokio::test]
async fn history_pages_backwards_on_both_backends() {
    for backend in BACKENDS {
        let server = Server::start_on(backend, &[]).await;
        let mut ann = server.client(1, "ann", Format::MsgPack);
        ann.join("news").await.unwrap();
        for i in 1..=25 {
            ann.send("news", &format!("m{i}")).await.unwrap();
        }
        messages(&mut ann, 25).await;
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            ann.history("news", before, Some(10)).await.unwrap();
            let Event::History { messages, more, .. } =
                expect_event(&mut ann, "history", |e| matches!(e, Event::History { .. })).await
            else {
                unreachable!()
            };
            before = messages.first().map(|m| m.seq);
            pages.push(messages.iter().map(|m| m.seq).collect::<Vec<_>>());
            if !more {
                break;
            }
        }
        let expected: Vec<Vec<u64>> = vec![(16..=25).collect(), (6..=15).collect(), (1..=5).collect()];
        assert_eq!(pages, expected, "{backend:?}");
    }
}

#[tokio::test]
async fn a_resent_id_is_acked_with_its_first_sequence_and_not_delivered_twice() {
    let server = Server::start(&[]).await;
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    let f = Format::Json;
    raw_next(&mut ws, f).await.unwrap();
    raw_send(&mut ws, f, &ClientMsg::Join { room: "r".into(), since: None }).await;
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Joined { room: "r".into(), seq: 0 });
    let send = ClientMsg::Send { room: "r".into(), id: "once".into(), body: "hi".into() };
    raw_send(&mut ws, f, &send).await;
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Message(m) if m.seq == 1));
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Ack { room: "r".into(), id: "once".into(), seq: 1 });
    raw_send(&mut ws, f, &send).await;
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Ack { room: "r".into(), id: "once".into(), seq: 1 });
    raw_send(&mut ws, f, &ClientMsg::Send { room: "r".into(), id: "twice".into(), body: "x".into() }).await;
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Message(m) if m.seq == 2 && m.id == "twice"));
}

#[tokio::test]
async fn after_a_send_is_not_stored_the_connection_s_later_sends_wait_for_its_resend() {
    let server = Server::start_on(Backend::Postgres, &[]).await;
    let mut ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
    let f = Format::Json;
    raw_next(&mut ws, f).await.unwrap();
    raw_send(&mut ws, f, &ClientMsg::Join { room: "r".into(), since: None }).await;
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Joined { room: "r".into(), seq: 0 });
    let send = |id: &str| ClientMsg::Send { room: "r".into(), id: id.into(), body: format!("body {id}") };
    let refused = |id: &str, m: ServerMsg| matches!(m, ServerMsg::Error { code: ErrorCode::Unavailable, id: Some(i), .. } if i == id);
    server.psql("ALTER TABLE messages RENAME TO messages_away");
    raw_send(&mut ws, f, &send("first")).await;
    let m = raw_next(&mut ws, f).await.unwrap();
    assert!(refused("first", m.clone()), "{m:?}");
    server.psql("ALTER TABLE messages_away RENAME TO messages");
    // The database is back, but storing "second" now would put it before "first".
    raw_send(&mut ws, f, &send("second")).await;
    let m = raw_next(&mut ws, f).await.unwrap();
    assert!(refused("second", m.clone()), "{m:?}");
    assert!(matches!(&m, ServerMsg::Error { text, .. } if text.contains("resend first first")), "{m:?}");
    for (id, seq) in [("first", 1), ("second", 2)] {
        raw_send(&mut ws, f, &send(id)).await;
        assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Message(m) if m.seq == seq && m.id == id));
        assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Ack { room: "r".into(), id: id.into(), seq });
    }
    // Leaving the room forgets a refused send.
    server.psql("ALTER TABLE messages RENAME TO messages_away");
    raw_send(&mut ws, f, &send("third")).await;
    assert!(refused("third", raw_next(&mut ws, f).await.unwrap()));
    server.psql("ALTER TABLE messages_away RENAME TO messages");
    raw_send(&mut ws, f, &ClientMsg::Leave { room: "r".into() }).await;
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Left { room: "r".into() });
    raw_send(&mut ws, f, &ClientMsg::Join { room: "r".into(), since: None }).await;
    assert_eq!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Joined { room: "r".into(), seq: 2 });
    raw_send(&mut ws, f, &send("fourth")).await;
    assert!(matches!(raw_next(&mut ws, f).await.unwrap(), ServerMsg::Message(m) if m.seq == 3 && m.id == "fourth"));
}

#[tokio::test]
async fn messagepack_and_json_clients_in_one_room_see_the_same_messages() {
    let server = Server::start(&[]).await;
    let mut json = server.client(1, "jay", Format::Json);
    let mut pack = server.client(2, "pat", Format::MsgPack);
    joined(&mut json, "mixed").await;
    joined(&mut pack, "mixed").await;
    for i in 0..10 {
        json.send("mixed", &format!("json {i} ✓")).await.unwrap();
        pack.send("mixed", &format!("pack {i} ✓")).await.unwrap();
    }
    let a = messages(&mut json, 20).await;
    let b = messages(&mut pack, 20).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn pipelined_sends_with_a_resend_among_them_are_numbered_without_gaps_on_both_backends() {
    for backend in BACKENDS {
        let server = Server::start_on(backend, &[]).await;
        let f = Format::Json;
        let mut ws = raw(&server.ws_url(), Some(&server.token(1, "ann")), None).await.unwrap();
        raw_next(&mut ws, f).await.unwrap();
        raw_send(&mut ws, f, &ClientMsg::Join { room: "r".into(), since: None }).await;
        raw_next(&mut ws, f).await.unwrap();
        let mut other = server.client(2, "bob", Format::MsgPack);
        joined(&mut other, "r").await;
        // Sent back to back, so the server stores them in batches; "a" comes twice.
        for id in ["a", "b", "a", "c", "d", "a", "e"] {
            raw_send(&mut ws, f, &ClientMsg::Send { room: "r".into(), id: id.into(), body: format!("body {id}") })
                .await;
            other.send("r", "from bob").await.unwrap();
        }
        let mut acks = Vec::new();
        let mut delivered = Vec::new();
        while acks.len() < 7 {
            match raw_next(&mut ws, f).await.unwrap() {
                ServerMsg::Ack { id, seq, .. } => acks.push((id, seq)),
                ServerMsg::Message(m) => delivered.push(m),
                other => panic!("{backend:?}: unexpected {other:?}"),
            }
        }
        let seq_of = |id: &str| acks.iter().find(|(i, _)| i == id).unwrap().1;
        assert!(acks.iter().filter(|(i, _)| i == "a").all(|(_, s)| *s == seq_of("a")), "{backend:?}: {acks:?}");
        let all = messages(&mut other, 12).await; // 5 distinct from ann + 7 from bob
        let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "{backend:?}");
        let anns: Vec<&str> = all.iter().filter(|m| m.user == "ann").map(|m| m.id.as_str()).collect();
        assert_eq!(anns, ["a", "b", "c", "d", "e"], "{backend:?}: each id once, in send order");
    }
}
