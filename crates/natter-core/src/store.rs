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
//!   has none; `pinned`; the status on `ChatEnded`; the user as a member on `UserMessage`;
//!   the handoff state (`waiting_since`, `human_agents`) as the latest `HumanAgent*` event's
//!   `handoff` gives it. The store computes that `handoff` itself, in the same transaction
//!   as the append, from the chat's state just before it (see
//!   [`apply_handoff`](crate::event::apply_handoff)), and stores the event with it: the
//!   caller's value comes from a read that a concurrent join or leave may have outdated.
//! - **Reactions and CSAT kept with the log.** In the same transaction as the append, a
//!   `ReactionAdded` / `ReactionRemoved` updates the message's reaction set (one per user,
//!   message and emoji: adding one that is there, or removing one that is not, changes
//!   nothing; a re-add keeps the first `createdAt`) and the store writes the message's whole
//!   list after the change into the event's `reactions` (see
//!   [`apply_reaction`](crate::event::apply_reaction)) before storing it; `CsatSubmitted`
//!   becomes the summary's `csat`.
//! - **Superseded messages.** Appending `MessageSuperseded` marks that message so that
//!   `recent_messages` and `messages_after` skip it; the events themselves stay in the log.
//! - **The turn queue kept with the log.** In the same transaction as the append, the store
//!   records which turns were asked for and have not ended: a `UserMessage` with a
//!   `requestId`, or a `MessageSuperseded`, opens turn `requestId` (queued); an
//!   `AssistantMessage` or `TurnFailed` closes it. A duplicate opens nothing, and a
//!   `requestId` the chat already has open keeps its first opening.
//!   [`open_turns`](Store::open_turns) reads a chat's queue in the order asked for, so a turn
//!   survives the node that queued it; [`request_turn`](Store::request_turn) opens one with no
//!   event (a regenerate of a user message).
//! - **Fencing.** Each chat has a turn fence, a number that only grows.
//!   [`claim_turns`](Store::claim_turns) raises it and returns the new value: the caller now
//!   owns the chat's turns. A write guarded by [`Guard::Fence`] with any other number than the
//!   chat's current fence (an owner that paused or was cut off while another took over) is
//!   refused with [`StoreError::Fenced`] and changes nothing, so two owners never both end a
//!   turn. A deleted and recreated chat starts its fence again from 0.
//!   [`start_turn`](Store::start_turn) is fenced the same way.
//! - **Real delete.** [`delete_chat`](Store::delete_chat) removes the chat and all its
//!   events, and its attachments; the same chat id may later be created again, with a new
//!   epoch.
//! - **Attachments** (CONTRACT §7.6) are kept with their chat: bytes and metadata, ids unique
//!   across the store. [`put_attachment`](Store::put_attachment) stores the same bytes
//!   (sha256) once per chat, and checks the chat's quota in the same transaction as the
//!   insert. Every read is scoped by org: an id of another org is not there.
//!
//! [`title_from_text`]: crate::chat::title_from_text

use async_trait::async_trait;

use crate::attachments::{Attachment, Processing};
use crate::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use crate::event::{EventBody, Reaction, StoredEvent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chat {0} does not exist")]
    NoSuchChat(String),
    /// A [`Guard::Fence`] write by an owner whose fence was overtaken by a newer owner.
    #[error("turn fence {held} of chat {chat} is stale (the chat's fence is {current})")]
    Fenced {
        chat: String,
        held: u64,
        current: u64,
    },
    /// A [`Guard::Queued`] write for a turn that is no longer queued (started or ended).
    #[error("turn {request_id} of chat {chat} is not queued")]
    NotQueued { chat: String, request_id: String },
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

/// A turn the log says was asked for and has not ended: queued, or started by an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTurn {
    pub chat: ChatKey,
    pub request_id: String,
    pub trace_id: Option<String>,
    /// The `seq` of the event that asked for the turn (the chat's head for
    /// [`Store::request_turn`]): the queue's order.
    pub opened_seq: u64,
    /// The turn's context ends at this `seq`: the user message it answers (for a regenerate,
    /// the message answered again, from [`EventBody::MessageSuperseded`]'s `context_seq`, or
    /// `opened_seq` when absent).
    pub context_seq: u64,
    /// The fence of the owner that started it; `None` while it is queued.
    pub started_fence: Option<u64>,
}

/// What [`Store::put_attachment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutAttachment {
    /// Stored as given.
    Stored(Attachment),
    /// The chat already holds an attachment with the same sha256: that one, nothing stored.
    Duplicate(Attachment),
    /// Storing it would pass the quota; `used` is what the chat's attachments hold now.
    OverQuota { used: u64 },
}

fn no_attachments() -> StoreError {
    StoreError::Backend("this store does not keep attachments".into())
}

