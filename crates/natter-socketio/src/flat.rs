//! Seed 004's flat naming profile (CONTRACT §1, last paragraph; `docs/protocol.md`, "Seed 004's
//! flat profile"). A connection whose handshake says `profile=flat` gets every server→client
//! event as one `message` event `{type, content, conversation_id, timestamp, metadata}`, and
//! may send `message`, `join` and `leave` in that style.
//!
//! The mapping is one way of naming the same events: outbound, it is computed from the
//! contract payload that the default profile would send ([`from_contract`]); inbound, a flat
//! payload is turned into the contract payload of the event it stands for ([`FlatIn::translate`])
//! and handled by the same handler. Pure functions, no I/O.

use natter_protocol::fields::{Fields, check_id_field};
use natter_protocol::{ErrorCode, EventKey, WireError};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::identity::Handshake;

/// The one event name of the flat profile, both ways.
pub const EVENT: &str = "message";

/// How a connection names its events, chosen by the handshake's `profile`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    /// The contract's event names and payloads (CONTRACT §1).
    #[default]
    Default,
    /// Seed 004's single `message` event.
    Flat,
}

impl Profile {
    /// The profile a handshake asks for (`auth.profile`, else query `profile`): absent or
    /// `default` is the default profile, `flat` the flat one; anything else is refused.
    pub fn from_handshake(h: &Handshake) -> Result<Self, WireError> {
        match h.field("profile").as_deref() {
            None | Some("default") => Ok(Self::Default),
            Some("flat") => Ok(Self::Flat),
            Some(other) => {
                // Echo a bounded prefix: the value is the client's and may be long.
                let shown: String = other.chars().take(64).collect();
                Err(WireError::new(
                    ErrorCode::InvalidField,
                    format!("handshake: `profile` must be `flat` or `default`, got {shown:?}"),
                ))
            }
        }
    }
}

/// The `type` of a flat message (seed 004's `WebSocketMessage.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlatType {
    MessageReceived,
    Typing,
    Token,
    MessageComplete,
    Error,
    Chunk,
    System,
}

/// One server→client event in the flat profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlatMessage {
    #[serde(rename = "type")]
    pub kind: FlatType,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// ISO 8601: the event's `createdAt` / `readAt` when it has one, else when it was sent.
    pub timestamp: String,
    pub metadata: Map<String, Value>,
}

/// Copies the present, non-null `fields` of `payload`, in order.
fn pick(payload: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| {
            payload
                .get(*f)
                .filter(|v| !v.is_null())
                .map(|v| ((*f).to_owned(), v.clone()))
        })
        .collect()
}

