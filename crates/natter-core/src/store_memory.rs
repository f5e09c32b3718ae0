//! [`MemoryStore`]: the [`Store`] contract in memory, for tests, the fuzzer and trying things
//! out. It keeps every guarantee of the module docs of [`crate::store`] except durability
//! (everything is gone with the process): gapless `seq`, idempotent user messages, summaries,
//! titles and members kept with the log, superseded messages, read receipts, real deletes,
//! the turn queue and the turn fence. One mutex guards all chats, so every call is atomic.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::attachments::{Attachment, Processing};
use crate::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatStatus, ChatSummary, NewChat, title_from_text,
};
use crate::event::{Csat, EventBody, Reaction, StoredEvent, apply_handoff, apply_reaction};
use crate::store::{Appended, Guard, OpenTurn, PutAttachment, Store, StoreError};

/// One chat: its log and everything the store keeps with it.
struct Chat {
    summary: ChatSummary,
    /// The log; the event with `seq` n is at index n - 1.
    events: Vec<StoredEvent>,
    /// Idempotency keys (user `messageId`s) and the `seq` that stored them.
    keys: HashMap<String, u64>,
    /// `seq`s of events that left history (a superseded reply and its tool events).
    superseded: HashSet<u64>,
    /// Users who created or posted in the chat (a user's [`ChatScope::Member`] list).
    posters: BTreeSet<String>,
    /// Read receipts: (user, message id) → read at.
    receipts: BTreeMap<(String, String), i64>,
    /// Reactions by message id, each list in the order first added.
    reactions: HashMap<String, Vec<Reaction>>,
    /// Open turns, in the order asked for.
    turns: Vec<OpenTurn>,
    fence: u64,
    /// Attachments in upload order: metadata, bytes and extracted text.
    attachments: Vec<StoredAttachment>,
}

struct StoredAttachment {
    meta: Attachment,
    bytes: Vec<u8>,
    text: Option<String>,
}

impl Chat {
    fn info(&self) -> ChatInfo {
        ChatInfo {
            epoch: self.summary.epoch.clone(),
            head_seq: self.summary.head_seq,
            created_at: self.summary.created_at,
        }
    }

    fn turn(&self, request_id: &str) -> Option<&OpenTurn> {
        self.turns.iter().find(|t| t.request_id == request_id)
    }

    /// Opens turn `request_id` unless the chat has it open (the first opening stays).
    fn open_turn(
        &mut self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) {
        if self.turn(request_id).is_none() {
            self.turns.push(OpenTurn {
                chat: chat.clone(),
                request_id: request_id.to_owned(),
                trace_id: trace_id.map(str::to_owned),
                opened_seq: self.summary.head_seq,
                context_seq,
                started_fence: None,
            });
        }
    }

