//! The outbound half of every connection: what the hub and the gateway both write to, so
//! it sits below both (`gateway` → `hub` → `delivery`, and `gateway` → `delivery`).
//!
//! - [`outbox`]: one connection's ordered, bounded byte queue (replies, replays, room
//!   broadcasts, control frames) and the frame encoder shared by the room and the replies.
//! - [`flush`]: the flusher threads that write room broadcasts to many sockets at once.
//! - [`measure`]: the store-to-write latency of live deliveries, and the ones not made.
//!
//! It knows sockets and WebSocket frames, nothing of rooms, users or requests.

pub mod flush;
pub mod measure;
pub mod outbox;
