//! Socket.IO v5 on `natter-engineio`: namespaces (with `auth` on connect), events, acks both
//! ways, binary attachments, and the connect timeout. Payloads stay raw JSON text
//! ([`RawValue`]) from the wire to the handler and back.
//!
//! What it is for, and what it does not do yet, is in README.md.

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod packet;

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use bytes::Bytes;
use natter_engineio::{CloseReason, Frame, Handler, Message, SendError, Sid};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::packet::{Kind, Packet};

pub use natter_engineio;

/// What the application does on one namespace.
pub trait Namespace: Send + Sync + 'static {
    /// A client joined the namespace, with the `auth` payload it sent, if any. The connect
    /// reply has been queued (and leaves in a write of its own) before this is called.
    fn on_connect(&self, socket: &Arc<Socket>, auth: Option<&RawValue>);
    /// Decides whether a client may join, before anything is sent: `Err(data)` answers
    /// `CONNECT_ERROR` with `data` (socket.io-client's `connect_error` gets it as `err.data`
    /// when it is an object with a `message`) and the client does not join. `socket` is the
    /// one the client will have if it joins (its id, its [`Handshake`], a place for
    /// [`Socket::set_state`]); once this returns `Ok`, [`Namespace::on_disconnect`] is called
    /// for it exactly once, even if the session ends before the client is told it joined.
    fn authorize(
        &self,
        socket: &Arc<Socket>,
        auth: Option<&RawValue>,
    ) -> Result<(), serde_json::Value> {
        let _ = (socket, auth);
        Ok(())
    }
    fn on_event(&self, socket: &Arc<Socket>, event: Event);
    /// Called once, whatever ended it: the client left the namespace, the connection closed.
    fn on_disconnect(&self, socket: &Arc<Socket>);
}

/// An event a client sent.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    /// The arguments after the name, as JSON text; binary ones are placeholders
    /// (`{"_placeholder":true,"num":N}`) into `attachments`.
    pub args: Vec<Box<RawValue>>,
    pub attachments: Vec<Bytes>,
    /// The id to answer with [`Socket::ack`], if the client asked for an ack.
    pub ack: Option<u64>,
}

/// What a session's handshake request said that the application may want later: copies of
/// the query, the headers [`SocketIo::keep_headers`] names, and the peer's address. The
/// request itself is not kept, so an idle session does not pin hyper's read buffer.
#[derive(Debug, Default)]
pub struct Handshake {
    pub query: Option<Box<str>>,
    pub headers: HeaderMap,
    /// Present when the server is served with `into_make_service_with_connect_info`.
    pub peer: Option<SocketAddr>,
}

/// A client's membership of one namespace.
pub struct Socket {
    id: String,
    namespace: String,
    engine: Arc<natter_engineio::Socket>,
    handshake: Arc<Handshake>,
    /// The application's own state for this socket (set once).
    state: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Socket {
    /// The Socket.IO id (not the Engine.IO session's).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Engine.IO session under it.
    pub fn engine(&self) -> &Arc<natter_engineio::Socket> {
        &self.engine
    }

    /// The session's handshake request, as far as it was kept.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// Stores the application's state for this socket; `false` if some was stored already.
    pub fn set_state<T: Any + Send + Sync>(&self, state: Arc<T>) -> bool {
        self.state.set(state).is_ok()
    }

    /// The state [`Socket::set_state`] stored, if it is a `T`.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        Arc::clone(self.state.get()?).downcast().ok()
    }

    /// Tells the client it was disconnected from the namespace (socket.io-client's
    /// `"io server disconnect"`, after which it does not reconnect by itself), then closes
    /// the session once that is written. Refused, like an emit, when the outbox is full.
    pub fn disconnect(&self) -> Result<(), SendError> {
        let packet = packet::encode(Kind::Disconnect, &self.namespace, None, 0, "");
        self.engine.send_flushed(&[Frame::text(&packet)])?;
        self.engine.close();
        Ok(())
    }

    /// Emits `event` with `args`; `attachments` are the binary arguments that placeholders in
    /// `args` point to. Refused as the session's outbox refuses ([`SendError::Full`]).
    pub fn emit<T: Serialize>(
        &self,
        event: &str,
        args: &[T],
        attachments: &[Bytes],
    ) -> Result<(), SendError> {
        let frames = encode_frames(
            &self.namespace,
            Kind::Event,
            Some(event),
            None,
            args,
            attachments,
        );
        self.engine.send_all(&frames)
    }

    /// Answers the client's event `id`.
    pub fn ack<T: Serialize>(
        &self,
        id: u64,
        args: &[T],
        attachments: &[Bytes],
    ) -> Result<(), SendError> {
        let frames = encode_frames(
            &self.namespace,
            Kind::Ack,
            None,
            Some(id),
            args,
            attachments,
        );
        self.engine.send_all(&frames)
    }

    /// An event encoded once, to send to many sessions of this namespace
    /// (`natter_engineio::Socket::send_all` with the same frames shares their bytes).
    pub fn encode_event<T: Serialize>(namespace: &str, event: &str, args: &[T]) -> Vec<Frame> {
        encode_frames(namespace, Kind::Event, Some(event), None, args, &[])
    }
}

