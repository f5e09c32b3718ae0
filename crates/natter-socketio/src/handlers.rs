//! Socket.IO event handlers: parse, resolve chat and identity, call the core, ack.
//!
//! Every refused event gets the `error` event `{code, message, event}`, and also
//! `{ok: false, error}` in its ack when the client asked for one (seed clients often emit
//! without acks, and the `error` event is how they learn about a failure).

use std::collections::HashMap;
use std::sync::Arc;

use natter_core::trace_context::{SpanParent, TRACEPARENT};
use natter_core::{ChatKey, CoreError, JoinRequest as CoreJoin, Source, UserMessageInput};
use natter_protocol::events::CLIENT_TO_SERVER;
use natter_protocol::socketio::{
    AbortAck, AbortRequest, AuthRefreshAck, AuthRefreshRequest, DiscoveryAck, ErrorAck, HandoffAck,
    JoinAck, JoinRequest, MarkReadAck, MarkReadRequest, OkAck, PlainRequest, ServerErrorEvent,
    ToolResultRequest, TypingRequest, UserMessageAck, UserMessageRequest,
};
use natter_protocol::socketio::{
    ChatEndRequest, CsatSubmitRequest, HistoryMessage, ReactionAck, ReactionRequest, SeqAck,
};
use natter_protocol::{ErrorCode, EventKey, EventNames, WireError};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{Ack, Client};
use crate::connection::{Conn, HandshakeJoin, Membership};
use crate::delivery::{self, DropReason, EmitFailed};
use crate::flat::{FlatIn, Profile};
use crate::identity::{ConnIdentity, Handshake};
use crate::{Face, wire};

/// Where the answer to one client event goes.
struct Reply {
    client: Client,
    ack: Option<Ack>,
    event: String,
    face: Arc<Face>,
}

impl Reply {
    fn ok<T: Serialize + ?Sized>(self, body: &T) {
        if let Some(ack) = self.ack {
            ack.send(body);
        }
    }

    fn err(self, e: &WireError) {
        metrics::counter!(natter_core::telemetry::ERRORS, "code" => e.code.as_str()).increment(1);
        tracing::debug!(event = %self.event, code = %e.code, message = %e.message, "refused client event");
        if let Some(ack) = self.ack {
            ack.send(&ErrorAck::from(e));
        }
        let body = ServerErrorEvent::new(e, Some(self.event));
        let profile = self.client.conn().map_or(Profile::Default, |c| c.profile);
        delivery::send_now(
            &self.client,
            profile,
            &self.face.config.event_names,
            EventKey::ServerError,
            &body,
        );
    }

    fn result<T: Serialize>(self, r: Result<T, WireError>) {
        match r {
            Ok(body) => self.ok(&body),
            Err(e) => self.err(&e),
        }
    }
}

fn core_err(e: CoreError) -> WireError {
    if let CoreError::Unavailable(detail) = &e {
        tracing::warn!(error = %detail, "backend failure while serving a client event");
    }
    e.to_wire()
}

/// Seed 004 names its chats `conversation_id`; tried after the configured chat-key fields.
const FLAT_CHAT_KEY_FIELD: &str = "conversation_id";

/// The join the handshake asks for at once, if it names a chat: the first configured
/// chat-key field present, else `conversation_id`.
fn handshake_join_request(face: &Face, handshake: &Handshake) -> Option<JoinRequest> {
    let chat_id = face
        .config
        .chat_key_fields
        .iter()
        .map(String::as_str)
        .chain([FLAT_CHAT_KEY_FIELD])
        .find_map(|f| handshake.field(f))?;
    Some(JoinRequest {
        common: natter_protocol::socketio::Common {
            chat_id: Some(chat_id),
            trace_id: None,
        },
        user_id: None,
        last_seq: handshake.field("lastSeq").and_then(|s| s.parse().ok()),
        epoch: handshake.field("epoch"),
        members: None,
        // Clients with `joinEvent: null` bind a new chat in the handshake (CONTRACT §7.5).
        agent_id: handshake.field("agentId"),
    })
}

/// How a client event is handled.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A contract event (CONTRACT §1).
    Contract(EventKey),
    /// A flat-profile event: translated to its contract event, then handled as that.
    Flat(FlatIn),
}

