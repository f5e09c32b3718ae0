//! The conformance suite of natter-core's [`Bus`] seam: the guarantees of `bus.rs`, checked
//! against any implementation through a [`Cluster`] of its nodes. `tests/memory.rs` runs it
//! against `MemoryBus` (one node: every node index is the same bus); natter-bus-redis runs it
//! against `RedisBus` with separate nodes on one Redis.
//!
//! Every check uses fresh chat ids, so one cluster can run them all, in any order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::bus::{Bus, FollowReason, Subscription, UserEvent};
use natter_core::chat::{ChatKey, Identity};
use natter_core::event::{
    BusMessage, EventBody, LiveEvent, ProcessingStatus, StoredEvent, TurnRef,
};
use natter_core::feed::{Feed, FeedItem};
use natter_core::ring::RecvError;
use natter_core::store_memory::MemoryStore;

/// Some nodes of one bus deployment.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Node `i`'s bus (created on first use). A single-process bus returns the same bus for
    /// every `i`. Indexes from 100 up are used once each, for "a node that has never seen
    /// this chat".
    async fn node(&self, i: usize) -> Arc<dyn Bus>;
    /// The capacity of a node's local chat channel (messages a member may fall behind).
    fn capacity(&self) -> usize;
}

/// How long a message may take to arrive before a check fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

static CHATS: AtomicU64 = AtomicU64::new(0);

/// A chat id no other check uses.
pub fn fresh_chat(name: &str) -> ChatKey {
    let n = CHATS.fetch_add(1, Ordering::Relaxed);
    ChatKey::new("org-1", format!("{name}-{}-{n}", std::process::id()))
}

pub fn turn(id: &str) -> Arc<TurnRef> {
    Arc::new(TurnRef {
        message_id: format!("asst-{id}").into(),
        request_id: format!("req-{id}").into(),
        trace_id: None,
    })
}

pub fn started(t: &Arc<TurnRef>) -> BusMessage {
    BusMessage::Live {
        event: LiveEvent::TurnStarted { turn: t.clone() },
        origin: None,
    }
}

pub fn token(t: &Arc<TurnRef>, index: u64, text: &str) -> BusMessage {
    BusMessage::Live {
        event: LiveEvent::Token {
            turn: t.clone(),
            index,
            text: text.into(),
        },
        origin: None,
    }
}

pub fn typing(user: &str) -> BusMessage {
    BusMessage::Live {
        event: LiveEvent::Typing {
            user_id: user.into(),
            typing: true,
            trace_id: None,
        },
        origin: None,
    }
}

/// The stored end of turn `t` (an assistant message of `count` tokens).
pub fn ended(t: &Arc<TurnRef>, seq: u64, text: &str, count: u64) -> BusMessage {
    BusMessage::Durable {
        event: Arc::new(StoredEvent {
            seq,
            created_at: 0,
            body: EventBody::AssistantMessage {
                message_id: t.message_id.to_string(),
                request_id: t.request_id.to_string(),
                text: text.into(),
                finish_reason: "stop".into(),
                usage: None,
                model: None,
                trace_id: None,
                token_count: Some(count),
                warnings: None,
            },
        }),
        origin: None,
    }
}

fn unstored_end(t: &Arc<TurnRef>) -> BusMessage {
    BusMessage::Live {
        event: LiveEvent::TurnEndUnstored {
            turn: t.clone(),
            end: Box::new(EventBody::TurnFailed {
                message_id: t.message_id.to_string(),
                request_id: t.request_id.to_string(),
                code: "unavailable".into(),
                message: "store down".into(),
                retryable: true,
                partial_text: String::new(),
                trace_id: None,
                token_count: None,
            }),
        },
        origin: None,
    }
}

/// The next message, failing the check on lag, close or silence.
pub async fn next(sub: &mut Subscription) -> Arc<BusMessage> {
    match tokio::time::timeout(PATIENCE, sub.rx.recv()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("subscription ended or lagged: {e}"),
        Err(_) => panic!("no message within {PATIENCE:?}"),
    }
}

