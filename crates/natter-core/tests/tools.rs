//! Turns that call tools: the step loop, validation, client waits, abort and timeouts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_core::Source;
use natter_core::bus_memory::MemoryBus;
use natter_core::event::EventBody;
use natter_core::feed::{Feed, FeedItem};
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream, Role, ToolCall,
    ToolSpec,
};
use natter_core::tools::{Tool, ToolRegistry};
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, JoinRequest, UserMessageInput};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod common;
use common::LogStore;

/// Calls tool `name` with `arguments` first; once it has a tool result, answers
/// "result: <content>" (the content the model was given).
struct CallsThenAnswers {
    name: &'static str,
    arguments: &'static str,
}

#[async_trait]
impl Provider for CallsThenAnswers {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let events = match req.messages.last() {
            Some(m) if m.role == Role::Tool => vec![
                ProviderEvent::TextDelta(format!("result: {}", m.content)),
                ProviderEvent::Finish("stop".into()),
            ],
            // The last step offers no tools: the model must answer in text.
            _ if req.tools.is_empty() => vec![
                ProviderEvent::TextDelta("no tools left".into()),
                ProviderEvent::Finish("stop".into()),
            ],
            _ => vec![
                ProviderEvent::TextDelta("Checking. ".into()),
                ProviderEvent::ToolCall(ToolCall {
                    id: "call-1".into(),
                    name: self.name.into(),
                    arguments: self.arguments.into(),
                }),
                ProviderEvent::Finish("tool_calls".into()),
            ],
        };
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

/// Upper-cases `text`; or, given `"wait": true`, runs until cancelled.
struct Upper;

#[async_trait]
impl Tool for Upper {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "upper".into(),
            description: "Upper-cases a text".into(),
            parameters: json!({
                "type": "object",
                "properties": {"text": {"type": "string"}, "wait": {"type": "boolean"}},
                "required": ["text"],
            }),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(300)
    }

    async fn run(&self, input: Value, cancel: CancellationToken) -> Result<Value, String> {
        if input["wait"] == json!(true) {
            cancel.cancelled().await;
            return Err("cancelled".into());
        }
        Ok(json!(input["text"].as_str().unwrap_or("").to_uppercase()))
    }
}

fn client_tool() -> ToolSpec {
    ToolSpec {
        name: "pick_color".into(),
        description: "Asks the user for a color".into(),
        parameters: json!({"type": "object"}),
    }
}

struct Setup {
    core: ChatCore,
    chat: ChatKey,
    who: Identity,
    feed: Feed,
}

async fn setup(provider: impl Provider, config: CoreConfig) -> Setup {
    let mut tools = ToolRegistry::default();
    tools.register(Arc::new(Upper));
    tools.declare_client(client_tool());
    let core = ChatCore::with_tools(
        CoreConfig {
            merge_delta_bytes: 0,
            ..config
        },
        Arc::new(LogStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(provider),
        tools,
    );
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let conn: Arc<str> = "conn-1".into();
    let feed = core
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
    Setup {
        core,
        chat,
        who,
        feed,
    }
}

/// The durable events of the turn, in order, until its end.
async fn durable_until_end(feed: &mut Feed) -> Vec<EventBody> {
    let mut out = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the turn ended in time")
            .expect("the feed goes on");
        if let FeedItem::Durable(e) = item {
            let end = e.body.ends_turn().is_some();
            out.push(e.body.clone());
            if end {
                return out;
            }
        }
    }
}

fn kinds(events: &[EventBody]) -> Vec<&'static str> {
    events.iter().map(EventBody::kind).collect()
}

fn reply_text(events: &[EventBody]) -> (String, String) {
    match events.last() {
        Some(EventBody::AssistantMessage {
            text,
            finish_reason,
            ..
        }) => (text.clone(), finish_reason.clone()),
        other => panic!("the turn did not end in a message: {other:?}"),
    }
}

/// A provider that cannot call tools (like the local model): it answers in text and
/// remembers whether it was offered any.
#[derive(Default)]
struct CannotCallTools {
    offered: Arc<std::sync::Mutex<Vec<usize>>>,
}

#[async_trait]
impl Provider for CannotCallTools {
    fn name(&self) -> &str {
        "textonly"
    }