/// A condition an append must meet, checked in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Guard {
    #[default]
    None,
    /// Written by the owner holding turn fence `n`: refused with [`StoreError::Fenced`] when
    /// the chat's fence is no longer `n` (another owner claimed the chat's turns since).
    Fence(u64),
    /// Only while turn `request_id` is queued (open and not started): refused with
    /// [`StoreError::NotQueued`] otherwise. Ends a queued turn without racing its start.
    Queued(String),
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
    ) -> Result<Appended, StoreError> {
        self.append_guarded(chat, body, created_at, Guard::None)
            .await
    }

    /// [`append`](Store::append), only if `guard` holds (checked in the same transaction; a
    /// refused append changes nothing). A duplicate is reported as such whatever the guard.
    async fn append_guarded(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
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

    /// Chats of `org` in `scope` waiting for a human agent (CONTRACT §7.2: the agents'
    /// queue): oldest `waiting_since` first (ties by chat id). The default reads the whole
    /// list (so wrappers that forward [`Store::list_chats`] get it right); real stores answer
    /// from an index.
    async fn list_waiting_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let all = self.list_chats(org, scope, usize::MAX >> 1, 0).await?;
        let mut waiting: Vec<ChatSummary> = all
            .chats
            .into_iter()
            .filter(|c| c.waiting_since.is_some())
            .collect();
        waiting.sort_by(|a, b| {
            a.waiting_since
                .cmp(&b.waiting_since)
                .then_with(|| a.key.chat_id.cmp(&b.key.chat_id))
        });
        Ok(ChatPage {
            total: waiting.len() as u64,
            chats: waiting.into_iter().skip(offset).take(limit).collect(),
        })
    }

    /// Deletes the chat and its whole log. `false` if it did not exist.
    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError>;

    /// The chat's open turns (queued and started), in the order asked for.
    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError>;

    /// Up to `limit` chats that have open turns, in a random order (so that repeated calls
    /// with more such chats than `limit` see them all in time): where a node looks for turns
    /// nobody runs (their owner died, or the server restarted).
    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError>;

    /// Opens turn `request_id` (queued) with no event, its context ending at `context_seq`
    /// (a regenerate of a user message). No-op if the chat already has it open.
    async fn request_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) -> Result<(), StoreError>;

    /// Raises the chat's turn fence by one and returns it: the caller owns the chat's turns,
    /// and writes fenced with an older number are refused from now on.
    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError>;

    /// Marks queued turn `request_id` started by the owner holding `fence`. `Ok(false)` if the
    /// turn is not queued any more (ended, e.g. aborted while queued, or already started);
    /// [`StoreError::Fenced`] if `fence` is stale.
    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError>;

    /// The reactions on each of `message_ids` that has any (CONTRACT §7.3), each list in
    /// the order its reactions were first added.
    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<Reaction>)>, StoreError>;

    /// Checks the backend is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    // Attachments (CONTRACT §7.6). The defaults refuse, so wrappers that do not forward them
    // still build; every real store implements them (see the conformance suite).

    /// Stores `attachment` (metadata; its `chat` must exist: [`StoreError::NoSuchChat`]) and
    /// `bytes`, unless the chat already holds one with the same `sha256`
    /// ([`PutAttachment::Duplicate`]), or `quota` is set and the chat's attachments plus
    /// `bytes` would pass it ([`PutAttachment::OverQuota`]); all in one transaction.
    async fn put_attachment(
        &self,
        attachment: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        let _ = (attachment, bytes, quota);
        Err(no_attachments())
    }

    /// Attachment `id`'s metadata, if it belongs to a chat of `org`.
    async fn attachment(&self, org: &str, id: &str) -> Result<Option<Attachment>, StoreError> {
        let _ = (org, id);
        Err(no_attachments())
    }

    /// Attachment `id`'s bytes, if it belongs to a chat of `org`.
    async fn attachment_bytes(&self, org: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = (org, id);
        Err(no_attachments())
    }

    /// The text extracted from document `id` (set with its `Complete` state), if any.
    async fn attachment_text(&self, org: &str, id: &str) -> Result<Option<String>, StoreError> {
        let _ = (org, id);
        Err(no_attachments())
    }

    /// Records document `id`'s processing state, and its extracted text with `Complete`.
    /// `false` if there is no such attachment (its chat was deleted meanwhile).
    async fn set_attachment_processing(
        &self,
        org: &str,
        id: &str,
        processing: &Processing,
        text: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _ = (org, id, processing, text);
        Err(no_attachments())
    }

    /// Up to `limit` attachments (any chat) whose state is `Processing`, oldest first: what a
    /// restarted node processes again.
    async fn attachments_processing(&self, limit: usize) -> Result<Vec<Attachment>, StoreError> {
        let _ = limit;
        Err(no_attachments())
    }

    /// Marks attachments `ids` of `chat` referenced by a message (kept from the orphan sweep).
    async fn mark_attachments_referenced(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let _ = (chat, ids);
        Err(no_attachments())
    }

    /// Deletes up to `limit` attachments (any chat) never referenced and created before
    /// `created_before` (Unix ms). Returns how many.
    async fn delete_orphan_attachments(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let _ = (created_before, limit);
        Err(no_attachments())
    }

    /// Total bytes of `chat`'s attachments (what the quota counts).
    async fn chat_attachment_bytes(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        let _ = chat;
        Err(no_attachments())
    }
}
