//! Attachments (CONTRACT §7.6): migration `0004_attachments.sql`; metadata in `attachments`,
//! bytes (`bytea`) in `attachment_blobs`.

use natter_core::attachments::{Attachment, Processing};
use natter_core::chat::ChatKey;
use natter_core::store::{PutAttachment, StoreError};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Ctx, PgStore, sql_int};

const COLUMNS: &str = "id, org, chat_id, name, mime_type, size, sha256, created_by, created_at, \
                       width, height, status, chars, pages, error_code, error_message, referenced";

fn row_to_attachment(r: &PgRow) -> Result<Attachment, StoreError> {
    let get_u32 = |c: &str| -> Result<Option<u32>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(c)
            .ctx("read attachment")?
            .and_then(|v| u32::try_from(v).ok()))
    };
    let org: String = r.try_get("org").ctx("read attachment")?;
    let chat_id: String = r.try_get("chat_id").ctx("read attachment")?;
    let status: String = r.try_get("status").ctx("read attachment")?;
    let chars: Option<i64> = r.try_get("chars").ctx("read attachment")?;
    Ok(Attachment {
        id: r.try_get("id").ctx("read attachment")?,
        chat: ChatKey::new(org, chat_id),
        name: r.try_get("name").ctx("read attachment")?,
        mime_type: r.try_get("mime_type").ctx("read attachment")?,
        size: r.try_get::<i64, _>("size").ctx("read attachment")?.max(0) as u64,
        sha256: r.try_get("sha256").ctx("read attachment")?,
        created_by: r.try_get("created_by").ctx("read attachment")?,
        created_at: r.try_get("created_at").ctx("read attachment")?,
        width: get_u32("width")?,
        height: get_u32("height")?,
        processing: Processing::from_parts(
            &status,
            chars.map(|c| c.max(0) as u64),
            get_u32("pages")?,
            r.try_get("error_code").ctx("read attachment")?,
            r.try_get("error_message").ctx("read attachment")?,
        ),
        referenced: r.try_get("referenced").ctx("read attachment")?,
    })
}

/// Postgres text holds no NUL characters.
fn pg_text(s: &str) -> String {
    s.replace('\0', "")
}