    /// Stores `event` (its `seq` is the new head) and keeps the summary, the supersede marks,
    /// the receipts and the turn queue in step.
    fn push(&mut self, mut event: StoredEvent) -> StoredEvent {
        // A reaction event carries the message's list after it, filled in here.
        if let Some((message_id, _)) = event.body.reaction_target() {
            let mut list = self.reactions.get(message_id).cloned().unwrap_or_default();
            apply_reaction(&mut list, &event.body, event.created_at);
            if let EventBody::ReactionAdded { reactions, .. }
            | EventBody::ReactionRemoved { reactions, .. } = &mut event.body
            {
                *reactions = list;
            }
        }
        // A handoff event carries the chat's handoff state after it, computed here from the
        // state now (not the caller's read, which a concurrent join may have outdated).
        let before = self.summary.handoff();
        apply_handoff(&before, &mut event.body);
        let seq = event.seq;
        let s = &mut self.summary;
        s.head_seq = seq;
        s.updated_at = s.updated_at.max(event.created_at);
        if let Some(key) = event.body.idempotency_key() {
            self.keys.insert(key.to_owned(), seq);
        }
        match &event.body {
            EventBody::UserMessage {
                user_id,
                text,
                request_id,
                trace_id,
                ..
            } => {
                if s.title.is_none() {
                    s.title = Some(title_from_text(text));
                }
                self.posters.insert(user_id.clone());
                if let Some(request_id) = request_id {
                    let chat = s.key.clone();
                    self.open_turn(&chat, request_id, trace_id.as_deref(), seq);
                }
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
            EventBody::ReadReceipt {
                user_id,
                message_ids,
                read_at,
                ..
            } => {
                for id in message_ids {
                    self.receipts
                        .insert((user_id.clone(), id.clone()), *read_at);
                }
            }
            EventBody::MessageSuperseded {
                message_id,
                request_id,
                context_seq,
                ..
            } => {
                // The reply and its turn's tool events leave history together.
                for e in &self.events {
                    let hit = match &e.body {
                        EventBody::AssistantMessage { message_id: m, .. }
                        | EventBody::TurnFailed { message_id: m, .. }
                        | EventBody::ToolCall { message_id: m, .. }
                        | EventBody::ToolResult { message_id: m, .. } => m == message_id,
                        _ => false,
                    };
                    if hit {
                        self.superseded.insert(e.seq);
                    }
                }
                let chat = s.key.clone();
                self.open_turn(&chat, request_id, None, context_seq.unwrap_or(seq));
            }
            EventBody::AssistantMessage { request_id, .. }
            | EventBody::TurnFailed { request_id, .. } => {
                self.turns.retain(|t| t.request_id != *request_id);
            }
            EventBody::HumanAgentRequested { handoff, .. }
            | EventBody::HumanAgentJoined { handoff, .. }
            | EventBody::HumanAgentLeft { handoff, .. } => {
                s.waiting_since = handoff.waiting_since;
                s.human_agents = handoff.agents.clone();
            }
            EventBody::ReactionAdded {
                message_id,
                reactions,
                ..
            }
            | EventBody::ReactionRemoved {
                message_id,
                reactions,
                ..
            } => {
                if reactions.is_empty() {
                    self.reactions.remove(message_id);
                } else {
                    self.reactions.insert(message_id.clone(), reactions.clone());
                }
            }
            EventBody::CsatSubmitted {
                user_id,
                rating,
                comment,
                ..
            } => {
                s.csat = Some(Csat {
                    user_id: user_id.clone(),
                    rating: *rating,
                    comment: comment.clone(),
                    submitted_at: event.created_at,
                });
            }
            EventBody::ChatCreated { .. }
            | EventBody::ToolCall { .. }
            | EventBody::ToolResult { .. } => {}
        }
        self.events.push(event.clone());
        event
    }

    /// Refuses a write `guard` does not allow.
    fn check(&self, chat: &ChatKey, guard: &Guard) -> Result<(), StoreError> {
        match guard {
            Guard::None => Ok(()),
            Guard::Fence(held) => self.check_fence(chat, *held),
            Guard::Queued(request_id) => match self.turn(request_id) {
                Some(t) if t.started_fence.is_none() => Ok(()),
                _ => Err(StoreError::NotQueued {
                    chat: chat.to_string(),
                    request_id: request_id.clone(),
                }),
            },
        }
    }

    fn check_fence(&self, chat: &ChatKey, held: u64) -> Result<(), StoreError> {
        if held == self.fence {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                chat: chat.to_string(),
                held,
                current: self.fence,
            })
        }
    }

    /// The events after `after` (a `seq`), oldest first.
    fn after(&self, after: u64) -> &[StoredEvent] {
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        self.events.get(start..).unwrap_or(&[])
    }
}

/// Where creation times and epochs come from.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The wall clock and random epochs.
    Wall,
    /// A fixed time and counted epochs: runs that must not depend on the outside.
    Fixed(i64),
}

/// The [`Store`] contract in memory (see the module docs).
pub struct MemoryStore {
    state: Mutex<State>,
    clock: Clock,
}

