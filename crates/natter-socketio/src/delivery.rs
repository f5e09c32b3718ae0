//! Writing a member's feed to its socket, and what happens when the socket can't keep up.
//!
//! Each socket has a bounded buffer (socketioxide's counts packets, the own transport's
//! bytes) that refuses a packet when it is full. We never drop an event there: the member's
//! task waits (with backoff) for room, up to `slow_consumer_timeout`. While it waits, the
//! chat's bus channel keeps going without it; once the member is more than the channel's
//! capacity behind, its [`Feed`] resyncs and sends the running turn's missed tokens as one
//! coalesced `ai:token` (`index..=through`). A member whose socket stays full past the
//! timeout, or that falls further behind than the replay limit, gets
//! `error {code: "slow_consumer"}` and is disconnected; it recovers by rejoining with
//! `lastSeq`. Memory per member is bounded and the turn never waits for anyone.
//!
//! Before that bound, a member whose last emit had to wait for room is behind: the tokens
//! already queued for it are merged into one `ai:token` (`index` of the first, `through` of
//! the last, CONTRACT §6.4) of at most [`MAX_MERGED_TOKEN_BYTES`], so it catches up in fewer,
//! larger packets instead of one per token. Only tokens of turns that started after the join
//! are merged (see [`Feed::joined_mid_turn`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use natter_core::ChatKey;
use natter_core::event::LiveEvent;
use natter_core::feed::{Feed, FeedEnd, FeedItem};
use natter_core::telemetry;
use natter_protocol::socketio::ServerErrorEvent;
use natter_protocol::{ErrorCode, EventKey, EventNames, WireError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Face;
use crate::client::{Client, Refused};
use crate::connection::Conn;
use crate::flat::{Outbound, Profile};
use crate::wire;

/// Why an emit did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum EmitFailed {
    /// The socket is gone.
    Closed,
    /// The socket's buffer stayed full past the patience.
    Full,
}

/// Most token text merged into one `ai:token` for a member that is behind.
pub const MAX_MERGED_TOKEN_BYTES: usize = 16 * 1024;

/// Emits, waiting for room in the socket's buffer for at most `patience`.
pub async fn emit<T: Serialize + ?Sized>(
    socket: &Client,
    event: &str,
    payload: &T,
    patience: Duration,
) -> Result<(), EmitFailed> {
    match try_emit(socket, event, payload) {
        Some(done) => done,
        None => wait_for_room(socket, event, payload, patience).await,
    }
}

/// Emits the event `key` as `profile` names it (see [`Outbound`]), waiting for room as
/// [`emit`] does; says whether it had to wait. `chat_id` is the chat the event is about when
/// its payload does not say (the flat profile's `conversation_id`).
pub async fn emit_event<T: Serialize + Sync + ?Sized>(
    socket: &Client,
    profile: Profile,
    names: &EventNames,
    key: EventKey,
    payload: &T,
    chat_id: Option<&str>,
    patience: Duration,
) -> Result<bool, EmitFailed> {
    match emit_or_wait(socket, profile, names, key, payload, chat_id, patience) {
        Ok(done) => done.map(|()| false),
        Err(waiting) => waiting.await.map(|()| true),
    }
}

/// An emit still waiting for room in the socket's buffer.
type Waiting<'a> = Pin<Box<dyn Future<Output = Result<(), EmitFailed>> + Send + 'a>>;

/// [`emit_event`]'s first attempt, outside any future: the payload as the profile shapes it
/// (the flat profile's message is a few hundred bytes) and the wait for room live in a
/// [`Waiting`] box only when the socket is full, not in every member task's future.
fn emit_or_wait<'a, T: Serialize + Sync + ?Sized>(
    socket: &'a Client,
    profile: Profile,
    names: &'a EventNames,
    key: EventKey,
    payload: &'a T,
    chat_id: Option<&'a str>,
    patience: Duration,
) -> Result<Result<(), EmitFailed>, Waiting<'a>> {
    let Some(out) = Outbound::new(profile, key, names.name(key), payload, chat_id) else {
        return Ok(Ok(()));
    };
    match try_emit(socket, out.name(), &out) {
        Some(done) => Ok(done),
        None => Err(Box::pin(async move {
            wait_for_room(socket, out.name(), &out, patience).await
        })),
    }
}

/// Emits the event `key` as `profile` names it, once, without waiting for room (acks'
/// companions: `error`, `meta:events:response`). Lost if the socket's buffer is full.
pub fn send_now<T: Serialize + ?Sized>(
    socket: &Client,
    profile: Profile,
    names: &EventNames,
    key: EventKey,
    payload: &T,
) {
    if let Some(out) = Outbound::new(profile, key, names.name(key), payload, None) {
        let _ = socket.emit(out.name(), &out);
    }
}

