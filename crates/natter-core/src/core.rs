//! [`ChatCore`]: the one API every face calls.

use std::sync::Arc;

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tracing::warn;

use crate::bus::{Bus, FollowReason, Subscription, TurnSnapshot, UserEvent, UserSubscription};
use crate::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, ConnectionId, Identity, NewChat, Source,
};
use crate::config::{AiMode, CoreConfig};
use crate::coordinator::{Coordinator, MemoryCoordinator};
use crate::error::CoreError;
use crate::event::{BusMessage, EventBody, LiveEvent, StoredEvent};
use crate::feed::Feed;
use crate::limits::{Admission, Limits};
use crate::presence::Presence;
use crate::provider::{Provider, ToolSpec};
use crate::scheduler::{Opened, TurnScheduler};
use crate::store::{Appended, Store, StoreError};
use crate::telemetry;
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

impl ChatCore {
    pub fn new(
        config: CoreConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
    ) -> Self {
        Self::with_tools(
            config,
            store,
            bus,
            presence,
            provider,
            ToolRegistry::default(),
        )
    }

    /// A core whose turns may call `tools` (server-run, or declared for clients to run).
    pub fn with_tools(
        config: CoreConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
        tools: ToolRegistry,
    ) -> Self {
        Self::from_seams(
            config,
            Seams::single_node(store, bus, presence, provider).with_tools(tools),
        )
    }

