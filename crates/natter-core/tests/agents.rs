//! Agents (CONTRACT §7.5): a chat bound at creation has its turns sent with its agent's
//! system prompt, provider, model, tools and temperature; an unbound chat keeps the core's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::agents::{Agent, Agents};
use natter_core::bus_memory::MemoryBus;
use natter_core::chat::NewChat;
use natter_core::event::EventBody;
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream, Role, ToolSpec,
};
use natter_core::store_memory::MemoryStore;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, Seams, Source, UserMessageInput};
use serde_json::json;

/// Answers "ok" and keeps every request it got.
#[derive(Default)]
struct Recording {
    name: &'static str,
    seen: Mutex<Vec<CompletionRequest>>,
}

#[async_trait]
impl Provider for Recording {
    fn name(&self) -> &str {
        self.name
    }

    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        self.seen.lock().unwrap().push(req);
        let events = vec![
            ProviderEvent::TextDelta("ok".into()),
            ProviderEvent::Finish("stop".into()),
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
    }
}

async fn reply_model(core: &ChatCore, chat: &ChatKey) -> Option<String> {
    for _ in 0..200 {
        let messages = core.recent_messages(chat, 10).await.unwrap();
        if let Some(model) = messages.iter().find_map(|e| match &e.body {
            EventBody::AssistantMessage { model, .. } => Some(model.clone()),
            _ => None,
        }) {
            return model;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no reply in {chat}");
}

#[tokio::test]
async fn a_bound_chat_uses_its_agent() {
    let main = Arc::new(Recording {
        name: "main",
        ..Default::default()
    });
    let other = Arc::new(Recording {
        name: "other",
        ..Default::default()
    });
    let mut tools = natter_core::tools::ToolRegistry::default();
    tools.declare_client(tool("a_tool"));
    tools.declare_client(tool("b_tool"));
    let agents = Agents::new(vec![Agent {
        id: "sales".into(),
        name: "Sales".into(),
        description: None,
        system_prompt: Some("You sell.".into()),
        provider: Some(other.clone()),
        model: Some("sales-model".into()),
        tools: Some(vec!["b_tool".into()]),
        temperature: Some(0.5),
    }])
    .unwrap();
    let config = CoreConfig {
        model: "main-model".into(),
        system_prompt: Some("Default prompt.".into()),
        ..CoreConfig::default()
    };
    let seams = Seams::single_node(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        main.clone(),
    )
    .with_tools(tools)
    .with_agents(agents);
    let core = ChatCore::from_seams(config, seams);
    let who = Identity::new("org", "ann");
    let post = |chat: ChatKey, id: &'static str| {
        let core = core.clone();
        let who = who.clone();
        async move {
            core.post_user_message(
                &who,
                &Source::default(),
                &chat,
                UserMessageInput {
                    message_id: id.into(),
                    text: "hi".into(),
                    parts: None,
                    request_id: None,
                    trace_id: None,
                    tools: Vec::new(),
                    attachments: Vec::new(),
                },
            )
            .await
            .unwrap();
        }
    };

    // Bound by name: stored by id, answered by the agent.
    let bound = ChatKey::new("org", "bound");
    let new = NewChat {
        metadata: Some(json!({"agentName": "Sales"})),
        ..NewChat::default()
    };
    core.open_chat(&who, &bound, Some(new)).await.unwrap();
    let summary = core.chat_summary(&bound).await.unwrap();
    assert_eq!(summary.metadata.unwrap()["agentId"], "sales");
    post(bound.clone(), "m1").await;
    assert_eq!(
        reply_model(&core, &bound).await.as_deref(),
        Some("sales-model")
    );
    let req = other.seen.lock().unwrap().pop().unwrap();
    assert_eq!(req.model, "sales-model");
    assert_eq!(req.temperature, Some(0.5));
    assert_eq!(req.messages[0].role, Role::System);
    assert_eq!(req.messages[0].content, "You sell.");
    let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["b_tool"]);

    // Unbound: the core's own settings and provider.
    let plain = ChatKey::new("org", "plain");
    core.open_chat(&who, &plain, Some(NewChat::default()))
        .await
        .unwrap();
    post(plain.clone(), "m2").await;
    assert_eq!(
        reply_model(&core, &plain).await.as_deref(),
        Some("main-model")
    );
    let req = main.seen.lock().unwrap().pop().unwrap();
    assert_eq!(req.model, "main-model");
    assert_eq!(req.temperature, None);
    assert_eq!(req.messages[0].content, "Default prompt.");
    assert_eq!(req.tools.len(), 2);

    // Unknown agents and a second agent on a bound chat are refused.
    let err = core
        .open_chat(
            &who,
            &ChatKey::new("org", "x"),
            Some(NewChat {
                metadata: Some(json!({"agentId": "nobody"})),
                ..NewChat::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_wire().code, natter_protocol::ErrorCode::NotFound);
    assert!(core.check_agent(&bound, "sales").await.is_ok());
    let err = core.check_agent(&plain, "sales").await.unwrap_err();
    assert_eq!(err.to_wire().code, natter_protocol::ErrorCode::InvalidField);
    assert_eq!(core.agents()[0].id, "sales");
}
