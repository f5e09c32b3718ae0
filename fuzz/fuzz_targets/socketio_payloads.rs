//! Bytes → JSON → every client→server Socket.IO payload parser, as `natter-socketio`'s
//! handlers call them (a payload that is not JSON reaches them as `null`), then the
//! client-declared tools of `user:message` (`natter_core::tools::parse_declared`), and the
//! handshake (`Handshake::new` on the bytes as a query string and the JSON as `auth`).
//!
//! Checks: no panic; every refusal is a 4xx-class code whose message names the event and
//! serializes into the ack and `error` event shapes; every accepted request, written back
//! as the JSON a client would send, parses to the same request (the decoded form is
//! canonical); accepted ids respect the length limits; declared tools are valid; handshake
//! query fields survive re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_protocol::events::CLIENT_TO_SERVER;
use natter_protocol::fields::MAX_ID_BYTES;
use natter_protocol::socketio::{
    AbortRequest, AuthRefreshRequest, ChatEndRequest, Common, CsatSubmitRequest, ErrorAck,
    JoinRequest, MAX_MEMBERS, MAX_REASON_BYTES, MarkReadRequest, PlainRequest, ReactionRequest,
    ServerErrorEvent, ToolResultRequest, TypingRequest, UserMessageRequest,
};
use natter_protocol::{ErrorCode, EventKey, EventNames, WireError};
use natter_socketio::identity::{ConnIdentity, Handshake};
use serde_json::{Map, Value, json};

/// The core's default bound on `messageIds` (`CoreConfig::max_read_ids`).
const MAX_READ_IDS: usize = 500;

fuzz_target!(|data: &[u8]| {
    let value: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
    let names = EventNames::default();
    for key in CLIENT_TO_SERVER {
        let event = names.name(*key);
        assert_eq!(names.inbound(event), Some(*key));
        payload(*key, event, &value);
    }
    handshake(data, &value);
});

