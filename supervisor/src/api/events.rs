//! `GET /api/v1/events`: Server-Sent Events, one JSON object per event (`type`:
//! `state`, `restart`, `memory`; see `daemon::Event`). A subscriber that falls
//! more than `EVENT_BUFFER` events behind gets a `lagged` event with the count
//! it missed, then continues. Streams end when the daemon shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiState};

pub async fn events(State(s): State<ApiState>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = s.handle.subscribe().await?;
    let stopping = s.stopping.clone();
    let stream = futures_util::stream::unfold((rx, stopping), |(mut rx, mut stopping)| async move {
        let event = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => {
                    let json = serde_json::to_string(&e).unwrap_or_default();
                    let kind = serde_json::to_value(&e).ok().and_then(|v| v["type"].as_str().map(str::to_owned));
                    Event::default().event(kind.unwrap_or_else(|| "event".into())).data(json)
                }
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(format!("{{\"type\":\"lagged\",\"missed\":{n}}}")),
                Err(RecvError::Closed) => return None,
            },
            _ = stopping.wait_for(|s| *s) => return None,
        };
        Some((Ok(event), (rx, stopping)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
