//! Payloads of the Socket.IO face (CONTRACT §1), both directions.
//!
//! Inbound payloads are parsed with [`Fields`](crate::fields::Fields) so every bad field gets
//! its own error; outbound payloads are plain serde structs in camelCase.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorBody, WireError};
use crate::fields::Fields;

/// Fields every client→server payload may carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Common {
    pub chat_id: Option<String>,
    pub trace_id: Option<String>,
}

impl Common {
    fn read(f: &Fields<'_>) -> Result<Self, WireError> {
        let common = Self {
            chat_id: f.opt_id("chatId")?,
            trace_id: f.opt_str("traceId")?,
        };
        for (field, value) in [("chatId", &common.chat_id), ("traceId", &common.trace_id)] {
            if let Some(v) = value {
                crate::fields::check_id_field(f.event(), field, v)?;
            }
        }
        Ok(common)
    }
}

/// `chat:join`
#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    pub common: Common,
    pub user_id: Option<String>,
    pub last_seq: Option<u64>,
    pub epoch: Option<String>,
    /// When this join creates the chat: the users who may use it (a members-only chat).
    pub members: Option<Vec<String>>,
    /// When this join creates the chat: the agent it is bound to (CONTRACT §7.5).
    pub agent_id: Option<String>,
}

/// Most user ids in a chat's member list.
pub const MAX_MEMBERS: usize = 1000;

impl JoinRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            common: Common::read(&f)?,
            user_id: f.opt_id("userId")?,
            last_seq: f.opt_u64("lastSeq")?,
            epoch: f.opt_str("epoch")?,
            members: match f.opt_array("members")? {
                Some(_) => Some(f.req_id_list("members", MAX_MEMBERS)?),
                None => None,
            },
            agent_id: f.opt_id("agentId")?,
        })
    }
}

/// `chat:leave`, `meta:events:request` and other payloads with only the common fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainRequest {
    pub common: Common,
}

impl PlainRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            common: Common::read(&f)?,
        })
    }
}

/// `user:message`
#[derive(Debug, Clone, PartialEq)]
pub struct UserMessageRequest {
    pub common: Common,
    pub message_id: String,
    pub user_id: Option<String>,
    pub text: String,
    pub parts: Option<Value>,
    pub request_id: Option<String>,
    /// Client-run tools declared for this message (raw; the core checks them).
    pub tools: Option<Value>,
    /// Ids of the attachments it carries (`attachments: [{id}]`).
    pub attachments: Vec<String>,
}

impl UserMessageRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            common: Common::read(&f)?,
            message_id: f.req_id("messageId")?,
            user_id: f.opt_id("userId")?,
            text: f.req_text("text")?,
            parts: f.opt_array("parts")?,
            request_id: f.opt_str("requestId")?,
            tools: f.opt_array("tools")?,
            attachments: f
                .opt_attachment_ids("attachments", crate::fields::MAX_MESSAGE_ATTACHMENTS)?,
        })
    }
}

/// `typing:start` / `typing:stop`
#[derive(Debug, Clone, PartialEq)]
pub struct TypingRequest {
    pub common: Common,
    pub user_id: Option<String>,
}

impl TypingRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            common: Common::read(&f)?,
            user_id: f.opt_id("userId")?,
        })
    }
}

/// `auth:refresh {token}`: a fresh token for a connected socket, before the old one expires.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRefreshRequest {
    pub token: String,
}

impl AuthRefreshRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            token: f.req_str("token")?,
        })
    }
}

/// The ack of `auth:refresh`: `{ok: true, expiresAt}` (ISO 8601; absent for a token without
/// `exp`, or when auth is off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AuthRefreshAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `ai:abort`
#[derive(Debug, Clone, PartialEq)]
pub struct AbortRequest {
    pub common: Common,
    pub request_id: Option<String>,
    pub reason: Option<String>,
}

impl AbortRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        Ok(Self {
            common: Common::read(&f)?,
            request_id: f.opt_str("requestId")?,
            reason: f.opt_str("reason")?,
        })
    }
}

