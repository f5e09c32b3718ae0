//! `GET /stream?orgId&userId&clientType[&chatKey]`: seed 002's SSE stream.
//!
//! - `event: <type>` and `data: <ChatEvent>`; a `: heartbeat` comment every
//!   `heartbeat` interval; `reconnected` first.
//! - The stream follows every chat its user creates, loads or posts to from any tab (the
//!   user channel), and the `chatKey` it names. Replies arrive whole (`message`, role `ai`),
//!   between `agent_execution_started` and `agent_execution_ended`; tokens are not sent.
//! - `id: <seq>` goes on the durable events of the chat named by `chatKey` (only that one:
//!   `seq` is per chat, so ids of several chats on one stream would make `Last-Event-ID`
//!   ambiguous). On reconnect, `Last-Event-ID` replays every event after it.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseFrame, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use natter_core::bus::{FollowReason, UserSubscription};
use natter_core::event::{EventBody, LiveEvent, ProcessingStatus, ProcessingUpdate, StoredEvent};
use natter_core::feed::{Feed, FeedItem};
use natter_core::{ChatKey, ConnectionId, Identity, JoinRequest};
use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::wire::{self, chat_event, chat_message};
use crate::Face;
use crate::aisdk::request_conn;
use crate::aisdk::ws::token_expiry;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, chat_key, identify};

/// The `error` event a stream ends with when its token expires; pending with auth off.
fn token_expiry_event(
    caller: &Caller,
    stream: &StreamTask,
) -> impl std::future::Future<Output = Event> + Send + 'static {
    let caller = caller.clone();
    let notice = stream.error_event(
        stream.named.as_ref().map(|k| &*k.chat_id).unwrap_or(""),
        ErrorCode::TokenExpired,
        "the token this stream was opened with has expired; reconnect with a fresh one",
    );
    async move {
        token_expiry(&caller).await;
        notice
    }
}

/// Events queued for one stream, and the bytes of their data. A client that leaves either
/// full for the core's `slow_consumer_timeout` is given up on: the stream stops following its
/// chats (leaving presence), and once the client reads what is queued it gets `error
/// slow_consumer` and the stream ends; it reconnects with `Last-Event-ID`. So a stuck reader
/// holds at most this much (one event may pass the byte bound when the queue is empty, so a
/// single large message always goes through), and never slows the chat for anyone else.
const STREAM_QUEUE: usize = 1024;
const STREAM_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// An SSE event on its way out, with the size of its data (for the byte bound).
struct Event {
    frame: SseFrame,
    bytes: usize,
}

#[utoipa::path(
    get,
    path = "/api/v1/chat/stream",
    tag = "realtime",
    operation_id = "realtime_stream",
    summary = "Seed 002's SSE stream of `ChatEvent`s (long-lived)",
    security((), ("bearerAuth" = [])),
    params(
        crate::openapi::IdentityQuery,
        ("chatKey" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Follow this chat from the start"),
        ("lastEventId" = Option<u64>, Query, description = "Resume after this event id (as the `Last-Event-ID` header)"),
    ),
    responses((status = 200, description = "`text/event-stream` of seed 002 `ChatEvent`s and `: heartbeat` comments", content_type = "text/event-stream", body = String), crate::openapi::Errors),
)]
pub async fn open(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = identify(&caller, None, &query)?;
    let conn = request_conn("sse");
    let named = match query.get("chatKey").filter(|k| !k.is_empty()) {
        Some(key) => {
            let key = chat_key(&who, key)?;
            // An unknown chat (or one the caller may not use) fails before streaming.
            face.core.accessible_chat(&who, &key).await?;
            Some(key)
        }
        None => None,
    };
    let admission = face.core.admit(&who, caller.ip)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("lastEventId").map(String::as_str))
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    format!("Last-Event-ID must be a seq (an integer), got `{v}`"),
                )
            })
        })
        .transpose()?;
    let user_channel = face.core.subscribe_user(&who).await?;
    let (tx, rx) = mpsc::channel::<Event>(STREAM_QUEUE);
    let hello = chat_event(
        "reconnected",
        &who.org,
        named.as_ref().map(|k| &*k.chat_id).unwrap_or(""),
        &who.user_id,
        now_millis(),
        Some(json!({"connectionType": "sse", "connId": &*conn})),
        None,
    );
    let queued = Arc::new(AtomicUsize::new(0));
    let hello = sse_event("reconnected", &hello, None);
    queued.fetch_add(hello.bytes, Ordering::Relaxed);
    let _ = tx.try_send(hello);
    let ending: Ending = Arc::default();
    let stream = StreamTask {
        face: face.clone(),
        who,
        conn,
        named: named.clone(),
        tx,
        queued: queued.clone(),
        stop: CancellationToken::new(),
        ending: ending.clone(),
    };
    let expiry = token_expiry_event(&caller, &stream);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        stream
            .run(user_channel, named, last_event_id, subscribed_tx, expiry)
            .await;
        drop(admission);
    });
    // The response (and so the client's `open`) waits until the stream follows its chat: a
    // client that posts as soon as the stream is open must get every event the post causes.
    let _ = subscribed.await;
    let heartbeat = face.config.heartbeat;
    let last_words = futures::stream::once(async move {
        ending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|e| e.frame)
    })
    .filter_map(std::future::ready);
    let body = tokio_stream_from(rx, queued)
        .chain(last_words)
        .take_until(face.shutdown.clone().cancelled_owned())
        .map(Ok::<_, Infallible>);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Event>,
    queued: Arc<AtomicUsize>,
) -> impl futures::Stream<Item = SseFrame> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(move |e| {
        queued.fetch_sub(e.bytes, Ordering::Relaxed);
        e.frame
    })
}

