//! What travels through Redis: a versioned JSON envelope around chat messages, user events
//! and control messages, and the running turn's identity kept in the turn hash.
//!
//! ```text
//! {"v":1,"node":"node-…","ts":1733440000123456,"msgs":[{"t":"token",…},…],"off":42}
//! {"v":1,"node":"node-…","ts":…,"user":{"chatId":"c","reason":"posted","afterSeq":7}}
//! {"v":1,"node":"node-…","ts":…,"control":{"t":"abort","org":"o","chat":"c",…}}
//! ```
//!
//! - `v` is the format version. A reader skips (and logs, rate-limited) any envelope whose
//!   version it does not know, and any single message inside a batch it cannot decode, so a
//!   node of a newer release never crashes or blocks an older one; decoding never panics.
//! - `node` is the publishing node's id, so a node can tell its own messages; `ts` is the
//!   publish time in Unix microseconds (for `natter_bus_lag_seconds`).
//! - `msgs` is a batch: one PUBLISH carries every message of a chat queued while the previous
//!   publish of that chat was in flight.
//! - `off` is appended by the publish script (not by the publisher): the chat's buffer offset
//!   after this batch, so a node that is just subscribing can tell which messages its turn
//!   buffer read already reflects.
//!
//! **Why JSON** rather than a binary serde format: durable event bodies carry arbitrary JSON
//! (`serde_json::Value`: metadata, tool arguments and results), which non-self-describing
//! formats (bincode, postcard) cannot carry and which is already stored as JSON; the publish
//! script appends `off` to the envelope with one string concatenation instead of decoding
//! it; and `redis-cli SUBSCRIBE`/`MONITOR` show readable messages when something goes wrong.
//! Token messages are small (a few dozen bytes of text plus the turn ids) and a batch is
//! encoded once per publish and decoded once per node, not per member, so JSON's cost is
//! small next to a Redis round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use natter_core::bus::{FollowReason, UserEvent};
use natter_core::chat::ChatKey;
use natter_core::coordinator::Control;
use natter_core::event::{
    BusMessage, EventBody, LiveEvent, ProcessingStatus, ProcessingUpdate, StoredEvent, TurnRef,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Why an envelope was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Another format version (a node of another release).
    UnknownVersion(u32),
    /// Not an envelope of this version (garbage, or the wrong kind for the channel).
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownVersion(v) => write!(f, "unknown wire version {v}"),
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, M: Serialize, U: Serialize, C: Serialize> {
    v: u32,
    node: &'a str,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgs: Option<M>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<U>,
    #[serde(skip_serializing_if = "Option::is_none")]
    control: Option<C>,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    v: u32,
    #[serde(default)]
    node: String,
    #[serde(default)]
    ts: i64,
    #[serde(default)]
    off: Option<u64>,
    #[serde(borrow, default)]
    msgs: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Probe {
    v: u32,
}

fn open(payload: &[u8]) -> Result<EnvelopeIn<'_>, DecodeError> {
    match serde_json::from_slice::<EnvelopeIn<'_>>(payload) {
        Ok(env) if env.v == VERSION => Ok(env),
        Ok(env) => Err(DecodeError::UnknownVersion(env.v)),
        // A later version may have changed the envelope's shape: report its version if it
        // has one.
        Err(e) => match serde_json::from_slice::<Probe>(payload) {
            Ok(p) if p.v != VERSION => Err(DecodeError::UnknownVersion(p.v)),
            _ => Err(DecodeError::Malformed(e.to_string())),
        },
    }
}

/// A running turn's identity, on the wire and in the turn hash.
#[derive(Debug, Serialize, Deserialize)]
struct WireTurn<'a> {
    #[serde(borrow)]
    mid: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    rid: std::borrow::Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    trace: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> WireTurn<'a> {
    fn of(turn: &'a TurnRef) -> Self {
        Self {
            mid: (&*turn.message_id).into(),
            rid: (&*turn.request_id).into(),
            trace: turn.trace_id.as_deref().map(Into::into),
        }
    }

    fn into_turn(self) -> TurnRef {
        TurnRef {
            message_id: self.mid.as_ref().into(),
            request_id: self.rid.as_ref().into(),
            trace_id: self.trace.as_deref().map(Into::into),
        }
    }
}

/// The turn hash's `turn` field.
pub(crate) fn encode_turn(turn: &TurnRef) -> String {
    serde_json::to_string(&WireTurn::of(turn)).unwrap_or_default()
}

