//! README "Redis Cluster": `REDIS_URL=redis+cluster://...`. Each room's channel is
//! sharded (`SSUBSCRIBE`/`SPUBLISH`) and its history hash-tagged, so both live on the
//! shard that owns the room's slot; three workers deliver every message of 30 rooms,
//! spread over 3 shards, to every member once and in order. A primary SIGKILLed: its
//! replica is promoted, the workers follow the slot map, resubscribe and lose nothing
//! (what was sent meanwhile reaches the other workers from the database, once, in
//! order). Everything is a private process of the test on loopback ports: six
//! `redis-server`s in cluster mode (3 primaries, 3 replicas), made a cluster by
//! `redis-cli --cluster create`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use layer4_chat_client::client::Event;

use crate::fanout::cluster_with_url;
use crate::helper::{Backend, Database, free_port, joined, messages};
use crate::redis_sentinel::{query, until};
use crate::redis_sentinel_limits::check;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<(u16, Child)>,
    /// Nodes SIGSTOPped: never asked (a query to one would wait for ever).
    paused: Vec<u16>,
}

/// A free port for a cluster node whose bus port (10,000 above) is free too: both below
/// the kernel's ephemeral range (from 32768), where a port from the kernel would put the
/// bus port past 65535 and the node would not start.
fn node_port(taken: &[u16]) -> u16 {
    loop {
        let port = 12_000 + free_port() % 10_000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !taken.contains(&port) && free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start(dir: &Path) -> RedisCluster {
        let mut ports: Vec<u16> = Vec::new();
        for _ in 0..6 {
            ports.push(node_port(&ports));
        }
        let dir_arg = dir.display().to_string();
        let children = ports
            .iter()
            .map(|port| {
                let conf = format!("{dir_arg}/nodes-{port}.conf");
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", &conf, "--cluster-node-timeout", "2000"])
                    .args(["--save", "", "--appendonly", "no", "--dir", &dir_arg])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server is installed (.ci/test installs it)");
                (*port, child)
            })
            .collect();
        let cluster = RedisCluster { ports: ports.clone(), children, paused: Vec::new() };
        until(Duration::from_secs(20), "six redis-servers answering", || {
            ports.iter().all(|p| query::<String>("127.0.0.1", *p, &redis::cmd("PING")).is_some())
        });
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(made.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&made.stdout));
        until(Duration::from_secs(60), "the cluster ok on every node, each replica in sync", || {
            ports.iter().all(|p| {
                let info: Option<String> = query("127.0.0.1", *p, redis::cmd("CLUSTER").arg("INFO"));
                info.is_some_and(|i| i.contains("cluster_state:ok"))
            }) && cluster.nodes().iter().filter(|n| n.primary).count() == 3
                && ports.iter().all(|p| {
                    let info: Option<String> = query("127.0.0.1", *p, redis::cmd("INFO").arg("replication"));
                    info.is_some_and(|i| i.contains("role:master") || i.contains("master_link_status:up"))
                })
        });
        cluster
    }

    /// Three of the nodes, as the workers are given them (the others they learn).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports[..3].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// `CLUSTER NODES` as a live node sees it.
    pub fn nodes(&self) -> Vec<Node> {
        let text: Option<String> =
            self.children.iter().find_map(|(p, _)| query("127.0.0.1", *p, redis::cmd("CLUSTER").arg("NODES")));
        text.unwrap_or_default().lines().filter_map(Node::parse).collect()
    }

    pub fn slot(&self, key: &str) -> u16 {
        self.live()
            .find_map(|p| query("127.0.0.1", p, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)))
            .expect("a node answers")
    }

    /// The nodes running and not paused.
    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.children.iter().map(|(p, _)| *p).filter(|p| !self.paused.contains(p))
    }

    /// The port of the primary that owns `key`'s slot.
    pub fn owner(&self, key: &str) -> u16 {
        let slot = self.slot(key);
        self.nodes().iter().find(|n| n.primary && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))).unwrap().port
    }

    /// Moves `slot` and its keys from the primary on `from` to the one on `to`, as
    /// `redis-cli --cluster reshard` does for each slot.
    pub fn move_slot(&self, slot: u16, from: u16, to: u16) {
        let nodes = self.nodes();
        let id = |port: u16| nodes.iter().find(|n| n.port == port).unwrap().id.clone();
        let on = |port: u16, cmd: &redis::Cmd| query::<redis::Value>("127.0.0.1", port, cmd).expect("a node answers");
        on(to, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("IMPORTING").arg(id(from)));
        on(from, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("MIGRATING").arg(id(to)));
        let keys: Vec<String> =
            query("127.0.0.1", from, redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(1000)).unwrap();
        if !keys.is_empty() {
            on(from, redis::cmd("MIGRATE").arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000).arg("KEYS").arg(&keys));
        }
        for n in nodes.iter().filter(|n| n.primary) {
            on(n.port, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(id(to)));
        }
    }

    /// SIGSTOP (or SIGCONT) the node on `port`: it keeps its connections and answers nothing.
    pub fn pause(&mut self, port: u16, stop: bool) {
        let (_, child) = self.children.iter().find(|(p, _)| *p == port).unwrap();
        let signal = if stop { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        self.paused.retain(|p| *p != port);
        if stop {
            self.paused.push(port);
        }
    }

    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.children {
            if *p == port {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.children.retain(|(p, _)| *p != port);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

impl Node {
    fn parse(line: &str) -> Option<Node> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = f.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
        let flags = f.get(2)?;
        let slots = f
            .iter()
            .skip(8)
            .filter_map(|r| match r.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => r.parse().ok().map(|s| (s, s)),
            })
            .collect();
        let id = f.first()?.to_string();
        Some(Node { id, port, primary: flags.contains("master"), failed: flags.contains("fail"), slots })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_sharded_over_the_cluster_and_a_primary_killed_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = tokio::task::block_in_place(|| RedisCluster::start(tmp.path()));
    let (code, out, err, _) = tokio::task::block_in_place(|| check(&redis.url()));
    assert!(code == 0 && out.contains("3 node(s) answered, cluster_state ok"), "--check: {out} {err}");
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let workers = cluster_with_url(3, &redis.url(), &db, &[]).await;
    let rooms: Vec<String> = (0..30).map(|i| format!("shard-{i}")).collect();
    let mut subs = [workers.client(1, 1, "sub-a"), workers.client(2, 2, "sub-b")];
    let mut publisher = workers.client(0, 3, "pub");
    for room in &rooms {
        for sub in &mut subs {
            joined(sub, room).await;
        }
        joined(&mut publisher, room).await;
    }
    let sender = publisher.sender();
    let _drain = tokio::spawn(async move { while publisher.next_event().await.is_some() {} });
    for round in 0..3 {
        for room in &rooms {
            sender.send(room, &format!("{room}/{round}")).await.unwrap();
        }
    }
    // Every member gets every message of every room once, in order.
    let expect_rounds = |got: &[layer4_chat_client::protocol::ChatMessage], rounds: std::ops::Range<u64>| {
        let mut by_room: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for m in got {
            by_room.entry(m.room.as_str()).or_default().push(m.seq);
        }
        assert_eq!(by_room.len(), rooms.len(), "every room");
        for (room, seqs) in by_room {
            assert_eq!(seqs, rounds.clone().map(|r| r + 1).collect::<Vec<_>>(), "{room}: once, in order");
        }
    };
    for sub in &mut subs {
        expect_rounds(&messages(sub, 90).await, 0..3);
    }
    // The rooms are spread over the three shards; a room's channel and history are on
    // the shard that owns it, where the three workers hold a sharded subscription.
    let owners: BTreeMap<&str, u16> = tokio::task::block_in_place(|| {
        rooms.iter().map(|r| (r.as_str(), redis.owner(&format!("l4:room:{{{r}}}")))).collect()
    });
    let shards: std::collections::BTreeSet<u16> = owners.values().copied().collect();
    assert_eq!(shards.len(), 3, "30 rooms over 3 shards: {owners:?}");
    tokio::task::block_in_place(|| {
        for (room, port) in &owners {
            let (_, subscribers): (String, i64) =
                query("127.0.0.1", *port, redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(format!("l4:room:{{{room}}}")))
                    .unwrap();
            assert_eq!(subscribers, 3, "{room}: every worker subscribed on its shard");
            let kept: i64 = query("127.0.0.1", *port, redis::cmd("ZCARD").arg(format!("l4:hist:{{{room}}}"))).unwrap();
            assert_eq!(kept, 3, "{room}: its history on the same shard");
        }
    });

    // SIGKILL the primary of the first room's shard; send to every room meanwhile.
    let victim = owners["shard-0"];
    tokio::task::block_in_place(|| redis.kill(victim));
    let killed = Instant::now();
    for room in &rooms {
        sender.send(room, &format!("{room}/3")).await.unwrap();
    }
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "a replica promoted in the dead primary's place", || {
            let nodes = redis.nodes();
            let live_primaries = nodes.iter().filter(|n| n.primary && !n.failed && n.port != victim).count();
            live_primaries == 3
                && redis.ports.iter().filter(|p| **p != victim).all(|p| {
                    let info: Option<String> = query("127.0.0.1", *p, redis::cmd("CLUSTER").arg("INFO"));
                    info.is_some_and(|i| i.contains("cluster_state:ok"))
                })
        })
    });
    let promoted = killed.elapsed();
    for sub in &mut subs {
        let got = messages(sub, 30).await;
        expect_rounds(&got, 3..4);
    }
    // Live traffic through the new primary: every worker resubscribed there.
    let new_owner = tokio::task::block_in_place(|| redis.owner("l4:room:{shard-0}"));
    assert_ne!(new_owner, victim);
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(30), "the three workers subscribed on the promoted replica", || {
            let n: Option<(String, i64)> =
                query("127.0.0.1", new_owner, redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg("l4:room:{shard-0}"));
            n.is_some_and(|(_, n)| n == 3)
        })
    });
    sender.send("shard-0", "after").await.unwrap();
    for sub in &mut subs {
        let got = messages(sub, 1).await;
        assert_eq!((got[0].room.as_str(), got[0].seq, got[0].body.as_str()), ("shard-0", 5, "after"));
    }
    eprintln!("primary SIGKILLed; replica promoted after {promoted:?}; all delivered after {:?}", killed.elapsed());
    for sub in &mut subs {
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), sub.next_event()).await {
            assert!(!matches!(e, Event::Message(_) | Event::Gap { .. }), "a duplicate or a gap: {e:?}");
        }
    }
}

