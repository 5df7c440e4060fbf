//! How one captured line looks in a file: the timestamp, the instance and stream
//! tags, or a JSON object (`log_type = "json"`). Timestamps are formatted once per
//! millisecond, not once per line, because a flood has thousands of lines per ms.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::{LogSpec, LogType};

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Out = 0,
    Err = 1,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// Formats timestamps, caching the text of the current millisecond.
#[derive(Debug)]
pub struct Stamp {
    format: Option<String>,
    cached_ms: i64,
    text: String,
}

impl Stamp {
    pub fn new(format: Option<String>) -> Self {
        Stamp { format, cached_ms: i64::MIN, text: String::new() }
    }

    pub fn text(&mut self, at: SystemTime) -> &str {
        let dt: DateTime<Utc> = at.into();
        let ms = dt.timestamp_millis();
        if ms != self.cached_ms {
            self.cached_ms = ms;
            self.text = match &self.format {
                Some(f) => dt.format(f).to_string(),
                None => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            };
        }
        &self.text
    }
}

/// The prefixes of one chunk's lines: for the stream's own file and for the combined file.
pub fn prefixes(spec: &LogSpec, stamp: &str, instance: u32, stream: Stream) -> (Vec<u8>, Vec<u8>) {
    let ts = if spec.time { format!("{stamp} ") } else { String::new() };
    if spec.merge_logs {
        (format!("{ts}[{instance}] ").into_bytes(), format!("{ts}[{instance}/{}] ", stream.as_str()).into_bytes())
    } else {
        (ts.clone().into_bytes(), format!("{ts}[{}] ", stream.as_str()).into_bytes())
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    ts: &'a str,
    app: &'a str,
    instance: u32,
    stream: Stream,
    line: &'a str,
}

/// One line as a JSON object (with its newline). Invalid UTF-8 becomes U+FFFD here;
/// text files keep the raw bytes.
pub fn json_line(out: &mut Vec<u8>, ts: &str, app: &str, instance: u32, stream: Stream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let _ = serde_json::to_writer(&mut *out, &JsonLine { ts, app, instance, stream, line: &text });
    out.push(b'\n');
}

pub fn is_json(spec: &LogSpec) -> bool {
    spec.log_type == LogType::Json
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn default_stamp_is_rfc3339_with_milliseconds_in_utc() {
        let mut s = Stamp::new(None);
        let at = UNIX_EPOCH + Duration::from_millis(1_764_417_600_123);
        assert_eq!(s.text(at), "2025-11-29T12:00:00.123Z");
        let mut custom = Stamp::new(Some("%Y-%m-%d %H:%M:%S".into()));
        assert_eq!(custom.text(at), "2025-11-29 12:00:00");
    }

    #[test]
    fn json_lines_escape_and_keep_invalid_utf8_visible() {
        let mut out = Vec::new();
        json_line(&mut out, "t", "web", 2, Stream::Err, b"a \"q\" \xff");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["line"], "a \"q\" \u{fffd}");
        assert_eq!(
            (v["app"].as_str(), v["instance"].as_u64(), v["stream"].as_str()),
            (Some("web"), Some(2), Some("err"))
        );
    }
}
