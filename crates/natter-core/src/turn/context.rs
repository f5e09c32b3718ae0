//! The context a turn gives the model: the chat's latest messages within the byte budget,
//! each reply with its turn's tool calls and results, and the system prompt first.

use std::collections::HashMap;

use super::TurnRequest;
use crate::agents::Agent;
use crate::core::Inner;
use crate::error::CoreError;
use crate::event::{EventBody, StoredEvent};
use crate::message_attachments;
use crate::provider::{PromptMessage, ProviderError, ProviderErrorKind, Role, ToolCall};
use crate::store::StoreError;

/// A store error while reading the context, as a turn error (not retried).
fn attachment_error(e: CoreError) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Unavailable,
        format!("reading attachments: {e}"),
    )
}

fn context_error(e: StoreError) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Unavailable,
        format!("reading context: {e}"),
    )
}

/// The context: the latest messages up to the turn's `context_seq`, newest first until the
/// byte budget is spent, each reply preceded by its turn's tool calls and results (so the
/// model remembers what its tools returned), then the system prompt (the chat's agent's, else
/// the core's) first.
pub(super) async fn build_context(
    inner: &Inner,
    req: &TurnRequest,
    agent: Option<&Agent>,
) -> Result<Vec<PromptMessage>, ProviderError> {
    let cfg = &inner.config;
    let events = inner
        .store
        .recent_messages(&req.chat, req.context_seq, cfg.context_max_messages)
        .await
        .map_err(context_error)?;
    let tool_events = context_tool_events(inner, req, &events).await?;
    // Newest first; each reply with its tools is one unit, so a cut never splits a call
    // from its result.
    let mut units: Vec<Vec<PromptMessage>> = Vec::new();
    let mut bytes = 0usize;
    let fits = |bytes: usize, more: usize, units: &Vec<Vec<PromptMessage>>| {
        bytes + more <= cfg.context_max_bytes || units.is_empty()
    };
    // A document still being processed is waited for at most this long, once for the turn.
    let processing_deadline = tokio::time::Instant::now() + cfg.attachments.processing_timeout;
    for event in events.iter().rev() {
        match &event.body {
            EventBody::UserMessage {
                text, attachments, ..
            } => {
                let attachments = attachments.as_deref().unwrap_or_default();
                if attachments.is_empty() {
                    // The newest message always goes in, even alone over the limit.
                    if !fits(bytes, text.len(), &units) {
                        break;
                    }
                    bytes += text.len();
                    units.push(vec![PromptMessage::text(Role::User, text.clone())]);
                    continue;
                }
                // Attachments count too (CONTRACT §7.6): documents' text, and images' bytes;
                // an older message whose images do not fit what is left keeps them as
                // `[image: …]` lines rather than being left out.
                let docs = message_attachments::documents_text(
                    inner,
                    &req.chat,
                    attachments,
                    processing_deadline,
                )
                .await
                .map_err(attachment_error)?;
                let mut content = text.clone();
                if !docs.is_empty() {
                    if !content.is_empty() {
                        content.push_str("\n\n");
                    }
                    content.push_str(&docs);
                }
                let image_bytes = message_attachments::image_bytes(attachments);
                let lines = message_attachments::image_lines(attachments);
                let message = if fits(bytes, content.len() + image_bytes, &units) {
                    bytes += content.len() + image_bytes;
                    let (images, gone) =
                        message_attachments::load_images(inner, &req.chat, attachments)
                            .await
                            .map_err(attachment_error)?;
                    for line in gone {
                        content.push('\n');
                        content.push_str(&line);
                    }
                    let mut m = PromptMessage::text(Role::User, content);
                    m.images = images;
                    m
                } else if fits(bytes, content.len() + lines.len() + 1, &units) {
                    bytes += content.len() + lines.len() + 1;
                    if !lines.is_empty() {
                        content.push('\n');
                        content.push_str(&lines);
                    }
                    PromptMessage::text(Role::User, content)
                } else {
                    break;
                };
                units.push(vec![message]);
            }
            EventBody::AssistantMessage {
                text, request_id, ..
            } => {
                let (tools, tool_bytes) = tool_messages(tool_events.get(request_id.as_str()));
                if text.is_empty() && tools.is_empty() {
                    continue;
                }
                let mut unit = Vec::new();
                if !tools.is_empty() && fits(bytes, text.len() + tool_bytes, &units) {
                    bytes += tool_bytes;
                    unit = tools;
                } else if text.is_empty() || !fits(bytes, text.len(), &units) {
                    // Neither the reply with its tools nor its text alone fits what is left.
                    break;
                }
                if !text.is_empty() {
                    bytes += text.len();
                    unit.push(PromptMessage::text(Role::Assistant, text.clone()));
                }
                units.push(unit);
            }
            _ => continue,
        }
    }
    let mut messages: Vec<PromptMessage> = units.into_iter().rev().flatten().collect();
    // The chat's agent's prompt, else the core's.
    let system = agent
        .and_then(|a| a.system_prompt.as_ref())
        .or(cfg.system_prompt.as_ref());
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        messages.insert(0, PromptMessage::text(Role::System, system.clone()));
    }
    Ok(messages)
}

