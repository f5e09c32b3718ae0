//! Test doubles shared by the core's integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use natter_core::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Store, StoreError};

/// A minimal in-memory log, enough for feeds to refill from.
#[derive(Default)]
pub struct LogStore {
    /// While set, appending the end of a turn fails (a store outage).
    pub fail_turn_ends: AtomicBool,
    events: Mutex<HashMap<ChatKey, Vec<StoredEvent>>>,
}

#[async_trait]
impl Store for LogStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let mut map = self.events.lock().unwrap();
        if !map.contains_key(chat) && create.is_none() {
            return Ok(None);
        }
        let log = map.entry(chat.clone()).or_default();
        if log.is_empty() {
            // As the Store contract says: creation is the log's first event.
            log.push(StoredEvent {
                seq: 1,
                created_at: 0,
                body: EventBody::ChatCreated {
                    created_by: None,
                    metadata: None,
                    members: None,
                },
            });
        }
        Ok(Some(ChatInfo {
            epoch: "e".into(),
            head_seq: log.len() as u64,
            created_at: 0,
        }))
    }

    async fn append(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
    ) -> Result<Appended, StoreError> {
        if body.ends_turn().is_some() && self.fail_turn_ends.load(Ordering::Relaxed) {
            return Err(StoreError::Backend("the test store is down".into()));
        }
        let mut map = self.events.lock().unwrap();
        let log = map.entry(chat.clone()).or_default();
        let event = StoredEvent {
            seq: log.len() as u64 + 1,
            created_at,
            body,
        };
        log.push(event.clone());
        Ok(Appended::New(event))
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let map = self.events.lock().unwrap();
        Ok(map
            .get(chat)
            .map(|l| {
                l.iter()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn recent_messages(
        &self,
        _: &ChatKey,
        _: u64,
        _: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn messages_after(
        &self,
        _: &ChatKey,
        _: u64,
        _: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let map = self.events.lock().unwrap();
        Ok(map.get(chat).and_then(|l| {
            l.iter()
                .find(|e| e.body.message_id() == Some(message_id))
                .cloned()
        }))
    }

    async fn chat_summary(&self, _: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        Ok(None)
    }

    async fn list_chats(
        &self,
        _: &str,
        _: &ChatScope,
        _: usize,
        _: usize,
    ) -> Result<ChatPage, StoreError> {
        Ok(ChatPage {
            chats: Vec::new(),
            total: 0,
        })
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        Ok(self.events.lock().unwrap().remove(chat).is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
