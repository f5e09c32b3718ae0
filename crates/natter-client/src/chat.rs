//! Layer 3: [`AiChatSocket`], a chat client with helpers (seeds 000/001's `AIChatSocket`).
//!
//! It keeps what a reconnecting client needs (docs/protocol.md, "Client recipe"): the chat's
//! `epoch` and the highest `seq` seen, rejoining after every reconnect with `lastSeq` + `epoch`
//! so the server replays what was missed; durable events (those with a `seq`) seen twice are
//! dropped; `ai:token` events are deduplicated by index per turn (CONTRACT §6.4) and their text
//! accumulated, so an app never joins tokens itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use natter_protocol::client::{
    AbortPayload, AttachmentRef, AuthRefreshPayload, ClientTool, DiscoveryRequestPayload,
    JoinPayload as Join, LeavePayload, MarkReadPayload, ToolResultPayload, TypingPayload,
    UserMessagePayload,
};
use natter_protocol::events::{DiscoveryResponse, EventKey};
use natter_protocol::socketio::{
    AbortAck, AiErrorEvent, AiMessageEvent, AiProcessingEvent, AiTokenEvent, AiToolCallEvent,
    AiToolResultEvent, AttachmentProcessingEvent, AuthRefreshAck, ChatDeletedEvent, ChatEndedEvent,
    ChatMessageEvent, ChatUpdatedEvent, CsatRequestEvent, CsatSubmittedEvent, HandoffUpdateEvent,
    JoinAck, MarkReadAck, MessageReadEvent, MessageSupersededEvent, PresenceUpdateEvent,
    ReactionUpdateEvent, ServerErrorEvent, TypingUpdateEvent, UserMessageAck,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::attachments::{self, AttachmentFile, Identity, UploadedAttachment};
use crate::backoff::ReconnectPolicy;
use crate::error::ClientError;
use crate::events::{self as ev, ChatEvents};
use crate::service::{JoinPayload, ServiceEvent, ServiceEvents, ServiceOptions, SocketService};
use crate::stream::EventStream;
use crate::transport::{DisconnectReason, IncomingEvent, SocketOptions};

/// How many finished turns keep their streamed text for [`AiChatSocket::turn_text`].
const FINISHED_TURNS_KEPT: usize = 256;

/// Everything needed to open a chat.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// The server, e.g. `http://127.0.0.1:4000`.
    pub url: String,
    pub chat_id: String,
    /// Who this client is when the server runs without auth (with auth the token decides).
    pub user_id: Option<String>,
    /// A JWT, sent as `auth.token`.
    pub token: Option<String>,
    /// The org (tenant) when the server runs without auth.
    pub org_id: Option<String>,
    /// Fields merged into every payload this client sends (seed 001's `meta`).
    pub meta: Map<String, Value>,
    pub reconnect: ReconnectPolicy,
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra handshake query parameters.
    pub query: Vec<(String, String)>,
    /// Events buffered for the app before the connection stops reading.
    pub event_buffer: usize,
}

impl ChatOptions {
    pub fn new(url: impl Into<String>, chat_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            chat_id: chat_id.into(),
            user_id: None,
            token: None,
            org_id: None,
            meta: Map::new(),
            reconnect: ReconnectPolicy::default(),
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            query: Vec::new(),
            event_buffer: 1024,
        }
    }

    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn org_id(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    pub fn meta(mut self, key: impl Into<String>, value: Value) -> Self {
        self.meta.insert(key.into(), value);
        self
    }

    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    fn auth(&self) -> Value {
        let mut auth = Map::new();
        for (field, value) in [
            ("token", &self.token),
            ("userId", &self.user_id),
            ("orgId", &self.org_id),
        ] {
            if let Some(v) = value {
                auth.insert(field.into(), Value::String(v.clone()));
            }
        }
        Value::Object(auth)
    }
}

