//! Export and import of whole chats ([`Transfer`]), for `natter store copy`.

use async_trait::async_trait;
use futures::TryStreamExt;
use natter_core::chat::ChatKey;
use natter_core::store::StoreError;
use natter_core::store_transfer::{
    ChatExport, EventPages, ExportedEvent, ReceiptRow, Transfer, check_page,
};
use sqlx::{AssertSqlSafe, Row};

use super::{
    SUMMARY_COLUMNS, SqliteStore, backend, members_column, row_to_event, row_to_summary, sql_int,
};

#[async_trait]
impl Transfer for SqliteStore {
    async fn chat_keys(
        &self,
        after: Option<&ChatKey>,
        limit: usize,
    ) -> Result<Vec<ChatKey>, StoreError> {
        let (org, chat_id) = match after {
            Some(k) => (Some(&*k.org), Some(&*k.chat_id)),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT org, chat_id FROM chats
             WHERE ?1 IS NULL OR (org, chat_id) > (?1, ?2)
             ORDER BY org, chat_id LIMIT ?3",
        )
        .bind(org)
        .bind(chat_id)
        .bind(sql_int(limit as u64))
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let org: String = r.try_get("org").map_err(backend)?;
                let chat_id: String = r.try_get("chat_id").map_err(backend)?;
                Ok(ChatKey::new(org, chat_id))
            })
            .collect()
    }

    async fn export_chat(&self, chat: &ChatKey) -> Result<Option<ChatExport>, StoreError> {
        // A read transaction: one WAL snapshot for the header's tables.
        let mut tx = self.readers.begin().await.map_err(backend)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, turn_fence FROM chats WHERE org = ? AND chat_id = ?"
        )))
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = row_to_summary(&chat.org, &row)?;
        let turn_fence: i64 = row.try_get("turn_fence").map_err(backend)?;
        let participants: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM chat_members WHERE org = ? AND chat_id = ? ORDER BY user_id",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let receipts = sqlx::query(
            "SELECT user_id, message_id, read_at FROM read_receipts
             WHERE org = ? AND chat_id = ? ORDER BY user_id, message_id",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?
        .iter()
        .map(|r| {
            Ok(ReceiptRow {
                user_id: r.try_get("user_id").map_err(backend)?,
                message_id: r.try_get("message_id").map_err(backend)?,
                read_at: r.try_get("read_at").map_err(backend)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await.map_err(backend)?;
        // The queue as the Store reads it (same order: opened_seq, then the order asked for).
        let open_turns = natter_core::store::Store::open_turns(self, chat).await?;
        Ok(Some(ChatExport {
            summary,
            turn_fence: u64::try_from(turn_fence).unwrap_or(0),
            participants,
            receipts,
            open_turns,
        }))
    }

    async fn export_events(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExportedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, created_at, body, superseded FROM events
             WHERE org = ? AND chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(sql_int(after))
        .bind(sql_int(limit as u64))
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ExportedEvent {
                    event: row_to_event(r)?,
                    superseded: r.try_get::<i64, _>("superseded").map_err(backend)? != 0,
                })
            })
            .collect()
    }

    async fn import_chat(
        &self,
        chat: &ChatExport,
        mut events: EventPages<'_>,
    ) -> Result<bool, StoreError> {
        let s = &chat.summary;
        let key = &s.key;
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO chats (org, chat_id, epoch, head_seq, turn_fence, created_at,
                 updated_at, title, pinned, status, created_by, metadata, members)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&*key.org)
        .bind(&*key.chat_id)
        .bind(&s.epoch)
        .bind(sql_int(s.head_seq))
        .bind(sql_int(chat.turn_fence))
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(&s.title)
        .bind(s.pinned)
        .bind(s.status.as_str())
        .bind(&s.created_by)
        .bind(s.metadata.as_ref().map(|m| m.to_string()))
        .bind(members_column(s.members.as_ref()))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        let mut last = 0;
        // Each reaction event holds its message's whole list after it: the last one is the
        // message's list now.
        let mut reactions = std::collections::BTreeMap::new();
        while let Some(page) = events.try_next().await? {
            last = check_page(key, last, s.head_seq, &page)?;
            for e in &page {
                let body = &e.event.body;
                if let Some((message_id, list)) = body.reaction_target() {
                    reactions.insert(message_id.to_owned(), list.to_vec());
                }
                let json = serde_json::to_string(body)
                    .map_err(|err| StoreError::Backend(format!("cannot serialize: {err}")))?;
                sqlx::query(
                    "INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body,
                                         created_at, superseded)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&*key.org)
                .bind(&*key.chat_id)
                .bind(sql_int(e.event.seq))
                .bind(body.kind())
                .bind(body.is_message())
                .bind(body.message_id())
                .bind(json)
                .bind(e.event.created_at)
                .bind(e.superseded)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        if last != s.head_seq {
            return Err(StoreError::Backend(format!(
                "import of {key}: the log ends at seq {last}, the chat's head is {}",
                s.head_seq
            )));
        }
        for user in &chat.participants {
            sqlx::query(
                "INSERT OR IGNORE INTO chat_members (org, chat_id, user_id) VALUES (?, ?, ?)",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for r in &chat.receipts {
            sqlx::query(
                "INSERT INTO read_receipts (org, chat_id, user_id, message_id, read_at)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (org, chat_id, user_id, message_id)
                 DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(&r.user_id)
            .bind(&r.message_id)
            .bind(r.read_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for (message_id, list) in &reactions {
            for (i, r) in list.iter().enumerate() {
                sqlx::query(
                    "INSERT OR IGNORE INTO reactions
                         (org, chat_id, message_id, user_id, emoji, created_at, added_seq)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&*key.org)
                .bind(&*key.chat_id)
                .bind(message_id)
                .bind(&r.user_id)
                .bind(&r.emoji)
                .bind(r.created_at)
                .bind(sql_int(i as u64))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        if let Some(c) = &s.csat {
            sqlx::query(
                "UPDATE chats SET csat_rating = ?, csat_comment = ?, csat_user = ?, csat_at = ?
                 WHERE org = ? AND chat_id = ?",
            )
            .bind(i64::from(c.rating))
            .bind(&c.comment)
            .bind(&c.user_id)
            .bind(c.submitted_at)
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if s.waiting_since.is_some() || !s.human_agents.is_empty() {
            sqlx::query(
                "UPDATE chats SET waiting_since = ?, human_agents = ? WHERE org = ? AND chat_id = ?",
            )
            .bind(s.waiting_since)
            .bind(members_column(Some(&s.human_agents)))
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        // `asked` numbers the queue in the order given.
        for (asked, t) in chat.open_turns.iter().enumerate() {
            sqlx::query(
                "INSERT INTO open_turns (org, chat_id, request_id, trace_id, opened_seq,
                                         context_seq, started_fence, asked)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(&t.request_id)
            .bind(&t.trace_id)
            .bind(sql_int(t.opened_seq))
            .bind(sql_int(t.context_seq))
            .bind(t.started_fence.map(sql_int))
            .bind(sql_int(asked as u64 + 1))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }
}
