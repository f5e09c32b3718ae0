//! The Store seam: the durable, per-chat event log.
//!
//! # What an implementation must guarantee
//! - **Sequencing.** `append` gives the event the chat's next `seq` (head + 1), atomically
//!   with storing it: no gaps, no two events with one `seq`, even with several server
//!   processes appending to the same chat at once. (SQLite serializes writers; Postgres
//!   locks the chat row for the transaction.)
//! - **Durability before return.** When `append` returns `Ok`, the event survives a crash of
//!   this process. The core tells nobody about an event before that.
//! - **Idempotency.** An event with an idempotency key (a user message's `messageId`) that
//!   the chat already holds is not stored again: `append` returns the stored event as
//!   [`Appended::Duplicate`].
//! - **Visibility order.** Once `append` for `seq = n` has returned, every event `<= n` is
//!   readable by `events_after` on every connection (no holes for readers).
//! - **Epoch.** A chat's epoch is set once at creation; it changes only if the chat's log is
//!   lost (a new database gives new epochs), so clients never "recover" from another log.
//! - **Isolation.** Every call is scoped by [`ChatKey`] (org + chat id); nothing crosses orgs.
//! - **Summary kept with the log.** In the same transaction as the append, the store updates
//!   what [`chat_summary`](Store::chat_summary) reports: the latest activity time; the title
//!   on `ChatUpdated`, or from the first `UserMessage` ([`title_from_text`]) while the chat
//!   has none; `pinned`; the status on `ChatEnded`; the user as a member on `UserMessage`.
//! - **Superseded messages.** Appending `MessageSuperseded` marks that message so that
//!   `recent_messages` and `messages_after` skip it; the events themselves stay in the log.
//! - **Open turns kept with the log.** In the same transaction as the append, the store
//!   records which turns were asked for and have not ended: a `UserMessage` with a
//!   `requestId`, or a `MessageSuperseded`, opens turn `requestId` (tagged with this store
//!   instance); an `AssistantMessage` or `TurnFailed` closes it. A duplicate opens nothing.
//!   [`interrupted_turns`](Store::interrupted_turns) reads the ones a process that is gone
//!   left open, so the core can end them after a crash (every turn ends, CONTRACT §1).
//! - **Real delete.** [`delete_chat`](Store::delete_chat) removes the chat and all its
//!   events; the same chat id may later be created again, with a new epoch.
//!
//! [`title_from_text`]: crate::chat::title_from_text

use async_trait::async_trait;

use crate::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use crate::event::{EventBody, StoredEvent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chat {0} does not exist")]
    NoSuchChat(String),
    #[error("store backend error: {0}")]
    Backend(String),
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    New(StoredEvent),
    /// The idempotency key was already stored; this is the original event.
    Duplicate(StoredEvent),
}

impl Appended {
    pub fn event(&self) -> &StoredEvent {
        match self {
            Self::New(e) | Self::Duplicate(e) => e,
        }
    }
}

/// A turn the log says was asked for and never ended: its process stopped while the turn was
/// queued or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTurn {
    pub chat: ChatKey,
    pub request_id: String,
    pub trace_id: Option<String>,
    /// The `seq` of the event that asked for the turn.
    pub opened_seq: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns the chat, creating it (with a fresh epoch and a `chat_created` event at
    /// `seq` 1) when `create` is set and it does not exist. `None` if absent and not created.
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError>;

    /// Appends one event to an existing chat. See the module docs for the guarantees.
    async fn append(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
    ) -> Result<Appended, StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The latest message events (user and assistant) with `seq <= up_to`, oldest first,
    /// at most `limit`.
    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Message events (user and assistant) and tool events (`tool_call`, `tool_result`), not
    /// superseded, with `seq > after`, oldest first, at most `limit`: history paged by `seq`.
    /// Superseding a reply also supersedes its turn's tool events.
    async fn messages_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The event that created message `message_id` (user, assistant or failed turn).
    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError>;

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError>;

    /// Chats of `org` in `scope`: pinned first, then latest activity first.
    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError>;

    /// Deletes the chat and its whole log. `false` if it did not exist.
    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError>;

    /// Up to `limit` turns left open by store instances other than this one (earlier runs of
    /// the server on the same data), by chat and in the order asked for; never one this
    /// instance opened. Ending
    /// one (appending its `TurnFailed`) removes it from the answer.
    ///
    /// The default answers none: right for a store whose log does not outlive its process
    /// (an in-memory store), where no turn can be left over from an earlier run. A store that
    /// several live nodes share must answer only turns of nodes known to be gone (e.g. by a
    /// lease); the SQLite store assumes one node per database (see `docs/architecture.md`).
    async fn interrupted_turns(&self, limit: usize) -> Result<Vec<OpenTurn>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }

    /// Checks the backend is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}
