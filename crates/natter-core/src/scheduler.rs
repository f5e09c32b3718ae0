//! The turn scheduler: one turn at a time per chat, across every node that shares the store.
//!
//! - **The queue is in the store.** A user message that asks for a reply opens its turn in the
//!   same transaction as the message ([`Store::open_turns`]), so a queued turn survives the
//!   node that queued it.
//! - **One driver per chat, cluster-wide.** The node holding the chat's lease
//!   ([`Coordinator`]) runs a driver task that works through the queue in order. Each new
//!   owner first raises the chat's fence in the store ([`Store::claim_turns`]) and writes the
//!   turn's events with it, so an owner that lost its lease without noticing cannot write over
//!   the new one.
//! - **Turns of a dead owner end.** A driver first ends the turns an earlier owner started
//!   and never ended (`ai:error` code `interrupted`); a sweep every few seconds finds chats with
//!   open turns and no owner (their node died) and takes them over. A single node, at startup,
//!   ends every turn its last run left open, queued ones too: their clients were cut off with
//!   it, and a backlog answered minutes later would surprise them.
//! - **Control reaches the owner.** Abort and client tool results go to the node that runs the
//!   turn over the coordinator; aborting a queued turn is its stored end.
//! - **A turn whose task panics still ends** (`ai:error` code `internal`), and the chat's queue
//!   goes on.
//! - **One node keeps an active chat's queue in memory.** With a coordinator that is not
//!   shared, this node is the store's only writer, so while a chat's driver runs it works from
//!   a mirror of the chat's open turns ([`ChatTurns::queue`]) that enqueue and abort keep up to
//!   date, and marks starts in memory, not in the store: a turn costs no queue read and no
//!   start write (the store still opens and closes turns with their events, so a restart finds
//!   what was left open and ends it). Measured: the durable start mark and the queue reads
//!   cost a single node 12-16 % of its fan-out throughput (bench/README.md).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::chat::ChatKey;
use crate::coordinator::Control;
use crate::core::{Inner, new_id};
use crate::event::{EventBody, LiveEvent, ProcessingStatus, StoredEvent, TurnRef};
use crate::provider::ToolSpec;
use crate::store::{Guard, OpenTurn, StoreError};
use crate::telemetry;
use crate::trace_context::SpanParent;
use crate::turn::{Ended, Ending, Generation, StopReason, TurnRequest, failed_body, finish, run};

/// Where the store put a turn it opened: its place in the queue and the end of its context
/// (see [`OpenTurn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    pub opened_seq: u64,
    pub context_seq: u64,
}

/// A turn this node is running (or about to: it may still wait for a slot).
pub(crate) struct RunningTurn {
    pub request_id: Arc<str>,
    pub started: Instant,
    pub cancel: CancellationToken,
    pub stop: Arc<Mutex<Option<StopReason>>>,
}

impl RunningTurn {
    fn stop(&self, reason: StopReason) {
        *lock(&self.stop) = Some(reason);
        self.cancel.cancel();
    }
}

#[derive(Default)]
struct ChatTurns {
    running: Option<RunningTurn>,
    /// A driver task of this node works through the chat's queue (or is taking the lease).
    driving: bool,
    /// Wakes the chat's driver while it lingers on an empty queue (a turn was queued).
    wake: Arc<tokio::sync::Notify>,
    /// One node only: the chat's open turns, in order, while its driver runs (`None`: read
    /// the store). A turn this node started has `started_fence` set here, never in the store.
    queue: Option<Vec<OpenTurn>>,
    /// Bumped by each enqueue and abort, so a driver whose store read raced one reads again
    /// before it trusts the read as its mirror.
    version: u64,
    /// One node only: queued turns an abort is ending in the store right now. A mirror loaded
    /// meanwhile leaves them out, so they never start.
    cancelling: HashSet<String>,
    /// One node only: turns this node started whose end is not stored yet (storing it
    /// failed). A mirror loaded from the store marks them started, so they end as
    /// interrupted instead of running twice.
    started: HashSet<String>,
}

impl ChatTurns {
    /// Nothing here outlives the entry: no driver, no running turn, nothing pending.
    fn is_idle(&self) -> bool {
        !self.driving
            && self.running.is_none()
            && self.cancelling.is_empty()
            && self.started.is_empty()
    }

    /// The turn left the chat's queue (its end is stored, or the chat is gone).
    fn closed(&mut self, request_id: &str) {
        self.started.remove(request_id);
        if let Some(queue) = &mut self.queue {
            queue.retain(|t| t.request_id != request_id);
        }
    }
}

type ClientResult = Result<serde_json::Value, String>;

struct ClientWait {
    turn: Arc<TurnRef>,
    tx: tokio::sync::oneshot::Sender<ClientResult>,
}

