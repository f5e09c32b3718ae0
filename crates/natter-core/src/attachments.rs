//! Attachments (CONTRACT §7.6): files stored with a chat, in the store (so every node serves
//! them), read by the chat's members only.
//!
//! - [`ChatCore::upload_attachment`] checks the caller may use the chat, the upload rate, the
//!   type from the bytes ([`natter_attachments::sniff`]), the size and the chat's quota, and
//!   stores bytes and metadata. The same bytes (sha256) in the same chat are stored once: the
//!   second upload answers the first attachment.
//! - [`ChatCore::attachment_for`] / [`ChatCore::download_attachment`]: for members of its chat
//!   only; anyone else (another org, a non-member) gets `not_found`, never `forbidden`, so ids
//!   reveal nothing.
//! - [`ChatCore::resolve_attachments`]: the `[{id}]` a message carries, to metadata; an id of
//!   another chat is `not_found`. Resolving marks them referenced, which keeps them from the
//!   orphan sweep ([`ChatCore::delete_orphan_attachments`]).
//! - Documents (PDF, text) start in [`Processing::Processing`]; the processing job records its
//!   result with [`Store::set_attachment_processing`](crate::store::Store::set_attachment_processing).

use std::time::Duration;

use natter_attachments::Kind;
use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use sha2::{Digest, Sha256};

use crate::chat::{ChatKey, Identity, NewChat, Source};
use crate::core::{ChatCore, check_admits};
use crate::error::CoreError;
use crate::store::PutAttachment;

/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;
/// Longest file name kept, in characters (longer ones are cut).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest attachment id accepted in a reference.
pub const MAX_ID_BYTES: usize = 128;

/// Settings of attachments (flags of the same names in `natter serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentsConfig {
    /// Largest file accepted (`--max-attachment-bytes`).
    pub max_bytes: u64,
    /// Most bytes of attachments one chat may hold (`--attachment-quota-bytes`); 0: no limit.
    pub chat_quota_bytes: u64,
    /// Uploaded and never referenced by a message for this long: an orphan, deleted by the
    /// sweep (`--attachment-orphan-secs`).
    pub orphan_after: Duration,
    /// Document text handed to the model per message, in characters (`--attachment-text-budget`).
    pub text_budget: usize,
    /// How long a turn waits for a document still processing
    /// (`--attachment-processing-timeout-secs`).
    pub processing_timeout: Duration,
    /// Whether the model gets images as image parts (`--vision`).
    pub vision: bool,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            chat_quota_bytes: 100 * 1024 * 1024,
            orphan_after: Duration::from_secs(24 * 3600),
            text_budget: 20_000,
            processing_timeout: Duration::from_secs(30),
            vision: true,
        }
    }
}

/// Where a document's text extraction stands. Images have nothing to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processing {
    /// Nothing to process (images).
    None,
    /// Waiting for, or under, extraction.
    Processing,
    Complete {
        chars: u64,
        pages: Option<u32>,
    },
    Error {
        code: String,
        message: String,
    },
}

impl Processing {
    /// The status as stored and sent: `none`, `processing`, `complete`, `error`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Processing => "processing",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
        }
    }

    /// Rebuilds the state from its stored columns.
    pub fn from_parts(
        status: &str,
        chars: Option<u64>,
        pages: Option<u32>,
        error_code: Option<String>,
        error_message: Option<String>,
    ) -> Self {
        match status {
            "processing" => Self::Processing,
            "complete" => Self::Complete {
                chars: chars.unwrap_or(0),
                pages,
            },
            "error" => Self::Error {
                code: error_code.unwrap_or_else(|| "internal".into()),
                message: error_message.unwrap_or_default(),
            },
            _ => Self::None,
        }
    }

    pub fn chars(&self) -> Option<u64> {
        match self {
            Self::Complete { chars, .. } => Some(*chars),
            _ => None,
        }
    }

    pub fn pages(&self) -> Option<u32> {
        match self {
            Self::Complete { pages, .. } => *pages,
            _ => None,
        }
    }

    pub fn error(&self) -> Option<(&str, &str)> {
        match self {
            Self::Error { code, message } => Some((code, message)),
            _ => None,
        }
    }
}

/// An attachment's metadata (the bytes and the extracted text are read separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Unique across the store (a UUID v7).
    pub id: String,
    pub chat: ChatKey,
    /// The client's file name (cut to [`MAX_NAME_CHARS`]).
    pub name: String,
    /// From the bytes (see [`natter_attachments::Kind::mime_type`]).
    pub mime_type: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub created_by: String,
    /// Unix ms.
    pub created_at: i64,
    /// Images: pixels, when the header gives them.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub processing: Processing,
    /// A message refers to it (set by [`ChatCore::resolve_attachments`]); orphans are not.
    pub referenced: bool,
}

