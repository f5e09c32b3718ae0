//! The Presence seam: who is online in a chat.
//!
//! # What an implementation must guarantee
//! - A user is online while at least one of their connections is in the chat (several tabs
//!   count once).
//! - `join`/`leave` return the online list after the change, so the caller can publish it.
//! - Lists are sorted, so every member sees the same order.

use async_trait::async_trait;

use crate::chat::{ChatKey, ConnectionId};

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    async fn join(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String>;
    async fn leave(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String>;
    async fn online(&self, chat: &ChatKey) -> Vec<String>;
}
