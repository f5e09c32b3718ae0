//! [`RedisBus`]: chat and user channels on Redis pub/sub, the running turn's tokens in a Redis
//! Stream, both updated by one script per batch.
//!
//! # Publishing
//! Each chat has a *lane* on this node: publishes queue there in call order and one task
//! sends them. An idle lane sends the first message at once; whatever queues up while a call
//! is in flight goes out in the next call, up to `batch_max` messages: one script call (or a
//! plain PUBLISH when the batch changes no turn buffer) and one PUBLISH of the whole batch.
//! Token events return as soon as they are queued (while the lane is healthy and not too
//! long), so a turn's tokens batch under load; every other event waits for its call and
//! returns its error. A failed call marks the lane unhealthy, so the next publish waits for
//! its own result and reports the outage.
//!
//! # Subscribing
//! One upstream subscription per chat per node feeds a bounded `ring` channel shared by
//! the node's members of the chat. The node also keeps a *mirror* of the chat's turn buffer,
//! built from the stream once and then from the messages it receives (they arrive in script
//! order on one connection, and the mirror applies the script's rules), so a second member
//! subscribes atomically with its snapshot, in memory, as with `MemoryBus`. A member that
//! lagged refills from the mirror too (`running_turn`), once the node's own publishes so far
//! are back in it; only a chat the node does not follow live is read from the stream.
//!
//! The first member of a chat on the node subscribes upstream, waits for the confirmation,
//! and only then reads the turn buffer (`READ_TURN`), which also returns the chat's buffer
//! offset. Messages that arrive in between are held back; then every batch whose offset the
//! read already reflects, held back or arriving later (it travels on the pub/sub connection,
//! the read's reply on the command connection, so either may come first), loses its buffer
//! events (its tokens, start and unstored end are in the snapshot, or were dropped with it),
//! and the rest is delivered. So a member gets each token
//! either in its snapshot or live, never both, and never a `TurnStarted` of a turn its
//! snapshot already holds.
//!
//! # When Redis goes away
//! Publishes fail (within `op_timeout`). The pub/sub supervisor reconnects, re-subscribes
//! every chat, and each chat reads its buffer again and makes every local member lag (the
//! only signal a `ring` receiver has), so feeds reload from the store and the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use natter_core::bus::{Bus, BusError, Subscription, TurnSnapshot, UserEvent, UserSubscription};
use natter_core::chat::{ChatKey, Identity};
use natter_core::event::{BusMessage, LiveEvent, TurnRef};
use natter_core::ring;
use redis::Value;
use tokio::sync::{oneshot, watch};

use crate::hub::Handler;
use crate::{Shared, now_micros, scripts, wire};

/// Most messages held back while a chat's first subscription reads its buffer.
const PENDING_MAX: usize = 16_384;
/// How often a chat whose buffer read failed after a reconnect tries again.
const RESYNC_RETRY: Duration = Duration::from_millis(200);