impl Attachment {
    /// Where members download it.
    pub fn url(&self) -> String {
        attachment_url(&self.id)
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_mime_type(&self.mime_type)
    }

    pub fn is_image(&self) -> bool {
        self.kind().is_some_and(Kind::is_image)
    }
}

/// `/api/v1/attachments/{id}`.
pub fn attachment_url(id: &str) -> String {
    format!("/api/v1/attachments/{id}")
}

/// The id in a URL of a stored attachment (`/api/v1/attachments/{id}`, or an absolute URL
/// whose path is that), if it is one.
pub fn id_from_url(url: &str) -> Option<&str> {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => url,
    };
    let id = path.strip_prefix("/api/v1/attachments/")?;
    let id = id.split(['?', '#']).next().unwrap_or("");
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest (for callers that hash while streaming with [`sha2::Sha256`]).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub use sha2::Sha256 as Sha256Hasher;

/// A file as a face hands it to [`ChatCore::upload_attachment`].
#[derive(Debug, Clone)]
pub struct Upload {
    /// The client's file name (only used to name it and to choose among text types).
    pub name: String,
    /// The client's claimed MIME type (same).
    pub claimed_type: Option<String>,
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes` if the face computed it while streaming; else the
    /// core computes it.
    pub sha256: Option<String>,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub attachment: Attachment,
    /// The chat already held these bytes: this is that attachment, nothing new was stored.
    pub duplicate: bool,
}

fn not_found(id: &str) -> CoreError {
    CoreError::rejected(
        ErrorCode::NotFound,
        format!("no attachment `{id}` in a chat you are a member of"),
    )
}

/// The name kept: control characters and path separators dropped, cut to
/// [`MAX_NAME_CHARS`]; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned
    }
}

impl ChatCore {
    pub fn attachments_config(&self) -> &AttachmentsConfig {
        &self.inner.config.attachments
    }

    /// Stores `upload` for `chat` (created if it does not exist and chats are auto-created).
    /// Errors: `forbidden` for a members-only chat `who` is not in, `rate_limited`,
    /// `too_large` past `--max-attachment-bytes`, `unsupported_media_type`, `quota_exceeded`.
    pub async fn upload_attachment(
        &self,
        who: &Identity,
        from: &Source,
        chat: &ChatKey,
        upload: Upload,
    ) -> Result<Uploaded, CoreError> {
        who.check_may_write("upload attachments")?;
        let config = self.attachments_config();
        let size = upload.bytes.len() as u64;
        if size > config.max_bytes {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!(
                    "the file is larger than the {} bytes allowed (--max-attachment-bytes)",
                    config.max_bytes
                ),
            ));
        }
        let create = self.inner.config.auto_create_chats.then(NewChat::default);
        self.open_chat(who, chat, create).await?;
        self.inner.limits.upload(who, from)?;
        let sniffed =
            natter_attachments::sniff(&upload.bytes, &upload.name, upload.claimed_type.as_deref())
                .map_err(|e| match e {
                    natter_attachments::Unsupported::Empty => {
                        CoreError::rejected(ErrorCode::InvalidField, "`file` is empty")
                    }
                    e => CoreError::rejected(ErrorCode::UnsupportedMediaType, e.to_string()),
                })?;
        let sha256 = match upload.sha256 {
            Some(s) => s,
            None => sha256_hex(&upload.bytes),
        };
        let attachment = Attachment {
            id: crate::new_id(),
            chat: chat.clone(),
            name: clean_name(&upload.name),
            mime_type: sniffed.kind.mime_type().to_owned(),
            size,
            sha256,
            created_by: who.user_id.to_string(),
            created_at: now_millis(),
            width: sniffed.dimensions.map(|d| d.0),
            height: sniffed.dimensions.map(|d| d.1),
            processing: if sniffed.kind.is_document() {
                Processing::Processing
            } else {
                Processing::None
            },
            referenced: false,
        };
        let quota = Some(config.chat_quota_bytes).filter(|q| *q > 0);
        match self
            .inner
            .store
            .put_attachment(&attachment, &upload.bytes, quota)
            .await?
        {
            PutAttachment::Stored(a) => {
                // Documents get their text extracted in the background (crate::processing);
                // a duplicate was already processed (or is being) with the first upload.
                self.start_processing(&a);
                Ok(Uploaded {
                    attachment: a,
                    duplicate: false,
                })
            }
            PutAttachment::Duplicate(a) => Ok(Uploaded {
                attachment: a,
                duplicate: true,
            }),
            PutAttachment::OverQuota { used } => Err(CoreError::rejected(
                ErrorCode::QuotaExceeded,
                format!(
                    "chat `{}` holds {used} bytes of attachments; this file of {size} bytes \
                     would pass its quota of {} bytes (--attachment-quota-bytes)",
                    chat.chat_id,
                    quota.unwrap_or(0)
                ),
            )),
        }
    }

    /// The attachment's metadata, if `who` may read its chat; `not_found` otherwise.
    pub async fn attachment_for(&self, who: &Identity, id: &str) -> Result<Attachment, CoreError> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(not_found(id));
        }
        let Some(a) = self.inner.store.attachment(&who.org, id).await? else {
            return Err(not_found(id));
        };
        let Some(summary) = self.inner.store.chat_summary(&a.chat).await? else {
            return Err(not_found(id));
        };
        check_admits(who, &summary).map_err(|_| not_found(id))?;
        Ok(a)
    }

    /// The attachment and its bytes, for a member of its chat.
    pub async fn download_attachment(
        &self,
        who: &Identity,
        id: &str,
    ) -> Result<(Attachment, Vec<u8>), CoreError> {
        let a = self.attachment_for(who, id).await?;
        let bytes = self
            .inner
            .store
            .attachment_bytes(&who.org, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok((a, bytes))
    }

    /// The attachments `ids` (a message's `[{id}]`) of `chat`, in order, duplicates dropped,
    /// marked referenced. `not_found` for an id not in this chat; `invalid_field` for more
    /// than [`MAX_ATTACHMENTS_PER_MESSAGE`]. The caller has checked `who` may post in `chat`.
    pub async fn resolve_attachments(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<Vec<Attachment>, CoreError> {
        let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(&id.as_str()) {
                unique.push(id);
            }
        }
        if unique.len() > MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "`attachments` may hold at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments \
                     (got {})",
                    unique.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(unique.len());
        for id in &unique {
            if id.is_empty() {
                return Err(CoreError::rejected(
                    ErrorCode::InvalidField,
                    "`attachments[].id` must not be empty",
                ));
            }
            if id.len() > MAX_ID_BYTES {
                return Err(not_found(id));
            }
            match self.inner.store.attachment(&chat.org, id).await? {
                Some(a) if a.chat == *chat => out.push(a),
                _ => {
                    return Err(CoreError::rejected(
                        ErrorCode::NotFound,
                        format!("chat `{}` has no attachment `{id}`", chat.chat_id),
                    ));
                }
            }
        }
        let fresh: Vec<String> = out
            .iter()
            .filter(|a| !a.referenced)
            .map(|a| a.id.clone())
            .collect();
        if !fresh.is_empty() {
            self.inner
                .store
                .mark_attachments_referenced(chat, &fresh)
                .await?;
            for a in &mut out {
                a.referenced = true;
            }
        }
        Ok(out)
    }

    /// Deletes attachments never referenced by a message and created more than `older_than`
    /// ago (default: the config's `orphan_after`). Returns how many.
    pub async fn delete_orphan_attachments(
        &self,
        older_than: Option<Duration>,
    ) -> Result<u64, CoreError> {
        let age = older_than.unwrap_or(self.attachments_config().orphan_after);
        let cutoff = now_millis().saturating_sub(age.as_millis().min(i64::MAX as u128) as i64);
        let mut total = 0;
        // In batches, so one sweep never holds a long transaction.
        loop {
            let n = self
                .inner
                .store
                .delete_orphan_attachments(cutoff, 500)
                .await?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_urls() {
        assert_eq!(id_from_url("/api/v1/attachments/abc"), Some("abc"));
        assert_eq!(
            id_from_url("http://localhost:3000/api/v1/attachments/abc?x=1"),
            Some("abc")
        );
        assert_eq!(id_from_url("https://evil.example/x.png"), None);
        assert_eq!(id_from_url("/api/v1/attachments/"), None);
        assert_eq!(id_from_url("/api/v1/attachments/a/b"), None);
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\a b.png"), "a b.png");
        assert_eq!(clean_name("\u{0}\n"), "file");
        assert_eq!(clean_name(&"x".repeat(400)).chars().count(), MAX_NAME_CHARS);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