/// One emit; `None` if the socket's buffer is full.
fn try_emit<T: Serialize + ?Sized>(
    socket: &Client,
    event: &str,
    payload: &T,
) -> Option<Result<(), EmitFailed>> {
    match socket.emit(event, payload) {
        Ok(()) => Some(Ok(())),
        Err(Refused::Full) => None,
        Err(Refused::Closed) => Some(Err(EmitFailed::Closed)),
    }
}

/// Retries an emit that found the socket's buffer full, with backoff, for up to `patience`.
async fn wait_for_room<T: Serialize + ?Sized>(
    socket: &Client,
    event: &str,
    payload: &T,
    patience: Duration,
) -> Result<(), EmitFailed> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if started.elapsed() >= patience {
            return Err(EmitFailed::Full);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
        if let Some(done) = try_emit(socket, event, payload) {
            return done;
        }
    }
}

/// Why a member is being dropped from a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its socket stayed full, or it fell further behind than the replay limit.
    SlowConsumer,
    /// The store or bus failed while filling its gap.
    Unavailable,
}

/// How long a dropped member's `error` and disconnect packets wait for room in its socket's
/// buffer. A member is dropped because its buffer stayed full, so they usually cannot be
/// queued at once. Longer than Engine.IO's heartbeat (ping every 25 s, 20 s to answer): a
/// client that never reads again is closed by the heartbeat first (its ping cannot be queued
/// either), and one that reads again, however late, gets both, so it is never left connected
/// but silently out of the chat.
pub const DROP_NOTICE_PATIENCE: Duration = Duration::from_secs(60);

/// Takes the member out of the chat's presence, tells the client why, and disconnects it. It
/// recovers by reconnecting and rejoining with `lastSeq`. The `error` and the disconnect are
/// sent by a task of their own that waits (up to [`DROP_NOTICE_PATIENCE`]) for the client to
/// read again, so the caller does not wait for a stalled client.
pub async fn drop_member(
    face: &Face,
    socket: &Client,
    conn: &Conn,
    chat: &ChatKey,
    user_id: &Arc<str>,
    reason: DropReason,
) {
    let (code, message) = match reason {
        DropReason::SlowConsumer => {
            metrics::counter!(telemetry::SLOW_CONSUMERS).increment(1);
            (
                ErrorCode::SlowConsumer,
                format!(
                    "this connection fell too far behind chat `{}`; reconnect and rejoin with lastSeq to catch up",
                    chat.chat_id
                ),
            )
        }
        DropReason::Unavailable => (
            ErrorCode::Unavailable,
            format!(
                "the server could not fill this connection's gap in chat `{}`; reconnect and rejoin with lastSeq",
                chat.chat_id
            ),
        ),
    };
    tracing::info!(socket = %conn.id, chat = %chat, %code, "dropping a member");
    let who = conn.identity.as_user(user_id.clone());
    face.core.leave(&who, &conn.id, chat).await;
    let body = ServerErrorEvent::new(&WireError::new(code, message), None);
    let name = face
        .config
        .event_names
        .name(EventKey::ServerError)
        .to_owned();
    let profile = conn.profile;
    let chat_id = chat.chat_id.clone();
    let socket = socket.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        if let Some(out) =
            Outbound::new(profile, EventKey::ServerError, &name, &body, Some(&chat_id))
            && emit(&socket, out.name(), &out, DROP_NOTICE_PATIENCE).await
                == Err(EmitFailed::Closed)
        {
            return;
        }
        // disconnect() needs one free slot for its packet.
        let mut pause = Duration::from_millis(1);
        while let Err(Refused::Full) = socket.disconnect() {
            if started.elapsed() >= DROP_NOTICE_PATIENCE {
                tracing::warn!(socket = %socket.id(), "could not disconnect a dropped member");
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    });
}

/// Merges the tokens already queued after `first` (same turn, consecutive indexes) into one
/// item. Returns it and the first item that did not fit, if one was read.
async fn merge_ready_tokens(
    feed: &mut Feed,
    first: FeedItem,
) -> (FeedItem, Option<Result<FeedItem, FeedEnd>>) {
    let FeedItem::Tokens {
        turn,
        index,
        mut through,
        text,
    } = first
    else {
        return (first, None);
    };
    let mut merged = String::from(&*text);
    let mut next = None;
    while merged.len() < MAX_MERGED_TOKEN_BYTES {
        match feed.next_if_ready().await {
            Some(Ok(FeedItem::Tokens {
                turn: t,
                index: i,
                through: th,
                text: more,
            })) if t.message_id == turn.message_id && i == through + 1 => {
                merged.push_str(&more);
                through = th;
            }
            other => {
                next = other;
                break;
            }
        }
    }
    let item = FeedItem::Tokens {
        turn,
        index,
        through,
        text: merged.into(),
    };
    (item, next)
}

/// Whether this member is asked for a CSAT answer when the chat ends: CSAT is on and the
/// member's client is a customer's (CONTRACT §7.1, §7.4).
pub fn asks_csat(face: &Face, conn: &Conn, user_id: &Arc<str>) -> bool {
    face.core.config().csat
        && conn.identity.as_user(user_id.clone()).client_type
            == natter_core::chat::ClientType::Customer
}

