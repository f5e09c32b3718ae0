//! Event keys and their wire names on the Socket.IO face.
//!
//! Clients (seed 001's `AIChatSocket`) address events by an `EventKey` and let the server
//! advertise the wire name in force for each (`meta:events:response`). The server may remap
//! any of them by configuration.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

macro_rules! event_keys {
    ($($variant:ident => $key:literal, $wire:literal;)*) => {
        /// A logical event, independent of its wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKey { $($variant),* }

        impl EventKey {
            pub const ALL: &'static [EventKey] = &[$(EventKey::$variant),*];

            /// The key as clients name it (`userMessage`, `aiToken`, …).
            pub fn key(self) -> &'static str {
                match self { $(EventKey::$variant => $key),* }
            }

            /// The wire name when no remapping is configured.
            pub fn default_name(self) -> &'static str {
                match self { $(EventKey::$variant => $wire),* }
            }

            pub fn from_key(key: &str) -> Option<EventKey> {
                match key { $($key => Some(EventKey::$variant),)* _ => None }
            }
        }
    };
}

event_keys! {
    Join => "join", "chat:join";
    Leave => "leave", "chat:leave";
    UserMessage => "userMessage", "user:message";
    TypingStart => "typingStart", "typing:start";
    TypingStop => "typingStop", "typing:stop";
    Abort => "abort", "ai:abort";
    MarkRead => "markRead", "message:read";
    ToolResultIn => "toolResultIn", "ai:tool_result";
    AuthRefresh => "authRefresh", "auth:refresh";
    ChatMessage => "chatMessage", "chat:message";
    PresenceUpdate => "presenceUpdate", "presence:update";
    TypingUpdate => "typingUpdate", "typing:update";
    AiProcessing => "aiProcessing", "ai:processing";
    AiToken => "aiToken", "ai:token";
    AiMessage => "aiMessage", "ai:message";
    AiError => "aiError", "ai:error";
    AiToolCall => "aiToolCall", "ai:tool_call";
    AiToolResult => "aiToolResult", "ai:tool_result";
    ReadReceipt => "readReceipt", "message:read";
    DiscoveryRequest => "discoveryRequest", "meta:events:request";
    DiscoveryResponse => "discoveryResponse", "meta:events:response";
    ServerError => "serverError", "error";
    HandoffRequest => "handoffRequest", "handoff:request";
    HandoffUpdate => "handoffUpdate", "handoff:update";
    ReactionAdd => "reactionAdd", "reaction:add";
    ReactionRemove => "reactionRemove", "reaction:remove";
    ReactionUpdate => "reactionUpdate", "reaction:update";
    ChatEnd => "chatEnd", "chat:end";
    CsatSubmit => "csatSubmit", "csat:submit";
    CsatRequest => "csatRequest", "csat:request";
    CsatSubmitted => "csatSubmitted", "csat:submitted";
    ChatUpdated => "chatUpdated", "chat:updated";
    ChatEnded => "chatEnded", "chat:ended";
    ChatDeleted => "chatDeleted", "chat:deleted";
    MessageSuperseded => "messageSuperseded", "message:superseded";
    AttachmentProcessing => "attachmentProcessing", "attachment:processing";
}

/// The keys a client sends (server-bound). The others are emitted by the server.
pub const CLIENT_TO_SERVER: &[EventKey] = &[
    EventKey::Join,
    EventKey::Leave,
    EventKey::UserMessage,
    EventKey::TypingStart,
    EventKey::TypingStop,
    EventKey::Abort,
    EventKey::MarkRead,
    EventKey::ToolResultIn,
    EventKey::AuthRefresh,
    EventKey::DiscoveryRequest,
    EventKey::HandoffRequest,
    EventKey::ReactionAdd,
    EventKey::ReactionRemove,
    EventKey::ChatEnd,
    EventKey::CsatSubmit,
];

/// Error from building an [`EventNames`] map out of configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventNamesError {
    UnknownKey(String),
    EmptyName(String),
    /// Two client→server keys would share one wire name, so the server could not tell them apart.
    Ambiguous(String),
}

impl std::fmt::Display for EventNamesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKey(k) => write!(
                f,
                "unknown event key `{k}` (known keys: {})",
                EventKey::ALL
                    .iter()
                    .map(|k| k.key())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::EmptyName(k) => write!(f, "event key `{k}` is mapped to an empty name"),
            Self::Ambiguous(n) => {
                write!(f, "two client events would share the wire name `{n}`")
            }
        }
    }
}

impl std::error::Error for EventNamesError {}

/// The wire name in force for every [`EventKey`].
#[derive(Debug, Clone)]
pub struct EventNames {
    names: HashMap<EventKey, String>,
    inbound: HashMap<String, EventKey>,
}

impl Default for EventNames {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new()).unwrap_or_else(|_| unreachable!())
    }
}

impl EventNames {
    /// Builds the map from `{eventKey: wireName}` overrides; keys not named keep their defaults.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Result<Self, EventNamesError> {
        let mut names: HashMap<EventKey, String> = EventKey::ALL
            .iter()
            .map(|k| (*k, k.default_name().to_owned()))
            .collect();
        for (key, name) in overrides {
            let k =
                EventKey::from_key(key).ok_or_else(|| EventNamesError::UnknownKey(key.clone()))?;
            if name.trim().is_empty() {
                return Err(EventNamesError::EmptyName(key.clone()));
            }
            names.insert(k, name.clone());
        }
        let mut inbound = HashMap::new();
        for k in CLIENT_TO_SERVER {
            let name = names[k].clone();
            if inbound.insert(name.clone(), *k).is_some() {
                return Err(EventNamesError::Ambiguous(name));
            }
        }
        Ok(Self { names, inbound })
    }

    /// The wire name for `key`.
    pub fn name(&self, key: EventKey) -> &str {
        self.names
            .get(&key)
            .map(String::as_str)
            .unwrap_or_else(|| key.default_name())
    }

    /// Which client→server event a wire name stands for.
    pub fn inbound(&self, wire_name: &str) -> Option<EventKey> {
        self.inbound.get(wire_name).copied()
    }

    /// The body of `meta:events:response`.
    pub fn discovery(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            version: 1,
            events: EventKey::ALL
                .iter()
                .map(|k| (k.key().to_owned(), self.name(*k).to_owned()))
                .collect(),
        }
    }
}

/// `meta:events:response`: `{version: 1, events: {<EventKey>: <wire name>}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
pub struct DiscoveryResponse {
    pub version: u32,
    pub events: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_key() {
        let names = EventNames::default();
        assert_eq!(names.discovery().events.len(), EventKey::ALL.len());
        assert_eq!(names.name(EventKey::AiToken), "ai:token");
        assert_eq!(names.inbound("user:message"), Some(EventKey::UserMessage));
        // The read receipt shares its name in both directions; inbound it is markRead.
        assert_eq!(names.inbound("message:read"), Some(EventKey::MarkRead));
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let mut o = BTreeMap::new();
        o.insert("userMessage".into(), "msg:send".into());
        let names = EventNames::with_overrides(&o).unwrap();
        assert_eq!(names.inbound("msg:send"), Some(EventKey::UserMessage));
        assert_eq!(names.inbound("user:message"), None);

        o.insert("nope".into(), "x".into());
        assert!(matches!(
            EventNames::with_overrides(&o),
            Err(EventNamesError::UnknownKey(_))
        ));
        let mut clash = BTreeMap::new();
        clash.insert("join".into(), "user:message".into());
        assert!(matches!(
            EventNames::with_overrides(&clash),
            Err(EventNamesError::Ambiguous(_))
        ));
    }
}
