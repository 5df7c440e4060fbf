//! The number each user of the app's backend acts as. A backend token names its user
//! by any string (`sub`); limits per user and idempotent sends key on a number, as
//! they do for this server's accounts. Each `sub` gets a row of `subjects` the first
//! time it connects, on any worker, and acts as minus that row's id from then on
//! (accounts are positive and the publish API is 0, so the three never meet).
//!
//! A worker remembers up to [`SUBJECT_CACHE`] of them (about 300 bytes each at the
//! longest `sub`), and forgets them all when full: a forgotten one costs one query.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Store, StoreError};

/// Subjects a worker remembers.
pub const SUBJECT_CACHE: usize = 16_384;

#[derive(Debug)]
pub struct Subjects {
    store: Store,
    known: Mutex<HashMap<String, i64>>,
}

impl Subjects {
    pub fn new(store: Store) -> Subjects {
        Subjects { store, known: Mutex::new(HashMap::new()) }
    }

    /// The number `subject` acts as (negative), made the first time it is asked for.
    pub async fn id(&self, subject: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(subject) {
            return Ok(id);
        }
        let select = "SELECT id FROM subjects WHERE subject = $1";
        let found: Option<(i64,)> = sqlx::query_as(select).bind(subject).fetch_optional(&self.store.read).await?;
        let row = match found {
            Some((row,)) => row,
            None => {
                // Two workers may add it at once: one row wins, both read it back.
                sqlx::query("INSERT INTO subjects (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING")
                    .bind(subject)
                    .execute(&self.store.write)
                    .await?;
                let (row,): (i64,) = sqlx::query_as(select).bind(subject).fetch_one(&self.store.write).await?;
                row
            }
        };
        let id = -row;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= SUBJECT_CACHE {
            known.clear();
        }
        known.insert(subject.to_string(), id);
        Ok(id)
    }
}
