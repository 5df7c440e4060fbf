//! README "Cluster": several chat-server workers under the real `l4ctl`, sharing
//! rooms through a real Redis (a private `redis-server` per test, so tests never
//! hear each other) and a real PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use layer4_chat_client::client::{Client, Event};
use layer4_chat_client::protocol::{ClientMsg, Format, ServerMsg};

use crate::cluster::Cluster;
use crate::helper::{Backend, Database, free_port, joined, messages, raw, raw_next, raw_send};

/// A `redis-server` of our own on a free port, keeping nothing on disk.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis { port: free_port(), child: None };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/test installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while redis::Client::open(self.url()).and_then(|c| c.get_connection()).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Messages of `room` in the Redis history.
    fn history_len(&self, room: &str) -> i64 {
        self.history_len_in("l4", room)
    }

    /// Messages of `room` in the Redis history of deployment `prefix`.
    fn history_len_in(&self, prefix: &str, room: &str) -> i64 {
        let mut con = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        redis::cmd("ZCARD").arg(format!("{prefix}:hist:{room}")).query(&mut con).unwrap()
    }

    /// How many workers are subscribed to `room`.
    fn subscribers(&self, room: &str) -> i64 {
        self.subscribers_in("l4", room)
    }

    /// How many workers of deployment `prefix` are subscribed to `room`.
    fn subscribers_in(&self, prefix: &str, room: &str) -> i64 {
        let mut con = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        let (_, n): (String, i64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(format!("{prefix}:room:{room}")).query(&mut con).unwrap();
        n
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn cluster(instances: u32, redis: &Redis, db: &Database) -> Cluster {
    cluster_with(instances, redis, db, &[]).await
}

/// Like `cluster`, with more variables for the workers.
pub async fn cluster_with(instances: u32, redis: &Redis, db: &Database, extra: &[(&str, &str)]) -> Cluster {
    cluster_with_url(instances, &redis.url(), db, extra).await
}

/// Workers with this `REDIS_URL`.
pub async fn cluster_with_url(instances: u32, url: &str, db: &Database, extra: &[(&str, &str)]) -> Cluster {
    let env = [("REDIS_URL", url.to_owned()), ("DATABASE_URL", db.url.clone())];
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    tokio::task::block_in_place(|| Cluster::start(instances, &env))
}

/// Drain a publisher's events (acks, echoes) so it can keep sending.
fn drain(mut client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while client.next_event().await.is_some() {} })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_to_any_worker_reaches_every_member_on_every_worker_once_in_order() {
    let (redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster(3, &redis, &db).await;
    let mut members: Vec<Client> = (0..6).map(|k| cluster.client((k % 3) as u16, k + 1, &format!("u{k}"))).collect();
    for m in &mut members {
        joined(m, "everyone").await;
    }
    let mut lonely = cluster.client(0, 50, "lonely");
    joined(&mut lonely, "only-on-0").await;
    assert_eq!(redis.subscribers("everyone"), 3, "every worker with members subscribes");
    assert_eq!(redis.subscribers("only-on-0"), 1, "a worker without members does not");

    let senders: Vec<_> = members.iter().map(Client::sender).collect();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            tokio::spawn(async move {
                for i in 0..40 {
                    s.send("everyone", &format!("{k}-{i}")).await.unwrap();
                }
            })
        })
        .collect();
    let mut expected_from = [0usize; 6];
    for (k, m) in members.iter_mut().enumerate() {
        let got = messages(m, 240).await;
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=240).collect::<Vec<_>>(), "member {k} on worker {}", k % 3);
        // Each sender's messages in the order it sent them.
        expected_from.iter_mut().for_each(|n| *n = 0);
        for msg in &got {
            let (from, i) = msg.body.split_once('-').unwrap();
            let from: usize = from.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), expected_from[from], "member {k}: {}", msg.body);
            expected_from[from] += 1;
        }
    }
    for s in sending {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_worker_resumes_from_the_redis_history() {
    let (redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster(2, &redis, &db).await;
    let mut publisher = cluster.client(0, 1, "pub");
    joined(&mut publisher, "moving").await;
    for i in 0..20 {
        publisher.send("moving", &i.to_string()).await.unwrap();
    }
    messages(&mut publisher, 20).await;
    // The history reaches Redis just after the members (one pipelined write per batch).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.history_len("moving") < 20 {
        assert!(std::time::Instant::now() < deadline, "the history never reached Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Seen up to 10 on worker 0; comes back on worker 1, which never had the room.
    let token = layer4_chat_server::auth::Auth::new(crate::helper::SECRET.as_bytes(), Duration::from_secs(60))
        .unwrap()
        .issue(2, "mover");
    let mut ws = raw(&cluster.ws_url(1), Some(&token), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap(); // welcome
    raw_send(&mut ws, Format::Json, &ClientMsg::Resume { rooms: [("moving".to_owned(), 10)].into() }).await;
    let mut seqs = Vec::new();
    while seqs.len() < 10 {
        match raw_next(&mut ws, Format::Json).await.unwrap() {
            ServerMsg::Message(m) => seqs.push(m.seq),
            ServerMsg::Joined { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, (11..=20).collect::<Vec<_>>());
    assert_eq!(cluster.metric(1, "chat_replayed_messages_total", &[("source", "redis")]).await, 10.0);
    assert_eq!(cluster.metric(1, "chat_replayed_messages_total", &[("source", "database")]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_a_while_delays_messages_between_workers_but_loses_none() {
    let (mut redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster(2, &redis, &db).await;
    let mut sub = cluster.client(1, 1, "sub");
    let mut publisher = cluster.client(0, 2, "pub");
    // Three rooms: the recovery resubscribes them all (one SUBSCRIBE) and syncs each.
    let rooms = ["outage", "outage-b", "outage-c"];
    for room in rooms {
        joined(&mut sub, room).await;
        joined(&mut publisher, room).await;
    }
    let sender = publisher.sender();
    let _drain = drain(publisher);
    for i in 0..10 {
        sender.send("outage", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut sub, 10).await.len(), 10);
    redis.kill();
    for i in 10..20 {
        sender.send("outage", &i.to_string()).await.unwrap();
    }
    for room in &rooms[1..] {
        sender.send(room, "during").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // Redis stays away a while
    redis.spawn();
    let got = messages(&mut sub, 12).await;
    let seqs: Vec<u64> = got.iter().filter(|m| m.room == "outage").map(|m| m.seq).collect();
    assert_eq!(seqs, (11..=20).collect::<Vec<_>>(), "every message of the outage, in order, once");
    for room in &rooms[1..] {
        let of_room: Vec<_> = got.iter().filter(|m| m.room == *room).map(|m| (m.seq, m.body.as_str())).collect();
        assert_eq!(of_room, vec![(1, "during")], "{room}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.subscribers("outage-c") < 2 {
        assert!(std::time::Instant::now() < deadline, "both workers resubscribe every room");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And live traffic flows through Redis again.
    sender.send("outage", "after").await.unwrap();
    assert_eq!(messages(&mut sub, 1).await[0].body, "after");
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), sub.next_event()).await {
        assert!(!matches!(e, Event::Message(_) | Event::Gap { .. }), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_on_one_redis_with_different_prefixes_never_hear_each_other() {
    let redis = Redis::start();
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (db_a, db_b) =
        (Database::create(Backend::Sqlite, tmp_a.path()).await, Database::create(Backend::Sqlite, tmp_b.path()).await);
    let staging = cluster_with(1, &redis, &db_a, &[("REDIS_PREFIX", "staging")]).await;
    let prod = cluster_with(1, &redis, &db_b, &[("REDIS_PREFIX", "prod")]).await;
    let (mut a, mut b) = (staging.client(0, 1, "ann"), prod.client(0, 2, "bob"));
    joined(&mut a, "general").await;
    joined(&mut b, "general").await;
    for prefix in ["staging", "prod"] {
        assert_eq!(redis.subscribers_in(prefix, "general"), 1, "{prefix}");
    }
    for i in 0..5 {
        a.send("general", &format!("staging {i}")).await.unwrap();
    }
    assert_eq!(messages(&mut a, 5).await.len(), 5);
    b.send("general", "prod only").await.unwrap();
    let got = messages(&mut b, 1).await;
    assert_eq!((got[0].body.as_str(), got[0].seq), ("prod only", 1), "prod's room knows nothing of staging's");
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), b.next_event()).await {
        assert!(!matches!(e, Event::Message(_)), "staging's message reached prod: {e:?}");
    }
    assert_eq!(redis.history_len_in("staging", "general"), 5);
}

/// A worker that missed messages (Redis down) answers a resume from a client that saw
/// more with the database's head, not its own stale one: the client would take a lower
/// head for a reset store and see those messages again (found by `several_hosts`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_a_worker_that_missed_messages_is_answered_with_the_database_head() {
    let (mut redis, tmp) = (Redis::start(), tempfile::tempdir().unwrap());
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster(2, &redis, &db).await;
    let mut watcher = cluster.client(1, 1, "watcher");
    let mut publisher = cluster.client(0, 2, "pub");
    joined(&mut watcher, "stale").await;
    joined(&mut publisher, "stale").await;
    for i in 0..5 {
        publisher.send("stale", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut watcher, 5).await.len(), 5);
    // Worker 1 hears nothing more: its room stays at 5 while the database goes to 10.
    redis.kill();
    for i in 5..10 {
        publisher.send("stale", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut publisher, 10).await.last().unwrap().seq, 10);
    let token = layer4_chat_server::auth::Auth::new(crate::helper::SECRET.as_bytes(), Duration::from_secs(60))
        .unwrap()
        .issue(2, "pub");
    let mut ws = raw(&cluster.ws_url(1), Some(&token), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap(); // welcome
    raw_send(&mut ws, Format::Json, &ClientMsg::Resume { rooms: [("stale".to_owned(), 10)].into() }).await;
    match raw_next(&mut ws, Format::Json).await.unwrap() {
        ServerMsg::Joined { seq, .. } => assert_eq!(seq, 10, "joined at the database's head"),
        other => panic!("unexpected {other:?}"),
    }
    // Worker 1's own member got what it missed, from the database, once and in order.
    let caught_up: Vec<u64> = messages(&mut watcher, 5).await.iter().map(|m| m.seq).collect();
    assert_eq!(caught_up, (6..=10).collect::<Vec<_>>());
    while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(300), raw_next(&mut ws, Format::Json)).await {
        assert!(!matches!(frame, ServerMsg::Message(_)), "nothing is replayed to a client that saw it all: {frame:?}");
    }
}
