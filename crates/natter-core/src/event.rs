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

/// An attachment a user message refers to, as stored with the message: what clients show
/// (the download `url` is made from the `id` by the faces).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessageAttachment {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    /// An image's size in pixels (for the `[image: name, WxH]` line of models without vision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl MessageAttachment {
    /// Whether the model may see it as an image part.
    pub fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }

    /// As messages show it on the wire (`{id, name, mimeType, size, url}`).
    pub fn wire(&self) -> natter_protocol::socketio::AttachmentWire {
        natter_protocol::socketio::AttachmentWire {
            id: self.id.clone(),
            name: self.name.clone(),
            mime_type: self.mime_type.clone(),
            size: self.size,
            url: crate::attachments::attachment_url(&self.id),
            width: self.width,
            height: self.height,
        }
    }

    /// `[image: <name>, <width>x<height>]`, what a model without vision gets for an image.
    pub fn image_line(&self) -> String {
        format!(
            "[image: {}, {}x{}]",
            self.name,
            self.width.unwrap_or(0),
            self.height.unwrap_or(0)
        )
    }
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
        /// `humanAgent` for a human agent's message (CONTRACT §7.2); absent for a user's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// Client-run tools declared with the message (`tools` on `user:message` or the AI
        /// SDK request), kept so that its turn on any node, and a regenerate, offer them too.
        /// Never on the wire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Vec<crate::provider::ToolSpec>>,
        /// The attachments the message refers to (CONTRACT §7.6), with what clients show.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachments: Option<Vec<MessageAttachment>>,
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
        /// What the turn did not do that its sender may expect, e.g. tools not offered to a
        /// model that cannot call them; absent when nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warnings: Option<Vec<natter_protocol::socketio::TurnWarning>>,
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
        /// The client-run tools the new turn offers: those declared with the message the old
        /// reply answered, so that a regenerate offers what the first answer could use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Vec<crate::provider::ToolSpec>>,
    },
    /// A member reacted to a message with an emoji (CONTRACT §7.3).
    #[serde(rename_all = "camelCase")]
    ReactionAdded {
        message_id: String,
        user_id: String,
        emoji: String,
        /// The message's whole reaction list after this event. The store fills it in the
        /// same transaction as the append (whatever the caller put here), so a replayed
        /// event shows the list as it was then.
        #[serde(default)]
        reactions: Vec<Reaction>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// A member took a reaction back. `reactions` as for [`EventBody::ReactionAdded`].
    #[serde(rename_all = "camelCase")]
    ReactionRemoved {
        message_id: String,
        user_id: String,
        emoji: String,
        #[serde(default)]
        reactions: Vec<Reaction>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// A customer's satisfaction answer (CONTRACT §7.4): one per user and chat, a later one
    /// replaces an earlier one; the chat's summary shows the latest.
    #[serde(rename_all = "camelCase")]
    CsatSubmitted {
        user_id: String,
        /// 1 to 5.
        rating: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// Handoff (CONTRACT §7.2): a customer asked for a person. `handoff` is the chat's
    /// handoff state after this event, which the store keeps and members are shown.
    #[serde(rename_all = "camelCase")]
    HumanAgentRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
        handoff: HandoffState,
    },
    /// Handoff: human agent `agent_id` took the chat; the AI stays silent while one is in.
    #[serde(rename_all = "camelCase")]
    HumanAgentJoined {
        agent_id: String,
        handoff: HandoffState,
    },
    /// Handoff: human agent `agent_id` left; with none left the AI answers again.
    #[serde(rename_all = "camelCase")]
    HumanAgentLeft {
        agent_id: String,
        handoff: HandoffState,
    },
}

/// A chat's handoff state (CONTRACT §7.2), as a handoff event leaves it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HandoffState {
    /// Since when the chat waits for a human agent (Unix ms); `None` when not waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<i64>,
    /// The human agents engaged, in the order they joined.
    #[serde(default)]
    pub agents: Vec<String>,
}

impl HandoffState {
    pub fn ai_engaged(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn human_agent_engaged(&self) -> bool {
        !self.agents.is_empty()
    }

    pub fn is_waiting_for_agent(&self) -> bool {
        self.waiting_since.is_some()
    }
}

/// One emoji reaction of one user on one message (seed 002's `EmojiReaction`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub user_id: String,
    /// Epoch ms of the first add (adding it again keeps it).
    pub created_at: i64,
}