/// `message:read` (client → server)
#[derive(Debug, Clone, PartialEq)]
pub struct MarkReadRequest {
    pub common: Common,
    pub user_id: Option<String>,
    pub message_ids: Vec<String>,
    /// Epoch milliseconds, parsed from the ISO 8601 `readAt`.
    pub read_at: i64,
}

impl MarkReadRequest {
    /// `max_ids` bounds `messageIds`.
    pub fn parse(event: &str, v: &Value, max_ids: usize) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        let read_at_raw = f.req_str("readAt")?;
        let read_at = crate::time::parse_iso8601(&read_at_raw).ok_or_else(|| {
            WireError::new(
                crate::ErrorCode::InvalidField,
                format!("{event}: `readAt` must be an ISO 8601 timestamp, got {read_at_raw:?}"),
            )
        })?;
        let message_ids = f.req_id_list("messageIds", max_ids)?;
        if message_ids.is_empty() {
            return Err(WireError::new(
                crate::ErrorCode::InvalidField,
                format!("{event}: `messageIds` must name at least one message"),
            ));
        }
        Ok(Self {
            common: Common::read(&f)?,
            user_id: f.opt_id("userId")?,
            message_ids,
            read_at,
        })
    }
}

// ---------------------------------------------------------------- server → client

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageEvent {
    pub chat_id: String,
    pub message_id: String,
    pub user_id: String,
    /// `humanAgent` for a human agent's message (CONTRACT §7.2).
    #[cfg_attr(test, ts(type = "\"user\" | \"humanAgent\""))]
    pub role: Cow<'static, str>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Value>,
    pub created_at: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The message's reactions (CONTRACT §7.3), in the join ack's `messages` when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Vec<ReactionWire>>,
    /// The attachments it carries (CONTRACT §7.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentWire>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Something about a turn its reader should know although the turn succeeded, e.g.
/// `tools_not_offered`: the model was not offered the turn's tools, because its provider cannot
/// call tools (the local model). `{code, message}` like an error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TurnWarning {
    pub code: String,
    pub message: String,
}

impl TurnWarning {
    /// The code of the warning that a turn's tools were not offered to its model.
    pub const TOOLS_NOT_OFFERED: &'static str = "tools_not_offered";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiMessageEvent {
    pub chat_id: String,
    pub message_id: String,
    #[cfg_attr(test, ts(type = "\"assistant\""))]
    pub role: Cow<'static, str>,
    pub text: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    pub request_id: String,
    pub finish_reason: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The message's reactions (CONTRACT §7.3), in the join ack's `messages` when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Vec<ReactionWire>>,
    /// What the turn did not do that its sender may expect (see [`TurnWarning`]); absent when
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<TurnWarning>>,
}

/// Either message shape, for the join ack's `messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(untagged)]
pub enum HistoryMessage {
    User(ChatMessageEvent),
    Assistant(AiMessageEvent),
}

impl HistoryMessage {
    pub fn message_id(&self) -> &str {
        match self {
            Self::User(m) => &m.message_id,
            Self::Assistant(m) => &m.message_id,
        }
    }