/// Sends a member's feed to its socket until the member leaves or the socket closes.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice in the member's future"
)]
pub fn run_member(
    face: Arc<Face>,
    socket: Client,
    conn: Arc<Conn>,
    user_id: Arc<str>,
    mut feed: Feed,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send {
    // An async block, not an `async fn`: the function's arguments would be moved into the
    // future's locals and keep their first place too, for the member's whole stay.
    async move {
        let chat = feed.chat().clone();
        let chat_id = chat.chat_id.clone();
        let patience = face.core.config().slow_consumer_timeout;
        let names = &face.config.event_names;
        // Whether the last emit had to wait for room, and an item read ahead while merging.
        let mut behind = false;
        let mut held: Option<Result<FeedItem, FeedEnd>> = None;
        loop {
            let item = match held.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    item = feed.next() => item,
                },
            };
            let item = match item {
                Ok(tokens @ FeedItem::Tokens { .. })
                    if behind && !feed.joined_mid_turn(&tokens) =>
                {
                    // Boxed like the other paths a member that keeps up never takes.
                    let (merged, next) = Box::pin(merge_ready_tokens(&mut feed, tokens)).await;
                    held = next;
                    Ok(merged)
                }
                other => other,
            };
            let outcome = match item {
                Ok(FeedItem::Live(LiveEvent::ChatDeleted { deleted_by })) => {
                    // Boxed, as is `drop_member` below: a cold path's state would otherwise be
                    // part of every member task's future for the member's whole stay.
                    Box::pin(leave_deleted_chat(
                        &face,
                        &socket,
                        &conn,
                        &chat,
                        &user_id,
                        &stop,
                        deleted_by.as_deref(),
                    ))
                    .await;
                    return;
                }
                Ok(item) => {
                    // A customer also gets `csat:request` after `chat:ended` (CONTRACT §7.4).
                    let csat = match &item {
                        FeedItem::Durable(e) if asks_csat(&face, &conn, &user_id) => {
                            wire::csat_request(&chat_id, e)
                        }
                        _ => None,
                    };
                    let mut sent = Ok(());
                    for (key, payload) in wire::feed_item(&chat_id, &item).into_iter().chain(csat) {
                        let chat = Some(&*chat_id);
                        sent = emit_event(
                            &socket,
                            conn.profile,
                            names,
                            key,
                            &*payload,
                            chat,
                            patience,
                        )
                        .await
                        .map(|waited| behind = waited)
                        .map_err(|e| match e {
                            EmitFailed::Closed => None,
                            EmitFailed::Full => Some(DropReason::SlowConsumer),
                        });
                        if sent.is_err() {
                            break;
                        }
                    }
                    sent
                }
                Err(FeedEnd::Closed) => Err(None),
                Err(FeedEnd::TooFarBehind) => Err(Some(DropReason::SlowConsumer)),
                Err(FeedEnd::Unavailable(e)) => {
                    tracing::warn!(error = %e, chat = %chat_id, "feed failed; the member must rejoin");
                    Err(Some(DropReason::Unavailable))
                }
            };
            match outcome {
                Ok(()) => {}
                // The socket is gone: its disconnect handler leaves the chat.
                Err(None) => return,
                Err(Some(reason)) => {
                    if conn.remove_if_current(&chat_id, &stop) {
                        Box::pin(drop_member(&face, &socket, &conn, &chat, &user_id, reason)).await;
                    }
                    return;
                }
            }
        }
    }
}

/// A member's chat was deleted: tells the client (`chat:deleted`, then `error`
/// `not_found`) and leaves the chat, unless the member has already left or rejoined it.
async fn leave_deleted_chat(
    face: &Face,
    socket: &Client,
    conn: &Conn,
    chat: &ChatKey,
    user_id: &Arc<str>,
    stop: &CancellationToken,
    deleted_by: Option<&str>,
) {
    let chat_id = &chat.chat_id;
    if !conn.remove_if_current(chat_id, stop) {
        return;
    }
    let patience = face.core.config().slow_consumer_timeout;
    let names = &face.config.event_names;
    if let Some((key, payload)) = wire::chat_deleted(chat_id, deleted_by) {
        let _ = emit_event(
            socket,
            conn.profile,
            names,
            key,
            &*payload,
            Some(chat_id),
            patience,
        )
        .await;
    }
    let body = ServerErrorEvent::new(
        &WireError::new(
            ErrorCode::NotFound,
            format!("chat `{chat_id}` was deleted; this connection is no longer in it"),
        ),
        None,
    );
    let _ = emit_event(
        socket,
        conn.profile,
        names,
        EventKey::ServerError,
        &body,
        Some(chat_id),
        patience,
    )
    .await;
    let who = conn.identity.as_user(user_id.clone());
    face.core.leave(&who, &conn.id, chat).await;
}
