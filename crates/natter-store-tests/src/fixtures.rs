//! Events and small helpers the cases share.

use natter_core::chat::{ChatInfo, ChatKey, NewChat};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::store::{Appended, Guard, Store, StoreError};

pub fn user(message_id: &str, user_id: &str, text: &str) -> EventBody {
    EventBody::UserMessage {
        message_id: message_id.into(),
        user_id: user_id.into(),
        text: text.into(),
        parts: None,
        request_id: None,
        trace_id: None,
        origin: None,
        tools: None,
        attachments: None,
        role: None,
    }
}

/// A user message that asks for turn `request_id` (AI on).
pub fn asked(message_id: &str, request_id: &str) -> EventBody {
    EventBody::UserMessage {
        message_id: message_id.into(),
        user_id: "u".into(),
        text: "hi".into(),
        parts: None,
        request_id: Some(request_id.into()),
        trace_id: Some(format!("trace-{request_id}")),
        origin: None,
        tools: None,
        attachments: None,
        role: None,
    }
}

pub fn answered(message_id: &str, request_id: &str) -> EventBody {
    EventBody::AssistantMessage {
        message_id: message_id.into(),
        request_id: request_id.into(),
        text: "hello".into(),
        finish_reason: "stop".into(),
        usage: None,
        model: None,
        trace_id: None,
        token_count: None,
        warnings: None,
    }
}

pub fn failed(message_id: &str, request_id: &str) -> EventBody {
    EventBody::TurnFailed {
        message_id: message_id.into(),
        request_id: request_id.into(),
        code: "interrupted".into(),
        message: "cut".into(),
        retryable: true,
        partial_text: String::new(),
        trace_id: None,
        token_count: None,
    }
}

pub fn tool_call(message_id: &str, request_id: &str, call: &str) -> EventBody {
    EventBody::ToolCall {
        request_id: request_id.into(),
        message_id: message_id.into(),
        token_index: 0,
        tool_call_id: call.into(),
        name: "current_time".into(),
        arguments: serde_json::json!({}),
        executor: "server".into(),
        trace_id: None,
    }
}

pub fn tool_result(message_id: &str, request_id: &str, call: &str) -> EventBody {
    EventBody::ToolResult {
        request_id: request_id.into(),
        message_id: message_id.into(),
        token_index: 0,
        tool_call_id: call.into(),
        name: "current_time".into(),
        result: Some(serde_json::json!("noon")),
        error: None,
        trace_id: None,
    }
}

pub fn superseded(message_id: &str, request_id: &str, context_seq: Option<u64>) -> EventBody {
    EventBody::MessageSuperseded {
        message_id: message_id.into(),
        request_id: request_id.into(),
        superseded_by: Some("u".into()),
        context_seq,
        tools: None,
    }
}

pub fn updated(title: Option<&str>, pinned: Option<bool>, members: Option<&[&str]>) -> EventBody {
    EventBody::ChatUpdated {
        title: title.map(Into::into),
        pinned,
        members: members.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
        updated_by: Some("ann".into()),
    }
}

pub fn created_by(user: &str) -> NewChat {
    NewChat {
        created_by: Some(user.into()),
        metadata: None,
        members: None,
    }
}

/// Creates `chat` (it must not exist yet).
pub async fn create(store: &dyn Store, chat: &ChatKey, new: &NewChat) -> ChatInfo {
    let info = store
        .open_chat(chat, Some(new))
        .await
        .unwrap_or_else(|e| panic!("open_chat({chat}, create) failed: {e}"))
        .unwrap_or_else(|| panic!("open_chat({chat}, create) returned no chat"));
    assert_eq!(
        info.head_seq, 1,
        "Epoch: a new chat's log starts with its chat_created event at seq 1"
    );
    info
}

/// Appends without a guard; the append must succeed.
pub async fn append(store: &dyn Store, chat: &ChatKey, body: EventBody, at: i64) -> Appended {
    store
        .append(chat, body.clone(), at)
        .await
        .unwrap_or_else(|e| panic!("append to {chat} of {body:?} failed: {e}"))
}

/// Appends a new event; it must not be a duplicate. Returns its `seq`.
pub async fn append_new(store: &dyn Store, chat: &ChatKey, body: EventBody, at: i64) -> u64 {
    match append(store, chat, body.clone(), at).await {
        Appended::New(e) => e.seq,
        Appended::Duplicate(e) => panic!(
            "Idempotency: {body:?} has no stored key but was reported as a duplicate of seq {}",
            e.seq
        ),
    }
}

pub async fn append_guarded(
    store: &dyn Store,
    chat: &ChatKey,
    body: EventBody,
    at: i64,
    guard: Guard,
) -> Result<Appended, StoreError> {
    store.append_guarded(chat, body, at, guard).await
}

/// The whole log of `chat` (empty if it does not exist).
pub async fn log(store: &dyn Store, chat: &ChatKey) -> Vec<StoredEvent> {
    store
        .events_after(chat, 0, 1_000_000)
        .await
        .unwrap_or_else(|e| panic!("events_after({chat}) failed: {e}"))
}

pub async fn head(store: &dyn Store, chat: &ChatKey) -> u64 {
    store
        .open_chat(chat, None)
        .await
        .unwrap_or_else(|e| panic!("open_chat({chat}) failed: {e}"))
        .unwrap_or_else(|| panic!("chat {chat} vanished"))
        .head_seq
}

pub fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The message ids (user, assistant, failed turn) or, for tool events, the call id.
pub fn ids(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.body {
            EventBody::ToolCall { tool_call_id, .. } => format!("call:{tool_call_id}"),
            EventBody::ToolResult { tool_call_id, .. } => format!("result:{tool_call_id}"),
            b => b.message_id().unwrap_or(b.kind()).to_owned(),
        })
        .collect()
}

/// A read of a chat that does not exist: the trait leaves open whether that is an empty
/// answer or `NoSuchChat`, never anything else.
pub fn nothing<T: std::fmt::Debug>(r: &Result<Vec<T>, StoreError>) -> bool {
    match r {
        Ok(v) => v.is_empty(),
        Err(StoreError::NoSuchChat(_)) => true,
        Err(_) => false,
    }
}
