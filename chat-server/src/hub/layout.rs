//! What the fan-out keeps in Redis and how it is written: the wire format of a
//! message, the names of a room's channel and history, and the commands that publish
//! a batch of stored messages.
//!
//! Wire format: MessagePack of [`Wire`] (the sender's origin id, so a worker skips
//! its own messages, and the message). One server: channel `<prefix>:room:<room>`,
//! history `<prefix>:hist:<room>`, a sorted set scored by sequence number, trimmed to
//! `history` entries and kept a day after its last message. A Redis Cluster: the room
//! in a hash tag, `<prefix>:room:{<room>}` and `<prefix>:hist:{<room>}`, so both live on
//! the one shard that owns the room's slot, and the channel is sharded (`SPUBLISH`):
//! a room's traffic touches that shard only, and each room's commands go as one
//! pipeline to it.

use std::collections::BTreeMap;

use layer4_chat_protocol::ChatMessage;

#[derive(Debug, serde::Deserialize)]
pub struct Wire {
    pub origin: u64,
    pub msg: ChatMessage,
}

#[derive(Debug, serde::Serialize)]
struct WireRef<'a> {
    origin: u64,
    msg: &'a ChatMessage,
}

/// History kept per room in Redis lives this long after its last message.
const HISTORY_TTL_S: i64 = 86_400;

/// The names and commands for one `REDIS_PREFIX`, on one server or on a cluster.
#[derive(Debug)]
pub struct Layout {
    pub prefix: String,
    pub sharded: bool,
    /// Messages kept per room.
    pub history: usize,
}

impl Layout {
    pub fn channel(&self, room: &str) -> String {
        if self.sharded { format!("{}:room:{{{room}}}", self.prefix) } else { format!("{}:room:{room}", self.prefix) }
    }

    /// The room a channel of this layout names.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let name = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":room:")?;
        if self.sharded { name.strip_prefix('{')?.strip_suffix('}') } else { Some(name) }
    }

    pub fn history_key(&self, room: &str) -> String {
        if self.sharded { format!("{}:hist:{{{room}}}", self.prefix) } else { format!("{}:hist:{room}", self.prefix) }
    }

    /// The pipelines that publish `batch` (in order) from `origin`, with each message's
    /// history entry, then trim and keep alive each room's history once: one pipeline
    /// for a server, one per room on a cluster (a pipeline goes to one node).
    pub fn publish(&self, origin: u64, batch: &[ChatMessage]) -> Vec<redis::Pipeline> {
        let mut by_room: BTreeMap<&str, redis::Pipeline> = BTreeMap::new();
        let mut one = redis::pipe();
        for msg in batch {
            let Ok(payload) = rmp_serde::to_vec_named(&WireRef { origin, msg }) else { continue };
            let pipe = if self.sharded { by_room.entry(msg.room.as_str()).or_default() } else { &mut one };
            let channel = self.channel(&msg.room);
            if self.sharded {
                pipe.cmd("SPUBLISH").arg(&channel).arg(&payload).ignore();
            } else {
                pipe.publish(&channel, &payload).ignore();
            }
            pipe.zadd(self.history_key(&msg.room), &payload, msg.seq).ignore();
        }
        let rooms: std::collections::BTreeSet<&str> = batch.iter().map(|m| m.room.as_str()).collect();
        for room in rooms {
            let key = self.history_key(room);
            let pipe = if self.sharded { by_room.entry(room).or_default() } else { &mut one };
            pipe.zremrangebyrank(&key, 0, -(self.history as isize) - 1).ignore();
            pipe.expire(&key, HISTORY_TTL_S).ignore();
        }
        if self.sharded { by_room.into_values().collect() } else { vec![one] }
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;
    use layer4_chat_protocol::ChatMessage;

    fn msg(room: &str, seq: u64) -> ChatMessage {
        ChatMessage { room: room.into(), seq, id: format!("i{seq}"), user: "u".into(), body: "b".into(), ts: 1 }
    }

    #[test]
    fn a_cluster_gets_one_pipeline_per_room_with_hash_tagged_names() {
        let one = Layout { prefix: "l4".into(), sharded: false, history: 10 };
        assert_eq!((one.channel("a"), one.history_key("a")), ("l4:room:a".into(), "l4:hist:a".into()));
        let batch = [msg("a", 1), msg("b", 1), msg("a", 2)];
        assert_eq!(one.publish(7, &batch).len(), 1);
        let sharded = Layout { prefix: "l4".into(), sharded: true, history: 10 };
        assert_eq!((sharded.channel("a"), sharded.history_key("a")), ("l4:room:{a}".into(), "l4:hist:{a}".into()));
        assert_eq!((sharded.room_of("l4:room:{a.b}"), one.room_of("l4:room:a.b")), (Some("a.b"), Some("a.b")));
        assert_eq!((sharded.room_of("l4:room:a"), one.room_of("l5:room:a")), (None, None));
        // Each room's pipeline holds its two messages in order (SPUBLISH, ZADD each),
        // then the trim and the expiry.
        let pipes = sharded.publish(7, &batch);
        assert_eq!(pipes.len(), 2);
        let name = |c: &redis::Cmd| match c.args_iter().next() {
            Some(redis::Arg::Simple(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let commands: Vec<String> = pipes[0].cmd_iter().map(name).collect();
        assert_eq!(commands, ["SPUBLISH", "ZADD", "SPUBLISH", "ZADD", "ZREMRANGEBYRANK", "EXPIRE"]);
    }
}