/// Client event names to their handling, per profile: built once per face from the
/// configured names and shared by every socket.
pub(crate) struct Routes {
    contract: HashMap<String, Route>,
    flat: HashMap<String, Route>,
}

impl Routes {
    pub(crate) fn new(names: &EventNames) -> Self {
        let contract: HashMap<String, Route> = CLIENT_TO_SERVER
            .iter()
            .map(|key| (names.name(*key).to_owned(), Route::Contract(*key)))
            .collect();
        // On a flat connection `message`, `join` and `leave` are the flat events even if a
        // contract event was renamed to one of those names.
        let mut flat = contract.clone();
        flat.extend(
            FlatIn::ALL
                .iter()
                .map(|e| (e.name().to_owned(), Route::Flat(*e))),
        );
        Self { contract, flat }
    }

    fn get(&self, profile: Profile, event: &str) -> Option<Route> {
        match profile {
            Profile::Flat => self.flat.get(event).copied(),
            Profile::Default => self.contract.get(event).copied(),
        }
    }
}

/// What a client's handshake gave the face: the Socket.IO `auth` payload and copies of the
/// request's query, headers and peer address, whichever transport carried them.
pub(crate) struct HandshakeRequest<'a> {
    pub id: String,
    pub query: Option<&'a str>,
    pub headers: &'a axum::http::HeaderMap,
    pub ip: Option<std::net::IpAddr>,
    pub auth: Option<Value>,
}

/// Checks a handshake and admits the connection, before the client is told it is connected,
/// so every handler is in place before its first event can arrive. The caller keeps the
/// returned state on the socket.
pub(crate) fn prepare(face: &Face, request: HandshakeRequest<'_>) -> Result<Arc<Conn>, WireError> {
    let HandshakeRequest {
        id,
        query,
        headers,
        ip,
        auth,
    } = request;
    let handshake = Handshake::new(query, auth);
    ConnIdentity::check(&handshake)?;
    // `auth.traceparent`, the query's, or the handshake request's header; invalid: ignored.
    let trace_parent = handshake
        .field(TRACEPARENT)
        .or_else(|| {
            headers
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .and_then(|v| SpanParent::from_traceparent(&v));
    let profile = Profile::from_handshake(&handshake)?;
    let identity = if face.config.auth.is_on() {
        let token = handshake.field("token").or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(natter_auth::bearer)
                .map(str::to_owned)
        });
        let token = token.ok_or_else(|| {
            WireError::new(
                ErrorCode::Unauthorized,
                "no token: connect with auth `{token}`, query `token`, or `Authorization: Bearer`",
            )
        })?;
        let principal = face.config.auth.verify(&token)?;
        let client_type =
            natter_auth::client_type(Some(&principal), handshake.field("clientType").as_deref())?;
        ConnIdentity::from_token(&principal, &handshake)?.with_client_type(client_type)
    } else {
        let client_type = natter_auth::client_type(None, handshake.field("clientType").as_deref())?;
        ConnIdentity::from_handshake(&handshake, &id).with_client_type(client_type)
    };
    let admission = face
        .core
        .admit(&identity.resolve(None)?, ip)
        .map_err(|e| e.to_wire())?;
    let conn =
        Arc::new(Conn::new(id.into(), identity, profile, ip).with_trace_parent(trace_parent));
    *conn.admission.lock().unwrap_or_else(|p| p.into_inner()) = Some(admission);
    if let Some(request) = handshake_join_request(face, &handshake) {
        // Nothing else holds the new lock yet, so this cannot fail; if it somehow did, the
        // join would simply take the lock in turn.
        let serial = conn.serial.clone().try_lock_owned().ok();
        *conn
            .handshake_join
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(HandshakeJoin { request, serial }));
    }
    metrics::gauge!(natter_core::telemetry::CONNECTIONS, "face" => "socketio").increment(1.0);
    Ok(conn)
}

/// The `connect_error` message a refused handshake gets: the bare code for auth and limits
/// (CONTRACT §6.15: `unauthorized`), which clients match on, the reason being logged;
/// otherwise `code: reason`, so the client can match the code and a person can read why.
pub(crate) fn refusal_message(e: &WireError) -> String {
    use natter_protocol::ErrorCode as C;
    match e.code {
        C::Unauthorized | C::Forbidden | C::TooManyConnections => {
            tracing::info!(code = %e.code, reason = %e.message, "handshake refused");
            e.code.as_str().to_owned()
        }
        _ => format!("{}: {}", e.code, e.message),
    }
}

