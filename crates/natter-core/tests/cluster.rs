//! Several cores ("nodes") sharing one store and one bus, with a coordinator whose leases
//! expire: one turn at a time per chat across nodes, abort from another node, the turns of a
//! node that died ended by another within the lease time and the queue going on, a paused
//! owner fenced out, and a turn whose provider panics still ending (in a cluster and on a
//! single node with the in-process coordinator).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use natter_core::bus::{Bus, BusError};
use natter_core::bus_memory::MemoryBus;
use natter_core::coordinator::{Control, Coordinator};
use natter_core::event::{EventBody, StoredEvent};
use natter_core::presence_memory::MemoryPresence;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream,
};
use natter_core::store::{Guard, Store, StoreError};
use natter_core::store_memory::MemoryStore;
use natter_core::{ChatCore, ChatKey, CoreConfig, Identity, Seams, Source, UserMessageInput};
use tokio::sync::mpsc;

/// Leases and control mailboxes shared by the test's nodes, like Redis would hold them.
#[derive(Default)]
struct Hub {
    leases: Mutex<HashMap<ChatKey, (String, Instant)>>,
    mailboxes: Mutex<HashMap<String, mpsc::Sender<Control>>>,
}

struct NodeCoordinator {
    hub: Arc<Hub>,
    node: String,
    ttl: Duration,
}

