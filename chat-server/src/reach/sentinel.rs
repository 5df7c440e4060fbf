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
        // The redis crate's own timeouts (1 s to connect, 500 ms per answer) are off:
        // [`SENTINEL_TIMEOUT`] is the one bound, and a sentinel gets all of it.
        let unbounded = redis::AsyncConnectionConfig::new().set_connection_timeout(None).set_response_timeout(None);
        let asked = tokio::time::timeout(SENTINEL_TIMEOUT, async {
            let client = redis::Client::open(url.as_str())?;
            let mut con = client.get_multiplexed_async_connection_with_config(&unbounded).await?;
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

/// Each sentinel gets [`SENTINEL_TIMEOUT`], whatever it does with it: one that takes
/// the connection and never answers, one that answers just inside the second, one
/// that answers at once (a peer speaking RESP, naming the Redis at 127.0.0.1:6379).
#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::{SENTINEL_TIMEOUT, primary};
    use crate::config::sentinel_url::SentinelUrl;

    /// A sentinel that answers `SENTINEL ...` after `delay` with 127.0.0.1:6379, and
    /// anything else (the client's `CLIENT SETINFO`) with `+OK` at once.
    async fn answering(delay: Duration) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    // A command: `*N`, then `$LEN` and the argument, N times.
                    while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let n: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                        let mut args = Vec::new();
                        for _ in 0..n * 2 {
                            line.clear();
                            stream.read_line(&mut line).await.unwrap();
                            args.push(line.trim().to_owned());
                        }
                        let reply: &[u8] = if args.get(1).is_some_and(|a| a.eq_ignore_ascii_case("SENTINEL")) {
                            tokio::time::sleep(delay).await;
                            b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"
                        } else {
                            b"+OK\r\n"
                        };
                        if stream.get_mut().write_all(reply).await.is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            }
        });
        port
    }

    /// A sentinel whose port takes connections (the kernel's backlog) and never answers.
    fn silent() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    fn url(ports: &[u16]) -> SentinelUrl {
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        SentinelUrl::parse(&format!("redis+sentinel://{}/mymaster", hosts.join(","))).unwrap()
    }

    #[tokio::test]
    async fn a_silent_sentinel_is_left_after_one_second_for_the_next_one() {
        let (_held, quiet) = silent();
        let next = answering(Duration::ZERO).await;
        let asked = Instant::now();
        let found = primary(&url(&[quiet, next])).await.unwrap();
        let took = asked.elapsed();
        assert_eq!(found, ("127.0.0.1".to_owned(), 6379));
        assert!(took >= SENTINEL_TIMEOUT && took < SENTINEL_TIMEOUT + Duration::from_secs(4), "{took:?}");
    }

    /// Inside the second but past the redis crate's own defaults (500 ms for an answer):
    /// the documented second is what a sentinel gets.
    #[tokio::test]
    async fn a_sentinel_answering_within_its_second_is_heard() {
        let slow = answering(Duration::from_millis(600)).await;
        let asked = Instant::now();
        let found = primary(&url(&[slow])).await.map_err(|e| e.to_string());
        assert_eq!(found, Ok(("127.0.0.1".to_owned(), 6379)), "after {:?}", asked.elapsed());
    }

    #[tokio::test]
    async fn silent_sentinels_get_one_second_each_and_the_error_names_the_last() {
        let ((_a, first), (_b, second)) = (silent(), silent());
        let asked = Instant::now();
        let err = primary(&url(&[first, second])).await.unwrap_err().to_string();
        let took = asked.elapsed();
        assert!(took >= 2 * SENTINEL_TIMEOUT && took < 2 * SENTINEL_TIMEOUT + Duration::from_secs(4), "{took:?}");
        assert!(err.contains(&format!("redis://127.0.0.1:{second}: no answer in 1000 ms")), "{err}");
    }
}