/// A client event arrives: routes it by name through the face's shared table. Call it
/// synchronously as the packet is read: it takes the event's place in the connection's
/// order before returning the future that handles it.
pub(crate) fn receive(
    face: Arc<Face>,
    client: Client,
    event: String,
    data: Option<Value>,
    ack: Option<Ack>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let conn = client.conn();
    let profile = conn.as_ref().map_or(Profile::Default, |c| c.profile);
    let route = face.routes.get(profile, &event);
    let order = route.and_then(|_| conn.as_ref().map(|c| c.queue_event()));
    async move {
        let Some(route) = route else {
            let e = WireError::new(ErrorCode::UnknownEvent, format!("unknown event `{event}`"));
            Reply {
                client,
                ack,
                event,
                face,
            }
            .err(&e);
            return;
        };
        let _order = match order {
            Some(mut o) => {
                o.wait().await;
                Some(o)
            }
            None => None,
        };
        match route {
            Route::Contract(key) => dispatch(face, client, conn, key, event, data, ack).await,
            Route::Flat(flat) => dispatch_flat(face, client, conn, flat, data, ack).await,
        }
    }
}

/// The socket is gone: its chats' presence ends and its admission is released.
pub(crate) async fn disconnected(face: Arc<Face>, conn: Option<Arc<Conn>>) {
    metrics::gauge!(natter_core::telemetry::CONNECTIONS, "face" => "socketio").decrement(1.0);
    let Some(conn) = conn else { return };
    conn.closed.cancel();
    conn.admission
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    for m in conn.drain() {
        m.stop.cancel();
        leave_presence(&face, &conn, &m).await;
    }
}

/// After the client is connected: joins the chat its handshake names, if any (clients with
/// `joinEvent: null`).
pub(crate) async fn on_connect(face: Arc<Face>, client: Client) {
    let Some(conn) = client.conn() else { return };
    if conn.identity.expires_at().is_some() {
        tokio::spawn(watch_expiry(face.clone(), client.clone(), conn.clone()));
    }
    let pending = conn
        .handshake_join
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(HandshakeJoin { request, serial }) = pending.map(|p| *p) else {
        return;
    };
    let _serial = match serial {
        Some(guard) => guard,
        None => conn.serial.clone().lock_owned().await,
    };
    let reply = Reply {
        client: client.clone(),
        ack: None,
        event: "handshake".into(),
        face: face.clone(),
    };
    join(face, client, conn.clone(), request, reply).await;
}

/// Drops the socket when its token expires, unless `auth:refresh` moved the expiry on.
async fn watch_expiry(face: Arc<Face>, client: Client, conn: Arc<Conn>) {
    while let Some(expires_at) = conn.identity.expires_at() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let wait = std::time::Duration::from_secs(expires_at).saturating_sub(now);
        tokio::select! {
            _ = conn.closed.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if conn.identity.expires_at() != Some(expires_at) {
            continue; // refreshed meanwhile
        }
        let e = WireError::new(
            ErrorCode::TokenExpired,
            "this connection's token has expired; send auth:refresh with a fresh token before it does, or reconnect with one",
        );
        let _ = delivery::emit_event(
            &client,
            conn.profile,
            &face.config.event_names,
            EventKey::ServerError,
            &ServerErrorEvent::new(&e, None),
            None,
            std::time::Duration::from_secs(1),
        )
        .await;
        tracing::info!(socket = %conn.id, "token expired: disconnecting");
        let _ = client.disconnect();
        return;
    }
}