fn sse_event(kind: &str, data: &Value, id: Option<u64>) -> Event {
    let data = data.to_string();
    let bytes = data.len() + kind.len();
    let e = SseFrame::default().event(kind).data(data);
    let frame = match id {
        Some(id) => e.id(id.to_string()),
        None => e,
    };
    Event { frame, bytes }
}

/// The event a stream ends with after its queue drains (set when the stream is given up on).
type Ending = Arc<std::sync::Mutex<Option<Event>>>;

struct StreamTask {
    face: Arc<Face>,
    who: Identity,
    conn: ConnectionId,
    named: Option<ChatKey>,
    tx: mpsc::Sender<Event>,
    /// Bytes of event data queued and not yet taken by the response body.
    queued: Arc<AtomicUsize>,
    /// Cancelled when the stream is given up on: every task of it ends, dropping `tx`.
    stop: CancellationToken,
    ending: Ending,
}

impl StreamTask {
    async fn run(
        self,
        mut user_channel: UserSubscription,
        named: Option<ChatKey>,
        last_event_id: Option<u64>,
        subscribed: tokio::sync::oneshot::Sender<()>,
        expiry: impl std::future::Future<Output = Event>,
    ) {
        tokio::pin!(expiry);
        let this = Arc::new(self);
        let mut members: JoinSet<()> = JoinSet::new();
        let mut following: HashSet<Arc<str>> = HashSet::new();
        if let Some(chat) = named {
            following.insert(chat.chat_id.clone());
            this.clone()
                .follow(&mut members, chat, last_event_id, Some(subscribed), None)
                .await;
        } else {
            let _ = subscribed.send(());
        }
        loop {
            tokio::select! {
                _ = this.tx.closed() => break,
                _ = this.stop.cancelled() => break,
                notice = &mut expiry => {
                    // The token ran out: say so and end the stream; the client reconnects
                    // with a fresh one (`Last-Event-ID` picks up where this ended). As the
                    // stream's last words, so no chat event can follow it.
                    this.end_with(notice);
                    break;
                }
                event = user_channel.rx.recv() => {
                    let event = match event {
                        Ok(e) => e,
                        Err(natter_core::ring::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    };
                    let chat = ChatKey::new(this.who.org.clone(), event.chat_id.clone());
                    let notice = match event.reason {
                        FollowReason::Created => {
                            let e = chat_event("new_chat_created", &this.who.org, &chat.chat_id,
                                &this.who.user_id, now_millis(), Some(json!({"chatKey": &*chat.chat_id})), None);
                            Some(sse_event("new_chat_created", &e, None))
                        }
                        FollowReason::Loaded => this.load_chat_response(&chat).await,
                        FollowReason::Posted => None,
                    };
                    if following.insert(chat.chat_id.clone()) {
                        // Joined before the notice goes out: a client that acts on seeing it
                        // (e.g. another member types at once) must find this stream subscribed.
                        this.clone().follow(&mut members, chat, Some(event.after_seq), None, notice).await;
                    } else if let Some(notice) = notice {
                        this.send(notice).await;
                    }
                }
                Some(_) = members.join_next(), if !members.is_empty() => {}
            }
        }
        // The stream is over (client gone, token expired, given up on, or the user channel
        // closed): tell every member task so it leaves presence on the way out (aborting
        // could skip the leave). Each holds `tx`, so until they end the response stays open.
        this.stop.cancel();
        while members.join_next().await.is_some() {}
    }

    /// Queues an event, waiting at most the slow-consumer timeout for room. False when the
    /// client is gone or the stream was given up on.
    async fn send(&self, event: Event) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        let patience = self.face.core.config().slow_consumer_timeout;
        let queued = async {
            // The byte bound: wait for the reader to take some, unless nothing is queued.
            loop {
                let now = self.queued.load(Ordering::Relaxed);
                if now == 0 || now + event.bytes <= STREAM_QUEUE_BYTES {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            self.queued.fetch_add(event.bytes, Ordering::Relaxed);
            let bytes = event.bytes;
            let sent = self.tx.send(event).await;
            if sent.is_err() {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
            }
            sent
        };
        let sent = tokio::select! {
            // Ended meanwhile (e.g. the token expired): stop waiting for room.
            _ = self.stop.cancelled() => return false,
            sent = tokio::time::timeout(patience, queued) => sent,
        };
        match sent {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                self.give_up(self.error_event(
                    self.named.as_ref().map(|k| &*k.chat_id).unwrap_or(""),
                    ErrorCode::SlowConsumer,
                    "this stream fell too far behind; reconnect with Last-Event-ID to catch up",
                ));
                false
            }
        }
    }

    /// Gives up on a slow consumer: ends the stream with `last` (see [`Self::end_with`]).
    fn give_up(&self, last: Event) {
        tracing::info!(conn = %self.conn, "SSE stream given up on as a slow consumer");
        metrics::counter!(natter_core::telemetry::SLOW_CONSUMERS).increment(1);
        self.end_with(last);
    }

    /// Ends the stream with `last` after what is queued, and stops following every chat.
    /// The first ending wins: it is what the client is told.
    fn end_with(&self, last: Event) {
        let mut ending = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        if ending.is_none() && !self.stop.is_cancelled() {
            *ending = Some(last);
        }
        drop(ending);
        self.stop.cancel();
    }

    fn error_event(&self, chat_id: &str, code: ErrorCode, message: &str) -> Event {
        let data = json!({"code": code.as_str(), "message": message});
        let ev = chat_event(
            "error",
            &self.who.org,
            chat_id,
            &self.who.user_id,
            now_millis(),
            Some(data),
            None,
        );
        sse_event("error", &ev, None)
    }

    /// `load_chat_response` for a chat the user opened elsewhere (another tab), as `/load`
    /// answers; none when the chat cannot be read.
    async fn load_chat_response(&self, chat: &ChatKey) -> Option<Event> {
        let core = &self.face.core;
        let summary = core.chat_summary(chat).await.ok()?;
        let messages = core
            .recent_messages(chat, core.config().join_history)
            .await
            .unwrap_or_default();
        Some(self.chat_loaded(chat, json!({"chat": wire::chat(&summary, &messages)})))
    }

    /// A `load_chat_response` event with `data`.
    fn chat_loaded(&self, chat: &ChatKey, data: Value) -> Event {
        let kind = "load_chat_response";
        let e = self.envelope(
            chat,
            kind,
            &self.who.user_id,
            now_millis(),
            Some(data),
            None,
        );
        sse_event(kind, &e, None)
    }

    /// Joins `chat` from `after_seq` (replaying what came after it) and streams it; `notice`
    /// goes out once the join has subscribed, before the replay.
    async fn follow(
        self: Arc<Self>,
        members: &mut JoinSet<()>,
        chat: ChatKey,
        after_seq: Option<u64>,
        subscribed: Option<tokio::sync::oneshot::Sender<()>>,
        notice: Option<Event>,
    ) {
        let core = &self.face.core;
        let summary = match core.chat_summary(&chat).await {
            Ok(s) => s,
            Err(_) => {
                if let Some(notice) = notice {
                    self.send(notice).await;
                }
                return;
            }
        };
        let epoch = summary.epoch.clone();
        let outcome = core
            .join(
                &self.who,
                &self.conn,
                &chat,
                JoinRequest {
                    last_seq: after_seq,
                    epoch: Some(epoch),
                    members: None,
                    agent_id: None,
                },
            )
            .await;
        if let Some(subscribed) = subscribed {
            let _ = subscribed.send(());
        }
        if let Some(notice) = notice
            && !self.send(notice).await
        {
            return;
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let w = e.to_wire();
                self.send(self.error_event(&chat.chat_id, w.code, &w.message))
                    .await;
                return;
            }
        };
        if after_seq.is_some() && !outcome.recovered {
            // The gap cannot be replayed (longer than the replay limit, or an id this log
            // never had): the whole chat as `/load` gives it, so the client resyncs.
            let data = json!({"chat": wire::chat(&summary, &outcome.messages), "recovered": false});
            if !self.send(self.chat_loaded(&chat, data)).await {
                return;
            }
        }
        for event in &outcome.replay {
            for e in self.durable_events(&chat, event) {
                if !self.send(e).await {
                    return;
                }
            }
        }
        // A stream opened without `Last-Event-ID` during a client-run tool's wait (a page
        // reload, or a call made while the stream was opening) gets the waiting
        // `client_action` again, so it can answer it. With its `seq` as `id:`, as always: a
        // reconnect from there replays what followed it, which clients dedupe by id.
        for event in &outcome.pending_tool_calls {
            for e in self.durable_events(&chat, event) {
                if !self.send(e).await {
                    return;
                }
            }
        }
        // Turns asked for after the point this stream follows from had their `queued` notice
        // before the join subscribed (a chat created and written to at once): say they started.
        let mut announced = HashSet::new();
        for turn in &outcome.open_turns {
            if after_seq.is_some_and(|after| turn.opened_seq <= after) {
                continue;
            }
            if !self
                .send(self.started_event(&chat, &turn.request_id, None))
                .await
            {
                return;
            }
            announced.insert(turn.request_id.clone());
        }
        let this = self.clone();
        members.spawn(async move {
            this.run_member(chat.clone(), outcome.feed, announced).await;
            this.face.core.leave(&this.who, &this.conn, &chat).await;
        });
    }

