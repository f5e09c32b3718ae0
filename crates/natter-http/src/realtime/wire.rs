//! Core events → seed 002's shapes: `ChatMessage`, `Chat`, `ChatEvent`, `ChatSummary`.
//! Times are epoch milliseconds here (CONTRACT §6.1). Pure functions, no I/O.

use natter_core::chat::ChatSummary;
use natter_core::event::{EventBody, Reaction, StoredEvent};
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
            role,
            attachments,
            ..
        } => {
            let role = role.as_deref().unwrap_or("user");
            let mut m = json!({
                "id": message_id, "role": role, "content": text, "time": t, "status": "sent",
                "senderId": user_id, "createdAt": t, "seq": event.seq,
            });
            if let Some(p) = parts {
                m["parts"] = p.clone();
            }
            if let Some(a) = attachments {
                let wire: Vec<_> = a.iter().map(|a| a.wire()).collect();
                m["attachments"] = json!(wire);
            }
            m
        }
        EventBody::AssistantMessage {
            message_id,
            request_id,
            text,
            finish_reason,
            usage,
            warnings,
            ..
        } => {
            let mut m = json!({
                "id": message_id, "role": "ai", "content": text, "time": t, "status": "sent",
                "senderId": AI_SENDER, "senderName": "Assistant", "createdAt": t, "seq": event.seq,
                "requestId": request_id, "finishReason": finish_reason,
            });
            if let Some(w) = warnings {
                m["warnings"] = json!(w);
            }
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

/// A handoff event's `ChatEvent.userId` (the agent, or the customer who asked) and its
/// `data`: the chat's handoff state after it (CONTRACT §7.2).
pub fn handoff_data(body: &EventBody) -> (String, Value) {
    let (user, agent) = match body {
        EventBody::HumanAgentJoined { agent_id, .. }
        | EventBody::HumanAgentLeft { agent_id, .. } => (agent_id.clone(), Some(agent_id.clone())),
        EventBody::HumanAgentRequested { requested_by, .. } => {
            (requested_by.clone().unwrap_or_default(), None)
        }
        _ => (String::new(), None),
    };
    let state = body.handoff().cloned().unwrap_or_default();
    let mut data = json!({
        "aiEngaged": state.ai_engaged(),
        "humanAgentEngaged": state.human_agent_engaged(),
        "isWaitingForAgent": state.is_waiting_for_agent(),
    });
    if let Some(a) = agent {
        data["agentId"] = json!(a);
    }
    if let Some(w) = state.waiting_since {
        data["waitingSince"] = json!(w);
    }
    (user, data)
}

/// Seed 002's `EmojiReaction[]` (`createdAt` epoch ms).
pub fn reactions(list: &[Reaction]) -> Value {
    json!(
        list.iter()
            .map(|r| json!({"emoji": r.emoji, "userId": r.user_id, "createdAt": r.created_at}))
            .collect::<Vec<_>>()
    )
}

/// A chat's latest CSAT answer as `ChatSummary.csat`: `{rating, comment?, submittedAt}`
/// (plus `userId`, who answered).
pub fn csat(s: &ChatSummary) -> Option<Value> {
    s.csat.as_ref().map(|c| {
        let mut v = json!({"rating": c.rating, "submittedAt": c.submitted_at, "userId": c.user_id});
        if let Some(comment) = &c.comment {
            v["comment"] = json!(comment);
        }
        v
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
        "aiEngaged": s.ai_engaged(),
        "humanAgentEngaged": s.human_agent_engaged(),
        "isWaitingForAgent": s.is_waiting_for_agent(),
    });
    if let (Some(w), Some(obj)) = (s.waiting_since, v.as_object_mut()) {
        obj.insert("waitingSince".into(), json!(w));
    }
    if let (Some(c), Some(obj)) = (csat(s), v.as_object_mut()) {
        obj.insert("csat".into(), c);
    }
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
        "aiEngaged": s.ai_engaged(),
        "humanAgentEngaged": s.human_agent_engaged(),
        "isWaiting": s.is_waiting_for_agent(),
        "isWaitingForAgent": s.is_waiting_for_agent(),
        "waitingSince": s.waiting_since,
        "humanAgents": s.human_agents,
        "metadata": s.metadata.clone().unwrap_or_else(|| json!({})),
        "pinned": s.pinned,
        "seq": s.head_seq,
        "epoch": s.epoch,
        "csat": csat(s),
    })
}
