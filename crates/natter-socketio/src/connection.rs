//! Per-socket state: identity and the chats the socket is in.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use natter_core::limits::Admission;
use natter_core::trace_context::SpanParent;
use natter_core::{ChatKey, ConnectionId};
use natter_protocol::{ErrorCode, WireError};
use tokio_util::sync::CancellationToken;

use crate::flat::Profile;
use crate::identity::ConnIdentity;

/// A socket's membership in one chat: its delivery task stops when `stop` is cancelled.
pub struct Membership {
    pub chat: ChatKey,
    /// The user this socket is in the chat as (for presence).
    pub user_id: Arc<str>,
    pub stop: CancellationToken,
}

pub struct Conn {
    pub id: ConnectionId,
    pub identity: ConnIdentity,
    /// The peer's address (for the per-address limits).
    pub ip: Option<IpAddr>,
    /// Counts this socket against the connection limits until it disconnects.
    pub admission: Mutex<Option<Admission>>,
    /// Cancelled on disconnect (ends the token-expiry watch).
    pub closed: CancellationToken,
    /// How this connection names its events (handshake `profile`).
    pub profile: Profile,
    /// The handshake's valid W3C `traceparent`: each event's span continues it, and a payload
    /// without `traceId` gets its trace id.
    pub trace_parent: Option<SpanParent>,
    /// A socket is in one chat or a few: a list costs an idle socket less than a map.
    chats: Mutex<Vec<Membership>>,
    /// Socket.IO runs handlers concurrently; a client's events are applied in the order sent.
    pub serial: Arc<tokio::sync::Mutex<()>>,
    /// The join the handshake asked for, until it is done. Only this is kept of the
    /// handshake, not its query and auth, which an idle socket would otherwise carry.
    pub handshake_join: Mutex<Option<Box<HandshakeJoin>>>,
    /// The last event queued on this connection: the next one waits for it to finish.
    order_tail: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

/// The chat a handshake asked to join at once (`chatId`, `lastSeq`, … in its query or auth).
pub struct HandshakeJoin {
    pub request: natter_protocol::socketio::JoinRequest,
    /// Held from the handshake until that join is done, so events the client sends right
    /// after connecting wait for it.
    pub serial: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// An event's place in its connection's order (see [`Conn::queue_event`]).
pub struct InOrder {
    previous: Option<tokio::sync::oneshot::Receiver<()>>,
    _done: tokio::sync::oneshot::Sender<()>,
}

impl InOrder {
    /// Waits until every event received before this one has been handled.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
    }
}

impl Conn {
    pub fn new(
        id: ConnectionId,
        identity: ConnIdentity,
        profile: Profile,
        ip: Option<IpAddr>,
    ) -> Self {
        Self {
            id,
            identity,
            ip,
            admission: Mutex::new(None),
            closed: CancellationToken::new(),
            profile,
            trace_parent: None,
            chats: Mutex::new(Vec::new()),
            serial: Arc::new(tokio::sync::Mutex::new(())),
            handshake_join: Mutex::new(None),
            order_tail: Mutex::new(None),
        }
    }

    pub fn with_trace_parent(mut self, trace_parent: Option<SpanParent>) -> Self {
        self.trace_parent = trace_parent;
        self
    }

    /// Takes the next place in this connection's event order. Call it synchronously when the
    /// packet is read (socketioxide spawns each handler as its own task, and tasks do not
    /// start in spawn order); the event then waits for its predecessor with
    /// [`InOrder::wait`], and its successor waits until the returned value is dropped.
    pub fn queue_event(&self) -> InOrder {
        let (done, next) = tokio::sync::oneshot::channel();
        let previous = self
            .order_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(next);
        InOrder {
            previous,
            _done: done,
        }
    }

    fn chats(&self) -> std::sync::MutexGuard<'_, Vec<Membership>> {
        self.chats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chat an event is about: the named one (which must be joined), or the only one.
    pub fn resolve_chat(&self, chat_id: Option<&str>) -> Result<ChatKey, WireError> {
        let chats = self.chats();
        match chat_id {
            Some(id) => index_of(&chats, id)
                .map(|at| chats[at].chat.clone())
                .ok_or_else(|| {
                    WireError::new(
                        ErrorCode::NotJoined,
                        format!("this connection has not joined chat `{id}`; send chat:join first"),
                    )
                }),
            None => {
                let mut it = chats.iter();
                match (it.next(), it.next()) {
                    (Some(m), None) => Ok(m.chat.clone()),
                    (None, _) => Err(WireError::new(
                        ErrorCode::ChatRequired,
                        "`chatId` is required: this connection has joined no chat",
                    )),
                    _ => Err(WireError::new(
                        ErrorCode::ChatRequired,
                        "`chatId` is required: this connection is in several chats",
                    )),
                }
            }
        }
    }

    /// Whether joining `chat_id` would take this socket past `max` chats (a rejoin would not).
    pub fn joins_full(&self, chat_id: &str, max: usize) -> bool {
        let chats = self.chats();
        max > 0 && index_of(&chats, chat_id).is_none() && chats.len() >= max
    }

    /// Records a membership, returning the one it replaces (a rejoin).
    pub fn insert(&self, membership: Membership) -> Option<Membership> {
        let mut chats = self.chats();
        match index_of(&chats, &membership.chat.chat_id) {
            Some(at) => Some(std::mem::replace(&mut chats[at], membership)),
            None => {
                chats.push(membership);
                None
            }
        }
    }

    pub fn remove(&self, chat_id: &str) -> Option<Membership> {
        let mut chats = self.chats();
        let at = index_of(&chats, chat_id)?;
        Some(chats.swap_remove(at))
    }

    /// Removes the membership only if it is still the one with this `stop` token.
    pub fn remove_if_current(&self, chat_id: &str, stop: &CancellationToken) -> bool {
        let mut chats = self.chats();
        let at = index_of(&chats, chat_id).filter(|&at| chats[at].stop.eq(stop));
        if let Some(at) = at {
            chats.swap_remove(at);
        }
        at.is_some()
    }

    pub fn drain(&self) -> Vec<Membership> {
        std::mem::take(&mut *self.chats())
    }
}

/// Where the membership of `chat_id` is in a socket's list (a chat is in it at most once).
fn index_of(chats: &[Membership], chat_id: &str) -> Option<usize> {
    chats.iter().position(|m| &*m.chat.chat_id == chat_id)
}
