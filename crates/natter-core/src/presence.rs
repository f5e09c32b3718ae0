//! The Presence seam: who is online in a chat.
//!
//! # What an implementation must guarantee
//! - A user is online while at least one of their connections is in the chat (several tabs
//!   count once).
//! - `join`/`leave` return the online list after the change, so the caller can publish it.
//! - Lists are sorted, so every member sees the same order.
//! - **A dead node's members leave.** In a cluster, an entry lives only while the node that
//!   added it refreshes it; [`refresh`](Presence::refresh) (called by the core every few
//!   seconds) keeps this node's entries alive and drops expired ones of any node, returning
//!   the chats whose list changed so the core can tell their members.

use async_trait::async_trait;

use crate::chat::{ChatKey, ConnectionId};

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    async fn join(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String>;
    async fn leave(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String>;
    async fn online(&self, chat: &ChatKey) -> Vec<String>;

    /// Keeps this node's entries alive and drops expired ones; returns each chat whose online
    /// list changed, with the new list. One process has nothing to expire.
    async fn refresh(&self) -> Vec<(ChatKey, Vec<String>)> {
        Vec::new()
    }
}
