//! Core events → seed 002's shapes: `ChatMessage`, `Chat`, `ChatEvent`, `ChatSummary`.
//! Times are epoch milliseconds here (CONTRACT §6.1). Pure functions, no I/O.

use natter_core::chat::ChatSummary;
use natter_core::event::{EventBody, StoredEvent};
use serde_json::{Value, json};

/// Seed 002's sender id for the assistant.
pub const AI_SENDER: &str = "ai";

/// A message event as seed 002's `ChatMessage` (plus its `seq`), if it is a message.
pub fn chat_message(event: &StoredEvent) -> Option<Value> {
    let t = event.created_at;
    Some(match &event.body {
        EventBody::UserMessage {
            message_id,
            user_id,
            text,
            parts,
            ..
        } => {
            let mut m = json!({
                "id": message_id, "role": "user", "content": text, "time": t, "status": "sent",
                "senderId": user_id, "createdAt": t, "seq": event.seq,
            });
            if let Some(p) = parts {
                m["parts"] = p.clone();
            }
            m
        }
        EventBody::AssistantMessage {
            message_id,
            request_id,
            text,
            finish_reason,
            usage,
            ..
        } => {
            let mut m = json!({
                "id": message_id, "role": "ai", "content": text, "time": t, "status": "sent",
                "senderId": AI_SENDER, "senderName": "Assistant", "createdAt": t, "seq": event.seq,
                "requestId": request_id, "finishReason": finish_reason,
            });
            if let Some(u) = usage {
                m["llmUsage"] = json!({
                    "inputTokens": u.prompt_tokens,
                    "outputTokens": u.completion_tokens,
                    "totalTokens": u.total_tokens,
                });
            }
            m
        }
        EventBody::TurnFailed {
            message_id,
            request_id,
            code,
            retryable,
            partial_text,
            ..
        } => json!({
            "id": message_id, "role": "ai", "content": partial_text, "time": t, "status": "failed",
            "senderId": AI_SENDER, "senderName": "Assistant", "createdAt": t, "seq": event.seq,
            "requestId": request_id, "error": {"code": code, "retryable": retryable},
        }),
        // Tool events, as seed 002's `tool` role (history shows them; live SSE does not).
        EventBody::ToolCall {
            request_id,
            message_id,
            tool_call_id,
            name,
            arguments,
            executor,
            ..
        } => json!({
            "id": format!("{tool_call_id}:call"), "role": "tool", "content": "", "time": t,
            "status": "sent", "senderId": AI_SENDER, "createdAt": t, "seq": event.seq,
            "name": name, "toolCallId": tool_call_id, "requestId": request_id,
            "replyTo": message_id, "executor": executor,
            "toolCalls": [{"Name": name, "Arguments": arguments, "ID": tool_call_id, "Description": ""}],
        }),
        EventBody::ToolResult {
            request_id,
            message_id,
            tool_call_id,
            name,
            result,
            error,
            ..
        } => {
            let mut m = json!({
                "id": format!("{tool_call_id}:result"), "role": "tool", "time": t,
                "status": if error.is_some() { "failed" } else { "sent" },
                "senderId": AI_SENDER, "createdAt": t, "seq": event.seq, "name": name,
                "toolCallId": tool_call_id, "requestId": request_id, "replyTo": message_id,
                "content": match (result, error) {
                    (_, Some(e)) => e.clone(),
                    (Some(r), None) => r.to_string(),
                    (None, None) => String::new(),
                },
            });
            if let Some(r) = result {
                m["result"] = r.clone();
            }
            if error.is_some() {
                m["error"] = json!({"code": "tool_error", "retryable": false});
            }
            m
        }
        _ => return None,
    })
}

/// A `ChatEvent` envelope.
pub fn chat_event(
    kind: &str,
    org: &str,
    chat_key: &str,
    user_id: &str,
    timestamp: i64,
    data: Option<Value>,
    message: Option<Value>,
) -> Value {
    let mut e = json!({
        "type": kind, "orgId": org, "chatKey": chat_key, "userId": user_id, "timestamp": timestamp,
    });
    if let Some(d) = data {
        e["data"] = d;
    }
    if let Some(m) = message {
        e["message"] = m;
    }
    e
}

/// Seed 002's `ChatSummary` (plus `createdAt` and `seq`, the chat's head).
pub fn summary(s: &ChatSummary) -> Value {
    let mut v = json!({
        "chatKey": &*s.key.chat_id,
        "title": s.title.clone().unwrap_or_default(),
        "userId": s.created_by,
        "status": s.status.as_str(),
        "lastUpdated": s.updated_at,
        "createdAt": s.created_at,
        "pinned": s.pinned,
        "metadata": s.metadata.clone().unwrap_or_else(|| json!({})),
        "isBackground": false,
        "seq": s.head_seq,
    });
    // Only members-only chats carry the field, so org-wide ones keep seed 002's exact shape.
    if let (Some(members), Some(obj)) = (&s.members, v.as_object_mut()) {
        obj.insert("members".into(), json!(members));
    }
    v
}

/// Seed 002's full `Chat`, with its latest messages.
pub fn chat(s: &ChatSummary, messages: &[StoredEvent]) -> Value {
    json!({
        "orgId": &*s.key.org,
        "key": &*s.key.chat_id,
        "title": s.title.clone().unwrap_or_default(),
        "messages": messages.iter().filter_map(chat_message).collect::<Vec<_>>(),
        "startTime": s.created_at,
        "lastUpdated": s.updated_at,
        "users": s.created_by.iter().map(|u| json!({"id": u, "role": "user"})).collect::<Vec<_>>(),
        "status": s.status.as_str(),
        "aiEngaged": true,
        "humanAgentEngaged": false,
        "isWaiting": false,
        "isWaitingForAgent": false,
        "metadata": s.metadata.clone().unwrap_or_else(|| json!({})),
        "pinned": s.pinned,
        "seq": s.head_seq,
        "epoch": s.epoch,
    })
}