    /// `announced`: turns already said to have started (on joining); their `queued` notice,
    /// if the feed still brings it, is not sent twice.
    async fn run_member(&self, chat: ChatKey, mut feed: Feed, mut announced: HashSet<String>) {
        loop {
            let item = tokio::select! {
                _ = self.tx.closed() => return,
                _ = self.stop.cancelled() => return,
                item = feed.next() => item,
            };
            let Ok(item) = item else {
                // Fell behind or the bus closed: the client reconnects and replays by id.
                self.give_up(self.error_event(
                    &chat.chat_id,
                    ErrorCode::SlowConsumer,
                    "this stream fell behind; reconnect with Last-Event-ID to catch up",
                ));
                return;
            };
            if !announced.is_empty() {
                let seen = match &item {
                    FeedItem::Live(LiveEvent::Processing {
                        request_id,
                        status: ProcessingStatus::Queued,
                        ..
                    }) => announced.remove(request_id.as_ref()),
                    FeedItem::Durable(event) => {
                        if let EventBody::AssistantMessage { request_id, .. }
                        | EventBody::TurnFailed { request_id, .. } = &event.body
                        {
                            announced.remove(request_id.as_str());
                        }
                        false
                    }
                    _ => false,
                };
                if seen {
                    continue;
                }
            }
            let events = match &item {
                FeedItem::Durable(event) => self.durable_events(&chat, event),
                FeedItem::Live(live) => self.live_events(&chat, live),
                FeedItem::Tokens { .. } => Vec::new(),
            };
            for e in events {
                if !self.send(e).await {
                    return;
                }
            }
            if matches!(item, FeedItem::Live(LiveEvent::ChatDeleted { .. })) {
                return;
            }
        }
    }