/// A chat's local channel capacity.
fn chat_capacity(config: &crate::RedisConfig) -> usize {
    config.bus_capacity.max(16)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Redis [`Bus`] of one node (see the module docs and the crate README).
pub struct RedisBus {
    inner: Arc<BusInner>,
}

/// A user's channel is keyed by org and user, whatever scopes their tokens carry.
type UserKey = (Arc<str>, Arc<str>);

struct BusInner {
    shared: Arc<Shared>,
    chats: Mutex<HashMap<ChatKey, Arc<ChatEntry>>>,
    users: Mutex<HashMap<UserKey, Arc<UserEntry>>>,
    lanes: Mutex<HashMap<ChatKey, Arc<Lane>>>,
}

impl RedisBus {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(BusInner {
                shared,
                chats: Mutex::new(HashMap::new()),
                users: Mutex::new(HashMap::new()),
                lanes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Chats with local subscribers on this node.
    pub fn subscribed_chats(&self) -> usize {
        lock(&self.inner.chats).len()
    }

    /// This node's id (in every envelope it publishes).
    pub fn node_id(&self) -> &str {
        &self.inner.shared.node_id
    }
}

// ---------------------------------------------------------------------------------------
// The turn buffer mirror

#[derive(Clone)]
struct Mirror {
    turn: Arc<TurnRef>,
    tokens: Vec<Arc<str>>,
    touched: Instant,
}

/// Applies one message's buffer effect with the publish script's rules.
fn apply(mirror: &mut Option<Mirror>, message: &BusMessage, max_tokens: usize) {
    let now = Instant::now();
    match message {
        BusMessage::Live {
            event: LiveEvent::TurnStarted { turn },
            ..
        } => {
            *mirror = Some(Mirror {
                turn: turn.clone(),
                tokens: Vec::new(),
                touched: now,
            });
        }
        BusMessage::Live {
            event: LiveEvent::Token { turn, index, text },
            ..
        } => {
            if let Some(m) = mirror.as_mut()
                && m.turn.message_id == turn.message_id
            {
                if m.tokens.len() as u64 == *index && m.tokens.len() < max_tokens {
                    m.tokens.push(text.clone());
                }
                m.touched = now;
            }
        }
        BusMessage::Live {
            event: LiveEvent::TurnEndUnstored { turn, .. },
            ..
        } if mirror
            .as_ref()
            .is_some_and(|m| m.turn.message_id == turn.message_id) =>
        {
            *mirror = None;
        }
        BusMessage::Durable { event, .. } => {
            if let Some(ended) = event.body.ends_turn()
                && mirror
                    .as_ref()
                    .is_some_and(|m| &*m.turn.message_id == ended)
            {
                *mirror = None;
            }
        }
        _ => {}
    }
}

/// Whether the message's only effect on a member that holds the buffer is the buffer itself
/// (so it is dropped when the member's snapshot already reflects it).
fn buffer_only(message: &BusMessage) -> bool {
    matches!(
        message,
        BusMessage::Live {
            event: LiveEvent::TurnStarted { .. }
                | LiveEvent::Token { .. }
                | LiveEvent::TurnEndUnstored { .. },
            ..
        }
    )
}

/// The buffer operations of a message, for the publish script.
fn buffer_ops(message: &BusMessage, ops: &mut Vec<Vec<u8>>) {
    match message {
        BusMessage::Live {
            event: LiveEvent::TurnStarted { turn },
            ..
        } => {
            ops.push(b"S".to_vec());
            ops.push(turn.message_id.as_bytes().to_vec());
            ops.push(wire::encode_turn(turn).into_bytes());
        }
        BusMessage::Live {
            event: LiveEvent::Token { turn, index, text },
            ..
        } => {
            ops.push(b"T".to_vec());
            ops.push(turn.message_id.as_bytes().to_vec());
            ops.push(index.to_string().into_bytes());
            ops.push(text.as_bytes().to_vec());
        }
        BusMessage::Live {
            event: LiveEvent::TurnEndUnstored { turn, .. },
            ..
        } => {
            ops.push(b"E".to_vec());
            ops.push(turn.message_id.as_bytes().to_vec());
        }
        BusMessage::Durable { event, .. } => {
            if let Some(ended) = event.body.ends_turn() {
                ops.push(b"E".to_vec());
                ops.push(ended.as_bytes().to_vec());
            }
        }
        _ => {}
    }
}

fn is_token(message: &BusMessage) -> bool {
    matches!(
        message,
        BusMessage::Live {
            event: LiveEvent::Token { .. },
            ..
        }
    )
}

// ---------------------------------------------------------------------------------------
// Chat entries: one per chat with local subscribers

enum Phase {
    /// Not subscribed yet.
    Idle,
    /// Subscribed (or subscribing); messages are held until the buffer is read.
    Syncing {
        pending: Vec<wire::ChatBatch>,
        overflowed: bool,
    },
    /// Delivering, with the mirror up to date.
    Live,
}

struct ChatState {
    phase: Phase,
    mirror: Option<Mirror>,
    /// Messages were lost (a reconnect): every receiver must lag once delivery resumes.
    lag_pending: bool,
    /// Bumped on every disconnect, so a sync that straddles one is redone.
    generation: u64,
    /// The highest buffer offset the mirror (and every snapshot handed out) reflects. A
    /// batch at or below it was published before the buffer read: it may still arrive (it
    /// travels on another connection than the read's reply), and its buffer events are
    /// dropped rather than delivered twice.
    floor: u64,
}

struct ChatEntry {
    chat: ChatKey,
    channel: String,
    tx: ring::Sender<Arc<BusMessage>>,
    state: Mutex<ChatState>,
    /// Serializes syncs (a first subscription, a resync after a reconnect).
    setup: tokio::sync::Mutex<()>,
    /// Subscriptions holding the entry, counted under the chats map's lock.
    refs: AtomicUsize,
    /// The highest buffer offset the mirror reflects, and the highest this node published
    /// (so a subscriber here sees the node's own earlier publishes in its snapshot).
    applied_off: watch::Sender<u64>,
    published_off: AtomicU64,
    bus: Weak<BusInner>,
}

impl ChatEntry {
    fn state(&self) -> MutexGuard<'_, ChatState> {
        lock(&self.state)
    }

    fn snapshot(mirror: &Option<Mirror>, ttl: Duration) -> Option<TurnSnapshot> {
        mirror
            .as_ref()
            .filter(|m| m.touched.elapsed() < ttl)
            .map(|m| TurnSnapshot {
                turn: m.turn.clone(),
                tokens: m.tokens.clone(),
            })
    }

    /// Delivers a batch while live, updating the mirror; a batch the mirror already
    /// reflects (see `floor`) loses its buffer events.
    fn deliver(&self, st: &mut ChatState, batch: wire::ChatBatch, max_tokens: usize) {
        let reflected = batch.off.is_some_and(|o| o <= st.floor);
        for m in batch.messages {
            if reflected {
                if buffer_only(&m) {
                    continue;
                }
            } else {
                apply(&mut st.mirror, &m, max_tokens);
            }
            let _ = self.tx.send(m);
        }
        if let Some(off) = batch.off
            && off > st.floor
        {
            st.floor = off;
            self.applied_off.send_replace(off);
        }
    }
}

impl Handler for ChatEntry {
    fn on_message(&self, payload: &[u8]) {
        let batch = match wire::decode_chat(payload) {
            Ok(b) => b,
            Err(e) => {
                wire::log_skip("chat batch", &e);
                return;
            }
        };
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        let lag = (now_micros() - batch.ts).max(0) as f64 / 1e6;
        metrics::histogram!(crate::telemetry::BUS_LAG).record(lag);
        let tokens = batch.messages.iter().filter(|m| is_token(m)).count() as u64;
        bus.shared
            .counters
            .tokens_received
            .fetch_add(tokens, Ordering::Relaxed);
        let max_tokens = bus.shared.config.max_turn_tokens;
        let mut st = self.state();
        match &mut st.phase {
            Phase::Live => self.deliver(&mut st, batch, max_tokens),
            Phase::Syncing {
                pending,
                overflowed,
            } => {
                if pending.len() < PENDING_MAX {
                    pending.push(batch);
                } else {
                    *overflowed = true;
                }
            }
            Phase::Idle => {}
        }
    }

    fn on_disconnect(&self) {
        let mut st = self.state();
        st.generation += 1;
        st.mirror = None;
        st.lag_pending = true;
        st.phase = Phase::Syncing {
            pending: Vec::new(),
            overflowed: false,
        };
    }

    fn on_resubscribed(&self) {
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        let Some(entry) = lock(&bus.chats).get(&self.chat).cloned() else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&entry), self) {
            return;
        }
        tokio::spawn(async move { resync(bus, entry).await });
    }
}

