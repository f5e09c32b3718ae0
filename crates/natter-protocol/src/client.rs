//! Client → server payloads of the Socket.IO face (CONTRACT §1), as a client writes them.
//!
//! The server reads these events field by field ([`crate::socketio`]'s `*Request::parse`) so
//! that every bad field gets its own error; clients build them from these structs. The two are
//! kept in step by the round-trip tests below, and these structs are what the TypeScript
//! `ChatEvents` is generated from (`src/typescript.rs`), so the shapes are written once here.
//!
//! A client may merge extra fields (seed 001's `meta`) into any payload; the server ignores
//! fields it does not know.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `chat:join`: join a chat's room, replaying what was missed after `lastSeq` (same `epoch`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct JoinPayload {
    /// A number is accepted too and read as its decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// When this join creates the chat: the only users who may use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// When this join creates the chat: the agent (`GET /api/v1/agents`) it is bound to; on
    /// an existing chat, the one it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `chat:leave`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct LeavePayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `handoff:request`: the customer asks for a human agent (CONTRACT §7.2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct HandoffRequestPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `reaction:add` / `reaction:remove`: a reaction on a message (CONTRACT §7.3).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ReactionPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    pub message_id: String,
    /// One emoji: 1-8 Unicode scalar values, at most 32 bytes, no whitespace.
    pub emoji: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `chat:end`: ends the chat (its status becomes `closed`); customers get `csat:request`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ChatEndPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `csat:submit`: the customer's rating of the chat (CONTRACT §7.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct CsatSubmitPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    /// 1 to 5.
    pub rating: u8,
    /// At most 2,000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `user:message`: stored durably, broadcast as `chat:message`, and (by default) answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct UserMessagePayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    /// The client's id for the message; sending the same id twice stores it once.
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub user_id: Option<String>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        ts(
            type = "Array<{ type: \"text\" | \"image\" | \"file\"; value: unknown }>",
            optional
        )
    )]
    pub parts: Option<Vec<Value>>,
    /// Correlates the turn's events (`ai:token`, `ai:message`, …) with this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Client-run tools offered to the model for this message only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ClientTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Attachments uploaded to this chat (`POST /api/v1/attachments`) that the message
    /// carries, at most 10 (CONTRACT §7.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentRef>>,
}

/// A reference to an uploaded attachment, by the `id` the upload answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AttachmentRef {
    pub id: String,
}

/// A tool that a client runs, declared on one `user:message`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct ClientTool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema for the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `typing:start` / `typing:stop`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct TypingPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `ai:abort`: cancels the running turn (of `requestId`, when given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct AbortPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `message:read` (client → server): read receipts, stored per user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct MarkReadPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub user_id: Option<String>,
    pub message_ids: Vec<String>,
    /// ISO 8601.
    pub read_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `ai:tool_result` (client → server): the outcome of a tool the server asked a client to run;
/// exactly one of `result` and `error`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ToolResultPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(type = "string | number", optional))]
    pub chat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub tool_call_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `auth:refresh`: a fresh token for a connected socket, before the old one expires.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct AuthRefreshPayload {
    pub token: String,
}

