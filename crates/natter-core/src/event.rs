//! Events: the durable ones that make a chat's log, and the ephemeral ones that only stream.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::ConnectionId;

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// What happened, in a durable event. Stored as JSON (`kind` + camelCase fields), so new
/// fields must be optional and old rows must stay readable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    ChatCreated {
        #[serde(rename = "createdBy")]
        created_by: Option<String>,
        /// Free-form data the creator attached (seed 002's `metadata`, e.g. an agent binding).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Value>,
        /// A members-only chat's member list (see [`crate::chat::NewChat::members`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<String>>,
    },
    #[serde(rename_all = "camelCase")]
    UserMessage {
        message_id: String,
        user_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parts: Option<Value>,
        /// The requestId of the turn this message started, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// The connection that sent it, so a member refilled from the store (events from
        /// several nodes arrive out of order) still gets no echo of its own message. Never on
        /// the wire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    AssistantMessage {
        message_id: String,
        request_id: String,
        text: String,
        finish_reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// How many `ai:token` events the turn published (their text concatenates to
        /// `text`), so a member that lagged past the tail can be sent it; absent on events
        /// stored before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_count: Option<u64>,
    },
    /// A turn that ended in an error. Any partial text is kept here.
    #[serde(rename_all = "camelCase")]
    TurnFailed {
        message_id: String,
        request_id: String,
        code: String,
        message: String,
        retryable: bool,
        #[serde(default)]
        partial_text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// How many `ai:token` events the turn published (their text concatenates to
        /// `partial_text`); absent when unknown (an interrupted run, or an older event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_count: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    ReadReceipt {
        user_id: String,
        message_ids: Vec<String>,
        read_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        /// The connection that sent it (see `UserMessage::origin`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ChatEnded {
        ended_by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The model called a tool during a turn.
    #[serde(rename_all = "camelCase")]
    ToolCall {
        request_id: String,
        /// The assistant message (turn) this call belongs to.
        message_id: String,
        /// Token events of the turn before this one, so a replay can put it back in place.
        #[serde(default)]
        token_index: u64,
        tool_call_id: String,
        name: String,
        /// The arguments as parsed JSON, or as the raw text when the model sent invalid JSON.
        arguments: Value,
        /// `server` or `client`.
        executor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// The result of a tool call (exactly one of `result` and `error`).
    #[serde(rename_all = "camelCase")]
    ToolResult {
        request_id: String,
        message_id: String,
        /// Token events of the turn before this one, so a replay can put it back in place.
        #[serde(default)]
        token_index: u64,
        tool_call_id: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// The chat was renamed and/or (un)pinned. Absent fields are unchanged.
    #[serde(rename_all = "camelCase")]
    ChatUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<bool>,
        /// A new member list; an empty one opens the chat to the whole org again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        updated_by: Option<String>,
    },
    /// An assistant message was regenerated: it stays in the log but no longer counts as
    /// history or context. The replacement is the turn `request_id` starts.
    #[serde(rename_all = "camelCase")]
    MessageSuperseded {
        message_id: String,
        request_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        superseded_by: Option<String>,
        /// The new turn's context ends at this `seq` (the message the old reply answered), so
        /// whichever node runs the queued turn builds the same context; absent on older
        /// events (then the superseding event's own `seq`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_seq: Option<u64>,
    },
}

impl EventBody {
    /// The stored `kind` column: stable names, used by stores for indexing.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ChatCreated { .. } => "chat_created",
            Self::UserMessage { .. } => "user_message",
            Self::AssistantMessage { .. } => "assistant_message",
            Self::TurnFailed { .. } => "turn_failed",
            Self::ReadReceipt { .. } => "read_receipt",
            Self::ChatEnded { .. } => "chat_ended",
            Self::ChatUpdated { .. } => "chat_updated",
            Self::MessageSuperseded { .. } => "message_superseded",
            Self::ToolCall { .. } => "tool_call",
            Self::ToolResult { .. } => "tool_result",
        }
    }

    /// Whether this event is a message (shown in history and used as LLM context).
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            Self::UserMessage { .. } | Self::AssistantMessage { .. }
        )
    }

    /// The connection whose request this event records (a user message, a read receipt).
    pub fn origin(&self) -> Option<&str> {
        match self {
            Self::UserMessage { origin, .. } | Self::ReadReceipt { origin, .. } => {
                origin.as_deref()
            }
            _ => None,
        }
    }

    /// The client-given idempotency key, for events that have one.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Self::UserMessage { message_id, .. } => Some(message_id),
            _ => None,
        }
    }

    /// The id of the message this event creates (user, assistant, or failed turn).
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Self::UserMessage { message_id, .. } => Some(message_id),
            _ => self.ends_turn(),
        }
    }

    /// The assistant message id of the turn this event ends, if it ends one.
    pub fn ends_turn(&self) -> Option<&str> {
        match self {
            Self::AssistantMessage { message_id, .. } | Self::TurnFailed { message_id, .. } => {
                Some(message_id)
            }
            _ => None,
        }
    }
}

/// A durable event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub created_at: i64,
    pub body: EventBody,
}

/// The turn a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRef {
    /// The assistant message id (the same on every face and in the final message).
    pub message_id: Arc<str>,
    pub request_id: Arc<str>,
    pub trace_id: Option<Arc<str>>,
}

/// `ai:processing` statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingStatus {
    Queued,
    Working,
    Retrying,
}

impl ProcessingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Working => "working",
            Self::Retrying => "retrying",
        }
    }
}

/// Ephemeral events: delivered live, never stored, no `seq`.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A turn started streaming: resets the bus's token buffer for the chat.
    TurnStarted {
        turn: Arc<TurnRef>,
    },
    Token {
        turn: Arc<TurnRef>,
        index: u64,
        text: Arc<str>,
    },
    Processing {
        request_id: Arc<str>,
        status: ProcessingStatus,
        eta_ms: Option<u64>,
        reason: Option<String>,
        trace_id: Option<Arc<str>>,
    },
    Typing {
        user_id: Arc<str>,
        typing: bool,
        trace_id: Option<Arc<str>>,
    },
    Presence {
        online_user_ids: Vec<String>,
    },
    /// A turn ended but its end could not be stored (the store kept failing). Members still
    /// learn that it ended, without a `seq`; the bus drops the turn's buffer.
    TurnEndUnstored {
        turn: Arc<TurnRef>,
        /// The `TurnFailed` body the store refused (code `unavailable`, partial text kept).
        end: Box<EventBody>,
    },
    /// The chat was deleted: its log is gone, and members are told and dropped.
    ChatDeleted {
        deleted_by: Option<Arc<str>>,
    },
}

/// What travels on the bus for one chat.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// A durable event, already committed to the store.
    Durable {
        event: Arc<StoredEvent>,
        /// The connection whose request caused it, so it is not echoed back there.
        origin: Option<ConnectionId>,
    },
    Live {
        event: LiveEvent,
        origin: Option<ConnectionId>,
    },
}
