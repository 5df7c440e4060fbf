//! Durable storage: accounts, the backend's users ([`subjects`]) and messages
//! (numbered per room), in SQLite (the default, one file) or PostgreSQL
//! (`DATABASE_URL=postgres://...`), through one sqlx `Any` code path.
//!
//! Owns the schema (`migrations/sqlite`, `migrations/postgres`, run at start) and the
//! rules that make sends durable and idempotent: [`Store::append`] allocates the next
//! per-room sequence number and stores the message in one transaction, and a resend
//! with the same (user, client id) returns the original sequence instead of a new row.
//! It does not order broadcasts; the caller holds the room's send lock around it.
//!
//! Portability rules of sqlx `Any` followed here: integers are BIGINT read as i64,
//! time is epoch milliseconds, placeholders are `$N` on both backends, no booleans.

use std::fmt::Write;

use layer4_chat_protocol::ChatMessage;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub mod files;
pub mod subjects;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("database file: {0}")]
    Files(std::io::Error),
    #[error("the user name is taken")]
    NameTaken,
    /// A batch collided with rows already stored (a sequence number or a client id):
    /// nothing of it was stored.
    #[error("a row of the batch is already stored")]
    Conflict,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Stored(ChatMessage),
    /// This (user, client id) was stored before, as `seq` in `room`.
    Duplicate {
        room: String,
        seq: u64,
    },
}

/// A new message to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub room: &'a str,
    pub user_id: i64,
    pub user: &'a str,
    pub client_id: &'a str,
    pub body: &'a str,
    pub ts: i64,
}