/// Polls `f` until it returns true (another node's view may trail by a moment).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn text_of(i: u64) -> String {
    format!("t{i} ")
}

/// Messages of each publisher arrive in publish order (and, for a subscriber that keeps up,
/// all of them), whatever node publishes and whatever node subscribes.
pub async fn order_per_publisher(c: &dyn Cluster) {
    let chat = fresh_chat("order");
    let mut sub = c.node(1).await.subscribe(&chat).await.expect("subscribe");
    const N: usize = 150;
    let publish = |node: usize, tag: &'static str| {
        let chat = chat.clone();
        async move {
            let bus = c.node(node).await;
            let t = turn(&format!("order-{tag}"));
            for i in 0..N {
                // Tokens of a turn that never started (not buffered) between other kinds: the
                // fast path for tokens must keep the order too.
                let m = match i % 3 {
                    0 => typing(&format!("{tag}:{i}")),
                    1 => token(&t, i as u64, &format!("{tag}:{i}")),
                    _ => BusMessage::Live {
                        event: LiveEvent::Processing {
                            request_id: format!("{tag}:{i}").into(),
                            status: ProcessingStatus::Working,
                            eta_ms: None,
                            reason: None,
                            trace_id: None,
                        },
                        origin: None,
                    },
                };
                bus.publish(&chat, m).await.expect("publish");
            }
        }
    };
    let (_, _) = tokio::join!(publish(0, "a"), publish(2, "b"));
    let mut seen = [0usize, 0usize];
    for _ in 0..2 * N {
        let m = next(&mut sub).await;
        let label = match &*m {
            BusMessage::Live {
                event: LiveEvent::Typing { user_id, .. },
                ..
            } => user_id.to_string(),
            BusMessage::Live {
                event: LiveEvent::Token { text, .. },
                ..
            } => text.to_string(),
            BusMessage::Live {
                event: LiveEvent::Processing { request_id, .. },
                ..
            } => request_id.to_string(),
            other => panic!("unexpected message {other:?}"),
        };
        let (tag, i) = label.split_once(':').expect("labelled");
        let k = usize::from(tag == "b");
        assert_eq!(
            i.parse::<usize>().ok(),
            Some(seen[k]),
            "publisher {tag} out of order"
        );
        seen[k] += 1;
    }
    assert_eq!(seen, [N, N]);
}

/// What one subscription saw of a turn.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Tokens in the snapshot.
    pub snapshot: usize,
    /// Live tokens whose index the snapshot (or an earlier live token) already had.
    pub duplicates: usize,
    /// Subscribed after the turn ended: saw none of it.
    pub after_end: bool,
}

/// Collects a subscription's view of turn `t` (`n` tokens) and checks it: the snapshot's
/// tokens, then live tokens deduped by index, are exactly `0..n` with the right texts, and
/// no live `TurnStarted` repeats a turn the snapshot already holds (a feed would restart the
/// turn's indexes and hand its tokens out twice).
async fn collect(mut sub: Subscription, t: Arc<TurnRef>, n: u64, done: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut have: BTreeSet<u64> = BTreeSet::new();
    let snap_turn = sub.running_turn.take();
    let mut started = false;
    if let Some(s) = &snap_turn {
        assert_eq!(s.turn.message_id, t.message_id, "snapshot of another turn");
        for (i, text) in s.tokens.iter().enumerate() {
            assert_eq!(&**text, text_of(i as u64), "snapshot token {i}");
            have.insert(i as u64);
        }
        seen.snapshot = s.tokens.len();
        started = true;
    }
    let mut anything = snap_turn.is_some();
    loop {
        let m = match tokio::time::timeout(Duration::from_millis(1500), sub.rx.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(RecvError::Lagged(k))) => {
                panic!("a subscriber lagged ({k}) in the snapshot check")
            }
            Ok(Err(RecvError::Closed)) => panic!("channel closed"),
            Err(_) => {
                assert!(
                    done.load(Ordering::Acquire) && !anything,
                    "the turn's end never arrived (snapshot {}, tokens {})",
                    seen.snapshot,
                    have.len()
                );
                seen.after_end = true;
                return seen;
            }
        };
        anything = true;
        match &*m {
            BusMessage::Live {
                event: LiveEvent::TurnStarted { turn },
                ..
            } => {
                assert!(
                    snap_turn.is_none(),
                    "TurnStarted arrived live for a turn the snapshot already held"
                );
                assert!(!started, "TurnStarted twice");
                assert_eq!(turn.message_id, t.message_id);
                started = true;
            }
            BusMessage::Live {
                event: LiveEvent::Token { index, text, .. },
                ..
            } => {
                assert!(started, "a token before its turn started");
                assert_eq!(&**text, text_of(*index));
                if !have.insert(*index) {
                    seen.duplicates += 1;
                }
            }
            BusMessage::Durable { event, .. } if event.body.ends_turn().is_some() => {
                // Subscribed between the last token and the end: the end alone is fine.
                if started {
                    let want: BTreeSet<u64> = (0..n).collect();
                    assert_eq!(have, want, "tokens missing (snapshot {})", seen.snapshot);
                }
                return seen;
            }
            _ => {}
        }
    }
}