/// What happens in the chat, in order. Durable events seen before (replays) and `ai:token`s
/// already applied are not reported again.
#[derive(Debug, Clone)]
// New kinds of event come with new server features; a match needs a `_` arm so adding one is
// not a breaking change.
#[non_exhaustive]
pub enum ChatEvent {
    /// Connected (or reconnected); the (re)join follows.
    Connected {
        reconnected: bool,
    },
    /// The first join: `ack.messages` holds the latest messages, oldest first.
    Joined(JoinAck),
    /// A rejoin after a reconnect that recovered everything missed (replayed just before).
    Rejoined(JoinAck),
    /// A rejoin that could not recover the gap (`recovered: false`): reload the chat from
    /// `ack.messages`. Streaming turns start over from their first token.
    ReloadRequired(JoinAck),
    /// The (re)join was refused or timed out; the connection stays up.
    JoinFailed(ClientError),
    ChatMessage(ChatMessageEvent),
    PresenceUpdate(PresenceUpdateEvent),
    TypingUpdate(TypingUpdateEvent),
    AiProcessing(AiProcessingEvent),
    /// A new piece of a turn's text; [`AiChatSocket::turn_text`] has the text so far.
    AiToken(AiTokenEvent<'static>),
    AiMessage(AiMessageEvent),
    AiError(AiErrorEvent),
    AiToolCall(AiToolCallEvent),
    AiToolResult(AiToolResultEvent),
    MessageRead(MessageReadEvent),
    /// `handoff:update`: the chat's handoff state after a request, a join or a leave
    /// (CONTRACT §7.2).
    HandoffUpdate(HandoffUpdateEvent),
    /// `reaction:update`: a message's whole reaction list after a change (CONTRACT §7.3).
    ReactionUpdate(ReactionUpdateEvent),
    /// `csat:request`: the chat ended and this customer is asked for a rating (CONTRACT §7.4);
    /// its `seq` is the `chat:ended`'s, which comes just before it.
    CsatRequest(CsatRequestEvent),
    /// `csat:submitted`: a member's CSAT answer was stored.
    CsatSubmitted(CsatSubmittedEvent),
    /// `chat:updated`: the chat was renamed or (un)pinned.
    ChatUpdated(ChatUpdatedEvent),
    /// `chat:ended`: the chat was ended.
    ChatEnded(ChatEndedEvent),
    /// `chat:deleted`: the chat and its log are gone; the server takes this socket out of it.
    ChatDeleted(ChatDeletedEvent),
    /// `message:superseded`: an assistant message is being regenerated; its replacement follows.
    MessageSuperseded(MessageSupersededEvent),
    /// `attachment:processing`: a document uploaded to the chat is being read (`processing`,
    /// with `percent`), or was (`complete` with `chars`/`pages`, or `error`). Not durable: a
    /// client that missed it reads the state from the message's attachments.
    AttachmentProcessing(AttachmentProcessingEvent),
    Discovery(DiscoveryResponse),
    ServerError(ServerErrorEvent),
    /// An event this client does not know (or a server event asking for an ack).
    Other(IncomingEvent),
    /// A packet or payload that could not be handled; the connection goes on.
    Error(ClientError),
    Disconnected(DisconnectReason),
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    ReconnectAttemptFailed {
        attempt: u32,
        error: ClientError,
    },
    /// The end; `Some` says why when the app did not close the client itself.
    Closed(Option<ClientError>),
}

type Callback<T> = Option<Box<dyn FnMut(&T) + Send>>;

/// Callbacks in seed 000/001's style; each is optional. `on_event` sees every event.
#[derive(Default)]
pub struct ChatCallbacks {
    pub on_connect: Option<Box<dyn FnMut(bool) + Send>>,
    pub on_disconnect: Callback<DisconnectReason>,
    pub on_server_error: Callback<ServerErrorEvent>,
    pub on_chat_message: Callback<ChatMessageEvent>,
    pub on_presence_update: Callback<PresenceUpdateEvent>,
    pub on_ai_processing: Callback<AiProcessingEvent>,
    pub on_ai_token: Callback<AiTokenEvent<'static>>,
    pub on_ai_message: Callback<AiMessageEvent>,
    pub on_ai_error: Callback<AiErrorEvent>,
    pub on_ai_tool_call: Callback<AiToolCallEvent>,
    pub on_ai_tool_result: Callback<AiToolResultEvent>,
    pub on_handoff_update: Callback<HandoffUpdateEvent>,
    pub on_reaction_update: Callback<ReactionUpdateEvent>,
    pub on_csat_request: Callback<CsatRequestEvent>,
    pub on_chat_ended: Callback<ChatEndedEvent>,
    pub on_attachment_processing: Callback<AttachmentProcessingEvent>,
    pub on_event: Callback<ChatEvent>,
}

impl ChatCallbacks {
    fn call(&mut self, event: &ChatEvent) {
        fn run<T>(cb: &mut Callback<T>, v: &T) {
            if let Some(cb) = cb {
                cb(v);
            }
        }
        match event {
            ChatEvent::Connected { reconnected } => {
                if let Some(cb) = &mut self.on_connect {
                    cb(*reconnected);
                }
            }
            ChatEvent::Disconnected(r) => run(&mut self.on_disconnect, r),
            ChatEvent::ServerError(e) => run(&mut self.on_server_error, e),
            ChatEvent::ChatMessage(e) => run(&mut self.on_chat_message, e),
            ChatEvent::PresenceUpdate(e) => run(&mut self.on_presence_update, e),
            ChatEvent::AiProcessing(e) => run(&mut self.on_ai_processing, e),
            ChatEvent::AiToken(e) => run(&mut self.on_ai_token, e),
            ChatEvent::AiMessage(e) => run(&mut self.on_ai_message, e),
            ChatEvent::AiError(e) => run(&mut self.on_ai_error, e),
            ChatEvent::AiToolCall(e) => run(&mut self.on_ai_tool_call, e),
            ChatEvent::AiToolResult(e) => run(&mut self.on_ai_tool_result, e),
            ChatEvent::HandoffUpdate(e) => run(&mut self.on_handoff_update, e),
            ChatEvent::ReactionUpdate(e) => run(&mut self.on_reaction_update, e),
            ChatEvent::CsatRequest(e) => run(&mut self.on_csat_request, e),
            ChatEvent::ChatEnded(e) => run(&mut self.on_chat_ended, e),
            ChatEvent::AttachmentProcessing(e) => run(&mut self.on_attachment_processing, e),
            _ => {}
        }
        run(&mut self.on_event, event);
    }
}

/// The stream of [`ChatEvent`]s; ends after [`ChatEvent::Closed`].
pub type ChatEventStream = EventStream<ChatEvent>;

/// One assistant turn's tokens, by `messageId`.
#[derive(Debug, Default)]
struct Turn {
    /// The next `ai:token` index expected.
    next_index: u64,
    text: String,
    /// Its `ai:message` or `ai:error` arrived: later tokens of it are stale.
    finished: bool,
}

/// What the client knows about the chat.
#[derive(Debug, Default)]
struct ChatState {
    epoch: Option<String>,
    /// The highest `seq` applied (a join ack's `seq` counts as seen).
    last_seq: u64,
    /// The `seq` of the last `chat:ended` whose `csat:request` was delivered: the request
    /// shares that `seq`, so `last_seq` cannot tell a replayed one.
    csat_asked_seq: u64,
    joined: bool,
    turns: HashMap<String, Turn>,
    finished_order: VecDeque<String>,
}

/// What to do with an `ai:token`.
#[derive(Debug, PartialEq, Eq)]
enum TokenVerdict {
    Append,
    /// Already applied (a replay, or a rejoin re-sending a running turn).
    Duplicate,
    /// Starts past (or straddles) the next expected index: tokens are missing.
    Gap {
        expected: u64,
    },
}

impl ChatState {
    /// Whether a durable event with `seq` is new; a new one advances `last_seq`.
    fn accept_seq(&mut self, seq: u64) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        self.last_seq = seq;
        true
    }

