//! The [`Store`] of the HTTP target: natter-core's [`MemoryStore`] (the whole store contract,
//! checked by the natter-store-tests conformance suite) on a fixed clock with counted epochs,
//! so a run depends on its input only. Each input gets a fresh one, so runs do not depend on
//! each other.

use async_trait::async_trait;
use natter_core::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::attachments::{Attachment, Processing};
use natter_core::store::{Appended, Guard, OpenTurn, PutAttachment, Store, StoreError};
use natter_core::store_memory::MemoryStore;

/// A fixed clock: runs must not depend on the wall time.
const NOW: i64 = 1_763_790_000_000;

pub struct MemStore(MemoryStore);

impl Default for MemStore {
    fn default() -> Self {
        Self(MemoryStore::with_fixed_clock(NOW))
    }
}

#[async_trait]
impl Store for MemStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        self.0.open_chat(chat, create).await
    }

    async fn append_guarded(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        self.0.append_guarded(chat, body, created_at, guard).await
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.events_after(chat, after, limit).await
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.recent_messages(chat, up_to, limit).await
    }

    async fn messages_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.messages_after(chat, after, limit).await
    }

    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.0.find_message(chat, message_id).await
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        self.0.chat_summary(chat).await
    }

    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        self.0.list_chats(org, scope, limit, offset).await
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        self.0.delete_chat(chat).await
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        self.0.open_turns(chat).await
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        self.0.chats_with_open_turns(limit).await
    }

    async fn request_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) -> Result<(), StoreError> {
        self.0
            .request_turn(chat, request_id, trace_id, context_seq)
            .await
    }

    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        self.0.claim_turns(chat).await
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        self.0.start_turn(chat, request_id, fence).await
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<natter_core::event::Reaction>)>, StoreError> {
        self.0.reactions(chat, message_ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    async fn put_attachment(
        &self,
        attachment: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        self.0.put_attachment(attachment, bytes, quota).await
    }

    async fn attachment(&self, org: &str, id: &str) -> Result<Option<Attachment>, StoreError> {
        self.0.attachment(org, id).await
    }

    async fn attachment_bytes(&self, org: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.attachment_bytes(org, id).await
    }

    async fn attachment_text(&self, org: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.0.attachment_text(org, id).await
    }

    async fn set_attachment_processing(
        &self,
        org: &str,
        id: &str,
        processing: &Processing,
        text: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.0
            .set_attachment_processing(org, id, processing, text)
            .await
    }

    async fn attachments_processing(&self, limit: usize) -> Result<Vec<Attachment>, StoreError> {
        self.0.attachments_processing(limit).await
    }

    async fn mark_attachments_referenced(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        self.0.mark_attachments_referenced(chat, ids).await
    }

    async fn delete_orphan_attachments(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.0.delete_orphan_attachments(created_before, limit).await
    }

    async fn chat_attachment_bytes(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        self.0.chat_attachment_bytes(chat).await
    }
}
