//! Moving whole chats between stores (`natter store copy`): a chat exported from one
//! [`Store`] and imported into another reads back the same, seq for seq.
//!
//! Not a live replication: the source should be quiet while it is read (no server writing
//! to it), or chats that change during the copy may be cut at the head seen when their
//! header was read.
//!
//! # What an implementation must guarantee
//! - [`chat_keys`](Transfer::chat_keys) pages through every chat of every org in byte order
//!   of `(org, chat_id)`.
//! - [`export_chat`](Transfer::export_chat) reads the header of one chat (the `chats` row,
//!   members, read receipts, the turn queue and the fence) from one consistent snapshot;
//!   [`export_events`](Transfer::export_events) pages its log with the superseded marks.
//! - [`import_chat`](Transfer::import_chat) writes one chat in one transaction: the header
//!   as given (epoch, head, fence, summary columns, members, receipts, queue in order) and
//!   every event unchanged (`seq`, `created_at`, body). It checks the events are exactly
//!   `1..=head_seq`, and changes nothing when the chat already exists (`Ok(false)`) or
//!   anything fails.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::chat::{ChatKey, ChatSummary};
use crate::event::StoredEvent;
use crate::store::{OpenTurn, Store, StoreError};

/// One read receipt row (the log keeps the receipt events too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub user_id: String,
    pub message_id: String,
    pub read_at: i64,
}

/// Everything about a chat besides its log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatExport {
    /// Key, epoch, head, times and the summary columns.
    pub summary: ChatSummary,
    pub turn_fence: u64,
    /// Who takes part (the creator and everyone who posted): what member-scoped lists use.
    pub participants: Vec<String>,
    pub receipts: Vec<ReceiptRow>,
    /// The turn queue, in the order asked for.
    pub open_turns: Vec<OpenTurn>,
}

/// A logged event and whether a regenerate superseded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedEvent {
    pub event: StoredEvent,
    pub superseded: bool,
}

/// A chat's log, page by page, oldest first.
pub type EventPages<'a> = BoxStream<'a, Result<Vec<ExportedEvent>, StoreError>>;

/// A store whose chats can be copied out and in whole. See the module docs.
#[async_trait]
pub trait Transfer: Store {
    /// Up to `limit` chats after `after` (exclusive), every org, by `(org, chat_id)`.
    async fn chat_keys(
        &self,
        after: Option<&ChatKey>,
        limit: usize,
    ) -> Result<Vec<ChatKey>, StoreError>;

    /// The chat's header, `None` if it does not exist.
    async fn export_chat(&self, chat: &ChatKey) -> Result<Option<ChatExport>, StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`, with superseded marks.
    async fn export_events(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExportedEvent>, StoreError>;

    /// Writes the chat and its log in one transaction. `Ok(false)`: the chat already exists
    /// here, nothing was written.
    async fn import_chat(
        &self,
        chat: &ChatExport,
        events: EventPages<'_>,
    ) -> Result<bool, StoreError>;
}

/// Checks that `page` continues a log whose last imported `seq` is `last` and does not pass
/// `head`; returns the new last `seq`. Importers call it on every page.
pub fn check_page(
    chat: &ChatKey,
    last: u64,
    head: u64,
    page: &[ExportedEvent],
) -> Result<u64, StoreError> {
    let mut last = last;
    for e in page {
        if e.event.seq != last + 1 || e.event.seq > head {
            return Err(StoreError::Backend(format!(
                "import of {chat}: event seq {} follows {last} (head {head}): the log is not \
                 contiguous",
                e.event.seq
            )));
        }
        last = e.event.seq;
    }
    Ok(last)
}