/// Events read per page when collecting the context's tool events.
const CONTEXT_TOOL_PAGE: usize = 256;

/// The stored tool calls and results of the turns whose replies are among `messages`, by
/// request id, oldest first. A turn's tool events lie between the message that asked for it
/// and its reply, so when no `seq` is missing between the messages there are none, and
/// nothing more is read.
async fn context_tool_events<'a>(
    inner: &Inner,
    req: &TurnRequest,
    messages: &'a [StoredEvent],
) -> Result<HashMap<&'a str, Vec<StoredEvent>>, ProviderError> {
    let mut by_turn = HashMap::new();
    let replies: Vec<(&str, u64)> = messages
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AssistantMessage { request_id, .. } => Some((request_id.as_str(), e.seq)),
            _ => None,
        })
        .collect();
    let (Some(first), Some(&(_, last_reply))) = (messages.first(), replies.last()) else {
        return Ok(by_turn);
    };
    let gapless = messages
        .windows(2)
        .take_while(|w| w[0].seq < last_reply)
        .all(|w| w[1].seq == w[0].seq + 1);
    if gapless {
        return Ok(by_turn);
    }
    let mut after = first.seq;
    let mut read = 0usize;
    while after < last_reply && read < inner.config.replay_limit {
        let page = inner
            .store
            .messages_after(&req.chat, after, CONTEXT_TOOL_PAGE)
            .await
            .map_err(context_error)?;
        read += page.len();
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == CONTEXT_TOOL_PAGE;
        for event in page {
            if event.seq >= last_reply {
                break;
            }
            let request_id = match &event.body {
                EventBody::ToolCall { request_id, .. }
                | EventBody::ToolResult { request_id, .. } => request_id,
                _ => continue,
            };
            if let Some(&(turn, _)) = replies.iter().find(|(r, _)| r == request_id) {
                by_turn.entry(turn).or_insert_with(Vec::new).push(event);
            }
        }
        if !full {
            break;
        }
    }
    Ok(by_turn)
}