    fn apply_token(&mut self, t: &AiTokenEvent<'_>) -> TokenVerdict {
        let turn = self.turns.entry(t.message_id.to_string()).or_default();
        let last = t.through.unwrap_or(t.index);
        if turn.finished || last < turn.next_index {
            return TokenVerdict::Duplicate;
        }
        if t.index != turn.next_index {
            return TokenVerdict::Gap {
                expected: turn.next_index,
            };
        }
        turn.text.push_str(&t.token);
        turn.next_index = last + 1;
        TokenVerdict::Append
    }

    fn finish_turn(&mut self, message_id: &str) {
        let turn = self.turns.entry(message_id.to_owned()).or_default();
        if !turn.finished {
            turn.finished = true;
            self.finished_order.push_back(message_id.to_owned());
            while self.finished_order.len() > FINISHED_TURNS_KEPT {
                if let Some(old) = self.finished_order.pop_front() {
                    self.turns.remove(&old);
                }
            }
        }
    }

    /// Applies a join ack; says which event reports it.
    fn apply_join(&mut self, ack: &JoinAck) -> JoinKind {
        let rejoin = self.joined;
        self.joined = true;
        self.epoch = Some(ack.epoch.clone());
        if ack.recovered {
            self.last_seq = self.last_seq.max(ack.seq);
            return if rejoin {
                JoinKind::Recovered
            } else {
                JoinKind::First
            };
        }
        self.last_seq = ack.seq;
        // The server re-sends a running turn from index 0; unfinished streams start over.
        self.turns.retain(|_, t| t.finished);
        if rejoin {
            JoinKind::Reload
        } else {
            JoinKind::First
        }
    }

    fn join_payload(&self, chat_id: &str, user_id: Option<&str>) -> Join {
        Join {
            chat_id: Some(chat_id.to_owned()),
            user_id: user_id.map(str::to_owned),
            last_seq: self.epoch.as_ref().map(|_| self.last_seq),
            epoch: self.epoch.clone(),
            ..Join::default()
        }
    }
}

enum JoinKind {
    First,
    Recovered,
    Reload,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A message to send; only `text` is required.
#[derive(Debug, Clone, Default)]
pub struct SendMessage {
    pub text: String,
    /// Made up (a UUID v4) when `None`. Resending the same id after a lost ack is safe.
    pub message_id: Option<String>,
    /// Made up when `None`; the turn's `ai:*` events carry it.
    pub request_id: Option<String>,
    pub parts: Option<Vec<Value>>,
    pub tools: Option<Vec<ClientTool>>,
    /// Ids of uploaded attachments ([`AiChatSocket::upload_attachment`]) the message carries,
    /// sent as `attachments: [{id}]` (at most 10).
    pub attachments: Vec<String>,
}

impl SendMessage {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// Adds an uploaded attachment (or its id) to the message.
    pub fn attach(mut self, attachment: impl AttachmentId) -> Self {
        self.attachments.push(attachment.attachment_id());
        self
    }
}

/// What names an uploaded attachment: its [`UploadedAttachment`] or its id.
pub trait AttachmentId {
    fn attachment_id(self) -> String;
}

impl AttachmentId for &UploadedAttachment {
    fn attachment_id(self) -> String {
        self.id.clone()
    }
}

impl AttachmentId for UploadedAttachment {
    fn attachment_id(self) -> String {
        self.id
    }
}

impl AttachmentId for String {
    fn attachment_id(self) -> String {
        self
    }
}

impl AttachmentId for &str {
    fn attachment_id(self) -> String {
        self.to_owned()
    }
}

/// A chat client: connect with [`AiChatSocket::connect`], read [`ChatEvent`]s, call helpers.
/// Clones share the connection.
#[derive(Clone, Debug)]
pub struct AiChatSocket {
    service: SocketService<ChatEvents>,
    state: Arc<Mutex<ChatState>>,
    chat_id: Arc<str>,
    user_id: Option<Arc<str>>,
    trace_id: Option<Arc<str>>,
}

impl AiChatSocket {
    /// Connects, joins the chat and returns once the join is acked; the first events of the
    /// stream are `Connected` and `Joined` (with the chat's latest messages).
    pub async fn connect(options: ChatOptions) -> Result<(Self, ChatEventStream), ClientError> {
        let (tx, rx) = mpsc::channel(options.event_buffer.max(1));
        let chat = Self::start(options, Sink::Stream(tx)).await?;
        Ok((chat, ChatEventStream { rx }))
    }