#[async_trait]
impl Coordinator for NodeCoordinator {
    fn node_id(&self) -> &str {
        &self.node
    }
    fn lease_ttl(&self) -> Duration {
        self.ttl
    }
    async fn acquire(&self, chat: &ChatKey) -> Result<bool, BusError> {
        let mut leases = self.hub.leases.lock().unwrap();
        let now = Instant::now();
        match leases.get(chat) {
            Some((node, until)) if *until > now && *node != self.node => Ok(false),
            _ => {
                leases.insert(chat.clone(), (self.node.clone(), now + self.ttl));
                Ok(true)
            }
        }
    }
    async fn renew(&self, chat: &ChatKey) -> Result<bool, BusError> {
        let mut leases = self.hub.leases.lock().unwrap();
        let now = Instant::now();
        match leases.get_mut(chat) {
            Some((node, until)) if *node == self.node && *until > now => {
                *until = now + self.ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn release(&self, chat: &ChatKey) -> Result<(), BusError> {
        let mut leases = self.hub.leases.lock().unwrap();
        if leases.get(chat).is_some_and(|(n, _)| *n == self.node) {
            leases.remove(chat);
        }
        Ok(())
    }
    async fn owner(&self, chat: &ChatKey) -> Result<Option<String>, BusError> {
        let leases = self.hub.leases.lock().unwrap();
        Ok(leases
            .get(chat)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(n, _)| n.clone()))
    }
    async fn send(&self, node: &str, control: Control) -> Result<(), BusError> {
        if let Some(tx) = self.hub.mailboxes.lock().unwrap().get(node) {
            let _ = tx.try_send(control);
        }
        Ok(())
    }
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Control>, BusError> {
        let (tx, rx) = mpsc::channel(64);
        self.hub
            .mailboxes
            .lock()
            .unwrap()
            .insert(self.node.clone(), tx);
        Ok(rx)
    }
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Streams `tokens` deltas, one every `every`, counting the turns running at once. The text
/// `panic` makes it panic; `hang` never finishes.
struct Slow {
    every: Duration,
    tokens: usize,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

#[async_trait]
impl Provider for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    async fn stream(&self, req: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let last = req
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        if last == "panic" {
            panic!("the provider fell over");
        }
        let hang = last == "hang";
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let guard = RunningGuard(self.running.clone());
        let every = self.every;
        let n = if hang { usize::MAX } else { self.tokens };
        let stream = async_stream_tokens(every, n, guard);
        Ok(Box::pin(stream))
    }
}

struct RunningGuard(Arc<AtomicUsize>);
impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn async_stream_tokens(
    every: Duration,
    n: usize,
    guard: RunningGuard,
) -> impl futures::Stream<Item = Result<ProviderEvent, ProviderError>> + Send {
    futures::stream::unfold((0usize, Some(guard)), move |(i, guard)| async move {
        let guard = guard?;
        if i == n {
            drop(guard);
            return Some((Ok(ProviderEvent::Finish("stop".into())), (i + 1, None)));
        }
        tokio::time::sleep(every).await;
        Some((
            Ok(ProviderEvent::TextDelta(format!("t{i} "))),
            (i + 1, Some(guard)),
        ))
    })
}

struct Cluster {
    hub: Arc<Hub>,
    store: Arc<MemoryStore>,
    bus: Arc<MemoryBus>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Cluster {
    fn new() -> Self {
        Self {
            hub: Arc::new(Hub::default()),
            store: Arc::new(MemoryStore::new()),
            bus: Arc::new(MemoryBus::new(1024)),
            running: Arc::new(AtomicUsize::new(0)),
            most: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn provider(&self) -> Slow {
        Slow {
            every: Duration::from_millis(5),
            tokens: 5,
            running: self.running.clone(),
            most: self.most.clone(),
        }
    }

    fn config(&self) -> CoreConfig {
        CoreConfig {
            merge_delta_bytes: 0,
            ..CoreConfig::default()
        }
    }

    fn node(&self, name: &str, ttl: Duration) -> ChatCore {
        let seams = Seams {
            store: self.store.clone(),
            bus: self.bus.clone(),
            presence: Arc::new(MemoryPresence::default()),
            provider: Arc::new(self.provider()),
            coordinator: Arc::new(NodeCoordinator {
                hub: self.hub.clone(),
                node: name.into(),
                ttl,
            }),
            tools: Default::default(),
            agents: Default::default(),
            extractor: Arc::new(natter_core::processing::InProcessExtractor::default()),
        };
        ChatCore::from_seams(self.config(), seams)
    }
}

fn who() -> Identity {
    Identity::new("o", "ann")
}

fn message(id: &str, text: &str) -> UserMessageInput {
    UserMessageInput {
        message_id: id.into(),
        text: text.into(),
        parts: None,
        request_id: Some(format!("req-{id}")),
        trace_id: None,
        tools: Vec::new(),
        attachments: Vec::new(),
    }
}

async fn ends(store: &MemoryStore, chat: &ChatKey) -> Vec<StoredEvent> {
    store
        .events_after(chat, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.body.ends_turn().is_some())
        .collect()
}

/// Waits until the chat's log holds `n` turn ends.
async fn wait_for_ends(store: &MemoryStore, chat: &ChatKey, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = ends(store, chat).await.len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} turns ended within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the chat's running turn has streamed at least `n` tokens.
async fn wait_for_tokens(bus: &MemoryBus, chat: &ChatKey, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while bus
        .running_turn(chat)
        .await
        .unwrap()
        .is_none_or(|t| t.tokens.len() < n)
    {
        assert!(
            Instant::now() < deadline,
            "the turn never streamed {n} tokens"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn request_of(e: &StoredEvent) -> &str {
    match &e.body {
        EventBody::AssistantMessage { request_id, .. }
        | EventBody::TurnFailed { request_id, .. } => request_id,
        _ => "",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_turn_at_a_time_per_chat_across_nodes_in_order() {
    let c = Cluster::new();
    let nodes: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| c.node(n, Duration::from_secs(10)))
        .collect();
    let chat = ChatKey::new("o", "room");
    nodes[0]
        .open_chat(&who(), &chat, Some(Default::default()))
        .await
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..9 {
        let node = &nodes[i % 3];
        let id = format!("m{i}");
        node.post_user_message(&who(), &Source::default(), &chat, message(&id, "hi"))
            .await
            .unwrap();
        sent.push(format!("req-{id}"));
    }
    wait_for_ends(&c.store, &chat, 9, Duration::from_secs(20)).await;
    assert_eq!(
        c.most.load(Ordering::SeqCst),
        1,
        "two turns of one chat ran at once"
    );
    let ended: Vec<_> = ends(&c.store, &chat).await;
    assert_eq!(
        ended
            .iter()
            .map(|e| request_of(e).to_owned())
            .collect::<Vec<_>>(),
        sent,
        "turns ran in the order asked for"
    );
    assert!(ended.iter().all(
        |e| matches!(&e.body, EventBody::AssistantMessage { text, .. } if text == "t0 t1 t2 t3 t4 ")
    ));
    assert!(c.store.open_turns(&chat).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_from_another_node_stops_the_running_turn_and_a_queued_one() {
    let c = Cluster::new();
    let a = c.node("a", Duration::from_secs(10));
    let b = c.node("b", Duration::from_secs(10));
    let chat = ChatKey::new("o", "room");
    a.open_chat(&who(), &chat, Some(Default::default()))
        .await
        .unwrap();
    a.post_user_message(&who(), &Source::default(), &chat, message("m1", "hang"))
        .await
        .unwrap();
    a.post_user_message(&who(), &Source::default(), &chat, message("m2", "hang"))
        .await
        .unwrap();
    // Wait for m1 to stream on a.
    wait_for_tokens(&c.bus, &chat, 2).await;
    // The queued one, by request id, from b: its stored end.
    assert_eq!(
        b.abort(&chat, Some("req-m2"), Some("not needed".into()))
            .await
            .unwrap(),
        "req-m2"
    );
    // The running one, from b: over the coordinator to a.
    assert_eq!(b.abort(&chat, None, None).await.unwrap(), "req-m1");
    wait_for_ends(&c.store, &chat, 2, Duration::from_secs(5)).await;
    let ended = ends(&c.store, &chat).await;
    let reasons: Vec<_> = ended
        .iter()
        .map(|e| match &e.body {
            EventBody::AssistantMessage {
                request_id,
                finish_reason,
                ..
            } => {
                format!("{request_id}:{finish_reason}")
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons, vec!["req-m2:aborted", "req-m1:aborted"]);
    assert!(
        matches!(
            &ended[1].body,
            EventBody::AssistantMessage { text, .. } if text.starts_with("t0 ")
        ),
        "the partial text is kept"
    );
    // Nothing left to abort.
    assert!(b.abort(&chat, None, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_turn_ends_interrupted_elsewhere_and_its_queue_goes_on() {
    let c = Cluster::new();
    let ttl = Duration::from_millis(600);
    let chat = ChatKey::new("o", "room");
    // Node a runs on a runtime of its own, dropped mid-turn: its tasks die like a process.
    let dead_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = {
        let _enter = dead_runtime.enter();
        c.node("a", ttl)
    };
    {
        let a = a.clone();
        let chat = chat.clone();
        dead_runtime
            .spawn(async move {
                a.open_chat(&who(), &chat, Some(Default::default()))
                    .await
                    .unwrap();
                a.post_user_message(&who(), &Source::default(), &chat, message("m1", "hang"))
                    .await
                    .unwrap();
                a.post_user_message(&who(), &Source::default(), &chat, message("m2", "hi"))
                    .await
                    .unwrap();
            })
            .await
            .unwrap();
    }
    // Killed once the turn has streamed a few tokens.
    wait_for_tokens(&c.bus, &chat, 2).await;
    dead_runtime.shutdown_background();
    drop(a);
    let b = c.node("b", ttl);
    let started = Instant::now();
    wait_for_ends(&c.store, &chat, 2, Duration::from_secs(10)).await;
    let ended = ends(&c.store, &chat).await;
    assert!(
        matches!(&ended[0].body, EventBody::TurnFailed { request_id, code, retryable: true, .. } if request_id == "req-m1" && code == "interrupted"),
        "{:?}",
        ended[0].body
    );
    // The bus outlived the node (as Redis does): the end names the turn members followed,
    // keeps its text so far, and the bus dropped the buffer.
    match &ended[0].body {
        EventBody::TurnFailed {
            partial_text,
            token_count,
            ..
        } => {
            assert!(partial_text.starts_with("t0 "), "{partial_text:?}");
            assert_eq!(
                *token_count,
                Some(partial_text.split_whitespace().count() as u64)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&ended[1].body, EventBody::AssistantMessage { request_id, .. } if request_id == "req-m2"),
        "the queued turn ran on the surviving node: {:?}",
        ended[1].body
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        c.bus
            .running_turn(&chat)
            .await
            .unwrap()
            .map(|t| t.turn.request_id.to_string())
            != Some("req-m1".into()),
        "the dead turn's tokens are no longer offered to joiners"
    );
    // The chat goes on, on b.
    b.post_user_message(&who(), &Source::default(), &chat, message("m3", "hi"))
        .await
        .unwrap();
    wait_for_ends(&c.store, &chat, 3, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cannot_write_after_another_took_over() {
    let store = MemoryStore::new();
    let chat = ChatKey::new("o", "room");
    store
        .open_chat(&chat, Some(&Default::default()))
        .await
        .unwrap();
    let old = store.claim_turns(&chat).await.unwrap();
    let new = store.claim_turns(&chat).await.unwrap();
    assert!(new > old);
    let end = EventBody::TurnFailed {
        message_id: "x".into(),
        request_id: "r".into(),
        code: "internal".into(),
        message: "late".into(),
        retryable: false,
        partial_text: String::new(),
        trace_id: None,
        token_count: None,
    };
    let head = store
        .open_chat(&chat, None)
        .await
        .unwrap()
        .unwrap()
        .head_seq;
    let refused = store.append_guarded(&chat, end, 1, Guard::Fence(old)).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store
            .open_chat(&chat, None)
            .await
            .unwrap()
            .unwrap()
            .head_seq,
        head
    );
}

/// Posts a message whose provider call panics, then another: the first turn ends with
/// `internal`, the second is answered, and no dead turn is left to abort or buffer.
async fn a_panicking_turn_ends_and_the_chat_goes_on(core: &ChatCore, c: &Cluster) {
    let chat = ChatKey::new("o", "room");
    core.open_chat(&who(), &chat, Some(Default::default()))
        .await
        .unwrap();
    core.post_user_message(&who(), &Source::default(), &chat, message("m1", "panic"))
        .await
        .unwrap();
    core.post_user_message(&who(), &Source::default(), &chat, message("m2", "hi"))
        .await
        .unwrap();
    wait_for_ends(&c.store, &chat, 2, Duration::from_secs(5)).await;
    let ended = ends(&c.store, &chat).await;
    assert!(
        matches!(&ended[0].body, EventBody::TurnFailed { request_id, code, .. } if request_id == "req-m1" && code == "internal"),
        "{:?}",
        ended[0].body
    );
    assert!(
        matches!(&ended[1].body, EventBody::AssistantMessage { request_id, .. } if request_id == "req-m2")
    );
    // Abort finds no dead turn to say ok for, and the bus kept no buffer.
    assert!(core.abort(&chat, None, None).await.is_err());
    assert!(c.bus.running_turn(&chat).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_whose_provider_panics_ends_with_internal_and_the_chat_goes_on() {
    let c = Cluster::new();
    let a = c.node("a", Duration::from_secs(10));
    a_panicking_turn_ends_and_the_chat_goes_on(&a, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_turn_ends_with_internal_on_a_single_node_too() {
    let c = Cluster::new();
    let core = ChatCore::from_seams(
        c.config(),
        Seams::single_node(
            c.store.clone(),
            c.bus.clone(),
            Arc::new(MemoryPresence::default()),
            Arc::new(c.provider()),
        ),
    );
    a_panicking_turn_ends_and_the_chat_goes_on(&core, &c).await;
}
