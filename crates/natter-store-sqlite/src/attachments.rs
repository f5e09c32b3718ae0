//! Attachments (CONTRACT §7.6): migration `0008_attachments.sql`; metadata in `attachments`,
//! bytes in `attachment_blobs`.

use natter_core::attachments::{Attachment, Processing};
use natter_core::chat::ChatKey;
use natter_core::store::{PutAttachment, StoreError};
use sqlx::Row;

use crate::{SqliteStore, backend, sql_int};

const COLUMNS: &str = "id, org, chat_id, name, mime_type, size, sha256, created_by, created_at, \
                       width, height, status, chars, pages, error_code, error_message, referenced";

fn row_to_attachment(r: &sqlx::sqlite::SqliteRow) -> Result<Attachment, StoreError> {
    let get_u32 = |c: &str| -> Result<Option<u32>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(c)
            .map_err(backend)?
            .and_then(|v| u32::try_from(v).ok()))
    };
    let org: String = r.try_get("org").map_err(backend)?;
    let chat_id: String = r.try_get("chat_id").map_err(backend)?;
    let status: String = r.try_get("status").map_err(backend)?;
    let chars: Option<i64> = r.try_get("chars").map_err(backend)?;
    Ok(Attachment {
        id: r.try_get("id").map_err(backend)?,
        chat: ChatKey::new(org, chat_id),
        name: r.try_get("name").map_err(backend)?,
        mime_type: r.try_get("mime_type").map_err(backend)?,
        size: r.try_get::<i64, _>("size").map_err(backend)?.max(0) as u64,
        sha256: r.try_get("sha256").map_err(backend)?,
        created_by: r.try_get("created_by").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
        width: get_u32("width")?,
        height: get_u32("height")?,
        processing: Processing::from_parts(
            &status,
            chars.map(|c| c.max(0) as u64),
            get_u32("pages")?,
            r.try_get("error_code").map_err(backend)?,
            r.try_get("error_message").map_err(backend)?,
        ),
        referenced: r.try_get::<i64, _>("referenced").map_err(backend)? != 0,
    })
}

impl SqliteStore {
    pub(crate) async fn put_attachment_impl(
        &self,
        a: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let exists = sqlx::query("SELECT 1 FROM chats WHERE org = ? AND chat_id = ?")
            .bind(&*a.chat.org)
            .bind(&*a.chat.chat_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Err(StoreError::NoSuchChat(a.chat.to_string()));
        }
        let same = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE org = ? AND chat_id = ? AND sha256 = ?"
        )))
        .bind(&*a.chat.org)
        .bind(&*a.chat.chat_id)
        .bind(&a.sha256)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(r) = same {
            return Ok(PutAttachment::Duplicate(row_to_attachment(&r)?));
        }
        if let Some(q) = quota {
            let used: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE org = ? AND chat_id = ?",
            )
            .bind(&*a.chat.org)
            .bind(&*a.chat.chat_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&stored.id)
        .bind(&*stored.chat.org)
        .bind(&*stored.chat.chat_id)
        .bind(&stored.name)
        .bind(&stored.mime_type)
        .bind(sql_int(stored.size))
        .bind(&stored.sha256)
        .bind(&stored.created_by)
        .bind(stored.created_at)
        .bind(stored.width.map(i64::from))
        .bind(stored.height.map(i64::from))
        .bind(p.status())
        .bind(p.chars().map(sql_int))
        .bind(p.pages().map(i64::from))
        .bind(error.map(|e| e.0.to_owned()))
        .bind(error.map(|e| e.1.to_owned()))
        .bind(stored.referenced as i64)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("INSERT INTO attachment_blobs (id, bytes) VALUES (?, ?)")
            .bind(&stored.id)
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(PutAttachment::Stored(stored))
    }

    pub(crate) async fn attachment_impl(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<Attachment>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE id = ? AND org = ?"
        )))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)?
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
             WHERE a.id = ? AND a.org = ?",
        )
        .bind(id)
        .bind(org)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend)
    }

    pub(crate) async fn attachment_text_impl(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT text FROM attachments WHERE id = ? AND org = ?")
                .bind(id)
                .bind(org)
                .fetch_optional(&self.readers)
                .await
                .map_err(backend)?;
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
            "UPDATE attachments SET status = ?, chars = ?, pages = ?, error_code = ?,
               error_message = ?, text = ?
             WHERE id = ? AND org = ?",
        )
        .bind(p.status())
        .bind(p.chars().map(sql_int))
        .bind(p.pages().map(i64::from))
        .bind(error.map(|e| e.0.to_owned()))
        .bind(error.map(|e| e.1.to_owned()))
        .bind(text)
        .bind(id)
        .bind(org)
        .execute(&self.writer)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn attachments_processing_impl(
        &self,
        limit: usize,
    ) -> Result<Vec<Attachment>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE status = 'processing'
             ORDER BY created_at, id LIMIT ?"
        )))
        .bind(sql_int(limit as u64))
        .fetch_all(&self.readers)
        .await
        .map_err(backend)?
        .iter()
        .map(row_to_attachment)
        .collect()
    }

    pub(crate) async fn mark_attachments_referenced_impl(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        for id in ids {
            sqlx::query(
                "UPDATE attachments SET referenced = 1 WHERE id = ? AND org = ? AND chat_id = ?",
            )
            .bind(id)
            .bind(&*chat.org)
            .bind(&*chat.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    pub(crate) async fn delete_orphan_attachments_impl(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM attachments WHERE referenced = 0 AND created_at < ?
             ORDER BY created_at LIMIT ?",
        )
        .bind(created_before)
        .bind(sql_int(limit as u64))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for id in &ids {
            for table in ["attachment_blobs", "attachments"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE id = ?"
                )))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(ids.len() as u64)
    }

    pub(crate) async fn chat_attachment_bytes_impl(
        &self,
        chat: &ChatKey,
    ) -> Result<u64, StoreError> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE org = ? AND chat_id = ?",
        )
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .fetch_one(&self.readers)
        .await
        .map_err(backend)?;
        Ok(used.max(0) as u64)
    }
}

/// Deletes `chat`'s attachments inside `delete_chat`'s transaction.
pub(crate) async fn delete_chat_attachments(
    conn: &mut sqlx::SqliteConnection,
    chat: &ChatKey,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM attachment_blobs WHERE id IN
           (SELECT id FROM attachments WHERE org = ? AND chat_id = ?)",
    )
    .bind(&*chat.org)
    .bind(&*chat.chat_id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query("DELETE FROM attachments WHERE org = ? AND chat_id = ?")
        .bind(&*chat.org)
        .bind(&*chat.chat_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}
