//! Client types and handoff in the core (CONTRACT §7.1, §7.2): observers may not write; while
//! a human agent is engaged no turn is asked for and the agent's messages carry its role;
//! each change is one durable event, repeated calls log nothing.

use std::sync::Arc;

use async_trait::async_trait;
use natter_core::bus_memory::MemoryBus;
use natter_core::chat::{ChatScope, ClientType, NewChat};
use natter_core::event::EventBody;
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream,
};
use natter_core::store_memory::MemoryStore;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, Source, UserMessageInput};
use natter_protocol::ErrorCode;

/// Answers "ok" at once.
struct Answers;

#[async_trait]
impl Provider for Answers {
    fn name(&self) -> &str {
        "ok"
    }

    async fn stream(&self, _req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let events = vec![
            ProviderEvent::TextDelta("ok".into()),
            ProviderEvent::Finish("stop".into()),
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

fn core() -> ChatCore {
    ChatCore::new(
        CoreConfig::default(),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(Answers),
    )
}

fn msg(id: &str) -> UserMessageInput {
    UserMessageInput {
        message_id: id.into(),
        text: "hi".into(),
        parts: None,
        request_id: None,
        trace_id: None,
        tools: Vec::new(),
        attachments: Vec::new(),
    }
}

fn code(e: natter_core::CoreError) -> ErrorCode {
    e.to_wire().code
}

#[tokio::test]
async fn handoff_gates_turns_and_marks_agent_messages() {
    let core = core();
    let chat = ChatKey::new("org", "c1");
    let ann = Identity::new("org", "ann");
    let agent = Identity::new("org", "agent").with_client_type(ClientType::HumanAgent);
    let observer = Identity::new("org", "olly").with_client_type(ClientType::Observer);
    let from = Source::default();
    core.open_chat(&ann, &chat, Some(NewChat::default()))
        .await
        .unwrap();

    // Observers may not write.
    assert_eq!(
        code(
            core.post_user_message(&observer, &from, &chat, msg("o1"))
                .await
                .unwrap_err()
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            core.request_human_agent(&observer, &chat)
                .await
                .unwrap_err()
        ),
        ErrorCode::Forbidden
    );
    // Only a humanAgent (or an admin) takes a chat.
    assert_eq!(
        code(core.human_agent_join(&ann, &chat).await.unwrap_err()),
        ErrorCode::Forbidden
    );

    let asked = core.request_human_agent(&ann, &chat).await.unwrap();
    assert!(asked.event.is_some() && asked.state.is_waiting_for_agent());
    let again = core.request_human_agent(&ann, &chat).await.unwrap();
    assert!(again.event.is_none(), "asking twice logs nothing");
    assert_eq!(again.seq, asked.seq);
    let page = core
        .list_waiting_chats("org", &ChatScope::Org, 10, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 1);

    let joined = core.human_agent_join(&agent, &chat).await.unwrap();
    assert_eq!(joined.state.agents, vec!["agent".to_owned()]);
    assert!(!joined.state.is_waiting_for_agent() && !joined.state.ai_engaged());
    assert!(
        core.human_agent_join(&agent, &chat)
            .await
            .unwrap()
            .event
            .is_none()
    );

    let posted = core
        .post_user_message(&ann, &from, &chat, msg("u1"))
        .await
        .unwrap();
    assert_eq!(
        posted.request_id, None,
        "no turn while a human agent is engaged"
    );
    let said = core
        .post_user_message(&agent, &from, &chat, msg("a1"))
        .await
        .unwrap();
    assert_eq!(said.request_id, None, "an agent's message starts no turn");
    let stored = core.recent_messages(&chat, 10).await.unwrap();
    let role = |id: &str| {
        stored.iter().find_map(|e| match &e.body {
            EventBody::UserMessage {
                message_id, role, ..
            } if message_id == id => Some(role.clone()),
            _ => None,
        })
    };
    assert_eq!(role("u1"), Some(None));
    assert_eq!(role("a1"), Some(Some("humanAgent".to_owned())));
    assert_eq!(
        code(
            core.regenerate(&ann, &from, &chat, None, None, None)
                .await
                .unwrap_err()
        ),
        ErrorCode::Forbidden,
        "no regenerate while an agent has the chat"
    );

    assert!(
        core.human_agent_leave(&ann, &chat)
            .await
            .unwrap()
            .event
            .is_none()
    );
    let left = core.human_agent_leave(&agent, &chat).await.unwrap();
    assert!(left.event.is_some() && left.state.ai_engaged());
    let back = core
        .post_user_message(&ann, &from, &chat, msg("u2"))
        .await
        .unwrap();
    assert!(
        back.request_id.is_some(),
        "with no agent left the AI answers again"
    );
}
