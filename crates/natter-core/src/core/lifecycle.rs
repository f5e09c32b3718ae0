//! Building a core, its background tasks, readiness and shutdown.

use std::sync::Arc;

use tracing::warn;

use super::{ChatCore, Inner, PRESENCE_REFRESH, Seams};
use crate::bus::Bus;
use crate::chat::ChatKey;
use crate::config::CoreConfig;
use crate::error::CoreError;
use crate::event::LiveEvent;
use crate::limits::Limits;
use crate::presence::Presence;
use crate::provider::Provider;
use crate::scheduler::TurnScheduler;
use crate::store::Store;
use crate::telemetry;
use crate::tools::ToolRegistry;

impl ChatCore {
    pub fn new(
        config: CoreConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
    ) -> Self {
        Self::with_tools(
            config,
            store,
            bus,
            presence,
            provider,
            ToolRegistry::default(),
        )
    }

    /// A core whose turns may call `tools` (server-run, or declared for clients to run).
    pub fn with_tools(
        config: CoreConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
        tools: ToolRegistry,
    ) -> Self {
        Self::from_seams(
            config,
            Seams::single_node(store, bus, presence, provider).with_tools(tools),
        )
    }

    /// A core on the given seams. Started inside a Tokio runtime, it also starts its
    /// background work: ending what a single node's last run left open, the sweep for chats
    /// whose turn owner is gone, control messages from other nodes, and presence refresh.
    pub fn from_seams(config: CoreConfig, seams: Seams) -> Self {
        telemetry::describe();
        let turns = TurnScheduler::new(config.max_concurrent_turns);
        let limits = Limits::new(config.limits.clone());
        let core = Self {
            inner: Arc::new(Inner {
                limits,
                config,
                store: seams.store,
                bus: seams.bus,
                presence: seams.presence,
                provider: seams.provider,
                tools: seams.tools,
                agents: seams.agents,
                coordinator: seams.coordinator,
                turns,
                processing: crate::processing::DocumentProcessing::new(seams.extractor),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            core.start_background(&runtime);
        }
        core
    }

    pub(super) fn start_background(&self, runtime: &tokio::runtime::Handle) {
        let turns = &self.inner.turns;
        // Documents a previous run left mid-extraction (CONTRACT §7.6).
        let core = self.clone();
        turns.spawn_background(runtime, |_| async move { core.resume_processing().await });
        // At startup rather than when each chat is next opened: the open turns are a small
        // indexed set (at most the turns running or queued at the crash), while chats may be
        // many, and a member waiting on a turn may never reopen its chat (a pending-turn
        // tracker, an AI SDK resume). In the background, so that serving starts at once;
        // joins and follows wait for it, so a member's replay already holds the ends.
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            core.end_interrupted_turns_until_done(stop.clone()).await;
            // Then, every few seconds, take over chats whose owner is gone.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(crate::scheduler::SWEEP_INTERVAL) => {}
                    _ = stop.cancelled() => return,
                }
                if let Err(e) = core.inner.turns.sweep(&core.inner).await {
                    warn!(error = %e, "looking for turns without an owner failed");
                }
            }
        });
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            let mut rx = match core.inner.coordinator.subscribe_control().await {
                Ok(rx) => rx,
                Err(e) => {
                    warn!(error = %e, "subscribing to control messages failed; aborts and tool results from other nodes will not reach this one");
                    return;
                }
            };
            loop {
                tokio::select! {
                    control = rx.recv() => match control {
                        Some(control) => core.inner.turns.on_control(&core.inner, control).await,
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                }
            }
        });
        let core = self.clone();
        turns.spawn_background(runtime, |stop| async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PRESENCE_REFRESH) => {}
                    _ = stop.cancelled() => return,
                }
                for (chat, online_user_ids) in core.inner.presence.refresh().await {
                    core.inner
                        .publish_live(&chat, LiveEvent::Presence { online_user_ids }, None)
                        .await;
                }
            }
        });
    }

    /// Ends the turns a single node's last run left open (it crashed or was killed while
    /// they were queued or running) with `ai:error` code `interrupted`, `retryable: true`:
    /// every turn ends (CONTRACT §1). Done once per core; the constructor starts it when a
    /// Tokio runtime is running, and calling this waits for that run. Returns how many turns
    /// it ended. A cluster node ends none here: it takes over chats whose owner is gone.
    pub async fn end_interrupted_turns(&self) -> Result<usize, CoreError> {
        Ok(self.inner.turns.end_left_over(&self.inner).await?)
    }

    /// Waits until the turns a single node's last run left open are ended (a no-op once done,
    /// and in a cluster). Joins wait so their replay holds the ends; a new turn is opened only
    /// after it, so it is never taken for one the last run left.
    pub(super) async fn settle(&self, chat: &ChatKey) {
        if let Err(e) = self.end_interrupted_turns().await {
            warn!(chat = %chat, error = %e, "ending the turns the last run left open failed");
        }
    }

    /// [`Self::end_interrupted_turns`], retried while the store fails, until shutdown.
    pub(super) async fn end_interrupted_turns_until_done(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut delay = std::time::Duration::from_millis(500);
        loop {
            match self.end_interrupted_turns().await {
                Ok(0) => return,
                Ok(ended) => {
                    tracing::info!(ended, "ended the turns the last run left open");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "ending the turns the last run left open failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(30));
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// The provider's name (shown to users, e.g. to label the demo provider).
    pub fn provider_name(&self) -> &str {
        self.inner.provider.name()
    }

    /// Whether the store and the bus answer (for `/readyz`).
    pub async fn ready(&self) -> Result<(), CoreError> {
        for (_, check) in self.readiness().await {
            check?;
        }
        Ok(())
    }

    /// Each backend and whether it answers: `store`, `bus`, `coordinator` (for `/readyz`).
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), CoreError>)> {
        let inner = &self.inner;
        let (store, bus, coordinator) = tokio::join!(
            inner.store.ping(),
            inner.bus.ping(),
            inner.coordinator.ping()
        );
        vec![
            ("store", store.map_err(Into::into)),
            ("bus", bus.map_err(Into::into)),
            ("coordinator", coordinator.map_err(Into::into)),
        ]
    }

    /// This node's id in the cluster (for logs and tests).
    pub fn node_id(&self) -> &str {
        self.inner.coordinator.node_id()
    }

    /// Ends every running and queued turn with `ai:error` code `shutdown`, keeping partial
    /// text, and waits (up to `grace`) for them to be stored.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.turns.shutdown(grace).await;
    }
}