impl PgStore {
    pub(crate) async fn put_attachment_impl(
        &self,
        a: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin put attachment")?;
        // The chat row's lock serializes uploads to one chat: the duplicate and quota checks
        // and the insert are one step.
        let exists = sqlx::query("SELECT 1 FROM chats WHERE org = $1 AND chat_id = $2 FOR UPDATE")
            .bind(&*a.chat.org)
            .bind(&*a.chat.chat_id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("put attachment: lock chat")?;
        if exists.is_none() {
            return Err(StoreError::NoSuchChat(a.chat.to_string()));
        }
        let same = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE org = $1 AND chat_id = $2 AND sha256 = $3"
        )))
        .bind(&*a.chat.org)
        .bind(&*a.chat.chat_id)
        .bind(&a.sha256)
        .fetch_optional(&mut *tx)
        .await
        .ctx("put attachment: find same bytes")?;
        if let Some(r) = same {
            return Ok(PutAttachment::Duplicate(row_to_attachment(&r)?));
        }
        if let Some(q) = quota {
            let used: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM attachments
                 WHERE org = $1 AND chat_id = $2",
            )
            .bind(&*a.chat.org)
            .bind(&*a.chat.chat_id)
            .fetch_one(&mut *tx)
            .await
            .ctx("put attachment: quota")?;
            let used = used.max(0) as u64;
            if used.saturating_add(bytes.len() as u64) > q {
                return Ok(PutAttachment::OverQuota { used });
            }
        }
        let mut stored = a.clone();
        stored.size = bytes.len() as u64;
        let p = &stored.processing;
        let error = p.error();
        sqlx::query(
            "INSERT INTO attachments (id, org, chat_id, name, mime_type, size, sha256, created_by,
               created_at, width, height, status, chars, pages, error_code, error_message,
               referenced)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&stored.id)
        .bind(&*stored.chat.org)
        .bind(&*stored.chat.chat_id)
        .bind(pg_text(&stored.name))
        .bind(&stored.mime_type)
        .bind(sql_int(stored.size))
        .bind(&stored.sha256)
        .bind(pg_text(&stored.created_by))
        .bind(stored.created_at)
        .bind(stored.width.map(i64::from))
        .bind(stored.height.map(i64::from))
        .bind(p.status())
        .bind(p.chars().map(sql_int))
        .bind(p.pages().map(i64::from))
        .bind(error.map(|e| pg_text(e.0)))
        .bind(error.map(|e| pg_text(e.1)))
        .bind(stored.referenced)
        .execute(&mut *tx)
        .await
        .ctx("put attachment")?;
        sqlx::query("INSERT INTO attachment_blobs (id, bytes) VALUES ($1, $2)")
            .bind(&stored.id)
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .ctx("put attachment bytes")?;
        tx.commit().await.ctx("put attachment: commit")?;
        Ok(PutAttachment::Stored(stored))
    }

    pub(crate) async fn attachment_impl(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<Attachment>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE id = $1 AND org = $2"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .ctx("read attachment")?
        .map(|r| row_to_attachment(&r))
        .transpose()
    }

    pub(crate) async fn attachment_bytes_impl(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar(
            "SELECT b.bytes FROM attachment_blobs b JOIN attachments a ON a.id = b.id
             WHERE a.id = $1 AND a.org = $2",
        )
        .bind(id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await
        .ctx("read attachment bytes")
    }

    pub(crate) async fn attachment_text_impl(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT text FROM attachments WHERE id = $1 AND org = $2")
                .bind(id)
                .bind(org)
                .fetch_optional(&self.pool)
                .await
                .ctx("read attachment text")?;
        Ok(text.flatten())
    }

    pub(crate) async fn set_attachment_processing_impl(
        &self,
        org: &str,
        id: &str,
        p: &Processing,
        text: Option<&str>,
    ) -> Result<bool, StoreError> {
        let error = p.error();
        let n = sqlx::query(
            "UPDATE attachments SET status = $1, chars = $2, pages = $3, error_code = $4,
               error_message = $5, text = $6
             WHERE id = $7 AND org = $8",
        )
        .bind(p.status())
        .bind(p.chars().map(sql_int))
        .bind(p.pages().map(i64::from))
        .bind(error.map(|e| pg_text(e.0)))
        .bind(error.map(|e| pg_text(e.1)))
        .bind(text.map(pg_text))
        .bind(id)
        .bind(org)
        .execute(&self.pool)
        .await
        .ctx("set attachment processing")?
        .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn attachments_processing_impl(
        &self,
        limit: usize,
    ) -> Result<Vec<Attachment>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE status = 'processing'
             ORDER BY created_at, id LIMIT $1"
        )))
        .bind(sql_int(limit as u64))
        .fetch_all(&self.pool)
        .await
        .ctx("attachments processing")?
        .iter()
        .map(row_to_attachment)
        .collect()
    }

    pub(crate) async fn mark_attachments_referenced_impl(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE attachments SET referenced = TRUE
             WHERE org = $1 AND chat_id = $2 AND id = ANY($3)",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .bind(ids)
        .execute(&self.pool)
        .await
        .ctx("mark attachments referenced")?;
        Ok(())
    }

    pub(crate) async fn delete_orphan_attachments_impl(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin orphan sweep")?;
        let ids: Vec<String> = sqlx::query_scalar(
            "DELETE FROM attachments WHERE id IN (
               SELECT id FROM attachments WHERE NOT referenced AND created_at < $1
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(created_before)
        .bind(sql_int(limit as u64))
        .fetch_all(&mut *tx)
        .await
        .ctx("orphan sweep")?;
        sqlx::query("DELETE FROM attachment_blobs WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .ctx("orphan sweep: bytes")?;
        tx.commit().await.ctx("orphan sweep: commit")?;
        Ok(ids.len() as u64)
    }

    pub(crate) async fn chat_attachment_bytes_impl(
        &self,
        chat: &ChatKey,
    ) -> Result<u64, StoreError> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(size), 0)::BIGINT FROM attachments WHERE org = $1 AND chat_id = $2",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_one(&self.pool)
        .await
        .ctx("chat attachment bytes")?;
        Ok(used.max(0) as u64)
    }
}

/// Deletes `chat`'s attachments inside `delete_chat`'s transaction.
pub(crate) async fn delete_chat_attachments(
    conn: &mut sqlx::PgConnection,
    chat: &ChatKey,
) -> Result<(), StoreError> {
    let ids: Vec<String> =
        sqlx::query_scalar("DELETE FROM attachments WHERE org = $1 AND chat_id = $2 RETURNING id")
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .fetch_all(&mut *conn)
            .await
            .ctx("delete chat: attachments")?;
    sqlx::query("DELETE FROM attachment_blobs WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .ctx("delete chat: attachment bytes")?;
    Ok(())
}