impl NewMessage<'_> {
    /// The message as delivered, once stored as `seq`.
    fn stored_as(&self, seq: u64) -> ChatMessage {
        ChatMessage {
            room: self.room.to_string(),
            seq,
            id: self.client_id.to_string(),
            user: self.user.to_string(),
            body: self.body.to_string(),
            ts: self.ts,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    /// SQLite takes one writer at a time; its write pool has one connection so
    /// transactions queue in the pool instead of failing with SQLITE_BUSY.
    write: AnyPool,
    read: AnyPool,
    /// The health check's last failed query (kept after the database is back).
    pub last_error: std::sync::Arc<crate::last_error::LastError>,
}

type Row = (String, i64, String, String, String, i64);
const COLUMNS: &str = "room, seq, client_id, user_name, body, ts";

fn message((room, seq, id, user, body, ts): Row) -> ChatMessage {
    ChatMessage { room, seq: seq as u64, id, user, body, ts }
}

impl Store {
    /// Connects, creating the SQLite file (and its folder) when missing, and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = sqlite_url(url)?;
            let options = || {
                AnyPoolOptions::new().after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                })
            };
            let write = options().max_connections(1).connect(&url).await?;
            SQLITE.run(&write).await?;
            let read = options().max_connections(4).connect(&url).await?;
            // Nothing may open the database's files from here on (see make_private).
            Ok(Store { write, read, last_error: Default::default() })
        } else {
            let pool = AnyPoolOptions::new().max_connections(8).connect(url).await?;
            POSTGRES.run(&pool).await?;
            Ok(Store { write: pool.clone(), read: pool, last_error: Default::default() })
        }
    }

    /// Stores a message as the room's next sequence number, or finds its earlier copy.
    ///
    /// One statement per message: the sequence number is computed inside the INSERT
    /// (`MAX(seq) + 1` over the room's primary-key range), so a send costs one round trip
    /// to the database. Two writers racing for the same number (PostgreSQL with several
    /// workers) collide on the primary key; the loser finds no earlier copy of its own
    /// message and tries again with the next number.
    pub async fn append(&self, m: NewMessage<'_>) -> Result<Appended, StoreError> {
        loop {
            match self.insert(m).await {
                Ok(seq) => return Ok(Appended::Stored(m.stored_as(seq))),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    if let Some((room, seq)) = self.sent_before(m.user_id, m.client_id).await? {
                        return Ok(Appended::Duplicate { room, seq: seq as u64 });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stores `items` (all of one room) as sequence numbers `first_seq..`, in one
    /// statement: all of them or, on any error, none ([`StoreError::Conflict`] when a
    /// sequence number or a client id is already taken).
    pub async fn append_many(&self, items: &[NewMessage<'_>], first_seq: u64) -> Result<Vec<ChatMessage>, StoreError> {
        let mut sql = String::from("INSERT INTO messages (room, seq, user_id, user_name, client_id, body, ts) VALUES ");
        for i in 0..items.len() {
            let b = i * 7;
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                sql,
                "{sep}(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            );
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, m) in items.iter().enumerate() {
            query = query
                .bind(m.room)
                .bind((first_seq + i as u64) as i64)
                .bind(m.user_id)
                .bind(m.user)
                .bind(m.client_id)
                .bind(m.body)
                .bind(m.ts);
        }
        match query.execute(&self.write).await {
            Ok(_) => Ok(items.iter().enumerate().map(|(i, m)| m.stored_as(first_seq + i as u64)).collect()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    async fn sent_before(&self, user_id: i64, client_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT room, seq FROM messages WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.write)
            .await?)
    }

    async fn insert(&self, m: NewMessage<'_>) -> Result<u64, sqlx::Error> {
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO messages (room, seq, user_id, user_name, client_id, body, ts) \
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE room = $1), $2, $3, $4, $5, $6) \
             RETURNING seq",
        )
        .bind(m.room)
        .bind(m.user_id)
        .bind(m.user)
        .bind(m.client_id)
        .bind(m.body)
        .bind(m.ts)
        .fetch_one(&self.write)
        .await?;
        Ok(seq as u64)
    }

    /// The room's newest sequence number (0 for a room without messages).
    pub async fn head(&self, room: &str) -> Result<u64, StoreError> {
        let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room = $1")
            .bind(room)
            .fetch_one(&self.read)
            .await?;
        Ok(head as u64)
    }

    /// Messages with `after < seq <= upto`, oldest first.
    pub async fn range(&self, room: &str, after: u64, upto: u64) -> Result<Vec<ChatMessage>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq");
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(room)
            .bind(after as i64)
            .bind(upto as i64)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.into_iter().map(message).collect())
    }

    /// Up to `limit` messages below `before`, oldest first, and whether older ones exist:
    /// the newest ones, read `chunk` at a time, until their bodies reach `budget` bytes
    /// (one message at least), so that what is read stays within the budget plus one
    /// chunk.
    pub async fn history(
        &self,
        room: &str,
        before: u64,
        limit: u32,
        budget: usize,
        chunk: usize,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
        let (limit, chunk) = (limit as usize, chunk.max(1));
        let (mut out, mut bytes, mut before) = (Vec::new(), 0usize, before.min(i64::MAX as u64) as i64);
        loop {
            let want = chunk.min(limit - out.len());
            let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(room)
                .bind(before)
                .bind(want as i64 + 1)
                .fetch_all(&self.read)
                .await?;
            let older = rows.len() > want;
            for row in rows.into_iter().take(want) {
                if !out.is_empty() && bytes >= budget {
                    out.reverse();
                    return Ok((out, true));
                }
                let msg = message(row);
                bytes += msg.body.len();
                before = msg.seq as i64;
                out.push(msg);
            }
            if !older || out.len() >= limit {
                out.reverse();
                return Ok((out, older));
            }
        }
    }

    /// Creates a user; [`StoreError::NameTaken`] when the name exists.
    pub async fn create_user(&self, name: &str, password_hash: &str, now_ms: i64) -> Result<i64, StoreError> {
        let result: Result<(i64,), sqlx::Error> =
            sqlx::query_as("INSERT INTO users (name, password_hash, created_ms) VALUES ($1, $2, $3) RETURNING id")
                .bind(name)
                .bind(password_hash)
                .bind(now_ms)
                .fetch_one(&self.write)
                .await;
        match result {
            Ok((id,)) => Ok(id),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// (id, name as registered, password hash) of a user, whatever the case of `name`.
    pub async fn user(&self, name: &str) -> Result<Option<(i64, String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT id, name, password_hash FROM users WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Whether the database answers (for the health check).
    pub async fn ping(&self) -> bool {
        match sqlx::query("SELECT 1").execute(&self.read).await {
            Ok(_) => true,
            Err(e) => {
                self.last_error.set(e.to_string());
                false
            }
        }
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// `sqlite://data/chat.db` -> creates `data/` and asks SQLite to create the file.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    if let Some(path) = files::sqlite_path(url) {
        files::make_folder(&path).map_err(|source| StoreError::Folder { path: path.display().to_string(), source })?;
        files::check_before_open(&path).map_err(StoreError::Files)?;
        // Before SQLite holds any lock on them; files it creates are 0600 already (the
        // process's umask, and SQLite gives -wal and -shm the database's mode).
        files::make_private(&path).map_err(StoreError::Files)?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
