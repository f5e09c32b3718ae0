//! The Coordinator seam: which node runs a chat's turns, and the control messages that reach
//! that node from the others.
//!
//! # What an implementation must guarantee
//! - **One lease per chat.** [`acquire`](Coordinator::acquire) gives the chat's turn lease to
//!   at most one node at a time; it lasts [`lease_ttl`](Coordinator::lease_ttl) from the last
//!   acquire or [`renew`](Coordinator::renew), so the chats of a node that died are free again
//!   within that time. `renew` and `release` act only on a lease this node holds.
//! - **The lease decides who works, the store's fence decides who may write.** A lease can be
//!   lost without the holder noticing in time (a pause, a partition, Redis losing its data),
//!   so every new owner calls [`Store::claim_turns`](crate::store::Store::claim_turns) and
//!   writes with [`Guard::Fence`](crate::store::Guard::Fence): a stale owner's writes are
//!   refused by the store, whatever the lease says.
//! - **Control is at-most-once.** [`send`](Coordinator::send) hands a [`Control`] to one
//!   node's [`subscribe_control`](Coordinator::subscribe_control) receiver, or loses it (that
//!   node died). Whatever must survive a lost message is stored first: a queued turn is in the
//!   store's turn queue, and an abort of a queued turn is its stored end.
//! - **No single-process assumption** in a cluster implementation (Redis); the in-process one
//!   ([`MemoryCoordinator`]) is for one node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::bus::BusError;
use crate::chat::ChatKey;

/// A message for the node that owns a chat's turns.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// A turn was queued in the chat: the owner reads the queue again.
    TurnQueued { chat: ChatKey },
    /// Stop the chat's running turn (the one `request_id` names, or whichever runs).
    Abort {
        chat: ChatKey,
        request_id: Option<String>,
        reason: Option<String>,
    },
    /// A member's answer to client-run tool call `tool_call_id` (result or error text).
    ToolResult {
        chat: ChatKey,
        tool_call_id: String,
        outcome: Result<serde_json::Value, String>,
    },
}

impl Control {
    pub fn chat(&self) -> &ChatKey {
        match self {
            Self::TurnQueued { chat }
            | Self::Abort { chat, .. }
            | Self::ToolResult { chat, .. } => chat,
        }
    }
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// This node's id, unique in the cluster for the life of the process.
    fn node_id(&self) -> &str;

    /// How long a lease lasts without renewal. Owners renew at a third of it.
    fn lease_ttl(&self) -> Duration;

    /// Whether other nodes share these leases (a cluster). A single node, at startup, ends
    /// every turn its last run left open; a cluster node takes over only chats whose owner is
    /// gone, ending the started turn and running the queued ones.
    fn is_shared(&self) -> bool {
        true
    }

    /// Takes the chat's turn lease if it is free. `true` if this node holds it now (also when
    /// it already did).
    async fn acquire(&self, chat: &ChatKey) -> Result<bool, BusError>;

    /// Extends this node's lease. `false` if this node no longer holds it.
    async fn renew(&self, chat: &ChatKey) -> Result<bool, BusError>;

    /// Gives up this node's lease (no-op if another node holds it).
    async fn release(&self, chat: &ChatKey) -> Result<(), BusError>;

    /// The node holding the chat's lease, if any.
    async fn owner(&self, chat: &ChatKey) -> Result<Option<String>, BusError>;

    /// Sends `control` to `node` (at most once).
    async fn send(&self, node: &str, control: Control) -> Result<(), BusError>;

    /// This node's control messages. Called once, by the core.
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Control>, BusError>;

    /// Checks the backend is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), BusError>;
}

/// One node: every lease is this process's, held until released; control goes to itself.
pub struct MemoryCoordinator {
    node_id: String,
    leases: Mutex<HashSet<ChatKey>>,
    control: Mutex<Option<mpsc::Sender<Control>>>,
}

impl Default for MemoryCoordinator {
    fn default() -> Self {
        Self {
            node_id: format!("local-{}", uuid::Uuid::new_v4().simple()),
            leases: Mutex::new(HashSet::new()),
            control: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Control messages a node has not handled yet; past this a sender's message is dropped
/// (at-most-once), which only delays: stored intents are found by the owner's next read.
pub const CONTROL_CAPACITY: usize = 1024;

#[async_trait]
impl Coordinator for MemoryCoordinator {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn lease_ttl(&self) -> Duration {
        // Never expires in one process: released explicitly.
        Duration::from_secs(3600)
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn acquire(&self, chat: &ChatKey) -> Result<bool, BusError> {
        lock(&self.leases).insert(chat.clone());
        Ok(true)
    }

    async fn renew(&self, chat: &ChatKey) -> Result<bool, BusError> {
        Ok(lock(&self.leases).contains(chat))
    }

    async fn release(&self, chat: &ChatKey) -> Result<(), BusError> {
        lock(&self.leases).remove(chat);
        Ok(())
    }

    async fn owner(&self, chat: &ChatKey) -> Result<Option<String>, BusError> {
        Ok(lock(&self.leases)
            .contains(chat)
            .then(|| self.node_id.clone()))
    }

    async fn send(&self, node: &str, control: Control) -> Result<(), BusError> {
        if node != self.node_id {
            return Err(BusError(format!(
                "no node `{node}` in a single-node server"
            )));
        }
        if let Some(tx) = lock(&self.control).as_ref() {
            // A full queue drops the message, as the contract allows.
            let _ = tx.try_send(control);
        }
        Ok(())
    }

    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Control>, BusError> {
        let (tx, rx) = mpsc::channel(CONTROL_CAPACITY);
        *lock(&self.control) = Some(tx);
        Ok(rx)
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// A coordinator shared by several cores in one process (tests of cluster behaviour without
/// Redis): leases that can expire, and control between the cores' node ids.
pub type SharedCoordinator = Arc<dyn Coordinator>;