/// After a reconnect: reads the buffer again, makes the members lag, goes live.
async fn resync(bus: Arc<BusInner>, entry: Arc<ChatEntry>) {
    let _setup = entry.setup.lock().await;
    loop {
        let generation = {
            let st = entry.state();
            if matches!(st.phase, Phase::Live) || entry.refs.load(Ordering::Acquire) == 0 {
                return;
            }
            st.generation
        };
        if !bus.shared.hub.is_connected() {
            // The next reconnect starts another resync.
            return;
        }
        match bus.read_turn(&entry.chat).await {
            Ok(read) => {
                if bus.finish_sync(&entry, read, generation, false).is_ok() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(chat = %entry.chat, error = %e, "rereading a turn buffer failed");
            }
        }
        tokio::time::sleep(RESYNC_RETRY).await;
    }
}

/// What `READ_TURN` returned.
struct ReadTurn {
    off: u64,
    snapshot: Option<TurnSnapshot>,
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn parse_read(chat: &ChatKey, value: Value) -> Result<ReadTurn, BusError> {
    let bad = |what: &str| BusError(format!("unexpected turn buffer reply: {what}"));
    let Value::Array(parts) = value else {
        return Err(bad("not an array"));
    };
    let mut parts = parts.into_iter();
    let off = match parts.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        Some(v) => bytes(&v)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        None => return Err(bad("empty")),
    };
    let turn = match parts.next() {
        Some(v) => match bytes(&v) {
            Some(b) => match wire::decode_turn(b) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    wire::log_skip("turn hash", &e);
                    None
                }
            },
            None => None,
        },
        None => None,
    };
    let Some(turn) = turn else {
        return Ok(ReadTurn {
            off,
            snapshot: None,
        });
    };
    let mut tokens: Vec<Arc<str>> = Vec::new();
    if let Some(Value::Array(entries)) = parts.next() {
        for entry in entries {
            let Value::Array(pair) = entry else { continue };
            let Some(Value::Array(fields)) = pair.into_iter().nth(1) else {
                continue;
            };
            let mut index = None;
            let mut text = None;
            for kv in fields.chunks(2) {
                match (kv.first().and_then(bytes), kv.get(1).and_then(bytes)) {
                    (Some(b"i"), Some(v)) => {
                        index = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                    }
                    (Some(b"t"), Some(v)) => text = Some(String::from_utf8_lossy(v).into_owned()),
                    _ => {}
                }
            }
            match (index, text) {
                (Some(i), Some(t)) if i == tokens.len() as u64 => tokens.push(t.into()),
                _ => {
                    tracing::warn!(%chat, "turn buffer entries out of order; using the prefix");
                    break;
                }
            }
        }
    }
    Ok(ReadTurn {
        off,
        snapshot: Some(TurnSnapshot { turn, tokens }),
    })
}