#[derive(Default)]
struct State {
    chats: BTreeMap<ChatKey, Chat>,
    /// Epochs handed out (for [`MemoryStore::with_fixed_clock`]).
    epochs: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store: chats are created at the wall clock's time, with random epochs.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock: Clock::Wall,
        }
    }

    /// An empty store whose chats are all created at `now` (Unix ms) and whose epochs count
    /// up from 1 (as 32 hex digits): runs that must not depend on the wall clock or on
    /// randomness, such as the fuzzer's. Epochs are still never reused within the store.
    pub fn with_fixed_clock(now: i64) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock: Clock::Fixed(now),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-written chat (every write is one
        // `push` after all checks), so the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When user `user_id` read message `message_id` (the latest receipt), if they did.
    pub fn read_at(&self, chat: &ChatKey, user_id: &str, message_id: &str) -> Option<i64> {
        self.lock()
            .chats
            .get(chat)?
            .receipts
            .get(&(user_id.to_owned(), message_id.to_owned()))
            .copied()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn open_chat(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<Option<ChatInfo>, StoreError> {
        let mut state = self.lock();
        if let Some(c) = state.chats.get(chat) {
            return Ok(Some(c.info()));
        }
        let Some(new) = create else {
            return Ok(None);
        };
        let (now, epoch) = match self.clock {
            Clock::Wall => (
                natter_protocol::time::now_millis(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            Clock::Fixed(now) => {
                state.epochs += 1;
                (now, format!("{:032x}", state.epochs))
            }
        };
        let members = new.members.clone().filter(|m| !m.is_empty());
        let mut c = Chat {
            summary: ChatSummary {
                key: chat.clone(),
                title: None,
                pinned: false,
                status: ChatStatus::Active,
                created_by: new.created_by.clone(),
                metadata: new.metadata.clone(),
                created_at: now,
                updated_at: now,
                head_seq: 0,
                epoch,
                members: members.clone(),
                waiting_since: None,
                human_agents: Vec::new(),
                csat: None,
            },
            events: Vec::new(),
            keys: HashMap::new(),
            superseded: HashSet::new(),
            posters: new.created_by.iter().cloned().collect(),
            receipts: BTreeMap::new(),
            reactions: HashMap::new(),
            turns: Vec::new(),
            fence: 0,
            attachments: Vec::new(),
        };
        c.push(StoredEvent {
            seq: 1,
            created_at: now,
            body: EventBody::ChatCreated {
                created_by: new.created_by.clone(),
                metadata: new.metadata.clone(),
                members,
            },
        });
        let info = c.info();
        state.chats.insert(chat.clone(), c);
        Ok(Some(info))
    }

    // A span per append (a child of the request's or turn's span, exported with
    // --otlp-endpoint).
    #[tracing::instrument(name = "store.append", skip_all, fields(chatId = %chat.chat_id))]
    async fn append_guarded(
        &self,
        chat: &ChatKey,
        body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        let mut state = self.lock();
        let c = state
            .chats
            .get_mut(chat)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))?;
        if let Some(&seq) = body.idempotency_key().and_then(|k| c.keys.get(k))
            && let Some(e) = seq.checked_sub(1).and_then(|i| c.events.get(i as usize))
        {
            return Ok(Appended::Duplicate(e.clone()));
        }
        c.check(chat, &guard)?;
        let event = StoredEvent {
            seq: c.summary.head_seq + 1,
            created_at,
            body,
        };
        Ok(Appended::New(c.push(event)))
    }

    async fn events_after(
        &self,
        chat: &ChatKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .lock()
            .chats
            .get(chat)
            .map(|c| c.after(after).iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn recent_messages(
        &self,
        chat: &ChatKey,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.lock();
        let Some(c) = state.chats.get(chat) else {
            return Ok(Vec::new());
        };
        let end = usize::try_from(up_to)
            .unwrap_or(usize::MAX)
            .min(c.events.len());
        let mut out: Vec<StoredEvent> = c.events[..end]
            .iter()
            .rev()
            .filter(|e| e.body.is_message() && !c.superseded.contains(&e.seq))
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
        let state = self.lock();
        let Some(c) = state.chats.get(chat) else {
            return Ok(Vec::new());
        };
        Ok(c.after(after)
            .iter()
            .filter(|e| {
                !c.superseded.contains(&e.seq)
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
        Ok(self.lock().chats.get(chat).and_then(|c| {
            c.events
                .iter()
                .find(|e| e.body.message_id() == Some(message_id))
                .cloned()
        }))
    }

    async fn chat_summary(&self, chat: &ChatKey) -> Result<Option<ChatSummary>, StoreError> {
        Ok(self.lock().chats.get(chat).map(|c| c.summary.clone()))
    }

    async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let state = self.lock();
        let mut page: Vec<&ChatSummary> = state
            .chats
            .values()
            .filter(|c| &*c.summary.key.org == org)
            .filter(|c| match scope {
                ChatScope::Org => true,
                ChatScope::Member(user) => c.posters.contains(&**user),
            })
            .map(|c| &c.summary)
            .collect();
        page.sort_by(|a, b| {
            (b.pinned, b.updated_at)
                .cmp(&(a.pinned, a.updated_at))
                .then_with(|| a.key.chat_id.cmp(&b.key.chat_id))
        });
        Ok(ChatPage {
            total: page.len() as u64,
            chats: page.into_iter().skip(offset).take(limit).cloned().collect(),
        })
    }

    async fn list_waiting_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        let state = self.lock();
        let mut page: Vec<&ChatSummary> = state
            .chats
            .values()
            .filter(|c| &*c.summary.key.org == org && c.summary.waiting_since.is_some())
            .filter(|c| match scope {
                ChatScope::Org => true,
                ChatScope::Member(user) => c.posters.contains(&**user),
            })
            .map(|c| &c.summary)
            .collect();
        page.sort_by(|a, b| {
            a.waiting_since
                .cmp(&b.waiting_since)
                .then_with(|| a.key.chat_id.cmp(&b.key.chat_id))
        });
        Ok(ChatPage {
            total: page.len() as u64,
            chats: page.into_iter().skip(offset).take(limit).cloned().collect(),
        })
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        Ok(self.lock().chats.remove(chat).is_some())
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        Ok(self
            .lock()
            .chats
            .get(chat)
            .map(|c| c.turns.clone())
            .unwrap_or_default())
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        let mut chats: Vec<ChatKey> = self
            .lock()
            .chats
            .iter()
            .filter(|(_, c)| !c.turns.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        fastrand::shuffle(&mut chats);
        chats.truncate(limit);
        Ok(chats)
    }

    async fn request_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        trace_id: Option<&str>,
        context_seq: u64,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let c = state
            .chats
            .get_mut(chat)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))?;
        c.open_turn(chat, request_id, trace_id, context_seq);
        Ok(())
    }

    async fn claim_turns(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let c = state
            .chats
            .get_mut(chat)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))?;
        c.fence += 1;
        Ok(c.fence)
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let c = state
            .chats
            .get_mut(chat)
            .ok_or_else(|| StoreError::NoSuchChat(chat.to_string()))?;
        c.check_fence(chat, fence)?;
        match c
            .turns
            .iter_mut()
            .find(|t| t.request_id == request_id && t.started_fence.is_none())
        {
            Some(t) => {
                t.started_fence = Some(fence);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<Reaction>)>, StoreError> {
        let state = self.lock();
        let Some(c) = state.chats.get(chat) else {
            return Ok(Vec::new());
        };
        Ok(message_ids
            .iter()
            .filter_map(|id| c.reactions.get(id).map(|l| (id.clone(), l.clone())))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_attachment(
        &self,
        attachment: &Attachment,
        bytes: &[u8],
        quota: Option<u64>,
    ) -> Result<PutAttachment, StoreError> {
        let mut state = self.lock();
        let chat = state
            .chats
            .get_mut(&attachment.chat)
            .ok_or_else(|| StoreError::NoSuchChat(attachment.chat.to_string()))?;
        if let Some(a) = chat
            .attachments
            .iter()
            .find(|a| a.meta.sha256 == attachment.sha256)
        {
            return Ok(PutAttachment::Duplicate(a.meta.clone()));
        }
        let used: u64 = chat.attachments.iter().map(|a| a.meta.size).sum();
        if let Some(q) = quota
            && used + bytes.len() as u64 > q
        {
            return Ok(PutAttachment::OverQuota { used });
        }
        let mut meta = attachment.clone();
        meta.size = bytes.len() as u64;
        chat.attachments.push(StoredAttachment {
            meta: meta.clone(),
            bytes: bytes.to_vec(),
            text: None,
        });
        Ok(PutAttachment::Stored(meta))
    }

    async fn attachment(&self, org: &str, id: &str) -> Result<Option<Attachment>, StoreError> {
        Ok(self.with_attachment(org, id, |a| a.meta.clone()))
    }

    async fn attachment_bytes(&self, org: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with_attachment(org, id, |a| a.bytes.clone()))
    }

    async fn attachment_text(&self, org: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with_attachment(org, id, |a| a.text.clone()).flatten())
    }

    async fn set_attachment_processing(
        &self,
        org: &str,
        id: &str,
        processing: &Processing,
        text: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        for (key, chat) in state.chats.iter_mut() {
            if &*key.org != org {
                continue;
            }
            if let Some(a) = chat.attachments.iter_mut().find(|a| a.meta.id == id) {
                a.meta.processing = processing.clone();
                a.text = text.map(str::to_owned);
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn attachments_processing(&self, limit: usize) -> Result<Vec<Attachment>, StoreError> {
        let state = self.lock();
        let mut all: Vec<Attachment> = state
            .chats
            .values()
            .flat_map(|c| c.attachments.iter())
            .filter(|a| a.meta.processing == Processing::Processing)
            .map(|a| a.meta.clone())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all.truncate(limit);
        Ok(all)
    }

    async fn mark_attachments_referenced(
        &self,
        chat: &ChatKey,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if let Some(c) = self.lock().chats.get_mut(chat) {
            for a in c.attachments.iter_mut() {
                if ids.contains(&a.meta.id) {
                    a.meta.referenced = true;
                }
            }
        }
        Ok(())
    }

    async fn delete_orphan_attachments(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let mut left = limit;
        for chat in state.chats.values_mut() {
            chat.attachments.retain(|a| {
                let orphan = !a.meta.referenced && a.meta.created_at < created_before;
                if orphan && left > 0 {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
        }
        Ok((limit - left) as u64)
    }

    async fn chat_attachment_bytes(&self, chat: &ChatKey) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .chats
            .get(chat)
            .map(|c| c.attachments.iter().map(|a| a.meta.size).sum())
            .unwrap_or(0))
    }
}

impl MemoryStore {
    /// `f` of attachment `id` in a chat of `org`.
    fn with_attachment<T>(
        &self,
        org: &str,
        id: &str,
        f: impl FnOnce(&StoredAttachment) -> T,
    ) -> Option<T> {
        let state = self.lock();
        state
            .chats
            .iter()
            .filter(|(k, _)| &*k.org == org)
            .find_map(|(_, c)| c.attachments.iter().find(|a| a.meta.id == id))
            .map(f)
    }
}
