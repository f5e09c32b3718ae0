//! Test doubles shared by the core's integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use natter_core::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Guard, OpenTurn, Store, StoreError};
use natter_core::store_memory::MemoryStore;

/// The real in-memory store ([`MemoryStore`]) with a store outage to switch on, counting the
/// turn-queue calls.
#[derive(Default)]
pub struct LogStore {
    /// While set, appending the end of a turn fails (a store outage).
    pub fail_turn_ends: AtomicBool,
    /// Calls of [`Store::open_turns`].
    pub queue_reads: AtomicUsize,
    /// Calls of [`Store::start_turn`].
    pub start_marks: AtomicUsize,
    /// Calls of [`Store::claim_turns`].
    pub claims: AtomicUsize,
    /// Calls of [`Store::append_guarded`] (and so of `append`).
    pub appends: AtomicUsize,
    inner: MemoryStore,
}

impl LogStore {
    /// The store underneath, for reading what was stored.
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }
}

#[async_trait]
impl Store for LogStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        self.inner.open_chat(chat, create).await
    }

    async fn append_guarded(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        if body.ends_turn().is_some() && self.fail_turn_ends.load(Ordering::Relaxed) {
            return Err(StoreError::Backend("the test store is down".into()));
        }
        self.inner
            .append_guarded(chat, body, created_at, guard)
            .await
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(chat, after, limit).await
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.recent_messages(chat, up_to, limit).await
    }

    async fn messages_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.messages_after(chat, after, limit).await
    }

    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.find_message(chat, message_id).await
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        self.inner.chat_summary(chat).await
    }

    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        self.inner.list_chats(org, scope, limit, offset).await
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        self.inner.delete_chat(chat).await
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        self.queue_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.open_turns(chat).await
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        self.inner.chats_with_open_turns(limit).await
    }

    async fn request_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .request_turn(chat, request_id, trace_id, context_seq)
            .await
    }

    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        self.inner.claim_turns(chat).await
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        self.start_marks.fetch_add(1, Ordering::Relaxed);
        self.inner.start_turn(chat, request_id, fence).await
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<natter_core::event::Reaction>)>, StoreError> {
        self.inner.reactions(chat, message_ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
