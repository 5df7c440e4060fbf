//! Reaching the worker's database and Redis: the Redis client with its TLS files (one
//! place, for the fan-out and for `--check`), and `chat-server --check`, which connects
//! to each the way the worker will (TLS handshake and authentication included) and says
//! in one sentence what failed ([`why`]).

pub mod sentinel;
pub mod why;

use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::config::Settings;
use crate::config::backends::RedisTls;
use crate::config::cluster_url::ClusterUrl;
use why::Endpoint;

/// How long `--check` waits for each connection.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// rustls with ring, for the libraries that take the process's default (redis).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The Redis client for `url` (RESP3 unless the URL says otherwise), trusting only
/// `REDIS_CA_FILE` when it is set and presenting the client certificate when one is.
pub fn redis_client(url: &str, tls: &RedisTls) -> redis::RedisResult<redis::Client> {
    install_crypto();
    let invalid =
        |what: &str| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "REDIS_URL", what.to_owned()));
    let mut parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !parsed.query_pairs().any(|(k, _)| k == "protocol") {
        parsed.query_pairs_mut().append_pair("protocol", "resp3");
    }
    match certificates(tls)? {
        None => redis::Client::open(parsed.as_str()),
        Some(certs) => redis::Client::build_with_tls(parsed.as_str(), certs),
    }
}

/// `REDIS_CA_FILE` and the client certificate, when either is set.
fn certificates(tls: &RedisTls) -> redis::RedisResult<Option<redis::TlsCertificates>> {
    if tls.ca_file.is_none() && tls.client.is_none() {
        return Ok(None);
    }
    let root_cert = tls.ca_file.as_ref().map(std::fs::read).transpose()?;
    let client_tls = match &tls.client {
        Some((cert, key)) => {
            Some(redis::ClientTlsConfig { client_cert: std::fs::read(cert)?, client_key: std::fs::read(key)? })
        }
        None => None,
    };
    Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
}

/// The client for a Redis Cluster (RESP3, pushes to `push`), with the TLS files as for
/// one server. A command is tried 3 times (100 ms to 1 s apart) before it fails: a shard
/// being failed over then fails fast, and the fan-out's recovery takes over. Unacked
/// data on a connection fails it after 5 s (`TCP_USER_TIMEOUT`).
pub fn redis_cluster_client(
    url: &ClusterUrl,
    tls: &RedisTls,
    push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    install_crypto();
    let mut builder = redis::cluster::ClusterClientBuilder::new(url.node_urls())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .retries(3)
        .min_retry_wait(100)
        .max_retry_wait(1000)
        // A node that goes silent (its host gone) fails its connection within 5 s, not
        // when the kernel gives up (minutes).
        .tcp_settings(redis::io::tcp::TcpSettings::default().set_user_timeout(Duration::from_secs(5)));
    if let Some(push) = push {
        builder = builder.push_sender(push);
    }
    if let Some(certs) = certificates(tls)? {
        builder = builder.certs(certs);
    }
    builder.build()
}

/// Connects to the database and to Redis (when set) as the worker would; one line
/// per success, or the sentence of the first failure.
pub async fn check(settings: &Settings) -> Result<Vec<String>, String> {
    install_crypto();
    let mut ok = vec![database(&settings.database_url).await?];
    if let Some(url) = &settings.redis_url {
        ok.push(redis(url, &settings.redis_tls).await?);
    }
    Ok(ok)
}

/// The host name resolves (said apart from a refused or silent port).
async fn resolves(to: &Endpoint) -> Result<(), String> {
    if to.is_socket() {
        return Ok(());
    }
    let found = tokio::time::timeout(CHECK_TIMEOUT, tokio::net::lookup_host((to.host.as_str(), to.port))).await;
    match found.map(|r| r.map(|mut addrs| addrs.next().is_some())) {
        Ok(Ok(true)) => Ok(()),
        _ => Err(why::sentence(to, &std::io::Error::other("failed to lookup address information"))),
    }
}

