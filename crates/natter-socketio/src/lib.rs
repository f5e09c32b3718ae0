//! The Socket.IO face (CONTRACT §1), on socketioxide or on the project's own transport
//! (`natter-socketio-transport`; see [`client`]): maps Socket.IO events to
//! [`ChatCore`](natter_core::ChatCore) calls and a member's [`Feed`](natter_core::feed::Feed)
//! back to events. It holds no chat state of its own beyond which chats a socket has joined.

mod client;
mod connection;
mod delivery;
mod flat;
mod handlers;
pub mod identity;
mod wire;

use std::sync::Arc;

use natter_core::ChatCore;
use natter_protocol::EventNames;
use serde_json::value::RawValue;
use socketioxide::SocketIo;

/// Settings of the Socket.IO face.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// The wire name of each event (remappable).
    pub event_names: EventNames,
    /// Handshake fields (query or auth) that name a chat to join at once, e.g. `consultationId`.
    /// `chatId` is always one.
    pub chat_key_fields: Vec<String>,
    /// Checks handshake tokens (auth on), or lets identity hints through (auth off).
    pub auth: natter_auth::Authenticator,
    /// Most chats one socket may be in at once; 0: no limit.
    pub max_joins_per_socket: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            event_names: EventNames::default(),
            chat_key_fields: vec!["chatId".into()],
            auth: natter_auth::Authenticator::off(),
            max_joins_per_socket: 100,
        }
    }
}

pub(crate) struct Face {
    pub core: ChatCore,
    pub config: SocketIoConfig,
    pub routes: handlers::Routes,
}

impl Face {
    fn new(core: ChatCore, config: SocketIoConfig) -> Arc<Face> {
        let routes = handlers::Routes::new(&config.event_names);
        Arc::new(Face {
            core,
            config,
            routes,
        })
    }
}

/// Registers the face on the root namespace of socketioxide's `io`.
pub fn attach(io: &SocketIo, core: ChatCore, config: SocketIoConfig) {
    use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
    use socketioxide::handler::ConnectHandler;

    let face = Face::new(core, config);
    let prepare = {
        let face = face.clone();
        move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
            let face = face.clone();
            async move {
                let parts = socket.req_parts();
                let request = handlers::HandshakeRequest {
                    id: socket.id.to_string(),
                    query: parts.uri.query(),
                    headers: &parts.headers,
                    ip: parts
                        .extensions
                        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                        .map(|c| c.0.ip()),
                    auth: auth.ok(),
                };
                let conn =
                    handlers::prepare(&face, request).map_err(|e| handlers::refusal_message(&e))?;
                socket.extensions.insert(conn);
                // One fallback handler routes every client event by name through the face's
                // shared table: one closure per socket instead of one per event name (15
                // boxed handlers under their own `String` keys on every idle socket, 18 on a
                // flat one: 2.4 KiB, issue 15).
                let on_event = face.clone();
                socket.on_fallback(
                    move |socket: SocketRef,
                          Event(event): Event,
                          TryData(data): TryData<serde_json::Value>,
                          ack: AckSender| {
                        let client = client::Client::Socketioxide(socket);
                        let ack = Some(client::Ack::Socketioxide(ack));
                        handlers::receive(on_event.clone(), client, event, data.ok(), ack)
                    },
                );
                let on_disconnect = face.clone();
                socket.on_disconnect(move |socket: SocketRef| {
                    let conn = socket.extensions.get::<Arc<connection::Conn>>();
                    handlers::disconnected(on_disconnect.clone(), conn)
                });
                Ok::<(), String>(())
            }
        }
    };
    let connected = move |socket: SocketRef| {
        let face = face.clone();
        async move { handlers::on_connect(face, client::Client::Socketioxide(socket)).await }
    };
    io.ns("/", connected.with(prepare));
}

/// The face as the root namespace of the project's own transport
/// (`natter_socketio_transport::SocketIo::namespace("/", ...)`). Its `SocketIo` must keep the
/// `authorization` and `traceparent` headers ([`HANDSHAKE_HEADERS`]).
pub fn namespace(
    core: ChatCore,
    config: SocketIoConfig,
) -> impl natter_socketio_transport::Namespace {
    OwnNamespace(Face::new(core, config))
}

/// The handshake request headers the face reads: a bearer token, a W3C trace parent.
pub const HANDSHAKE_HEADERS: [axum::http::HeaderName; 2] = [
    axum::http::header::AUTHORIZATION,
    axum::http::HeaderName::from_static(natter_core::trace_context::TRACEPARENT),
];

struct OwnNamespace(Arc<Face>);

impl natter_socketio_transport::Namespace for OwnNamespace {
    fn authorize(
        &self,
        socket: &Arc<natter_socketio_transport::Socket>,
        auth: Option<&RawValue>,
    ) -> Result<(), serde_json::Value> {
        let handshake = socket.handshake();
        let request = handlers::HandshakeRequest {
            id: socket.id().to_owned(),
            query: handshake.query.as_deref(),
            headers: &handshake.headers,
            ip: handshake.peer.map(|p| p.ip()),
            // Not an object (or not JSON at all): as socketioxide's `TryData`, no auth.
            auth: auth.and_then(|a| serde_json::from_str(a.get()).ok()),
        };
        let conn = handlers::prepare(&self.0, request)
            .map_err(|e| serde_json::json!({ "message": handlers::refusal_message(&e) }))?;
        socket.set_state(conn);
        Ok(())
    }

    fn on_connect(
        &self,
        socket: &Arc<natter_socketio_transport::Socket>,
        _auth: Option<&RawValue>,
    ) {
        let client = client::Client::Own(Arc::clone(socket));
        tokio::spawn(handlers::on_connect(self.0.clone(), client));
    }

    fn on_event(
        &self,
        socket: &Arc<natter_socketio_transport::Socket>,
        event: natter_socketio_transport::Event,
    ) {
        // The first argument is the payload. It is valid JSON (the transport parsed it); one
        // nested past serde_json's depth limit reads as none, and the event is refused as
        // having no payload, as socketioxide's `TryData` does.
        let data = event
            .args
            .first()
            .and_then(|a| serde_json::from_str(a.get()).ok());
        let ack = event.ack.map(|id| client::Ack::Own(Arc::clone(socket), id));
        let client = client::Client::Own(Arc::clone(socket));
        // `receive` takes the event's place in order now, as the packet is read.
        tokio::spawn(handlers::receive(
            self.0.clone(),
            client,
            event.name,
            data,
            ack,
        ));
    }

    fn on_disconnect(&self, socket: &Arc<natter_socketio_transport::Socket>) {
        let conn = socket.state::<connection::Conn>();
        tokio::spawn(handlers::disconnected(self.0.clone(), conn));
    }
}