fn str_field(payload: &Value, field: &str) -> Option<String> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The flat form of a server→client event, from the contract payload the default profile
/// sends for `key`. `chat_id` names the chat when the payload has no `chatId` (the `error`
/// event); `now` (epoch ms) is the timestamp of an event that carries none.
pub fn from_contract(
    key: EventKey,
    payload: &Value,
    chat_id: Option<&str>,
    now: i64,
) -> FlatMessage {
    let text = |field: &str| str_field(payload, field).unwrap_or_default();
    let (kind, content, metadata) = match key {
        EventKey::ChatMessage => (
            FlatType::MessageReceived,
            text("text"),
            pick(
                payload,
                &[
                    "messageId",
                    "userId",
                    "role",
                    "seq",
                    "requestId",
                    "parts",
                    "traceId",
                ],
            ),
        ),
        EventKey::AiToken => {
            // A catch-up event covering `index..=through` (CONTRACT §6.4) is a `chunk`.
            let kind = if payload.get("through").is_some_and(|t| !t.is_null()) {
                FlatType::Chunk
            } else {
                FlatType::Token
            };
            (
                kind,
                text("token"),
                pick(payload, &["messageId", "requestId", "index", "through"]),
            )
        }
        EventKey::AiMessage => (
            FlatType::MessageComplete,
            text("text"),
            pick(
                payload,
                &[
                    "messageId",
                    "requestId",
                    "finishReason",
                    "usage",
                    "seq",
                    "options",
                    "traceId",
                    "warnings",
                ],
            ),
        ),
        EventKey::AiError => (
            FlatType::Error,
            text("message"),
            pick(
                payload,
                &[
                    "code",
                    "retryable",
                    "requestId",
                    "seq",
                    "details",
                    "traceId",
                ],
            ),
        ),
        EventKey::ServerError => (
            FlatType::Error,
            text("message"),
            pick(payload, &["code", "event", "retryAfterMs"]),
        ),
        EventKey::TypingUpdate => (
            FlatType::Typing,
            String::new(),
            pick(payload, &["userId", "typing", "traceId"]),
        ),
        // presence:update, ai:processing, message:read, ai:tool_call, ai:tool_result,
        // meta:events:response: the whole contract payload, named by its contract event.
        other => (
            FlatType::System,
            other.default_name().to_owned(),
            match payload {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            },
        ),
    };
    let timestamp = ["createdAt", "readAt"]
        .iter()
        .find_map(|f| str_field(payload, f))
        .unwrap_or_else(|| natter_protocol::time::iso8601(now));
    FlatMessage {
        kind,
        content,
        conversation_id: str_field(payload, "chatId").or_else(|| chat_id.map(str::to_owned)),
        timestamp,
        metadata,
    }
}

/// A server→client event as one connection's profile names it. Serializes as its payload,
/// so it can be handed to `emit` directly.
pub enum Outbound<'a, T: ?Sized> {
    /// The contract's wire name and payload.
    Contract(&'a str, &'a T),
    /// The flat profile's `message`.
    Flat(FlatMessage),
}

impl<'a, T: Serialize + ?Sized> Outbound<'a, T> {
    /// `name` is the wire name in force for `key`; `chat_id` as in [`from_contract`].
    /// `None` only if the payload cannot be serialized (a bug; logged).
    pub fn new(
        profile: Profile,
        key: EventKey,
        name: &'a str,
        payload: &'a T,
        chat_id: Option<&str>,
    ) -> Option<Self> {
        match profile {
            Profile::Default => Some(Self::Contract(name, payload)),
            Profile::Flat => match serde_json::to_value(payload) {
                Ok(v) => Some(Self::Flat(from_contract(
                    key,
                    &v,
                    chat_id,
                    natter_protocol::time::now_millis(),
                ))),
                Err(e) => {
                    tracing::error!(error = %e, ?key, "serializing an outgoing event failed");
                    None
                }
            },
        }
    }

    /// The wire name to emit under.
    pub fn name(&self) -> &str {
        match self {
            Self::Contract(name, _) => name,
            Self::Flat(_) => EVENT,
        }
    }
}

impl<T: Serialize + ?Sized> Serialize for Outbound<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Contract(_, payload) => payload.serialize(s),
            Self::Flat(message) => message.serialize(s),
        }
    }
}

/// The client→server events of the flat profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatIn {
    /// `message {type?, content, conversation_id?, metadata?}`
    Message,
    /// `join {conversation_id, last_seq?, epoch?}`
    Join,
    /// `leave {conversation_id?}`
    Leave,
}