fn encode_frames<T: Serialize>(
    namespace: &str,
    kind: Kind,
    event: Option<&str>,
    id: Option<u64>,
    args: &[T],
    attachments: &[Bytes],
) -> Vec<Frame> {
    // Our own values: serializing them only fails for a map with non-string keys, a bug here.
    let payload = packet::array(event, args).unwrap_or_else(|_| String::from("[]"));
    let kind = match (kind, attachments.is_empty()) {
        (Kind::Event, false) => Kind::BinaryEvent,
        (Kind::Ack, false) => Kind::BinaryAck,
        (kind, _) => kind,
    };
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::text(&packet::encode(
        kind,
        namespace,
        id,
        attachments.len(),
        &payload,
    )));
    frames.extend(attachments.iter().cloned().map(Frame::binary));
    frames
}

/// A binary packet waiting for its attachments.
struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
}

/// One Engine.IO session's Socket.IO state.
#[derive(Default)]
struct Conn {
    handshake: Arc<Handshake>,
    /// The namespaces it joined: usually one, so a list, not a map.
    sockets: Vec<Arc<Socket>>,
    /// Boxed: rare, and every idle session's entry in the shared map would carry its room.
    partial: Option<Box<Partial>>,
    /// Dropped when the session first joins a namespace: stops the connect timeout.
    joined: Option<oneshot::Sender<()>>,
}

impl Conn {
    fn joined_to(&self, namespace: &str) -> Option<&Arc<Socket>> {
        self.sockets.iter().find(|s| s.namespace == namespace)
    }

    fn leave(&mut self, namespace: &str) -> Option<Arc<Socket>> {
        let at = self.sockets.iter().position(|s| s.namespace == namespace)?;
        Some(self.sockets.swap_remove(at))
    }
}

/// The Socket.IO server: an Engine.IO [`Handler`].
pub struct SocketIo {
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    connect_timeout: Duration,
    /// Handshake headers copied for the application ([`Handshake::headers`]).
    kept_headers: Vec<HeaderName>,
    conns: Mutex<HashMap<Sid, Conn>>,
}