    /// A core on the given seams. Started inside a Tokio runtime, it also starts its
    /// background work: ending what a single node's last run left open, the sweep for chats
    /// whose turn owner is gone, control messages from other nodes, and presence refresh.
    pub fn from_seams(config: CoreConfig, seams: Seams) -> Self {
        telemetry::describe();
        let turns = TurnScheduler::new(config.max_concurrent_turns);
        let limits = Limits::new(config.limits.clone());
        let core = Self {
            inner: Arc::new(Inner {
                limits,
                config,
                store: seams.store,
                bus: seams.bus,
                presence: seams.presence,
                provider: seams.provider,
                tools: seams.tools,
                agents: seams.agents,
                coordinator: seams.coordinator,
                turns,
                processing: crate::processing::DocumentProcessing::new(seams.extractor),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            core.start_background(&runtime);
        }
        core
    }

    fn start_background(&self, runtime: &tokio::runtime::Handle) {
        let turns = &self.inner.turns;
        // Documents a previous run left mid-extraction (CONTRACT §7.6).
        let core = self.clone();
        turns.spawn_background(runtime, |_| async move { core.resume_processing().await });
        // At startup rather than when each chat is next opened: the open turns are a small
        // indexed set (at most the turns running or queued at the crash), while chats may be
        // many, and a member waiting on a turn may never reopen its chat (a pending-turn
        // tracker, an AI SDK resume). In the background, so that serving starts at once;
        // joins and follows wait for it, so a member's replay already holds the ends.
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            core.end_interrupted_turns_until_done(stop.clone()).await;
            // Then, every few seconds, take over chats whose owner is gone.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(crate::scheduler::SWEEP_INTERVAL) => {}
                    _ = stop.cancelled() => return,
                }
                if let Err(e) = core.inner.turns.sweep(&core.inner).await {
                    warn!(error = %e, "looking for turns without an owner failed");
                }
            }
        });
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            let mut rx = match core.inner.coordinator.subscribe_control().await {
                Ok(rx) => rx,
                Err(e) => {
                    warn!(error = %e, "subscribing to control messages failed; aborts and tool results from other nodes will not reach this one");
                    return;
                }
            };
            loop {
                tokio::select! {
                    control = rx.recv() => match control {
                        Some(control) => core.inner.turns.on_control(&core.inner, control).await,
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                }
            }
        });
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PRESENCE_REFRESH) => {}
                    _ = stop.cancelled() => return,
                }
                for (chat, online_user_ids) in core.inner.presence.refresh().await {
                    core.inner
                        .publish_live(&chat, LiveEvent::Presence { online_user_ids }, None)
                        .await;
                }
            }
        });
    }

    /// Ends the turns a single node's last run left open (it crashed or was killed while
    /// they were queued or running) with `ai:error` code `interrupted`, `retryable: true`:
    /// every turn ends (CONTRACT §1). Done once per core; the constructor starts it when a
    /// Tokio runtime is running, and calling this waits for that run. Returns how many turns
    /// it ended. A cluster node ends none here: it takes over chats whose owner is gone.
    pub async fn end_interrupted_turns(&self) -> Result<usize, CoreError> {
        Ok(self.inner.turns.end_left_over(&self.inner).await?)
    }

    /// Waits until the turns a single node's last run left open are ended (a no-op once done,
    /// and in a cluster). Joins wait so their replay holds the ends; a new turn is opened only
    /// after it, so it is never taken for one the last run left.
    async fn settle(&self, chat: &ChatKey) {
        if let Err(e) = self.end_interrupted_turns().await {
            warn!(chat = %chat, error = %e, "ending the turns the last run left open failed");
        }
    }

    /// [`Self::end_interrupted_turns`], retried while the store fails, until shutdown.
    async fn end_interrupted_turns_until_done(&self, stop: tokio_util::sync::CancellationToken) {
        let mut delay = std::time::Duration::from_millis(500);
        loop {
            match self.end_interrupted_turns().await {
                Ok(0) => return,
                Ok(ended) => {
                    tracing::info!(ended, "ended the turns the last run left open");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "ending the turns the last run left open failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(30));
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// The provider's name (shown to users, e.g. to label the demo provider).
    pub fn provider_name(&self) -> &str {
        self.inner.provider.name()
    }

    /// Joins `conn` to a chat: creates it if allowed, replays what the client missed, and
    /// returns its live feed.
    pub async fn join(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        req: JoinRequest,
    ) -> Result<JoinOutcome, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.authorize(who, chat).await?;
        let inner = &self.inner;
        let agent = match &req.agent_id {
            Some(id) => {
                check_id("agentId", id)?;
                inner.agents.resolve_id(id)?
            }
            None => None,
        };
        let create = inner.config.auto_create_chats.then(|| NewChat {
            created_by: Some(who.user_id.to_string()),
            metadata: req
                .agent_id
                .as_ref()
                .map(|id| serde_json::json!({ crate::agents::AGENT_ID_KEY: id })),
            members: req.members.clone(),
        });
        let (info, subscription) = self.subscribe_at_head(chat, create.as_ref()).await?;
        if let Some(agent) = &agent {
            self.check_binding(chat, agent).await?;
        }

        let mut recovered = false;
        let mut replay = Vec::new();
        if let (Some(last_seq), Some(epoch)) = (req.last_seq, req.epoch.as_deref()) {
            let gap = info.head_seq.saturating_sub(last_seq);
            if epoch == info.epoch
                && last_seq <= info.head_seq
                && gap as usize <= inner.config.replay_limit
            {
                replay = inner
                    .store
                    .events_after(chat, last_seq, gap as usize)
                    .await?;
                recovered = replay.len() as u64 == gap;
                if !recovered {
                    replay.clear();
                }
            }
        }
        let messages = inner
            .store
            .recent_messages(chat, info.head_seq, inner.config.join_history)
            .await?;
        // Observers watch without being listed (CONTRACT §7.1).
        let online_user_ids = if who.may_write() {
            let online_user_ids = inner.presence.join(chat, &who.user_id, conn).await;
            inner
                .publish_live(
                    chat,
                    LiveEvent::Presence {
                        online_user_ids: online_user_ids.clone(),
                    },
                    None,
                )
                .await;
            online_user_ids
        } else {
            inner.presence.online(chat).await
        };
        metrics::counter!(telemetry::CHATS_JOINED).increment(1);
        let running = subscription
            .running_turn
            .as_ref()
            .map(|t| t.turn.request_id.clone());
        let pending_tool_calls = match running {
            Some(request_id) if !recovered => {
                self.pending_tool_calls(chat, &request_id, info.head_seq)
                    .await
            }
            _ => Vec::new(),
        };
        let feed = self.feed(chat, conn, info.head_seq, subscription);
        Ok(JoinOutcome {
            info,
            recovered,
            replay,
            messages,
            online_user_ids,
            feed,
            pending_tool_calls,
        })
    }

    /// Turn `request_id`'s client-run calls stored up to `head` and not answered yet. A store
    /// error costs the list (logged), not the join: a join with `lastSeq` still replays them.
    async fn pending_tool_calls(
        &self,
        chat: &ChatKey,
        request_id: &str,
        head: u64,
    ) -> Vec<StoredEvent> {
        let store = &self.inner.store;
        let read = async {
            let open = store.open_turns(chat).await?;
            let Some(turn) = open.iter().find(|t| t.request_id == request_id) else {
                return Ok(Vec::new());
            };
            let span = head.saturating_sub(turn.opened_seq) as usize;
            let limit = span.min(self.inner.config.replay_limit);
            store.events_after(chat, turn.opened_seq, limit).await
        };
        let events: Vec<StoredEvent> = match read.await {
            Ok(events) => events,
            Err(e) => {
                warn!(chat = %chat, error = %e, "reading a running turn's pending tool calls failed");
                return Vec::new();
            }
        };
        let answered: std::collections::HashSet<&str> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::ToolResult { tool_call_id, .. } => Some(tool_call_id.as_str()),
                _ => None,
            })
            .collect();
        events
            .iter()
            .filter(|e| {
                matches!(&e.body, EventBody::ToolCall {
                    request_id: r, tool_call_id, executor, ..
                } if r == request_id && executor == "client" && !answered.contains(tool_call_id.as_str()))
            })
            .cloned()
            .collect()
    }

    /// Subscribes to the chat and reads its head, so that every event after the head arrives
    /// live and the running turn's buffer (if any) belongs to a turn not yet ended at the head.
    async fn subscribe_at_head(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<(ChatInfo, Subscription), CoreError> {
        let inner = &self.inner;
        // A member starts from a settled log: turns the last run left open have ended (at
        // once after a start; a no-op later). Should that fail, the join goes on and the ends
        // arrive live once stored.
        self.settle(chat).await;
        // Subscribe before reading the head: every event after the head then arrives live,
        // and anything live at or below the head is dropped by the feed as a duplicate.
        let mut subscription = inner.bus.subscribe(chat).await?;
        let info = inner
            .store
            .open_chat(chat, create)
            .await?
            .ok_or_else(|| not_found(chat))?;

        // A turn buffered at subscribe time may have ended before the head was read: its end
        // is then in the replay or the history, and its tokens must not follow. If it ends
        // after this check, its end arrives live after the tokens, as it should.
        let still_running = inner.bus.running_turn(chat).await?;
        let same_turn = |a: &TurnSnapshot| {
            still_running
                .as_ref()
                .is_some_and(|b| b.turn.message_id == a.turn.message_id)
        };
        if let Some(snapshot) = &subscription.running_turn
            && !same_turn(snapshot)
            && !Self::ended_after(inner, chat, info.head_seq, &snapshot.turn.message_id).await?
        {
            subscription.running_turn = None;
        }
        Ok((info, subscription))
    }

    /// Whether turn `message_id`, no longer running, ended after `head`: then it ended
    /// between the head read and the check above, so its end and the tokens since the
    /// subscription arrive live, and the member needs the snapshot's tokens before them (else
    /// its tokens would stop short of the reply). The bus drops a turn's buffer only once its
    /// end is stored, so the end is in the store by now, a few events past the head at most.
    async fn ended_after(
        inner: &Inner,
        chat: &ChatKey,
        head: u64,
        message_id: &str,
    ) -> Result<bool, CoreError> {
        const LOOK_AHEAD: usize = 64;
        let after = inner.store.events_after(chat, head, LOOK_AHEAD).await?;
        Ok(after.iter().any(|e| e.body.ends_turn() == Some(message_id)))
    }

    fn feed(&self, chat: &ChatKey, conn: &ConnectionId, head: u64, sub: Subscription) -> Feed {
        Feed::new(
            chat.clone(),
            conn.clone(),
            head,
            sub,
            self.inner.store.clone(),
            self.inner.bus.clone(),
            self.inner.config.replay_limit,
        )
    }

    /// Watches a chat without joining its presence (an HTTP stream following one turn, a
    /// resumed stream). The feed starts at the head, with the running turn's tokens so far:
    /// [`Feed::current_turn`] names that turn.
    pub async fn follow(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
    ) -> Result<(ChatInfo, Feed), CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.authorize(who, chat).await?;
        let (info, subscription) = self.subscribe_at_head(chat, None).await?;
        let feed = self.feed(chat, conn, info.head_seq, subscription);
        Ok((info, feed))
    }

    /// Opens a chat, creating it for `who` when it does not exist and `create` is set
    /// (`new` then gives its metadata and members; its creator is `who`).
    pub async fn open_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        create: Option<NewChat>,
    ) -> Result<ChatInfo, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.authorize(who, chat).await?;
        // An agent asked for in the metadata must exist; it is stored by id.
        let mut agent = None;
        let new = match create {
            Some(new) => {
                let (asked, metadata) = self.inner.agents.bind(new.metadata)?;
                agent = asked;
                Some(NewChat {
                    created_by: Some(who.user_id.to_string()),
                    metadata,
                    ..new
                })
            }
            None => None,
        };
        let info = self
            .inner
            .store
            .open_chat(chat, new.as_ref())
            .await?
            .ok_or_else(|| not_found(chat))?;
        if let Some(agent) = &agent {
            self.check_binding(chat, agent).await?;
        }
        Ok(info)
    }

    /// The agents chats may be bound to (`GET /api/v1/agents`); with none configured, the
    /// server's default as the one agent.
    pub fn agents(&self) -> Vec<crate::agents::AgentInfo> {
        self.inner.agents.infos()
    }

    /// Checks that `agent_id` names a configured agent (`not_found`) and that the existing
    /// `chat` is bound to it (`invalid_field`: a chat's agent is chosen when it is created).
    /// With no agents configured, nothing is checked.
    pub async fn check_agent(&self, chat: &ChatKey, agent_id: &str) -> Result<(), CoreError> {
        check_id("agentId", agent_id)?;
        if let Some(agent) = self.inner.agents.resolve_id(agent_id)? {
            self.check_binding(chat, &agent).await?;
        }
        Ok(())
    }

    async fn check_binding(
        &self,
        chat: &ChatKey,
        agent: &crate::agents::Agent,
    ) -> Result<(), CoreError> {
        let summary = self.chat_summary(chat).await?;
        match crate::agents::bound_id(summary.metadata.as_ref()) {
            Some(id) if id == agent.id => Ok(()),
            Some(id) => Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "chat `{}` is bound to agent `{id}`, not `{}`; a chat's agent is chosen when it is created",
                    chat.chat_id, agent.id
                ),
            )),
            None => Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "chat `{}` was created without an agent, so it cannot use `{}`; a chat's agent is chosen when it is created",
                    chat.chat_id, agent.id
                ),
            )),
        }
    }

    /// Creates a chat with a fresh id for `who`, and tells the user's other connections.
    pub async fn create_chat(
        &self,
        who: &Identity,
        origin: Option<&ConnectionId>,
        new: NewChat,
    ) -> Result<ChatSummary, CoreError> {
        let chat = ChatKey::new(who.org.clone(), new_id());
        self.open_chat(who, &chat, Some(new)).await?;
        self.tell_user(who, &chat, FollowReason::Created, 0, origin)
            .await;
        self.chat_summary(&chat).await
    }

    /// Tells every connection of `who` to follow `chat` from `after_seq` (another tab
    /// created, opened or posted to it).
    pub async fn tell_user(
        &self,
        who: &Identity,
        chat: &ChatKey,
        reason: FollowReason,
        after_seq: u64,
        origin: Option<&ConnectionId>,
    ) {
        let event = UserEvent {
            chat_id: chat.chat_id.clone(),
            reason,
            after_seq,
            origin: origin.cloned(),
        };
        if let Err(e) = self.inner.bus.publish_user(who, event).await {
            warn!(chat = %chat, error = %e, "bus publish to a user failed");
        }
    }

    /// The user's channel: what their other connections did (see [`Self::tell_user`]).
    pub async fn subscribe_user(&self, who: &Identity) -> Result<UserSubscription, CoreError> {
        Ok(self.inner.bus.subscribe_user(who).await?)
    }

    pub async fn chat_summary(&self, chat: &ChatKey) -> Result<ChatSummary, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.inner
            .store
            .chat_summary(chat)
            .await?
            .ok_or_else(|| not_found(chat))
    }

    /// The chat's summary if it exists and `who` may use it: `not_found` for no such chat (in
    /// `who`'s org: another org's chat of the same id is a different chat), `forbidden` for a
    /// members-only chat `who` is not in.
    pub async fn accessible_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<ChatSummary, CoreError> {
        let summary = self.chat_summary(chat).await?;
        check_admits(who, &summary)?;
        Ok(summary)
    }

    /// Refuses `who` on a members-only chat it is not in. A chat that does not exist yet
    /// passes: whoever creates it decides.
    pub async fn authorize(&self, who: &Identity, chat: &ChatKey) -> Result<(), CoreError> {
        check_id("chatId", &chat.chat_id)?;
        match self.inner.store.chat_summary(chat).await? {
            Some(summary) => check_admits(who, &summary),
            None => Ok(()),
        }
    }

    /// Counts a long-lived connection of `who` from `ip` against the connection limits.
    pub fn admit(
        &self,
        who: &Identity,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Admission, CoreError> {
        self.inner.limits.admit(who, ip)
    }

    pub async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, CoreError> {
        Ok(self
            .inner
            .store
            .list_chats(org, scope, limit, offset)
            .await?)
    }

    /// Messages after `after_seq`, oldest first (history paged by `seq`).
    pub async fn messages_after(
        &self,
        who: &Identity,
        chat: &ChatKey,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        self.accessible_chat(who, chat).await?;
        Ok(self
            .inner
            .store
            .messages_after(chat, after_seq, limit)
            .await?)
    }

    /// The latest messages up to the head, oldest first.
    pub async fn recent_messages(
        &self,
        chat: &ChatKey,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        Ok(self
            .inner
            .store
            .recent_messages(chat, u64::MAX >> 1, limit)
            .await?)
    }

    /// The running turn's tokens so far, if a turn is streaming.
    pub async fn running_turn(&self, chat: &ChatKey) -> Result<Option<TurnSnapshot>, CoreError> {
        Ok(self.inner.bus.running_turn(chat).await?)
    }

    /// The event that ended the turn `request_id`, looking after `from_seq`.
    pub async fn turn_end(
        &self,
        chat: &ChatKey,
        request_id: &str,
        from_seq: u64,
    ) -> Result<Option<StoredEvent>, CoreError> {
        let events = self
            .inner
            .store
            .events_after(chat, from_seq, self.inner.config.replay_limit)
            .await?;
        Ok(events.into_iter().find(|e| match &e.body {
            EventBody::AssistantMessage { request_id: r, .. }
            | EventBody::TurnFailed { request_id: r, .. } => r == request_id,
            _ => false,
        }))
    }

    /// Appends a chat-level event and tells the chat.
    pub(crate) async fn append_and_publish(
        &self,
        chat: &ChatKey,
        body: EventBody,
        origin: Option<&ConnectionId>,
    ) -> Result<StoredEvent, CoreError> {
        let event = self
            .inner
            .store
            .append(chat, body, now_millis())
            .await
            .map_err(|e| store_error(chat, e))?
            .event()
            .clone();
        self.inner
            .publish_durable(chat, event.clone(), origin.cloned())
            .await;
        Ok(event)
    }

    /// Renames and/or (un)pins a chat, or changes who may use it (only its creator or an
    /// admin may; an empty list opens it to the org). The change is an event in the chat's log.
    pub async fn update_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        title: Option<String>,
        pinned: Option<bool>,
        members: Option<Vec<String>>,
    ) -> Result<ChatSummary, CoreError> {
        let summary = self.accessible_chat(who, chat).await?;
        if members.is_some() && !who.admin && summary.created_by.as_deref() != Some(&*who.user_id) {
            return Err(CoreError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "only the creator of chat `{}` or an admin may change its members",
                    chat.chat_id
                ),
            ));
        }
        if let Some(list) = &members {
            for m in list {
                check_id("members", m)?;
            }
        }
        if let Some(t) = &title
            && t.chars().count() > MAX_TITLE_CHARS
        {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!("a title has at most {MAX_TITLE_CHARS} characters"),
            ));
        }
        if title.is_some() || pinned.is_some() || members.is_some() {
            let body = EventBody::ChatUpdated {
                title,
                pinned,
                members,
                updated_by: Some(who.user_id.to_string()),
            };
            self.append_and_publish(chat, body, None).await?;
        }
        self.chat_summary(chat).await
    }

    /// Ends a chat (its status becomes closed); members are told.
    pub async fn end_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        reason: Option<String>,
    ) -> Result<StoredEvent, CoreError> {
        self.accessible_chat(who, chat).await?;
        let body = EventBody::ChatEnded {
            ended_by: Some(who.user_id.to_string()),
            reason,
        };
        self.append_and_publish(chat, body, None).await
    }

    /// Deletes a chat and its whole log. Its turns stop, and its members are told and
    /// dropped.
    pub async fn delete_chat(&self, who: &Identity, chat: &ChatKey) -> Result<(), CoreError> {
        self.accessible_chat(who, chat).await?;
        if !self.inner.store.delete_chat(chat).await? {
            return Err(not_found(chat));
        }
        self.inner.turns.forget_chat(&self.inner, chat).await;
        self.inner
            .publish_live(
                chat,
                LiveEvent::ChatDeleted {
                    deleted_by: Some(who.user_id.clone()),
                },
                None,
            )
            .await;
        Ok(())
    }

    /// Answers again: replaces the assistant message `message_id` (default: the chat's latest
    /// message) with a new reply to the same context. The old message stays in the log,
    /// marked superseded. When the latest message is a user message (its turn failed or is
    /// missing), it is simply answered again. Returns the new turn's request id.
    pub async fn regenerate(
        &self,
        who: &Identity,
        from: &Source,
        chat: &ChatKey,
        message_id: Option<&str>,
        request_id: Option<String>,
        trace_id: Option<String>,
    ) -> Result<String, CoreError> {
        let inner = &self.inner;
        who.check_may_write("regenerate a reply")?;
        let summary = self.accessible_chat(who, chat).await?;
        // No new AI turn while a human agent has the chat (CONTRACT §7.2).
        if summary.human_agent_engaged() {
            return Err(CoreError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "a human agent is engaged in chat `{}`; the AI answers again once they leave",
                    chat.chat_id
                ),
            ));
        }
        let request_id = request_id.unwrap_or_else(new_id);
        check_id("requestId", &request_id)?;
        let target = match message_id {
            Some(id) => {
                check_id("messageId", id)?;
                inner
                    .store
                    .find_message(chat, id)
                    .await?
                    .filter(|e| e.body.ends_turn().is_some())
                    .ok_or_else(|| {
                        CoreError::rejected(
                            ErrorCode::NotFound,
                            format!("chat `{}` has no assistant message `{id}`", chat.chat_id),
                        )
                    })?
            }
            None => self.recent_messages(chat, 1).await?.pop().ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::NotFound,
                    format!("chat `{}` has no message to answer again", chat.chat_id),
                )
            })?,
        };
        inner.limits.turn(who, from)?;
        self.settle(chat).await;
        // The new answer may use the client-run tools the first one could.
        let tools = self.declared_tools(chat, &target).await?;
        // The context is what the old reply answered (it is superseded now, so it is not part
        // of it). The turn is queued in the store with the event that asks for it.
        let opened = if let Some(old_id) = target.body.ends_turn() {
            let body = EventBody::MessageSuperseded {
                message_id: old_id.to_owned(),
                request_id: request_id.clone(),
                superseded_by: Some(who.user_id.to_string()),
                context_seq: Some(target.seq),
                tools: (!tools.is_empty()).then(|| tools.clone()),
            };
            let superseded = self.append_and_publish(chat, body, None).await?;
            Some(Opened {
                opened_seq: superseded.seq,
                context_seq: target.seq,
            })
        } else {
            inner
                .store
                .request_turn(chat, &request_id, trace_id.as_deref(), target.seq)
                .await
                .map_err(|e| store_error(chat, e))?;
            // Queued at the chat's head, which only the store knows.
            None
        };
        inner
            .turns
            .enqueue(
                &self.inner,
                chat,
                opened,
                &request_id,
                trace_id.as_deref(),
                tools,
            )
            .await;
        Ok(request_id)
    }

    /// The client-run tools declared for the turn that `target` ends (or, for a user message,
    /// with it): kept with the event that asked for the turn, its user message or the
    /// `message_superseded` of an earlier regenerate. Looked for among the replay limit's
    /// events before `target`, nearest first.
    async fn declared_tools(
        &self,
        chat: &ChatKey,
        target: &StoredEvent,
    ) -> Result<Vec<ToolSpec>, CoreError> {
        let request = match &target.body {
            EventBody::UserMessage { tools, .. } => return Ok(tools.clone().unwrap_or_default()),
            EventBody::AssistantMessage { request_id, .. }
            | EventBody::TurnFailed { request_id, .. } => request_id,
            _ => return Ok(Vec::new()),
        };
        let limit = self.inner.config.replay_limit as u64;
        // The asking event is nearly always a few events back: small windows first.
        for window in [64, 1024, limit] {
            let window = window.min(limit).min(target.seq);
            let from = target.seq - window;
            let events = self
                .inner
                .store
                .events_after(chat, from, window as usize)
                .await?;
            let asked = events.iter().rev().find_map(|e| match &e.body {
                EventBody::UserMessage {
                    request_id: Some(r),
                    tools,
                    ..
                }
                | EventBody::MessageSuperseded {
                    request_id: r,
                    tools,
                    ..
                } if r == request => Some(tools.clone().unwrap_or_default()),
                _ => None,
            });
            if let Some(tools) = asked {
                return Ok(tools);
            }
            if window >= target.seq || window >= limit {
                break;
            }
        }
        Ok(Vec::new())
    }

    /// Takes `conn` out of the chat's presence. The face drops the member's feed.
    pub async fn leave(&self, who: &Identity, conn: &ConnectionId, chat: &ChatKey) {
        if !who.may_write() {
            return; // an observer never joined presence
        }
        let online_user_ids = self.inner.presence.leave(chat, &who.user_id, conn).await;
        self.inner
            .publish_live(chat, LiveEvent::Presence { online_user_ids }, None)
            .await;
    }

    pub async fn online(&self, chat: &ChatKey) -> Vec<String> {
        self.inner.presence.online(chat).await
    }

    /// Stores a user message, tells the chat, and starts a turn when the AI mode says so.
    /// Returns only after the message is durable.
    pub async fn post_user_message(
        &self,
        who: &Identity,
        from: &Source,
        chat: &ChatKey,
        msg: UserMessageInput,
    ) -> Result<PostOutcome, CoreError> {
        let conn = from.conn.as_ref();
        let inner = &self.inner;
        who.check_may_write("send messages")?;
        check_id("messageId", &msg.message_id)?;
        if let Some(r) = &msg.request_id {
            check_id("requestId", r)?;
        }
        if msg.text.len() > inner.config.max_text_bytes {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!(
                    "the text is {} bytes, the limit is {}",
                    msg.text.len(),
                    inner.config.max_text_bytes
                ),
            ));
        }
        if let Some(clash) = msg
            .tools
            .iter()
            .find(|t| inner.tools.get(&t.name).is_some())
        {
            return Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "`tools`: the server already has a tool named `{}`",
                    clash.name
                ),
            ));
        }
        check_id("chatId", &chat.chat_id)?;
        let summary = inner.store.chat_summary(chat).await?;
        if let Some(s) = &summary {
            check_admits(who, s)?;
        }
        // Handoff (CONTRACT §7.2): an agent's message is marked as such, and no AI turn
        // starts while a human agent is engaged.
        let role = crate::handoff::message_role(who, summary.as_ref());
        let ai = inner.config.ai_mode == AiMode::EveryMessage
            && role.is_none()
            && summary.as_ref().is_none_or(ChatSummary::ai_engaged);
        inner.limits.message(who, from, ai)?;
        if ai {
            self.settle(chat).await;
        }
        let attachments = if msg.attachments.is_empty() {
            None
        } else {
            let resolved = self.resolve_attachments(chat, &msg.attachments).await?;
            Some(
                resolved
                    .iter()
                    .map(crate::message_attachments::for_message)
                    .collect(),
            )
        };
        let request_id = ai.then(|| msg.request_id.clone().unwrap_or_else(new_id));
        let body = EventBody::UserMessage {
            message_id: msg.message_id,
            user_id: who.user_id.to_string(),
            text: msg.text,
            parts: msg.parts,
            request_id: request_id.clone(),
            trace_id: msg.trace_id.clone(),
            origin: conn.map(|c| c.to_string()),
            role,
            tools: (!msg.tools.is_empty()).then(|| msg.tools.clone()),
            attachments,
        };
        let appended = inner
            .store
            .append(chat, body, now_millis())
            .await
            .map_err(|e| store_error(chat, e))?;
        let event = match appended {
            Appended::Duplicate(event) => {
                let request_id = match &event.body {
                    EventBody::UserMessage { request_id, .. } => request_id.clone(),
                    _ => None,
                };
                return Ok(PostOutcome {
                    seq: event.seq,
                    duplicate: true,
                    request_id,
                    created_at: event.created_at,
                });
            }
            Appended::New(event) => event,
        };
        metrics::counter!(telemetry::MESSAGES).increment(1);
        let outcome = PostOutcome {
            seq: event.seq,
            duplicate: false,
            request_id: request_id.clone(),
            created_at: event.created_at,
        };
        inner.publish_durable(chat, event, conn.cloned()).await;
        // The store opened the turn with the message: queue it here.
        if let Some(request_id) = request_id {
            let opened = Opened {
                opened_seq: outcome.seq,
                context_seq: outcome.seq,
            };
            inner
                .turns
                .enqueue(
                    &self.inner,
                    chat,
                    Some(opened),
                    &request_id,
                    msg.trace_id.as_deref(),
                    msg.tools,
                )
                .await;
        }
        Ok(outcome)
    }

    pub async fn typing(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        typing: bool,
        trace_id: Option<String>,
    ) {
        self.inner
            .publish_live(
                chat,
                LiveEvent::Typing {
                    user_id: who.user_id.clone(),
                    typing,
                    trace_id: trace_id.map(Into::into),
                },
                Some(conn.clone()),
            )
            .await;
    }

    /// Stops the chat's running turn (or the queued one named by `request_id`). The turn
    /// ends with its partial text and `finishReason: "aborted"`. Returns its request id.
    pub async fn abort(
        &self,
        chat: &ChatKey,
        request_id: Option<&str>,
        reason: Option<String>,
    ) -> Result<String, CoreError> {
        self.inner
            .turns
            .abort(&self.inner, chat, request_id, reason)
            .await
            .map_err(|e| store_error(chat, e))?
            .ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::NoActiveTurn,
                    match request_id {
                        Some(r) => format!("no running or queued turn with requestId `{r}`"),
                        None => "no turn is running in this chat".to_owned(),
                    },
                )
            })
    }

    /// Stores a read receipt and tells the chat. Returns its `seq`.
    pub async fn mark_read(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        message_ids: Vec<String>,
        read_at: i64,
        trace_id: Option<String>,
    ) -> Result<StoredEvent, CoreError> {
        for id in &message_ids {
            check_id("messageIds", id)?;
        }
        if message_ids.len() > self.inner.config.max_read_ids {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!(
                    "at most {} messageIds per receipt",
                    self.inner.config.max_read_ids
                ),
            ));
        }
        let body = EventBody::ReadReceipt {
            user_id: who.user_id.to_string(),
            message_ids,
            read_at,
            trace_id,
            origin: Some(conn.to_string()),
        };
        let event = self
            .inner
            .store
            .append(chat, body, now_millis())
            .await?
            .event()
            .clone();
        self.inner
            .publish_durable(chat, event.clone(), Some(conn.clone()))
            .await;
        Ok(event)
    }

    /// The tool calls and results of turn `request_id` stored up to `up_to_seq` (to replay a
    /// running turn), oldest first. Looks back at most the replay limit.
    pub async fn turn_tool_events(
        &self,
        chat: &ChatKey,
        request_id: &str,
        up_to_seq: u64,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        let limit = self.inner.config.replay_limit;
        let from = up_to_seq.saturating_sub(limit as u64);
        let events = self.inner.store.events_after(chat, from, limit).await?;
        Ok(events
            .into_iter()
            .filter(|e| e.seq <= up_to_seq)
            .filter(|e| match &e.body {
                EventBody::ToolCall { request_id: r, .. }
                | EventBody::ToolResult { request_id: r, .. } => r == request_id,
                _ => false,
            })
            .collect())
    }

    /// The turn waiting for a member's result for client-run call `tool_call_id`, if any, on
    /// this node or another (then read from the log: a client-run call of a started turn with
    /// no result yet).
    pub async fn waiting_tool_call(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
    ) -> Result<Option<Arc<crate::event::TurnRef>>, CoreError> {
        if let Some(turn) = self.inner.turns.local_client_wait(chat, tool_call_id) {
            return Ok(Some(turn));
        }
        self.stored_client_wait(chat, tool_call_id).await
    }

    async fn stored_client_wait(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
    ) -> Result<Option<Arc<crate::event::TurnRef>>, CoreError> {
        let store = &self.inner.store;
        let open = match store.open_turns(chat).await {
            Ok(open) => open,
            Err(StoreError::NoSuchChat(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(running) = open.iter().find(|t| t.started_fence.is_some()) else {
            return Ok(None);
        };
        let events = store
            .events_after(chat, running.opened_seq, self.inner.config.replay_limit)
            .await?;
        let answered = events.iter().any(|e| {
            matches!(&e.body, EventBody::ToolResult { tool_call_id: id, .. } if id == tool_call_id)
        });
        if answered {
            return Ok(None);
        }
        Ok(events.iter().find_map(|e| match &e.body {
            EventBody::ToolCall {
                tool_call_id: id,
                request_id,
                message_id,
                executor,
                trace_id,
                ..
            } if id == tool_call_id
                && executor == "client"
                && *request_id == running.request_id =>
            {
                Some(Arc::new(crate::event::TurnRef {
                    message_id: message_id.as_str().into(),
                    request_id: request_id.as_str().into(),
                    trace_id: trace_id.as_deref().map(Into::into),
                }))
            }
            _ => None,
        }))
    }

    /// A member's answer to a client-run tool call: the first valid one goes to the waiting
    /// turn, on whichever node runs it. Exactly one of `result` and `error` must be given.
    pub async fn tool_result(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), CoreError> {
        check_id("toolCallId", tool_call_id)?;
        let outcome = match (result, error) {
            (Some(_), Some(_)) => {
                return Err(CoreError::rejected(
                    ErrorCode::InvalidField,
                    "give `result` or `error`, not both",
                ));
            }
            (None, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(serde_json::Value::Null),
        };
        let local = self
            .inner
            .turns
            .local_client_wait(chat, tool_call_id)
            .is_some();
        let elsewhere = !local && self.stored_client_wait(chat, tool_call_id).await?.is_some();
        if self
            .inner
            .turns
            .deliver_client_result(&self.inner, chat, tool_call_id, outcome, elsewhere)
            .await
        {
            Ok(())
        } else {
            Err(CoreError::rejected(
                ErrorCode::NotFound,
                format!(
                    "no tool call `{tool_call_id}` is waiting for a result in this chat (unknown, already answered, or its turn ended)"
                ),
            ))
        }
    }

    /// Whether the store and the bus answer (for `/readyz`).
    pub async fn ready(&self) -> Result<(), CoreError> {
        for (_, check) in self.readiness().await {
            check?;
        }
        Ok(())
    }

    /// Each backend and whether it answers: `store`, `bus`, `coordinator` (for `/readyz`).
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), CoreError>)> {
        let inner = &self.inner;
        let (store, bus, coordinator) = tokio::join!(
            inner.store.ping(),
            inner.bus.ping(),
            inner.coordinator.ping()
        );
        vec![
            ("store", store.map_err(Into::into)),
            ("bus", bus.map_err(Into::into)),
            ("coordinator", coordinator.map_err(Into::into)),
        ]
    }

    /// This node's id in the cluster (for logs and tests).
    pub fn node_id(&self) -> &str {
        self.inner.coordinator.node_id()
    }

    /// Ends every running and queued turn with `ai:error` code `shutdown`, keeping partial
    /// text, and waits (up to `grace`) for them to be stored.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.turns.shutdown(grace).await;
    }
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