/// `auth:refresh {token}`: the same user's fresh token extends the connection's life.
fn refresh(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<AuthRefreshAck, WireError> {
    let req = AuthRefreshRequest::parse(event, data)?;
    if !face.config.auth.is_on() {
        return Ok(AuthRefreshAck {
            ok: true,
            expires_at: None,
        });
    }
    let principal = face.config.auth.verify(&req.token)?;
    conn.identity.refresh(&principal)?;
    Ok(AuthRefreshAck {
        ok: true,
        expires_at: i64::try_from(principal.expires_at)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .map(natter_protocol::time::iso8601),
    })
}

async fn leave_presence(face: &Face, conn: &Conn, m: &Membership) {
    let who = conn.identity.as_user(m.user_id.clone());
    face.core.leave(&who, &conn.id, &m.chat).await;
}

/// A flat-profile event: its payload becomes the contract payload of the event it stands for,
/// which is then handled exactly as that event (errors name the flat event).
async fn dispatch_flat(
    face: Arc<Face>,
    client: Client,
    conn: Option<Arc<Conn>>,
    flat: FlatIn,
    data: Option<Value>,
    ack: Option<Ack>,
) {
    let data = data.unwrap_or(Value::Null);
    let new_message_id = || uuid::Uuid::now_v7().to_string();
    match flat.translate(&data, new_message_id) {
        Ok((key, payload)) => {
            let event = flat.name().to_owned();
            dispatch(face, client, conn, key, event, Some(payload), ack).await
        }
        Err(e) => Reply {
            client,
            ack,
            event: flat.name().to_owned(),
            face,
        }
        .err(&e),
    }
}

/// Handles the client event `key`; `event` is the wire name it arrived under (for errors).
/// `conn` is the socket's state as [`receive`] found it.
async fn dispatch(
    face: Arc<Face>,
    client: Client,
    conn: Option<Arc<Conn>>,
    key: EventKey,
    event: String,
    data: Option<Value>,
    ack: Option<Ack>,
) {
    let reply = Reply {
        client: client.clone(),
        ack,
        event: event.clone(),
        face: face.clone(),
    };
    let Some(conn) = conn else {
        return reply.err(&WireError::new(
            ErrorCode::Internal,
            "connection state missing",
        ));
    };
    // A missing or undecodable payload reads as null, which every parser below refuses.
    let mut data = data.unwrap_or(Value::Null);
    let span = tracing::info_span!(
        "socketio.event",
        otel.name = %EventSpanName(&event),
        otel.kind = "server",
        event = %event,
        socket = %conn.id,
    );
    if let Some(parent) = &conn.trace_parent {
        parent.adopt(&span);
        // The handshake's trace id is the `traceId` of a payload that names none.
        if let Value::Object(fields) = &mut data
            && fields.get("traceId").is_none_or(Value::is_null)
        {
            fields.insert("traceId".into(), Value::from(parent.trace_id()));
        }
    }
    handle(face, client, conn, key, event, data, reply)
        .instrument(span)
        .await
}

/// The name an event's span is exported under (`socket.io <event>`). A `Display` value, so
/// the text is built only by a layer that reads the field (the OTLP exporter), not per event
/// whenever the span is enabled.
struct EventSpanName<'a>(&'a str);

impl std::fmt::Display for EventSpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "socket.io {}", self.0)
    }
}