impl BusInner {
    /// The running turn's buffer from this node's mirror, when the node follows the chat
    /// live: after its own publishes so far have come back into the mirror, the mirror holds
    /// what the stream holds, without reading the stream. A member that lagged in a long, fast
    /// turn refills from here; reading the whole stream from Redis for each lag made a
    /// 60 000-token turn take minutes (each read blocks Redis while the turn publishes).
    /// `None`: not followed live here (read the stream).
    async fn mirrored_turn(&self, chat: &ChatKey) -> Option<Option<TurnSnapshot>> {
        let entry = lock(&self.chats).get(chat).cloned()?;
        let cfg = &self.shared.config;
        let published = entry.published_off.load(Ordering::Acquire);
        let mut applied = entry.applied_off.subscribe();
        tokio::time::timeout(cfg.op_timeout, applied.wait_for(|a| *a >= published))
            .await
            .ok()?
            .ok()?;
        let st = entry.state();
        if !matches!(st.phase, Phase::Live) || st.lag_pending {
            return None;
        }
        Some(ChatEntry::snapshot(&st.mirror, cfg.turn_buffer_ttl))
    }

    async fn read_turn(&self, chat: &ChatKey) -> Result<ReadTurn, BusError> {
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn();
        let mut inv = scripts::READ_TURN.prepare_invoke();
        inv.key(keys.turn(chat)).key(keys.tokens(chat));
        let value: Value = self
            .shared
            .run(
                "read_turn",
                async move { inv.invoke_async(&mut conn).await },
            )
            .await?;
        parse_read(chat, value)
    }

    /// Ends a sync: the mirror becomes `read`, held messages are delivered (without the
    /// buffer events `read` already reflects), and the entry goes live. Returns a new
    /// receiver and the snapshot when `subscribe` is set. Fails if the connection dropped
    /// since `generation` (the held messages are then incomplete).
    #[allow(clippy::type_complexity)]
    fn finish_sync(
        &self,
        entry: &ChatEntry,
        read: ReadTurn,
        generation: u64,
        subscribe: bool,
    ) -> Result<Option<(ring::Receiver<Arc<BusMessage>>, Option<TurnSnapshot>)>, BusError> {
        let cfg = &self.shared.config;
        let mut st = entry.state();
        if st.generation != generation {
            return Err(BusError("redis connection lost while subscribing".into()));
        }
        let (pending, overflowed) = match std::mem::replace(&mut st.phase, Phase::Live) {
            Phase::Syncing {
                pending,
                overflowed,
            } => (pending, overflowed),
            Phase::Idle => (Vec::new(), false),
            Phase::Live => (Vec::new(), false),
        };
        // Receivers from before a reconnect lost messages: they lag first, then get what
        // follows.
        if st.lag_pending {
            entry.tx.lag_receivers();
            st.lag_pending = false;
        }
        let rx = subscribe.then(|| entry.tx.subscribe());
        let snapshot = read.snapshot.clone();
        st.mirror = read.snapshot.map(|s| Mirror {
            turn: s.turn,
            tokens: s.tokens,
            touched: Instant::now(),
        });
        st.floor = read.off;
        entry.applied_off.send_replace(read.off);
        for batch in pending {
            entry.deliver(&mut st, batch, cfg.max_turn_tokens);
        }
        if overflowed {
            // Held messages were dropped: everyone, the new receiver too, resyncs.
            entry.tx.lag_receivers();
        }
        Ok(rx.map(|rx| (rx, snapshot)))
    }

