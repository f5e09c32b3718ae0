//! Export and import of whole chats ([`Transfer`]), for `natter store copy`.

use async_trait::async_trait;
use futures::TryStreamExt;
use natter_core::chat::ChatKey;
use natter_core::store::StoreError;
use natter_core::store_transfer::{
    ChatExport, EventPages, ExportedEvent, ReceiptRow, Transfer, check_page,
};
use sqlx::Row;

use crate::{
    Ctx, PgStore, SUMMARY_COLUMNS, from_sql, members_column, message_id_column, row_to_event,
    row_to_open_turn, row_to_summary, sql_int,
};

#[async_trait]
impl Transfer for PgStore {
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
             WHERE $1::text IS NULL OR (org, chat_id) > ($1, $2)
             ORDER BY org, chat_id LIMIT $3",
        )
        .bind(org)
        .bind(chat_id)
        .bind(sql_int(limit as u64))
        .fetch_all(self.pool())
        .await
        .ctx("list chat keys")?;
        rows.iter()
            .map(|r| {
                let org: String = r.try_get("org").ctx("read org")?;
                let chat_id: String = r.try_get("chat_id").ctx("read chat_id")?;
                Ok(ChatKey::new(org, chat_id))
            })
            .collect()
    }

    async fn export_chat(&self, chat: &ChatKey) -> Result<Option<ChatExport>, StoreError> {
        // One snapshot for the header's tables.
        let mut tx = self.pool().begin().await.ctx("begin export")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .ctx("export: snapshot")?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, turn_fence FROM chats WHERE org = $1 AND chat_id = $2"
        )))
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("export: read the chat")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = row_to_summary(&chat.org, &row)?;
        let turn_fence = from_sql(row.try_get("turn_fence").ctx("read turn_fence")?);
        let participants: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM chat_members WHERE org = $1 AND chat_id = $2 ORDER BY user_id",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("export: read members")?;
        let receipts = sqlx::query(
            "SELECT user_id, message_id, read_at FROM read_receipts
             WHERE org = $1 AND chat_id = $2 ORDER BY user_id, message_id",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("export: read receipts")?
        .iter()
        .map(|r| {
            Ok(ReceiptRow {
                user_id: r.try_get("user_id").ctx("read user_id")?,
                message_id: r.try_get("message_id").ctx("read message_id")?,
                read_at: r.try_get("read_at").ctx("read read_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let open_turns = sqlx::query(
            "SELECT request_id, trace_id, opened_seq, context_seq, started_fence
             FROM open_turns WHERE org = $1 AND chat_id = $2
             ORDER BY opened_seq, position",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("export: read the turn queue")?
        .iter()
        .map(|r| row_to_open_turn(chat, r))
        .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await.ctx("export: end snapshot")?;
        Ok(Some(ChatExport {
            summary,
            turn_fence,
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
             WHERE org = $1 AND chat_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(sql_int(after))
        .bind(sql_int(limit as u64))
        .fetch_all(self.pool())
        .await
        .ctx("export events")?;
        rows.iter()
            .map(|r| {
                Ok(ExportedEvent {
                    event: row_to_event(r)?,
                    superseded: r.try_get("superseded").ctx("read superseded")?,
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
        let mut tx = self.pool().begin().await.ctx("begin import")?;
        let inserted = sqlx::query(
            "INSERT INTO chats (org, chat_id, epoch, head_seq, turn_fence, created_at, updated_at,
                                title, pinned, status, created_by, metadata, members)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (org, chat_id) DO NOTHING",
        )
        .bind(&*key.org)
        .bind(&*key.chat_id)
        .bind(&s.epoch)
        .bind(sql_int(s.head_seq))
        .bind(sql_int(chat.turn_fence))
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(s.title.as_deref().map(crate::pg_title))
        .bind(s.pinned)
        .bind(s.status.as_str())
        .bind(&s.created_by)
        .bind(s.metadata.as_ref().map(|m| m.to_string()))
        .bind(members_column(s.members.as_ref()))
        .execute(&mut *tx)
        .await
        .ctx("import: insert the chat")?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.ctx("import: roll back")?;
            return Ok(false);
        }
        let mut last = 0;
        // Each reaction event holds its message's whole list after it: the last one is the
        // message's list now.
        let mut reactions = std::collections::BTreeMap::new();
        while let Some(page) = events.try_next().await? {
            last = check_page(key, last, s.head_seq, &page)?;
            for e in &page {
                if let Some((message_id, list)) = e.event.body.reaction_target() {
                    reactions.insert(message_id.to_owned(), list.to_vec());
                }
            }
            // One statement per page.
            let mut seqs = Vec::with_capacity(page.len());
            let mut kinds = Vec::with_capacity(page.len());
            let mut is_message = Vec::with_capacity(page.len());
            let mut message_ids = Vec::with_capacity(page.len());
            let mut bodies = Vec::with_capacity(page.len());
            let mut created = Vec::with_capacity(page.len());
            let mut superseded = Vec::with_capacity(page.len());
            for e in &page {
                let body = &e.event.body;
                seqs.push(sql_int(e.event.seq));
                kinds.push(body.kind());
                is_message.push(body.is_message());
                message_ids.push(message_id_column(body));
                bodies.push(
                    serde_json::to_string(body)
                        .map_err(|err| StoreError::Backend(format!("cannot serialize: {err}")))?,
                );
                created.push(e.event.created_at);
                superseded.push(e.superseded);
            }
            sqlx::query(
                "INSERT INTO events (org, chat_id, seq, kind, is_message, message_id, body,
                                     created_at, superseded)
                 SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::text[], $5::bool[], $6::text[],
                                              $7::text[], $8::bigint[], $9::bool[])",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(seqs)
            .bind(kinds)
            .bind(is_message)
            .bind(message_ids)
            .bind(bodies)
            .bind(created)
            .bind(superseded)
            .execute(&mut *tx)
            .await
            .ctx("import: insert events")?;
        }
        if last != s.head_seq {
            return Err(StoreError::Backend(format!(
                "import of {key}: the log ends at seq {last}, the chat's head is {}",
                s.head_seq
            )));
        }
        for user in &chat.participants {
            sqlx::query(
                "INSERT INTO chat_members (org, chat_id, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(user)
            .execute(&mut *tx)
            .await
            .ctx("import: insert a member")?;
        }
        for r in &chat.receipts {
            sqlx::query(
                "INSERT INTO read_receipts (org, chat_id, user_id, message_id, read_at)
                 VALUES ($1, $2, $3, $4, $5)
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
            .ctx("import: insert a receipt")?;
        }
        // In queue order: `position` keeps it for turns of the same opened_seq.
        for (message_id, list) in &reactions {
            for (i, r) in list.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO reactions
                         (org, chat_id, message_id, user_id, emoji, created_at, added_seq)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
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
                .ctx("import: insert reactions")?;
            }
        }
        if let Some(c) = &s.csat {
            sqlx::query(
                "UPDATE chats SET csat_rating = $3, csat_comment = $4, csat_user = $5, csat_at = $6
                 WHERE org = $1 AND chat_id = $2",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(i16::from(c.rating))
            .bind(&c.comment)
            .bind(&c.user_id)
            .bind(c.submitted_at)
            .execute(&mut *tx)
            .await
            .ctx("import: the CSAT answer")?;
        }
        if s.waiting_since.is_some() || !s.human_agents.is_empty() {
            sqlx::query(
                "UPDATE chats SET waiting_since = $3, human_agents = $4
                 WHERE org = $1 AND chat_id = $2",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(s.waiting_since)
            .bind(members_column(Some(&s.human_agents)))
            .execute(&mut *tx)
            .await
            .ctx("import: the handoff state")?;
        }
        for t in &chat.open_turns {
            sqlx::query(
                "INSERT INTO open_turns (org, chat_id, request_id, trace_id, opened_seq,
                                         context_seq, started_fence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&*key.org)
            .bind(&*key.chat_id)
            .bind(&t.request_id)
            .bind(&t.trace_id)
            .bind(sql_int(t.opened_seq))
            .bind(sql_int(t.context_seq))
            .bind(t.started_fence.map(sql_int))
            .execute(&mut *tx)
            .await
            .ctx("import: insert an open turn")?;
        }
        tx.commit().await.ctx("import: commit")?;
        Ok(true)
    }
}
