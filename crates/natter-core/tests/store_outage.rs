//! A turn whose end cannot be stored still ends for every member, once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::Source;
use natter_core::bus::Bus;
use natter_core::bus_memory::MemoryBus;
use natter_core::event::{EventBody, LiveEvent};
use natter_core::feed::FeedItem;
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream,
};
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, JoinRequest, UserMessageInput};

mod common;
use common::LogStore;

/// Streams "he", "llo", then finishes.
struct TwoTokens;

#[async_trait]
impl Provider for TwoTokens {
    fn name(&self) -> &str {
        "two-tokens"
    }

    async fn stream(&self, _: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let events = ["he", "llo"]
            .into_iter()
            .map(|t| Ok(ProviderEvent::TextDelta(t.into())))
            .chain([Ok(ProviderEvent::Finish("stop".into()))]);
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

#[tokio::test]
async fn the_turn_ends_live_when_its_end_cannot_be_stored() {
    let store = Arc::new(LogStore::default());
    let bus = Arc::new(MemoryBus::new(64));
    let core = ChatCore::new(
        CoreConfig {
            merge_delta_bytes: 0,
            ..CoreConfig::default()
        },
        store.clone(),
        bus.clone(),
        Arc::new(MemoryPresence::default()),
        Arc::new(TwoTokens),
    );
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let conn: Arc<str> = "conn-1".into();
    let mut feed = core
        .join(&who, &conn, &chat, JoinRequest::default())
        .await
        .unwrap()
        .feed;
    store.fail_turn_ends.store(true, Ordering::Relaxed);
    let input = UserMessageInput {
        message_id: "m1".into(),
        text: "hi".into(),
        parts: None,
        request_id: Some("r1".into()),
        trace_id: None,
        tools: Vec::new(),
        attachments: Vec::new(),
    };
    core.post_user_message(&who, &Source::new(Some(conn.clone()), None), &chat, input)
        .await
        .unwrap();

    let mut tokens = String::new();
    let ended = loop {
        // finish() retries the store for ~3 s before giving up.
        let item = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the turn never ended")
            .expect("the feed ended");
        match item {
            FeedItem::Tokens { text, .. } => tokens.push_str(&text),
            FeedItem::Live(LiveEvent::TurnEndUnstored { turn, end }) => match *end {
                EventBody::TurnFailed {
                    code, partial_text, ..
                } => break (turn, code, partial_text),
                other => panic!("the unstored end is not a failed turn: {other:?}"),
            },
            FeedItem::Durable(e) => {
                assert!(e.body.ends_turn().is_none(), "nothing was stored: {e:?}")
            }
            FeedItem::Live(_) => {}
        }
    };
    assert_eq!(tokens, "hello");
    assert_eq!(&*ended.0.request_id, "r1");
    assert_eq!(ended.1, "unavailable");
    assert_eq!(ended.2, "hello");
    assert!(
        bus.running_turn(&chat).await.unwrap().is_none(),
        "the turn's token buffer is gone"
    );
}