async fn database(url: &str) -> Result<String, String> {
    sqlx::any::install_default_drivers();
    let shown = crate::config::redact_url(url);
    if url.starts_with("sqlite:") {
        return match crate::store::files::sqlite_path(url) {
            Some(path) => sqlite(&path).map(|what| format!("database {shown}: {what}")),
            None => Ok(format!("database {shown}: in memory")),
        };
    }
    let to = Endpoint::new("DATABASE_URL", url);
    resolves(&to).await?;
    let started = Instant::now();
    let connected = tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        let tls: Option<bool> = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(&mut conn)
            .await
            // Unknown behind a proxy (PgBouncer) without pg_stat_ssl: the login worked.
            .unwrap_or(None);
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(tls)
    })
    .await;
    match connected {
        Ok(Ok(tls)) => Ok(format!(
            "database {shown}: connected{} in {} ms",
            match tls {
                Some(true) => " over TLS",
                Some(false) => " without TLS",
                None => " (TLS unknown: no pg_stat_ssl)",
            },
            started.elapsed().as_millis()
        )),
        Ok(Err(e)) => Err(why::sentence(&to, &e)),
        Err(_) => Err(why::sentence(&to, &std::io::Error::from(std::io::ErrorKind::TimedOut))),
    }
}

/// SQLite: the file opens, or its folder is there to be written (the worker creates it).
fn sqlite(path: &std::path::Path) -> Result<&'static str, String> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(|_| "the file is there and writable")
            .map_err(|e| format!("DATABASE_URL: {}: {e}", path.display()));
    }
    let mut folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    while !folder.exists() {
        folder = folder.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    }
    let c = std::ffi::CString::new(folder.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: access only reads the NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok("the file will be created")
    } else {
        Err(format!("DATABASE_URL: {}: cannot create the file: {} is not writable", path.display(), folder.display()))
    }
}

async fn redis(url: &str, tls: &RedisTls) -> Result<String, String> {
    let shown = crate::config::redact_url(url);
    if crate::config::sentinel_url::is_sentinel(url) {
        let parsed = crate::config::sentinel_url::SentinelUrl::parse(url)?;
        let (host, port) =
            sentinel::primary(&parsed).await.map_err(|e| format!("REDIS_URL: {shown}: the sentinels: {e}"))?;
        let said = Box::pin(redis(&parsed.primary_url(&host, port), tls)).await?;
        return Ok(format!("{said} (the primary of {} at {host}:{port}, from {shown})", parsed.service));
    }
    if crate::config::cluster_url::is_cluster(url) {
        return cluster(&ClusterUrl::parse(url)?, tls).await;
    }
    let to = Endpoint::new("REDIS_URL", url);
    resolves(&to).await?;
    let client = redis_client(url, tls).map_err(|e| why::sentence(&to, &e))?;
    let started = Instant::now();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CHECK_TIMEOUT))
        .set_response_timeout(Some(CHECK_TIMEOUT));
    let pinged = async {
        let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
        redis::cmd("PING").query_async::<String>(&mut con).await
    };
    match pinged.await {
        Ok(_) => Ok(format!(
            "Redis {shown}: PING answered{} in {} ms",
            if to.tls { " over TLS" } else { " without TLS" },
            started.elapsed().as_millis()
        )),
        Err(e) => Err(why::sentence(&to, &e)),
    }
}

/// A Redis Cluster: every node listed answers, and the cluster says its state is `ok`
/// (every slot served).
async fn cluster(url: &ClusterUrl, tls: &RedisTls) -> Result<String, String> {
    let started = Instant::now();
    for node in url.node_urls() {
        let to = Endpoint::new("REDIS_URL", &node);
        resolves(&to).await?;
        let client = redis_client(&node, tls).map_err(|e| why::sentence(&to, &e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CHECK_TIMEOUT))
            .set_response_timeout(Some(CHECK_TIMEOUT));
        let info = async {
            let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
            redis::cmd("CLUSTER").arg("INFO").query_async::<String>(&mut con).await
        };
        let info = info.await.map_err(|e| why::sentence(&to, &e))?;
        if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
            let state = info.lines().find(|l| l.starts_with("cluster_state:")).unwrap_or("cluster_state:unknown");
            return Err(format!("REDIS_URL: {}: the cluster is not ready ({})", url.redacted(), state.trim()));
        }
    }
    Ok(format!(
        "Redis Cluster {}: {} node(s) answered, cluster_state ok, in {} ms",
        url.redacted(),
        url.nodes.len(),
        started.elapsed().as_millis()
    ))
}