/// A resharding moves a room's slot to another shard: Redis drops the room's sharded
/// subscriptions on the old owner, and the workers subscribe again on the new one and
/// deliver what was sent meanwhile, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_slot_moves_to_another_shard_is_followed_there() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = tokio::task::block_in_place(|| RedisCluster::start(tmp.path()));
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let workers = cluster_with_url(2, &redis.url(), &db, &[]).await;
    let mut sub = workers.client(1, 1, "sub");
    let mut publisher = workers.client(0, 2, "pub");
    joined(&mut sub, "moving").await;
    joined(&mut publisher, "moving").await;
    let sender = publisher.sender();
    let _drain = tokio::spawn(async move { while publisher.next_event().await.is_some() {} });
    for i in 0..3 {
        sender.send("moving", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut sub, 3).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let channel = "l4:room:{moving}";
    let (slot, from) = tokio::task::block_in_place(|| (redis.slot(channel), redis.owner(channel)));
    let to =
        tokio::task::block_in_place(|| redis.nodes().into_iter().find(|n| n.primary && n.port != from).unwrap().port);
    tokio::task::block_in_place(|| redis.move_slot(slot, from, to));
    assert_eq!(tokio::task::block_in_place(|| redis.owner(channel)), to);
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(30), "both workers subscribed to the room on its new shard", || {
            let n: Option<(String, i64)> = query("127.0.0.1", to, redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel));
            n.is_some_and(|(_, n)| n == 2)
        })
    });
    for i in 3..6 {
        sender.send("moving", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut sub, 3).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5, 6]);
    let kept: i64 =
        tokio::task::block_in_place(|| query("127.0.0.1", to, redis::cmd("ZCARD").arg("l4:hist:{moving}")).unwrap());
    assert_eq!(kept, 6, "the history moved with the slot and grew there");
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), sub.next_event()).await {
        assert!(!matches!(e, Event::Message(_) | Event::Gap { .. }), "a duplicate or a gap: {e:?}");
    }
}

