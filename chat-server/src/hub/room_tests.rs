//! The ordering rules of a room, without sockets: what a member's queue holds, in order.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use layer4_chat_protocol::{ChatMessage, ErrorCode, Format, FrameRef, ServerMsg};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::room::{Entry, Joined, Room};
use crate::delivery::flush::Flushers;
use crate::delivery::outbox::Outbox;

fn msg(seq: u64) -> ChatMessage {
    ChatMessage { room: "r".into(), seq, id: format!("c{seq}"), user: "u".into(), body: seq.to_string(), ts: 0 }
}

thread_local! {
    static FLUSHERS: Arc<Flushers> = Flushers::start(1);
}

/// A room whose head (0) was read from the database.
fn loaded(cache: usize) -> Room {
    let room = Room::new("r".into(), cache);
    FLUSHERS.with(|f| room.set_loaded(0, f));
    room
}

fn publish(room: &Room, seqs: impl IntoIterator<Item = u64>) -> Vec<super::room::Published> {
    FLUSHERS.with(|f| seqs.into_iter().map(|seq| room.publish(Arc::new(Entry::new(msg(seq))), f)).collect())
}

/// An outbox on one end of a loopback connection, and the other end.
async fn member() -> (Arc<Outbox>, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (near, _) = listener.accept().await.unwrap();
    (Arc::new(Outbox::new(Format::Json, 1 << 20, 100, Arc::new(near), 0)), far)
}

/// The next `n` frames the member receives, each as "joined N", a message's sequence
/// number or "error CODE" (deadline 5 s).
async fn received(far: &mut TcpStream, n: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        let mut chunk = [0u8; 4096];
        let got = tokio::time::timeout_at(deadline, far.read(&mut chunk)).await.expect("frames within 5 s").unwrap();
        bytes.extend_from_slice(&chunk[..got]);
        // Server frames: FIN+opcode, then a 7-bit length (126: 16-bit follows), unmasked.
        while bytes.len() >= 2 {
            let (len, start) = match bytes[1] {
                126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                126 => break,
                l => (l as usize, 2),
            };
            if bytes.len() < start + len {
                break;
            }
            let text = std::str::from_utf8(&bytes[start..start + len]).unwrap().to_string();
            bytes.drain(..start + len);
            out.push(match Format::Json.decode::<ServerMsg>(FrameRef::Text(&text)).unwrap() {
                ServerMsg::Joined { seq, .. } => format!("joined {seq}"),
                ServerMsg::Message(m) => m.seq.to_string(),
                ServerMsg::Error { code, .. } => format!("error {}", code.as_str()),
                other => format!("{other:?}"),
            });
        }
    }
    assert!(bytes.is_empty());
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_fresh_join_gets_the_head_then_live_messages() {
    let room = loaded(8);
    publish(&room, 1..=3);
    let (out, mut far) = member().await;
    assert_eq!(room.join(1, &out, None, 100), Joined::Live { head: 3 });
    publish(&room, 4..=5);
    assert_eq!(received(&mut far, 3).await, strings(&["joined 3", "4", "5"]));
}

#[tokio::test]
async fn a_resume_inside_the_cache_is_paged_from_it_by_bytes_before_live_messages() {
    let room = loaded(8);
    publish(&room, 1..=10);
    let (out, mut far) = member().await;
    assert_eq!(room.join(1, &out, Some(6), 100), Joined::Replay { after: 6, head: 10 });
    publish(&room, 11..=11); // arrives during the replay: held back
    // A budget of one byte: one message per page, at least.
    let (page, last) = room.cached_page(6, 10, 1, out.format).unwrap();
    assert_eq!((page.len(), last), (1, 7));
    for frame in page {
        out.push(frame);
    }
    let (page, last) = room.cached_page(7, 10, usize::MAX, out.format).unwrap();
    assert_eq!((page.len(), last), (3, 10), "up to the head it joined at, not 11");
    for frame in page {
        out.push(frame);
    }
    room.finish_join(1, 10);
    assert_eq!(received(&mut far, 6).await, strings(&["joined 10", "7", "8", "9", "10", "11"]));
    assert!(room.cached_page(1, 10, usize::MAX, out.format).is_none(), "2 is no longer cached");
}