    pub fn set_reactions(&mut self, reactions: Vec<ReactionWire>) {
        match self {
            Self::User(m) => m.reactions = Some(reactions),
            Self::Assistant(m) => m.reactions = Some(reactions),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiErrorEvent {
    pub chat_id: String,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    pub request_id: String,
    pub retryable: bool,
    /// Present when the error ended a turn (it is then in the chat's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `ai:tool_result` from a member: `{chatId?, requestId?, toolCallId, result?, error?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResultRequest {
    pub common: Common,
    pub tool_call_id: String,
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl ToolResultRequest {
    pub fn parse(event: &str, data: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, data)?;
        let common = Common::read(&f)?;
        let tool_call_id = f.req_str("toolCallId")?;
        crate::fields::check_id_field(event, "toolCallId", &tool_call_id)?;
        // `result` and `error` together are refused by the core, on every face.
        let (result, error) = crate::fields::tool_outcome(data);
        Ok(Self {
            common,
            tool_call_id,
            result,
            error,
        })
    }
}

/// `ai:tool_call`: the model called a tool; `executor: "client"` asks a member to run it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiToolCallEvent {
    pub chat_id: String,
    pub request_id: String,
    pub message_id: String,
    pub tool_call_id: String,
    pub name: String,
    pub arguments: Value,
    #[cfg_attr(test, ts(type = "\"server\" | \"client\""))]
    pub executor: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `true` on a client-run call sent again after a `chat:join` without `lastSeq` because
    /// it still waits for an answer: its `seq` is at or below the join ack's, and a client
    /// applies it anyway (it is not in the ack's `messages`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
}

/// `ai:tool_result`: a tool call's outcome (exactly one of `result` and `error`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiToolResultEvent {
    pub chat_id: String,
    pub request_id: String,
    pub message_id: String,
    pub tool_call_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct MessageReadEvent {
    pub chat_id: String,
    pub user_id: String,
    pub message_ids: Vec<String>,
    pub read_at: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct PresenceUpdateEvent {
    pub chat_id: String,
    pub online_user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct TypingUpdateEvent {
    pub chat_id: String,
    pub user_id: String,
    pub typing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiProcessingEvent {
    pub chat_id: String,
    #[cfg_attr(test, ts(type = "\"queued\" | \"working\" | \"retrying\""))]
    pub status: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AiTokenEvent<'a> {
    pub chat_id: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub message_id: Cow<'a, str>,
    pub token: Cow<'a, str>,
    pub index: u64,
    /// Set when this event covers the run `index..=through` (a coalesced catch-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
}

/// The `error` event: a protocol-level error not tied to one ack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ServerErrorEvent {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// With `rate_limited`: when a retry may succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ServerErrorEvent {
    /// The `error` event for a refused client event (`event` names it) or a server notice.
    pub fn new(e: &WireError, event: Option<String>) -> Self {
        Self {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            event,
            retry_after_ms: e.retry_after_ms,
        }
    }
}

// ---------------------------------------------------------------- acks

/// `{ok: false, error: {code, message}}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct ErrorAck {
    #[cfg_attr(test, ts(type = "false"))]
    pub ok: bool,
    pub error: ErrorBody,
}

impl From<&WireError> for ErrorAck {
    fn from(e: &WireError) -> Self {
        Self {
            ok: false,
            error: e.body(),
        }
    }
}

/// `handoff:update` (CONTRACT §7.2): a chat's handoff state after a durable change
/// (`human_agent_requested`, `human_agent_joined`, `human_agent_left`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct HandoffUpdateEvent {
    pub chat_id: String,
    pub is_waiting_for_agent: bool,
    pub human_agent_engaged: bool,
    pub ai_engaged: bool,
    /// The agent who joined or left (absent for a request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// What happened: `human_agent_requested`, `human_agent_joined` or `human_agent_left`.
    #[cfg_attr(
        test,
        ts(type = "\"human_agent_requested\" | \"human_agent_joined\" | \"human_agent_left\"")
    )]
    pub reason: Cow<'static, str>,
    /// Epoch ms since the chat waits for an agent, while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<i64>,
    pub seq: u64,
}

/// The ack of `handoff:request`: the chat's handoff state (`seq` is the request's event, or
/// the chat's head when it was already waiting).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct HandoffAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub chat_id: String,
    pub is_waiting_for_agent: bool,
    pub human_agent_engaged: bool,
    pub ai_engaged: bool,
    pub seq: u64,
}

/// `reaction:add` / `reaction:remove` (CONTRACT §7.3): `{chatId?, messageId, emoji}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReactionRequest {
    pub common: Common,
    pub message_id: String,
    /// Checked by the core (one emoji; empty is `missing_field`).
    pub emoji: String,
}

impl ReactionRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        let common = Common::read(&f)?;
        let message_id = f.req_id("messageId")?;
        crate::fields::check_id_field(event, "messageId", &message_id)?;
        Ok(Self {
            common,
            message_id,
            emoji: f.req_text("emoji")?,
        })
    }
}

/// `chat:end {chatId?, reason?}` (CONTRACT §7.4).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEndRequest {
    pub common: Common,
    pub reason: Option<String>,
}

