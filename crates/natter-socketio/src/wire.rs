//! Core events → Socket.IO payloads (CONTRACT §1). Pure functions, no I/O.

use natter_core::event::{
    EventBody, LiveEvent, ProcessingStatus, ProcessingUpdate, Reaction, StoredEvent,
};
use natter_core::feed::FeedItem;
use natter_core::store::OpenTurn;
use natter_protocol::EventKey;
use natter_protocol::socketio::{
    AiErrorEvent, AiMessageEvent, AiProcessingEvent, AiTokenEvent, AiToolCallEvent,
    AiToolResultEvent, ChatMessageEvent, HandoffUpdateEvent, HistoryMessage, MessageReadEvent,
    PresenceUpdateEvent, TypingUpdateEvent, Usage,
};
use natter_protocol::socketio::{
    ChatDeletedEvent, ChatEndedEvent, ChatUpdatedEvent, CsatRequestEvent, CsatSubmittedEvent,
    MessageSupersededEvent, ReactionUpdateEvent, ReactionWire,
};
use natter_protocol::time::iso8601;
use serde::Serialize;
use serde_json::value::RawValue;

/// An event ready to emit: its key and its payload, serialized once.
pub type Outgoing = (EventKey, Box<RawValue>);

fn raw<T: Serialize>(key: EventKey, payload: &T) -> Option<Outgoing> {
    // Our payload types always serialize; a failure would be a bug, so the event is skipped
    // and logged rather than taking the connection down.
    match serde_json::value::to_raw_value(payload) {
        Ok(v) => Some((key, v)),
        Err(e) => {
            tracing::error!(error = %e, ?key, "serializing an outgoing event failed");
            None
        }
    }
}

