//! Natter's cluster seams on Redis: [`RedisBus`] ([`Bus`](natter_core::bus::Bus)),
//! [`RedisPresence`] ([`Presence`](natter_core::presence::Presence)) and [`RedisCoordinator`]
//! ([`Coordinator`](natter_core::coordinator::Coordinator)).
//!
//! One [`RedisNode`] is one Natter process in a cluster: a fresh node id (a UUID), one
//! multiplexed command connection (redis-rs's `ConnectionManager`, which reconnects by itself)
//! and one dedicated pub/sub connection supervised by this crate (see `hub.rs`: it reconnects,
//! re-subscribes every channel still wanted and tells the bus which chats lost messages).
//! The three seams share them:
//!
//! ```no_run
//! # async fn open() -> Result<(), natter_core::bus::BusError> {
//! use natter_bus_redis::{RedisConfig, RedisNode};
//! let node = RedisNode::connect(RedisConfig::new("redis://127.0.0.1:6379/")).await?;
//! let (bus, presence, coordinator) = (node.bus(), node.presence(), node.coordinator());
//! # let _ = (bus, presence, coordinator);
//! # Ok(()) }
//! ```
//!
//! Keys, channels, scripts, the wire format and what happens when Redis goes away are
//! described in this crate's README.

mod bus;
mod coordinator;
mod hub;
mod keys;
mod presence;
mod scripts;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use natter_core::bus::BusError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use bus::RedisBus;
pub use coordinator::RedisCoordinator;
pub use presence::RedisPresence;

use crate::hub::Hub;
use crate::keys::Keys;

/// Metric names (Prometheus), next to natter-core's `telemetry` names.
pub mod telemetry {
    /// Redis commands and script calls sent, by `op`.
    pub const REDIS_OPS: &str = "natter_bus_redis_ops_total";
    /// Redis commands that failed or timed out, and messages that could not be decoded, by `op`.
    pub const REDIS_ERRORS: &str = "natter_bus_redis_errors_total";
    /// Time from publish (the envelope's timestamp) to delivery into this node's local channel.
    pub const BUS_LAG: &str = "natter_bus_lag_seconds";

    /// Registers descriptions so `/metrics` explains itself.
    pub fn describe() {
        use metrics::{Unit, describe_counter, describe_histogram};
        describe_counter!(REDIS_OPS, "Redis commands and script calls sent, by op");
        describe_counter!(
            REDIS_ERRORS,
            "Redis commands that failed or timed out and undecodable messages, by op"
        );
        describe_histogram!(
            BUS_LAG,
            Unit::Seconds,
            "Time from publish to delivery into this node's local channel"
        );
    }
}

/// Settings of a Redis cluster node.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/[db]`.
    pub url: String,
    /// First segment of every key and channel, so several deployments can share one Redis.
    pub prefix: String,
    /// Messages one member may fall behind in a chat's local channel before it lags.
    pub bus_capacity: usize,
    /// The same for a user's channel.
    pub user_capacity: usize,
    /// A running turn's buffer expires this long after its last write (a dead producer's
    /// buffer goes away by itself).
    pub turn_buffer_ttl: Duration,
    /// Tokens kept in one turn's buffer; later tokens are still published, not buffered.
    pub max_turn_tokens: usize,
    /// Most messages of one chat sent in one script call / one PUBLISH.
    pub batch_max: usize,
    /// Longest wait for one Redis operation (publish, read, subscribe) before it fails.
    pub op_timeout: Duration,
    /// A presence entry lives this long unless its node refreshes it.
    pub presence_ttl: Duration,
    /// How long a chat's turn lease lasts without renewal.
    pub lease_ttl: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "natter".into(),
            bus_capacity: 256,
            user_capacity: 64,
            turn_buffer_ttl: Duration::from_secs(300),
            max_turn_tokens: 65_536,
            batch_max: 64,
            op_timeout: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(20),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

