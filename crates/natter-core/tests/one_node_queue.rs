//! One node keeps an active chat's turn queue in memory (scheduler module docs): a turn costs
//! the store its two events and nothing else, and aborting a queued turn still races nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::bus_memory::MemoryBus;
use natter_core::event::EventBody;
use natter_core::feed::{Feed, FeedItem};
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream,
};
use natter_core::store::Store;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, JoinRequest, Source, UserMessageInput};
use tokio::sync::Semaphore;

mod common;
use common::LogStore;

/// Answers "ok" once a permit is given (all at once with `Gate::open`), counting calls.
struct Gate {
    permits: Arc<Semaphore>,
    calls: AtomicUsize,
}

impl Gate {
    fn open() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            calls: AtomicUsize::new(0),
        }
    }

    fn closed() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Provider for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn stream(&self, _: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let permits = self.permits.clone();
        let reply = async move {
            if let Ok(permit) = permits.acquire().await {
                permit.forget();
            }
            futures::stream::iter([
                Ok(ProviderEvent::TextDelta("ok".into())),
                Ok(ProviderEvent::Finish("stop".into())),
            ])
        };
        Ok(Box::pin(futures::stream::once(reply).flatten()))
    }
}

use futures::StreamExt;

struct Chat {
    core: ChatCore,
    store: Arc<LogStore>,
    who: Identity,
    chat: ChatKey,
    conn: Arc<str>,
    feed: Feed,
}

async fn one_node(provider: Arc<dyn Provider>) -> Chat {
    let store = Arc::new(LogStore::default());
    let core = ChatCore::new(
        CoreConfig::default(),
        store.clone(),
        Arc::new(MemoryBus::new(64)),
        Arc::new(MemoryPresence::default()),
        provider,
    );
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let conn: Arc<str> = "conn-1".into();
    let feed = core
        .join(&who, &conn, &chat, JoinRequest::default())
        .await
        .expect("join")
        .feed;
    Chat {
        core,
        store,
        who,
        chat,
        conn,
        feed,
    }
}

impl Chat {
    async fn send(&self, n: usize) {
        let input = UserMessageInput {
            message_id: format!("m{n}"),
            text: format!("hi {n}"),
            parts: None,
            request_id: Some(format!("r{n}")),
            trace_id: None,
            tools: Vec::new(),
            attachments: Vec::new(),
        };
        self.core
            .post_user_message(
                &self.who,
                &Source::new(Some(self.conn.clone()), None),
                &self.chat,
                input,
            )
            .await
            .expect("post");
    }

    /// The stored end of turn `request_id`: the finish reason, or the error code.
    async fn end_of(&mut self, request_id: &str) -> String {
        loop {
            let item = tokio::time::timeout(Duration::from_secs(10), self.feed.next())
                .await
                .unwrap_or_else(|_| panic!("turn {request_id} never ended"))
                .expect("the feed ended");
            if let FeedItem::Durable(event) = item {
                match &event.body {
                    EventBody::AssistantMessage {
                        request_id: r,
                        finish_reason,
                        ..
                    } if r == request_id => return finish_reason.clone(),
                    EventBody::TurnFailed {
                        request_id: r,
                        code,
                        ..
                    } if r == request_id => return code.clone(),
                    _ => {}
                }
            }
        }
    }
}

#[tokio::test]
async fn an_active_chats_turns_cost_the_store_only_their_events() {
    let mut c = one_node(Arc::new(Gate::open())).await;
    let appends_before = c.store.appends.load(Ordering::Relaxed);
    // The member's join read the queue once (the open turns it reports); counted from here.
    let reads_before = c.store.queue_reads.load(Ordering::Relaxed);
    assert_eq!(reads_before, 1, "the join's read");
    for n in 1..=5 {
        c.send(n).await;
        assert_eq!(c.end_of(&format!("r{n}")).await, "stop");
    }
    let s = &c.store;
    // The driver lingers between turns, so it loads its mirror of the queue once and claims
    // the chat's turns once; starts are marked in memory.
    assert_eq!(
        s.queue_reads.load(Ordering::Relaxed) - reads_before,
        1,
        "queue reads"
    );
    assert_eq!(s.claims.load(Ordering::Relaxed), 1, "claims");
    assert_eq!(s.start_marks.load(Ordering::Relaxed), 0, "start marks");
    assert_eq!(
        s.appends.load(Ordering::Relaxed) - appends_before,
        10,
        "a user message and a reply per turn"
    );
    // The store still closed every turn it opened.
    assert!(s.inner().open_turns(&c.chat).await.unwrap().is_empty());
}

#[tokio::test]
async fn aborting_a_queued_turn_ends_it_and_it_never_runs() {
    let gate = Arc::new(Gate::closed());
    let mut c = one_node(gate.clone()).await;
    c.send(1).await;
    c.send(2).await;
    c.send(3).await;
    // r1 runs (held by the gate); r2 and r3 wait behind it.
    tokio::time::timeout(Duration::from_secs(5), async {
        while gate.calls.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("r1 never started");
    let aborted = c
        .core
        .abort(&c.chat, Some("r2"), Some("changed my mind".into()))
        .await
        .expect("abort");
    assert_eq!(aborted, "r2");
    assert_eq!(c.end_of("r2").await, "aborted");
    gate.permits.add_permits(10);
    assert_eq!(c.end_of("r1").await, "stop");
    assert_eq!(c.end_of("r3").await, "stop");
    assert_eq!(
        gate.calls.load(Ordering::Relaxed),
        2,
        "r2 never reached the provider"
    );
    assert!(
        c.store
            .inner()
            .open_turns(&c.chat)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_turn_whose_end_was_not_stored_ends_as_interrupted_and_does_not_run_again() {
    let gate = Arc::new(Gate::open());
    let mut c = one_node(gate.clone()).await;
    c.store.fail_turn_ends.store(true, Ordering::Relaxed);
    c.send(1).await;
    // Told live (unavailable); finish() retries the store for ~3 s first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.store.fail_turn_ends.store(false, Ordering::Relaxed);
    c.send(2).await;
    assert_eq!(c.end_of("r1").await, "interrupted");
    assert_eq!(c.end_of("r2").await, "stop");
    assert_eq!(gate.calls.load(Ordering::Relaxed), 2, "r1 ran once");
    assert!(
        c.store
            .inner()
            .open_turns(&c.chat)
            .await
            .unwrap()
            .is_empty()
    );
}
