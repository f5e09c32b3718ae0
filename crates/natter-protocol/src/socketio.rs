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
    #[cfg_attr(test, ts(type = "\"user\""))]
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
}

/// Either message shape, for the join ack's `messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(untagged)]
pub enum HistoryMessage {
    User(ChatMessageEvent),
    Assistant(AiMessageEvent),
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