impl SocketIo {
    /// `connect_timeout`: how long a session may stay without joining a namespace
    /// (socket.io's default is 45 s).
    pub fn new(connect_timeout: Duration) -> SocketIo {
        SocketIo {
            namespaces: HashMap::new(),
            connect_timeout,
            kept_headers: Vec::new(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `name` (`/` or `/something`).
    pub fn namespace(mut self, name: &str, handler: impl Namespace) -> SocketIo {
        self.namespaces.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Keeps copies of these handshake request headers in every socket's [`Handshake`].
    pub fn keep_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> SocketIo {
        self.kept_headers.extend(names);
        self
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<Sid, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the connection for a malformed packet, as socket.io does.
    fn refuse(&self, engine: &natter_engineio::Socket, why: packet::Malformed) {
        // Debug level: a client's malformed packet is its problem, not the server's.
        tracing::debug!(sid = %engine.sid(), why = why.0, "malformed Socket.IO packet");
        engine.close();
    }

    fn on_packet(
        &self,
        engine: &Arc<natter_engineio::Socket>,
        packet: Packet,
        attachments: Vec<Bytes>,
    ) {
        match packet.kind {
            Kind::Connect => self.connect(engine, packet),
            Kind::Disconnect => {
                let left = self
                    .conns()
                    .get_mut(&engine.sid())
                    .and_then(|c| c.leave(&packet.namespace));
                if let (Some(socket), Some(h)) = (left, self.handler(&packet.namespace)) {
                    h.on_disconnect(&socket);
                }
            }
            Kind::Event | Kind::BinaryEvent => {
                let Some(socket) = self.socket(engine, &packet.namespace) else {
                    return; // an event for a namespace it has not joined: socket.io ignores it
                };
                // `packet::parse` refuses an event it could not split.
                let Some((name, args)) = packet.event else {
                    return;
                };
                let event = Event {
                    name,
                    args,
                    attachments,
                    ack: packet.id,
                };
                if let Some(h) = self.handler(&packet.namespace) {
                    h.on_event(&socket, event);
                }
            }
            // The server asks no acks of clients yet, so an answer is to nothing and dropped.
            // A client's CONNECT_ERROR never gets here: `packet::parse` refuses it.
            Kind::Ack | Kind::BinaryAck | Kind::ConnectError => {}
        }
    }

    fn handler(&self, namespace: &str) -> Option<&Arc<dyn Namespace>> {
        self.namespaces.get(namespace)
    }

    fn socket(&self, engine: &natter_engineio::Socket, namespace: &str) -> Option<Arc<Socket>> {
        self.conns()
            .get(&engine.sid())
            .and_then(|c| c.joined_to(namespace).cloned())
    }

    fn connect(&self, engine: &Arc<natter_engineio::Socket>, packet: Packet) {
        let Some(handler) = self.handler(&packet.namespace) else {
            let reply = packet::encode(
                Kind::ConnectError,
                &packet.namespace,
                None,
                0,
                r#"{"message":"Invalid namespace"}"#,
            );
            let _ = engine.send(Frame::text(&reply));
            return;
        };
        let handshake = {
            let conns = self.conns();
            let Some(conn) = conns.get(&engine.sid()) else {
                return; // the session closed meanwhile
            };
            if conn.joined_to(&packet.namespace).is_some() {
                return; // joined already: socket.io ignores a second connect
            }
            Arc::clone(&conn.handshake)
        };
        let socket = Arc::new(Socket {
            // An id like engine.io's: 20 URL-safe characters.
            id: Sid::random().to_string(),
            namespace: packet.namespace.clone(),
            engine: Arc::clone(engine),
            handshake,
            state: OnceLock::new(),
        });
        if let Err(refusal) = handler.authorize(&socket, packet.data.as_deref()) {
            let reply = packet::encode(
                Kind::ConnectError,
                &packet.namespace,
                None,
                0,
                &refusal.to_string(),
            );
            let _ = engine.send(Frame::text(&reply));
            return;
        }
        let inserted = {
            let mut conns = self.conns();
            match conns.get_mut(&engine.sid()) {
                // Gone (closed meanwhile) or taken (a second connect raced this one).
                None => false,
                Some(conn) if conn.joined_to(&packet.namespace).is_some() => false,
                Some(conn) => {
                    conn.sockets.push(Arc::clone(&socket));
                    conn.joined = None;
                    true
                }
            }
        };
        if !inserted {
            // Authorized, so the application hears of its end (see `Namespace::authorize`).
            handler.on_disconnect(&socket);
            return;
        }
        let reply = packet::encode(
            Kind::Connect,
            &packet.namespace,
            None,
            0,
            &format!(r#"{{"sid":"{}"}}"#, socket.id),
        );
        if engine.send_flushed(&[Frame::text(&reply)]).is_err() {
            return;
        }
        handler.on_connect(&socket, packet.data.as_deref());
    }
}

impl Handler for SocketIo {
    fn on_open(&self, engine: &Arc<natter_engineio::Socket>, request: &axum::http::request::Parts) {
        let mut headers = HeaderMap::new();
        for name in &self.kept_headers {
            for value in request.headers.get_all(name) {
                // `from_bytes` copies the value out of hyper's read buffer.
                if let Ok(copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
                    headers.append(name.clone(), copy);
                }
            }
        }
        let handshake = Arc::new(Handshake {
            query: request.uri.query().map(Box::from),
            headers,
            peer: request
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        });
        // A session that joins no namespace in time is closed (socket.io's connectTimeout).
        // The timer ends early once it joins or closes: both drop `joined`.
        let (joined, waiting) = oneshot::channel::<()>();
        self.conns().insert(
            engine.sid(),
            Conn {
                handshake,
                joined: Some(joined),
                ..Conn::default()
            },
        );
        let engine = Arc::downgrade(engine);
        let timeout = self.connect_timeout;
        tokio::spawn(async move {
            if tokio::time::timeout(timeout, waiting).await.is_err()
                && let Some(engine) = engine.upgrade()
            {
                engine.close();
            }
        });
    }

    fn on_message(&self, engine: &Arc<natter_engineio::Socket>, message: Message) {
        // Parsed before taking the lock every session shares.
        let parsed = match &message {
            Message::Text(text) => Some(packet::parse(text)),
            Message::Binary(_) => None,
        };
        let mut conns = self.conns();
        let Some(conn) = conns.get_mut(&engine.sid()) else {
            return;
        };
        match (message, parsed) {
            (Message::Text(_), Some(parsed)) => {
                if conn.partial.is_some() {
                    drop(conns);
                    return self.refuse(
                        engine,
                        packet::Malformed("text while attachments were expected"),
                    );
                }
                let packet = match parsed {
                    Ok(packet) => packet,
                    Err(why) => {
                        drop(conns);
                        return self.refuse(engine, why);
                    }
                };
                if packet.attachments > 0 {
                    conn.partial = Some(Box::new(Partial {
                        attachments: Vec::with_capacity(packet.attachments.min(16)),
                        packet,
                    }));
                    return;
                }
                drop(conns);
                self.on_packet(engine, packet, Vec::new());
            }
            (Message::Text(_), None) => {}
            (Message::Binary(data), _) => {
                let Some(partial) = conn.partial.as_mut() else {
                    drop(conns);
                    return self
                        .refuse(engine, packet::Malformed("an attachment nobody announced"));
                };
                partial.attachments.push(data);
                if partial.attachments.len() < partial.packet.attachments {
                    return;
                }
                let Some(partial) = conn.partial.take() else {
                    return;
                };
                let Partial {
                    packet,
                    attachments,
                } = *partial;
                drop(conns);
                self.on_packet(engine, packet, attachments);
            }
        }
    }

    fn on_close(&self, engine: &Arc<natter_engineio::Socket>, _reason: CloseReason) {
        let conn = self.conns().remove(&engine.sid());
        for socket in conn.map(|c| c.sockets).unwrap_or_default() {
            if let Some(h) = self.handler(&socket.namespace) {
                h.on_disconnect(&socket);
            }
        }
    }
}
