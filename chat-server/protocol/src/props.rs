//! Property tests of the protocol's decoders (docs/protocol.md §2-4), which both ends run
//! on whatever the other end sends: arbitrary bytes, arbitrary JSON and MessagePack
//! values and objects shaped like messages never panic (the server decodes every frame a
//! stranger sends with a valid token); every message, client's and server's, comes back
//! unchanged from encode → decode in both formats; and nesting as deep as a frame allows
//! is an error, not a stack overflow. The case counts make this ~5 s of a debug build.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use crate::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Names as clients send them: valid ones, and anything else.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.:-]{1,64}", any::<String>()]
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![0..1000u64, any::<u64>()]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (name(), proptest::option::of(seq())).prop_map(|(room, since)| ClientMsg::Join { room, since }),
        name().prop_map(|room| ClientMsg::Leave { room }),
        (name(), name(), any::<String>()).prop_map(|(room, id, body)| ClientMsg::Send { room, id, body }),
        (name(), proptest::option::of(seq()), proptest::option::of(any::<u32>()))
            .prop_map(|(room, before, limit)| ClientMsg::History { room, before, limit }),
        btree_map(name(), seq(), 0..8).prop_map(|rooms| ClientMsg::Resume { rooms }),
        proptest::option::of(any::<u64>()).prop_map(|t| ClientMsg::Ping { t }),
    ]
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (name(), seq(), name(), name(), any::<String>(), any::<i64>())
        .prop_map(|(room, seq, id, user, body, ts)| ChatMessage { room, seq, id, user, body, ts })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    use ErrorCode::*;
    proptest::sample::select(vec![
        Malformed,
        UnknownType,
        BadRoom,
        BadId,
        BadBody,
        NotJoined,
        TooManyRooms,
        RateLimited,
        ResumeTooFar,
        Unavailable,
        Unknown,
    ])
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    let opt_name = || proptest::option::of(name());
    prop_oneof![
        (name(), any::<u64>(), any::<u64>(), any::<usize>(), any::<u32>()).prop_map(
            |(user, heartbeat_ms, timeout_ms, max, rate)| ServerMsg::Welcome {
                user,
                heartbeat_ms,
                timeout_ms,
                max_message_size: max,
                max_requests_per_second: rate
            }
        ),
        chat_message().prop_map(ServerMsg::Message),
        (name(), name(), seq()).prop_map(|(room, id, seq)| ServerMsg::Ack { room, id, seq }),
        (name(), seq()).prop_map(|(room, seq)| ServerMsg::Joined { room, seq }),
        name().prop_map(|room| ServerMsg::Left { room }),
        (name(), vec(chat_message(), 0..4), any::<bool>()).prop_map(|(room, messages, more)| ServerMsg::History {
            room,
            messages,
            more
        }),
        (error_code(), any::<String>(), opt_name(), opt_name()).prop_map(|(code, text, room, id)| ServerMsg::Error {
            code,
            text,
            room,
            id
        }),
        proptest::option::of(any::<u64>()).prop_map(|t| ServerMsg::Pong { t }),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object shaped like a message: a known (or unknown) `type`, known field names with
/// values of any type, and fields nobody knows.
fn message_shaped() -> impl Strategy<Value = serde_json::Value> {
    let types = ["join", "leave", "send", "history", "resume", "ping", "welcome", "message", "ack", "error", "x"];
    let fields = ["room", "since", "id", "body", "before", "limit", "rooms", "t", "seq", "code", "text", "more"];
    (proptest::sample::select(types.to_vec()), btree_map(proptest::sample::select(fields.to_vec()), json_value(), 0..6))
        .prop_map(|(ty, fields)| {
            let mut object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            object.insert("type".into(), ty.into());
            serde_json::Value::Object(object)
        })
}

/// Decodes `bytes` every way either end might, as a text and as a binary frame.
fn decode_every_way(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for format in Format::ALL {
        for frame in [FrameRef::Binary(bytes), FrameRef::Text(&text)] {
            let _ = format.decode::<ClientMsg>(frame);
            let _ = format.decode::<ServerMsg>(frame);
        }
    }
}

fn round_trip<T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug>(msg: &T) {
    for format in Format::ALL {
        let back: T = match format.encode(msg) {
            Payload::Text(t) => format.decode(FrameRef::Text(&t)).unwrap(),
            Payload::Binary(b) => format.decode(FrameRef::Binary(&b)).unwrap(),
        };
        assert_eq!(&back, msg, "{format:?}");
    }
}

proptest! {
    #![proptest_config(config(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_every_way(&bytes);
    }

    #[test]
    fn bytes_after_a_map_header_never_panic(head in prop_oneof![0x80..=0x8fu8, Just(0xde), Just(0xdf), Just(b'{')],
                                            rest in vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![head];
        bytes.extend(rest);
        decode_every_way(&bytes);
    }
}

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn any_json_or_messagepack_value_never_panics(value in prop_oneof![json_value(), message_shaped()]) {
        decode_every_way(serde_json::to_string(&value).unwrap().as_bytes());
        decode_every_way(&rmp_serde::to_vec(&value).unwrap());
        decode_every_way(&rmp_serde::to_vec_named(&value).unwrap());
    }

    #[test]
    fn every_client_message_survives_both_formats(msg in client_msg()) {
        round_trip(&msg);
    }

    #[test]
    fn every_server_message_survives_both_formats(msg in server_msg()) {
        round_trip(&msg);
    }
}

#[test]
fn nesting_as_deep_as_a_frame_allows_is_an_error_not_a_stack_overflow() {
    // 64 KiB (the default MAX_MESSAGE_SIZE) of nested arrays, in an unknown field.
    let depth = 65_000;
    let json = format!(r#"{{"type":"ping","x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    assert!(Format::Json.decode::<ClientMsg>(FrameRef::Text(&json)).is_err());
    assert!(Format::MsgPack.decode::<ClientMsg>(FrameRef::Binary(&nested_ping(depth))).is_err());
    let empty: BTreeMap<String, u64> = BTreeMap::new();
    round_trip(&ClientMsg::Resume { rooms: empty });
}

/// A ping whose unknown field `x` holds `n` nested one-element arrays.
fn nested_ping(n: usize) -> Vec<u8> {
    let mut mp = vec![0x82, 0xa4];
    mp.extend_from_slice(b"type\xa4ping\xa1x");
    mp.extend(std::iter::repeat_n(0x91, n));
    mp.push(0xc0);
    mp
}

#[test]
fn messagepack_nesting_is_accepted_up_to_max_depth_and_refused_past_it() {
    let decodes = |n: usize| Format::MsgPack.decode::<ClientMsg>(FrameRef::Binary(&nested_ping(n))).is_ok();
    // The message map and the field's value count as levels too.
    let deepest = (0..=MAX_DEPTH).rev().find(|&n| decodes(n)).unwrap();
    assert!(deepest + 2 >= MAX_DEPTH && deepest < MAX_DEPTH, "accepted up to {deepest} arrays");
    assert!(!decodes(deepest + 1), "one level past the limit is refused");
}