/// Same, through a real [`Feed`]: every token index once, in order, concatenating to the
/// reply.
async fn collect_feed(
    sub: Subscription,
    bus: Arc<dyn Bus>,
    chat: ChatKey,
    n: u64,
    done: Arc<AtomicBool>,
) {
    let joined_with_snapshot = sub.running_turn.is_some();
    let store = Arc::new(MemoryStore::new());
    let mut feed = Feed::new(chat, "conn".into(), 0, sub, store, bus, 1000);
    let mut next_index = 0;
    let mut text = String::new();
    let mut anything = joined_with_snapshot;
    loop {
        let item = match tokio::time::timeout(Duration::from_millis(1500), feed.next()).await {
            Ok(Ok(item)) => item,
            Ok(Err(e)) => panic!("feed ended: {e:?}"),
            Err(_) => {
                assert!(
                    done.load(Ordering::Acquire) && !anything,
                    "the feed stalled"
                );
                return;
            }
        };
        anything = true;
        match item {
            FeedItem::Tokens {
                index,
                through,
                text: t,
                ..
            } => {
                assert_eq!(index, next_index, "feed token index");
                next_index = through + 1;
                text.push_str(&t);
            }
            FeedItem::Durable(event) if event.body.ends_turn().is_some() => {
                if next_index > 0 || joined_with_snapshot {
                    assert_eq!(next_index, n, "feed stopped short");
                    let want: String = (0..n).map(text_of).collect();
                    assert_eq!(text, want);
                }
                return;
            }
            _ => {}
        }
    }
}

