//! The config values that decide who binds an app's port and when an instance
//! counts as ready: `socket = "supervisor" | "app"` and
//! `ready = "none" | "notify" | "http:/path" | "tcp"`.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Who binds an app's ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketOwner {
    /// l4ctl binds `listen_host:port+i` and passes it to every run of instance `i`
    /// as fd 3 (systemd's `LISTEN_FDS`), so a restart or reload refuses nothing.
    #[default]
    Supervisor,
    /// The worker binds `PORT` itself (programs that do not read `LISTEN_FDS`).
    App,
}

/// When a started instance counts as `online`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ready {
    /// As soon as it is started (PM2's default).
    #[default]
    None,
    /// When it sends `READY=1` to `NOTIFY_SOCKET` (systemd's sd_notify protocol).
    Notify,
    /// When `GET http://<host>:<port><path>` answers 200.
    Http(String),
    /// When a TCP connection to its port succeeds.
    Tcp,
}

impl Ready {
    pub fn parse(text: &str) -> Result<Ready, String> {
        match text {
            "none" => Ok(Ready::None),
            "notify" => Ok(Ready::Notify),
            "tcp" => Ok(Ready::Tcp),
            _ => match text.strip_prefix("http:") {
                Some(path) if path.starts_with('/') && !path.contains(char::is_whitespace) => {
                    Ok(Ready::Http(path.to_owned()))
                }
                _ => Err(format!(
                    "invalid ready {text:?}: expected \"none\", \"notify\", \"tcp\" or \"http:/path\" (e.g. \"http:/api/health/websocket\")"
                )),
            },
        }
    }

    /// Whether a start has to wait for a sign of readiness.
    pub fn waits(&self) -> bool {
        *self != Ready::None
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::None => f.write_str("none"),
            Ready::Notify => f.write_str("notify"),
            Ready::Http(path) => write!(f, "http:{path}"),
            Ready::Tcp => f.write_str("tcp"),
        }
    }
}

impl Serialize for Ready {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ready::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_values_parse_and_print_back() {
        for text in ["none", "notify", "tcp", "http:/api/health/websocket"] {
            assert_eq!(Ready::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Ready::parse("http:/x").unwrap(), Ready::Http("/x".into()));
        for bad in ["http", "http:", "http:health", "http:/a b", "NOTIFY", ""] {
            let err = Ready::parse(bad).unwrap_err();
            assert!(err.contains("expected \"none\""), "{bad}: {err}");
        }
        assert!(!Ready::None.waits() && Ready::Notify.waits());
    }
}
