//! README "Redis Sentinel": the workers find the Redis primary through Sentinel
//! (`REDIS_URL=redis+sentinel://...`); the primary SIGKILLed, the sentinels
//! promote the replica, the workers follow it, resubscribe their rooms and lose
//! nothing (the messages of the failover reach the other worker's members from
//! the database, once and in order). Everything is a private process of the
//! test on loopback ports: a primary, its replica and three sentinels.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use layer4_chat_client::client::Event;

use crate::fanout::cluster_with_url;
use crate::helper::{Backend, Database, free_port, joined, messages};

/// A primary, a replica and three sentinels watching them as `mymaster`.
pub struct SentinelSet {
    /// The address they all listen on.
    pub host: String,
    pub primary: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    /// The primary's and the replica's password, when they have one.
    pub password: Option<String>,
    children: Vec<(u16, Child)>,
}

/// How a `redis-server` is started: here, or inside a namespace (`netns.rs`).
pub type Spawn<'a> = &'a dyn Fn(&[&str]) -> Command;

fn redis_server(spawn: Spawn<'_>, args: &[&str]) -> Child {
    spawn(args).stdout(Stdio::null()).spawn().expect("redis-server is installed (.ci/test installs it)")
}

pub fn query<T: redis::FromRedisValue>(host: &str, port: u16, cmd: &redis::Cmd) -> Option<T> {
    query_as(None, host, port, cmd)
}

/// `cmd` on `host:port`, with `password` when there is one.
fn query_as<T: redis::FromRedisValue>(password: Option<&str>, host: &str, port: u16, cmd: &redis::Cmd) -> Option<T> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let client = redis::Client::open(format!("redis://{auth}{host}:{port}")).ok()?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
    cmd.query(&mut con).ok()
}