fn usage(u: &natter_core::event::Usage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

/// The `chat:message` / `ai:message` shape of a message event (for history and live).
pub fn history_message(chat_id: &str, event: &StoredEvent) -> Option<HistoryMessage> {
    match &event.body {
        EventBody::UserMessage {
            message_id,
            user_id,
            text,
            parts,
            request_id,
            trace_id,
            // Which connection sent it, and the tools it declared, stay on the server.
            origin: _,
            tools: _,
            role,
            attachments,
        } => Some(HistoryMessage::User(ChatMessageEvent {
            chat_id: chat_id.to_owned(),
            message_id: message_id.clone(),
            user_id: user_id.clone(),
            role: match role {
                Some(r) => r.clone().into(),
                None => "user".into(),
            },
            text: text.clone(),
            parts: parts.clone(),
            created_at: iso8601(event.created_at),
            seq: event.seq,
            request_id: request_id.clone(),
            trace_id: trace_id.clone(),
            reactions: None,
            attachments: attachments
                .as_ref()
                .map(|a| a.iter().map(|a| a.wire()).collect()),
        })),
        EventBody::AssistantMessage {
            message_id,
            request_id,
            text,
            finish_reason,
            usage: u,
            trace_id,
            warnings,
            ..
        } => Some(HistoryMessage::Assistant(AiMessageEvent {
            chat_id: chat_id.to_owned(),
            message_id: message_id.clone(),
            role: "assistant".into(),
            text: text.clone(),
            created_at: iso8601(event.created_at),
            usage: u.as_ref().map(usage),
            options: None,
            request_id: request_id.clone(),
            finish_reason: finish_reason.clone(),
            seq: event.seq,
            trace_id: trace_id.clone(),
            reactions: None,
            warnings: warnings.clone(),
        })),
        _ => None,
    }
}

/// `ai:error` for a failed turn; `seq` is `None` when its end could not be stored.
fn turn_failed(chat_id: &str, body: &EventBody, seq: Option<u64>) -> Option<Outgoing> {
    let EventBody::TurnFailed {
        message_id,
        request_id,
        code,
        message,
        retryable,
        partial_text,
        trace_id,
        ..
    } = body
    else {
        return None;
    };
    raw(
        EventKey::AiError,
        &AiErrorEvent {
            chat_id: chat_id.to_owned(),
            code: code.clone(),
            message: message.clone(),
            details: Some(
                serde_json::json!({"messageId": message_id, "partialText": partial_text}),
            ),
            request_id: request_id.clone(),
            retryable: *retryable,
            seq,
            trace_id: trace_id.clone(),
        },
    )
}

/// Where an open turn stands, for a member that joins while it is open: `working` if it is
/// `running` (the turn the member's feed streams), else `queued` (CONTRACT §1
/// `ai:processing`, without `etaMs`). The feed's turn, not the store's start mark, decides,
/// so the status agrees with the feed's position: a turn that started after the join
/// subscribed is `queued` here, and its `working` follows from the feed after the end of the
/// turn before it.
pub fn open_turn_status(chat_id: &str, turn: &OpenTurn, running: bool) -> Option<Outgoing> {
    let status = if running {
        ProcessingStatus::Working
    } else {
        ProcessingStatus::Queued
    };
    raw(
        EventKey::AiProcessing,
        &AiProcessingEvent {
            chat_id: chat_id.to_owned(),
            status: status.as_str().into(),
            eta_ms: None,
            reason: None,
            request_id: turn.request_id.clone(),
            trace_id: turn.trace_id.clone(),
        },
    )
}

/// A client-run call still waiting for an answer, sent after a join without `lastSeq`: its
/// `ai:tool_call` marked `pending: true`.
pub fn pending_tool_call(chat_id: &str, event: &StoredEvent) -> Option<Outgoing> {
    let EventBody::ToolCall {
        request_id,
        message_id,
        tool_call_id,
        name,
        arguments,
        executor,
        trace_id,
        ..
    } = &event.body
    else {
        return None;
    };
    raw(
        EventKey::AiToolCall,
        &AiToolCallEvent {
            chat_id: chat_id.to_owned(),
            request_id: request_id.clone(),
            message_id: message_id.clone(),
            tool_call_id: tool_call_id.clone(),
            name: name.clone(),
            arguments: arguments.clone(),
            executor: executor.clone(),
            seq: event.seq,
            trace_id: trace_id.clone(),
            pending: Some(true),
        },
    )
}

/// A durable event as the Socket.IO event it is, if it has one.
pub fn durable(chat_id: &str, event: &StoredEvent) -> Option<Outgoing> {
    match &event.body {
        EventBody::UserMessage { .. } | EventBody::AssistantMessage { .. } => {
            match history_message(chat_id, event)? {
                HistoryMessage::User(m) => raw(EventKey::ChatMessage, &m),
                HistoryMessage::Assistant(m) => raw(EventKey::AiMessage, &m),
            }
        }
        EventBody::TurnFailed { .. } => turn_failed(chat_id, &event.body, Some(event.seq)),
        EventBody::ReadReceipt {
            user_id,
            message_ids,
            read_at,
            trace_id,
            origin: _,
        } => raw(
            EventKey::ReadReceipt,
            &MessageReadEvent {
                chat_id: chat_id.to_owned(),
                user_id: user_id.clone(),
                message_ids: message_ids.clone(),
                read_at: iso8601(*read_at),
                seq: event.seq,
                trace_id: trace_id.clone(),
            },
        ),
        EventBody::ToolCall {
            request_id,
            message_id,
            tool_call_id,
            name,
            arguments,
            executor,
            trace_id,
            ..
        } => raw(
            EventKey::AiToolCall,
            &AiToolCallEvent {
                chat_id: chat_id.to_owned(),
                request_id: request_id.clone(),
                message_id: message_id.clone(),
                tool_call_id: tool_call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
                executor: executor.clone(),
                seq: event.seq,
                trace_id: trace_id.clone(),
                pending: None,
            },
        ),
        EventBody::ToolResult {
            request_id,
            message_id,
            tool_call_id,
            name,
            result,
            error,
            trace_id,
            ..
        } => raw(
            EventKey::AiToolResult,
            &AiToolResultEvent {
                chat_id: chat_id.to_owned(),
                request_id: request_id.clone(),
                message_id: message_id.clone(),
                tool_call_id: tool_call_id.clone(),
                name: name.clone(),
                result: result.clone(),
                error: error.clone(),
                seq: event.seq,
                trace_id: trace_id.clone(),
            },
        ),
        EventBody::HumanAgentRequested { handoff, .. }
        | EventBody::HumanAgentJoined { handoff, .. }
        | EventBody::HumanAgentLeft { handoff, .. } => raw(
            EventKey::HandoffUpdate,
            &HandoffUpdateEvent {
                chat_id: chat_id.to_owned(),
                is_waiting_for_agent: handoff.is_waiting_for_agent(),
                human_agent_engaged: handoff.human_agent_engaged(),
                ai_engaged: handoff.ai_engaged(),
                agent_id: match &event.body {
                    EventBody::HumanAgentJoined { agent_id, .. }
                    | EventBody::HumanAgentLeft { agent_id, .. } => Some(agent_id.clone()),
                    _ => None,
                },
                reason: event.body.kind().into(),
                waiting_since: handoff.waiting_since,
                seq: event.seq,
            },
        ),
        EventBody::ReactionAdded {
            message_id,
            user_id,
            emoji,
            reactions,
            trace_id,
        }
        | EventBody::ReactionRemoved {
            message_id,
            user_id,
            emoji,
            reactions,
            trace_id,
        } => raw(
            EventKey::ReactionUpdate,
            &ReactionUpdateEvent {
                chat_id: chat_id.to_owned(),
                message_id: message_id.clone(),
                reactions: reaction_list(reactions),
                user_id: user_id.clone(),
                emoji: emoji.clone(),
                added: matches!(event.body, EventBody::ReactionAdded { .. }),
                seq: event.seq,
                trace_id: trace_id.clone(),
            },
        ),
        EventBody::CsatSubmitted {
            user_id,
            rating,
            comment,
            trace_id,
        } => raw(
            EventKey::CsatSubmitted,
            &CsatSubmittedEvent {
                chat_id: chat_id.to_owned(),
                user_id: user_id.clone(),
                rating: *rating,
                comment: comment.clone(),
                submitted_at: iso8601(event.created_at),
                seq: event.seq,
                trace_id: trace_id.clone(),
            },
        ),
        EventBody::ChatEnded { ended_by, reason } => raw(
            EventKey::ChatEnded,
            &ChatEndedEvent {
                chat_id: chat_id.to_owned(),
                ended_by: ended_by.clone(),
                reason: reason.clone(),
                seq: event.seq,
            },
        ),
        EventBody::ChatUpdated {
            title,
            pinned,
            updated_by,
            members: _,
        } => raw(
            EventKey::ChatUpdated,
            &ChatUpdatedEvent {
                chat_id: chat_id.to_owned(),
                title: title.clone(),
                pinned: *pinned,
                updated_by: updated_by.clone(),
                seq: event.seq,
            },
        ),
        EventBody::MessageSuperseded {
            message_id,
            request_id,
            superseded_by,
            ..
        } => raw(
            EventKey::MessageSuperseded,
            &MessageSupersededEvent {
                chat_id: chat_id.to_owned(),
                message_id: message_id.clone(),
                request_id: request_id.clone(),
                superseded_by: superseded_by.clone(),
                seq: event.seq,
            },
        ),
        // No Socket.IO event in the contract; the seq still counts for `lastSeq`.
        EventBody::ChatCreated { .. } => None,
    }
}

/// A reaction list with ISO 8601 times (CONTRACT §6.1).
pub fn reaction_list(list: &[Reaction]) -> Vec<ReactionWire> {
    list.iter()
        .map(|r| ReactionWire {
            emoji: r.emoji.clone(),
            user_id: r.user_id.clone(),
            created_at: iso8601(r.created_at),
        })
        .collect()
}

/// `csat:request` after a `chat_ended` event, for a member who is asked (a customer, with
/// CSAT on: the caller decides).
pub fn csat_request(chat_id: &str, event: &StoredEvent) -> Option<Outgoing> {
    match event.body {
        EventBody::ChatEnded { .. } => raw(
            EventKey::CsatRequest,
            &CsatRequestEvent {
                chat_id: chat_id.to_owned(),
                seq: event.seq,
            },
        ),
        _ => None,
    }
}

/// `chat:deleted`, sent before the socket is taken out of a deleted chat.
pub fn chat_deleted(chat_id: &str, deleted_by: Option<&str>) -> Option<Outgoing> {
    raw(
        EventKey::ChatDeleted,
        &ChatDeletedEvent {
            chat_id: chat_id.to_owned(),
            deleted_by: deleted_by.map(str::to_owned),
        },
    )
}

/// `attachment:processing` (CONTRACT §7.6).
fn attachment_processing(
    chat_id: &str,
    attachment_id: &str,
    update: &ProcessingUpdate,
) -> natter_protocol::socketio::AttachmentProcessingEvent {
    let mut event = natter_protocol::socketio::AttachmentProcessingEvent {
        chat_id: chat_id.to_owned(),
        attachment_id: attachment_id.to_owned(),
        status: update.status().to_owned(),
        percent: None,
        chars: None,
        pages: None,
        error: None,
    };
    match update {
        ProcessingUpdate::Started => {}
        ProcessingUpdate::Progress { percent } => event.percent = Some(*percent),
        ProcessingUpdate::Complete { chars, pages } => {
            event.percent = Some(100);
            event.chars = Some(*chars);
            event.pages = *pages;
        }
        ProcessingUpdate::Error { code, message } => {
            event.error = Some(natter_protocol::ErrorBody {
                code: code.clone(),
                message: message.clone(),
                retry_after_ms: None,
            });
        }
    }
    event
}

/// A feed item as the Socket.IO event it is, if it has one.
pub fn feed_item(chat_id: &str, item: &FeedItem) -> Option<Outgoing> {
    match item {
        FeedItem::Durable(event) => durable(chat_id, event),
        FeedItem::Tokens {
            turn,
            index,
            through,
            text,
        } => raw(
            EventKey::AiToken,
            &AiTokenEvent {
                chat_id: chat_id.into(),
                request_id: (&*turn.request_id).into(),
                message_id: (&*turn.message_id).into(),
                token: (&**text).into(),
                index: *index,
                through: (through > index).then_some(*through),
            },
        ),
        FeedItem::Live(live) => match live {
            LiveEvent::Processing {
                request_id,
                status,
                eta_ms,
                reason,
                trace_id,
            } => raw(
                EventKey::AiProcessing,
                &AiProcessingEvent {
                    chat_id: chat_id.to_owned(),
                    status: status.as_str().into(),
                    eta_ms: *eta_ms,
                    reason: reason.clone(),
                    request_id: request_id.to_string(),
                    trace_id: trace_id.as_deref().map(str::to_owned),
                },
            ),
            LiveEvent::Typing {
                user_id,
                typing,
                trace_id,
            } => raw(
                EventKey::TypingUpdate,
                &TypingUpdateEvent {
                    chat_id: chat_id.to_owned(),
                    user_id: user_id.to_string(),
                    typing: *typing,
                    trace_id: trace_id.as_deref().map(str::to_owned),
                },
            ),
            LiveEvent::Presence { online_user_ids } => raw(
                EventKey::PresenceUpdate,
                &PresenceUpdateEvent {
                    chat_id: chat_id.to_owned(),
                    online_user_ids: online_user_ids.clone(),
                },
            ),
            LiveEvent::AttachmentProcessing {
                attachment_id,
                update,
            } => raw(
                EventKey::AttachmentProcessing,
                &attachment_processing(chat_id, attachment_id, update),
            ),
            // Tokens arrive as FeedItem::Tokens; a turn's start has no Socket.IO event.
            // The turn ended but its end is not in the log: the same ai:error, without seq.
            LiveEvent::TurnEndUnstored { end, .. } => turn_failed(chat_id, end, None),
            // Deletion ends the membership; the member task tells the client itself.
            // Streamed tool input is for AI SDK streams: Socket.IO gets the whole
            // `ai:tool_call` (docs/protocol.md, Tools).
            LiveEvent::TurnStarted { .. }
            | LiveEvent::Token { .. }
            | LiveEvent::ChatDeleted { .. }
            | LiveEvent::ToolInputStart { .. }
            | LiveEvent::ToolInputDelta { .. } => None,
        },
    }
}
