//! Reading a chat's past: messages before/after a point, the running turn, how a turn ended
//! and its tool events.

use super::ChatCore;
use crate::bus::TurnSnapshot;
use crate::chat::{ChatKey, Identity};
use crate::error::CoreError;
use crate::event::{EventBody, StoredEvent};

impl ChatCore {
    /// Messages after `after_seq`, oldest first (history paged by `seq`).
    pub async fn messages_after(
        &self,
        who: &Identity,
        chat: &ChatKey,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        self.accessible_chat(who, chat).await?;
        Ok(self
            .inner
            .store
            .messages_after(chat, after_seq, limit)
            .await?)
    }

    /// The latest messages up to the head, oldest first.
    pub async fn recent_messages(
        &self,
        chat: &ChatKey,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        Ok(self
            .inner
            .store
            .recent_messages(chat, u64::MAX >> 1, limit)
            .await?)
    }

    /// The running turn's tokens so far, if a turn is streaming.
    pub async fn running_turn(&self, chat: &ChatKey) -> Result<Option<TurnSnapshot>, CoreError> {
        Ok(self.inner.bus.running_turn(chat).await?)
    }

    /// The request id of the chat's oldest open turn (queued or running), the one that streams
    /// next: what a resume follows when nothing streams yet (the turn waits for the node's
    /// turn limit, its owner, or a turn ahead of it on another node).
    pub async fn next_open_turn(&self, chat: &ChatKey) -> Result<Option<String>, CoreError> {
        let turns = self.inner.store.open_turns(chat).await?;
        Ok(turns
            .into_iter()
            .min_by_key(|t| t.opened_seq)
            .map(|t| t.request_id))
    }

    /// The event that ended the turn `request_id`, looking after `from_seq`.
    pub async fn turn_end(
        &self,
        chat: &ChatKey,
        request_id: &str,
        from_seq: u64,
    ) -> Result<Option<StoredEvent>, CoreError> {
        let events = self
            .inner
            .store
            .events_after(chat, from_seq, self.inner.config.replay_limit)
            .await?;
        Ok(events.into_iter().find(|e| match &e.body {
            EventBody::AssistantMessage { request_id: r, .. }
            | EventBody::TurnFailed { request_id: r, .. } => r == request_id,
            _ => false,
        }))
    }

    /// The tool calls and results of turn `request_id` stored up to `up_to_seq` (to replay a
    /// running turn), oldest first. Looks back at most the replay limit.
    pub async fn turn_tool_events(
        &self,
        chat: &ChatKey,
        request_id: &str,
        up_to_seq: u64,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        let limit = self.inner.config.replay_limit;
        let from = up_to_seq.saturating_sub(limit as u64);
        let events = self.inner.store.events_after(chat, from, limit).await?;
        Ok(events
            .into_iter()
            .filter(|e| e.seq <= up_to_seq)
            .filter(|e| match &e.body {
                EventBody::ToolCall { request_id: r, .. }
                | EventBody::ToolResult { request_id: r, .. } => r == request_id,
                _ => false,
            })
            .collect())
    }
}