fn payload(key: EventKey, event: &str, v: &Value) {
    match key {
        EventKey::Join => {
            round_trip(event, v, JoinRequest::parse, |r| {
                common_ok(&r.common);
                id_ok(r.user_id.as_deref());
                if let Some(m) = &r.members {
                    assert!(m.len() <= MAX_MEMBERS);
                    assert!(m.iter().all(|id| !id.is_empty()));
                }
                let mut o = common_json(&r.common);
                put(&mut o, "userId", r.user_id.clone().map(Value::from));
                put(&mut o, "lastSeq", r.last_seq.map(Value::from));
                put(&mut o, "epoch", r.epoch.clone().map(Value::from));
                put(&mut o, "members", r.members.clone().map(Value::from));
                o
            });
        }
        EventKey::Leave | EventKey::DiscoveryRequest | EventKey::HandoffRequest => {
            round_trip(event, v, PlainRequest::parse, |r| {
                common_ok(&r.common);
                common_json(&r.common)
            });
        }
        EventKey::UserMessage => {
            let parsed = round_trip(event, v, UserMessageRequest::parse, |r| {
                common_ok(&r.common);
                assert!(!r.message_id.trim().is_empty());
                id_ok(r.user_id.as_deref());
                let mut o = common_json(&r.common);
                put(&mut o, "messageId", Some(r.message_id.clone().into()));
                put(&mut o, "userId", r.user_id.clone().map(Value::from));
                put(&mut o, "text", Some(r.text.clone().into()));
                put(&mut o, "parts", r.parts.clone());
                put(&mut o, "requestId", r.request_id.clone().map(Value::from));
                put(&mut o, "tools", r.tools.clone());
                o
            });
            if let Some(tools) = parsed.and_then(|r| r.tools) {
                declared_tools(&tools);
            }
        }
        EventKey::TypingStart | EventKey::TypingStop => {
            round_trip(event, v, TypingRequest::parse, |r| {
                common_ok(&r.common);
                id_ok(r.user_id.as_deref());
                let mut o = common_json(&r.common);
                put(&mut o, "userId", r.user_id.clone().map(Value::from));
                o
            });
        }
        EventKey::Abort => {
            round_trip(event, v, AbortRequest::parse, |r| {
                common_ok(&r.common);
                let mut o = common_json(&r.common);
                put(&mut o, "requestId", r.request_id.clone().map(Value::from));
                put(&mut o, "reason", r.reason.clone().map(Value::from));
                o
            });
        }
        EventKey::MarkRead => {
            let parse = |e: &str, v: &Value| MarkReadRequest::parse(e, v, MAX_READ_IDS);
            round_trip(event, v, parse, |r| {
                common_ok(&r.common);
                id_ok(r.user_id.as_deref());
                assert!(!r.message_ids.is_empty() && r.message_ids.len() <= MAX_READ_IDS);
                let mut o = common_json(&r.common);
                put(&mut o, "userId", r.user_id.clone().map(Value::from));
                put(&mut o, "messageIds", Some(r.message_ids.clone().into()));
                let read_at = natter_protocol::time::iso8601(r.read_at);
                put(&mut o, "readAt", Some(read_at.into()));
                o
            });
        }
        EventKey::ToolResultIn => {
            round_trip(event, v, ToolResultRequest::parse, |r| {
                common_ok(&r.common);
                assert!(!r.tool_call_id.is_empty() && r.tool_call_id.len() <= MAX_ID_BYTES);
                let mut o = common_json(&r.common);
                put(&mut o, "toolCallId", Some(r.tool_call_id.clone().into()));
                put(&mut o, "result", r.result.clone());
                put(&mut o, "error", r.error.clone().map(Value::from));
                o
            });
        }
        EventKey::AuthRefresh => {
            round_trip(event, v, AuthRefreshRequest::parse, |r| {
                assert!(!r.token.is_empty());
                let mut o = Map::new();
                put(&mut o, "token", Some(r.token.clone().into()));
                o
            });
        }
        EventKey::ReactionAdd | EventKey::ReactionRemove => {
            round_trip(event, v, ReactionRequest::parse, |r| {
                common_ok(&r.common);
                assert!(!r.message_id.is_empty() && r.message_id.len() <= MAX_ID_BYTES);
                let mut o = common_json(&r.common);
                put(&mut o, "messageId", Some(r.message_id.clone().into()));
                put(&mut o, "emoji", Some(r.emoji.clone().into()));
                o
            });
        }
        EventKey::ChatEnd => {
            round_trip(event, v, ChatEndRequest::parse, |r| {
                common_ok(&r.common);
                assert!(
                    r.reason
                        .as_ref()
                        .is_none_or(|x| x.len() <= MAX_REASON_BYTES)
                );
                let mut o = common_json(&r.common);
                put(&mut o, "reason", r.reason.clone().map(Value::from));
                o
            });
        }
        EventKey::CsatSubmit => {
            // The rating's range and the comment's length are the core's to check.
            round_trip(event, v, CsatSubmitRequest::parse, |r| {
                common_ok(&r.common);
                let mut o = common_json(&r.common);
                put(&mut o, "rating", Some(r.rating.into()));
                put(&mut o, "comment", r.comment.clone().map(Value::from));
                o
            });
        }
        other => panic!("{other:?} is not a client→server event"),
    }
}

/// Parses `v`; a refusal must be well-formed, and an accepted request written back as JSON
/// (`encode`, which also checks the request's invariants) must parse to the same request.
fn round_trip<T, P, E>(event: &str, v: &Value, parse: P, encode: E) -> Option<T>
where
    T: PartialEq + std::fmt::Debug,
    P: Fn(&str, &Value) -> Result<T, WireError>,
    E: Fn(&T) -> Map<String, Value>,
{
    match parse(event, v) {
        Ok(req) => {
            assert!(v.is_object(), "{event}: accepted a non-object payload {v}");
            let again = Value::Object(encode(&req));
            match parse(event, &again) {
                Ok(back) => assert_eq!(back, req, "{event}: {again} parses differently"),
                Err(e) => panic!("{event}: re-encoded {again} is refused: {e:?}"),
            }
            Some(req)
        }
        Err(e) => {
            refusal_ok(event, v, &e);
            None
        }
    }
}

