//! The worker's connection to Redis for the fan-out: to the one server `REDIS_URL`
//! names, to the primary the sentinels name (`redis+sentinel://`,
//! `config/sentinel_url.rs`, `reach/sentinel.rs`), or to a Redis Cluster
//! (`redis+cluster://`, `config/cluster_url.rs`), whose client follows the slot map on
//! the redirections it gets; there a room's channel is sharded (`SSUBSCRIBE`), so its
//! traffic touches one shard. The sharded subscriptions are the fan-out's to restore
//! (the crate's own resubscription sends every channel of a node in one `SSUBSCRIBE`,
//! which a cluster refuses across slots), and a cluster that stays unusable gets a new
//! connection ([`Link::follow_primary`]). [`Con`] is either connection, with the
//! subscribe commands that go with it.
//!
//! A connection manager reconnects to the address it was
//! made for; after a failover that address is gone (or a replica), so on every
//! loss the fan-out calls [`Link::follow_primary`], which asks the sentinels again
//! and, when the primary moved, replaces the manager with one to the new primary
//! (its pushes go to the same receiver; the fan-out then resubscribes every room),
//! once `ROLE` says the new one is a primary. [`Link::usable`] is what the fan-out's
//! recovery waits for: a PING answered, and with Sentinel a primary's `ROLE`.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, ToRedisArgs, Value};
use tokio::sync::mpsc;

use crate::config::backends::RedisTls;
use crate::config::cluster_url::{self, ClusterUrl};
use crate::config::sentinel_url::{self, SentinelUrl};
use crate::reach::sentinel;

/// How long a new connection to a (new) primary may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one server (a manager, which reconnects) or to a cluster (whose
/// client reconnects and follows the slot map); cheap to clone.
#[derive(Clone)]
pub enum Con {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::One(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::One(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::One(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

impl Con {
    /// Whether rooms are sharded channels (`SPUBLISH`, `SSUBSCRIBE`) on a cluster.
    pub fn sharded(&self) -> bool {
        matches!(self, Con::Cluster(_))
    }

    /// `SUBSCRIBE`, or on a cluster `SSUBSCRIBE` (the channels of one call must then
    /// share a slot).
    pub async fn subscribe(&mut self, channels: impl ToRedisArgs + Send + Sync) -> redis::RedisResult<()> {
        match self {
            Con::One(c) => c.subscribe(channels).await,
            Con::Cluster(c) => c.ssubscribe(channels).await,
        }
    }

    pub async fn unsubscribe(&mut self, channels: impl ToRedisArgs + Send + Sync) -> redis::RedisResult<()> {
        match self {
            Con::One(c) => c.unsubscribe(channels).await,
            Con::Cluster(c) => c.sunsubscribe(channels).await,
        }
    }
}

/// A connection to Redis that can follow the primary.
pub struct Link {
    con: RwLock<Con>,
    source: Source,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Source::Direct => "direct",
            Source::Sentinel(_) => "sentinel",
            Source::Cluster(_) => "cluster",
        };
        f.debug_struct("Link").field("source", &source).finish()
    }
}

/// Where the connection goes.
enum Source {
    /// The server of `REDIS_URL`; the manager reconnects to it.
    Direct,
    /// The primary the sentinels name.
    Sentinel(Box<Followed>),
    /// A Redis Cluster; its client follows the slot map, and is made again when the
    /// cluster stays unusable (a primary that went silent keeps its dead connection).
    Cluster(Box<Remade>),
}

/// What making the cluster connection again needs.
struct Remade {
    url: ClusterUrl,
    tls: RedisTls,
    push: mpsc::UnboundedSender<PushInfo>,
    /// The last time it was made.
    at: Mutex<tokio::time::Instant>,
}

/// How often, at most, the cluster connection is made again while the cluster is unusable.
const REMAKE_EVERY: Duration = Duration::from_secs(5);

/// Every slot is served and every primary the cluster names answers a PING (a primary
/// that died is in the slot map until its replica is promoted; the client keeps no
/// connection to it, so a PING to all the primaries it is connected to would not tell).
async fn cluster_usable(con: &mut ClusterConnection) -> bool {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let Ok(ranges) = redis::cmd("CLUSTER").arg("SLOTS").query_async::<Vec<Vec<redis::Value>>>(con).await else {
        return false;
    };
    let (mut covered, mut primaries) = (0u32, std::collections::BTreeSet::new());
    for range in &ranges {
        let (Some(redis::Value::Int(a)), Some(redis::Value::Int(b)), Some(redis::Value::Array(node))) =
            (range.first(), range.get(1), range.get(2))
        else {
            return false;
        };
        let (Some(host), Some(redis::Value::Int(port))) = (node.first(), node.get(1)) else { return false };
        let Ok(host) = redis::from_redis_value_ref::<String>(host) else { return false };
        covered += u32::try_from(b - a + 1).unwrap_or(0);
        primaries.insert((host, u16::try_from(*port).unwrap_or(0)));
    }
    if covered != 16_384 {
        return false;
    }
    for (host, port) in primaries {
        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        if con.route_command(redis::cmd("PING"), at).await.is_err() {
            return false;
        }
    }
    true
}

/// What following the primary needs.
struct Followed {
    url: SentinelUrl,
    tls: RedisTls,
    push: mpsc::UnboundedSender<PushInfo>,
    /// The primary connected to.
    primary: Mutex<(String, u16)>,
}

/// A connection manager for `url` (RESP3, pushes to `push`, automatic resubscription).
async fn open(
    url: &str,
    tls: &RedisTls,
    push: mpsc::UnboundedSender<PushInfo>,
) -> redis::RedisResult<ConnectionManager> {
    let client = crate::reach::redis_client(url, tls)?;
    let config = ConnectionManagerConfig::new()
        .set_push_sender(push)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client, config).await
}

/// Whether the server behind `con` says it is a primary (`ROLE`).
async fn is_primary(con: &mut ConnectionManager) -> bool {
    let role = redis::cmd("ROLE").query_async::<Vec<redis::Value>>(con).await;
    matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"master")
}