    fn offers_tools(&self) -> bool {
        false
    }

    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        if let Ok(mut offered) = self.offered.lock() {
            offered.push(req.tools.len());
        }
        let events = [
            ProviderEvent::TextDelta("plain".into()),
            ProviderEvent::Finish("stop".into()),
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

#[tokio::test]
async fn a_provider_that_cannot_call_tools_is_not_offered_them_and_the_reply_says_so() {
    let provider = CannotCallTools::default();
    let offered = provider.offered.clone();
    let mut s = setup(provider, CoreConfig::default()).await;
    let events = durable_until_end(&mut s.feed).await;
    assert_eq!(kinds(&events), ["user_message", "assistant_message"]);
    assert_eq!(*offered.lock().unwrap(), [0], "one call, with no tools");
    match events.last() {
        Some(EventBody::AssistantMessage {
            text,
            warnings: Some(warnings),
            ..
        }) => {
            assert_eq!(text, "plain");
            assert_eq!(warnings.len(), 1);
            assert_eq!(warnings[0].code, "tools_not_offered");
            // The registry's tools (a client-run one and a server one), by name.
            assert_eq!(
                warnings[0].message,
                "the textonly provider cannot call tools, so the model was not offered these: pick_color, upper"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_tool_runs_and_the_model_gets_its_result() {
    let provider = CallsThenAnswers {
        name: "upper",
        arguments: r#"{"text":"abc"}"#,
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    let events = durable_until_end(&mut s.feed).await;
    assert_eq!(
        kinds(&events),
        [
            "user_message",
            "tool_call",
            "tool_result",
            "assistant_message"
        ]
    );
    assert!(
        matches!(
            events.last(),
            Some(EventBody::AssistantMessage { warnings: None, .. })
        ),
        "no warning when the tools were offered"
    );
    match &events[1] {
        EventBody::ToolCall {
            arguments,
            executor,
            ..
        } => {
            assert_eq!(arguments, &json!({"text": "abc"}));
            assert_eq!(executor, "server");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&events[2], EventBody::ToolResult { result: Some(r), error: None, .. } if r == "ABC")
    );
    // Tokens of both steps make the message, in order.
    assert_eq!(
        reply_text(&events),
        ("Checking. result: \"ABC\"".into(), "stop".into())
    );
}

#[tokio::test]
async fn invalid_arguments_go_back_to_the_model_as_the_tool_error() {
    let provider = CallsThenAnswers {
        name: "upper",
        arguments: r#"{"txt":"abc"}"#,
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    let events = durable_until_end(&mut s.feed).await;
    match &events[2] {
        EventBody::ToolResult {
            result: None,
            error: Some(e),
            ..
        } => assert!(e.contains("schema") && e.contains("text"), "{e}"),
        other => panic!("{other:?}"),
    }
    let (text, _) = reply_text(&events);
    assert!(text.contains("\"error\""), "{text}");
}

#[tokio::test]
async fn an_unknown_tool_and_a_slow_tool_are_errors_the_model_sees() {
    let provider = CallsThenAnswers {
        name: "nope",
        arguments: "{}",
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    let events = durable_until_end(&mut s.feed).await;
    assert!(
        matches!(&events[2], EventBody::ToolResult { error: Some(e), .. } if e.contains("no tool named"))
    );

    let provider = CallsThenAnswers {
        name: "upper",
        arguments: r#"{"text":"x","wait":true}"#,
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    let events = durable_until_end(&mut s.feed).await;
    assert!(
        matches!(&events[2], EventBody::ToolResult { error: Some(e), .. } if e.contains("did not answer within"))
    );
    assert_eq!(reply_text(&events).1, "stop");
}

#[tokio::test]
async fn a_client_tool_waits_for_the_first_member_answer() {
    let provider = CallsThenAnswers {
        name: "pick_color",
        arguments: "{}",
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    // Wait for the call to be out, then answer twice: only the first counts.
    loop {
        if let Ok(FeedItem::Durable(e)) = s.feed.next().await
            && let EventBody::ToolCall { executor, .. } = &e.body
        {
            assert_eq!(executor, "client");
            break;
        }
    }
    s.core
        .tool_result(&s.chat, "call-1", Some(json!("teal")), None)
        .await
        .unwrap();
    let again = s
        .core
        .tool_result(&s.chat, "call-1", Some(json!("red")), None)
        .await
        .unwrap_err();
    assert_eq!(again.to_wire().code.as_str(), "not_found");
    let rest = durable_until_end(&mut s.feed).await;
    assert_eq!(kinds(&rest), ["tool_result", "assistant_message"]);
    assert_eq!(reply_text(&rest).0, "Checking. result: \"teal\"");
}

#[tokio::test]
async fn a_client_tool_times_out_and_abort_works_during_the_wait() {
    let provider = CallsThenAnswers {
        name: "pick_color",
        arguments: "{}",
    };
    let config = CoreConfig {
        client_tool_timeout: Duration::from_millis(200),
        ..CoreConfig::default()
    };
    let mut s = setup(provider, config).await;
    let events = durable_until_end(&mut s.feed).await;
    assert!(
        matches!(&events[2], EventBody::ToolResult { error: Some(e), .. } if e.contains("no member of the chat answered"))
    );

    let provider = CallsThenAnswers {
        name: "pick_color",
        arguments: "{}",
    };
    let mut s = setup(provider, CoreConfig::default()).await;
    loop {
        if let Ok(FeedItem::Durable(e)) = s.feed.next().await
            && matches!(e.body, EventBody::ToolCall { .. })
        {
            break;
        }
    }
    s.core.abort(&s.chat, None, None).await.unwrap();
    let rest = durable_until_end(&mut s.feed).await;
    assert_eq!(reply_text(&rest), ("Checking. ".into(), "aborted".into()));
    // The wait is gone with the turn.
    assert!(
        s.core
            .tool_result(&s.chat, "call-1", Some(json!("late")), None)
            .await
            .is_err()
    );
    let _ = &s.who;
}

#[tokio::test]
async fn max_steps_ends_the_loop_in_text() {
    // The scripted model calls a tool whenever tools are offered: with max_steps 2 the
    // second step has none and must answer.
    struct AlwaysCalls;
    #[async_trait]
    impl Provider for AlwaysCalls {
        fn name(&self) -> &str {
            "always-calls"
        }
        async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
            let events = if req.tools.is_empty() {
                vec![
                    ProviderEvent::TextDelta("done".into()),
                    ProviderEvent::Finish("stop".into()),
                ]
            } else {
                vec![
                    ProviderEvent::ToolCall(ToolCall {
                        id: format!("call-{}", req.messages.len()),
                        name: "upper".into(),
                        arguments: r#"{"text":"a"}"#.into(),
                    }),
                    ProviderEvent::Finish("tool_calls".into()),
                ]
            };
            Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
        }
    }
    let mut tools = ToolRegistry::default();
    tools.register(Arc::new(Upper));
    let core = ChatCore::with_tools(
        CoreConfig {
            max_steps: 2,
            ..CoreConfig::default()
        },
        Arc::new(LogStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(AlwaysCalls),
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
        request_id: None,
        trace_id: None,
        tools: Vec::new(),
        attachments: Vec::new(),
    };
    core.post_user_message(&who, &Source::default(), &chat, input)
        .await
        .unwrap();
    let events = durable_until_end(&mut feed).await;
    assert_eq!(
        kinds(&events),
        [
            "user_message",
            "tool_call",
            "tool_result",
            "assistant_message"
        ]
    );
    assert_eq!(reply_text(&events).0, "done");
}

#[tokio::test]
async fn tools_declared_with_a_message_are_client_run_for_its_turn() {
    let core = ChatCore::with_tools(
        CoreConfig::default(),
        Arc::new(LogStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(CallsThenAnswers {
            name: "confirm",
            arguments: "{}",
        }),
        ToolRegistry::default(),
    );
    let who = Identity::new("o", "ann");
    let chat = ChatKey::new("o", "c");
    let conn: Arc<str> = "conn-1".into();
    let mut feed = core
        .join(&who, &conn, &chat, JoinRequest::default())
        .await
        .unwrap()
        .feed;
    let tools = natter_core::tools::parse_declared(&json!([{"name": "confirm"}])).unwrap();
    let input = UserMessageInput {
        message_id: "m1".into(),
        text: "go".into(),
        parts: None,
        request_id: None,
        trace_id: None,
        tools,
        attachments: Vec::new(),
    };
    core.post_user_message(&who, &Source::default(), &chat, input)
        .await
        .unwrap();
    loop {
        if let Ok(FeedItem::Durable(e)) = feed.next().await
            && let EventBody::ToolCall { executor, .. } = &e.body
        {
            assert_eq!(executor, "client");
            break;
        }
    }
    core.tool_result(&chat, "call-1", Some(json!(true)), None)
        .await
        .unwrap();
    let rest = durable_until_end(&mut feed).await;
    assert_eq!(reply_text(&rest).0, "Checking. result: true");
}