/// Longest `reason` of a `chat:end`, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

impl ChatEndRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        let common = Common::read(&f)?;
        let reason = f.opt_str("reason")?;
        if let Some(r) = &reason
            && r.len() > MAX_REASON_BYTES
        {
            return Err(WireError::new(
                crate::ErrorCode::TooLarge,
                format!("{event}: `reason` has at most {MAX_REASON_BYTES} bytes"),
            ));
        }
        Ok(Self { common, reason })
    }
}

/// `csat:submit {chatId?, rating, comment?}` (CONTRACT §7.4). The range of `rating` and the
/// length of `comment` are checked by the core, the same for every face.
#[derive(Debug, Clone, PartialEq)]
pub struct CsatSubmitRequest {
    pub common: Common,
    pub rating: i64,
    pub comment: Option<String>,
}

impl CsatSubmitRequest {
    pub fn parse(event: &str, v: &Value) -> Result<Self, WireError> {
        let f = Fields::new(event, v)?;
        let common = Common::read(&f)?;
        let rating = crate::fields::req_rating(event, v)?;
        Ok(Self {
            common,
            rating,
            comment: f.opt_str("comment")?,
        })
    }
}

/// An attachment as a message shows it (CONTRACT §7.6): `url` is where members download it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AttachmentWire {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    pub url: String,
    /// An image's size in pixels, when its header gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// A document attachment's processing moved on (CONTRACT §7.6): `status` `processing` (with
/// `percent` once known), then `complete` (`chars`, `pages` for a PDF) or `error`. No `seq`:
/// a client that missed it reads the state from the attachment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AttachmentProcessingEvent {
    pub chat_id: String,
    pub attachment_id: String,
    #[cfg_attr(test, ts(type = "\"processing\" | \"complete\" | \"error\""))]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chars: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorBody>,
}

/// One emoji reaction (seed 002's `EmojiReaction`; `createdAt` ISO 8601 on this face).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ReactionWire {
    pub emoji: String,
    pub user_id: String,
    pub created_at: String,
}

/// `reaction:update`: a message's whole reaction list after a reaction was added or removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ReactionUpdateEvent {
    pub chat_id: String,
    pub message_id: String,
    pub reactions: Vec<ReactionWire>,
    /// Who added or removed a reaction, and which.
    pub user_id: String,
    pub emoji: String,
    pub added: bool,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The ack of `reaction:add` / `reaction:remove`: the message's list now. `changed: false`
/// (and no `seq`) when nothing changed: the reaction was already there, or not there to
/// remove; no event was logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ReactionAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub chat_id: String,
    pub message_id: String,
    pub reactions: Vec<ReactionWire>,
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// The ack of `chat:end` and `csat:submit`: the `seq` of the event logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct SeqAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub chat_id: String,
    pub seq: u64,
}

/// `csat:request`: a customer is asked to rate the chat that just ended (CONTRACT §7.4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct CsatRequestEvent {
    pub chat_id: String,
    /// The `seq` of the `chat:ended` that asked.
    pub seq: u64,
}

/// `csat:submitted`: a member's CSAT answer was stored (a later one replaces it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct CsatSubmittedEvent {
    pub chat_id: String,
    pub user_id: String,
    pub rating: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub submitted_at: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `chat:updated`: the chat was renamed and/or (un)pinned (history `PATCH`). Absent fields
/// did not change; `title: ""` cleared it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ChatUpdatedEvent {
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    pub seq: u64,
}

/// `chat:ended`: the chat was ended (`chat:end`, seed 002 `/end`); its status is `closed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ChatEndedEvent {
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seq: u64,
}

/// `chat:deleted`: the chat and its log are gone; the socket is taken out of it. No `seq`
/// (the log it would belong to no longer exists).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ChatDeletedEvent {
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

/// `message:superseded`: an assistant message was regenerated; it leaves history and the
/// turn `requestId` (which follows) replaces it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct MessageSupersededEvent {
    pub chat_id: String,
    pub message_id: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    pub seq: u64,
}

