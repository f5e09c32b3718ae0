//! The node's one pub/sub connection: it routes each channel's messages to one handler,
//! reconnects with backoff when the connection drops, re-subscribes every channel still
//! wanted and tells each handler it lost messages.
//!
//! Why a dedicated `redis::aio::PubSub` connection supervised here rather than the
//! `ConnectionManager`'s RESP3 push subscriptions with automatic resubscription: the bus must
//! know *when* a channel is subscribed (a new member's turn buffer is read after that point,
//! and after a reconnect the chat's buffer is read again and its members told they lagged).
//! The manager resubscribes silently, inside its reconnect, and after a failed series of
//! retries reconnects only when a command is sent, which a node that only listens never does.
//! Here the supervisor loop never gives up, (un)subscribes by reconciling the wanted channels
//! with the confirmed ones (so a quick unsubscribe/subscribe pair cannot end unsubscribed),
//! PINGs the idle connection to notice a silent peer, and calls `on_disconnect` /
//! `on_resubscribed` at the exact points the bus needs. It also keeps message traffic off the
//! command connection, so a busy chat never delays a publish's reply.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use natter_core::bus::BusError;
use tokio::sync::{Notify, oneshot};
use tokio_util::task::AbortOnDropHandle;

use crate::Counters;

/// Receives one channel's messages.
pub(crate) trait Handler: Send + Sync + 'static {
    fn on_message(&self, payload: &[u8]);
    /// The connection dropped: messages may have been lost from now on.
    fn on_disconnect(&self) {}
    /// Subscribed again after a reconnect (messages published meanwhile are lost).
    fn on_resubscribed(&self) {}
}

struct Route {
    handler: Arc<dyn Handler>,
    /// Subscribed on an earlier connection: call `on_resubscribed` once subscribed again.
    resync: bool,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    /// Channels the current connection confirmed.
    active: HashSet<String>,
    /// Active channels whose UNSUBSCRIBE is on the way: not active for a new subscriber,
    /// which would otherwise miss what is published until they are subscribed again.
    unsubscribing: HashSet<String>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    connected: bool,
    ever_connected: bool,
}

struct Inner {
    client: redis::Client,
    state: Mutex<State>,
    dirty: Notify,
    counters: Arc<Counters>,
    timeout: Duration,
}

pub(crate) struct Hub {
    inner: Arc<Inner>,
    _task: AbortOnDropHandle<()>,
}

const PING_EVERY: Duration = Duration::from_secs(5);
const SUBSCRIBE_CHUNK: usize = 512;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain maps: a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hub {
    pub(crate) fn start(client: redis::Client, counters: Arc<Counters>, timeout: Duration) -> Self {
        let inner = Arc::new(Inner {
            client,
            state: Mutex::new(State::default()),
            dirty: Notify::new(),
            counters,
            timeout,
        });
        let task = AbortOnDropHandle::new(tokio::spawn(supervise(inner.clone())));
        Self { inner, _task: task }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.inner.lock().connected
    }

    pub(crate) fn active_channels(&self) -> usize {
        self.inner.lock().active.len()
    }

    /// Routes `channel` to `handler` (replacing another handler) and asks for a subscription.
    pub(crate) fn add_route(&self, channel: &str, handler: Arc<dyn Handler>) {
        let mut st = self.inner.lock();
        match st.routes.get_mut(channel) {
            Some(route) => route.handler = handler,
            None => {
                st.routes.insert(
                    channel.to_owned(),
                    Route {
                        handler,
                        resync: false,
                    },
                );
            }
        }
        drop(st);
        self.inner.dirty.notify_one();
    }

    /// Drops the route if it still goes to `handler`; the channel is unsubscribed.
    pub(crate) fn remove_route(&self, channel: &str, handler: &Arc<dyn Handler>) {
        let mut st = self.inner.lock();
        if st
            .routes
            .get(channel)
            .is_some_and(|r| Arc::ptr_eq(&r.handler, handler))
        {
            st.routes.remove(channel);
            st.waiters.remove(channel);
            drop(st);
            self.inner.dirty.notify_one();
        }
    }

    /// Waits until the connection confirmed `channel` (routed with `add_route` before).
    /// Fails at once while Redis is unreachable (after the first connection), and after the
    /// timeout otherwise.
    pub(crate) async fn wait_active(&self, channel: &str) -> Result<(), BusError> {
        // `checked_add`: a timeout too far off to represent means no deadline in practice.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.inner.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        loop {
            let rx = {
                let mut st = self.inner.lock();
                if !st.routes.contains_key(channel) {
                    return Err(BusError("subscription dropped".into()));
                }
                if st.connected
                    && st.active.contains(channel)
                    && !st.unsubscribing.contains(channel)
                {
                    return Ok(());
                }
                if !st.connected {
                    if st.ever_connected {
                        return Err(BusError("redis pub/sub connection is down".into()));
                    }
                    None
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.entry(channel.to_owned()).or_default().push(tx);
                    Some(rx)
                }
            };
            let waited = match rx {
                Some(rx) => {
                    self.inner.dirty.notify_one();
                    tokio::time::timeout_at(deadline, async {
                        let _ = rx.await;
                    })
                    .await
                    .map_err(|_| ())
                }
                // Not connected yet since the start: wait for the first connection.
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(())
                }
                None => Err(()),
            };
            if waited.is_err() {
                self.inner.counters.error("subscribe");
                return Err(BusError(format!(
                    "redis subscribe: not confirmed within {:?}",
                    self.inner.timeout
                )));
            }
        }
    }
}