/// Counters of one node, readable in tests and benchmarks (the same numbers also go to the
/// metrics above).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Redis commands and script calls sent (publishes, reads, presence, leases, (un)subscribes,
    /// pings).
    pub ops: u64,
    /// Failed or timed-out operations.
    pub errors: u64,
    /// Publish calls to chats (`Bus::publish`).
    pub published: u64,
    /// Token events among them.
    pub tokens_published: u64,
    /// Script calls or PUBLISHes that carried chat messages (one per batch).
    pub batches: u64,
    /// Token events that arrived on this node's chat subscriptions.
    pub tokens_received: u64,
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
    published: AtomicU64,
    tokens_published: AtomicU64,
    batches: AtomicU64,
    tokens_received: AtomicU64,
}

impl Counters {
    fn op(&self, op: &'static str) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::REDIS_OPS, "op" => op).increment(1);
    }

    fn error(&self, op: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::REDIS_ERRORS, "op" => op).increment(1);
    }

    fn snapshot(&self) -> Stats {
        Stats {
            ops: self.ops.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            tokens_published: self.tokens_published.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            tokens_received: self.tokens_received.load(Ordering::Relaxed),
        }
    }
}

/// What the three seams of one node share.
pub(crate) struct Shared {
    config: RedisConfig,
    node_id: Arc<str>,
    conn: ConnectionManager,
    hub: Hub,
    counters: Arc<Counters>,
    keys: Keys,
}

impl Shared {
    /// Runs one Redis operation with the node's timeout, counting it and its failure.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, BusError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.counters.op(op);
        match tokio::time::timeout(self.config.op_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.counters.error(op);
                Err(BusError(format!("redis {op}: {e}")))
            }
            Err(_) => {
                self.counters.error(op);
                Err(BusError(format!(
                    "redis {op}: no answer within {:?}",
                    self.config.op_timeout
                )))
            }
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// PINGs over the command connection and checks the pub/sub connection is up.
    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let _: String = self
            .run("ping", async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        if !self.hub.is_connected() {
            return Err(BusError("redis pub/sub connection is down".into()));
        }
        Ok(())
    }
}

/// One Natter process in a Redis cluster; hands out its [`RedisBus`], [`RedisPresence`] and
/// [`RedisCoordinator`], which share its connections and node id.
#[derive(Clone)]
pub struct RedisNode {
    shared: Arc<Shared>,
    bus: Arc<RedisBus>,
}

impl RedisNode {
    /// Opens the connections (lazily: an unreachable Redis is not an error here, `ping` and
    /// every operation report it, and the connections come up when Redis does). Must be
    /// called inside a Tokio runtime. Fails only on an invalid URL.
    pub async fn connect(config: RedisConfig) -> Result<Self, BusError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BusError(format!("invalid redis URL: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout.min(Duration::from_secs(1))))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| BusError(format!("redis connection: {e}")))?;
        let counters = Arc::new(Counters::default());
        let hub = Hub::start(client, counters.clone(), config.op_timeout);
        let shared = Arc::new(Shared {
            node_id: format!("node-{}", uuid::Uuid::new_v4().simple()).into(),
            keys: Keys::new(&config.prefix),
            config,
            conn,
            hub,
            counters,
        });
        let bus = Arc::new(RedisBus::new(shared.clone()));
        Ok(Self { shared, bus })
    }

    /// This process's id in the cluster (fresh per node).
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn bus(&self) -> Arc<RedisBus> {
        self.bus.clone()
    }

    pub fn presence(&self) -> Arc<RedisPresence> {
        Arc::new(RedisPresence::new(self.shared.clone()))
    }

    pub fn coordinator(&self) -> Arc<RedisCoordinator> {
        Arc::new(RedisCoordinator::new(self.shared.clone()))
    }

    /// This node's counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Channels this node is subscribed to upstream right now (chats, users, its control
    /// channel).
    pub fn upstream_channels(&self) -> usize {
        self.shared.hub.active_channels()
    }

    /// Whether the pub/sub connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.hub.is_connected()
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        self.shared.ping().await
    }
}

/// Unix time in microseconds (the envelope's publish timestamp).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
