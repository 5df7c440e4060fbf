//! The wire protocol between chat clients and the chat server, shared by both: a package
//! of its own, so the worker builds it without the client's (and the load generator's)
//! dependencies.
//!
//! Owns the message types and their two encodings. The prose version, with every
//! close code, is `docs/protocol.md`; keep the two in step.
//!
//! - Subprotocol `l4.json`: each message is one text frame holding a JSON object.
//! - Subprotocol `l4.msgpack`: each message is one binary frame holding a MessagePack
//!   map with the same field names (`rmp_serde::to_vec_named`, never arrays).
//!
//! Every message is an object with a `type` field. Unknown fields are ignored so that
//! either side can add optional fields without breaking the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join a room. With `since`, also replay every message after that sequence number.
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    /// Post `body` to a joined room. `id` is chosen by the client and makes the send
    /// idempotent: a resend with the same id is acked with the original sequence.
    Send {
        room: String,
        id: String,
        body: String,
    },
    /// Up to `limit` stored messages with a sequence below `before` (default: the newest).
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// After a reconnect: join every room again and replay what was missed
    /// (room name -> last sequence number the client saw).
    Resume {
        rooms: BTreeMap<String, u64>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        t: Option<u64>,
    },
}

/// One stored chat message, as delivered live, on replay and in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: String,
    /// Per-room sequence number, from 1, without gaps.
    pub seq: u64,
    /// The sender's client-chosen id.
    pub id: String,
    /// The sender's user name.
    pub user: String,
    pub body: String,
    /// Server time when stored, milliseconds since the Unix epoch.
    pub ts: i64,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        user: String,
        heartbeat_ms: u64,
        timeout_ms: u64,
        max_message_size: usize,
        /// Frames a second the connection may send (`MAX_REQUESTS_PER_SECOND`); 0 from
        /// a server older than the field.
        #[serde(default)]
        max_requests_per_second: u32,
    },
    Message(ChatMessage),
    /// The message with client id `id` is stored as `seq` in `room`.
    Ack {
        room: String,
        id: String,
        seq: u64,
    },
    /// Membership confirmed; `seq` is the room's newest sequence number at that moment.
    /// Replayed messages (if `since` was given) follow, then live ones.
    Joined {
        room: String,
        seq: u64,
    },
    Left {
        room: String,
    },
    History {
        room: String,
        messages: Vec<ChatMessage>,
        /// True when older messages exist before the first one returned.
        more: bool,
    },
    Error {
        code: ErrorCode,
        text: String,
        /// The room the error is about, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The client id of the `send` the error is about, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        t: Option<u64>,
    },
}