/// A primary that goes silent (SIGSTOP: no reset, its connections stay open and its
/// kernel still acknowledges what is sent to it) is failed over by the cluster; the
/// workers' commands to it time out, and they follow the promoted replica, losing
/// nothing. (A host that vanishes, whose kernel acknowledges nothing, is what the 5 s
/// `TCP_USER_TIMEOUT` is for; loopback cannot play that.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_gone_silent_is_left_for_its_promoted_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = tokio::task::block_in_place(|| RedisCluster::start(tmp.path()));
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let workers = cluster_with_url(2, &redis.url(), &db, &[]).await;
    let mut sub = workers.client(1, 1, "sub");
    let mut publisher = workers.client(0, 2, "pub");
    joined(&mut sub, "quiet").await;
    joined(&mut publisher, "quiet").await;
    let sender = publisher.sender();
    let _drain = tokio::spawn(async move { while publisher.next_event().await.is_some() {} });
    sender.send("quiet", "before").await.unwrap();
    assert_eq!(messages(&mut sub, 1).await[0].seq, 1);
    let channel = "l4:room:{quiet}";
    let silent = tokio::task::block_in_place(|| redis.owner(channel));
    tokio::task::block_in_place(|| redis.pause(silent, true));
    let stopped = Instant::now();
    for i in 0..3 {
        sender.send("quiet", &format!("during {i}")).await.unwrap();
    }
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "the silent primary's replica promoted", || redis.owner(channel) != silent)
    });
    let new_owner = tokio::task::block_in_place(|| redis.owner(channel));
    let got = messages(&mut sub, 3).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3, 4], "once, in order");
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "both workers subscribed on the promoted replica", || {
            let n: Option<(String, i64)> =
                query("127.0.0.1", new_owner, redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel));
            n.is_some_and(|(_, n)| n == 2)
        })
    });
    sender.send("quiet", "after").await.unwrap();
    assert_eq!(messages(&mut sub, 1).await[0].body, "after");
    eprintln!("primary SIGSTOPped; followed after {:?}", stopped.elapsed());
    tokio::task::block_in_place(|| {
        redis.pause(silent, false);
        redis.kill(silent);
    });
}
