//! The TypeScript SDK's `ChatEvents` and payload types, generated from this crate with ts-rs.
//!
//! `sdk/typescript/src/generated/protocol.ts` is written from the Rust types here, never by
//! hand. This test fails when that file is stale; `NATTER_UPDATE_TS=1 cargo test -p
//! natter-protocol typescript` rewrites it. It is a test (ts-rs is a dev-dependency) so that no
//! build of the server compiles ts-rs.

use std::path::PathBuf;

use ts_rs::TS;

use crate::ErrorBody;
use crate::client::AttachmentRef;
use crate::client::HandoffRequestPayload;
use crate::client::{
    AbortPayload, AuthRefreshPayload, ClientTool, DiscoveryRequestPayload, JoinPayload,
    LeavePayload, MarkReadPayload, ToolResultPayload, TypingPayload, UserMessagePayload,
};
use crate::client::{ChatEndPayload, CsatSubmitPayload, ReactionPayload};
use crate::events::{CLIENT_TO_SERVER, DiscoveryResponse, EventKey};
use crate::socketio::AttachmentProcessingEvent;
use crate::socketio::AttachmentWire;
use crate::socketio::{
    AbortAck, AiErrorEvent, AiMessageEvent, AiProcessingEvent, AiTokenEvent, AiToolCallEvent,
    AiToolResultEvent, AuthRefreshAck, ChatMessageEvent, DiscoveryAck, ErrorAck, HistoryMessage,
    JoinAck, MarkReadAck, MessageReadEvent, OkAck, PresenceUpdateEvent, ServerErrorEvent,
    TurnWarning, TypingUpdateEvent, Usage, UserMessageAck,
};
use crate::socketio::{
    ChatDeletedEvent, ChatEndedEvent, ChatUpdatedEvent, CsatRequestEvent, CsatSubmittedEvent,
    MessageSupersededEvent, ReactionAck, ReactionUpdateEvent, ReactionWire, SeqAck,
};
use crate::socketio::{HandoffAck, HandoffUpdateEvent};

/// JSON numbers: `seq` and the token counts are `u64` in Rust but never exceed 2^53 on the wire.
fn config() -> ts_rs::Config {
    ts_rs::Config::new().with_large_int("number")
}

const GENERATED: &str = "../../sdk/typescript/src/generated/protocol.ts";

/// The payload type of each event under its default wire name. An exhaustive match, so a new
/// [`EventKey`] does not compile until it has a type here.
fn payload_type(key: EventKey) -> String {
    match key {
        EventKey::Join => JoinPayload::name(&config()),
        EventKey::Leave => LeavePayload::name(&config()),
        EventKey::UserMessage => UserMessagePayload::name(&config()),
        EventKey::TypingStart | EventKey::TypingStop => TypingPayload::name(&config()),
        EventKey::Abort => AbortPayload::name(&config()),
        EventKey::MarkRead => MarkReadPayload::name(&config()),
        EventKey::ToolResultIn => ToolResultPayload::name(&config()),
        EventKey::AuthRefresh => AuthRefreshPayload::name(&config()),
        EventKey::DiscoveryRequest => DiscoveryRequestPayload::name(&config()),
        EventKey::ChatMessage => ChatMessageEvent::name(&config()),
        EventKey::PresenceUpdate => PresenceUpdateEvent::name(&config()),
        EventKey::TypingUpdate => TypingUpdateEvent::name(&config()),
        EventKey::AiProcessing => AiProcessingEvent::name(&config()),
        EventKey::AiToken => AiTokenEvent::name(&config()),
        EventKey::AiMessage => AiMessageEvent::name(&config()),
        EventKey::AiError => AiErrorEvent::name(&config()),
        EventKey::AiToolCall => AiToolCallEvent::name(&config()),
        EventKey::AiToolResult => AiToolResultEvent::name(&config()),
        EventKey::ReadReceipt => MessageReadEvent::name(&config()),
        EventKey::DiscoveryResponse => DiscoveryResponse::name(&config()),
        EventKey::ServerError => ServerErrorEvent::name(&config()),
        EventKey::HandoffRequest => HandoffRequestPayload::name(&config()),
        EventKey::HandoffUpdate => HandoffUpdateEvent::name(&config()),
        EventKey::ReactionAdd | EventKey::ReactionRemove => ReactionPayload::name(&config()),
        EventKey::ReactionUpdate => ReactionUpdateEvent::name(&config()),
        EventKey::ChatEnd => ChatEndPayload::name(&config()),
        EventKey::AttachmentProcessing => AttachmentProcessingEvent::name(&config()),
        EventKey::CsatSubmit => CsatSubmitPayload::name(&config()),
        EventKey::CsatRequest => CsatRequestEvent::name(&config()),
        EventKey::CsatSubmitted => CsatSubmittedEvent::name(&config()),
        EventKey::ChatUpdated => ChatUpdatedEvent::name(&config()),
        EventKey::ChatEnded => ChatEndedEvent::name(&config()),
        EventKey::ChatDeleted => ChatDeletedEvent::name(&config()),
        EventKey::MessageSuperseded => MessageSupersededEvent::name(&config()),
    }
}

