//! Natter's event map (seed 001's `ChatEvents`): one type per event, naming its default wire
//! name and its payload (and, client → server, its ack), all from `natter_protocol`.

use natter_protocol::client as c;
use natter_protocol::events::DiscoveryResponse;
use natter_protocol::socketio as s;

use crate::service::{ClientEvent, EventMap, ServerEvent};

/// The events of Natter's Socket.IO face (CONTRACT §1).
#[derive(Debug, Clone, Copy)]
pub struct ChatEvents;

impl EventMap for ChatEvents {}

macro_rules! client_events {
    ($($(#[$doc:meta])* $ty:ident = $name:literal, $payload:ty => $ack:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl ClientEvent for $ty {
            type Map = ChatEvents;
            const NAME: &'static str = $name;
            type Payload = $payload;
            type Ack = $ack;
        }
    )*};
}

macro_rules! server_events {
    ($($(#[$doc:meta])* $ty:ident = $name:literal, $payload:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl ServerEvent for $ty {
            type Map = ChatEvents;
            const NAME: &'static str = $name;
            type Payload = $payload;
        }
    )*};
}

client_events! {
    /// `chat:join`
    Join = "chat:join", c::JoinPayload => s::JoinAck;
    /// `chat:leave`
    Leave = "chat:leave", c::LeavePayload => s::OkAck;
    /// `user:message`
    UserMessage = "user:message", c::UserMessagePayload => s::UserMessageAck;
    /// `typing:start`
    TypingStart = "typing:start", c::TypingPayload => s::OkAck;
    /// `typing:stop`
    TypingStop = "typing:stop", c::TypingPayload => s::OkAck;
    /// `ai:abort`
    Abort = "ai:abort", c::AbortPayload => s::AbortAck;
    /// `message:read` (client → server)
    MarkRead = "message:read", c::MarkReadPayload => s::MarkReadAck;
    /// `ai:tool_result` (client → server)
    ToolResultIn = "ai:tool_result", c::ToolResultPayload => s::OkAck;
    /// `auth:refresh`
    AuthRefresh = "auth:refresh", c::AuthRefreshPayload => s::AuthRefreshAck;
    /// `meta:events:request`
    DiscoveryRequest = "meta:events:request", c::DiscoveryRequestPayload => s::DiscoveryAck;
    /// `handoff:request`: ask for a human agent (CONTRACT §7.2)
    HandoffRequest = "handoff:request", c::HandoffRequestPayload => s::HandoffAck;
    /// `reaction:add`: react to a message (CONTRACT §7.3)
    ReactionAdd = "reaction:add", c::ReactionPayload => s::ReactionAck;
    /// `reaction:remove`: take a reaction back (CONTRACT §7.3)
    ReactionRemove = "reaction:remove", c::ReactionPayload => s::ReactionAck;
    /// `chat:end`: end the chat (CONTRACT §7.4)
    ChatEnd = "chat:end", c::ChatEndPayload => s::SeqAck;
    /// `csat:submit`: rate the chat 1-5 (CONTRACT §7.4)
    CsatSubmit = "csat:submit", c::CsatSubmitPayload => s::SeqAck;
}

server_events! {
    /// `chat:message`
    ChatMessage = "chat:message", s::ChatMessageEvent;
    /// `presence:update`
    PresenceUpdate = "presence:update", s::PresenceUpdateEvent;
    /// `typing:update`
    TypingUpdate = "typing:update", s::TypingUpdateEvent;
    /// `ai:processing`
    AiProcessing = "ai:processing", s::AiProcessingEvent;
    /// `ai:token`
    AiToken = "ai:token", s::AiTokenEvent<'static>;
    /// `ai:message`
    AiMessage = "ai:message", s::AiMessageEvent;
    /// `ai:error`
    AiError = "ai:error", s::AiErrorEvent;
    /// `ai:tool_call`
    AiToolCall = "ai:tool_call", s::AiToolCallEvent;
    /// `ai:tool_result` (server → client)
    AiToolResult = "ai:tool_result", s::AiToolResultEvent;
    /// `message:read` (server → client)
    ReadReceipt = "message:read", s::MessageReadEvent;
    /// `meta:events:response`
    DiscoveryResponseEvent = "meta:events:response", DiscoveryResponse;
    /// `error`
    ServerError = "error", s::ServerErrorEvent;
    /// `handoff:update`: a chat's handoff state after a change (CONTRACT §7.2)
    HandoffUpdate = "handoff:update", s::HandoffUpdateEvent;
    /// `reaction:update`: a message's whole reaction list after a change (CONTRACT §7.3)
    ReactionUpdate = "reaction:update", s::ReactionUpdateEvent;
    /// `csat:request`: the chat ended; a customer is asked to rate it (CONTRACT §7.4)
    CsatRequest = "csat:request", s::CsatRequestEvent;
    /// `csat:submitted`: a member's CSAT answer was stored
    CsatSubmitted = "csat:submitted", s::CsatSubmittedEvent;
    /// `chat:updated`: the chat was renamed or (un)pinned
    ChatUpdated = "chat:updated", s::ChatUpdatedEvent;
    /// `chat:ended`: the chat was ended
    ChatEnded = "chat:ended", s::ChatEndedEvent;
    /// `chat:deleted`: the chat and its log are gone
    ChatDeleted = "chat:deleted", s::ChatDeletedEvent;
    /// `message:superseded`: an assistant message was regenerated
    MessageSuperseded = "message:superseded", s::MessageSupersededEvent;
    /// `attachment:processing`: a document's processing started, progressed or ended
    /// (CONTRACT §7.6)
    AttachmentProcessing = "attachment:processing", s::AttachmentProcessingEvent;
}