    /// Like [`connect`](Self::connect), delivering events to `callbacks` instead of a stream.
    pub async fn connect_with_callbacks(
        options: ChatOptions,
        callbacks: ChatCallbacks,
    ) -> Result<Self, ClientError> {
        Self::start(options, Sink::Callbacks(Box::new(callbacks))).await
    }

    async fn start(options: ChatOptions, sink: Sink) -> Result<Self, ClientError> {
        if options.chat_id.is_empty() {
            return Err(ClientError::InvalidOptions(
                "chat_id must not be empty".into(),
            ));
        }
        let state = Arc::new(Mutex::new(ChatState::default()));
        let chat_id: Arc<str> = options.chat_id.clone().into();
        let user_id: Option<Arc<str>> = options.user_id.clone().map(Into::into);

        let mut socket = SocketOptions::new(options.url.clone());
        socket.auth = Some(options.auth());
        socket.query = options.query.clone();
        socket.reconnect = options.reconnect.clone();
        socket.connect_timeout = options.connect_timeout;
        socket.event_buffer = options.event_buffer.max(1);
        let mut service = ServiceOptions::new(socket);
        service.chat_id = Some(options.chat_id.clone());
        service.meta = options.meta.clone();
        service.ack_timeout = options.ack_timeout;
        service.join_payload = {
            let state = state.clone();
            let chat_id = chat_id.clone();
            let user_id = user_id.clone();
            JoinPayload::Dynamic(Arc::new(move || {
                let payload = lock(&state).join_payload(&chat_id, user_id.as_deref());
                serde_json::to_value(payload).unwrap_or(Value::Null)
            }))
        };

        let (service, events) = SocketService::<ChatEvents>::connect(service).await?;
        // The first join's ack is already in `events`; the pump applies it before the app
        // sees anything, and before any helper's result can race with it.
        let (applied_tx, applied_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(pump(events, state.clone(), sink, Some(applied_tx)));
        let _ = applied_rx.await;
        Ok(Self {
            service,
            state,
            chat_id,
            user_id,
            trace_id: None,
        })
    }

    /// A handle whose emits all carry `traceId` (echoed by the server on what they cause).
    pub fn with_trace_id(&self, trace_id: impl Into<String>) -> Self {
        Self {
            trace_id: Some(trace_id.into().into()),
            ..self.clone()
        }
    }

    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    pub fn is_connected(&self) -> bool {
        self.service.is_connected()
    }

    /// The highest `seq` seen (what a rejoin recovers from).
    pub fn last_seq(&self) -> u64 {
        lock(&self.state).last_seq
    }

    /// The chat's epoch, once joined.
    pub fn epoch(&self) -> Option<String> {
        lock(&self.state).epoch.clone()
    }

    /// The text streamed so far for the assistant message `message_id` (tokens deduplicated
    /// and joined in index order). Kept for the latest finished turns too; empty for a turn
    /// this client only received whole (an `ai:message` replayed after a reconnect).
    pub fn turn_text(&self, message_id: &str) -> Option<String> {
        lock(&self.state)
            .turns
            .get(message_id)
            .map(|t| t.text.clone())
    }

    /// The typed layer underneath, for events without a helper.
    pub fn service(&self) -> &SocketService<ChatEvents> {
        &self.service
    }

    fn trace(&self) -> Option<String> {
        self.trace_id.as_deref().map(str::to_owned)
    }

    /// Sends a user message and returns its ack (`seq`, `duplicate`). The reply streams as
    /// `AiProcessing`, `AiToken`s and one `AiMessage` (or `AiError`).
    pub async fn send_message(&self, message: SendMessage) -> Result<UserMessageAck, ClientError> {
        if message.text.is_empty() && message.attachments.is_empty() {
            return Err(ClientError::InvalidOptions(
                "a message needs text or an attachment".into(),
            ));
        }
        let payload = UserMessagePayload {
            chat_id: Some(self.chat_id.to_string()),
            message_id: message
                .message_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            user_id: self.user_id.as_deref().map(str::to_owned),
            text: message.text,
            parts: message.parts,
            request_id: Some(
                message
                    .request_id
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            ),
            tools: message.tools,
            trace_id: self.trace(),
            attachments: (!message.attachments.is_empty()).then(|| {
                message
                    .attachments
                    .into_iter()
                    .map(|id| AttachmentRef { id })
                    .collect()
            }),
        };
        self.service
            .emit_with_ack::<ev::UserMessage>(&payload)
            .await
    }

    fn typing(&self) -> TypingPayload {
        TypingPayload {
            chat_id: Some(self.chat_id.to_string()),
            user_id: self.user_id.as_deref().map(str::to_owned),
            trace_id: self.trace(),
        }
    }

    pub async fn typing_start(&self) -> Result<(), ClientError> {
        self.service
            .emit_with_ack::<ev::TypingStart>(&self.typing())
            .await
            .map(drop)
    }

    pub async fn typing_stop(&self) -> Result<(), ClientError> {
        self.service
            .emit_with_ack::<ev::TypingStop>(&self.typing())
            .await
            .map(drop)
    }

    /// Stops the running turn (of `request_id`, when given); it ends with an `AiMessage`
    /// holding the partial text and `finishReason: "aborted"`.
    pub async fn abort(
        &self,
        reason: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<AbortAck, ClientError> {
        let payload = AbortPayload {
            chat_id: Some(self.chat_id.to_string()),
            request_id: request_id.map(str::to_owned),
            reason: reason.map(str::to_owned),
            trace_id: self.trace(),
        };
        self.service.emit_with_ack::<ev::Abort>(&payload).await
    }

    /// Marks messages read (now, unless `read_at`, ISO 8601, is given).
    pub async fn mark_read(
        &self,
        message_ids: Vec<String>,
        read_at: Option<String>,
    ) -> Result<MarkReadAck, ClientError> {
        let payload = MarkReadPayload {
            chat_id: Some(self.chat_id.to_string()),
            user_id: self.user_id.as_deref().map(str::to_owned),
            message_ids,
            read_at: read_at.unwrap_or_else(|| {
                natter_protocol::time::iso8601(natter_protocol::time::now_millis())
            }),
            trace_id: self.trace(),
        };
        self.service.emit_with_ack::<ev::MarkRead>(&payload).await
    }

    /// Adds (`add`) or removes this user's reaction `emoji` on message `message_id`; the ack
    /// holds the message's whole list (CONTRACT §7.3).
    pub async fn react(
        &self,
        message_id: &str,
        emoji: &str,
        add: bool,
    ) -> Result<natter_protocol::socketio::ReactionAck, ClientError> {
        let payload = natter_protocol::client::ReactionPayload {
            chat_id: Some(self.chat_id.to_string()),
            message_id: message_id.to_owned(),
            emoji: emoji.to_owned(),
            trace_id: self.trace(),
        };
        if add {
            self.service
                .emit_with_ack::<ev::ReactionAdd>(&payload)
                .await
        } else {
            self.service
                .emit_with_ack::<ev::ReactionRemove>(&payload)
                .await
        }
    }

    /// Asks for a human agent (CONTRACT §7.2): the chat waits for one; members get
    /// [`ChatEvent::HandoffUpdate`]. Asking while already waiting changes nothing.
    pub async fn request_human_agent(
        &self,
    ) -> Result<natter_protocol::socketio::HandoffAck, ClientError> {
        let payload = natter_protocol::client::HandoffRequestPayload {
            chat_id: Some(self.chat_id.to_string()),
            trace_id: self.trace(),
        };
        self.service
            .emit_with_ack::<ev::HandoffRequest>(&payload)
            .await
    }

    /// Ends the chat (CONTRACT §7.4); customers are then asked for a rating.
    pub async fn end_chat(
        &self,
        reason: Option<&str>,
    ) -> Result<natter_protocol::socketio::SeqAck, ClientError> {
        let payload = natter_protocol::client::ChatEndPayload {
            chat_id: Some(self.chat_id.to_string()),
            reason: reason.map(str::to_owned),
            trace_id: self.trace(),
        };
        self.service.emit_with_ack::<ev::ChatEnd>(&payload).await
    }

    /// Rates the chat 1-5, with an optional comment (a later answer replaces it).
    pub async fn submit_csat(
        &self,
        rating: u8,
        comment: Option<&str>,
    ) -> Result<natter_protocol::socketio::SeqAck, ClientError> {
        let payload = natter_protocol::client::CsatSubmitPayload {
            chat_id: Some(self.chat_id.to_string()),
            rating,
            comment: comment.map(str::to_owned),
            trace_id: self.trace(),
        };
        self.service.emit_with_ack::<ev::CsatSubmit>(&payload).await
    }

    /// Answers an `ai:tool_call` with `executor: "client"`.
    pub async fn tool_result(&self, mut result: ToolResultPayload) -> Result<(), ClientError> {
        result
            .chat_id
            .get_or_insert_with(|| self.chat_id.to_string());
        if result.trace_id.is_none() {
            result.trace_id = self.trace();
        }
        self.service
            .emit_with_ack::<ev::ToolResultIn>(&result)
            .await
            .map(drop)
    }

    /// Asks for the event names in force and uses them from now on (seed 001's discovery).
    pub async fn discover_events(&self) -> Result<DiscoveryResponse, ClientError> {
        let ack = self
            .service
            .emit_with_ack::<ev::DiscoveryRequest>(&DiscoveryRequestPayload {
                trace_id: self.trace(),
            })
            .await?;
        let names = ack
            .body
            .events
            .iter()
            .filter_map(|(key, wire)| {
                let default = EventKey::from_key(key)?.default_name();
                (default != wire).then(|| (default.to_owned(), wire.clone()))
            })
            .collect();
        self.service.set_event_names(names);
        Ok(ack.body)
    }

    /// Hands the server a fresh token before the old one expires; reconnects use it too.
    pub async fn refresh_token(&self, token: &str) -> Result<AuthRefreshAck, ClientError> {
        let ack = self
            .service
            .emit_with_ack::<ev::AuthRefresh>(&AuthRefreshPayload {
                token: token.to_owned(),
            })
            .await?;
        let mut auth = self
            .service
            .options()
            .socket
            .auth
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new()));
        if let Value::Object(fields) = &mut auth {
            fields.insert("token".into(), Value::String(token.to_owned()));
        }
        self.service.socket().set_auth(Some(auth));
        Ok(ack)
    }