impl FlatIn {
    pub const ALL: &'static [FlatIn] = &[Self::Message, Self::Join, Self::Leave];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Message => EVENT,
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }

    /// The contract event this payload stands for, and its contract payload. `new_message_id`
    /// names a user message that carries no id of its own.
    pub fn translate(
        self,
        data: &Value,
        new_message_id: impl FnOnce() -> String,
    ) -> Result<(EventKey, Value), WireError> {
        let event = self.name();
        let f = Fields::new(event, data)?;
        let chat_id = f.opt_id("conversation_id")?;
        if let Some(id) = &chat_id {
            check_id_field(event, "conversation_id", id)?;
        }
        let trace_id = f.opt_str("traceId")?;
        let mut out = Map::new();
        out.insert("chatId".into(), json!(chat_id));
        out.insert("traceId".into(), json!(trace_id));
        let key = match self {
            Self::Join => {
                if chat_id.is_none() {
                    return Err(WireError::new(
                        ErrorCode::MissingField,
                        "join: `conversation_id` is required",
                    ));
                }
                let last_seq = match f.opt_u64("last_seq")? {
                    Some(s) => Some(s),
                    None => f.opt_u64("lastSeq")?,
                };
                out.insert("lastSeq".into(), json!(last_seq));
                out.insert("epoch".into(), json!(f.opt_str("epoch")?));
                out.insert("userId".into(), json!(either_id(&f, "user_id", "userId")?));
                EventKey::Join
            }
            Self::Leave => EventKey::Leave,
            Self::Message => return translate_message(&f, out, new_message_id),
        };
        Ok((key, Value::Object(out)))
    }
}

/// An id under its snake_case or camelCase name (seed 004 uses snake_case; both are taken).
fn either_id(f: &Fields<'_>, snake: &str, camel: &str) -> Result<Option<String>, WireError> {
    let id = match f.opt_id(snake)? {
        Some(id) => Some((snake, id)),
        None => f.opt_id(camel)?.map(|id| (camel, id)),
    };
    match id {
        Some((field, id)) => {
            check_id_field(f.event(), field, &id)?;
            Ok(Some(id))
        }
        None => Ok(None),
    }
}

/// A string under its snake_case or camelCase name.
fn either_str(f: &Fields<'_>, snake: &str, camel: &str) -> Result<Option<String>, WireError> {
    match f.opt_str(snake)? {
        Some(s) => Ok(Some(s)),
        None => f.opt_str(camel),
    }
}