pub(crate) struct TurnScheduler {
    chats: Mutex<HashMap<ChatKey, ChatTurns>>,
    /// Client-run tools declared with a message, until its turn starts (one node only: in a
    /// cluster another node may run the turn, so the driver reads them from the store, where
    /// they are kept with the event that asked for the turn).
    declared: Mutex<HashMap<(ChatKey, String), Vec<ToolSpec>>>,
    /// The span that queued each turn (a request's, a Socket.IO event's), until the turn
    /// starts and its span continues it. Only while traces are exported; bounded, as a turn
    /// queued here may start on another node: entries older than [`TURN_PARENT_TTL`] are
    /// dropped when the map is full, so those never block newer ones.
    parents: Mutex<HashMap<(ChatKey, String), (Instant, SpanParent)>>,
    /// Client-run tool calls waiting for a member's result, by chat and call id.
    client_waits: Mutex<HashMap<(ChatKey, String), ClientWait>>,
    permits: Arc<Semaphore>,
    /// Moving average of turn durations, for `etaMs`. 0 until a turn has finished.
    avg_turn_ms: AtomicU64,
    tasks: TaskTracker,
    shutting_down: CancellationToken,
    /// Set once a single node has ended the turns its last run left open (see
    /// [`TurnScheduler::end_left_over`]): drivers and joins wait for it.
    pub(crate) settled: tokio::sync::OnceCell<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain bookkeeping maps: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often a node looks for chats with open turns and no owner. With the lease's 10 s, a
/// dead owner's turns end within about 12 s.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// How many chats one sweep looks at.
const SWEEP_BATCH: usize = 1000;
/// How long a driver keeps the chat's lease and fence after its queue empties, for the next
/// turn of an active chat: claiming the fence is a durable write, not worth making per turn.
const LINGER: Duration = Duration::from_secs(5);
/// How many queued turns' parent spans a node keeps (a turn whose parent was not kept still
/// joins its trace through its `traceId`, see [`start`]).
const MAX_TURN_PARENTS: usize = 10_000;
/// How long a queued turn's parent span is worth keeping: a turn that has not started here by
/// then started on another node (or ended).
const TURN_PARENT_TTL: Duration = Duration::from_secs(600);

impl TurnScheduler {
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            chats: Mutex::new(HashMap::new()),
            declared: Mutex::new(HashMap::new()),
            parents: Mutex::new(HashMap::new()),
            client_waits: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            avg_turn_ms: AtomicU64::new(0),
            tasks: TaskTracker::new(),
            shutting_down: CancellationToken::new(),
            settled: tokio::sync::OnceCell::new(),
        }
    }

    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.is_cancelled()
    }

    /// How long until turn `request_id` starts: the running turn's remaining time plus the
    /// average turn for each turn queued ahead. `None` until this node has finished a turn.
    async fn eta_ms(&self, inner: &Inner, chat: &ChatKey, request_id: &str) -> Option<u64> {
        let avg = self.avg_turn_ms.load(Ordering::Relaxed);
        if avg == 0 {
            return None;
        }
        let mirrored = if inner.coordinator.is_shared() {
            None
        } else {
            lock(&self.chats).get(chat).and_then(|t| t.queue.clone())
        };
        let open = match mirrored {
            Some(open) => open,
            None => inner.store.open_turns(chat).await.ok()?,
        };
        let ahead = open
            .iter()
            .take_while(|t| t.request_id != request_id)
            .filter(|t| t.started_fence.is_none())
            .count() as u64;
        let local_elapsed = lock(&self.chats)
            .get(chat)
            .and_then(|t| t.running.as_ref())
            .map(|r| r.started.elapsed().as_millis() as u64);
        let running_left = match local_elapsed {
            Some(elapsed) => avg.saturating_sub(elapsed),
            // Running on another node, whose clock of it this one does not see: on average
            // half a turn is left.
            None if open.iter().any(|t| t.started_fence.is_some()) => avg / 2,
            None => 0,
        };
        Some(running_left + avg * ahead)
    }

    pub fn record_duration(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        let old = self.avg_turn_ms.load(Ordering::Relaxed);
        let new = if old == 0 { ms } else { (old * 4 + ms) / 5 };
        self.avg_turn_ms.store(new.max(1), Ordering::Relaxed);
    }

    /// A turn was opened in the store (with its message, or by [`Store::request_turn`]): tell
    /// the chat it is queued, and make sure some node drives the chat. `opened` is the turn
    /// as the store opened it, when the caller knows its `seq`s (`None`: a one-node mirror of
    /// the queue is dropped and read again from the store).
    pub async fn enqueue(
        &self,
        inner: &Arc<Inner>,
        chat: &ChatKey,
        opened: Option<Opened>,
        request_id: &str,
        trace_id: Option<&str>,
        client_tools: Vec<ToolSpec>,
    ) {
        if !client_tools.is_empty() && !inner.coordinator.is_shared() {
            lock(&self.declared).insert((chat.clone(), request_id.to_owned()), client_tools);
        }
        if let Some(parent) = SpanParent::current() {
            let mut parents = lock(&self.parents);
            let now = Instant::now();
            if parents.len() >= MAX_TURN_PARENTS {
                parents.retain(|_, (queued, _)| now.duration_since(*queued) < TURN_PARENT_TTL);
            }
            if parents.len() < MAX_TURN_PARENTS {
                parents.insert((chat.clone(), request_id.to_owned()), (now, parent));
            }
        }
        if !inner.coordinator.is_shared() {
            let mut chats = lock(&self.chats);
            let turns = chats.entry(chat.clone()).or_default();
            turns.version += 1;
            match (&mut turns.queue, opened) {
                (Some(queue), Some(opened)) => {
                    // The store keeps a turn's first opening; so does the mirror.
                    if !queue.iter().any(|t| t.request_id == request_id) {
                        let at = queue.partition_point(|t| t.opened_seq <= opened.opened_seq);
                        queue.insert(
                            at,
                            OpenTurn {
                                chat: chat.clone(),
                                request_id: request_id.to_owned(),
                                trace_id: trace_id.map(str::to_owned),
                                opened_seq: opened.opened_seq,
                                context_seq: opened.context_seq,
                                started_fence: None,
                            },
                        );
                    }
                }
                (queue, None) => *queue = None,
                (None, Some(_)) => {}
            }
        }
        // `queued` goes out before any driver can publish `working`: the driver reads the
        // queue only after this.
        inner
            .publish_live(
                chat,
                LiveEvent::Processing {
                    request_id: request_id.into(),
                    status: ProcessingStatus::Queued,
                    eta_ms: self.eta_ms(inner, chat, request_id).await,
                    reason: None,
                    trace_id: trace_id.map(Into::into),
                },
                None,
            )
            .await;
        self.kick(inner, chat);
    }

    /// Makes sure the chat's queue is worked through: by this node's driver (started if the
    /// lease is free), or by the owner's, which reads the queue again after each turn.
    pub fn kick(&self, inner: &Arc<Inner>, chat: &ChatKey) {
        {
            let mut chats = lock(&self.chats);
            let turns = chats.entry(chat.clone()).or_default();
            if std::mem::replace(&mut turns.driving, true) {
                // A permit is kept if the driver is not waiting yet, so no wake is lost.
                turns.wake.notify_one();
                return;
            }
        }
        let inner = inner.clone();
        let chat = chat.clone();
        self.tasks
            .spawn(async move { acquire_and_drive(inner, chat).await });
    }

    fn wake_of(&self, chat: &ChatKey) -> Arc<tokio::sync::Notify> {
        lock(&self.chats)
            .entry(chat.clone())
            .or_default()
            .wake
            .clone()
    }

    fn stop_driving(&self, chat: &ChatKey) {
        let mut chats = lock(&self.chats);
        if let Some(turns) = chats.get_mut(chat) {
            turns.driving = false;
            // Only a running driver keeps the mirror up to date.
            turns.queue = None;
            if turns.is_idle() {
                chats.remove(chat);
            }
        }
    }

    /// The chat's open turns: on one node from the mirror its driver keeps (loaded from the
    /// store on first use), in a cluster from the store.
    async fn open_turns(&self, inner: &Inner, chat: &ChatKey) -> Result<Vec<OpenTurn>, StoreError> {
        if inner.coordinator.is_shared() {
            return inner.store.open_turns(chat).await;
        }
        // A read that raced an enqueue or abort is read again; the last one is used without
        // being kept.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let version = {
                let mut chats = lock(&self.chats);
                let turns = chats.entry(chat.clone()).or_default();
                if let Some(queue) = &turns.queue {
                    return Ok(queue.clone());
                }
                turns.version
            };
            let mut open = inner.store.open_turns(chat).await?;
            let mut chats = lock(&self.chats);
            let turns = chats.entry(chat.clone()).or_default();
            open.retain(|t| !turns.cancelling.contains(&t.request_id));
            turns
                .started
                .retain(|id| open.iter().any(|t| t.request_id == *id));
            for t in &mut open {
                if t.started_fence.is_none() && turns.started.contains(&t.request_id) {
                    t.started_fence = Some(0);
                }
            }
            if turns.version == version {
                turns.queue = Some(open.clone());
                return Ok(open);
            }
            if attempts == 3 {
                return Ok(open);
            }
        }
    }

    /// Whether a turn the store has open waits to start (one node marks starts in memory).
    fn is_queued(&self, chat: &ChatKey, open: &OpenTurn) -> bool {
        open.started_fence.is_none()
            && !lock(&self.chats)
                .get(chat)
                .is_some_and(|t| t.started.contains(&open.request_id))
    }

    /// Turn `request_id` left the chat's queue: its end is stored.
    fn closed(&self, chat: &ChatKey, request_id: &str) {
        if let Some(turns) = lock(&self.chats).get_mut(chat) {
            turns.closed(request_id);
        }
    }

    fn is_driving(&self, chat: &ChatKey) -> bool {
        lock(&self.chats).get(chat).is_some_and(|t| t.driving)
    }

    /// Stops this node's running turn of the chat if it matches. The request id it stopped.
    fn stop_local(
        &self,
        chat: &ChatKey,
        request_id: Option<&str>,
        reason: StopReason,
    ) -> Option<String> {
        let chats = lock(&self.chats);
        let running = chats
            .get(chat)?
            .running
            .as_ref()
            .filter(|r| request_id.is_none_or(|id| *r.request_id == *id))?;
        running.stop(reason);
        Some(running.request_id.to_string())
    }

    /// Stops the chat's running turn (or the one `request_id` names, running or queued),
    /// wherever it runs. `Ok(None)` when there is no such turn.
    pub async fn abort(
        &self,
        inner: &Arc<Inner>,
        chat: &ChatKey,
        request_id: Option<&str>,
        reason: Option<String>,
    ) -> Result<Option<String>, StoreError> {
        if let Some(id) = self.stop_local(chat, request_id, StopReason::Aborted(reason.clone())) {
            return Ok(Some(id));
        }
        let open = match inner.store.open_turns(chat).await {
            Ok(open) => open,
            Err(StoreError::NoSuchChat(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let target = match request_id {
            Some(id) => open.into_iter().find(|t| t.request_id == id),
            None => open.into_iter().next(),
        };
        let Some(target) = target else {
            return Ok(None);
        };
        if target.started_fence.is_none() {
            // Queued: its stored end is the abort, and the driver will not start it.
            let one_node = !inner.coordinator.is_shared();
            if one_node {
                // One node marks starts in memory only, so the store's guard cannot tell a
                // started turn: under the lock the driver starts turns under, the turn either
                // runs already (stop it) or leaves the mirror and is never started.
                let mut chats = lock(&self.chats);
                let turns = chats.entry(chat.clone()).or_default();
                let aborted = StopReason::Aborted(reason.clone());
                if let Some(running) = turns
                    .running
                    .as_ref()
                    .filter(|r| *r.request_id == target.request_id)
                {
                    running.stop(aborted);
                    return Ok(Some(target.request_id));
                }
                if turns.started.contains(&target.request_id) {
                    // Ran, and storing its end failed: its driver ends it as interrupted.
                    return Ok(Some(target.request_id));
                }
                turns.version += 1;
                turns.cancelling.insert(target.request_id.clone());
                turns.closed(&target.request_id);
            }
            let aborted = StopReason::Aborted(reason.clone());
            let guard = Guard::Queued(target.request_id.clone());
            let ended = end_unstarted(inner, chat, &target, aborted, guard).await;
            if one_node {
                let mut chats = lock(&self.chats);
                if let Some(turns) = chats.get_mut(chat) {
                    turns.cancelling.remove(&target.request_id);
                    if ended == Ended::Unstored {
                        // Members saw it end; a mirror read from the store ends it again, as
                        // interrupted, rather than run it.
                        turns.started.insert(target.request_id.clone());
                    }
                    if ended == Ended::Refused {
                        // Still queued in the store as far as this node knows: read it again.
                        turns.version += 1;
                        turns.queue = None;
                        turns.wake.notify_one();
                    }
                    if turns.is_idle() {
                        chats.remove(chat);
                    }
                }
            }
            if ended != Ended::Refused {
                return Ok(Some(target.request_id));
            }
            // It started meanwhile: stop it where it runs.
        }
        let id = target.request_id.as_str();
        if let Some(id) = self.stop_local(chat, Some(id), StopReason::Aborted(reason.clone())) {
            return Ok(Some(id));
        }
        self.send_to_owner(
            inner,
            chat,
            Control::Abort {
                chat: chat.clone(),
                request_id: Some(target.request_id.clone()),
                reason,
            },
        )
        .await;
        // No owner: its node died, and the sweep ends the turn as interrupted.
        Ok(Some(target.request_id))
    }

    /// Sends `control` to the node holding the chat's lease, if it is another node.
    async fn send_to_owner(&self, inner: &Arc<Inner>, chat: &ChatKey, control: Control) -> bool {
        let me = inner.coordinator.node_id();
        match inner.coordinator.owner(chat).await {
            Ok(Some(owner)) if owner != me => match inner.coordinator.send(&owner, control).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(chat = %chat, error = %e, "sending control to the turn's owner failed");
                    false
                }
            },
            Ok(_) => false,
            Err(e) => {
                warn!(chat = %chat, error = %e, "looking up the turn's owner failed");
                false
            }
        }
    }

    /// Handles a control message another node sent to this one.
    pub async fn on_control(&self, inner: &Arc<Inner>, control: Control) {
        match control {
            Control::TurnQueued { chat } => self.kick(inner, &chat),
            Control::Abort {
                chat,
                request_id,
                reason,
            } => {
                self.stop_local(&chat, request_id.as_deref(), StopReason::Aborted(reason));
            }
            Control::ToolResult {
                chat,
                tool_call_id,
                outcome,
            } => {
                self.deliver_local(&chat, &tool_call_id, outcome);
            }
        }
    }

    /// Registers a wait for the result of client-run call `id` in `chat`.
    pub fn await_client_result(
        &self,
        chat: &ChatKey,
        id: &str,
        turn: &TurnRef,
    ) -> tokio::sync::oneshot::Receiver<ClientResult> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wait = ClientWait {
            turn: Arc::new(turn.clone()),
            tx,
        };
        lock(&self.client_waits).insert((chat.clone(), id.to_owned()), wait);
        rx
    }

    /// The turn of this node waiting for client-run call `id`, if one is.
    pub fn local_client_wait(&self, chat: &ChatKey, id: &str) -> Option<Arc<TurnRef>> {
        lock(&self.client_waits)
            .get(&(chat.clone(), id.to_owned()))
            .map(|w| w.turn.clone())
    }

    pub fn forget_client_wait(&self, chat: &ChatKey, id: &str) {
        lock(&self.client_waits).remove(&(chat.clone(), id.to_owned()));
    }

    fn deliver_local(&self, chat: &ChatKey, id: &str, result: ClientResult) -> bool {
        match lock(&self.client_waits).remove(&(chat.clone(), id.to_owned())) {
            Some(wait) => wait.tx.send(result).is_ok(),
            None => false,
        }
    }

    /// Hands a member's result to the waiting turn, on this node or the owner's. `false` if
    /// no call `id` is waiting (unknown, already answered, or its turn ended).
    pub async fn deliver_client_result(
        &self,
        inner: &Arc<Inner>,
        chat: &ChatKey,
        id: &str,
        result: ClientResult,
        waiting_elsewhere: bool,
    ) -> bool {
        if self.deliver_local(chat, id, result.clone()) {
            return true;
        }
        waiting_elsewhere
            && self
                .send_to_owner(
                    inner,
                    chat,
                    Control::ToolResult {
                        chat: chat.clone(),
                        tool_call_id: id.to_owned(),
                        outcome: result,
                    },
                )
                .await
    }

    /// The chat was deleted: its running turn stops, wherever it runs. Nothing is stored
    /// for it (there is no log left to store into); its queue went with the log.
    pub async fn forget_chat(&self, inner: &Arc<Inner>, chat: &ChatKey) {
        let reason = || StopReason::Aborted(Some("chat deleted".into()));
        if let Some(turns) = lock(&self.chats).get_mut(chat) {
            // Its queue went with the log: the driver reads that from the store.
            turns.version += 1;
            turns.queue = None;
        }
        if self.stop_local(chat, None, reason()).is_none() {
            self.send_to_owner(
                inner,
                chat,
                Control::Abort {
                    chat: chat.clone(),
                    request_id: None,
                    reason: Some("chat deleted".into()),
                },
            )
            .await;
        }
    }

    /// Runs `task` in the background like a turn: shutdown waits for it (within the grace
    /// period) and cancels `stop` first.
    pub fn spawn_background<F>(
        &self,
        runtime: &tokio::runtime::Handle,
        task: impl FnOnce(CancellationToken) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .spawn_on(task(self.shutting_down.clone()), runtime);
    }

    /// Stops this node's running turns (`ai:error` code `shutdown`, partial text kept) and
    /// waits up to `grace` for their ends to be stored. A single node's drivers also end the
    /// turns queued behind them; in a cluster those stay queued for another node.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.cancel();
        {
            let chats = lock(&self.chats);
            for turns in chats.values() {
                if let Some(running) = &turns.running {
                    running.stop(StopReason::Shutdown);
                }
            }
        }
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("turns still running after the shutdown grace period");
        }
    }

    /// Ends, once, the turns a single node's last run left open (see the module docs), with
    /// `ai:error` code `interrupted`. A cluster node ends nothing here: the sweep takes over
    /// chats whose owner is gone. Returns how many turns it ended.
    pub async fn end_left_over(&self, inner: &Arc<Inner>) -> Result<usize, StoreError> {
        self.settled
            .get_or_try_init(|| async {
                if inner.coordinator.is_shared() {
                    return Ok(0);
                }
                let mut ended = 0;
                let mut seen = HashSet::new();
                loop {
                    let chats = inner.store.chats_with_open_turns(SWEEP_BATCH).await?;
                    let fresh: Vec<_> = chats
                        .into_iter()
                        .filter(|c| seen.insert(c.clone()))
                        .collect();
                    if fresh.is_empty() {
                        return Ok(ended);
                    }
                    for chat in fresh {
                        ended += end_all_open(inner, &chat).await?;
                    }
                }
            })
            .await
            .copied()
    }

    /// Looks for chats with open turns that no node drives (no lease: their owner died, or
    /// nobody took them yet) and kicks them. One coordinator read per chat with open turns.
    pub async fn sweep(&self, inner: &Arc<Inner>) -> Result<(), StoreError> {
        for chat in inner.store.chats_with_open_turns(SWEEP_BATCH).await? {
            if self.is_driving(&chat) {
                continue;
            }
            match inner.coordinator.owner(&chat).await {
                Ok(None) => self.kick(inner, &chat),
                Ok(Some(_)) => {}
                Err(e) => {
                    warn!(error = %e, "looking up turn owners failed; the next sweep retries");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub fn take_declared(&self, chat: &ChatKey, request_id: &str) -> Vec<ToolSpec> {
        lock(&self.declared)
            .remove(&(chat.clone(), request_id.to_owned()))
            .unwrap_or_default()
    }
}

/// Ends every open turn of a chat (a single node's leftovers from its last run).
async fn end_all_open(inner: &Arc<Inner>, chat: &ChatKey) -> Result<usize, StoreError> {
    let fence = match inner.store.claim_turns(chat).await {
        Ok(f) => f,
        Err(StoreError::NoSuchChat(_)) => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut ended = 0;
    for open in inner.store.open_turns(chat).await? {
        if end_interrupted(inner, chat, &open, fence).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// The running turn's tokens so far as the bus keeps them, if they belong to `request_id`.
async fn buffered_turn(
    inner: &Inner,
    chat: &ChatKey,
    request_id: &str,
) -> Option<crate::bus::TurnSnapshot> {
    match inner.bus.running_turn(chat).await {
        Ok(snapshot) => snapshot.filter(|s| &*s.turn.request_id == request_id),
        Err(e) => {
            warn!(chat = %chat, error = %e, "reading the running turn's tokens failed");
            None
        }
    }
}

/// Ends a turn whose owner is gone with `ai:error` code `interrupted`, `retryable: true`. When
/// the bus still holds the turn's tokens (a cluster's Redis outlives the node that died), the
/// end carries the turn's own message id and its text so far, so members end the turn they
/// follow and the bus drops its buffer; otherwise (one node: the buffer died with it) a fresh
/// id and no text.
async fn end_interrupted(
    inner: &Arc<Inner>,
    chat: &ChatKey,
    open: &OpenTurn,
    fence: u64,
) -> Result<bool, StoreError> {
    let buffered = buffered_turn(inner, chat, &open.request_id).await;
    let (message_id, partial_text, token_count) = match &buffered {
        Some(s) => (
            s.turn.message_id.to_string(),
            s.tokens.concat(),
            Some(s.tokens.len() as u64),
        ),
        None => (new_id(), String::new(), None),
    };
    let body = EventBody::TurnFailed {
        message_id,
        request_id: open.request_id.clone(),
        code: ErrorCode::Interrupted.as_str().to_owned(),
        message: "the server stopped while this reply was being written; it was not finished"
            .to_owned(),
        retryable: true,
        partial_text,
        trace_id: open.trace_id.clone(),
        token_count,
    };
    match inner
        .store
        .append_guarded(chat, body, now_millis(), Guard::Fence(fence))
        .await
    {
        Ok(appended) => {
            info!(chat = %chat, requestId = %open.request_id, "ended a turn whose server stopped");
            metrics::counter!(telemetry::ERRORS, "code" => ErrorCode::Interrupted.as_str())
                .increment(1);
            metrics::counter!(telemetry::TURNS, "outcome" => "interrupted").increment(1);
            metrics::counter!(telemetry::TURNS_TAKEN_OVER).increment(1);
            inner
                .publish_durable(chat, appended.event().clone(), None)
                .await;
            Ok(true)
        }
        // Deleted since: there is no log left to end the turn in.
        Err(StoreError::NoSuchChat(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes the chat's lease and drives its queue; without the lease, the owner does.
async fn acquire_and_drive(inner: Arc<Inner>, chat: ChatKey) {
    let sched = &inner.turns;
    // A single node first ends what its last run left open, so no driver starts one of those.
    if let Err(e) = sched.end_left_over(&inner).await {
        warn!(chat = %chat, error = %e, "ending the turns the last run left open failed; the sweep retries");
        sched.stop_driving(&chat);
        return;
    }
    loop {
        match inner.coordinator.acquire(&chat).await {
            Ok(true) => {}
            Ok(false) => {
                // Another node owns the chat. Its driver reads the queue after each turn and
                // once more after letting go, so the turn is not left waiting; the message
                // only saves it the wait for a running turn's end.
                sched.stop_driving(&chat);
                sched
                    .send_to_owner(&inner, &chat, Control::TurnQueued { chat: chat.clone() })
                    .await;
                return;
            }
            Err(e) => {
                warn!(chat = %chat, error = %e, "taking the chat's turn lease failed; the sweep retries");
                sched.stop_driving(&chat);
                return;
            }
        }
        metrics::gauge!(telemetry::LEASES_HELD).increment(1.0);
        let outcome = drive(&inner, &chat).await;
        metrics::gauge!(telemetry::LEASES_HELD).decrement(1.0);
        if outcome == DriveEnd::LeaseLost {
            sched.stop_driving(&chat);
            return;
        }
        if let Err(e) = inner.coordinator.release(&chat).await {
            warn!(chat = %chat, error = %e, "releasing the chat's turn lease failed; it expires");
        }
        // Let go first, then look once more: a turn queued on another node while this one was
        // letting go found the lease taken and relies on this read.
        sched.stop_driving(&chat);
        if outcome == DriveEnd::Shutdown || sched.is_shutting_down() {
            return;
        }
        match inner.store.open_turns(&chat).await {
            Ok(open) if open.iter().any(|t| sched.is_queued(&chat, t)) => {
                let mut chats = lock(&sched.chats);
                let turns = chats.entry(chat.clone()).or_default();
                if std::mem::replace(&mut turns.driving, true) {
                    return;
                }
            }
            Ok(_) => return,
            Err(e) => {
                warn!(chat = %chat, error = %e, "reading the turn queue failed; the sweep retries");
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriveEnd {
    /// The queue is empty (or the store failed): release the lease.
    Done,
    /// Another node took the chat over: this node must not touch the lease.
    LeaseLost,
    Shutdown,
}

/// Keeps the lease renewed while the driver works; cancels `lost` when it is gone.
fn keep_lease(inner: &Arc<Inner>, chat: &ChatKey) -> (CancellationToken, CancellationToken) {
    let lost = CancellationToken::new();
    let done = CancellationToken::new();
    let every = inner.coordinator.lease_ttl() / 3;
    let (inner, chat, lost2, done2) = (inner.clone(), chat.clone(), lost.clone(), done.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = done2.cancelled() => return,
            }
            match inner.coordinator.renew(&chat).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(chat = %chat, "lost the chat's turn lease; another node takes its turns over");
                    // Stopped as lost (nothing more stored) before the cancel reaches it.
                    inner.turns.stop_local(&chat, None, StopReason::LeaseLost);
                    lost2.cancel();
                    return;
                }
                // Unreachable coordinator: keep going. Nobody else can take the lease while it
                // is down, and the store's fence refuses this node's writes if one did.
                Err(e) => warn!(chat = %chat, error = %e, "renewing the chat's turn lease failed"),
            }
        }
    });
    (lost, done)
}

/// Works through one chat's queue under the lease: claims the fence, ends turns an earlier
/// owner left, then runs the queued turns in order.
async fn drive(inner: &Arc<Inner>, chat: &ChatKey) -> DriveEnd {
    let wake = inner.turns.wake_of(chat);
    let (lost, done) = keep_lease(inner, chat);
    let _stop_renewing = done.drop_guard();
    let fence = match inner.store.claim_turns(chat).await {
        Ok(f) => f,
        Err(StoreError::NoSuchChat(_)) => return DriveEnd::Done,
        Err(e) => {
            warn!(chat = %chat, error = %e, "claiming the chat's turns failed; the sweep retries");
            return DriveEnd::Done;
        }
    };
    loop {
        if lost.is_cancelled() {
            return DriveEnd::LeaseLost;
        }
        if inner.turns.is_shutting_down() {
            if !inner.coordinator.is_shared() {
                end_queued_for_shutdown(inner, chat, fence).await;
            }
            return DriveEnd::Shutdown;
        }
        let open = match inner.turns.open_turns(inner, chat).await {
            Ok(open) => open,
            Err(StoreError::NoSuchChat(_)) => return DriveEnd::Done,
            Err(e) => {
                warn!(chat = %chat, error = %e, "reading the turn queue failed; the sweep retries");
                return DriveEnd::Done;
            }
        };
        let mut next = None;
        for open in open {
            match open.started_fence {
                // Started by an earlier owner that never ended it: it died or lost the lease.
                // (Or by this one, when storing its end kept failing: members were told it
                // ended, and now the log says so too.)
                Some(_) => match end_interrupted(inner, chat, &open, fence).await {
                    Ok(_) => inner.turns.closed(chat, &open.request_id),
                    Err(StoreError::Fenced { .. }) => return DriveEnd::LeaseLost,
                    Err(e) => {
                        warn!(chat = %chat, error = %e, "ending an interrupted turn failed; the sweep retries");
                        return DriveEnd::Done;
                    }
                },
                None if next.is_none() => next = Some(open),
                None => {}
            }
        }
        let Some(next) = next else {
            // Linger: the next turn of a busy chat starts without a new claim.
            tokio::select! {
                _ = wake.notified() => continue,
                _ = tokio::time::sleep(LINGER) => return DriveEnd::Done,
                _ = lost.cancelled() => return DriveEnd::LeaseLost,
                _ = inner.turns.shutting_down.cancelled() => continue,
            }
        };
        match start(inner, chat, next, fence, &lost).await {
            Ok(()) => {}
            Err(end) => return end,
        }
    }
}

/// A single node going down ends its queued turns with `ai:error` code `shutdown` (nobody
/// else would run them; a cluster node leaves them to the others).
async fn end_queued_for_shutdown(inner: &Arc<Inner>, chat: &ChatKey, fence: u64) {
    let open = match inner.turns.open_turns(inner, chat).await {
        Ok(open) => open,
        Err(e) => {
            warn!(chat = %chat, error = %e, "reading the turn queue at shutdown failed");
            return;
        }
    };
    for queued in open.iter().filter(|t| t.started_fence.is_none()) {
        end_unstarted(
            inner,
            chat,
            queued,
            StopReason::Shutdown,
            Guard::Fence(fence),
        )
        .await;
    }
}

/// Ends a turn that never started (an empty reply under a fresh message id), if `guard`
/// holds.
async fn end_unstarted(
    inner: &Arc<Inner>,
    chat: &ChatKey,
    open: &OpenTurn,
    reason: StopReason,
    guard: Guard,
) -> Ended {
    let turn = TurnRef {
        message_id: new_id().into(),
        request_id: open.request_id.as_str().into(),
        trace_id: open.trace_id.as_deref().map(Into::into),
    };
    let ending = Generation::empty(Ending::Stopped(reason));
    finish(inner, chat, &turn, ending, guard).await
}

/// The client-run tools kept with the event that asked for turn `open`: the
/// `message_superseded` of a regenerate, or the user message it answers. A store error costs
/// the tools (logged), not the turn.
async fn stored_turn_tools(inner: &Inner, open: &OpenTurn) -> Vec<ToolSpec> {
    let at = |seq: u64| async move {
        match inner
            .store
            .events_after(&open.chat, seq.saturating_sub(1), 1)
            .await
        {
            Ok(events) => events.into_iter().find(|e| e.seq == seq),
            Err(e) => {
                warn!(chat = %open.chat, error = %e, "reading a turn's declared tools failed");
                None
            }
        }
    };
    let tools_of = |event: Option<StoredEvent>, superseding: bool| match event.map(|e| e.body) {
        Some(EventBody::MessageSuperseded {
            request_id, tools, ..
        }) if superseding && request_id == open.request_id => Some(tools.unwrap_or_default()),
        Some(EventBody::UserMessage { tools, .. }) if !superseding => {
            Some(tools.unwrap_or_default())
        }
        _ => None,
    };
    if open.opened_seq != open.context_seq
        && let Some(tools) = tools_of(at(open.opened_seq).await, true)
    {
        return tools;
    }
    tools_of(at(open.context_seq).await, false).unwrap_or_default()
}

/// Starts one queued turn and runs it to its end.
async fn start(
    inner: &Arc<Inner>,
    chat: &ChatKey,
    open: OpenTurn,
    fence: u64,
    lost: &CancellationToken,
) -> Result<(), DriveEnd> {
    let sched = &inner.turns;
    let request_id: Arc<str> = open.request_id.as_str().into();
    let cancel = lost.child_token();
    let stop = Arc::new(Mutex::new(None));
    let one_node = !inner.coordinator.is_shared();
    // Visible to abort before the store says it started, so an abort never misses it.
    {
        let mut chats = lock(&sched.chats);
        let turns = chats.entry(chat.clone()).or_default();
        if one_node {
            // Started in memory only, if the mirror still has it queued (an abort takes it
            // out under this lock).
            let queued = turns.queue.as_mut().and_then(|q| {
                q.iter_mut()
                    .find(|t| t.request_id == open.request_id && t.started_fence.is_none())
            });
            let Some(queued) = queued else {
                return Ok(());
            };
            queued.started_fence = Some(fence);
            turns.started.insert(open.request_id.clone());
        }
        turns.running = Some(RunningTurn {
            request_id: request_id.clone(),
            started: Instant::now(),
            cancel: cancel.clone(),
            stop: stop.clone(),
        });
    }
    let clear = || {
        if let Some(t) = lock(&sched.chats).get_mut(chat) {
            t.running = None;
        }
    };
    if !one_node {
        match inner.store.start_turn(chat, &open.request_id, fence).await {
            Ok(true) => {}
            // Ended while queued (aborted): the next one.
            Ok(false) => {
                clear();
                return Ok(());
            }
            Err(StoreError::Fenced { .. }) => {
                clear();
                return Err(DriveEnd::LeaseLost);
            }
            Err(e) => {
                clear();
                warn!(chat = %chat, error = %e, "starting a turn failed; the sweep retries");
                return Err(DriveEnd::Done);
            }
        }
    }
    let client_tools = if one_node {
        sched.take_declared(chat, &open.request_id)
    } else {
        stored_turn_tools(inner, &open).await
    };
    let req = TurnRequest {
        chat: chat.clone(),
        context_seq: open.context_seq,
        client_tools,
        request_id,
        trace_id: open.trace_id.as_deref().map(Into::into),
        fence,
    };
    let span = info_span!(
        "turn",
        chatId = %chat.chat_id,
        org = %chat.org,
        requestId = %req.request_id,
        traceId = req.trace_id.as_deref().unwrap_or(""),
    );
    // The span that queued the turn, if this node has it; else the trace its `traceId` names.
    let parent = lock(&sched.parents)
        .remove(&(chat.clone(), open.request_id.clone()))
        .map(|(_, parent)| parent)
        .or_else(|| {
            req.trace_id
                .as_deref()
                .and_then(|t| SpanParent::in_trace(t, &req.request_id))
        });
    if let Some(parent) = parent {
        parent.adopt(&span);
    }
    let turn = TurnRef {
        message_id: new_id().into(),
        request_id: req.request_id.clone(),
        trace_id: req.trace_id.clone(),
    };
    let ended = run_catching_panics(inner, &req, &turn, &cancel, &stop)
        .instrument(span)
        .await;
    {
        let mut chats = lock(&sched.chats);
        if let Some(t) = chats.get_mut(chat) {
            t.running = None;
            // Unstored, it stays open and marked started: the loop ends it as interrupted.
            if ended == Ended::Stored {
                t.closed(&open.request_id);
            }
        }
    }
    if lost.is_cancelled() {
        return Err(DriveEnd::LeaseLost);
    }
    Ok(())
}

/// Runs a turn; if its code panics, the turn still ends, with `ai:error` code `internal`.
async fn run_catching_panics(
    inner: &Arc<Inner>,
    req: &TurnRequest,
    turn: &TurnRef,
    cancel: &CancellationToken,
    stop: &Arc<Mutex<Option<StopReason>>>,
) -> Ended {
    let ran = std::panic::AssertUnwindSafe(run(inner, req, turn, cancel, stop))
        .catch_unwind()
        .await;
    let panic = match ran {
        Ok(ended) => return ended,
        Err(panic) => panic,
    };
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    tracing::error!(panic = %what, "a turn panicked; it ends with ai:error internal");
    metrics::counter!(telemetry::TURN_PANICS).increment(1);
    // Under the turn's own message id, so members and the bus end the turn they follow, with
    // the text the bus holds of it (the task's own copy died with it).
    let buffered = buffered_turn(inner, &req.chat, &req.request_id)
        .await
        .filter(|s| s.turn.message_id == turn.message_id);
    let body = failed_body(
        turn,
        ErrorCode::Internal,
        "the server failed while writing this reply".to_owned(),
        true,
        buffered
            .as_ref()
            .map(|s| s.tokens.concat())
            .unwrap_or_default(),
        buffered.as_ref().map(|s| s.tokens.len() as u64),
    );
    let guard = Guard::Fence(req.fence);
    match inner
        .store
        .append_guarded(&req.chat, body, now_millis(), guard)
        .await
    {
        Ok(appended) => {
            inner
                .publish_durable(&req.chat, appended.event().clone(), None)
                .await;
            Ended::Stored
        }
        Err(e) => {
            warn!(error = %e, "storing the end of a panicked turn failed");
            Ended::from_store_error(&e)
        }
    }
}
