//! `GET /api/v1/apps/{name}/logs?lines=N&stream=combined|out|err`: the newest
//! lines of an app's log files. Reading logs is the one request whose cost grows
//! with what the apps wrote, so it is bounded on every axis (docs/api.md, "Limits"):
//!
//! - `lines` is at most [`MAX_LINES`] per file; more is a 400, not a silent cap.
//! - An answer holds at most [`MAX_BYTES`] of log text, shared evenly among the
//!   files read: the newest lines that fit, and `"truncated": true` when older
//!   ones were left out (what a PM2 user wants from `pm2 logs`: the end).
//! - At most [`LOG_READS`] reads at once, each counted until its answer is sent,
//!   since its bytes stay in memory until then: 429 with `Retry-After` beyond.
//! - The files are read on the blocking pool, never on the daemon's thread, and
//!   after a large answer the freed buffers are given back to the OS.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, ApiQuery, ApiState, bad_request};
use crate::logs::tail::{self, MAX_BYTES, MAX_LINES, Tail};
use crate::wire::types::{AppDescription, SCHEMA};

/// Log reads served at once; each may hold up to `MAX_BYTES` (and its JSON) until sent.
pub const LOG_READS: usize = 2;
/// What a refused read is told to wait, in seconds: a read of `MAX_BYTES` takes milliseconds.
const RETRY_AFTER_S: u32 = 1;
/// Answers are handed to the connection in pieces this large, so that a client that
/// does not read keeps its read counted (the rest of the answer waits here).
const PIECE: usize = 64 << 10;
/// After an answer larger than this is sent, freed memory goes back to the OS.
const TRIM_ABOVE: usize = 1 << 20;

/// The reads in progress (one per daemon, shared by the Unix socket and TCP).
#[derive(Debug, Clone)]
pub struct LogReads(Arc<Semaphore>);

impl Default for LogReads {
    fn default() -> Self {
        LogReads(Arc::new(Semaphore::new(LOG_READS)))
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// How many lines per file (default 15, at most `MAX_LINES`).
    pub lines: Option<usize>,
    /// `combined` (default), `out` or `err`.
    pub stream: Option<String>,
}

pub async fn app_logs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let n = q.lines.unwrap_or(15);
    if n > MAX_LINES {
        return Err(bad_request(format!("lines={n} is more than the {MAX_LINES} lines one read returns per file")));
    }
    let pick = match q.stream.as_deref().unwrap_or("combined") {
        "combined" => |f: &crate::config::LogFiles| f.combined.clone(),
        "out" => |f: &crate::config::LogFiles| f.out.clone(),
        "err" => |f: &crate::config::LogFiles| f.err.clone(),
        other => return Err(bad_request(format!("unknown stream `{other}`: use combined, out or err"))),
    };
    let Ok(permit) = s.log_reads.0.clone().try_acquire_owned() else {
        return Ok(busy(LOG_READS, "log reads"));
    };
    let d: AppDescription = s.handle.describe(&name).await?;
    let files: Vec<(Option<u32>, std::path::PathBuf)> = d.log_files.iter().map(|f| (f.instance, pick(f))).collect();
    let json = tokio::task::spawn_blocking(move || answer(&name, &files, n))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(send(Bytes::from(json), Permit { _held: permit, trim: false }))
}

/// The JSON answer: `{"schema", "app", "lines": [{"instance", "line"}], "truncated"}`.
fn answer(app: &str, files: &[(Option<u32>, std::path::PathBuf)], n: usize) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        instance: Option<u32>,
        line: Cow<'a, str>,
    }
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        schema: u32,
        app: &'a str,
        lines: Vec<Line<'a>>,
        truncated: bool,
    }
    let budget = MAX_BYTES / files.len().max(1);
    let tails: Vec<(Option<u32>, Tail)> =
        files.iter().map(|(instance, path)| (*instance, tail::last_lines(path, n, budget))).collect();
    let lines = tails
        .iter()
        .flat_map(|(instance, t)| {
            t.lines.iter().map(|l| Line { instance: *instance, line: String::from_utf8_lossy(l) })
        })
        .collect();
    let truncated = tails.iter().any(|(_, t)| t.cut);
    serde_json::to_vec(&Answer { schema: SCHEMA, app, lines, truncated }).unwrap_or_default()
}

/// 429 `busy` with `Retry-After`: `what` (`"log reads"`) fills the `at_most` places.
pub(super) fn busy(at_most: usize, what: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        format!("{at_most} {what} are in progress; retry in {RETRY_AFTER_S} s"),
    )
    .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
    r
}

/// A read's place among the `LOG_READS`, given back when its answer is sent or dropped.
struct Permit {
    _held: OwnedSemaphorePermit,
    trim: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trim {
            give_back_memory();
        }
    }
}

/// Send `json` in `PIECE`s; the permit is released once the last piece is taken.
fn send(json: Bytes, mut permit: Permit) -> Response {
    permit.trim = json.len() > TRIM_ABOVE;
    let len = json.len();
    let pieces = (0..len).step_by(PIECE).map(move |at| json.slice(at..len.min(at + PIECE)));
    let body = futures_util::stream::iter(pieces).map(move |piece| {
        let _ = &permit;
        Ok::<_, Infallible>(piece)
    });
    ([(header::CONTENT_TYPE, "application/json")], [(header::CONTENT_LENGTH, len)], Body::from_stream(body))
        .into_response()
}

/// Allocations this large or larger get pages of their own, unmapped when freed.
const MMAP_THRESHOLD: i32 = 512 << 10;

/// Make freed memory go back to the OS (called once, at the daemon's start). glibc
/// raises its mmap threshold up to 32 MiB each time a large block is freed, after
/// which a read's 8 MiB buffers come from a heap whose free top it keeps; and a
/// thread's heap top is not released by `malloc_trim`. Fixing the threshold (above
/// the log writers' 256 KiB chunks) turns that adjustment off.
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator settings, under the allocator's own lock.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Give freed heap memory back to the OS: free chunks inside the heaps, which stay
/// resident otherwise, after a large answer.
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it takes no pointer.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
