//! The ordering rules of a room, without sockets: what a member's queue holds, in order.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::extract::ws::Message;
use layer4_chat_client::protocol::{ChatMessage, ErrorCode, Format, FrameRef, ServerMsg};

use super::room::{Entry, Joined, Room};
use crate::gateway::outbox::Outbox;

fn msg(seq: u64) -> ChatMessage {
    ChatMessage { room: "r".into(), seq, id: format!("c{seq}"), user: "u".into(), body: seq.to_string(), ts: 0 }
}

fn publish(room: &Room, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        room.publish(Arc::new(Entry::new(msg(seq))));
    }
}

/// What the member's queue holds: "joined N", message sequence numbers, "error CODE".
fn drained(outbox: &Outbox) -> Vec<String> {
    let mut frames = Vec::new();
    outbox.take(usize::MAX, &mut frames).unwrap();
    frames
        .iter()
        .map(|f| {
            let Message::Text(t) = f else { panic!("json is text") };
            match Format::Json.decode::<ServerMsg>(FrameRef::Text(t)).unwrap() {
                ServerMsg::Joined { seq, .. } => format!("joined {seq}"),
                ServerMsg::Message(m) => m.seq.to_string(),
                ServerMsg::Error { code, .. } => format!("error {}", code.as_str()),
                other => format!("{other:?}"),
            }
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_fresh_join_gets_the_head_then_live_messages() {
    let room = Room::new("r".into(), 8);
    publish(&room, 1..=3);
    let out = Arc::new(Outbox::new(Format::Json, 1 << 20));
    assert_eq!(room.join(1, &out, None, 100), Joined::Live { head: 3, replayed: 0 });
    publish(&room, 4..=5);
    assert_eq!(drained(&out), strings(&["joined 3", "4", "5"]));
}

#[test]
fn a_resume_inside_the_cache_replays_in_order_before_live_messages() {
    let room = Room::new("r".into(), 8);
    publish(&room, 1..=10);
    let out = Arc::new(Outbox::new(Format::Json, 1 << 20));
    assert_eq!(room.join(1, &out, Some(6), 100), Joined::Live { head: 10, replayed: 4 });
    publish(&room, 11..=11);
    assert_eq!(drained(&out), strings(&["joined 10", "7", "8", "9", "10", "11"]));
}

#[test]
fn a_resume_beyond_the_cache_holds_live_messages_until_the_database_replay_is_queued() {
    let room = Room::new("r".into(), 2);
    publish(&room, 1..=10);
    let out = Arc::new(Outbox::new(Format::Json, 1 << 20));
    assert_eq!(room.join(1, &out, Some(3), 100), Joined::NeedsReplay { after: 3, head: 10 });
    publish(&room, 11..=12); // arrive while the database is read
    assert!(drained(&out).is_empty());
    let from_db: Vec<ChatMessage> = (4..=11).map(msg).collect(); // the read may see 11 too
    assert_eq!(room.finish_join(1, 10, from_db), 7);
    publish(&room, 13..=13);
    let expected: Vec<String> =
        std::iter::once("joined 10".to_string()).chain((4..=13).map(|s| s.to_string())).collect();
    assert_eq!(drained(&out), expected);
}

#[test]
fn a_gap_beyond_the_replay_limit_joins_live_and_says_so() {
    let room = Room::new("r".into(), 0);
    publish(&room, 1..=50);
    let out = Arc::new(Outbox::new(Format::Json, 1 << 20));
    assert_eq!(room.join(1, &out, Some(5), 10), Joined::TooFar { head: 50 });
    assert_eq!(drained(&out), strings(&["joined 50", &format!("error {}", ErrorCode::ResumeTooFar.as_str())]));
}

#[test]
fn a_message_is_published_once_and_leaving_stops_delivery() {
    let room = Room::new("r".into(), 8);
    let out = Arc::new(Outbox::new(Format::Json, 1 << 20));
    room.join(1, &out, None, 100);
    publish(&room, 1..=2);
    publish(&room, 2..=2); // the same sequence again (a redelivery) is ignored
    assert!(room.leave(1));
    publish(&room, 3..=3);
    assert_eq!(drained(&out), strings(&["joined 0", "1", "2"]));
    assert_eq!(room.member_count(), 0);
}