/// The successful ack of each client → server event (every ack may also be an [`ErrorAck`]).
fn ack_type(key: EventKey) -> String {
    match key {
        EventKey::Join => JoinAck::name(&config()),
        EventKey::UserMessage => UserMessageAck::name(&config()),
        EventKey::Abort => AbortAck::name(&config()),
        EventKey::MarkRead => MarkReadAck::name(&config()),
        EventKey::AuthRefresh => AuthRefreshAck::name(&config()),
        EventKey::DiscoveryRequest => DiscoveryAck::name(&config()),
        EventKey::HandoffRequest => HandoffAck::name(&config()),
        EventKey::ReactionAdd | EventKey::ReactionRemove => ReactionAck::name(&config()),
        EventKey::ChatEnd | EventKey::CsatSubmit => SeqAck::name(&config()),
        _ => OkAck::name(&config()),
    }
}

fn declarations() -> Vec<String> {
    vec![
        // Client → server.
        JoinPayload::decl(&config()),
        LeavePayload::decl(&config()),
        UserMessagePayload::decl(&config()),
        AttachmentRef::decl(&config()),
        ClientTool::decl(&config()),
        TypingPayload::decl(&config()),
        AbortPayload::decl(&config()),
        MarkReadPayload::decl(&config()),
        ToolResultPayload::decl(&config()),
        AuthRefreshPayload::decl(&config()),
        DiscoveryRequestPayload::decl(&config()),
        HandoffRequestPayload::decl(&config()),
        ReactionPayload::decl(&config()),
        ChatEndPayload::decl(&config()),
        CsatSubmitPayload::decl(&config()),
        // Server → client.
        ChatMessageEvent::decl(&config()),
        AttachmentWire::decl(&config()),
        Usage::decl(&config()),
        TurnWarning::decl(&config()),
        AiMessageEvent::decl(&config()),
        HistoryMessage::decl(&config()),
        AiErrorEvent::decl(&config()),
        AiToolCallEvent::decl(&config()),
        AiToolResultEvent::decl(&config()),
        MessageReadEvent::decl(&config()),
        PresenceUpdateEvent::decl(&config()),
        TypingUpdateEvent::decl(&config()),
        AiProcessingEvent::decl(&config()),
        AiTokenEvent::decl(&config()),
        ServerErrorEvent::decl(&config()),
        DiscoveryResponse::decl(&config()),
        HandoffUpdateEvent::decl(&config()),
        ReactionWire::decl(&config()),
        ReactionUpdateEvent::decl(&config()),
        CsatRequestEvent::decl(&config()),
        CsatSubmittedEvent::decl(&config()),
        ChatUpdatedEvent::decl(&config()),
        ChatEndedEvent::decl(&config()),
        ChatDeletedEvent::decl(&config()),
        MessageSupersededEvent::decl(&config()),
        AttachmentProcessingEvent::decl(&config()),
        // Acks.
        ErrorBody::decl(&config()),
        ErrorAck::decl(&config()),
        OkAck::decl(&config()),
        JoinAck::decl(&config()),
        UserMessageAck::decl(&config()),
        AbortAck::decl(&config()),
        MarkReadAck::decl(&config()),
        AuthRefreshAck::decl(&config()),
        DiscoveryAck::decl(&config()),
        HandoffAck::decl(&config()),
        ReactionAck::decl(&config()),
        SeqAck::decl(&config()),
    ]
}

