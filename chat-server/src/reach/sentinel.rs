//! Asking Redis Sentinel where the primary is (`REDIS_URL=redis+sentinel://...`, parsed
//! by `config/sentinel_url.rs`): the sentinels in turn, each within [`SENTINEL_TIMEOUT`],
//! over plain TCP and without the credentials (they are the primary's),
//! `SENTINEL GET-MASTER-ADDR-BY-NAME SERVICE`. Whether the server named is a primary is
//! checked on connecting to it, with the URL's credentials and TLS (`hub/link.rs`).

use std::time::Duration;

use crate::config::sentinel_url::{SentinelUrl, in_url};

/// How long one sentinel may take to answer.
pub const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// Ask the sentinels of `url` in turn where the primary of the service is now; the first
/// answer wins. Whether that server is a primary is checked on connecting to it.
pub async fn primary(sentinels: &SentinelUrl) -> redis::RedisResult<(String, u16)> {
    let mut why = None;
    for (host, port) in &sentinels.sentinels {
        let url = format!("redis://{}:{port}", in_url(host));
        let asked = tokio::time::timeout(SENTINEL_TIMEOUT, async {
            let mut con = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            let cmd = redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&sentinels.service).clone();
            cmd.query_async::<Option<(String, u16)>>(&mut con).await
        })
        .await;
        let error = |what: String| redis::RedisError::from((redis::ErrorKind::Io, "sentinel", what));
        match asked {
            Ok(Ok(Some(found))) => return Ok(found),
            Ok(Ok(None)) => why = Some(error(format!("{url} knows no service {}", sentinels.service))),
            Ok(Err(e)) => why = Some(error(format!("{url}: {e}"))),
            Err(_) => why = Some(error(format!("{url}: no answer in {} ms", SENTINEL_TIMEOUT.as_millis()))),
        }
    }
    Err(why.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no sentinel listed"))))
}
