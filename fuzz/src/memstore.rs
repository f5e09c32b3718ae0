//! An in-memory [`Store`] for the HTTP target: each input gets a fresh one, so runs do not
//! depend on each other. It keeps the store contract (`natter-core/src/store.rs`) closely
//! enough for the faces to behave as on SQLite: gapless `seq`, idempotent user messages,
//! summaries kept with the log, superseded messages, real deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use natter_core::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatStatus, ChatSummary, NewChat, title_from_text,
};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Store, StoreError};

struct Chat {
    summary: ChatSummary,
    events: Vec<StoredEvent>,
    /// Seqs of superseded events.
    superseded: BTreeSet<u64>,
    /// Users who created or posted in the chat.
    posters: BTreeSet<String>,
}

#[derive(Default)]
pub struct MemStore {
    chats: Mutex<BTreeMap<ChatKey, Chat>>,
    epochs: Mutex<u64>,
}

/// A fixed clock: runs must not depend on the wall time.
const NOW: i64 = 1_763_790_000_000;

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ChatKey, Chat>> {
        self.chats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn epoch(&self) -> String {
        let mut n = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        format!("{:032x}", *n)
    }
}

fn info(c: &Chat) -> ChatInfo {
    ChatInfo {
        epoch: c.summary.epoch.clone(),
        head_seq: c.summary.head_seq,
        created_at: c.summary.created_at,
    }
}

fn apply(c: &mut Chat, event: &StoredEvent) {
    let s = &mut c.summary;
    s.updated_at = s.updated_at.max(event.created_at);
    s.head_seq = event.seq;
    match &event.body {
        EventBody::UserMessage { user_id, text, .. } => {
            if s.title.is_none() {
                s.title = Some(title_from_text(text));
            }
            c.posters.insert(user_id.clone());
        }
        EventBody::ChatUpdated {
            title,
            pinned,
            members,
            ..
        } => {
            if let Some(t) = title {
                s.title = Some(t.clone());
            }
            if let Some(p) = pinned {
                s.pinned = *p;
            }
            if let Some(m) = members {
                s.members = Some(m.clone()).filter(|m| !m.is_empty());
            }
        }
        EventBody::ChatEnded { .. } => s.status = ChatStatus::Closed,
        EventBody::MessageSuperseded { message_id, .. } => {
            for e in &c.events {
                let hit = match &e.body {
                    EventBody::AssistantMessage { message_id: m, .. }
                    | EventBody::TurnFailed { message_id: m, .. }
                    | EventBody::ToolCall { message_id: m, .. }
                    | EventBody::ToolResult { message_id: m, .. } => m == message_id,
                    _ => false,
                };
                if hit {
                    c.superseded.insert(e.seq);
                }
            }
        }
        _ => {}
    }
}

#[async_trait]
impl Store for MemStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        if let Some(c) = self.lock().get(chat) {
            return Ok(Some(info(c)));
        }
        let Some(new) = create else {
            return Ok(None);
        };
        let epoch = self.epoch();
        let members = new.members.clone().filter(|m| !m.is_empty());
        let created = StoredEvent {
            seq: 1,
            created_at: NOW,
            body: EventBody::ChatCreated {
                created_by: new.created_by.clone(),
                metadata: new.metadata.clone(),
                members: members.clone(),
            },
        };
        let c = Chat {
            summary: ChatSummary {
                key: chat.clone(),
                title: None,
                pinned: false,
                status: ChatStatus::Active,
                created_by: new.created_by.clone(),
                metadata: new.metadata.clone(),
                created_at: NOW,
                updated_at: NOW,
                head_seq: 1,
                epoch,
                members,
            },
            events: vec![created],
            superseded: BTreeSet::new(),
            posters: new.created_by.iter().cloned().collect(),
        };
        let mut chats = self.lock();
        let c = chats.entry(chat.clone()).or_insert(c);
        Ok(Some(info(c)))
    }

    async fn append(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
    ) -> Result<Appended, StoreError> {
        let mut chats = self.lock();
        let c = chats
            .get_mut(chat)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))?;
        if let Some(key) = body.idempotency_key() {
            let kind = body.kind();
            if let Some(e) = c
                .events
                .iter()
                .find(|e| e.body.kind() == kind && e.body.idempotency_key() == Some(key))
            {
                return Ok(Appended::Duplicate(e.clone()));
            }
        }
        let event = StoredEvent {
            seq: c.summary.head_seq + 1,
            created_at,
            body,
        };
        apply(c, &event);
        c.events.push(event.clone());
        Ok(Appended::New(event))
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .lock()
            .get(chat)
            .map(|c| {
                c.events
                    .iter()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let chats = self.lock();
        let Some(c) = chats.get(chat) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<StoredEvent> = c
            .events
            .iter()
            .rev()
            .filter(|e| e.seq <= up_to && e.body.is_message() && !c.superseded.contains(&e.seq))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn messages_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let chats = self.lock();
        let Some(c) = chats.get(chat) else {
            return Ok(Vec::new());
        };
        Ok(c.events
            .iter()
            .filter(|e| {
                e.seq > after
                    && !c.superseded.contains(&e.seq)
                    && (e.body.is_message()
                        || matches!(
                            e.body,
                            EventBody::ToolCall { .. } | EventBody::ToolResult { .. }
                        ))
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn find_message(
        &self,
        chat: &ChatKey,
        message_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.lock().get(chat).and_then(|c| {
            c.events
                .iter()
                .find(|e| e.body.message_id() == Some(message_id))
                .cloned()
        }))
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        Ok(self.lock().get(chat).map(|c| c.summary.clone()))
    }

    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let chats = self.lock();
        let mut page: Vec<&Chat> = chats
            .values()
            .filter(|c| &*c.summary.key.org == org)
            .filter(|c| match scope {
                ChatScope::Org => true,
                ChatScope::Member(user) => c.posters.contains(&**user),
            })
            .collect();
        page.sort_by(|a, b| {
            (b.summary.pinned, b.summary.updated_at)
                .cmp(&(a.summary.pinned, a.summary.updated_at))
                .then_with(|| a.summary.key.chat_id.cmp(&b.summary.key.chat_id))
        });
        Ok(ChatPage {
            total: page.len() as u64,
            chats: page
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|c| c.summary.clone())
                .collect(),
        })
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        Ok(self.lock().remove(chat).is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
