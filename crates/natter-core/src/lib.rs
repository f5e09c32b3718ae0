//! Natter's chat core: chats, the per-chat event log (`seq`, `epoch`), turns (LLM
//! generations), presence and delivery to members.
//!
//! The core reaches the outside only through the seams defined here:
//! [`Store`](store::Store) (durable log), [`Bus`](bus::Bus) (fan-out between nodes and faces),
//! [`Presence`](presence::Presence) and [`Provider`](provider::Provider) (the LLM). Faces
//! (Socket.IO, HTTP, …) call [`ChatCore`] and read a member's [`Feed`](feed::Feed); they never
//! talk to a store or a provider themselves.

pub mod agents;
pub mod attachments;
pub mod bus;
pub mod bus_memory;
pub mod chat;
pub mod config;
pub mod coordinator;
mod core;
pub mod error;
pub mod event;
pub mod feed;
mod handoff;
pub mod limits;
mod message_attachments;
pub mod presence;
pub mod presence_memory;
pub mod processing;
pub mod provider;
pub mod reactions;
pub mod ring;
mod scheduler;
pub mod store;
pub mod store_memory;
pub mod store_transfer;
pub mod telemetry;
pub mod tools;
pub mod trace_context;
mod turn;

pub use crate::core::{
    ChatCore, JoinOutcome, JoinRequest, PostOutcome, Seams, UserMessageInput, new_id,
};
pub use crate::handoff::HandoffOutcome;
pub use chat::{ChatInfo, ChatKey, ConnectionId, Identity, Source};
pub use config::CoreConfig;
pub use error::CoreError;