/// [`dispatch`]'s work, inside the event's span.
async fn handle(
    face: Arc<Face>,
    client: Client,
    conn: Arc<Conn>,
    key: EventKey,
    event: String,
    data: Value,
    reply: Reply,
) {
    let _serial = conn.serial.lock().await;
    match key {
        EventKey::Join => match JoinRequest::parse(&event, &data) {
            Ok(req) => join(face, client, conn.clone(), req, reply).await,
            Err(e) => reply.err(&e),
        },
        EventKey::Leave => {
            let r = leave(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::UserMessage => {
            let r = user_message(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::TypingStart | EventKey::TypingStop => {
            let r = typing(&face, &conn, &event, &data, key == EventKey::TypingStart).await;
            reply.result(r);
        }
        EventKey::Abort => {
            let r = abort(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::MarkRead => {
            let r = mark_read(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::DiscoveryRequest => {
            let body = face.config.event_names.discovery();
            delivery::send_now(
                &client,
                conn.profile,
                &face.config.event_names,
                EventKey::DiscoveryResponse,
                &body,
            );
            reply.ok(&DiscoveryAck { ok: true, body });
        }
        EventKey::ToolResultIn => {
            let r = tool_result(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::AuthRefresh => {
            let r = refresh(&face, &conn, &event, &data);
            reply.result(r);
        }
        EventKey::HandoffRequest => {
            let r = handoff_request(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::ReactionAdd | EventKey::ReactionRemove => {
            let add = key == EventKey::ReactionAdd;
            let r = reaction(&face, &conn, &event, &data, add).await;
            reply.result(r);
        }
        EventKey::ChatEnd => {
            let r = chat_end(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        EventKey::CsatSubmit => {
            let r = csat_submit(&face, &conn, &event, &data).await;
            reply.result(r);
        }
        // Server→client keys are never registered as handlers.
        _ => reply.err(&WireError::new(
            ErrorCode::UnknownEvent,
            format!("unknown event `{event}`"),
        )),
    }
}

/// Emits one event a join sends its member before the live feed starts (the replay, the
/// waiting tool calls, the open turns' status). Says whether the member is still in the chat:
/// a closed socket leaves it, and one whose buffer stays full is dropped as a slow consumer.
async fn send_joined(
    face: &Arc<Face>,
    client: &Client,
    conn: &Conn,
    who: &natter_core::Identity,
    chat: &ChatKey,
    (key, payload): wire::Outgoing,
) -> bool {
    let patience = face.core.config().slow_consumer_timeout;
    let names = &face.config.event_names;
    let chat_id = Some(&*chat.chat_id);
    let sent = delivery::emit_event(
        client,
        conn.profile,
        names,
        key,
        &*payload,
        chat_id,
        patience,
    )
    .await;
    match sent {
        Ok(_) => true,
        Err(EmitFailed::Closed) => {
            face.core.leave(who, &conn.id, chat).await;
            false
        }
        Err(EmitFailed::Full) => {
            let reason = DropReason::SlowConsumer;
            delivery::drop_member(face, client, conn, chat, &who.user_id, reason).await;
            false
        }
    }
}

async fn join(face: Arc<Face>, client: Client, conn: Arc<Conn>, req: JoinRequest, reply: Reply) {
    let prepared = (|| {
        let chat_id = req.common.chat_id.clone().ok_or_else(|| {
            WireError::new(
                ErrorCode::MissingField,
                format!("{}: `chatId` is required", reply.event),
            )
        })?;
        let who = conn.identity.resolve(req.user_id.as_deref())?;
        let max = face.config.max_joins_per_socket;
        if conn.joins_full(&chat_id, max) {
            return Err(WireError::new(
                ErrorCode::TooManyJoins,
                format!("this connection is in {max} chats, the most allowed; leave one first"),
            ));
        }
        Ok::<_, WireError>((ChatKey::new(who.org.clone(), chat_id), who))
    })();
    let (chat, who) = match prepared {
        Ok(p) => p,
        Err(e) => return reply.err(&e),
    };
    // A rejoin on the same socket replaces the old membership (e.g. to replay from lastSeq).
    let old = conn.remove(&chat.chat_id);
    if let Some(old) = &old {
        old.stop.cancel();
    }
    let request = CoreJoin {
        last_seq: req.last_seq,
        epoch: req.epoch.clone(),
        members: req.members.clone(),
        agent_id: req.agent_id.clone(),
    };
    let joined = face.core.join(&who, &conn.id, &chat, request).await;
    // The old membership's presence goes unless the new one (same user) replaced it.
    if let Some(old) = &old
        && (joined.is_err() || old.user_id != who.user_id)
    {
        leave_presence(&face, &conn, old).await;
    }
    let outcome = match joined {
        Ok(o) => o,
        Err(e) => return reply.err(&core_err(e)),
    };
    conn.identity.adopt(&who);
    let asks_csat = delivery::asks_csat(&face, &conn, &who.user_id);
    // One event serialized at a time: a replay can be thousands of events.
    for event in &outcome.replay {
        let csat = if asks_csat {
            wire::csat_request(&chat.chat_id, event)
        } else {
            None
        };
        for out in wire::durable(&chat.chat_id, event).into_iter().chain(csat) {
            if !send_joined(&face, &client, &conn, &who, &chat, out).await {
                return;
            }
        }
    }
    let mut messages: Vec<HistoryMessage> = outcome
        .messages
        .iter()
        .filter_map(|e| wire::history_message(&chat.chat_id, e))
        .collect();
    // Each message's reactions (CONTRACT §7.3). A failure to read them leaves them out
    // rather than failing a join that already happened.
    let ids: Vec<String> = messages.iter().map(|m| m.message_id().to_owned()).collect();
    match face.core.reactions(&chat, &ids).await {
        Ok(found) => {
            let found: std::collections::HashMap<String, Vec<natter_core::event::Reaction>> =
                found.into_iter().collect();
            for m in &mut messages {
                if let Some(list) = found.get(m.message_id()) {
                    m.set_reactions(wire::reaction_list(list));
                }
            }
        }
        Err(e) => tracing::warn!(chat = %chat, error = %e, "reading reactions for a join failed"),
    }
    reply.ok(&JoinAck {
        ok: true,
        chat_id: chat.chat_id.to_string(),
        seq: outcome.info.head_seq,
        epoch: outcome.info.epoch.clone(),
        recovered: outcome.recovered,
        online_user_ids: outcome.online_user_ids.clone(),
        messages,
    });
    // A client-run call still waiting (a join without lastSeq, e.g. after a page reload):
    // sent again so this member can answer it; the running turn's tokens follow.
    let pending = outcome
        .pending_tool_calls
        .iter()
        .filter_map(|event| wire::pending_tool_call(&chat.chat_id, event));
    // Where the chat's open turns stand, which a member that joins (or rejoins) after their
    // `ai:processing` missed: without it a reloaded page shows no "thinking" state until the
    // first token, and none at all for a turn still queued.
    let running = outcome.feed.current_turn().map(|t| t.request_id.clone());
    let statuses = outcome.open_turns.iter().filter_map(|turn| {
        let is_running = running.as_deref() == Some(turn.request_id.as_str());
        wire::open_turn_status(&chat.chat_id, turn, is_running)
    });
    // Collected: an iterator borrowing `outcome` held across the emits' awaits makes the
    // handler's future not `Send` for every lifetime, as socketioxide needs. Both are short.
    let after_ack: Vec<wire::Outgoing> = pending.chain(statuses).collect();
    for out in after_ack {
        if !send_joined(&face, &client, &conn, &who, &chat, out).await {
            return;
        }
    }
    let stop = CancellationToken::new();
    let chat_key = chat.clone();
    conn.insert(Membership {
        chat,
        user_id: who.user_id.clone(),
        stop: stop.clone(),
    });
    tokio::spawn(delivery::run_member(
        face.clone(),
        client.clone(),
        conn.clone(),
        who.user_id.clone(),
        outcome.feed,
        stop,
    ));
    // A human agent joining takes the chat over (CONTRACT §7.2): after the ack, so the
    // `handoff:update` reaches this member too, through its feed.
    if who.is_human_agent()
        && let Err(e) = face.core.human_agent_join(&who, &chat_key).await
    {
        let e = core_err(e);
        delivery::send_now(
            &client,
            conn.profile,
            &face.config.event_names,
            EventKey::ServerError,
            &ServerErrorEvent::new(
                &e,
                Some(face.config.event_names.name(EventKey::Join).to_owned()),
            ),
        );
    }
}

async fn leave(face: &Face, conn: &Conn, event: &str, data: &Value) -> Result<OkAck, WireError> {
    let req = PlainRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    if let Some(m) = conn.remove(&chat.chat_id) {
        m.stop.cancel();
        leave_presence(face, conn, &m).await;
        // A human agent's leave hands the chat back (CONTRACT §7.2).
        let who = conn.identity.as_user(m.user_id.clone());
        if who.is_human_agent() {
            face.core
                .human_agent_leave(&who, &chat)
                .await
                .map_err(core_err)?;
        }
    }
    Ok(OkAck::OK)
}

/// `handoff:request {chatId}`: the customer asks for a human agent (CONTRACT §7.2).
async fn handoff_request(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<HandoffAck, WireError> {
    let req = PlainRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(None)?;
    let out = face
        .core
        .request_human_agent(&who, &chat)
        .await
        .map_err(core_err)?;
    Ok(HandoffAck {
        ok: true,
        chat_id: chat.chat_id.to_string(),
        is_waiting_for_agent: out.state.is_waiting_for_agent(),
        human_agent_engaged: out.state.human_agent_engaged(),
        ai_engaged: out.state.ai_engaged(),
        seq: out.seq,
    })
}

async fn user_message(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<UserMessageAck, WireError> {
    let req = UserMessageRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(req.user_id.as_deref())?;
    let tools = match &req.tools {
        Some(t) => natter_core::tools::parse_declared(t)?,
        None => Vec::new(),
    };
    let input = UserMessageInput {
        message_id: req.message_id.clone(),
        text: req.text,
        parts: req.parts,
        request_id: req.request_id,
        trace_id: req.common.trace_id,
        tools,
        attachments: req.attachments,
    };
    let out = face
        .core
        .post_user_message(
            &who,
            &Source::new(Some(conn.id.clone()), conn.ip),
            &chat,
            input,
        )
        .await
        .map_err(core_err)?;
    conn.identity.adopt(&who);
    Ok(UserMessageAck {
        ok: true,
        message_id: req.message_id,
        seq: out.seq,
        chat_id: chat.chat_id.to_string(),
        duplicate: out.duplicate,
    })
}

async fn typing(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
    on: bool,
) -> Result<OkAck, WireError> {
    let req = TypingRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(req.user_id.as_deref())?;
    who.check_may_write("type").map_err(core_err)?;
    face.core
        .typing(&who, &conn.id, &chat, on, req.common.trace_id)
        .await;
    conn.identity.adopt(&who);
    Ok(OkAck::OK)
}

async fn abort(face: &Face, conn: &Conn, event: &str, data: &Value) -> Result<AbortAck, WireError> {
    let req = AbortRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    conn.identity
        .resolve(None)?
        .check_may_write("stop a turn")
        .map_err(core_err)?;
    let request_id = face
        .core
        .abort(&chat, req.request_id.as_deref(), req.reason)
        .await
        .map_err(core_err)?;
    Ok(AbortAck {
        ok: true,
        request_id,
    })
}

async fn mark_read(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<MarkReadAck, WireError> {
    let req = MarkReadRequest::parse(event, data, face.core.config().max_read_ids)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(req.user_id.as_deref())?;
    let stored = face
        .core
        .mark_read(
            &who,
            &conn.id,
            &chat,
            req.message_ids,
            req.read_at,
            req.common.trace_id,
        )
        .await
        .map_err(core_err)?;
    conn.identity.adopt(&who);
    Ok(MarkReadAck {
        ok: true,
        seq: stored.seq,
    })
}

/// A member answers a client-run tool call of a chat it is in; the first valid answer wins.
async fn tool_result(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<OkAck, WireError> {
    let req = ToolResultRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    conn.identity
        .resolve(None)?
        .check_may_write("answer tool calls")
        .map_err(core_err)?;
    face.core
        .tool_result(&chat, &req.tool_call_id, req.result, req.error)
        .await
        .map_err(core_err)?;
    Ok(OkAck::OK)
}

/// `reaction:add` / `reaction:remove {chatId?, messageId, emoji}` (CONTRACT §7.3).
async fn reaction(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
    add: bool,
) -> Result<ReactionAck, WireError> {
    let req = ReactionRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(None)?;
    let out = face
        .core
        .react(
            &who,
            &chat,
            req.message_id,
            req.emoji,
            add,
            req.common.trace_id,
        )
        .await
        .map_err(core_err)?;
    Ok(ReactionAck {
        ok: true,
        chat_id: chat.chat_id.to_string(),
        message_id: out.message_id,
        reactions: wire::reaction_list(&out.reactions),
        changed: out.event.is_some(),
        seq: out.event.map(|e| e.seq),
    })
}

/// `chat:end {chatId?, reason?}`: ends the chat as seed 002's `/end` does (CONTRACT §7.4).
async fn chat_end(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<SeqAck, WireError> {
    let req = ChatEndRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(None)?;
    who.check_may_write("end a chat").map_err(core_err)?;
    let ended = face
        .core
        .end_chat(&who, &chat, req.reason)
        .await
        .map_err(core_err)?;
    Ok(SeqAck {
        ok: true,
        chat_id: chat.chat_id.to_string(),
        seq: ended.seq,
    })
}

/// `csat:submit {chatId?, rating, comment?}` (CONTRACT §7.4).
async fn csat_submit(
    face: &Face,
    conn: &Conn,
    event: &str,
    data: &Value,
) -> Result<SeqAck, WireError> {
    let req = CsatSubmitRequest::parse(event, data)?;
    let chat = conn.resolve_chat(req.common.chat_id.as_deref())?;
    let who = conn.identity.resolve(None)?;
    let stored = face
        .core
        .submit_csat(&who, &chat, req.rating, req.comment, req.common.trace_id)
        .await
        .map_err(core_err)?;
    Ok(SeqAck {
        ok: true,
        chat_id: chat.chat_id.to_string(),
        seq: stored.seq,
    })
}