#[tokio::test]
async fn a_resume_beyond_the_cache_holds_live_messages_until_the_database_replay_is_queued() {
    let room = loaded(2);
    publish(&room, 1..=10);
    let (out, mut far) = member().await;
    assert_eq!(room.join(1, &out, Some(3), 100), Joined::Replay { after: 3, head: 10 });
    assert!(room.cached_page(3, 10, usize::MAX, out.format).is_none(), "9 and 10 only are cached");
    publish(&room, 11..=12); // arrive while the database is read: held back
    for m in (4..=10).map(msg) {
        out.reply(&ServerMsg::Message(m)); // the pages from the database
    }
    room.finish_join(1, 10);
    publish(&room, 13..=13);
    let expected: Vec<String> =
        std::iter::once("joined 10".to_string()).chain((4..=13).map(|s| s.to_string())).collect();
    assert_eq!(received(&mut far, expected.len()).await, expected);
}

#[tokio::test]
async fn a_gap_beyond_the_replay_limit_joins_live_and_says_so() {
    let room = loaded(0);
    publish(&room, 1..=50);
    let (out, mut far) = member().await;
    assert_eq!(room.join(1, &out, Some(5), 10), Joined::TooFar { head: 50 });
    let expected = strings(&["joined 50", &format!("error {}", ErrorCode::ResumeTooFar.as_str())]);
    assert_eq!(received(&mut far, 2).await, expected);
}

#[tokio::test]
async fn a_message_is_published_once_and_leaving_stops_delivery() {
    let room = loaded(8);
    let (out, mut far) = member().await;
    room.join(1, &out, None, 100);
    publish(&room, 1..=2);
    publish(&room, 2..=2); // the same sequence again (a redelivery) is ignored
    assert!(room.leave(1));
    publish(&room, 3..=3);
    // A frame sent after these would come next; the marker proves nothing else came before it.
    out.reply(&ServerMsg::Joined { room: "marker".into(), seq: 99 });
    assert_eq!(received(&mut far, 4).await, strings(&["joined 0", "1", "2", "joined 99"]));
    assert_eq!(room.member_count(), 0);
}

#[tokio::test]
async fn a_message_past_a_gap_is_held_until_the_gap_is_filled_and_duplicates_are_dropped() {
    let room = loaded(8);
    let (outbox, mut far) = member().await;
    assert!(matches!(room.join(1, &outbox, None, 100), Joined::Live { head: 0, .. }));
    let got = publish(&room, [1, 4, 3]);
    assert!(!got[0].fill && got[1].fill && !got[2].fill, "one fill for the gap before 4: {got:?}");
    assert_eq!(room.head(), 1);
    assert_eq!(room.gap(), Some((1, 2)));
    publish(&room, [2, 2, 1]);
    assert_eq!(room.head(), 4, "2 released the held 3 and 4");
    assert_eq!(room.gap(), None, "and the fill is over");
    assert_eq!(received(&mut far, 5).await, ["joined 0", "1", "2", "3", "4"]);
}

#[tokio::test]
async fn before_its_head_is_loaded_a_room_holds_everything() {
    let room = Room::new("r".into(), 8);
    let (outbox, mut far) = member().await;
    room.join(1, &outbox, None, 100);
    let got = publish(&room, [6, 7]);
    assert!(got.iter().all(|p| !p.fill && p.delivered == 0), "{got:?}");
    let loaded = FLUSHERS.with(|f| room.set_loaded(5, f));
    assert_eq!((loaded.delivered, loaded.fill), (2, false));
    assert_eq!(received(&mut far, 3).await, ["joined 0", "6", "7"]);
}

#[tokio::test]
async fn live_messages_held_during_a_replay_count_toward_the_queue_bound() {
    let room = loaded(0);
    publish(&room, 1..=2);
    let (out, _far) = member().await;
    assert_eq!(room.join(1, &out, Some(0), 100), Joined::Replay { after: 0, head: 2 });
    // Frames of ~1 KB held while the replay never ends: 1 MiB of them is ~1000.
    let big = |seq| Arc::new(Entry::new(ChatMessage { body: "x".repeat(1000), ..msg(seq) }));
    let published: Vec<_> = FLUSHERS.with(|f| (3..=5000).map(|seq| room.publish(big(seq), f)).collect());
    assert_eq!(out.stopped(), Some(crate::delivery::outbox::Stopped::Overflowed));
    let first = published.iter().position(|p| p.overflowed > 0).unwrap();
    assert!((900..1100).contains(&first), "by bytes, at ~1 MiB held: after {first} messages");
}
