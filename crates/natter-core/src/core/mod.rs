//! [`ChatCore`]: the one API every face calls.
//!
//! `ChatCore`'s methods live by concern in `chats.rs`, `membership.rs`, `messages.rs`,
//! `turns.rs`, `history.rs` and `lifecycle.rs`; this file holds the shared state and types.

mod chats;
mod history;
mod lifecycle;
mod membership;
mod messages;
mod turns;

use std::sync::Arc;

use natter_protocol::ErrorCode;
use tracing::warn;

use crate::bus::Bus;
use crate::chat::{ChatInfo, ChatKey, ChatSummary, ConnectionId, Identity};
use crate::config::CoreConfig;
use crate::coordinator::{Coordinator, MemoryCoordinator};
use crate::error::CoreError;
use crate::event::{BusMessage, LiveEvent, StoredEvent};
use crate::feed::Feed;
use crate::limits::Limits;
use crate::presence::Presence;
use crate::provider::Provider;
use crate::scheduler::TurnScheduler;
use crate::store::{OpenTurn, Store, StoreError};
use crate::tools::ToolRegistry;

use natter_protocol::fields::check_id_field;

pub(crate) struct Inner {
    pub config: CoreConfig,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub provider: Arc<dyn Provider>,
    pub tools: ToolRegistry,
    /// Named assistants chats are bound to (none: the config's defaults answer every chat).
    pub agents: crate::agents::Agents,
    pub coordinator: Arc<dyn Coordinator>,
    pub turns: TurnScheduler,
    pub limits: Limits,
    /// Document text extraction (see [`crate::processing`]).
    pub(crate) processing: crate::processing::DocumentProcessing,
}

impl Inner {
    /// Publishes, logging (not failing) on a bus error: the event is already durable and
    /// members' feeds fill the gap from the store on the next event.
    pub async fn publish(&self, chat: &ChatKey, message: BusMessage) {
        if let Err(e) = self.bus.publish(chat, message).await {
            warn!(chat = %chat, error = %e, "bus publish failed");
        }
    }

    pub async fn publish_live(
        &self,
        chat: &ChatKey,
        event: LiveEvent,
        origin: Option<ConnectionId>,
    ) {
        self.publish(chat, BusMessage::Live { event, origin }).await;
    }

    pub async fn publish_durable(
        &self,
        chat: &ChatKey,
        event: StoredEvent,
        origin: Option<ConnectionId>,
    ) {
        self.publish(
            chat,
            BusMessage::Durable {
                event: Arc::new(event),
                origin,
            },
        )
        .await;
    }
}

/// What a core reaches the outside through. [`Seams::single_node`] fills in the in-process
/// coordinator; a cluster passes its Redis implementations of bus, presence and coordinator.
pub struct Seams {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub provider: Arc<dyn Provider>,
    pub coordinator: Arc<dyn Coordinator>,
    pub tools: ToolRegistry,
    /// Named assistants (CONTRACT §7.5); empty: the core's own settings are the one agent.
    pub agents: crate::agents::Agents,
    /// How documents' text is extracted (CONTRACT §7.6); the server's runs PDFs in a child
    /// process.
    pub extractor: Arc<dyn crate::processing::DocumentExtractor>,
}

impl Seams {
    /// One node: leases and control stay in this process.
    pub fn single_node(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
    ) -> Self {
        Self {
            store,
            bus,
            presence,
            provider,
            coordinator: Arc::new(MemoryCoordinator::default()),
            tools: ToolRegistry::default(),
            agents: crate::agents::Agents::default(),
            extractor: Arc::new(crate::processing::InProcessExtractor::default()),
        }
    }

    pub fn with_extractor(
        mut self,
        extractor: Arc<dyn crate::processing::DocumentExtractor>,
    ) -> Self {
        self.extractor = extractor;
        self
    }

    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    pub fn with_agents(mut self, agents: crate::agents::Agents) -> Self {
        self.agents = agents;
        self
    }
}

/// How often a node refreshes its presence entries (a cluster's expire 20 s after the last
/// refresh, so a dead node's members leave within about 25 s).
const PRESENCE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Chats, their logs, turns and presence, behind one cheap-to-clone handle.
#[derive(Clone)]
pub struct ChatCore {
    pub(crate) inner: Arc<Inner>,
}

/// What a member asks for when joining.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub last_seq: Option<u64>,
    pub epoch: Option<String>,
    /// When the join creates the chat: who may use it (see [`NewChat::members`]).
    pub members: Option<Vec<String>>,
    /// The agent the chat is bound to when this join creates it (CONTRACT §7.5); on an
    /// existing chat it must be the one it has.
    pub agent_id: Option<String>,
}

/// The state a member starts from.
pub struct JoinOutcome {
    pub info: ChatInfo,
    /// Whether `replay` fills the whole gap after the client's `lastSeq`.
    pub recovered: bool,
    /// Events after `lastSeq`, in order (empty unless recovered).
    pub replay: Vec<StoredEvent>,
    /// The latest messages, oldest first.
    pub messages: Vec<StoredEvent>,
    pub online_user_ids: Vec<String>,
    /// Live events from `info.head_seq` on; starts with the running turn's tokens so far.
    pub feed: Feed,
    /// When not `recovered`: the running turn's client-run tool calls (at or below the head)
    /// that still wait for a member's answer, oldest first, for the face to send after its
    /// ack (a reloaded page has no other way to learn of them).
    pub pending_tool_calls: Vec<StoredEvent>,
    /// The chat's turns still open (queued or running), in queue order, read after the feed
    /// subscribed; empty if the store could not be read (logged).
    pub open_turns: Vec<OpenTurn>,
}

/// A user message as a face hands it to the core.
#[derive(Debug, Clone)]
pub struct UserMessageInput {
    pub message_id: String,
    pub text: String,
    pub parts: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Client-run tools declared for this message's turn (see [`crate::tools::parse_declared`]).
    pub tools: Vec<crate::provider::ToolSpec>,
    /// Ids of attachments of this chat the message refers to (CONTRACT §7.6).
    pub attachments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostOutcome {
    pub seq: u64,
    pub duplicate: bool,
    /// The turn this message started (or started the first time it was sent).
    pub request_id: Option<String>,
    pub created_at: i64,
}

pub(crate) fn check_admits(who: &Identity, summary: &ChatSummary) -> Result<(), CoreError> {
    if summary.admits(who) {
        Ok(())
    } else {
        Err(CoreError::rejected(
            ErrorCode::Forbidden,
            format!(
                "chat `{}` is open to its members only, and `{}` is not one",
                summary.key.chat_id, who.user_id
            ),
        ))
    }
}

/// Ids reach the core from every face, so the core checks their length itself.
fn check_id(what: &str, id: &str) -> Result<(), CoreError> {
    check_id_field("request", what, id).map_err(CoreError::Rejected)
}

/// Longest chat title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

fn not_found(chat: &ChatKey) -> CoreError {
    CoreError::rejected(
        ErrorCode::NotFound,
        format!("chat `{}` does not exist", chat.chat_id),
    )
}

fn store_error(chat: &ChatKey, e: StoreError) -> CoreError {
    match e {
        StoreError::NoSuchChat(_) => not_found(chat),
        other => other.into(),
    }
}

/// A fresh, time-ordered id (UUID v7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
