//! A turn cut by a crash of the server ends at the next start, with `ai:error` code
//! `interrupted`: the core over the real SQLite store, the crash being the loss of every task
//! of the first run (its Tokio runtime is dropped mid-turn).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::bus_memory::MemoryBus;
use natter_core::event::{EventBody, StoredEvent};
use natter_core::feed::{Feed, FeedItem};
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream,
};
use natter_core::store::Store;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, JoinRequest, Source, UserMessageInput};
use natter_store_sqlite::{Durability, SqliteStore};

/// Streams one token; then either never finishes (a reply still being written) or finishes.
struct OneToken {
    finishes: bool,
}

#[async_trait]
impl Provider for OneToken {
    fn name(&self) -> &str {
        "one-token"
    }

    async fn stream(&self, _: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let first = futures::stream::iter([Ok(ProviderEvent::TextDelta("he".into()))]);
        if self.finishes {
            let end = futures::stream::iter([Ok(ProviderEvent::Finish("stop".into()))]);
            Ok(Box::pin(futures::StreamExt::chain(first, end)))
        } else {
            Ok(Box::pin(futures::StreamExt::chain(
                first,
                futures::stream::pending(),
            )))
        }
    }
}

async fn start(dir: &Path, finishes: bool) -> (ChatCore, Arc<SqliteStore>) {
    let url = format!("sqlite://{}/natter.db", dir.display());
    let store = Arc::new(SqliteStore::open(&url, Durability::Normal).await.unwrap());
    let core = ChatCore::new(
        CoreConfig {
            merge_delta_bytes: 0,
            ..CoreConfig::default()
        },
        store.clone(),
        Arc::new(MemoryBus::new(64)),
        Arc::new(MemoryPresence::default()),
        Arc::new(OneToken { finishes }),
    );
    (core, store)
}

fn message(id: &str, request_id: &str) -> UserMessageInput {
    UserMessageInput {
        message_id: id.into(),
        text: "hi".into(),
        parts: None,
        request_id: Some(request_id.into()),
        trace_id: Some(format!("trace-{request_id}")),
        tools: Vec::new(),
        attachments: Vec::new(),
    }
}

async fn next(feed: &mut Feed) -> FeedItem {
    tokio::time::timeout(Duration::from_secs(10), feed.next())
        .await
        .expect("nothing arrived in 10 s")
        .expect("the feed ended")
}

/// The ends of turns (`AssistantMessage` or `TurnFailed`) in the chat's log.
async fn turn_ends(store: &SqliteStore, chat: &ChatKey) -> Vec<StoredEvent> {
    store
        .events_after(chat, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.body.ends_turn().is_some())
        .collect()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-crash-turn-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_turn_cut_by_a_crash_ends_as_interrupted_at_the_next_start() {
    let dir = tempdir();
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let from = Source::new(Some("conn-1".into()), None);

    // First run: the turn streams a token, then the process "dies".
    let first_run = runtime();
    first_run.block_on(async {
        let (core, _store) = start(&dir, false).await;
        let mut feed = core
            .join(&who, &"conn-1".into(), &chat, JoinRequest::default())
            .await
            .unwrap()
            .feed;
        core.post_user_message(&who, &from, &chat, message("m1", "r1"))
            .await
            .unwrap();
        loop {
            if let FeedItem::Tokens { turn, .. } = next(&mut feed).await {
                assert_eq!(&*turn.request_id, "r1");
                break;
            }
        }
    });
    // Every task of the run stops where it is: the turn never stores its end.
    first_run.shutdown_timeout(Duration::from_secs(1));

    let second_run = runtime();
    second_run.block_on(async {
        // Looked at before the core starts (its constructor starts ending turns at once).
        let url = format!("sqlite://{}/natter.db", dir.display());
        let before = SqliteStore::open(&url, Durability::Normal).await.unwrap();
        assert!(
            turn_ends(&before, &chat).await.is_empty(),
            "the first run stored no end"
        );
        let open = before.open_turns(&chat).await.unwrap();
        assert_eq!(open.len(), 1, "the cut turn is still open");
        // One node marks starts in memory only (see the scheduler's module docs): the store
        // holds the turn as queued, and the restart ends it as interrupted all the same.
        assert!(open[0].started_fence.is_none(), "and not marked started");
        drop(before);
        let (core, store) = start(&dir, true).await;
        let info = core.open_chat(&who, &chat, None).await.unwrap();
        // A member who saw the user message rejoins from there, as a client would.
        let joined = core
            .join(
                &who,
                &"conn-2".into(),
                &chat,
                JoinRequest {
                    last_seq: Some(2),
                    epoch: Some(info.epoch.clone()),
                    members: None,
                    agent_id: None,
                },
            )
            .await
            .unwrap();
        let mut feed = joined.feed;

        // Done once: by the constructor's task, which the join above waited for.
        assert_eq!(core.end_interrupted_turns().await.unwrap(), 1);
        assert_eq!(core.end_interrupted_turns().await.unwrap(), 1);
        let ends = turn_ends(&store, &chat).await;
        assert_eq!(ends.len(), 1, "exactly one end: {ends:?}");
        match &ends[0].body {
            EventBody::TurnFailed {
                request_id,
                code,
                retryable,
                partial_text,
                trace_id,
                ..
            } => {
                assert_eq!(request_id, "r1");
                assert_eq!(code, "interrupted");
                assert!(retryable);
                assert_eq!(partial_text, "");
                assert_eq!(trace_id.as_deref(), Some("trace-r1"));
            }
            other => panic!("not a failed turn: {other:?}"),
        }
        // The join waited for it: the member's replay holds it (once), after the message.
        let replayed: Vec<u64> = joined.replay.iter().map(|e| e.seq).collect();
        assert_eq!(
            replayed,
            vec![ends[0].seq],
            "the replay after the message is its end"
        );
        assert!(store.open_turns(&chat).await.unwrap().is_empty());

        // A new message gets a normal reply, and the new turn is not taken for interrupted.
        core.post_user_message(&who, &from, &chat, message("m2", "r2"))
            .await
            .unwrap();
        loop {
            if let FeedItem::Durable(e) = next(&mut feed).await
                && let EventBody::AssistantMessage {
                    request_id, text, ..
                } = &e.body
            {
                assert_eq!(request_id, "r2");
                assert_eq!(text, "he");
                break;
            }
        }
        assert_eq!(turn_ends(&store, &chat).await.len(), 2);
        core.shutdown(Duration::from_secs(1)).await;
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// A restart after a clean run (every turn ended) ends nothing.
#[tokio::test]
async fn a_clean_restart_ends_nothing() {
    let dir = tempdir();
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let from = Source::new(Some("conn-1".into()), None);
    {
        let (core, store) = start(&dir, true).await;
        let mut feed = core
            .join(&who, &"conn-1".into(), &chat, JoinRequest::default())
            .await
            .unwrap()
            .feed;
        core.post_user_message(&who, &from, &chat, message("m1", "r1"))
            .await
            .unwrap();
        loop {
            if let FeedItem::Durable(e) = next(&mut feed).await
                && e.body.ends_turn().is_some()
            {
                break;
            }
        }
        assert_eq!(turn_ends(&store, &chat).await.len(), 1);
        core.shutdown(Duration::from_secs(1)).await;
    }
    let (core, store) = start(&dir, true).await;
    assert_eq!(core.end_interrupted_turns().await.unwrap(), 0);
    assert_eq!(turn_ends(&store, &chat).await.len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}