    fn envelope(
        &self,
        chat: &ChatKey,
        kind: &str,
        user: &str,
        t: i64,
        data: Option<Value>,
        message: Option<Value>,
    ) -> Value {
        chat_event(kind, &self.who.org, &chat.chat_id, user, t, data, message)
    }

    fn id_for(&self, chat: &ChatKey, seq: u64) -> Option<u64> {
        (self.named.as_ref() == Some(chat)).then_some(seq)
    }

    fn durable_events(&self, chat: &ChatKey, event: &StoredEvent) -> Vec<Event> {
        let t = event.created_at;
        let id = self.id_for(chat, event.seq);
        let mut out = Vec::new();
        match &event.body {
            EventBody::UserMessage { user_id, .. } => {
                let e = self.envelope(chat, "message", user_id, t, None, chat_message(event));
                out.push(sse_event("message", &e, id));
            }
            EventBody::AssistantMessage {
                message_id,
                request_id,
                finish_reason,
                ..
            } => {
                let e = self.envelope(
                    chat,
                    "message",
                    super::wire::AI_SENDER,
                    t,
                    None,
                    chat_message(event),
                );
                out.push(sse_event("message", &e, id));
                let data = json!({"requestId": request_id, "messageId": message_id, "finishReason": finish_reason});
                let e = self.envelope(
                    chat,
                    "agent_execution_ended",
                    super::wire::AI_SENDER,
                    t,
                    Some(data),
                    None,
                );
                out.push(sse_event("agent_execution_ended", &e, None));
            }
            EventBody::TurnFailed { .. } => out.extend(self.failed_events(chat, event, id)),
            // A client-run tool: seed 002's `client_action`, answered with `POST /event`
            // `{type: "client_action_callback", data: {toolCallId, result | error}}`.
            // Server-run calls and all results are internal to the turn here.
            EventBody::ToolCall {
                request_id,
                message_id,
                tool_call_id,
                name,
                arguments,
                executor,
                ..
            } if executor == "client" => {
                let data = json!({
                    "toolCallId": tool_call_id, "name": name, "arguments": arguments,
                    "requestId": request_id, "messageId": message_id,
                });
                let e = self.envelope(
                    chat,
                    "client_action",
                    super::wire::AI_SENDER,
                    t,
                    Some(data),
                    None,
                );
                out.push(sse_event("client_action", &e, id));
            }
            EventBody::ToolCall { .. } => {}
            EventBody::ChatEnded { ended_by, reason } => {
                let data = json!({"endedBy": ended_by, "reason": reason});
                let e = self.envelope(
                    chat,
                    "chat_ended",
                    ended_by.as_deref().unwrap_or(""),
                    t,
                    Some(data),
                    None,
                );
                out.push(sse_event("chat_ended", &e, id));
                // CONTRACT §7.4: a customer's stream is asked to rate the chat (no `id`: it
                // is part of the `chat_ended` above, and comes again with it on replay).
                if self.face.core.config().csat
                    && self.who.client_type == natter_core::chat::ClientType::Customer
                {
                    let data = json!({"seq": event.seq});
                    let e = self.envelope(
                        chat,
                        "show_csat_survey",
                        &self.who.user_id,
                        t,
                        Some(data),
                        None,
                    );
                    out.push(sse_event("show_csat_survey", &e, None));
                }
            }
            // CONTRACT §7.3: the message's whole reaction list after the change.
            EventBody::ReactionAdded {
                message_id,
                user_id,
                emoji,
                reactions,
                ..
            }
            | EventBody::ReactionRemoved {
                message_id,
                user_id,
                emoji,
                reactions,
                ..
            } => {
                let data = json!({
                    "messageId": message_id,
                    "reactions": super::wire::reactions(reactions),
                    "emoji": emoji,
                    "added": matches!(event.body, EventBody::ReactionAdded { .. }),
                    "seq": event.seq,
                });
                let e = self.envelope(chat, "reaction_update", user_id, t, Some(data), None);
                out.push(sse_event("reaction_update", &e, id));
            }
            EventBody::CsatSubmitted {
                user_id,
                rating,
                comment,
                ..
            } => {
                let mut data = json!({"rating": rating, "submittedAt": t, "seq": event.seq});
                if let Some(c) = comment {
                    data["comment"] = json!(c);
                }
                let e = self.envelope(chat, "csat_submitted", user_id, t, Some(data), None);
                out.push(sse_event("csat_submitted", &e, id));
            }
            // Handoff (CONTRACT §7.2): seed 002's `human_agent_joined` / `_left`, and
            // `human_agent_requested`, with the chat's handoff state after the change.
            EventBody::HumanAgentRequested { .. }
            | EventBody::HumanAgentJoined { .. }
            | EventBody::HumanAgentLeft { .. } => {
                let kind = event.body.kind();
                let (user, data) = super::wire::handoff_data(&event.body);
                let e = self.envelope(chat, kind, &user, t, Some(data), None);
                out.push(sse_event(kind, &e, id));
            }
            // No seed 002 event for these; the next event's id still moves past their seq.
            EventBody::ChatCreated { .. }
            | EventBody::ChatUpdated { .. }
            | EventBody::MessageSuperseded { .. }
            | EventBody::ReadReceipt { .. }
            | EventBody::ToolResult { .. } => {}
        }
        out
    }

