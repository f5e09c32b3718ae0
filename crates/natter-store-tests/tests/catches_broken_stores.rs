//! The suite has teeth: `MemoryStore` with one bug planted at a time must fail it, in the case
//! that guards against that bug.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::chat::{ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, NewChat};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Guard, OpenTurn, Store, StoreError};
use natter_core::store_memory::MemoryStore;

#[derive(Clone, Copy, Debug)]
enum Bug {
    /// `Guard::Fence` is not checked.
    IgnoresFence,
    /// The fence is checked, then the event appended in a second step.
    ChecksFenceBeforeAppending,
    /// `Guard::Queued` is not checked.
    IgnoresQueued,
    /// `start_turn` answers a stale fence with `Ok(false)`.
    StartTurnHidesFenced,
    /// `claim_turns` raises the fence by two.
    ClaimsByTwo,
    /// User messages are never duplicates.
    NoIdempotency,
    /// `open_turns` in `opened_seq` order, ties by request id instead of the order asked.
    TurnsTiedByRequestId,
    /// `chats_with_open_turns` names a chat once per open turn.
    ChatPerTurn,
    /// `events_after` skips the second event it would return.
    HoleInReads,
    /// `list_chats` breaks ties by chat id descending.
    ListTieDescending,
    /// `messages_after` leaves out tool events.
    NoToolEventsInHistory,
    /// `list_waiting_chats` lists the newest wait first.
    WaitingNewestFirst,
}

struct Broken {
    inner: MemoryStore,
    bug: Bug,
    unique: AtomicU64,
}

#[async_trait]
impl Store for Broken {
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
        mut body: EventBody,
        created_at: i64,
        guard: Guard,
    ) -> Result<Appended, StoreError> {
        let guard = match (self.bug, guard) {
            (Bug::IgnoresFence, Guard::Fence(_)) => Guard::None,
            (Bug::IgnoresQueued, Guard::Queued(_)) => Guard::None,
            (Bug::ChecksFenceBeforeAppending, Guard::Fence(n)) => {
                // A fence check that writes nothing: start a turn that does not exist.
                self.inner.start_turn(chat, "\u{0}probe", n).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
                Guard::None
            }
            (_, guard) => guard,
        };
        if let (Bug::NoIdempotency, EventBody::UserMessage { message_id, .. }) =
            (self.bug, &mut body)
        {
            message_id.push_str(&format!("#{}", self.unique.fetch_add(1, Ordering::Relaxed)));
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
        let mut got = self.inner.events_after(chat, after, limit).await?;
        if matches!(self.bug, Bug::HoleInReads) && got.len() > 2 {
            got.remove(1);
        }
        Ok(got)
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
        let mut got = self.inner.messages_after(chat, after, limit).await?;
        if matches!(self.bug, Bug::NoToolEventsInHistory) {
            got.retain(|e| e.body.is_message());
        }
        Ok(got)
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
        if !matches!(self.bug, Bug::ListTieDescending) {
            return self.inner.list_chats(org, scope, limit, offset).await;
        }
        let mut all = self.inner.list_chats(org, scope, usize::MAX, 0).await?;
        all.chats.sort_by(|a, b| {
            (b.pinned, b.updated_at, &b.key.chat_id).cmp(&(a.pinned, a.updated_at, &a.key.chat_id))
        });
        all.chats = all.chats.into_iter().skip(offset).take(limit).collect();
        Ok(all)
    }

    async fn list_waiting_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, StoreError> {
        if !matches!(self.bug, Bug::WaitingNewestFirst) {
            return self
                .inner
                .list_waiting_chats(org, scope, limit, offset)
                .await;
        }
        let mut all = self
            .inner
            .list_waiting_chats(org, scope, usize::MAX, 0)
            .await?;
        all.chats.reverse();
        all.chats = all.chats.into_iter().skip(offset).take(limit).collect();
        Ok(all)
    }

    async fn delete_chat(&self, chat: &ChatKey) -> Result<bool, StoreError> {
        self.inner.delete_chat(chat).await
    }

    async fn open_turns(&self, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        let mut turns = self.inner.open_turns(chat).await?;
        if matches!(self.bug, Bug::TurnsTiedByRequestId) {
            turns.sort_by(|a, b| (a.opened_seq, &a.request_id).cmp(&(b.opened_seq, &b.request_id)));
        }
        Ok(turns)
    }

    async fn chats_with_open_turns(&self, limit: usize) -> Result<Vec<ChatKey>, StoreError> {
        let chats = self.inner.chats_with_open_turns(limit).await?;
        if !matches!(self.bug, Bug::ChatPerTurn) {
            return Ok(chats);
        }
        let mut out = Vec::new();
        for chat in chats {
            for _ in self.inner.open_turns(&chat).await? {
                out.push(chat.clone());
            }
        }
        out.truncate(limit);
        Ok(out)
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
        if matches!(self.bug, Bug::ClaimsByTwo) {
            self.inner.claim_turns(chat).await?;
        }
        self.inner.claim_turns(chat).await
    }

    async fn start_turn(
        &self,
        chat: &ChatKey,
        request_id: &str,
        fence: u64,
    ) -> Result<bool, StoreError> {
        match self.inner.start_turn(chat, request_id, fence).await {
            Err(StoreError::Fenced { .. }) if matches!(self.bug, Bug::StartTurnHidesFenced) => {
                Ok(false)
            }
            r => r,
        }
    }

    async fn reactions(
        &self,
        chat: &ChatKey,
        message_ids: &[String],
    ) -> Result<Vec<(String, Vec<natter_core::event::Reaction>)>, StoreError> {
        self.inner.reactions(chat, message_ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Runs the suite on stores with `bug`; it must fail, naming `case` among the broken ones.
async fn must_catch(bug: Bug, case: &str) {
    let run = tokio::spawn(natter_store_tests::run_all(move || async move {
        Arc::new(Broken {
            inner: MemoryStore::new(),
            bug,
            unique: AtomicU64::new(0),
        }) as Arc<dyn Store>
    }));
    let Err(e) = run.await else {
        panic!("the suite passed a store with bug {bug:?}");
    };
    let panic = e.into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.lines().any(|l| l.starts_with(&format!("{case}: "))),
        "bug {bug:?} must break case {case}; the suite said:\n{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_catches_planted_bugs() {
    for (bug, case) in [
        (Bug::IgnoresFence, "fencing_refuses_stale_owners"),
        (
            Bug::ChecksFenceBeforeAppending,
            "fencing_is_atomic_with_the_append",
        ),
        (Bug::IgnoresQueued, "start_turn_and_queued_guard"),
        (Bug::StartTurnHidesFenced, "start_turn_and_queued_guard"),
        (Bug::ClaimsByTwo, "fencing_refuses_stale_owners"),
        (
            Bug::NoIdempotency,
            "idempotency_under_concurrent_duplicates",
        ),
        (
            Bug::TurnsTiedByRequestId,
            "turn_queue_request_turn_and_order",
        ),
        (Bug::ChatPerTurn, "chats_with_open_turns_finds_every_queue"),
        (Bug::HoleInReads, "visibility_has_no_holes_for_readers"),
        (Bug::ListTieDescending, "list_chats_orders_scopes_and_pages"),
        (
            Bug::NoToolEventsInHistory,
            "superseded_messages_leave_history",
        ),
        (Bug::WaitingNewestFirst, "handoff_state_follows_the_log"),
    ] {
        must_catch(bug, case).await;
    }
}