async fn supervise(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(20);
    loop {
        inner.counters.op("connect");
        match tokio::time::timeout(inner.timeout, inner.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(20);
                let reason = run(&inner, pubsub).await;
                tracing::warn!(%reason, "redis pub/sub connection lost; reconnecting");
            }
            Ok(Err(e)) => {
                inner.counters.error("connect");
                tracing::debug!(error = %e, "redis pub/sub connection failed");
            }
            Err(_) => {
                inner.counters.error("connect");
                tracing::debug!("redis pub/sub connection timed out");
            }
        }
        down(&inner);
        let jitter = Duration::from_millis(fastrand_ms(backoff.as_millis() as u64 / 2 + 1));
        tokio::time::sleep(backoff.saturating_add(jitter)).await;
        backoff = backoff.saturating_mul(2).min(Duration::from_secs(1));
    }
}

/// A cheap jitter source without another dependency.
fn fastrand_ms(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) % bound.max(1)
}

/// Marks the connection down: every handler learns it may lose messages, waiters fail.
fn down(inner: &Inner) {
    let handlers: Vec<Arc<dyn Handler>> = {
        let mut st = inner.lock();
        let was_up = st.connected;
        st.connected = false;
        st.active.clear();
        st.unsubscribing.clear();
        st.waiters.clear();
        if !was_up {
            return;
        }
        st.routes
            .values_mut()
            .map(|r| {
                r.resync = true;
                r.handler.clone()
            })
            .collect()
    };
    for h in handlers {
        h.on_disconnect();
    }
}

/// Serves one connection until it drops; returns why.
async fn run(inner: &Arc<Inner>, pubsub: redis::aio::PubSub) -> String {
    let (mut sink, mut stream) = pubsub.split();
    {
        let mut st = inner.lock();
        st.connected = true;
        st.ever_connected = true;
        st.active.clear();
        st.unsubscribing.clear();
    }
    inner.dirty.notify_one();
    let reader = async {
        while let Some(msg) = stream.next().await {
            let handler = inner
                .lock()
                .routes
                .get(msg.get_channel_name())
                .map(|r| r.handler.clone());
            if let Some(h) = handler {
                h.on_message(msg.get_payload_bytes());
            }
        }
        "the server closed the connection".to_owned()
    };
    let reconciler = async {
        loop {
            if let Err(e) = reconcile(inner, &mut sink).await {
                return e;
            }
            tokio::select! {
                _ = inner.dirty.notified() => {}
                _ = tokio::time::sleep(PING_EVERY) => {
                    inner.counters.op("ping");
                    match tokio::time::timeout(inner.timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            inner.counters.error("ping");
                            return format!("ping failed: {e}");
                        }
                        Err(_) => {
                            inner.counters.error("ping");
                            return "ping timed out".to_owned();
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        reason = reader => reason,
        reason = reconciler => reason,
    }
}

/// Brings the connection's subscriptions in line with the routes.
async fn reconcile(inner: &Inner, sink: &mut redis::aio::PubSubSink) -> Result<(), String> {
    loop {
        let (to_unsub, to_sub): (Vec<String>, Vec<String>) = {
            let mut st = inner.lock();
            let to_unsub: Vec<String> = st
                .active
                .iter()
                .filter(|c| !st.routes.contains_key(*c))
                .cloned()
                .collect();
            st.unsubscribing.extend(to_unsub.iter().cloned());
            (
                to_unsub,
                st.routes
                    .keys()
                    .filter(|c| !st.active.contains(*c))
                    .take(SUBSCRIBE_CHUNK)
                    .cloned()
                    .collect(),
            )
        };
        if to_unsub.is_empty() && to_sub.is_empty() {
            return Ok(());
        }
        for chunk in to_unsub.chunks(SUBSCRIBE_CHUNK) {
            inner.counters.op("unsubscribe");
            match tokio::time::timeout(inner.timeout, sink.unsubscribe(chunk)).await {
                Ok(Ok(())) => {
                    // A channel wanted again meanwhile is subscribed in the next round; its
                    // new subscriber waited for that (see `unsubscribing`).
                    let mut st = inner.lock();
                    for c in chunk {
                        st.active.remove(c);
                        st.unsubscribing.remove(c);
                    }
                }
                Ok(Err(e)) => {
                    inner.counters.error("unsubscribe");
                    return Err(format!("unsubscribe failed: {e}"));
                }
                Err(_) => {
                    inner.counters.error("unsubscribe");
                    return Err("unsubscribe timed out".into());
                }
            }
        }
        if !to_sub.is_empty() {
            inner.counters.op("subscribe");
            match tokio::time::timeout(inner.timeout, sink.subscribe(&to_sub)).await {
                Ok(Ok(())) => {
                    let mut resubscribed = Vec::new();
                    {
                        let mut st = inner.lock();
                        for c in &to_sub {
                            st.active.insert(c.clone());
                            for w in st.waiters.remove(c).unwrap_or_default() {
                                let _ = w.send(());
                            }
                            if let Some(r) = st.routes.get_mut(c)
                                && r.resync
                            {
                                r.resync = false;
                                resubscribed.push(r.handler.clone());
                            }
                        }
                    }
                    for h in resubscribed {
                        h.on_resubscribed();
                    }
                }
                Ok(Err(e)) => {
                    inner.counters.error("subscribe");
                    return Err(format!("subscribe failed: {e}"));
                }
                Err(_) => {
                    inner.counters.error("subscribe");
                    return Err("subscribe timed out".into());
                }
            }
        }
    }
}