/// A chat's latest CSAT answer, as its summary shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csat {
    pub user_id: String,
    pub rating: u8,
    pub comment: Option<String>,
    pub submitted_at: i64,
}

/// Applies a reaction event to a message's list (kept in the order reactions were first
/// added): what every store does in its append, in one place.
pub fn apply_reaction(list: &mut Vec<Reaction>, body: &EventBody, created_at: i64) {
    match body {
        EventBody::ReactionAdded { user_id, emoji, .. }
            if !list
                .iter()
                .any(|r| r.user_id == *user_id && r.emoji == *emoji) =>
        {
            list.push(Reaction {
                emoji: emoji.clone(),
                user_id: user_id.clone(),
                created_at,
            });
        }
        EventBody::ReactionRemoved { user_id, emoji, .. } => {
            list.retain(|r| !(r.user_id == *user_id && r.emoji == *emoji));
        }
        _ => {}
    }
}

/// Rewrites a handoff event's `handoff` to the state it leaves the chat in, computed from the
/// chat's state `before` it (as the store holds it inside the append's transaction), not from
/// the caller's possibly stale read: two agents joining at once on two nodes both end up in
/// the list. What every store does in its append, in one place.
///
/// - `human_agent_requested`: the agents stay; an earlier wait keeps its `waiting_since`.
/// - `human_agent_joined`: the wait ends; the agent is added unless already in.
/// - `human_agent_left`: the agent is taken out; the wait (if any) stays.
pub fn apply_handoff(before: &HandoffState, body: &mut EventBody) {
    match body {
        EventBody::HumanAgentRequested { handoff, .. } => {
            handoff.waiting_since = before.waiting_since.or(handoff.waiting_since);
            handoff.agents = before.agents.clone();
        }
        EventBody::HumanAgentJoined { agent_id, handoff } => {
            let mut agents = before.agents.clone();
            if !agents.contains(agent_id) {
                agents.push(agent_id.clone());
            }
            *handoff = HandoffState {
                waiting_since: None,
                agents,
            };
        }
        EventBody::HumanAgentLeft { agent_id, handoff } => {
            *handoff = HandoffState {
                waiting_since: before.waiting_since,
                agents: before
                    .agents
                    .iter()
                    .filter(|a| *a != agent_id)
                    .cloned()
                    .collect(),
            };
        }
        _ => {}
    }
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
            Self::ReactionAdded { .. } => "reaction_added",
            Self::ReactionRemoved { .. } => "reaction_removed",
            Self::CsatSubmitted { .. } => "csat_submitted",
            Self::HumanAgentRequested { .. } => "human_agent_requested",
            Self::HumanAgentJoined { .. } => "human_agent_joined",
            Self::HumanAgentLeft { .. } => "human_agent_left",
        }
    }

    /// The handoff state a handoff event leaves the chat in.
    pub fn handoff(&self) -> Option<&HandoffState> {
        match self {
            Self::HumanAgentRequested { handoff, .. }
            | Self::HumanAgentJoined { handoff, .. }
            | Self::HumanAgentLeft { handoff, .. } => Some(handoff),
            _ => None,
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

    /// The message a reaction event is about, with the reaction list the store filled in.
    pub fn reaction_target(&self) -> Option<(&str, &[Reaction])> {
        match self {
            Self::ReactionAdded {
                message_id,
                reactions,
                ..
            }
            | Self::ReactionRemoved {
                message_id,
                reactions,
                ..
            } => Some((message_id, reactions)),
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
    /// The model started a tool call and streams its input (AI SDK `tool-input-start`); the
    /// whole call is stored as [`EventBody::ToolCall`] once complete. Not in the turn buffer:
    /// a member that joins later gets the whole call only.
    ToolInputStart {
        turn: Arc<TurnRef>,
        tool_call_id: Arc<str>,
        name: Arc<str>,
    },
    /// The next piece of a started tool call's arguments (JSON text as the model writes it).
    ToolInputDelta {
        turn: Arc<TurnRef>,
        tool_call_id: Arc<str>,
        delta: Arc<str>,
    },
    /// The chat was deleted: its log is gone, and members are told and dropped.
    ChatDeleted {
        deleted_by: Option<Arc<str>>,
    },
    /// A document attachment's text extraction moved on (CONTRACT §7.6). Live, not in the
    /// log (CONTRACT §6.5): the attachment's metadata keeps the state for whoever missed it.
    AttachmentProcessing {
        attachment_id: Arc<str>,
        update: ProcessingUpdate,
    },
}

/// One step of a document's processing, as members are told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProcessingUpdate {
    Started,
    Progress {
        percent: u8,
    },
    Complete {
        chars: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pages: Option<u32>,
    },
    Error {
        code: String,
        message: String,
    },
}

impl ProcessingUpdate {
    /// The Socket.IO `status`: `processing` (started and progress), `complete` or `error`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Started | Self::Progress { .. } => "processing",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
        }
    }
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

#[cfg(test)]
mod declared_tools_tests {
    use super::*;

    #[test]
    fn declared_tools_are_kept_and_old_rows_still_read() {
        // A row stored before messages kept their tools.
        let old = r#"{"kind":"user_message","messageId":"m1","userId":"ann","text":"hi"}"#;
        let body: EventBody = serde_json::from_str(old).expect("old row");
        assert!(matches!(body, EventBody::UserMessage { tools: None, .. }));
        let old = r#"{"kind":"message_superseded","messageId":"a1","requestId":"r2"}"#;
        let body: EventBody = serde_json::from_str(old).expect("old row");
        assert!(matches!(
            body,
            EventBody::MessageSuperseded { tools: None, .. }
        ));

        let tools = vec![crate::provider::ToolSpec {
            name: "confirm".into(),
            description: "Ask".into(),
            parameters: serde_json::json!({"type": "object"}),
        }];
        let new = EventBody::MessageSuperseded {
            message_id: "a1".into(),
            request_id: "r2".into(),
            superseded_by: None,
            context_seq: Some(3),
            tools: Some(tools.clone()),
        };
        let text = serde_json::to_string(&new).expect("serializes");
        assert_eq!(
            serde_json::from_str::<EventBody>(&text).expect("reads"),
            new
        );
        // A declaration without description or parameters reads with defaults.
        let bare = r#"{"kind":"user_message","messageId":"m1","userId":"ann","text":"hi","tools":[{"name":"x"}]}"#;
        let EventBody::UserMessage { tools: Some(t), .. } =
            serde_json::from_str(bare).expect("bare")
        else {
            panic!("no tools");
        };
        assert_eq!(t[0].name, "x");
        assert_eq!(t[0].parameters, serde_json::Value::Null);
    }
}

#[cfg(test)]
mod handoff_tests {
    use super::*;

    fn state(waiting_since: Option<i64>, agents: &[&str]) -> HandoffState {
        HandoffState {
            waiting_since,
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn applied(before: &HandoffState, mut body: EventBody) -> HandoffState {
        apply_handoff(before, &mut body);
        body.handoff().cloned().unwrap_or_default()
    }

    #[test]
    fn apply_handoff_uses_the_state_before_not_the_proposal() {
        let join = |agent: &str, proposed: &[&str]| EventBody::HumanAgentJoined {
            agent_id: agent.into(),
            handoff: state(None, proposed),
        };
        let leave = |agent: &str, proposed: &[&str]| EventBody::HumanAgentLeft {
            agent_id: agent.into(),
            handoff: state(None, proposed),
        };
        let ask = |since: i64| EventBody::HumanAgentRequested {
            requested_by: None,
            handoff: state(Some(since), &[]),
        };
        // A join proposed from a view without `a1` still keeps `a1`.
        assert_eq!(
            applied(&state(Some(5), &["a1"]), join("a2", &["a2"])),
            state(None, &["a1", "a2"])
        );
        assert_eq!(
            applied(&state(None, &["a1"]), join("a1", &["a1"])),
            state(None, &["a1"])
        );
        assert_eq!(
            applied(&state(Some(5), &["a1", "a2"]), leave("a2", &["a1", "a3"])),
            state(Some(5), &["a1"])
        );
        assert_eq!(
            applied(&state(None, &["a1"]), leave("a9", &[])),
            state(None, &["a1"])
        );
        // An earlier wait keeps its start; the agents stay.
        assert_eq!(
            applied(&state(Some(5), &["a1"]), ask(9)),
            state(Some(5), &["a1"])
        );
        assert_eq!(applied(&state(None, &[]), ask(9)), state(Some(9), &[]));
    }
}