    /// A failed turn: the partial reply as a failed `message`, `error`, then the end marker.
    fn failed_events(&self, chat: &ChatKey, event: &StoredEvent, id: Option<u64>) -> Vec<Event> {
        let EventBody::TurnFailed {
            message_id,
            request_id,
            code,
            message,
            retryable,
            ..
        } = &event.body
        else {
            return Vec::new();
        };
        let t = event.created_at;
        let ai = super::wire::AI_SENDER;
        let data = json!({"message": message, "code": code, "retryable": retryable, "requestId": request_id, "messageId": message_id});
        vec![
            sse_event(
                "message",
                &self.envelope(chat, "message", ai, t, None, chat_message(event)),
                id,
            ),
            sse_event(
                "error",
                &self.envelope(chat, "error", ai, t, Some(data), None),
                None,
            ),
            sse_event(
                "agent_execution_ended",
                &self.envelope(
                    chat,
                    "agent_execution_ended",
                    ai,
                    t,
                    Some(json!({"requestId": request_id, "messageId": message_id, "error": code})),
                    None,
                ),
                None,
            ),
        ]
    }

    fn started_event(&self, chat: &ChatKey, request_id: &str, eta_ms: Option<u64>) -> Event {
        let data = json!({"requestId": request_id, "etaMs": eta_ms});
        let e = self.envelope(
            chat,
            "agent_execution_started",
            super::wire::AI_SENDER,
            now_millis(),
            Some(data),
            None,
        );
        sse_event("agent_execution_started", &e, None)
    }