    /// Uploads a file for this chat (`POST /api/v1/attachments`, CONTRACT §7.6) with this
    /// connection's identity (its token, or `orgId`/`userId` with auth off). Send it with a
    /// message by id: [`SendMessage::attachments`]. The same bytes twice in one chat are one
    /// attachment. Refusals are [`ClientError::Http`] with the server's code (`too_large`,
    /// `unsupported_media_type`, `not_found`, `rate_limited` …).
    pub async fn upload_attachment(
        &self,
        file: AttachmentFile,
    ) -> Result<UploadedAttachment, ClientError> {
        let mut identity = Identity::from_auth(self.service.socket().auth().as_ref());
        if identity.user_id.is_none() {
            identity.user_id = self.user_id.as_deref().map(str::to_owned);
        }
        attachments::upload(
            &self.service.options().socket.url,
            &self.chat_id,
            &identity,
            file,
        )
        .await
    }

    /// [`upload_attachment`](Self::upload_attachment) of a file on disk, streamed.
    pub async fn upload_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<UploadedAttachment, ClientError> {
        self.upload_attachment(AttachmentFile::open(path).await?)
            .await
    }

    /// Leaves the chat (presence updates) without disconnecting.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.service
            .emit_with_ack::<ev::Leave>(&LeavePayload {
                chat_id: Some(self.chat_id.to_string()),
                trace_id: self.trace(),
            })
            .await
            .map(drop)
    }