    /// Waits (briefly) until this node's earlier publishes to `chat` have been sent.
    async fn lane_barrier(&self, chat: &ChatKey) {
        let target = {
            let lanes = lock(&self.lanes);
            lanes.get(chat).map(|lane| {
                let enqueued = lock(&lane.state).enqueued;
                (lane.done.subscribe(), enqueued)
            })
        };
        if let Some((mut done, enqueued)) = target {
            let _ = tokio::time::timeout(
                self.shared.config.op_timeout,
                done.wait_for(|d| *d >= enqueued),
            )
            .await;
        }
    }

    fn release_chat(&self, entry: &Arc<ChatEntry>) {
        let mut chats = lock(&self.chats);
        if entry.refs.fetch_sub(1, Ordering::AcqRel) == 1
            && chats
                .get(&entry.chat)
                .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            chats.remove(&entry.chat);
            let handler: Arc<dyn Handler> = entry.clone();
            self.shared.hub.remove_route(&entry.channel, &handler);
        }
    }

    /// Subscribes `entry` locally, syncing it first if needed.
    async fn attach(
        self: &Arc<Self>,
        entry: &Arc<ChatEntry>,
    ) -> Result<(ring::Receiver<Arc<BusMessage>>, Option<TurnSnapshot>), BusError> {
        let cfg = &self.shared.config;
        let _setup = tokio::time::timeout(cfg.op_timeout, entry.setup.lock())
            .await
            .map_err(|_| BusError("subscribing timed out".into()))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let generation = {
                let mut st = entry.state();
                match st.phase {
                    Phase::Live => None,
                    Phase::Idle => {
                        st.phase = Phase::Syncing {
                            pending: Vec::new(),
                            overflowed: false,
                        };
                        Some(st.generation)
                    }
                    Phase::Syncing { .. } => Some(st.generation),
                }
            };
            let Some(generation) = generation else {
                // Live: this node's own publishes reach the mirror first, then subscribe
                // in memory, atomically with the snapshot.
                let published = entry.published_off.load(Ordering::Acquire);
                let mut applied = entry.applied_off.subscribe();
                let _ = tokio::time::timeout(cfg.op_timeout, applied.wait_for(|a| *a >= published))
                    .await;
                let st = entry.state();
                if !matches!(st.phase, Phase::Live) {
                    continue;
                }
                let rx = entry.tx.subscribe();
                return Ok((rx, ChatEntry::snapshot(&st.mirror, cfg.turn_buffer_ttl)));
            };
            let handler: Arc<dyn Handler> = entry.clone();
            self.shared.hub.add_route(&entry.channel, handler);
            self.shared.hub.wait_active(&entry.channel).await?;
            let read = self.read_turn(&entry.chat).await?;
            match self.finish_sync(entry, read, generation, true) {
                Ok(Some(subscribed)) => return Ok(subscribed),
                Ok(None) => return Err(BusError("subscribe produced no receiver".into())),
                Err(e) if attempts >= 3 => return Err(e),
                Err(_) => continue,
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Publishing

    async fn send_batch(
        &self,
        chat: &ChatKey,
        items: &[LaneItem],
    ) -> Result<Option<u64>, BusError> {
        let shared = &self.shared;
        let cfg = &shared.config;
        let payload = wire::encode_chat(
            &shared.node_id,
            now_micros(),
            items.iter().map(|i| &i.message),
        )
        .map_err(|e| BusError(format!("encoding a bus message: {e}")))?;
        let mut ops = Vec::new();
        for item in items {
            buffer_ops(&item.message, &mut ops);
        }
        let tokens = items.iter().filter(|i| is_token(&i.message)).count() as u64;
        shared.counters.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .counters
            .tokens_published
            .fetch_add(tokens, Ordering::Relaxed);
        let channel = shared.keys.chat_channel(chat);
        let mut conn = shared.conn();
        if ops.is_empty() {
            let _: i64 = shared
                .run("publish", async move {
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&payload)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            return Ok(None);
        }
        let mut inv = scripts::PUBLISH_CHAT.prepare_invoke();
        inv.key(shared.keys.turn(chat))
            .key(shared.keys.tokens(chat))
            .arg(&channel)
            .arg(&payload)
            .arg(
                u64::try_from(cfg.turn_buffer_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(cfg.max_turn_tokens);
        for op in &ops {
            inv.arg(op.as_slice());
        }
        let off: u64 = shared
            .run("publish_script", async move {
                inv.invoke_async(&mut conn).await
            })
            .await?;
        Ok(Some(off))
    }
}

// ---------------------------------------------------------------------------------------
// Lanes: per-chat publish queues

struct LaneItem {
    seq: u64,
    message: BusMessage,
    reply: Option<oneshot::Sender<Result<(), BusError>>>,
}

struct LaneState {
    queue: VecDeque<LaneItem>,
    running: bool,
    healthy: bool,
    enqueued: u64,
}

struct Lane {
    state: Mutex<LaneState>,
    /// The highest item `seq` sent (or failed).
    done: watch::Sender<u64>,
}

impl Lane {
    fn new() -> Self {
        Self {
            state: Mutex::new(LaneState {
                queue: VecDeque::new(),
                running: false,
                healthy: true,
                enqueued: 0,
            }),
            done: watch::Sender::new(0),
        }
    }
}

async fn flush(bus: Arc<BusInner>, chat: ChatKey, lane: Arc<Lane>) {
    let batch_max = bus.shared.config.batch_max.max(1);
    loop {
        let batch: Vec<LaneItem> = {
            let mut lanes = lock(&bus.lanes);
            let mut st = lock(&lane.state);
            if st.queue.is_empty() {
                st.running = false;
                if lanes.get(&chat).is_some_and(|l| Arc::ptr_eq(l, &lane)) {
                    lanes.remove(&chat);
                }
                return;
            }
            let n = st.queue.len().min(batch_max);
            st.queue.drain(..n).collect()
        };
        let result = bus.send_batch(&chat, &batch).await;
        let last = batch.last().map_or(0, |i| i.seq);
        match &result {
            Ok(off) => {
                if let Some(off) = off
                    && let Some(entry) = lock(&bus.chats).get(&chat)
                {
                    entry.published_off.fetch_max(*off, Ordering::AcqRel);
                }
            }
            Err(e) => {
                if batch.iter().any(|i| i.reply.is_none()) {
                    tracing::warn!(%chat, error = %e, "bus publish failed");
                }
            }
        }
        lock(&lane.state).healthy = result.is_ok();
        lane.done.send_replace(last);
        for item in batch {
            if let Some(reply) = item.reply {
                let _ = reply.send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| BusError(e.0.clone())),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// User channels

struct UserEntry {
    key: UserKey,
    channel: String,
    tx: ring::Sender<Arc<UserEvent>>,
    refs: AtomicUsize,
}

impl Handler for UserEntry {
    fn on_message(&self, payload: &[u8]) {
        match wire::decode_user(payload) {
            Ok((ts, event)) => {
                let lag = (now_micros() - ts).max(0) as f64 / 1e6;
                metrics::histogram!(crate::telemetry::BUS_LAG).record(lag);
                let _ = self.tx.send(Arc::new(event));
            }
            Err(e) => wire::log_skip("user event", &e),
        }
    }
}

impl BusInner {
    fn release_user(&self, entry: &Arc<UserEntry>) {
        let mut users = lock(&self.users);
        if entry.refs.fetch_sub(1, Ordering::AcqRel) == 1
            && users.get(&entry.key).is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            users.remove(&entry.key);
            let handler: Arc<dyn Handler> = entry.clone();
            self.shared.hub.remove_route(&entry.channel, &handler);
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, chat: &ChatKey, message: BusMessage) -> Result<(), BusError> {
        let bus = &self.inner;
        bus.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        let early = is_token(&message);
        let reply = {
            let mut lanes = lock(&bus.lanes);
            let lane = lanes
                .entry(chat.clone())
                .or_insert_with(|| Arc::new(Lane::new()));
            let mut st = lock(&lane.state);
            st.enqueued += 1;
            let seq = st.enqueued;
            let fire_and_forget =
                early && st.healthy && st.queue.len() < bus.shared.config.batch_max;
            let (reply, rx) = if fire_and_forget {
                (None, None)
            } else {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            };
            st.queue.push_back(LaneItem {
                seq,
                message,
                reply,
            });
            if !st.running {
                st.running = true;
                tokio::spawn(flush(bus.clone(), chat.clone(), lane.clone()));
            }
            rx
        };
        match reply {
            None => Ok(()),
            Some(rx) => match tokio::time::timeout(bus.shared.config.op_timeout * 2, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BusError("publish abandoned".into())),
                Err(_) => Err(BusError("publish timed out".into())),
            },
        }
    }

    async fn subscribe(&self, chat: &ChatKey) -> Result<Subscription, BusError> {
        let bus = &self.inner;
        bus.lane_barrier(chat).await;
        let entry = {
            let mut chats = lock(&bus.chats);
            let entry = chats
                .entry(chat.clone())
                .or_insert_with(|| {
                    Arc::new(ChatEntry {
                        chat: chat.clone(),
                        channel: bus.shared.keys.chat_channel(chat),
                        tx: ring::channel(chat_capacity(&bus.shared.config)).0,
                        state: Mutex::new(ChatState {
                            phase: Phase::Idle,
                            mirror: None,
                            lag_pending: false,
                            generation: 0,
                            floor: 0,
                        }),
                        setup: tokio::sync::Mutex::new(()),
                        refs: AtomicUsize::new(0),
                        applied_off: watch::Sender::new(0),
                        published_off: AtomicU64::new(0),
                        bus: Arc::downgrade(bus),
                    })
                })
                .clone();
            entry.refs.fetch_add(1, Ordering::AcqRel);
            entry
        };
        match bus.attach(&entry).await {
            Ok((rx, running_turn)) => {
                let weak = Arc::downgrade(bus);
                Ok(Subscription {
                    rx,
                    running_turn,
                    on_drop: Some(Box::new(move || {
                        if let Some(bus) = weak.upgrade() {
                            bus.release_chat(&entry);
                        }
                    })),
                })
            }
            Err(e) => {
                bus.release_chat(&entry);
                Err(e)
            }
        }
    }

    async fn running_turn(&self, chat: &ChatKey) -> Result<Option<TurnSnapshot>, BusError> {
        let bus = &self.inner;
        bus.lane_barrier(chat).await;
        if let Some(snapshot) = bus.mirrored_turn(chat).await {
            return Ok(snapshot);
        }
        Ok(bus.read_turn(chat).await?.snapshot)
    }

    async fn publish_user(&self, user: &Identity, event: UserEvent) -> Result<(), BusError> {
        let shared = &self.inner.shared;
        let payload = wire::encode_user(&shared.node_id, now_micros(), &event)
            .map_err(|e| BusError(format!("encoding a user event: {e}")))?;
        let channel = shared.keys.user_channel(&user.org, &user.user_id);
        let mut conn = shared.conn();
        let _: i64 = shared
            .run("publish_user", async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn subscribe_user(&self, user: &Identity) -> Result<UserSubscription, BusError> {
        let bus = &self.inner;
        let key = (user.org.clone(), user.user_id.clone());
        let entry = {
            let mut users = lock(&bus.users);
            let entry = users
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(UserEntry {
                        channel: bus.shared.keys.user_channel(&key.0, &key.1),
                        key: key.clone(),
                        tx: ring::channel(bus.shared.config.user_capacity.max(4)).0,
                        refs: AtomicUsize::new(0),
                    })
                })
                .clone();
            entry.refs.fetch_add(1, Ordering::AcqRel);
            entry
        };
        // Subscribe locally first: nothing published after the upstream confirmation is lost.
        let rx = entry.tx.subscribe();
        let handler: Arc<dyn Handler> = entry.clone();
        bus.shared.hub.add_route(&entry.channel, handler);
        if let Err(e) = bus.shared.hub.wait_active(&entry.channel).await {
            drop(rx);
            bus.release_user(&entry);
            return Err(e);
        }
        let weak = Arc::downgrade(bus);
        Ok(UserSubscription {
            rx,
            on_drop: Some(Box::new(move || {
                if let Some(bus) = weak.upgrade() {
                    bus.release_user(&entry);
                }
            })),
        })
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.inner.shared.ping().await
    }
}