    fn live_events(&self, chat: &ChatKey, live: &LiveEvent) -> Vec<Event> {
        let now = now_millis();
        match live {
            LiveEvent::Processing {
                request_id,
                status: ProcessingStatus::Queued,
                eta_ms,
                ..
            } => vec![self.started_event(chat, request_id, *eta_ms)],
            LiveEvent::Typing {
                user_id, typing, ..
            } => {
                let kind = if *typing { "typing" } else { "stopped_typing" };
                let e = self.envelope(
                    chat,
                    kind,
                    user_id,
                    now,
                    Some(json!({"userId": user_id.as_ref()})),
                    None,
                );
                vec![sse_event(kind, &e, None)]
            }
            LiveEvent::TurnEndUnstored { end, .. } => {
                let event = StoredEvent {
                    seq: 0,
                    created_at: now,
                    body: (**end).clone(),
                };
                self.failed_events(chat, &event, None)
            }
            LiveEvent::AttachmentProcessing {
                attachment_id,
                update,
            } => {
                // Seed 002's `attachment_processing_*` events (CONTRACT §7.6); the server
                // does the processing, so no user sends them.
                let id = attachment_id.as_ref();
                let (kind, data) = match update {
                    ProcessingUpdate::Started => {
                        ("attachment_processing_started", json!({"attachmentId": id}))
                    }
                    ProcessingUpdate::Progress { percent } => (
                        "attachment_processing_progress",
                        json!({"attachmentId": id, "percent": percent}),
                    ),
                    ProcessingUpdate::Complete { chars, pages } => {
                        let mut data = json!({"attachmentId": id, "chars": chars});
                        if let Some(pages) = pages {
                            data["pages"] = json!(pages);
                        }
                        ("attachment_processing_complete", data)
                    }
                    ProcessingUpdate::Error { code, message } => (
                        "attachment_processing_error",
                        json!({"attachmentId": id, "code": code, "message": message}),
                    ),
                };
                let e = self.envelope(chat, kind, "", now, Some(data), None);
                vec![sse_event(kind, &e, None)]
            }
            LiveEvent::ChatDeleted { deleted_by } => {
                let data = json!({"reason": "deleted", "endedBy": deleted_by.as_deref()});
                let e = self.envelope(
                    chat,
                    "chat_ended",
                    deleted_by.as_deref().unwrap_or(""),
                    now,
                    Some(data),
                    None,
                );
                vec![sse_event("chat_ended", &e, None)]
            }
            _ => Vec::new(),
        }
    }
}