    /// Disconnects for good; the stream ends with `Closed(None)`.
    pub async fn close(&self) {
        self.service.close().await;
    }
}

enum Sink {
    Stream(mpsc::Sender<ChatEvent>),
    Callbacks(Box<ChatCallbacks>),
}

impl Sink {
    async fn deliver(&mut self, event: ChatEvent) {
        match self {
            // A dropped stream is fine: the app stopped listening.
            Self::Stream(tx) => {
                let _ = tx.send(event).await;
            }
            Self::Callbacks(cb) => cb.call(&event),
        }
    }
}

fn decode<T: DeserializeOwned>(event: &IncomingEvent) -> Result<T, ClientError> {
    serde_json::from_value(event.data().clone()).map_err(|e| ClientError::Decode {
        event: event.name.clone(),
        reason: e.to_string(),
    })
}

/// Turns service events into chat events, applying them to the chat state in wire order.
async fn pump(
    mut events: ServiceEvents,
    state: Arc<Mutex<ChatState>>,
    mut sink: Sink,
    mut first_join_applied: Option<tokio::sync::oneshot::Sender<()>>,
) {
    while let Some(event) = events.recv().await {
        let closed = matches!(event, ServiceEvent::Closed { .. });
        let joined = matches!(
            event,
            ServiceEvent::Joined { .. } | ServiceEvent::JoinFailed { .. }
        );
        if let Some(chat_event) = translate(event, &state) {
            sink.deliver(chat_event).await;
        }
        if joined && let Some(tx) = first_join_applied.take() {
            let _ = tx.send(());
        }
        if closed {
            break;
        }
    }
}

fn translate(event: ServiceEvent, state: &Mutex<ChatState>) -> Option<ChatEvent> {
    Some(match event {
        ServiceEvent::Connected { reconnected, .. } => ChatEvent::Connected { reconnected },
        ServiceEvent::Joined { ack, .. } => match serde_json::from_value::<JoinAck>(ack) {
            Ok(ack) => match lock(state).apply_join(&ack) {
                JoinKind::First => ChatEvent::Joined(ack),
                JoinKind::Recovered => ChatEvent::Rejoined(ack),
                JoinKind::Reload => ChatEvent::ReloadRequired(ack),
            },
            Err(e) => ChatEvent::JoinFailed(ClientError::Decode {
                event: "chat:join ack".into(),
                reason: e.to_string(),
            }),
        },
        ServiceEvent::JoinFailed { error } => ChatEvent::JoinFailed(error),
        ServiceEvent::Event(event) => return translate_event(event, state),
        ServiceEvent::ServerError(v) => match serde_json::from_value::<ServerErrorEvent>(v) {
            Ok(e) => ChatEvent::ServerError(e),
            Err(e) => ChatEvent::Error(ClientError::Decode {
                event: "error".into(),
                reason: e.to_string(),
            }),
        },
        ServiceEvent::Error(e) => ChatEvent::Error(e),
        ServiceEvent::Disconnected { reason } => ChatEvent::Disconnected(reason),
        ServiceEvent::Reconnecting { attempt, delay } => ChatEvent::Reconnecting { attempt, delay },
        ServiceEvent::ReconnectAttemptFailed { attempt, error } => {
            ChatEvent::ReconnectAttemptFailed { attempt, error }
        }
        ServiceEvent::Closed { error } => ChatEvent::Closed(error),
    })
}

