//! Connecting: loopback check, the handshake (token and subprotocol), small buffers, and
//! spreading connections over single-threaded runtimes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Common, Protocol};
use layer4_chat_client::protocol::Format;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn check_loopback(url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).context("bad --url")?;
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        other => bail!("refusing to load {other:?}: l4load only targets 127.0.0.1 / localhost"),
    }
}

pub async fn connect(common: &Common) -> anyhow::Result<Ws> {
    let request = match common.protocol {
        Protocol::L4 => layer4_chat_client::client::handshake_request(&common.url, &common.token, Format::Json)
            .map_err(anyhow::Error::msg)?,
        Protocol::Raw => common.url.as_str().into_client_request()?,
    };
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
    let connector = tokio_tungstenite::Connector::Rustls(layer4_chat_client::tls::default_config());
    let connecting = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(connector));
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connecting).await.context("handshake timed out")??;
    Ok(ws)
}

/// Runs `per_thread(thread_index, threads)` on `threads` OS threads, each with its own
/// single-threaded runtime, and returns their results.
pub fn on_threads<T, F, Fut>(threads: usize, per_thread: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T>,
{
    let per_thread = Arc::new(per_thread);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let f = per_thread.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(f(t, threads))
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}

pub fn threads(common: &Common) -> usize {
    common.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}
