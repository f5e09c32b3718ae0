//! The SQLite [`Store`]: Natter's embedded default.
//!
//! - WAL mode, so readers never wait for the writer.
//! - One writer connection: SQLite allows one writer at a time anyway, and a single
//!   connection with `BEGIN IMMEDIATE` never meets `SQLITE_BUSY` from our own process.
//! - `synchronous = FULL` by default: an acked message survives power loss, not only a
//!   crash of the process. `NORMAL` (crash-safe, faster) is available for benchmarks.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::chat::{ChatInfo, ChatKey};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Store, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

/// Durability of commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// Survives a crash of the process, may lose the last commits on power loss.
    Normal,
}

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn row_to_event(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(backend)?;
    let created_at: i64 = row.try_get("created_at").map_err(backend)?;
    let body: String = row.try_get("body").map_err(backend)?;
    let body: EventBody = serde_json::from_str(&body)
        .map_err(|e| StoreError::Backend(format!("unreadable event at seq {seq}: {e}")))?;
    Ok(StoredEvent {
        seq: seq as u64,
        created_at,
        body,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and
    /// runs the migrations. The file's directory is created too.
    pub async fn open(url: &str, durability: Durability) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("bad database url {url:?}: {e}")))?;
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migrations failed: {e}")))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self { writer, readers })
    }

    async fn find_chat(
        conn: &mut SqliteConnection,
        chat: &ChatKey,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT epoch, head_seq, created_at FROM chats WHERE org = ? AND chat_id = ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(ChatInfo {
                epoch: r.try_get("epoch").map_err(backend)?,
                head_seq: r.try_get::<i64, _>("head_seq").map_err(backend)? as u64,
                created_at: r.try_get("created_at").map_err(backend)?,
            })
        })
        .transpose()
    }
}

async fn insert_event(
    conn: &mut SqliteConnection,
    chat: &ChatKey,
    seq: u64,
    body: &EventBody,
    created_at: i64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(body).map_err(|e| StoreError::Backend(e.to_string()))?;
    sqlx::query(
        "INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .bind(seq as i64)
    .bind(body.kind())
    .bind(body.is_message())
    .bind(body.idempotency_key())
    .bind(json)
    .bind(created_at)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if let EventBody::ReadReceipt {
        user_id,
        message_ids,
        read_at,
        ..
    } = body
    {
        for id in message_ids {
            sqlx::query(
                "INSERT INTO read_receipts (org, chat_id, user_id, message_id, read_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (org, chat_id, user_id, message_id) DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(user_id)
            .bind(id)
            .bind(read_at)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: bool,
        created_by: Option<&str>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        if let Some(info) = Self::find_chat(&mut conn, chat).await? {
            return Ok(Some(info));
        }
        drop(conn);
        if !create {
            return Ok(None);
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        // Another request may have created it since we looked.
        if let Some(info) = Self::find_chat(&mut tx, chat).await? {
            return Ok(Some(info));
        }
        let now = natter_protocol::time::now_millis();
        let info = ChatInfo {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            head_seq: 1,
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO chats (org, chat_id, epoch, head_seq, created_at) VALUES (?, ?, ?, 1, ?)",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(&info.epoch)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let body = EventBody::ChatCreated {
            created_by: created_by.map(str::to_owned),
        };
        insert_event(&mut tx, chat, 1, &body, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(info))
    }

    async fn append(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
    ) -> Result<Appended, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        if let Some(key) = body.idempotency_key() {
            let existing = sqlx::query(
                "SELECT seq, created_at, body FROM events
                 WHERE org = ? AND chat_id = ? AND message_id = ? AND kind = ?",
            )
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .bind(key)
            .bind(body.kind())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(row) = existing {
                return Ok(Appended::Duplicate(row_to_event(&row)?));
            }
        }
        let head: Option<i64> = sqlx::query_scalar(
            "UPDATE chats SET head_seq = head_seq + 1 WHERE org = ? AND chat_id = ? RETURNING head_seq",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(seq) = head else {
            return Err(StoreError::NoSuchChat(chat.to_string()));
        };
        let seq = seq as u64;
        insert_event(&mut tx, chat, seq, &body, created_at).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Appended::New(StoredEvent {
            seq,
            created_at,
            body,
        }))
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, created_at, body FROM events
             WHERE org = ? AND chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, created_at, body FROM events
             WHERE org = ? AND chat_id = ? AND is_message = 1 AND seq <= ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(up_to as i64)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        let mut events = rows
            .iter()
            .map(row_to_event)
            .collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok(events)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_message(id: &str, text: &str) -> EventBody {
        EventBody::UserMessage {
            message_id: id.into(),
            user_id: "u".into(),
            text: text.into(),
            parts: None,
            request_id: None,
            trace_id: None,
        }
    }

    async fn store(dir: &std::path::Path) -> SqliteStore {
        let url = format!("sqlite://{}/t.db", dir.display());
        SqliteStore::open(&url, Durability::Normal).await.unwrap()
    }

    #[tokio::test]
    async fn sequences_dedupes_and_isolates_orgs() {
        let dir = tempdir();
        let s = store(&dir).await;
        let a = ChatKey::new("org-a", "c1");
        let b = ChatKey::new("org-b", "c1");
        assert!(s.open_chat(&a, false, None).await.unwrap().is_none());
        let info = s.open_chat(&a, true, Some("u")).await.unwrap().unwrap();
        assert_eq!(info.head_seq, 1);
        s.open_chat(&b, true, None).await.unwrap();

        let first = s.append(&a, user_message("m1", "hi"), 1).await.unwrap();
        assert!(matches!(first, Appended::New(ref e) if e.seq == 2));
        let again = s.append(&a, user_message("m1", "hi"), 2).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref e) if e.seq == 2));
        // Same messageId in another org's chat of the same id is a different message.
        let other = s.append(&b, user_message("m1", "yo"), 3).await.unwrap();
        assert!(matches!(other, Appended::New(ref e) if e.seq == 2));

        let events = s.events_after(&a, 0, 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        let msgs = s.recent_messages(&a, 2, 10).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(matches!(
            s.append(&ChatKey::new("org-a", "nope"), user_message("x", "x"), 0)
                .await,
            Err(StoreError::NoSuchChat(_))
        ));
        // Reopening keeps epoch and head.
        drop(s);
        let s = store(&dir).await;
        let again = s.open_chat(&a, true, None).await.unwrap().unwrap();
        assert_eq!(again.epoch, info.epoch);
        assert_eq!(again.head_seq, 2);
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("natter-sqlite-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
