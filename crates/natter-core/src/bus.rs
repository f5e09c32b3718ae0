//! The Bus seam: fan-out of a chat's events to every member, on every node.
//!
//! # What an implementation must guarantee
//! - **At-most-once, in publish order per publisher.** A message published for a chat
//!   reaches each current subscriber at most once. Subscribers must not assume they see
//!   every message: durable events carry `seq`, and the [`Feed`](crate::feed::Feed) fills
//!   any gap from the store; tokens carry `index` and are refilled from the turn buffer.
//! - **Turn buffer.** The bus keeps the tokens of each chat's running turn (like
//!   Centrifuge's stream history): [`LiveEvent::TurnStarted`] starts an empty buffer,
//!   [`LiveEvent::Token`] appends to it, and a durable event that
//!   [ends the turn](crate::event::EventBody::ends_turn) drops it. Publishing and buffering
//!   are atomic per chat, and [`Bus::subscribe`] returns the buffer as it was when the
//!   subscription started, so a new member misses no token and gets none twice (before
//!   dedupe by index).
//! - **Local delivery.** A subscription yields from a bounded local channel shared by the
//!   node's members of that chat. A subscriber that falls more than the channel's capacity
//!   behind is told how many messages it lost (`Lagged`) and resyncs; publishers never wait
//!   for subscribers.
//! - **No single-process assumption.** A Redis implementation keeps one upstream
//!   subscription per chat per node and feeds the same local channel.
//!
//! [`LiveEvent::TurnStarted`]: crate::event::LiveEvent::TurnStarted
//! [`LiveEvent::Token`]: crate::event::LiveEvent::Token

use std::sync::Arc;

use async_trait::async_trait;

use crate::chat::{ChatKey, ConnectionId, Identity};
use crate::event::{BusMessage, TurnRef};
use crate::ring;

#[derive(Debug, thiserror::Error)]
#[error("bus error: {0}")]
pub struct BusError(pub String);

/// The tokens of a running turn so far; token `i` is `tokens[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSnapshot {
    pub turn: Arc<TurnRef>,
    pub tokens: Vec<Arc<str>>,
}

/// A live subscription to one chat. Dropping it unsubscribes.
pub struct Subscription {
    pub rx: ring::Receiver<Arc<BusMessage>>,
    /// The running turn's buffer at the moment of subscribing.
    pub running_turn: Option<TurnSnapshot>,
    /// Runs when the subscription is dropped, after the receiver is gone.
    pub on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Replace the receiver first so the bus sees the subscriber gone.
        let (_tx, rx) = ring::channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// Why a user's connections should follow a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowReason {
    /// The user created it (another tab shows `new_chat_created`).
    Created,
    /// The user opened it (another tab shows `load_chat_response`).
    Loaded,
    /// The user posted to it, so the reply must reach every tab.
    Posted,
}

/// A message for every connection of one user, on every node: how one tab learns what
/// another did. Chat events themselves still travel on the chat's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    pub chat_id: Arc<str>,
    pub reason: FollowReason,
    /// Follow from here: a connection not yet in the chat replays every event after it.
    pub after_seq: u64,
    /// The connection that acted, if any (it already has what it asked for).
    pub origin: Option<ConnectionId>,
}

/// A live subscription to one user's channel. Dropping it unsubscribes.
pub struct UserSubscription {
    pub rx: ring::Receiver<Arc<UserEvent>>,
    pub on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for UserSubscription {
    fn drop(&mut self) {
        let (_tx, rx) = ring::channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes to every subscriber of the chat, on every node.
    async fn publish(&self, chat: &ChatKey, message: BusMessage) -> Result<(), BusError>;

    /// Subscribes to the chat, returning the running turn's buffer atomically with it.
    async fn subscribe(&self, chat: &ChatKey) -> Result<Subscription, BusError>;

    /// The running turn's buffer now, without subscribing (used to refill after a lag).
    async fn running_turn(&self, chat: &ChatKey) -> Result<Option<TurnSnapshot>, BusError>;

    /// Publishes to every connection of `user` that subscribed, on every node.
    async fn publish_user(&self, user: &Identity, event: UserEvent) -> Result<(), BusError>;

    async fn subscribe_user(&self, user: &Identity) -> Result<UserSubscription, BusError>;

    /// Checks the backend is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), BusError>;

    /// Chats with a channel open on this node (local subscribers or a buffering turn), for
    /// `/metrics`.
    fn local_channels(&self) -> usize {
        0
    }
}