/// A server event → a chat event, or `None` when it was seen already.
fn translate_event(event: IncomingEvent, state: &Mutex<ChatState>) -> Option<ChatEvent> {
    use crate::service::ServerEvent;
    // A server event that asks for an ack goes to the app as is, so it can answer.
    if event.ack.is_some() {
        return Some(ChatEvent::Other(event));
    }
    let result = (|| -> Result<Option<ChatEvent>, ClientError> {
        let name = event.name.as_str();
        Ok(match name {
            n if n == ev::AiToken::NAME => {
                let token: AiTokenEvent<'static> = decode(&event)?;
                match lock(state).apply_token(&token) {
                    TokenVerdict::Append => Some(ChatEvent::AiToken(token)),
                    TokenVerdict::Duplicate => None,
                    TokenVerdict::Gap { expected } => {
                        return Err(ClientError::Protocol(format!(
                            "ai:token gap in message {}: expected index {expected}, got {}",
                            token.message_id, token.index
                        )));
                    }
                }
            }
            n if n == ev::ChatMessage::NAME => {
                let e: ChatMessageEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::ChatMessage(e))
            }
            n if n == ev::AiMessage::NAME => {
                let e: AiMessageEvent = decode(&event)?;
                let mut s = lock(state);
                if !s.accept_seq(e.seq) {
                    return Ok(None);
                }
                s.finish_turn(&e.message_id);
                Some(ChatEvent::AiMessage(e))
            }
            n if n == ev::AiError::NAME => {
                let e: AiErrorEvent = decode(&event)?;
                let mut s = lock(state);
                if let Some(seq) = e.seq
                    && !s.accept_seq(seq)
                {
                    return Ok(None);
                }
                let message_id = e
                    .details
                    .as_ref()
                    .and_then(|d| d.get("messageId"))
                    .and_then(Value::as_str);
                if let Some(id) = message_id {
                    s.finish_turn(id);
                }
                Some(ChatEvent::AiError(e))
            }
            n if n == ev::ReadReceipt::NAME => {
                let e: MessageReadEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::MessageRead(e))
            }
            n if n == ev::AiToolCall::NAME => {
                let e: AiToolCallEvent = decode(&event)?;
                // A waiting call sent again after a plain join has an older seq: deliver it
                // anyway, so this client can answer it.
                let pending = e.pending == Some(true);
                (pending || lock(state).accept_seq(e.seq)).then_some(ChatEvent::AiToolCall(e))
            }
            n if n == ev::AiToolResult::NAME => {
                let e: AiToolResultEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::AiToolResult(e))
            }
            n if n == ev::HandoffUpdate::NAME => {
                let e: HandoffUpdateEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::HandoffUpdate(e))
            }
            n if n == ev::ReactionUpdate::NAME => {
                let e: ReactionUpdateEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::ReactionUpdate(e))
            }
            n if n == ev::CsatSubmitted::NAME => {
                let e: CsatSubmittedEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::CsatSubmitted(e))
            }
            n if n == ev::ChatUpdated::NAME => {
                let e: ChatUpdatedEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::ChatUpdated(e))
            }
            n if n == ev::ChatEnded::NAME => {
                let e: ChatEndedEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::ChatEnded(e))
            }
            n if n == ev::MessageSuperseded::NAME => {
                let e: MessageSupersededEvent = decode(&event)?;
                lock(state)
                    .accept_seq(e.seq)
                    .then_some(ChatEvent::MessageSuperseded(e))
            }
            n if n == ev::CsatRequest::NAME => {
                let e: CsatRequestEvent = decode(&event)?;
                let mut s = lock(state);
                (e.seq > s.csat_asked_seq).then(|| {
                    s.csat_asked_seq = e.seq;
                    ChatEvent::CsatRequest(e)
                })
            }
            n if n == ev::ChatDeleted::NAME => Some(ChatEvent::ChatDeleted(decode(&event)?)),
            n if n == ev::AttachmentProcessing::NAME => {
                Some(ChatEvent::AttachmentProcessing(decode(&event)?))
            }
            n if n == ev::AiProcessing::NAME => Some(ChatEvent::AiProcessing(decode(&event)?)),
            n if n == ev::PresenceUpdate::NAME => Some(ChatEvent::PresenceUpdate(decode(&event)?)),
            n if n == ev::TypingUpdate::NAME => Some(ChatEvent::TypingUpdate(decode(&event)?)),
            n if n == ev::DiscoveryResponseEvent::NAME => {
                Some(ChatEvent::Discovery(decode(&event)?))
            }
            _ => Some(ChatEvent::Other(event)),
        })
    })();
    match result {
        Ok(event) => event,
        Err(error) => Some(ChatEvent::Error(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn token(message: &str, index: u64, through: Option<u64>, text: &str) -> AiTokenEvent<'static> {
        AiTokenEvent {
            chat_id: Cow::Borrowed("c"),
            request_id: Cow::Borrowed("r"),
            message_id: Cow::Owned(message.to_owned()),
            token: Cow::Owned(text.to_owned()),
            index,
            through,
        }
    }

    #[test]
    fn tokens_dedupe_by_index_and_honour_through() {
        let mut s = ChatState::default();
        assert_eq!(
            s.apply_token(&token("m", 0, None, "a")),
            TokenVerdict::Append
        );
        assert_eq!(
            s.apply_token(&token("m", 1, None, "b")),
            TokenVerdict::Append
        );
        // A rejoin re-sends the running turn from index 0: dropped.
        assert_eq!(
            s.apply_token(&token("m", 0, None, "a")),
            TokenVerdict::Duplicate
        );
        assert_eq!(
            s.apply_token(&token("m", 1, None, "b")),
            TokenVerdict::Duplicate
        );
        // A coalesced catch-up covering 2..=4.
        assert_eq!(
            s.apply_token(&token("m", 2, Some(4), "cde")),
            TokenVerdict::Append
        );
        assert_eq!(
            s.apply_token(&token("m", 3, None, "d")),
            TokenVerdict::Duplicate
        );
        assert_eq!(
            s.apply_token(&token("m", 5, None, "f")),
            TokenVerdict::Append
        );
        assert_eq!(
            s.apply_token(&token("m", 7, None, "h")),
            TokenVerdict::Gap { expected: 6 }
        );
        // Another turn is counted on its own.
        assert_eq!(
            s.apply_token(&token("n", 0, None, "x")),
            TokenVerdict::Append
        );
        assert_eq!(s.turns["m"].text, "abcdef");
        assert_eq!(s.turns["n"].text, "x");
        s.finish_turn("m");
        assert_eq!(
            s.apply_token(&token("m", 6, None, "g")),
            TokenVerdict::Duplicate
        );
        assert_eq!(s.turns["m"].text, "abcdef");
    }

    #[test]
    fn seq_dedupe_and_join_recovery() {
        let mut s = ChatState::default();
        let ack = |seq: u64, recovered: bool| JoinAck {
            ok: true,
            chat_id: "c".into(),
            seq,
            epoch: "e1".into(),
            recovered,
            online_user_ids: vec![],
            messages: vec![],
        };
        assert!(matches!(s.apply_join(&ack(3, false)), JoinKind::First));
        assert_eq!(s.join_payload("c", None).last_seq, Some(3));
        assert!(!s.accept_seq(3));
        assert!(s.accept_seq(4));
        assert!(s.accept_seq(6));
        assert!(!s.accept_seq(5));
        assert_eq!(
            s.apply_token(&token("m", 0, None, "a")),
            TokenVerdict::Append
        );
        // Recovered rejoin: the replay already advanced last_seq past the ack's head? Never
        // below it.
        assert!(matches!(s.apply_join(&ack(5, true)), JoinKind::Recovered));
        assert_eq!(s.last_seq, 6);
        assert_eq!(s.turns["m"].next_index, 1);
        // Not recovered: reload, and running streams start over.
        assert!(matches!(s.apply_join(&ack(9, false)), JoinKind::Reload));
        assert_eq!(s.last_seq, 9);
        assert!(!s.turns.contains_key("m"));
        let p = s.join_payload("c", Some("u"));
        assert_eq!(
            (p.last_seq, p.epoch.as_deref(), p.user_id.as_deref()),
            (Some(9), Some("e1"), Some("u"))
        );
    }

    #[test]
    fn finished_turns_are_bounded() {
        let mut s = ChatState::default();
        for i in 0..(FINISHED_TURNS_KEPT + 10) {
            s.finish_turn(&format!("m{i}"));
        }
        assert_eq!(s.turns.len(), FINISHED_TURNS_KEPT);
        assert!(!s.turns.contains_key("m0"));
    }

    fn incoming(name: &str, data: Value) -> IncomingEvent {
        IncomingEvent {
            name: name.to_owned(),
            args: vec![data],
            ack: None,
        }
    }

    #[test]
    fn support_desk_events_are_typed_and_deduplicated() {
        let state = Mutex::new(ChatState::default());
        let t = |name: &str, data: Value| translate_event(incoming(name, data), &state);
        let handoff = serde_json::json!({"chatId": "c", "isWaitingForAgent": false,
            "humanAgentEngaged": true, "aiEngaged": false, "agentId": "a1",
            "reason": "human_agent_joined", "seq": 3});
        match t("handoff:update", handoff.clone()) {
            Some(ChatEvent::HandoffUpdate(e)) => {
                assert_eq!((e.agent_id.as_deref(), e.seq), (Some("a1"), 3));
                assert!(e.human_agent_engaged && !e.ai_engaged);
            }
            other => panic!("handoff:update gave {other:?}"),
        }
        assert!(
            t("handoff:update", handoff).is_none(),
            "a replay is dropped"
        );
        let reaction = serde_json::json!({"chatId": "c", "messageId": "m",
            "reactions": [{"emoji": "👍", "userId": "u", "createdAt": "2026-01-01T00:00:00.000Z"}],
            "userId": "u", "emoji": "👍", "added": true, "seq": 4});
        assert!(matches!(
            t("reaction:update", reaction),
            Some(ChatEvent::ReactionUpdate(e)) if e.reactions.len() == 1 && e.added
        ));
        let updated = serde_json::json!({"chatId": "c", "title": "T", "seq": 5});
        assert!(matches!(
            t("chat:updated", updated),
            Some(ChatEvent::ChatUpdated(e)) if e.title.as_deref() == Some("T")
        ));
        let superseded = serde_json::json!({"chatId": "c", "messageId": "m",
            "requestId": "r", "seq": 6});
        assert!(matches!(
            t("message:superseded", superseded),
            Some(ChatEvent::MessageSuperseded(e)) if e.request_id == "r"
        ));
        // `csat:request` shares its `chat:ended`'s seq: both are delivered, once.
        let ended = serde_json::json!({"chatId": "c", "endedBy": "u", "seq": 7});
        assert!(matches!(
            t("chat:ended", ended),
            Some(ChatEvent::ChatEnded(e)) if e.seq == 7
        ));
        let ask = serde_json::json!({"chatId": "c", "seq": 7});
        assert!(matches!(
            t("csat:request", ask.clone()),
            Some(ChatEvent::CsatRequest(e)) if e.seq == 7
        ));
        assert!(
            t("csat:request", ask).is_none(),
            "a replayed request is dropped"
        );
        let rated = serde_json::json!({"chatId": "c", "userId": "u", "rating": 5,
            "submittedAt": "2026-01-01T00:00:00.000Z", "seq": 8});
        assert!(matches!(
            t("csat:submitted", rated),
            Some(ChatEvent::CsatSubmitted(e)) if e.rating == 5
        ));
        assert!(matches!(
            t("chat:deleted", serde_json::json!({"chatId": "c"})),
            Some(ChatEvent::ChatDeleted(e)) if e.chat_id == "c"
        ));
        assert!(matches!(
            t("reaction:update", serde_json::json!({"chatId": "c"})),
            Some(ChatEvent::Error(ClientError::Decode { .. }))
        ));
        assert_eq!(lock(&state).last_seq, 8);
    }
}
