//! The last failure of a backend (the database, Redis) and when it happened, for the
//! health check: kept after the backend is back, so a flap shows. A bottom-level type:
//! the store and the hub record into it, the health route reads it.

/// A backend's last failure (at most 300 bytes, cut on a character) and its time.
#[derive(Debug, Default)]
pub struct LastError(std::sync::Mutex<Option<(String, std::time::SystemTime)>>);

impl LastError {
    pub fn set(&self, message: impl Into<String>) {
        let mut m: String = message.into();
        m.truncate(m.floor_char_boundary(300));
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((m, std::time::SystemTime::now()));
    }

    /// `{"message", "at"}` (RFC 3339), or null.
    pub fn json(&self) -> serde_json::Value {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((message, at)) => {
                let at =
                    chrono::DateTime::<chrono::Utc>::from(*at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                serde_json::json!({ "message": message, "at": at })
            }
            None => serde_json::Value::Null,
        }
    }
}