/// `message`: by `type`, a user message, typing, or an abort.
fn translate_message(
    f: &Fields<'_>,
    mut out: Map<String, Value>,
    new_message_id: impl FnOnce() -> String,
) -> Result<(EventKey, Value), WireError> {
    let empty = Value::Object(Map::new());
    let metadata = f.opt_object("metadata")?.unwrap_or(empty);
    let meta = Fields::new("message: metadata", &metadata)?;
    let kind = f.opt_str("type")?;
    let key = match kind.as_deref() {
        None | Some("message") => {
            let text = f.req_text("content")?;
            let message_id = match either_id(&meta, "message_id", "messageId")? {
                Some(id) => id,
                None => new_message_id(),
            };
            out.insert("messageId".into(), json!(message_id));
            out.insert("text".into(), json!(text));
            out.insert(
                "userId".into(),
                json!(either_id(&meta, "user_id", "userId")?),
            );
            let request_id = either_str(&meta, "request_id", "requestId")?;
            if let Some(id) = &request_id {
                check_id_field("message: metadata", "request_id", id)?;
            }
            out.insert("requestId".into(), json!(request_id));
            out.insert("parts".into(), json!(meta.opt_array("parts")?));
            EventKey::UserMessage
        }
        Some("typing") => {
            out.insert(
                "userId".into(),
                json!(either_id(&meta, "user_id", "userId")?),
            );
            if meta.opt_bool("typing")?.unwrap_or(true) {
                EventKey::TypingStart
            } else {
                EventKey::TypingStop
            }
        }
        Some("abort" | "stop") => {
            out.insert(
                "requestId".into(),
                json!(either_str(&meta, "request_id", "requestId")?),
            );
            out.insert("reason".into(), json!(meta.opt_str("reason")?));
            EventKey::Abort
        }
        Some(other) => {
            let shown: String = other.chars().take(64).collect();
            return Err(WireError::new(
                ErrorCode::UnknownEvent,
                format!(
                    "message: unknown `type` {shown:?}; a client sends `message` (the default), `typing`, `abort` or `stop`"
                ),
            ));
        }
    };
    Ok((key, Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_763_790_000_123;
    const NOW_ISO: &str = "2025-11-22T05:40:00.123Z";

    fn flat(key: EventKey, payload: Value) -> Value {
        serde_json::to_value(from_contract(key, &payload, None, NOW)).unwrap()
    }

    #[test]
    fn profile_from_handshake() {
        let p = |q: &str| Profile::from_handshake(&Handshake::new(Some(q), None));
        assert_eq!(p("").unwrap(), Profile::Default);
        assert_eq!(p("profile=default").unwrap(), Profile::Default);
        assert_eq!(p("profile=flat").unwrap(), Profile::Flat);
        let e = p("profile=FLAT").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(e.message.contains("profile") && e.message.contains("FLAT"));
        // `auth` wins over the query, as for every handshake field.
        let h = Handshake::new(Some("profile=xml"), Some(json!({"profile": "flat"})));
        assert_eq!(Profile::from_handshake(&h).unwrap(), Profile::Flat);
        let long = format!("profile={}", "x".repeat(1000));
        assert!(p(&long).unwrap_err().message.len() < 200);
    }

    #[test]
    fn chat_message_is_message_received() {
        let out = flat(
            EventKey::ChatMessage,
            json!({"chatId": "c1", "messageId": "m1", "userId": "ann", "role": "user",
                   "text": "hi", "createdAt": "2026-01-02T03:04:05.006Z", "seq": 4,
                   "requestId": "r1"}),
        );
        assert_eq!(
            out,
            json!({"type": "message_received", "content": "hi", "conversation_id": "c1",
                   "timestamp": "2026-01-02T03:04:05.006Z",
                   "metadata": {"messageId": "m1", "userId": "ann", "role": "user", "seq": 4,
                                "requestId": "r1"}})
        );
    }

    #[test]
    fn tokens_and_merged_chunks() {
        let token = flat(
            EventKey::AiToken,
            json!({"chatId": "c", "requestId": "r", "messageId": "m", "token": "he", "index": 0}),
        );
        assert_eq!(
            token,
            json!({"type": "token", "content": "he", "conversation_id": "c", "timestamp": NOW_ISO,
                   "metadata": {"messageId": "m", "requestId": "r", "index": 0}})
        );
        let chunk = flat(
            EventKey::AiToken,
            json!({"chatId": "c", "requestId": "r", "messageId": "m", "token": "llo",
                   "index": 1, "through": 3}),
        );
        assert_eq!(chunk["type"], "chunk");
        assert_eq!(chunk["content"], "llo");
        assert_eq!(
            chunk["metadata"],
            json!({"messageId": "m", "requestId": "r", "index": 1, "through": 3})
        );
    }

    #[test]
    fn ai_message_is_message_complete() {
        let out = flat(
            EventKey::AiMessage,
            json!({"chatId": "c", "messageId": "m", "role": "assistant", "text": "hello",
                   "createdAt": "2026-01-02T03:04:05.006Z", "requestId": "r",
                   "finishReason": "stop", "seq": 5,
                   "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3},
                   "warnings": [{"code": "tools_not_offered", "message": "m"}]}),
        );
        assert_eq!(out["type"], "message_complete");
        assert_eq!(out["content"], "hello");
        assert_eq!(out["timestamp"], "2026-01-02T03:04:05.006Z");
        assert_eq!(
            out["metadata"],
            json!({"messageId": "m", "requestId": "r", "finishReason": "stop",
                   "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3},
                   "seq": 5, "warnings": [{"code": "tools_not_offered", "message": "m"}]})
        );
    }

    #[test]
    fn errors() {
        let turn = flat(
            EventKey::AiError,
            json!({"chatId": "c", "code": "timeout", "message": "too slow", "requestId": "r",
                   "retryable": true, "seq": 7, "details": {"partialText": "ab"}}),
        );
        assert_eq!(turn["type"], "error");
        assert_eq!(turn["content"], "too slow");
        assert_eq!(turn["conversation_id"], "c");
        assert_eq!(
            turn["metadata"],
            json!({"code": "timeout", "retryable": true, "requestId": "r", "seq": 7,
                   "details": {"partialText": "ab"}})
        );
        // The protocol `error` has no chatId: the chat comes from the caller, when known.
        let protocol = json!({"code": "not_joined", "message": "no", "event": "message"});
        let out = serde_json::to_value(from_contract(
            EventKey::ServerError,
            &protocol,
            Some("c9"),
            NOW,
        ))
        .unwrap();
        assert_eq!(
            out,
            json!({"type": "error", "content": "no", "conversation_id": "c9", "timestamp": NOW_ISO,
                   "metadata": {"code": "not_joined", "event": "message"}})
        );
        let unscoped = flat(EventKey::ServerError, protocol);
        assert!(unscoped.get("conversation_id").is_none());
    }

    #[test]
    fn typing_and_system_events() {
        let typing = flat(
            EventKey::TypingUpdate,
            json!({"chatId": "c", "userId": "bob", "typing": false}),
        );
        assert_eq!(
            typing,
            json!({"type": "typing", "content": "", "conversation_id": "c", "timestamp": NOW_ISO,
                   "metadata": {"userId": "bob", "typing": false}})
        );
        let presence = json!({"chatId": "c", "onlineUserIds": ["ann", "bob"]});
        let out = flat(EventKey::PresenceUpdate, presence.clone());
        assert_eq!(out["type"], "system");
        assert_eq!(out["content"], "presence:update");
        assert_eq!(out["metadata"], presence);
        let read = json!({"chatId": "c", "userId": "ann", "messageIds": ["m"],
                          "readAt": "2026-01-02T03:04:05.006Z", "seq": 9});
        let out = flat(EventKey::ReadReceipt, read.clone());
        assert_eq!(out["content"], "message:read");
        assert_eq!(out["timestamp"], "2026-01-02T03:04:05.006Z");
        assert_eq!(out["metadata"], read);
        for (key, name) in [
            (EventKey::AiProcessing, "ai:processing"),
            (EventKey::AiToolCall, "ai:tool_call"),
            (EventKey::AiToolResult, "ai:tool_result"),
        ] {
            let out = flat(key, json!({"chatId": "c", "requestId": "r"}));
            assert_eq!(
                (out["type"].clone(), out["content"].clone()),
                (json!("system"), json!(name))
            );
        }
    }

    #[test]
    fn outbound_serializes_as_its_payload() {
        let payload = json!({"chatId": "c", "userId": "u", "typing": true});
        let plain = Outbound::new(
            Profile::Default,
            EventKey::TypingUpdate,
            "typing:update",
            &payload,
            None,
        )
        .unwrap();
        assert_eq!(plain.name(), "typing:update");
        assert_eq!(serde_json::to_value(&plain).unwrap(), payload);
        let flat = Outbound::new(
            Profile::Flat,
            EventKey::TypingUpdate,
            "typing:update",
            &payload,
            None,
        )
        .unwrap();
        assert_eq!(flat.name(), "message");
        assert_eq!(serde_json::to_value(&flat).unwrap()["type"], "typing");
    }

    fn inbound(ev: FlatIn, data: Value) -> Result<(EventKey, Value), WireError> {
        ev.translate(&data, || "generated".to_owned())
    }

    #[test]
    fn inbound_user_message() {
        let (key, p) = inbound(
            FlatIn::Message,
            json!({"content": "hi", "conversation_id": 42,
                   "metadata": {"message_id": "m1", "user_id": "ann", "request_id": "r1"}}),
        )
        .unwrap();
        assert_eq!(key, EventKey::UserMessage);
        assert_eq!(
            p,
            json!({"chatId": "42", "traceId": null, "messageId": "m1", "text": "hi",
                   "userId": "ann", "requestId": "r1", "parts": null})
        );
        // The contract's own parser takes the translation as is.
        natter_protocol::socketio::UserMessageRequest::parse("message", &p).unwrap();
        let (_, p) = inbound(
            FlatIn::Message,
            json!({"type": "message", "content": "", "metadata": {"messageId": "m2"}}),
        )
        .unwrap();
        assert_eq!(p["messageId"], "m2");
        assert_eq!(p["chatId"], Value::Null);
        let (_, p) = inbound(FlatIn::Message, json!({"content": "x"})).unwrap();
        assert_eq!(p["messageId"], "generated");
    }

    #[test]
    fn inbound_typing_and_abort() {
        let key = |data| inbound(FlatIn::Message, data).unwrap().0;
        assert_eq!(key(json!({"type": "typing"})), EventKey::TypingStart);
        assert_eq!(
            key(json!({"type": "typing", "metadata": {"typing": true}})),
            EventKey::TypingStart
        );
        assert_eq!(
            key(json!({"type": "typing", "metadata": {"typing": false}})),
            EventKey::TypingStop
        );
        let (k, p) = inbound(
            FlatIn::Message,
            json!({"type": "stop", "conversation_id": "c", "metadata": {"requestId": "r", "reason": "user"}}),
        )
        .unwrap();
        assert_eq!(k, EventKey::Abort);
        assert_eq!(p["requestId"], "r");
        assert_eq!(p["reason"], "user");
        assert_eq!(key(json!({"type": "abort"})), EventKey::Abort);
    }

    #[test]
    fn inbound_join_and_leave() {
        let (k, p) = inbound(
            FlatIn::Join,
            json!({"conversation_id": "c", "last_seq": 3, "epoch": "e"}),
        )
        .unwrap();
        assert_eq!(k, EventKey::Join);
        assert_eq!(p["chatId"], "c");
        assert_eq!(p["lastSeq"], 3);
        assert_eq!(p["epoch"], "e");
        let parsed = natter_protocol::socketio::JoinRequest::parse("join", &p).unwrap();
        assert_eq!(parsed.last_seq, Some(3));
        let (_, p) = inbound(FlatIn::Join, json!({"conversation_id": "c", "lastSeq": 5})).unwrap();
        assert_eq!(p["lastSeq"], 5);
        let e = inbound(FlatIn::Join, json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("conversation_id"));
        let (k, p) = inbound(FlatIn::Leave, json!({"conversation_id": "c"})).unwrap();
        assert_eq!((k, p["chatId"].clone()), (EventKey::Leave, json!("c")));
    }

    #[test]
    fn inbound_refusals() {
        let code = |ev, data| inbound(ev, data).unwrap_err().code;
        assert_eq!(
            code(FlatIn::Message, json!("hi")),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(FlatIn::Message, Value::Null),
            ErrorCode::InvalidPayload
        );
        assert_eq!(code(FlatIn::Message, json!({})), ErrorCode::MissingField);
        assert_eq!(
            code(FlatIn::Message, json!({"content": 5})),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(FlatIn::Message, json!({"type": 1, "content": "x"})),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(FlatIn::Message, json!({"content": "x", "metadata": []})),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(
                FlatIn::Message,
                json!({"type": "typing", "metadata": {"typing": "yes"}})
            ),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(
                FlatIn::Message,
                json!({"content": "x", "conversation_id": "c".repeat(300)})
            ),
            ErrorCode::TooLarge
        );
        assert_eq!(
            code(
                FlatIn::Message,
                json!({"content": "x", "metadata": {"message_id": "m".repeat(300)}})
            ),
            ErrorCode::TooLarge
        );
        assert_eq!(
            code(
                FlatIn::Join,
                json!({"conversation_id": "c", "last_seq": -1})
            ),
            ErrorCode::InvalidField
        );
        let e = inbound(FlatIn::Message, json!({"type": "dance", "content": "x"})).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownEvent);
        assert!(e.message.contains("dance"));
    }
}