fn event_map(name: &str, doc: &str, entries: &[(String, String)]) -> String {
    let mut out = format!("/** {doc} */\nexport interface {name} {{\n");
    for (event, ty) in entries {
        out.push_str(&format!("  {event:?}: {ty};\n"));
    }
    out.push_str("}\n\n");
    out
}

fn render() -> String {
    let mut out = String::from(
        "// Generated from the Rust crate natter-protocol by ts-rs: do not edit.\n\
         // Regenerate with `NATTER_UPDATE_TS=1 cargo test -p natter-protocol typescript`.\n\n\
         export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]?: JsonValue } | null;\n\n",
    );
    for decl in declarations() {
        out.push_str("export ");
        out.push_str(decl.trim_end());
        out.push_str("\n\n");
    }

    let server_to_client: Vec<EventKey> = EventKey::ALL
        .iter()
        .copied()
        .filter(|k| !CLIENT_TO_SERVER.contains(k))
        .collect();
    let entries = |keys: &[EventKey]| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.default_name().to_owned(), payload_type(*k)))
            .collect()
    };
    let inbound = entries(CLIENT_TO_SERVER);
    let outbound = entries(&server_to_client);
    out.push_str(&event_map(
        "ClientToServerEvents",
        "Events a client sends, by default wire name.",
        &inbound,
    ));
    out.push_str(&event_map(
        "ServerToClientEvents",
        "Events the server sends, by default wire name.",
        &outbound,
    ));

    // Seed 001's single map; a name used both ways (`message:read`, `ai:tool_result`) carries
    // either payload.
    let mut all: Vec<(String, String)> = Vec::new();
    for (event, ty) in inbound.iter().chain(outbound.iter()) {
        match all.iter_mut().find(|(e, _)| e == event) {
            Some((_, existing)) => *existing = format!("{existing} | {ty}"),
            None => all.push((event.clone(), ty.clone())),
        }
    }
    out.push_str(&event_map(
        "ChatEvents",
        "Every event by default wire name, both directions (seed 001's `ChatEvents`).",
        &all,
    ));

    let acks: Vec<(String, String)> = CLIENT_TO_SERVER
        .iter()
        .map(|k| {
            (
                k.default_name().to_owned(),
                format!("{} | {}", ack_type(*k), ErrorAck::name(&config())),
            )
        })
        .collect();
    out.push_str(&event_map(
        "ClientAcks",
        "The ack of each client event: `{ok: true, …}` or `{ok: false, error}`.",
        &acks,
    ));

    out.push_str("/** A logical event, independent of its wire name. */\nexport type EventKey =");
    for k in EventKey::ALL {
        out.push_str(&format!("\n  | {:?}", k.key()));
    }
    out.push_str(";\n\n");
    out.push_str(
        "/** The wire name of every event key when the server remaps none. */\n\
         export const DEFAULT_EVENT_NAMES = {\n",
    );
    for k in EventKey::ALL {
        out.push_str(&format!("  {}: {:?},\n", k.key(), k.default_name()));
    }
    out.push_str("} as const satisfies Record<EventKey, string>;\n\n");
    out.push_str(
        "/** Event keys of the events a client sends. */\nexport const CLIENT_EVENT_KEYS = [\n",
    );
    for k in CLIENT_TO_SERVER {
        out.push_str(&format!("  {:?},\n", k.key()));
    }
    out.push_str("] as const satisfies readonly EventKey[];\n");
    out
}

#[test]
fn typescript_bindings_are_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
    let fresh = render();
    if std::env::var_os("NATTER_UPDATE_TS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run `NATTER_UPDATE_TS=1 cargo test -p natter-protocol typescript` and commit it",
        path.display()
    );
}