/// Machine-readable error codes carried by [`ServerMsg::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a valid message (bad JSON/MessagePack, missing field, wrong frame type).
    Malformed,
    /// A well-formed object whose `type` the server does not know.
    UnknownType,
    /// Room names are 1-64 characters of `A-Z a-z 0-9 _ - . :`.
    BadRoom,
    /// Client message ids are 1-64 printable ASCII characters.
    BadId,
    /// The body is empty. (A frame over `MAX_MESSAGE_SIZE` closes the connection with 1009.)
    BadBody,
    /// `send` or `history` for a room this connection has not joined.
    NotJoined,
    TooManyRooms,
    /// Too many rooms brought into memory by this user in the last minute
    /// (`ROOM_CREATION_RATE`); the join may be retried later.
    RateLimited,
    /// The gap to replay is larger than the server replays; use `history`.
    ResumeTooFar,
    /// Storage failed; the message was not stored and may be resent with the same id.
    Unavailable,
    /// A code this version does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether a `send` that got this error will never be accepted as it is, so a client
    /// should stop resending it.
    pub fn is_permanent_for_send(self) -> bool {
        matches!(self, ErrorCode::BadId | ErrorCode::BadBody | ErrorCode::NotJoined | ErrorCode::BadRoom)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::BadId => "bad_id",
            ErrorCode::BadBody => "bad_body",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ResumeTooFar => "resume_too_far",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// WebSocket close codes the server uses (see `docs/protocol.md`).
pub mod close {
    /// Normal closure (client asked, or the connection left cleanly).
    pub const NORMAL: u16 = 1000;
    /// A frame that breaks RFC 6455 (bad opcode, reserved bits, an unmasked client frame...).
    pub const PROTOCOL: u16 = 1002;
    /// Repeated malformed frames.
    pub const INVALID_DATA: u16 = 1007;
    /// Repeated messages of unknown type.
    pub const POLICY: u16 = 1008;
    /// A frame or message above `MAX_MESSAGE_SIZE`.
    pub const TOO_BIG: u16 = 1009;
    /// Server restart or deploy: reconnect (after a short random delay) and resume.
    pub const RESTART: u16 = 1012;
    /// Nothing received for `CONNECTION_TIMEOUT`.
    pub const TIMEOUT: u16 = 4000;
    /// The connection fell too far behind (outbound queue over its bound): reconnect and resume.
    pub const RESUME: u16 = 4001;
    /// The token expired while connected: get a new token, then reconnect.
    pub const TOKEN_EXPIRED: u16 = 4002;

    /// Whether a client should reconnect (and resume) after this close code.
    pub fn should_reconnect(code: u16) -> bool {
        !matches!(code, NORMAL | PROTOCOL | INVALID_DATA | POLICY | TOO_BIG | TOKEN_EXPIRED)
    }
}

/// How deep a MessagePack message may nest (a message needs 3 levels): rmp-serde's own
/// limit (1024) overflows a 2 MiB thread stack in a debug build, so a client could crash
/// the worker with one frame. JSON stops at serde_json's 128.
pub const MAX_DEPTH: usize = 32;

/// Which encoding a connection speaks, chosen by the WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    MsgPack,
}

/// An encoded message, ready to become a text (JSON) or binary (MessagePack) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected a {expected} frame")]
    WrongFrame { expected: &'static str },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    Invalid(String),
}

impl Format {
    pub const JSON_PROTOCOL: &'static str = "l4.json";
    pub const MSGPACK_PROTOCOL: &'static str = "l4.msgpack";
    pub const ALL: [Format; 2] = [Format::Json, Format::MsgPack];

    pub fn protocol(self) -> &'static str {
        match self {
            Format::Json => Self::JSON_PROTOCOL,
            Format::MsgPack => Self::MSGPACK_PROTOCOL,
        }
    }

    pub fn from_protocol(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.protocol() == name)
    }

    /// Encodes any protocol message. Serialising these types cannot fail.
    pub fn encode<T: Serialize>(self, msg: &T) -> Payload {
        match self {
            Format::Json => Payload::Text(serde_json::to_string(msg).unwrap_or_default()),
            Format::MsgPack => Payload::Binary(rmp_serde::to_vec_named(msg).unwrap_or_default()),
        }
    }

    /// Decodes a text frame (JSON) or binary frame (MessagePack), whichever this format uses.
    pub fn decode<T: for<'de> Deserialize<'de>>(self, frame: FrameRef<'_>) -> Result<T, DecodeError> {
        // A message is an object (a map): serde would also read a struct from an array
        // of its fields in order, which docs/protocol.md §2 does not allow.
        let object = match frame {
            FrameRef::Text(text) => text.trim_start().starts_with('{'),
            FrameRef::Binary(bytes) => bytes.first().is_some_and(|b| matches!(b, 0x80..=0x8f | 0xde | 0xdf)),
        };
        if !object
            && matches!((self, frame), (Format::Json, FrameRef::Text(_)) | (Format::MsgPack, FrameRef::Binary(_)))
        {
            let what = if self == Format::Json { "a JSON object" } else { "a MessagePack map" };
            return Err(DecodeError::Invalid(format!("a message must be {what}")));
        }
        let result = match (self, frame) {
            (Format::Json, FrameRef::Text(text)) => serde_json::from_str::<T>(text).map_err(|e| e.to_string()),
            (Format::MsgPack, FrameRef::Binary(bytes)) => {
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
                de.set_max_depth(MAX_DEPTH);
                T::deserialize(&mut de).map_err(|e| e.to_string())
            }
            (Format::Json, FrameRef::Binary(_)) => return Err(DecodeError::WrongFrame { expected: "text" }),
            (Format::MsgPack, FrameRef::Text(_)) => return Err(DecodeError::WrongFrame { expected: "binary" }),
        };
        result.map_err(|text| match unknown_variant(&text) {
            Some(name) => DecodeError::UnknownType(name),
            None => DecodeError::Invalid(text),
        })
    }
}