/// One turn's stored tool events as the model's messages: an assistant message with the
/// calls made together (the same `token_index`), then their results, for each call that has
/// a result (a call without one, cut by an abort, would be refused by the upstream). Returns
/// the messages and the bytes of arguments and results they hold.
fn tool_messages(events: Option<&Vec<StoredEvent>>) -> (Vec<PromptMessage>, usize) {
    let Some(events) = events else {
        return (Vec::new(), 0);
    };
    let result_of = |id: &str| {
        events.iter().find_map(|e| match &e.body {
            EventBody::ToolResult {
                tool_call_id,
                result,
                error,
                ..
            } if tool_call_id == id => Some(tool_output(result.as_ref(), error.as_deref())),
            _ => None,
        })
    };
    let mut out: Vec<PromptMessage> = Vec::new();
    let mut results: Vec<PromptMessage> = Vec::new();
    let mut step: Option<u64> = None;
    let mut bytes = 0usize;
    for e in events {
        let EventBody::ToolCall {
            token_index,
            tool_call_id,
            name,
            arguments,
            ..
        } = &e.body
        else {
            continue;
        };
        let Some(content) = result_of(tool_call_id) else {
            continue;
        };
        // An invalid-JSON argument text was kept as a JSON string: give back the text.
        let arguments = match arguments {
            serde_json::Value::String(raw) => raw.clone(),
            v => v.to_string(),
        };
        bytes += arguments.len() + content.len();
        let call = ToolCall {
            id: tool_call_id.clone(),
            name: name.clone(),
            arguments,
        };
        match out.last_mut() {
            Some(m) if step == Some(*token_index) && m.role == Role::Assistant => {
                m.tool_calls.push(call)
            }
            _ => {
                out.append(&mut results);
                out.push(PromptMessage {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![call],
                    tool_call_id: None,
                    images: Vec::new(),
                });
            }
        }
        step = Some(*token_index);
        results.push(PromptMessage {
            role: Role::Tool,
            content,
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.clone()),
            images: Vec::new(),
        });
    }
    out.append(&mut results);
    (out, bytes)
}

/// What the model gets back for a tool's outcome: the result as JSON text, or
/// `{"error": …}`.
pub(super) fn tool_output(result: Option<&serde_json::Value>, error: Option<&str>) -> String {
    match (result, error) {
        (Some(v), _) => v.to_string(),
        (None, Some(e)) => serde_json::json!({ "error": e }).to_string(),
        (None, None) => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(seq: u64, id: &str, token_index: u64) -> StoredEvent {
        StoredEvent {
            seq,
            created_at: 0,
            body: EventBody::ToolCall {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index,
                tool_call_id: id.into(),
                name: "time".into(),
                arguments: json!({"zone": id}),
                executor: "server".into(),
                trace_id: None,
            },
        }
    }

    fn result(seq: u64, id: &str, error: Option<&str>) -> StoredEvent {
        StoredEvent {
            seq,
            created_at: 0,
            body: EventBody::ToolResult {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index: 0,
                tool_call_id: id.into(),
                name: "time".into(),
                result: error.is_none().then(|| json!("noon")),
                error: error.map(str::to_owned),
                trace_id: None,
            },
        }
    }

    #[test]
    fn a_turns_tools_become_calls_per_step_then_results() {
        // Step 1 made two calls (same token_index), step 2 one, whose result never came.
        let events = vec![
            call(2, "a", 1),
            result(3, "a", None),
            call(4, "b", 1),
            result(5, "b", Some("down")),
            call(6, "c", 3),
        ];
        let (messages, bytes) = tool_messages(Some(&events));
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::Assistant, Role::Tool, Role::Tool]);
        let ids: Vec<&str> = messages[0]
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "one assistant message per step, unanswered calls left out"
        );
        assert_eq!(messages[0].tool_calls[0].arguments, r#"{"zone":"a"}"#);
        assert_eq!(messages[1].tool_call_id.as_deref(), Some("a"));
        assert_eq!(messages[1].content, r#""noon""#);
        assert_eq!(messages[2].content, r#"{"error":"down"}"#);
        let expected: usize = [
            r#"{"zone":"a"}"#,
            r#""noon""#,
            r#"{"zone":"b"}"#,
            r#"{"error":"down"}"#,
        ]
        .iter()
        .map(|s| s.len())
        .sum();
        assert_eq!(bytes, expected);
        assert_eq!(tool_messages(None), (Vec::new(), 0));
    }

    #[test]
    fn steps_alternate_calls_and_results() {
        let events = vec![
            call(2, "a", 0),
            result(3, "a", None),
            call(4, "b", 2),
            result(5, "b", None),
        ];
        let (messages, _) = tool_messages(Some(&events));
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::Assistant, Role::Tool, Role::Assistant, Role::Tool]
        );
    }
}