impl Link {
    /// Connect to `url`'s server, or to the primary its sentinels name.
    pub async fn connect(url: &str, tls: &RedisTls, push: mpsc::UnboundedSender<PushInfo>) -> redis::RedisResult<Link> {
        let invalid = |e: String| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "REDIS_URL", e));
        if cluster_url::is_cluster(url) {
            let parsed = ClusterUrl::parse(url).map_err(invalid)?;
            let client = crate::reach::redis_cluster_client(&parsed, tls, Some(push.clone()))?;
            let con = client.get_async_connection().await?;
            tracing::info!(nodes = parsed.nodes.len(), "connected to the Redis Cluster");
            let remade = Remade { url: parsed, tls: tls.clone(), push, at: Mutex::new(tokio::time::Instant::now()) };
            return Ok(Link { con: RwLock::new(Con::Cluster(con)), source: Source::Cluster(Box::new(remade)) });
        }
        if !sentinel_url::is_sentinel(url) {
            return Ok(Link { con: RwLock::new(Con::One(open(url, tls, push).await?)), source: Source::Direct });
        }
        let parsed = SentinelUrl::parse(url).map_err(invalid)?;
        let (host, port) = sentinel::primary(&parsed).await?;
        let mut con = open(&parsed.primary_url(&host, port), tls, push.clone()).await?;
        if !is_primary(&mut con).await {
            let said = format!("{host}:{port}, named by the sentinels, is not a primary (ROLE)");
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "REDIS_URL", said)));
        }
        tracing::info!(service = %parsed.service, primary = %format!("{host}:{port}"), "Redis primary found by the sentinels");
        let followed = Followed { url: parsed, tls: tls.clone(), push, primary: Mutex::new((host, port)) };
        let source = Source::Sentinel(Box::new(followed));
        Ok(Link { con: RwLock::new(Con::One(con)), source })
    }

    /// The current connection (a cheap clone).
    pub fn con(&self) -> Con {
        self.con.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A cluster that stays unusable: a new connection (at most every [`REMAKE_EVERY`]),
    /// which asks the nodes of the URL for the slot map again. Whether it was made.
    async fn remake(&self, remade: &Remade) -> bool {
        {
            let mut at = remade.at.lock().unwrap_or_else(PoisonError::into_inner);
            if at.elapsed() < REMAKE_EVERY {
                return false;
            }
            *at = tokio::time::Instant::now();
        }
        if self.usable().await {
            return false;
        }
        let made = async {
            let client = crate::reach::redis_cluster_client(&remade.url, &remade.tls, Some(remade.push.clone()))?;
            client.get_async_connection().await
        };
        match tokio::time::timeout(OPEN_TIMEOUT, made).await {
            Ok(Ok(con)) => {
                *self.con.write().unwrap_or_else(PoisonError::into_inner) = Con::Cluster(con);
                tracing::warn!("the Redis Cluster stayed unusable; connected to it again");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot connect to the Redis Cluster again yet");
                false
            }
            Err(_) => false,
        }
    }

    /// The connection answers; with Sentinel it reaches a primary (a demoted one that
    /// came back as a replica refuses writes); on a cluster, every slot is served and every
    /// primary answers (a shard whose primary died is unusable until its replica is promoted).
    pub async fn usable(&self) -> bool {
        match (&self.source, self.con()) {
            (Source::Sentinel(_), Con::One(mut con)) => is_primary(&mut con).await,
            (Source::Cluster(_), Con::Cluster(mut con)) => cluster_usable(&mut con).await,
            (_, mut con) => redis::cmd("PING").query_async::<String>(&mut con).await.is_ok(),
        }
    }

    /// With Sentinel: ask where the primary is and, when it moved, connect there.
    /// Whether the connection was replaced.
    pub async fn follow_primary(&self) -> bool {
        if let Source::Cluster(remade) = &self.source {
            return self.remake(remade).await;
        }
        let Source::Sentinel(followed) = &self.source else { return false };
        let Followed { url, tls, push, primary } = followed.as_ref();
        let found = match sentinel::primary(url).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "no sentinel named the Redis primary");
                return false;
            }
        };
        if *primary.lock().unwrap_or_else(PoisonError::into_inner) == found {
            return false;
        }
        let target = url.primary_url(&found.0, found.1);
        match tokio::time::timeout(OPEN_TIMEOUT, open(&target, tls, push.clone())).await {
            Ok(Ok(mut con)) => {
                if !is_primary(&mut con).await {
                    let at = format!("{}:{}", found.0, found.1);
                    tracing::warn!(primary = %at, "the sentinels name a server that is not a primary yet");
                    return false;
                }
                *self.con.write().unwrap_or_else(PoisonError::into_inner) = Con::One(con);
                let at = format!("{}:{}", found.0, found.1);
                *primary.lock().unwrap_or_else(PoisonError::into_inner) = found;
                tracing::warn!(service = %url.service, primary = %at, "the Redis primary moved; following it");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot connect to the new Redis primary yet");
                false
            }
            Err(_) => {
                tracing::warn!("no connection to the new Redis primary within 5 s; trying again");
                false
            }
        }
    }
}
