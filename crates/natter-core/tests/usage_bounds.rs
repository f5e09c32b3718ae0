//! Counts and durations at their limits: usage summed over tool steps saturates instead of
//! overflowing (a panic in debug builds), and a turn timeout too long to add to the clock
//! does not panic either.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::Source;
use natter_core::bus_memory::MemoryBus;
use natter_core::event::{EventBody, Usage};
use natter_core::feed::FeedItem;
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream, Role, ToolCall,
    ToolSpec,
};
use natter_core::store_memory::MemoryStore;
use natter_core::tools::{Tool, ToolRegistry};
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, JoinRequest, UserMessageInput};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const HUGE: Usage = Usage {
    prompt_tokens: u64::MAX - 1,
    completion_tokens: u64::MAX - 1,
    total_tokens: u64::MAX - 1,
};

/// Calls `noop` first, then answers; each step reports its usage after its `Finish`, as
/// OpenAI-compatible servers do. The first step's counts are near `u64::MAX`.
struct HugeUsage;

#[async_trait]
impl Provider for HugeUsage {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let events = if req.messages.last().is_some_and(|m| m.role == Role::Tool) {
            vec![
                ProviderEvent::TextDelta("done".into()),
                ProviderEvent::Finish("stop".into()),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 5,
                    total_tokens: 10,
                }),
            ]
        } else {
            vec![
                ProviderEvent::ToolCall(ToolCall {
                    id: "call-1".into(),
                    name: "noop".into(),
                    arguments: "{}".into(),
                }),
                ProviderEvent::Finish("tool_calls".into()),
                ProviderEvent::Usage(HUGE),
            ]
        };
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

struct Noop;

#[async_trait]
impl Tool for Noop {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "noop".into(),
            description: "Does nothing".into(),
            parameters: json!({"type": "object"}),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn run(&self, _input: Value, _cancel: CancellationToken) -> Result<Value, String> {
        Ok(json!("ok"))
    }
}

#[tokio::test]
async fn usage_over_tool_steps_saturates_and_a_huge_timeout_is_harmless() {
    let mut tools = ToolRegistry::default();
    tools.register(Arc::new(Noop));
    let core = ChatCore::with_tools(
        CoreConfig {
            // Instant::now() + Duration::MAX overflows: the turn must still run.
            turn_timeout: Duration::MAX,
            ..CoreConfig::default()
        },
        Arc::new(MemoryStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(HugeUsage),
        tools,
    );
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let conn: Arc<str> = "conn-1".into();
    let mut feed = core
        .join(&who, &conn, &chat, JoinRequest::default())
        .await
        .unwrap()
        .feed;
    let input = UserMessageInput {
        message_id: "m1".into(),
        text: "go".into(),
        parts: None,
        request_id: Some("r1".into()),
        trace_id: None,
        tools: Vec::new(),
        attachments: Vec::new(),
    };
    core.post_user_message(&who, &Source::default(), &chat, input)
        .await
        .unwrap();

    let end = loop {
        let item = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the turn ended in time")
            .expect("the feed goes on");
        if let FeedItem::Durable(e) = item
            && e.body.ends_turn().is_some()
        {
            break e.body.clone();
        }
    };
    match end {
        EventBody::AssistantMessage { text, usage, .. } => {
            assert_eq!(text, "done");
            assert_eq!(
                usage,
                Some(Usage {
                    prompt_tokens: u64::MAX,
                    completion_tokens: u64::MAX,
                    total_tokens: u64::MAX,
                })
            );
        }
        other => panic!("the turn did not end in a message: {other:?}"),
    }
}