fn refusal_ok(event: &str, v: &Value, e: &WireError) {
    assert!(
        matches!(
            e.code,
            ErrorCode::InvalidPayload
                | ErrorCode::MissingField
                | ErrorCode::InvalidField
                | ErrorCode::TooLarge
        ),
        "{event}: unexpected code for bad input: {e:?}"
    );
    if !v.is_object() {
        assert_eq!(e.code, ErrorCode::InvalidPayload, "{event}: {e:?}");
    }
    assert!(
        e.message.starts_with(event),
        "{event}: the message does not name the event: {e:?}"
    );
    let ack = serde_json::to_value(ErrorAck::from(e)).expect("the error ack serializes");
    assert_eq!(ack["ok"], json!(false));
    assert_eq!(ack["error"]["code"], json!(e.code.as_str()));
    let body = ServerErrorEvent::new(e, Some(event.to_owned()));
    serde_json::to_string(&body).expect("the error event serializes");
}

fn id_ok(id: Option<&str>) {
    if let Some(id) = id {
        assert!(!id.trim().is_empty(), "a blank id was accepted: {id:?}");
    }
}

fn common_ok(c: &Common) {
    id_ok(c.chat_id.as_deref());
    for v in [&c.chat_id, &c.trace_id].into_iter().flatten() {
        assert!(!v.is_empty() && v.len() <= MAX_ID_BYTES, "{c:?}");
    }
}

fn common_json(c: &Common) -> Map<String, Value> {
    let mut o = Map::new();
    put(&mut o, "chatId", c.chat_id.clone().map(Value::from));
    put(&mut o, "traceId", c.trace_id.clone().map(Value::from));
    o
}

fn put(o: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        o.insert(key.to_owned(), v);
    }
}

/// `user:message`'s `tools`, checked by the core before a turn may use them.
fn declared_tools(tools: &Value) {
    match natter_core::tools::parse_declared(tools) {
        Ok(specs) => {
            assert!(specs.len() <= natter_core::tools::MAX_DECLARED_TOOLS);
            for (i, s) in specs.iter().enumerate() {
                assert!(natter_core::tools::valid_tool_name(&s.name), "{s:?}");
                assert!(
                    specs[..i].iter().all(|o| o.name != s.name),
                    "duplicate {s:?}"
                );
                assert!(s.parameters.is_object(), "{s:?}");
                assert!(natter_core::tools::check_schema(&s.parameters).is_ok());
            }
        }
        Err(e) => assert!(
            matches!(e.code, ErrorCode::InvalidField | ErrorCode::TooLarge),
            "{e:?}"
        ),
    }
}

/// The handshake: the input as the query string (when it could be one), the JSON as `auth`.
fn handshake(data: &[u8], auth: &Value) {
    let query = std::str::from_utf8(data).ok();
    let h = Handshake::new(query, Some(auth.clone()));
    // Query fields survive being percent-encoded again and re-read.
    let encoded: Vec<String> = h
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect();
    // (An empty query string reads as one empty field, so an empty map goes back as none.)
    let encoded = encoded.join("&");
    let again = Handshake::new(Some(encoded.as_str()).filter(|q| !q.is_empty()), None);
    assert_eq!(again.query, h.query, "query {query:?}");
    // `auth` wins over the query; numbers read as strings; empty strings as absent.
    let keys: Vec<&String> = h.auth.keys().chain(h.query.keys()).collect();
    for key in keys {
        let field = h.field(key);
        match h.auth.get(key.as_str()) {
            Some(Value::String(s)) if !s.is_empty() => assert_eq!(field.as_deref(), Some(&**s)),
            Some(Value::Number(n)) => assert_eq!(field, Some(n.to_string())),
            _ => assert_eq!(
                field.as_deref(),
                h.query
                    .get(key.as_str())
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_str())
            ),
        }
    }
    if ConnIdentity::check(&h).is_ok() {
        let who = ConnIdentity::from_handshake(&h, "fuzz-socket");
        let me = who.resolve(None).expect("a checked handshake resolves");
        assert!(me.user_id.len() <= MAX_ID_BYTES.max("anon-fuzz-socket".len()));
        assert!(me.org.len() <= MAX_ID_BYTES);
    }
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
