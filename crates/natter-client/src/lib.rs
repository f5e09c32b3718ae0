//! Rust client SDK for Natter's Socket.IO face (CONTRACT §1), in seed 001's three layers:
//!
//! 1. [`transport`]: a Socket.IO v5 client over Engine.IO v4 on a WebSocket
//!    ([`Socket`]): handshake with an `auth` object, `connect_error` as a typed error, emits
//!    with acks (with a timeout), acks for server events that ask for one, heartbeat, and
//!    reconnection with exponential backoff and full jitter ([`ReconnectPolicy`]).
//! 2. [`service`]: [`SocketService`], typed emit/on/off over an [`EventMap`] ([`ChatEvents`]
//!    for Natter), with join control (`chat:join` after every reconnect, or none).
//! 3. [`chat`]: [`AiChatSocket`], helpers (`send_message`, `typing_start`, `abort`,
//!    `mark_read`, `discover_events` …) and a stream (or callbacks) of [`ChatEvent`]s, with
//!    rejoin by `lastSeq` + `epoch`, replay deduplication and per-turn token text.
//!
//! Why a transport of our own rather than `rust_socketio`: that crate cannot answer a server
//! event's ack request and is no longer maintained. socketioxide's codec crates are the
//! server's half of the protocol (they refuse the OPEN and CONNECT_ERROR packets a client must
//! read), see [`codec`]. Only the WebSocket transport is spoken (no long-polling), and only text
//! packets: a binary packet is reported as [`ClientError::BinaryUnsupported`].
//!
//! ```no_run
//! use futures::StreamExt;
//! use natter_client::{AiChatSocket, ChatEvent, ChatOptions, SendMessage};
//!
//! # async fn run() -> Result<(), natter_client::ClientError> {
//! let options = ChatOptions::new("http://127.0.0.1:4000", "chat-1").user_id("ada");
//! let (chat, mut events) = AiChatSocket::connect(options).await?;
//! chat.send_message(SendMessage::text("Hello!")).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         ChatEvent::AiToken(t) => print!("{}", t.token),
//!         ChatEvent::AiMessage(m) => {
//!             println!("\n[{}]", m.finish_reason);
//!             break;
//!         }
//!         ChatEvent::Closed(error) => return error.map_or(Ok(()), Err),
//!         _ => {}
//!     }
//! }
//! chat.close().await;
//! # Ok(())
//! # }
//! ```

pub mod attachments;
pub mod backoff;
pub mod chat;
pub mod codec;
pub mod error;
pub mod events;
pub mod service;
pub mod stream;
pub mod transport;

pub use attachments::{AttachmentFile, UploadedAttachment};
pub use backoff::ReconnectPolicy;
pub use chat::{
    AiChatSocket, AttachmentId, ChatCallbacks, ChatEvent, ChatEventStream, ChatOptions, SendMessage,
};
pub use error::{ClientError, ConnectErrorKind};
pub use events::ChatEvents;
/// The wire types, re-exported so apps need no separate dependency.
pub use natter_protocol;
pub use service::{
    ClientEvent, EventMap, JoinPayload, ListenerId, ServerEvent, ServiceEvent, ServiceEvents,
    ServiceOptions, SocketService,
};
pub use stream::EventStream;
pub use transport::{
    AckResponder, DisconnectReason, IncomingEvent, Socket, SocketEvent, SocketEvents, SocketOptions,
};