/// The turn buffer snapshot is atomic with the subscription: `n` tokens are published while
/// members subscribe again and again, on a node that already follows the chat and on nodes
/// that do not; each subscription's snapshot plus its live tokens, deduped by index, is
/// exactly `0..n`, and a [`Feed`] over it hands out each index once. Returns what each
/// subscription saw (so an implementation may check it sends no duplicates at all).
pub async fn snapshot_atomic_with_subscribe(c: &dyn Cluster, n: u64) -> Vec<Seen> {
    let chat = fresh_chat("snapshot");
    let t = turn("snap");
    let publisher = c.node(0).await;
    let done = Arc::new(AtomicBool::new(false));
    // One member from before the turn: it sees everything live.
    let early = c.node(1).await.subscribe(&chat).await.expect("subscribe");
    let mut collectors = vec![tokio::spawn(collect(early, t.clone(), n, done.clone()))];
    let mut feeds = Vec::new();
    let producer = {
        let (chat, t, done) = (chat.clone(), t.clone(), done.clone());
        tokio::spawn(async move {
            publisher.publish(&chat, started(&t)).await.expect("start");
            for i in 0..n {
                publisher
                    .publish(&chat, token(&t, i, &text_of(i)))
                    .await
                    .expect("token");
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
                if i % 16 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let text: String = (0..n).map(text_of).collect();
            publisher
                .publish(&chat, ended(&t, 1, &text, n))
                .await
                .expect("end");
            done.store(true, Ordering::Release);
        })
    };
    let mut k = 0;
    while !done.load(Ordering::Acquire) {
        // Alternate: the node that follows the chat (in-memory snapshot) and a fresh node
        // (snapshot read from the backend), raw and through a feed.
        let node = if k % 2 == 0 { 1 } else { 100 + k };
        let bus = c.node(node).await;
        let sub = bus.subscribe(&chat).await.expect("subscribe");
        if k % 4 == 3 {
            feeds.push(tokio::spawn(collect_feed(
                sub,
                bus,
                chat.clone(),
                n,
                done.clone(),
            )));
        } else {
            collectors.push(tokio::spawn(collect(sub, t.clone(), n, done.clone())));
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    producer.await.expect("producer");
    let mut seen = Vec::new();
    for c in collectors {
        seen.push(c.await.expect("collector"));
    }
    for f in feeds {
        f.await.expect("feed collector");
    }
    assert!(
        seen.iter().filter(|s| s.snapshot > 0).count() >= 2,
        "too few subscriptions landed mid-turn to test anything: {seen:?}"
    );
    seen
}

/// `TurnStarted` starts an empty buffer, tokens append in index order only for the running
/// turn, the turn's stored end or `TurnEndUnstored` drops it, and a new turn replaces it;
/// any node reads the same buffer.
pub async fn buffer_follows_the_turn(c: &dyn Cluster) {
    let chat = fresh_chat("buffer");
    let (p, other) = (c.node(0).await, c.node(1).await);
    let running = |bus: Arc<dyn Bus>, chat: ChatKey| async move {
        bus.running_turn(&chat)
            .await
            .expect("running_turn")
            .map(|s| {
                (
                    s.turn.message_id.to_string(),
                    s.tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                )
            })
    };
    let t1 = turn("b1");
    p.publish(&chat, started(&t1)).await.unwrap();
    assert_eq!(
        running(p.clone(), chat.clone()).await,
        Some((t1.message_id.to_string(), vec![]))
    );
    p.publish(&chat, token(&t1, 0, "a")).await.unwrap();
    p.publish(&chat, token(&t1, 1, "b")).await.unwrap();
    // Not the running turn, and a gap: neither is buffered.
    p.publish(&chat, token(&turn("zz"), 2, "x")).await.unwrap();
    p.publish(&chat, token(&t1, 5, "gap")).await.unwrap();
    let want = Some((
        t1.message_id.to_string(),
        vec!["a".to_owned(), "b".to_owned()],
    ));
    assert_eq!(running(p.clone(), chat.clone()).await, want);
    eventually("another node reads the buffer", || {
        let (other, chat, want) = (other.clone(), chat.clone(), want.clone());
        async move { running(other, chat).await == want }
    })
    .await;
    let sub = other.subscribe(&chat).await.unwrap();
    let snap = sub.running_turn.clone().expect("snapshot");
    assert_eq!(snap.tokens, vec![Arc::from("a"), Arc::from("b")]);
    // The end of another turn changes nothing; the stored end drops the buffer.
    p.publish(&chat, ended(&turn("other"), 1, "", 0))
        .await
        .unwrap();
    assert!(running(p.clone(), chat.clone()).await.is_some());
    p.publish(&chat, ended(&t1, 2, "ab", 2)).await.unwrap();
    assert_eq!(running(p.clone(), chat.clone()).await, None);
    drop(sub);
    eventually("the end reaches another node", || {
        let (other, chat) = (other.clone(), chat.clone());
        async move { running(other, chat).await.is_none() }
    })
    .await;
    let sub = other.subscribe(&chat).await.unwrap();
    assert!(sub.running_turn.is_none(), "a buffer after the turn's end");
    // An unstored end drops it too; a new turn replaces the old one.
    let t2 = turn("b2");
    p.publish(&chat, started(&t2)).await.unwrap();
    p.publish(&chat, token(&t2, 0, "c")).await.unwrap();
    p.publish(&chat, unstored_end(&t2)).await.unwrap();
    assert_eq!(running(p.clone(), chat.clone()).await, None);
    let (t3, t4) = (turn("b3"), turn("b4"));
    p.publish(&chat, started(&t3)).await.unwrap();
    p.publish(&chat, token(&t3, 0, "d")).await.unwrap();
    p.publish(&chat, started(&t4)).await.unwrap();
    assert_eq!(
        running(p.clone(), chat.clone()).await,
        Some((t4.message_id.to_string(), vec![]))
    );
    // The member subscribed before all this got it live, in order (durable events aside:
    // one published just before subscribing may still arrive, and feeds drop it by seq).
    let mut sub = sub;
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        let m = next(&mut sub).await;
        kinds.push(match &*m {
            BusMessage::Live {
                event: LiveEvent::TurnStarted { .. },
                ..
            } => "start",
            BusMessage::Live {
                event: LiveEvent::Token { .. },
                ..
            } => "token",
            BusMessage::Live {
                event: LiveEvent::TurnEndUnstored { .. },
                ..
            } => "unstored",
            BusMessage::Durable { .. } => continue,
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        kinds,
        ["start", "token", "unstored", "start", "token", "start"]
    );
    p.publish(&chat, ended(&t4, 3, "", 0)).await.unwrap();
}

/// A member that falls more than the channel's capacity behind is told it lagged, and
/// goes on with what follows; publishers never wait for it.
pub async fn slow_member_lags(c: &dyn Cluster) {
    let chat = fresh_chat("lag");
    let mut slow = c.node(1).await.subscribe(&chat).await.unwrap();
    let p = c.node(0).await;
    let n = c.capacity() * 4;
    let started_at = tokio::time::Instant::now();
    for i in 0..n {
        p.publish(&chat, typing(&format!("u{i}"))).await.unwrap();
    }
    assert!(
        started_at.elapsed() < PATIENCE,
        "publishers waited for a slow member"
    );
    // Wait until the last one arrived on the member's node, then read.
    let mut probe = c.node(1).await.subscribe(&chat).await.unwrap();
    p.publish(&chat, typing("last")).await.unwrap();
    loop {
        if let BusMessage::Live {
            event: LiveEvent::Typing { user_id, .. },
            ..
        } = &*next(&mut probe).await
            && &**user_id == "last"
        {
            break;
        }
    }
    match slow.rx.recv().await {
        Err(RecvError::Lagged(k)) => assert!(k > 0),
        other => panic!("expected a lag, got {other:?}"),
    }
    // Then it reads on.
    assert!(slow.rx.recv().await.is_ok());
}

/// User channels: every subscription of the user (any tab, any node, any scopes) gets the
/// event; other users and the same user id in another org do not.
pub async fn user_channels(c: &dyn Cluster) {
    let org = format!("org-u-{}", CHATS.fetch_add(1, Ordering::Relaxed));
    let ann = Identity::new(org.as_str(), "ann");
    let mut tab1 = c.node(1).await.subscribe_user(&ann).await.unwrap();
    let mut tab2 = c
        .node(2)
        .await
        .subscribe_user(&ann.clone().with_admin(true))
        .await
        .unwrap();
    let mut bob = c
        .node(1)
        .await
        .subscribe_user(&Identity::new(org.as_str(), "bob"))
        .await
        .unwrap();
    let mut elsewhere = c
        .node(1)
        .await
        .subscribe_user(&Identity::new("other-org", "ann"))
        .await
        .unwrap();
    let event = UserEvent {
        chat_id: "c:1".into(),
        reason: FollowReason::Created,
        after_seq: 3,
        origin: Some("conn-9".into()),
    };
    c.node(0)
        .await
        .publish_user(&ann, event.clone())
        .await
        .unwrap();
    for tab in [&mut tab1, &mut tab2] {
        let got = tokio::time::timeout(PATIENCE, tab.rx.recv())
            .await
            .expect("in time")
            .expect("event");
        assert_eq!(*got, event);
    }
    // A marker for bob, so his channel is known to be drained.
    let marker = UserEvent {
        chat_id: "m".into(),
        reason: FollowReason::Posted,
        after_seq: 0,
        origin: None,
    };
    c.node(0)
        .await
        .publish_user(&Identity::new(org.as_str(), "bob"), marker.clone())
        .await
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, bob.rx.recv())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(*got, marker, "bob got ann's event");
    assert!(
        elsewhere.rx.try_recv().is_err(),
        "another org's ann got the event"
    );
}

/// Ids are arbitrary strings: chats whose ids would collide if joined naively, or contain
/// key syntax, stay apart.
pub async fn ids_stay_apart(c: &dyn Cluster) {
    let base = CHATS.fetch_add(1, Ordering::Relaxed);
    let long = "x".repeat(300);
    let chats = [
        ChatKey::new(format!("a:b{base}"), "c"),
        ChatKey::new("a", format!("b{base}:c")),
        ChatKey::new(format!("o{{{base}}}"), "*?[]% \n"),
        ChatKey::new(format!("ö{base}"), "🙂"),
        ChatKey::new(format!("{long}{base}"), long.clone()),
    ];
    let mut subs = Vec::new();
    for chat in &chats {
        subs.push(c.node(1).await.subscribe(chat).await.unwrap());
    }
    let p = c.node(0).await;
    for (i, chat) in chats.iter().enumerate() {
        p.publish(chat, typing(&format!("for-{i}"))).await.unwrap();
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        match &*next(sub).await {
            BusMessage::Live {
                event: LiveEvent::Typing { user_id, .. },
                ..
            } => {
                assert_eq!(
                    &**user_id,
                    format!("for-{i}"),
                    "chat {i} got another chat's message"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Dropping the last subscription and subscribing again at once still delivers.
pub async fn resubscribe_after_drop(c: &dyn Cluster) {
    let chat = fresh_chat("resub");
    let (p, s) = (c.node(0).await, c.node(1).await);
    for i in 0..20 {
        let mut sub = s.subscribe(&chat).await.unwrap();
        p.publish(&chat, typing(&format!("r{i}"))).await.unwrap();
        match &*next(&mut sub).await {
            BusMessage::Live {
                event: LiveEvent::Typing { user_id, .. },
                ..
            } => {
                assert_eq!(&**user_id, format!("r{i}"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A node that published tokens and then subscribes (or reads the buffer) sees them: its own
/// publishes are not overtaken by its later reads.
pub async fn reads_follow_own_publishes(c: &dyn Cluster) {
    let chat = fresh_chat("ryw");
    let p = c.node(0).await;
    // Another member on the same node, so the second subscription is served locally.
    let _member = p.subscribe(&chat).await.unwrap();
    let t = turn("ryw");
    p.publish(&chat, started(&t)).await.unwrap();
    for round in 0..5u64 {
        for i in round * 10..round * 10 + 10 {
            p.publish(&chat, token(&t, i, &text_of(i))).await.unwrap();
        }
        let want = (round + 1) * 10;
        let sub = p.subscribe(&chat).await.unwrap();
        assert_eq!(
            sub.running_turn.as_ref().map(|s| s.tokens.len() as u64),
            Some(want)
        );
        let read = p
            .running_turn(&chat)
            .await
            .unwrap()
            .map(|s| s.tokens.len() as u64);
        assert_eq!(read, Some(want));
    }
    p.publish(&chat, ended(&t, 1, "", 50)).await.unwrap();
}

/// Every check above, one after another.
pub async fn run_all(c: &dyn Cluster) -> Vec<Seen> {
    order_per_publisher(c).await;
    buffer_follows_the_turn(c).await;
    slow_member_lags(c).await;
    user_channels(c).await;
    ids_stay_apart(c).await;
    resubscribe_after_drop(c).await;
    reads_follow_own_publishes(c).await;
    snapshot_atomic_with_subscribe(c, 2000).await
}