/// `meta:events:request`: asks for the event names in force (`meta:events:response`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryRequestPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    //! Each payload, with every field set, is read back by the server's own parser unchanged:
    //! a field renamed on one side only fails here.

    use super::*;
    use crate::socketio::{
        AbortRequest, AuthRefreshRequest, JoinRequest, MarkReadRequest, PlainRequest,
        ToolResultRequest, TypingRequest, UserMessageRequest,
    };
    use serde_json::json;

    fn wire<T: Serialize>(payload: &T) -> Value {
        serde_json::to_value(payload).unwrap()
    }

    #[test]
    fn join_reads_back() {
        let p = JoinPayload {
            chat_id: Some("c1".into()),
            user_id: Some("u1".into()),
            last_seq: Some(7),
            epoch: Some("e".into()),
            members: Some(vec!["u1".into(), "u2".into()]),
            agent_id: Some("support".into()),
            trace_id: Some("t".into()),
        };
        let r = JoinRequest::parse("chat:join", &wire(&p)).unwrap();
        assert_eq!(r.common.chat_id, p.chat_id);
        assert_eq!(r.common.trace_id, p.trace_id);
        assert_eq!(r.user_id, p.user_id);
        assert_eq!(r.last_seq, p.last_seq);
        assert_eq!(r.epoch, p.epoch);
        assert_eq!(r.members, p.members);
        assert_eq!(r.agent_id, p.agent_id);
    }

    #[test]
    fn leave_and_discovery_read_back() {
        let p = LeavePayload {
            chat_id: Some("c1".into()),
            trace_id: Some("t".into()),
        };
        let r = PlainRequest::parse("chat:leave", &wire(&p)).unwrap();
        assert_eq!(r.common.chat_id, p.chat_id);
        assert_eq!(r.common.trace_id, p.trace_id);
        let d = DiscoveryRequestPayload {
            trace_id: Some("t2".into()),
        };
        let r = PlainRequest::parse("meta:events:request", &wire(&d)).unwrap();
        assert_eq!(r.common.trace_id, d.trace_id);
    }

    #[test]
    fn user_message_reads_back() {
        let p = UserMessagePayload {
            chat_id: Some("c1".into()),
            message_id: "m1".into(),
            user_id: Some("u1".into()),
            text: "hi".into(),
            parts: Some(vec![json!({"type": "text", "value": "hi"})]),
            request_id: Some("r1".into()),
            tools: Some(vec![ClientTool {
                name: "pick".into(),
                description: Some("picks".into()),
                parameters: Some(json!({"type": "object"})),
            }]),
            trace_id: Some("t".into()),
            attachments: Some(vec![AttachmentRef { id: "a1".into() }]),
        };
        let r = UserMessageRequest::parse("user:message", &wire(&p)).unwrap();
        assert_eq!(r.attachments, vec!["a1".to_owned()]);
        assert_eq!(r.common.chat_id, p.chat_id);
        assert_eq!(r.common.trace_id, p.trace_id);
        assert_eq!(r.message_id, p.message_id);
        assert_eq!(r.user_id, p.user_id);
        assert_eq!(r.text, p.text);
        assert_eq!(r.parts, Some(json!([{"type": "text", "value": "hi"}])));
        assert_eq!(r.request_id, p.request_id);
        assert_eq!(
            r.tools,
            Some(
                json!([{"name": "pick", "description": "picks", "parameters": {"type": "object"}}])
            )
        );
    }

    #[test]
    fn typing_abort_and_refresh_read_back() {
        let t = TypingPayload {
            chat_id: Some("c1".into()),
            user_id: Some("u1".into()),
            trace_id: Some("t".into()),
        };
        let r = TypingRequest::parse("typing:start", &wire(&t)).unwrap();
        assert_eq!(
            (r.common.chat_id, r.user_id, r.common.trace_id),
            (t.chat_id, t.user_id, t.trace_id)
        );
        let a = AbortPayload {
            chat_id: Some("c1".into()),
            request_id: Some("r".into()),
            reason: Some("stop".into()),
            trace_id: Some("t".into()),
        };
        let r = AbortRequest::parse("ai:abort", &wire(&a)).unwrap();
        assert_eq!(
            (r.common.chat_id, r.request_id, r.reason, r.common.trace_id),
            (a.chat_id, a.request_id, a.reason, a.trace_id)
        );
        let f = AuthRefreshPayload {
            token: "tok".into(),
        };
        let r = AuthRefreshRequest::parse("auth:refresh", &wire(&f)).unwrap();
        assert_eq!(r.token, f.token);
    }

    #[test]
    fn mark_read_reads_back() {
        let p = MarkReadPayload {
            chat_id: Some("c1".into()),
            user_id: Some("u1".into()),
            message_ids: vec!["m1".into(), "m2".into()],
            read_at: "2026-01-02T03:04:05.678Z".into(),
            trace_id: Some("t".into()),
        };
        let r = MarkReadRequest::parse("message:read", &wire(&p), 10).unwrap();
        assert_eq!(r.common.chat_id, p.chat_id);
        assert_eq!(r.user_id, p.user_id);
        assert_eq!(r.message_ids, p.message_ids);
        assert_eq!(crate::time::iso8601(r.read_at), p.read_at);
    }

    #[test]
    fn tool_result_reads_back() {
        let p = ToolResultPayload {
            chat_id: Some("c1".into()),
            request_id: Some("r".into()),
            tool_call_id: "call-1".into(),
            result: Some(json!({"temp": 21})),
            error: None,
            trace_id: Some("t".into()),
        };
        let r = ToolResultRequest::parse("ai:tool_result", &wire(&p)).unwrap();
        assert_eq!(r.common.chat_id, p.chat_id);
        assert_eq!(r.tool_call_id, p.tool_call_id);
        assert_eq!(r.result, p.result);
        assert_eq!(r.error, None);
        let failed = ToolResultPayload {
            result: None,
            error: Some("no such city".into()),
            ..p
        };
        let r = ToolResultRequest::parse("ai:tool_result", &wire(&failed)).unwrap();
        assert_eq!(r.error, failed.error);
    }
}
