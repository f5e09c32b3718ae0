//! [`RedisCoordinator`]: per-chat turn leases and control messages between nodes.
//!
//! - A lease is the key `natter:lease:{ORG:CHAT}` holding the owner's node id, taken with
//!   `SET key node NX PX ttl` (10 s by default); renew and release are Lua compare-and-set
//!   on the node id, so a node never extends or deletes another node's lease.
//! - Control messages go to `natter:node:NODE`, a channel per node, in the same versioned
//!   envelope as the bus (`wire.rs`). The node subscribes to its own channel on the shared
//!   pub/sub connection, so it is subscribed again after every reconnect; what is published
//!   while it is away is lost, as the seam allows (at most once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::bus::BusError;
use natter_core::chat::ChatKey;
use natter_core::coordinator::{CONTROL_CAPACITY, Control, Coordinator};
use tokio::sync::mpsc;

use crate::hub::Handler;
use crate::{Shared, now_micros, scripts, wire};

pub struct RedisCoordinator {
    shared: Arc<Shared>,
    ttl: Duration,
    control: Mutex<Option<Arc<ControlHandler>>>,
}

struct ControlHandler {
    tx: mpsc::Sender<Control>,
}

impl Handler for ControlHandler {
    fn on_message(&self, payload: &[u8]) {
        match wire::decode_control(payload) {
            // A full queue drops the message, as the contract allows.
            Ok(control) => {
                if self.tx.try_send(control).is_err() {
                    tracing::warn!("control queue full or closed; a control message was dropped");
                }
            }
            Err(e) => wire::log_skip("control message", &e),
        }
    }
}

impl RedisCoordinator {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let ttl = shared.config.lease_ttl;
        Self {
            shared,
            ttl,
            control: Mutex::new(None),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn lease_script(
        &self,
        op: &'static str,
        script: &redis::Script,
        chat: &ChatKey,
    ) -> Result<bool, BusError> {
        let mut inv = script.prepare_invoke();
        inv.key(self.shared.keys.lease(chat))
            .arg(&*self.shared.node_id)
            .arg(self.ttl_ms());
        let mut conn = self.shared.conn();
        let n: i64 = self
            .shared
            .run(op, async move { inv.invoke_async(&mut conn).await })
            .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    async fn acquire(&self, chat: &ChatKey) -> Result<bool, BusError> {
        self.lease_script("lease_acquire", &scripts::LEASE_ACQUIRE, chat)
            .await
    }

    async fn renew(&self, chat: &ChatKey) -> Result<bool, BusError> {
        self.lease_script("lease_renew", &scripts::LEASE_RENEW, chat)
            .await
    }

    async fn release(&self, chat: &ChatKey) -> Result<(), BusError> {
        self.lease_script("lease_release", &scripts::LEASE_RELEASE, chat)
            .await
            .map(|_| ())
    }

    async fn owner(&self, chat: &ChatKey) -> Result<Option<String>, BusError> {
        let key = self.shared.keys.lease(chat);
        let mut conn = self.shared.conn();
        self.shared
            .run("lease_owner", async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await
    }

    async fn send(&self, node: &str, control: Control) -> Result<(), BusError> {
        let payload = wire::encode_control(&self.shared.node_id, now_micros(), &control)
            .map_err(|e| BusError(format!("encoding a control message: {e}")))?;
        let channel = self.shared.keys.node_channel(node);
        let mut conn = self.shared.conn();
        let receivers: i64 = self
            .shared
            .run("publish_control", async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if receivers == 0 {
            tracing::debug!(node, "control message reached no node (it may be gone)");
        }
        Ok(())
    }

    /// Never fails: the channel is subscribed whenever Redis is reachable, now or later.
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Control>, BusError> {
        let (tx, rx) = mpsc::channel(CONTROL_CAPACITY);
        let handler = Arc::new(ControlHandler { tx });
        let channel = self.shared.keys.node_channel(&self.shared.node_id);
        // A second call replaces the first receiver's route.
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(handler.clone());
        self.shared.hub.add_route(&channel, handler);
        // Wait briefly so a message sent right after this returns is not lost; a Redis that
        // is down now is not an error (the subscription comes with the connection).
        let _ = self.shared.hub.wait_active(&channel).await;
        Ok(rx)
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.shared.ping().await
    }
}

impl Drop for RedisCoordinator {
    fn drop(&mut self) {
        let handler = self
            .control
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handler) = handler {
            let handler: Arc<dyn Handler> = handler;
            let channel = self.shared.keys.node_channel(&self.shared.node_id);
            self.shared.hub.remove_route(&channel, &handler);
        }
    }
}