pub fn until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SentinelSet {
    /// On loopback, on free ports, the data nodes behind `password`.
    pub fn start(dir: &Path, password: Option<&str>) -> SentinelSet {
        let ports = [free_port(), free_port(), free_port(), free_port(), free_port()];
        let here = |args: &[&str]| {
            let mut c = Command::new("redis-server");
            c.args(args);
            c
        };
        SentinelSet::start_on(dir, "127.0.0.1", ports, &here, password)
    }

    /// On `host`: the primary, the replica and the sentinels on `ports` in that order.
    pub fn start_on(dir: &Path, host: &str, ports: [u16; 5], spawn: Spawn<'_>, password: Option<&str>) -> SentinelSet {
        let (primary, replica) = (ports[0], ports[1]);
        // A replica writes the primary's snapshot to disk: into the test's folder.
        let dir_arg = dir.display().to_string();
        // No password: reachable from other hosts' addresses only without protected mode.
        let mut plain =
            vec!["--bind", host, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", &dir_arg];
        if let Some(p) = password {
            plain.extend(["--requirepass", p, "--masterauth", p]);
        }
        let auth_pass = password.map(|p| format!("sentinel auth-pass mymaster {p}\n")).unwrap_or_default();
        let first = redis_server(spawn, &[&["--port", &primary.to_string()][..], &plain].concat());
        let mut children = vec![(primary, first)];
        let replica_of = ["--replicaof", host, &primary.to_string()];
        let second = redis_server(spawn, &[&["--port", &replica.to_string()][..], &plain, &replica_of].concat());
        children.push((replica, second));
        let sentinels: Vec<u16> = ports[2..].to_vec();
        for port in &sentinels {
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {host}\nprotected-mode no\ndir {dir_arg}\nsentinel monitor mymaster {host} {primary} 2\nsentinel down-after-milliseconds mymaster 3000\nsentinel failover-timeout mymaster 10000\nsentinel parallel-syncs mymaster 1\n{auth_pass}"
                ),
            )
            .unwrap();
            children.push((*port, redis_server(spawn, &[conf.to_str().unwrap(), "--sentinel"])));
        }
        let password = password.map(str::to_owned);
        let set = SentinelSet { host: host.to_owned(), primary, replica, sentinels, password, children };
        // Ready for a failover: the replica in sync, and every sentinel knowing the
        // replica and the two other sentinels.
        until(Duration::from_secs(60), "the replica in sync and the sentinels acquainted", || {
            let info: Option<String> = set.data(replica, redis::cmd("INFO").arg("replication"));
            let synced = info.is_some_and(|i| i.contains("master_link_status:up"));
            synced
                && set.sentinels.iter().all(|s| {
                    let cmd = |what: &str| {
                        query::<Vec<redis::Value>>(host, *s, redis::cmd("SENTINEL").arg(what).arg("mymaster"))
                            .map_or(0, |v| v.len())
                    };
                    cmd("replicas") == 1 && cmd("sentinels") == 2
                })
        });
        set
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|p| format!("{}:{p}", self.host)).collect();
        let auth = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        format!("redis+sentinel://{auth}{}/mymaster", hosts.join(","))
    }

    /// `cmd` on the primary or the replica at `port` (with the password).
    pub fn data<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> Option<T> {
        query_as(self.password.as_deref(), &self.host, port, cmd)
    }

    /// The primary's port, as the first sentinel that answers says.
    pub fn primary_now(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: Option<(String, String)> =
                query(&self.host, *s, redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("mymaster"));
            addr.and_then(|(_, port)| port.parse().ok())
        })
    }

    /// SIGKILL the process on `port`.
    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.children {
            if *p == port {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_the_workers_follow_the_promoted_replica_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The data nodes want a password: the workers find the primary and check its ROLE with it.
    let mut set = tokio::task::block_in_place(|| SentinelSet::start(tmp.path(), Some("s3ntinel-pass")));
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let cluster = cluster_with_url(2, &set.url(), &db, &[]).await;
    let mut sub = cluster.client(1, 1, "sub");
    let mut publisher = cluster.client(0, 2, "pub");
    for room in ["failover", "failover-b"] {
        joined(&mut sub, room).await;
        joined(&mut publisher, room).await;
    }
    let sender = publisher.sender();
    let _drain = tokio::spawn(async move { while publisher.next_event().await.is_some() {} });
    for i in 0..10 {
        sender.send("failover", &i.to_string()).await.unwrap();
    }
    assert_eq!(messages(&mut sub, 10).await.len(), 10, "through the first primary");

    let old = set.primary;
    // The sentinels have not failed over on their own (a loaded machine).
    assert_eq!(tokio::task::block_in_place(|| set.primary_now()), Some(old));
    set.kill(old);
    let killed = Instant::now();
    // Sent while the primary is gone and before the replica is promoted: stored,
    // and reach the other worker from the database once it follows the new primary.
    for i in 10..20 {
        sender.send("failover", &i.to_string()).await.unwrap();
    }
    sender.send("failover-b", "during").await.unwrap();
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(60), "the sentinels to promote the replica", || {
            set.primary_now() == Some(set.replica)
        })
    });
    let promoted = killed.elapsed();
    let got = messages(&mut sub, 11).await;
    let seqs: Vec<u64> = got.iter().filter(|m| m.room == "failover").map(|m| m.seq).collect();
    assert_eq!(seqs, (11..=20).collect::<Vec<_>>(), "every message of the failover, in order, once");
    assert!(got.iter().any(|m| m.room == "failover-b" && m.body == "during"));
    // Both workers subscribe on the new primary, and live traffic flows through it.
    let new = set.replica;
    tokio::task::block_in_place(|| {
        until(Duration::from_secs(30), "both workers subscribed on the new primary", || {
            set.data::<(String, i64)>(new, redis::cmd("PUBSUB").arg("NUMSUB").arg("l4:room:failover-b"))
                .is_some_and(|(_, n)| n == 2)
        })
    });
    sender.send("failover", "after").await.unwrap();
    assert_eq!(messages(&mut sub, 1).await[0].body, "after");
    eprintln!("primary SIGKILLed; promoted after {promoted:?}; all caught up after {:?}", killed.elapsed());
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), sub.next_event()).await {
        assert!(!matches!(e, Event::Message(_) | Event::Gap { .. }), "a duplicate or a gap: {e:?}");
    }
    let history: i64 = set.data(new, redis::cmd("ZCARD").arg("l4:hist:failover")).unwrap_or(0);
    assert!(history >= 1, "the new primary holds the history written after the failover");
}