/// `{ok: true}` for events that return nothing else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct OkAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
}

impl OkAck {
    pub const OK: OkAck = OkAck { ok: true };
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct JoinAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub chat_id: String,
    pub seq: u64,
    pub epoch: String,
    pub recovered: bool,
    pub online_user_ids: Vec<String>,
    pub messages: Vec<HistoryMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct UserMessageAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub message_id: String,
    pub seq: u64,
    pub chat_id: String,
    /// True when this `messageId` was already stored: nothing new happened.
    pub duplicate: bool,
}

/// The ack of `meta:events:request`: `{ok: true, version, events}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct DiscoveryAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    #[serde(flatten)]
    pub body: crate::events::DiscoveryResponse,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AbortAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct MarkReadAck {
    #[cfg_attr(test, ts(type = "true"))]
    pub ok: bool,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn reaction_end_and_csat_requests() {
        let r = ReactionRequest::parse(
            "reaction:add",
            &serde_json::json!({"chatId": 7, "messageId": 12, "emoji": "👍"}),
        )
        .unwrap();
        assert_eq!(
            (
                r.common.chat_id.as_deref(),
                r.message_id.as_str(),
                r.emoji.as_str()
            ),
            (Some("7"), "12", "👍")
        );
        let e = ReactionRequest::parse("reaction:add", &serde_json::json!({"messageId": "m"}));
        assert_eq!(e.unwrap_err().code, ErrorCode::MissingField);
        let e = ReactionRequest::parse(
            "reaction:add",
            &serde_json::json!({"messageId": "m", "emoji": 1}),
        );
        assert_eq!(e.unwrap_err().code, ErrorCode::InvalidField);

        let c = CsatSubmitRequest::parse("csat:submit", &serde_json::json!({"rating": 4.0}));
        assert_eq!(c.unwrap().rating, 4);
        for (v, code) in [
            (serde_json::json!({}), ErrorCode::MissingField),
            (serde_json::json!({"rating": null}), ErrorCode::MissingField),
            (serde_json::json!({"rating": 4.5}), ErrorCode::InvalidField),
            (serde_json::json!({"rating": "4"}), ErrorCode::InvalidField),
            (
                serde_json::json!({"rating": 1e300}),
                ErrorCode::InvalidField,
            ),
            (
                serde_json::json!({"rating": 4, "comment": []}),
                ErrorCode::InvalidField,
            ),
        ] {
            let e = CsatSubmitRequest::parse("csat:submit", &v).unwrap_err();
            assert_eq!(e.code, code, "{v}");
        }
        let end = ChatEndRequest::parse("chat:end", &serde_json::json!({"reason": "done"}));
        assert_eq!(end.unwrap().reason.as_deref(), Some("done"));
        let e = ChatEndRequest::parse("chat:end", &serde_json::json!({"reason": "x".repeat(2000)}));
        assert_eq!(e.unwrap_err().code, ErrorCode::TooLarge);
    }
    use serde_json::json;

    #[test]
    fn user_message_parse() {
        let m = UserMessageRequest::parse(
            "user:message",
            &json!({"chatId": 7, "messageId": "m1", "userId": "u", "text": "hi", "extra": 1}),
        )
        .unwrap();
        assert_eq!(m.common.chat_id.as_deref(), Some("7"));
        assert_eq!(m.text, "hi");
        let e = UserMessageRequest::parse("user:message", &json!({"messageId": "m1"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("text"));
        let e = UserMessageRequest::parse("user:message", &json!({"messageId": "m", "text": 5}))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
    }

    #[test]
    fn read_at_must_be_iso() {
        let e = MarkReadRequest::parse(
            "message:read",
            &json!({"messageIds": ["a"], "readAt": "yesterday"}),
            10,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
    }

    #[test]
    fn token_event_shape() {
        let t = AiTokenEvent {
            chat_id: "c".into(),
            request_id: "r".into(),
            message_id: "m".into(),
            token: "hi".into(),
            index: 3,
            through: None,
        };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"chatId":"c","requestId":"r","messageId":"m","token":"hi","index":3})
        );
    }
}
