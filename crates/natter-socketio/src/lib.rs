//! The Socket.IO face (CONTRACT §1) on socketioxide: maps Socket.IO events to
//! [`ChatCore`](natter_core::ChatCore) calls and a member's [`Feed`](natter_core::feed::Feed)
//! back to events. It holds no chat state of its own beyond which chats a socket has joined.

mod connection;
mod delivery;
mod flat;
mod handlers;
pub mod identity;
mod wire;

use std::sync::Arc;

use natter_core::ChatCore;
use natter_protocol::EventNames;
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

/// Registers the face on the root namespace of `io`.
pub fn attach(io: &SocketIo, core: ChatCore, config: SocketIoConfig) {
    use socketioxide::extract::{SocketRef, TryData};
    use socketioxide::handler::ConnectHandler;

    let routes = handlers::Routes::new(&config.event_names);
    let face = Arc::new(Face {
        core,
        config,
        routes,
    });
    let prepare = {
        let face = face.clone();
        move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
            let face = face.clone();
            // A refused handshake reaches the client as `connect_error` with this message:
            // the bare code for auth and limits (CONTRACT §6.15: `unauthorized`), which
            // clients match on, the reason being logged; otherwise `code: reason`, so the
            // client can match the code and a person can read why.
            async move {
                handlers::prepare(face, socket, auth.ok()).map_err(|e| {
                    use natter_protocol::ErrorCode as C;
                    match e.code {
                        C::Unauthorized | C::Forbidden | C::TooManyConnections => {
                            tracing::info!(code = %e.code, reason = %e.message, "handshake refused");
                            e.code.as_str().to_owned()
                        }
                        _ => format!("{}: {}", e.code, e.message),
                    }
                })
            }
        }
    };
    let connected = move |socket: SocketRef| {
        let face = face.clone();
        async move { handlers::on_connect(face, socket).await }
    };
    io.ns("/", connected.with(prepare));
}