/// A borrowed data frame.
#[derive(Debug, Clone, Copy)]
pub enum FrameRef<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// serde reports an unknown `type` tag as "unknown variant `x`, expected one of ...".
fn unknown_variant(error: &str) -> Option<String> {
    let rest = error.strip_prefix("unknown variant `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// What [`valid_room`] takes, as errors say it.
pub const ROOM_RULE: &str = "room names are 1-64 characters of A-Z a-z 0-9 _ - . :";
/// What [`valid_id`] takes, as errors say it.
pub const ID_RULE: &str = "message ids are 1-64 printable ASCII characters";

/// Room names: 1-64 characters of `A-Z a-z 0-9 _ - . :`.
pub fn valid_room(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Client message ids: 1-64 printable ASCII characters.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn roundtrip(msg: &ServerMsg) {
        for format in Format::ALL {
            let back: ServerMsg = match format.encode(msg) {
                Payload::Text(t) => format.decode(FrameRef::Text(&t)).unwrap(),
                Payload::Binary(b) => format.decode(FrameRef::Binary(&b)).unwrap(),
            };
            assert_eq!(&back, msg, "{format:?}");
        }
    }

    #[test]
    fn every_server_message_survives_both_formats() {
        let m =
            ChatMessage { room: "r".into(), seq: 7, id: "c1".into(), user: "ann".into(), body: "hé".into(), ts: 5 };
        roundtrip(&ServerMsg::Message(m.clone()));
        roundtrip(&ServerMsg::History { room: "r".into(), messages: vec![m], more: true });
        roundtrip(&ServerMsg::Ack { room: "r".into(), id: "c1".into(), seq: 7 });
        roundtrip(&ServerMsg::Error { code: ErrorCode::NotJoined, text: "x".into(), room: Some("r".into()), id: None });
        roundtrip(&ServerMsg::Pong { t: None });
    }

    #[test]
    fn json_shape_is_flat_with_a_type_tag() {
        let Payload::Text(t) = Format::Json.encode(&ClientMsg::Join { room: "lobby".into(), since: None }) else {
            panic!("json is text")
        };
        assert_eq!(t, r#"{"type":"join","room":"lobby"}"#);
        let msg: ClientMsg = Format::Json.decode(FrameRef::Text(r#"{"type":"ping","extra":1}"#)).unwrap();
        assert_eq!(msg, ClientMsg::Ping { t: None });
    }

    #[test]
    fn msgpack_uses_maps_not_arrays() {
        let Payload::Binary(b) = Format::MsgPack.encode(&ClientMsg::Leave { room: "a".into() }) else {
            panic!("msgpack is binary")
        };
        let value: serde_json::Value = rmp_serde::from_slice(&b).unwrap();
        assert_eq!(value, serde_json::json!({"type": "leave", "room": "a"}));
    }

    #[test]
    fn unknown_types_and_wrong_frames_are_told_apart() {
        let e = Format::Json.decode::<ClientMsg>(FrameRef::Text(r#"{"type":"dance"}"#)).unwrap_err();
        assert!(matches!(e, DecodeError::UnknownType(ref n) if n == "dance"), "{e}");
        let e = Format::Json.decode::<ClientMsg>(FrameRef::Text("{")).unwrap_err();
        assert!(matches!(e, DecodeError::Invalid(_)));
        let e = Format::MsgPack.decode::<ClientMsg>(FrameRef::Text("{}")).unwrap_err();
        assert!(matches!(e, DecodeError::WrongFrame { .. }));
    }

    #[test]
    fn names_and_ids_are_bounded() {
        assert!(valid_room("team:dev-1.a_b"));
        assert!(!valid_room("") && !valid_room("a b") && !valid_room(&"x".repeat(65)));
        assert!(valid_id("c-1") && !valid_id("") && !valid_id("a b"));
    }
}