pub(crate) fn decode_turn(bytes: &[u8]) -> Result<TurnRef, DecodeError> {
    serde_json::from_slice::<WireTurn<'_>>(bytes)
        .map(WireTurn::into_turn)
        .map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum MsgOut<'a> {
    Durable {
        seq: u64,
        at: i64,
        body: &'a EventBody,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    TurnStarted {
        turn: WireTurn<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    Token {
        turn: WireTurn<'a>,
        i: u64,
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    Processing {
        rid: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        eta: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    Typing {
        user: &'a str,
        typing: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    Presence {
        online: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    TurnEndUnstored {
        turn: WireTurn<'a>,
        end: &'a EventBody,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    ChatDeleted {
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    /// A document's processing step (CONTRACT §7.6).
    Attachment {
        id: &'a str,
        up: &'a ProcessingUpdate,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    ToolInputStart {
        turn: WireTurn<'a>,
        call: &'a str,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
    ToolInputDelta {
        turn: WireTurn<'a>,
        call: &'a str,
        delta: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<&'a str>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum MsgIn<'a> {
    Durable {
        seq: u64,
        at: i64,
        body: EventBody,
        #[serde(default)]
        o: Option<String>,
    },
    TurnStarted {
        #[serde(borrow)]
        turn: WireTurn<'a>,
        #[serde(default)]
        o: Option<String>,
    },
    Token {
        #[serde(borrow)]
        turn: WireTurn<'a>,
        i: u64,
        text: String,
        #[serde(default)]
        o: Option<String>,
    },
    Processing {
        rid: String,
        status: String,
        #[serde(default)]
        eta: Option<u64>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        trace: Option<String>,
        #[serde(default)]
        o: Option<String>,
    },
    Typing {
        user: String,
        typing: bool,
        #[serde(default)]
        trace: Option<String>,
        #[serde(default)]
        o: Option<String>,
    },
    Presence {
        online: Vec<String>,
        #[serde(default)]
        o: Option<String>,
    },
    TurnEndUnstored {
        #[serde(borrow)]
        turn: WireTurn<'a>,
        end: EventBody,
        #[serde(default)]
        o: Option<String>,
    },
    ChatDeleted {
        #[serde(default)]
        by: Option<String>,
        #[serde(default)]
        o: Option<String>,
    },
    Attachment {
        id: String,
        up: ProcessingUpdate,
        #[serde(default)]
        o: Option<String>,
    },
    ToolInputStart {
        #[serde(borrow)]
        turn: WireTurn<'a>,
        call: String,
        name: String,
        #[serde(default)]
        o: Option<String>,
    },
    ToolInputDelta {
        #[serde(borrow)]
        turn: WireTurn<'a>,
        call: String,
        delta: String,
        #[serde(default)]
        o: Option<String>,
    },
}

fn msg_out(message: &BusMessage) -> MsgOut<'_> {
    match message {
        BusMessage::Durable { event, origin } => MsgOut::Durable {
            seq: event.seq,
            at: event.created_at,
            body: &event.body,
            o: origin.as_deref(),
        },
        BusMessage::Live { event, origin } => {
            let o = origin.as_deref();
            match event {
                LiveEvent::TurnStarted { turn } => MsgOut::TurnStarted {
                    turn: WireTurn::of(turn),
                    o,
                },
                LiveEvent::Token { turn, index, text } => MsgOut::Token {
                    turn: WireTurn::of(turn),
                    i: *index,
                    text,
                    o,
                },
                LiveEvent::Processing {
                    request_id,
                    status,
                    eta_ms,
                    reason,
                    trace_id,
                } => MsgOut::Processing {
                    rid: request_id,
                    status: status.as_str(),
                    eta: *eta_ms,
                    reason: reason.as_deref(),
                    trace: trace_id.as_deref(),
                    o,
                },
                LiveEvent::Typing {
                    user_id,
                    typing,
                    trace_id,
                } => MsgOut::Typing {
                    user: user_id,
                    typing: *typing,
                    trace: trace_id.as_deref(),
                    o,
                },
                LiveEvent::Presence { online_user_ids } => MsgOut::Presence {
                    online: online_user_ids,
                    o,
                },
                LiveEvent::TurnEndUnstored { turn, end } => MsgOut::TurnEndUnstored {
                    turn: WireTurn::of(turn),
                    end,
                    o,
                },
                LiveEvent::ChatDeleted { deleted_by } => MsgOut::ChatDeleted {
                    by: deleted_by.as_deref(),
                    o,
                },
                LiveEvent::AttachmentProcessing {
                    attachment_id,
                    update,
                } => MsgOut::Attachment {
                    id: attachment_id,
                    up: update,
                    o,
                },
                LiveEvent::ToolInputStart {
                    turn,
                    tool_call_id,
                    name,
                } => MsgOut::ToolInputStart {
                    turn: WireTurn::of(turn),
                    call: tool_call_id,
                    name,
                    o,
                },
                LiveEvent::ToolInputDelta {
                    turn,
                    tool_call_id,
                    delta,
                } => MsgOut::ToolInputDelta {
                    turn: WireTurn::of(turn),
                    call: tool_call_id,
                    delta,
                    o,
                },
            }
        }
    }
}

/// Reuses the previous message's `Arc<TurnRef>` when a batch carries many tokens of one turn.
struct TurnCache(Option<Arc<TurnRef>>);

impl TurnCache {
    fn get(&mut self, wire: WireTurn<'_>) -> Arc<TurnRef> {
        if let Some(t) = &self.0
            && *t.message_id == *wire.mid
            && *t.request_id == *wire.rid
            && t.trace_id.as_deref() == wire.trace.as_deref()
        {
            return t.clone();
        }
        let t = Arc::new(wire.into_turn());
        self.0 = Some(t.clone());
        t
    }
}

fn msg_in(m: MsgIn<'_>, turns: &mut TurnCache) -> Result<BusMessage, DecodeError> {
    let origin = |o: Option<String>| o.map(Arc::<str>::from);
    Ok(match m {
        MsgIn::Durable { seq, at, body, o } => BusMessage::Durable {
            event: Arc::new(StoredEvent {
                seq,
                created_at: at,
                body,
            }),
            origin: origin(o),
        },
        MsgIn::TurnStarted { turn, o } => BusMessage::Live {
            event: LiveEvent::TurnStarted {
                turn: turns.get(turn),
            },
            origin: origin(o),
        },
        MsgIn::Token { turn, i, text, o } => BusMessage::Live {
            event: LiveEvent::Token {
                turn: turns.get(turn),
                index: i,
                text: text.into(),
            },
            origin: origin(o),
        },
        MsgIn::Processing {
            rid,
            status,
            eta,
            reason,
            trace,
            o,
        } => BusMessage::Live {
            event: LiveEvent::Processing {
                request_id: rid.into(),
                status: match status.as_str() {
                    "queued" => ProcessingStatus::Queued,
                    "working" => ProcessingStatus::Working,
                    "retrying" => ProcessingStatus::Retrying,
                    other => {
                        return Err(DecodeError::Malformed(format!(
                            "unknown processing status `{other}`"
                        )));
                    }
                },
                eta_ms: eta,
                reason,
                trace_id: trace.map(Into::into),
            },
            origin: origin(o),
        },
        MsgIn::Typing {
            user,
            typing,
            trace,
            o,
        } => BusMessage::Live {
            event: LiveEvent::Typing {
                user_id: user.into(),
                typing,
                trace_id: trace.map(Into::into),
            },
            origin: origin(o),
        },
        MsgIn::Presence { online, o } => BusMessage::Live {
            event: LiveEvent::Presence {
                online_user_ids: online,
            },
            origin: origin(o),
        },
        MsgIn::TurnEndUnstored { turn, end, o } => BusMessage::Live {
            event: LiveEvent::TurnEndUnstored {
                turn: turns.get(turn),
                end: Box::new(end),
            },
            origin: origin(o),
        },
        MsgIn::ChatDeleted { by, o } => BusMessage::Live {
            event: LiveEvent::ChatDeleted {
                deleted_by: by.map(Into::into),
            },
            origin: origin(o),
        },
        MsgIn::Attachment { id, up, o } => BusMessage::Live {
            event: LiveEvent::AttachmentProcessing {
                attachment_id: id.into(),
                update: up,
            },
            origin: origin(o),
        },
        MsgIn::ToolInputStart {
            turn,
            call,
            name,
            o,
        } => BusMessage::Live {
            event: LiveEvent::ToolInputStart {
                turn: turns.get(turn),
                tool_call_id: call.into(),
                name: name.into(),
            },
            origin: origin(o),
        },
        MsgIn::ToolInputDelta {
            turn,
            call,
            delta,
            o,
        } => BusMessage::Live {
            event: LiveEvent::ToolInputDelta {
                turn: turns.get(turn),
                tool_call_id: call.into(),
                delta: delta.into(),
            },
            origin: origin(o),
        },
    })
}

type NoBody = ();

/// One batch of a chat's messages, as published (`off` is added by the script).
pub fn encode_chat<'a>(
    node: &str,
    ts: i64,
    messages: impl IntoIterator<Item = &'a BusMessage>,
) -> Result<Vec<u8>, serde_json::Error> {
    let msgs: Vec<MsgOut<'_>> = messages.into_iter().map(msg_out).collect();
    serde_json::to_vec(&EnvelopeOut::<_, NoBody, NoBody> {
        v: VERSION,
        node,
        ts,
        msgs: Some(msgs),
        user: None,
        control: None,
    })
}

/// A decoded batch of a chat's messages.
#[derive(Debug)]
pub struct ChatBatch {
    pub node: String,
    pub ts: i64,
    /// The chat's buffer offset after this batch (absent when the batch changed no buffer).
    pub off: Option<u64>,
    pub messages: Vec<Arc<BusMessage>>,
    /// Messages of the batch that could not be decoded (a newer node's kinds): skipped.
    pub skipped: usize,
}

pub fn decode_chat(payload: &[u8]) -> Result<ChatBatch, DecodeError> {
    let env = open(payload)?;
    let raw = env
        .msgs
        .ok_or_else(|| DecodeError::Malformed("no `msgs` in a chat envelope".into()))?;
    let mut turns = TurnCache(None);
    let mut messages = Vec::with_capacity(raw.len());
    let mut skipped = 0;
    for item in raw {
        match serde_json::from_str::<MsgIn<'_>>(item.get())
            .map_err(|e| DecodeError::Malformed(e.to_string()))
            .and_then(|m| msg_in(m, &mut turns))
        {
            Ok(m) => messages.push(Arc::new(m)),
            Err(e) => {
                skipped += 1;
                log_skip("chat message", &e);
            }
        }
    }
    Ok(ChatBatch {
        node: env.node,
        ts: env.ts,
        off: env.off,
        messages,
        skipped,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUserEvent {
    chat_id: String,
    reason: String,
    after_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

pub fn encode_user(node: &str, ts: i64, event: &UserEvent) -> Result<Vec<u8>, serde_json::Error> {
    let user = WireUserEvent {
        chat_id: event.chat_id.to_string(),
        reason: match event.reason {
            FollowReason::Created => "created",
            FollowReason::Loaded => "loaded",
            FollowReason::Posted => "posted",
        }
        .into(),
        after_seq: event.after_seq,
        origin: event.origin.as_deref().map(str::to_owned),
    };
    serde_json::to_vec(&EnvelopeOut::<NoBody, _, NoBody> {
        v: VERSION,
        node,
        ts,
        msgs: None,
        user: Some(user),
        control: None,
    })
}

pub fn decode_user(payload: &[u8]) -> Result<(i64, UserEvent), DecodeError> {
    let env = open(payload)?;
    let raw = env
        .user
        .ok_or_else(|| DecodeError::Malformed("no `user` in a user envelope".into()))?;
    let w: WireUserEvent =
        serde_json::from_str(raw.get()).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let reason = match w.reason.as_str() {
        "created" => FollowReason::Created,
        "loaded" => FollowReason::Loaded,
        "posted" => FollowReason::Posted,
        other => return Err(DecodeError::Malformed(format!("unknown reason `{other}`"))),
    };
    Ok((
        env.ts,
        UserEvent {
            chat_id: w.chat_id.into(),
            reason,
            after_seq: w.after_seq,
            origin: w.origin.map(Into::into),
        },
    ))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireOutcome {
    Ok(serde_json::Value),
    Err(String),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum WireControl {
    TurnQueued {
        org: String,
        chat: String,
    },
    Abort {
        org: String,
        chat: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ToolResult {
        org: String,
        chat: String,
        call: String,
        outcome: WireOutcome,
    },
}

pub fn encode_control(
    node: &str,
    ts: i64,
    control: &Control,
) -> Result<Vec<u8>, serde_json::Error> {
    let key = |c: &ChatKey| (c.org.to_string(), c.chat_id.to_string());
    let wire = match control {
        Control::TurnQueued { chat } => {
            let (org, chat) = key(chat);
            WireControl::TurnQueued { org, chat }
        }
        Control::Abort {
            chat,
            request_id,
            reason,
        } => {
            let (org, chat) = key(chat);
            WireControl::Abort {
                org,
                chat,
                rid: request_id.clone(),
                reason: reason.clone(),
            }
        }
        Control::ToolResult {
            chat,
            tool_call_id,
            outcome,
        } => {
            let (org, chat) = key(chat);
            WireControl::ToolResult {
                org,
                chat,
                call: tool_call_id.clone(),
                outcome: match outcome {
                    Ok(v) => WireOutcome::Ok(v.clone()),
                    Err(e) => WireOutcome::Err(e.clone()),
                },
            }
        }
    };
    serde_json::to_vec(&EnvelopeOut::<NoBody, NoBody, _> {
        v: VERSION,
        node,
        ts,
        msgs: None,
        user: None,
        control: Some(wire),
    })
}

pub fn decode_control(payload: &[u8]) -> Result<Control, DecodeError> {
    let env = open(payload)?;
    let raw = env
        .control
        .ok_or_else(|| DecodeError::Malformed("no `control` in a control envelope".into()))?;
    let w: WireControl =
        serde_json::from_str(raw.get()).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(match w {
        WireControl::TurnQueued { org, chat } => Control::TurnQueued {
            chat: ChatKey::new(org, chat),
        },
        WireControl::Abort {
            org,
            chat,
            rid,
            reason,
        } => Control::Abort {
            chat: ChatKey::new(org, chat),
            request_id: rid,
            reason,
        },
        WireControl::ToolResult {
            org,
            chat,
            call,
            outcome,
        } => Control::ToolResult {
            chat: ChatKey::new(org, chat),
            tool_call_id: call,
            outcome: match outcome {
                WireOutcome::Ok(v) => Ok(v),
                WireOutcome::Err(e) => Err(e),
            },
        },
    })
}

/// Logs a skipped message, at most once every ten seconds (a node of another release may send
/// many), and counts it.
pub(crate) fn log_skip(what: &str, error: &DecodeError) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    metrics::counter!(crate::telemetry::REDIS_ERRORS, "op" => "decode").increment(1);
    let now = crate::now_micros();
    let last = LAST.load(Ordering::Relaxed);
    if now - last >= 10_000_000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(%error, what, "skipping a bus message this node cannot read");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn() -> Arc<TurnRef> {
        Arc::new(TurnRef {
            message_id: "a1".into(),
            request_id: "r1".into(),
            trace_id: Some("tr".into()),
        })
    }

    fn all_messages() -> Vec<BusMessage> {
        let t = turn();
        let end = EventBody::TurnFailed {
            message_id: "a1".into(),
            request_id: "r1".into(),
            code: "unavailable".into(),
            message: "m".into(),
            retryable: true,
            partial_text: "he".into(),
            trace_id: None,
            token_count: Some(1),
        };
        let live = |event| BusMessage::Live {
            event,
            origin: Some("conn-1".into()),
        };
        vec![
            BusMessage::Durable {
                event: Arc::new(StoredEvent {
                    seq: 3,
                    created_at: 17,
                    body: EventBody::ChatCreated {
                        created_by: Some("ann".into()),
                        metadata: Some(json!({"x": [1, {"y": null}]})),
                        members: None,
                    },
                }),
                origin: None,
            },
            live(LiveEvent::TurnStarted { turn: t.clone() }),
            live(LiveEvent::ToolInputStart {
                turn: t.clone(),
                tool_call_id: "call_1".into(),
                name: "pick".into(),
            }),
            live(LiveEvent::ToolInputDelta {
                turn: t.clone(),
                tool_call_id: "call_1".into(),
                delta: "{\"a\":".into(),
            }),
            live(LiveEvent::Token {
                turn: t.clone(),
                index: 0,
                text: "he\"llo\n✓".into(),
            }),
            live(LiveEvent::Processing {
                request_id: "r1".into(),
                status: ProcessingStatus::Retrying,
                eta_ms: Some(5),
                reason: Some("x".into()),
                trace_id: None,
            }),
            live(LiveEvent::Typing {
                user_id: "bob".into(),
                typing: true,
                trace_id: None,
            }),
            live(LiveEvent::Presence {
                online_user_ids: vec!["ann".into(), "bob".into()],
            }),
            live(LiveEvent::TurnEndUnstored {
                turn: t,
                end: Box::new(end),
            }),
            live(LiveEvent::ChatDeleted {
                deleted_by: Some("ann".into()),
            }),
            live(LiveEvent::AttachmentProcessing {
                attachment_id: "att1".into(),
                update: ProcessingUpdate::Progress { percent: 40 },
            }),
            live(LiveEvent::AttachmentProcessing {
                attachment_id: "att1".into(),
                update: ProcessingUpdate::Complete {
                    chars: 12,
                    pages: Some(2),
                },
            }),
            live(LiveEvent::AttachmentProcessing {
                attachment_id: "att2".into(),
                update: ProcessingUpdate::Error {
                    code: "timeout".into(),
                    message: "too slow".into(),
                },
            }),
        ]
    }

    #[test]
    fn chat_batches_round_trip() {
        let msgs = all_messages();
        let bytes = encode_chat("n1", 99, &msgs).unwrap();
        assert_eq!(bytes.last(), Some(&b'}'));
        // The publish script appends the offset.
        let mut with_off = bytes[..bytes.len() - 1].to_vec();
        with_off.extend_from_slice(b",\"off\":42}");
        let batch = decode_chat(&with_off).unwrap();
        assert_eq!(batch.node, "n1");
        assert_eq!(batch.ts, 99);
        assert_eq!(batch.off, Some(42));
        assert_eq!(batch.skipped, 0);
        let got: Vec<BusMessage> = batch.messages.iter().map(|m| (**m).clone()).collect();
        assert_eq!(got, msgs);
        assert_eq!(decode_chat(&bytes).unwrap().off, None);
    }

    #[test]
    fn unknown_versions_and_kinds_are_skipped_not_fatal() {
        assert_eq!(
            decode_chat(br#"{"v":2,"node":"n","ts":1,"msgs":[]}"#).unwrap_err(),
            DecodeError::UnknownVersion(2)
        );
        assert_eq!(
            decode_chat(br#"{"v":7,"whatever":true}"#).unwrap_err(),
            DecodeError::UnknownVersion(7)
        );
        assert!(matches!(
            decode_chat(b"\xff garbage").unwrap_err(),
            DecodeError::Malformed(_)
        ));
        assert!(matches!(
            decode_chat(br#"{"v":1,"node":"n","ts":1,"user":{}}"#).unwrap_err(),
            DecodeError::Malformed(_)
        ));
        // One message of an unknown kind in a batch: the rest still arrive.
        let batch = decode_chat(
            br#"{"v":1,"node":"n","ts":1,"msgs":[{"t":"hologram"},{"t":"presence","online":["a"]}]}"#,
        )
        .unwrap();
        assert_eq!(batch.skipped, 1);
        assert_eq!(batch.messages.len(), 1);
    }

    #[test]
    fn user_events_and_control_round_trip() {
        let e = UserEvent {
            chat_id: "c:1".into(),
            reason: FollowReason::Posted,
            after_seq: 7,
            origin: Some("conn".into()),
        };
        let (ts, back) = decode_user(&encode_user("n", 5, &e).unwrap()).unwrap();
        assert_eq!((ts, back), (5, e));
        let chat = ChatKey::new("o", "c");
        for c in [
            Control::TurnQueued { chat: chat.clone() },
            Control::Abort {
                chat: chat.clone(),
                request_id: Some("r".into()),
                reason: None,
            },
            Control::ToolResult {
                chat: chat.clone(),
                tool_call_id: "t1".into(),
                outcome: Ok(serde_json::Value::Null),
            },
            Control::ToolResult {
                chat,
                tool_call_id: "t1".into(),
                outcome: Err("boom".into()),
            },
        ] {
            assert_eq!(
                decode_control(&encode_control("n", 1, &c).unwrap()).unwrap(),
                c
            );
        }
        assert_eq!(
            decode_control(br#"{"v":3}"#).unwrap_err(),
            DecodeError::UnknownVersion(3)
        );
    }

    #[test]
    fn turn_hash_field_round_trips() {
        let t = turn();
        assert_eq!(decode_turn(encode_turn(&t).as_bytes()).unwrap(), *t);
    }
}
