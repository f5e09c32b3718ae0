//! Redis-only behaviour: several nodes, Redis restarts, presence expiry, leases and control,
//! wire versions, batching. Each test runs its own redis-server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RedisServer, config};
use natter_bus_redis::{RedisConfig, RedisNode};
use natter_bus_tests::{PATIENCE, ended, fresh_chat, started, token, turn, typing};
use natter_core::bus::{Bus, Subscription};
use natter_core::chat::ChatKey;
use natter_core::coordinator::{Control, Coordinator};
use natter_core::event::{BusMessage, LiveEvent};
use natter_core::presence::Presence;
use natter_core::ring::RecvError;

async fn node(cfg: RedisConfig) -> RedisNode {
    RedisNode::connect(cfg).await.expect("connect")
}

fn typing_user(m: &BusMessage) -> Option<String> {
    match m {
        BusMessage::Live {
            event: LiveEvent::Typing { user_id, .. },
            ..
        } => Some(user_id.to_string()),
        _ => None,
    }
}

/// Reads until a typing event from `user` arrives; returns whether a lag came first.
async fn until_typing(sub: &mut Subscription, user: &str) -> bool {
    let mut lagged = false;
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "`{user}` never arrived");
        match tokio::time::timeout(PATIENCE, sub.rx.recv()).await {
            Ok(Ok(m)) if typing_user(&m).as_deref() == Some(user) => return lagged,
            Ok(Ok(_)) => {}
            Ok(Err(RecvError::Lagged(_))) => lagged = true,
            Ok(Err(RecvError::Closed)) => panic!("closed"),
            Err(_) => panic!("`{user}` never arrived"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_others_messages() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        node(config(&server.url())).await,
        node(config(&server.url())).await,
    );
    assert_ne!(a.node_id(), b.node_id());
    let chat = fresh_chat("two");
    let mut on_a = a.bus().subscribe(&chat).await.unwrap();
    let mut on_b = b.bus().subscribe(&chat).await.unwrap();
    a.bus().publish(&chat, typing("from-a")).await.unwrap();
    b.bus().publish(&chat, typing("from-b")).await.unwrap();
    for sub in [&mut on_a, &mut on_b] {
        assert!(!until_typing(sub, "from-a").await);
        assert!(!until_typing(sub, "from-b").await);
    }
    // One upstream subscription per chat per node, dropped with the last local member.
    let before = b.upstream_channels();
    let second = b.bus().subscribe(&chat).await.unwrap();
    assert_eq!(b.upstream_channels(), before);
    drop(on_b);
    drop(second);
    let deadline = Instant::now() + PATIENCE;
    while b.upstream_channels() >= before {
        assert!(
            Instant::now() < deadline,
            "the chat stayed subscribed upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.bus().subscribed_chats(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_stream() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        node(config(&server.url())).await,
        node(config(&server.url())).await,
    );
    let chat = fresh_chat("restart");
    let (pa, sb) = (a.bus(), b.bus());
    let mut sub = sb.subscribe(&chat).await.unwrap();
    let t = turn("restart");
    pa.publish(&chat, started(&t)).await.unwrap();
    for i in 0..10 {
        pa.publish(&chat, token(&t, i, "x")).await.unwrap();
    }
    pa.publish(&chat, typing("before")).await.unwrap();
    assert!(!until_typing(&mut sub, "before").await);

    server.stop();
    // Publishing fails, within a bounded time, and nothing hangs. (Tokens return once
    // queued, so the first few after the loss report nothing; the next one reports it.)
    let t0 = Instant::now();
    let mut i = 10;
    while pa.publish(&chat, token(&t, i, "y")).await.is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "publishing kept succeeding with Redis down"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "first publish error {:?} after the loss ({} tokens queued before it)",
        t0.elapsed(),
        i - 10
    );
    assert!(pa.publish(&chat, typing("down")).await.is_err());
    let t0 = Instant::now();
    assert!(b.ping().await.is_err());
    assert!(sb.subscribe(&fresh_chat("while-down")).await.is_err());
    assert!(sb.running_turn(&chat).await.is_err());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    server.restart();
    // Publishing recovers by itself.
    let deadline = Instant::now() + PATIENCE;
    while pa.publish(&chat, typing("probe")).await.is_err() {
        assert!(Instant::now() < deadline, "publishing did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The member is told it lagged, then gets live messages again.
    let mut lagged = false;
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no live message after the restart"
        );
        pa.publish(&chat, typing("after")).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), sub.rx.recv()).await {
            Ok(Err(RecvError::Lagged(_))) => lagged = true,
            Ok(Ok(m)) if typing_user(&m).as_deref() == Some("after") => break,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(RecvError::Closed)) => panic!("closed"),
        }
    }
    assert!(lagged, "the member was not told it lagged");
    let deadline = Instant::now() + PATIENCE;
    while b.ping().await.is_err() {
        assert!(Instant::now() < deadline, "ping did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The buffer went with Redis's data; a new turn buffers again and a new member gets it.
    let t2 = turn("restart-2");
    pa.publish(&chat, started(&t2)).await.unwrap();
    pa.publish(&chat, token(&t2, 0, "z")).await.unwrap();
    let fresh = b.bus().subscribe(&chat).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snap = sb.running_turn(&chat).await.unwrap();
        if snap.is_some_and(|s| s.tokens.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "no buffer after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(fresh);
    pa.publish(&chat, ended(&t2, 5, "z", 1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_versions_and_garbage_are_skipped() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        node(config(&server.url())).await,
        node(config(&server.url())).await,
    );
    let chat = ChatKey::new("org", "plain");
    let mut sub = b.bus().subscribe(&chat).await.unwrap();
    let channel = "natter:chat:org:plain";
    server.cli(&[
        "PUBLISH",
        channel,
        r#"{"v":2,"node":"x","ts":1,"msgs":[{"t":"typing","user":"v2","typing":true}]}"#,
    ]);
    server.cli(&["PUBLISH", channel, "not json"]);
    server.cli(&["PUBLISH", channel, r#"{"v":1,"node":"x","ts":1,"msgs":[{"t":"new_kind"},{"t":"typing","user":"mixed","typing":true}]}"#]);
    a.bus().publish(&chat, typing("valid")).await.unwrap();
    let m = tokio::time::timeout(PATIENCE, sub.rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(typing_user(&m).as_deref(), Some("mixed"));
    let m = tokio::time::timeout(PATIENCE, sub.rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(typing_user(&m).as_deref(), Some("valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_nodes_and_a_dead_node() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.presence_ttl = Duration::from_millis(800);
    let (a, b) = (node(cfg.clone()).await, node(cfg).await);
    let (pa, pb) = (a.presence(), b.presence());
    let chat = fresh_chat("presence");
    assert_eq!(pa.join(&chat, "ann", &"a1".into()).await, ["ann"]);
    assert_eq!(pa.join(&chat, "ann", &"a2".into()).await, ["ann"]);
    assert_eq!(pb.join(&chat, "bob", &"b1".into()).await, ["ann", "bob"]);
    assert_eq!(
        pb.join(&chat, "al", &"b2".into()).await,
        ["al", "ann", "bob"]
    );
    assert_eq!(pb.leave(&chat, "al", &"b2".into()).await, ["ann", "bob"]);
    assert_eq!(pa.leave(&chat, "ann", &"a2".into()).await, ["ann", "bob"]);
    assert_eq!(pb.online(&chat).await, ["ann", "bob"]);
    // Both nodes alive and refreshing: nobody leaves, past several TTLs.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2000) {
        assert!(pa.refresh().await.is_empty());
        assert!(pb.refresh().await.is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pb.online(&chat).await, ["ann", "bob"]);
    // Node A dies without leaving: B's refresh reports ann gone, once.
    drop(pa);
    drop(a);
    let t0 = Instant::now();
    let changed = loop {
        let changed = pb.refresh().await;
        if !changed.is_empty() {
            break changed;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the dead node's member never left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(changed, vec![(chat.clone(), vec!["bob".to_owned()])]);
    assert!(pb.refresh().await.is_empty());
    assert_eq!(pb.online(&chat).await, ["bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_exclusive_expire_and_belong_to_their_owner() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.lease_ttl = Duration::from_millis(400);
    let (a, b) = (node(cfg.clone()).await, node(cfg).await);
    let (ca, cb) = (a.coordinator(), b.coordinator());
    let chat = fresh_chat("lease");
    assert_eq!(ca.owner(&chat).await.unwrap(), None);
    assert!(ca.acquire(&chat).await.unwrap());
    assert!(!cb.acquire(&chat).await.unwrap());
    assert!(
        ca.acquire(&chat).await.unwrap(),
        "acquire again while holding"
    );
    assert_eq!(
        ca.owner(&chat).await.unwrap().as_deref(),
        Some(ca.node_id())
    );
    assert_eq!(
        cb.owner(&chat).await.unwrap().as_deref(),
        Some(ca.node_id())
    );
    // Only the owner renews or releases.
    assert!(!cb.renew(&chat).await.unwrap());
    cb.release(&chat).await.unwrap();
    assert_eq!(
        cb.owner(&chat).await.unwrap().as_deref(),
        Some(ca.node_id())
    );
    // Renewing keeps it past its TTL.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(ca.renew(&chat).await.unwrap());
    }
    assert!(!cb.acquire(&chat).await.unwrap());
    // Not renewed: free after the TTL.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ca.owner(&chat).await.unwrap(), None);
    assert!(cb.acquire(&chat).await.unwrap());
    assert!(!ca.renew(&chat).await.unwrap());
    ca.release(&chat).await.unwrap();
    assert_eq!(
        ca.owner(&chat).await.unwrap().as_deref(),
        Some(cb.node_id())
    );
    cb.release(&chat).await.unwrap();
    assert_eq!(ca.owner(&chat).await.unwrap(), None);
    assert_eq!(ca.lease_ttl(), Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_reaches_the_right_node_also_after_a_restart() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        node(config(&server.url())).await,
        node(config(&server.url())).await,
    );
    let (ca, cb) = (a.coordinator(), b.coordinator());
    let mut rx_a = ca.subscribe_control().await.unwrap();
    let mut rx_b = cb.subscribe_control().await.unwrap();
    let chat = fresh_chat("control");
    let abort = Control::Abort {
        chat: chat.clone(),
        request_id: Some("r1".into()),
        reason: Some("stop".into()),
    };
    ca.send(cb.node_id(), abort.clone()).await.unwrap();
    let got = tokio::time::timeout(PATIENCE, rx_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, abort);
    let result = Control::ToolResult {
        chat: chat.clone(),
        tool_call_id: "call-1".into(),
        outcome: Ok(serde_json::json!({"ok": true})),
    };
    cb.send(ca.node_id(), result.clone()).await.unwrap();
    let got = tokio::time::timeout(PATIENCE, rx_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, result);
    assert!(rx_a.try_recv().is_err() && rx_b.try_recv().is_err());
    // A node that is gone: the message is lost, not an error.
    ca.send("node-gone", Control::TurnQueued { chat: chat.clone() })
        .await
        .unwrap();

    server.restart();
    let queued = Control::TurnQueued { chat };
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "control did not come back after a restart"
        );
        if ca.send(cb.node_id(), queued.clone()).await.is_ok()
            && let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(200), rx_b.recv()).await
        {
            assert_eq!(got, queued);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_batch_under_load_and_go_out_at_once_when_idle() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        node(config(&server.url())).await,
        node(config(&server.url())).await,
    );
    let chat = fresh_chat("batch");
    let (pa, sb) = (a.bus(), b.bus());
    let mut sub = sb.subscribe(&chat).await.unwrap();
    let t = turn("batch");
    pa.publish(&chat, started(&t)).await.unwrap();

    // Idle: one token goes out on its own, at once.
    let mut idle_latency = Vec::new();
    for i in 0..20u64 {
        let t0 = Instant::now();
        pa.publish(&chat, token(&t, i, "i")).await.unwrap();
        loop {
            let m = tokio::time::timeout(PATIENCE, sub.rx.recv())
                .await
                .unwrap()
                .unwrap();
            if matches!(&*m, BusMessage::Live { event: LiveEvent::Token { index, .. }, .. } if *index == i)
            {
                break;
            }
        }
        idle_latency.push(t0.elapsed());
    }
    idle_latency.sort();
    let before = a.stats();

    // Loaded: a producer that does not wait (as a turn whose upstream is fast).
    const N: u64 = 5000;
    let t0 = Instant::now();
    let reader = tokio::spawn(async move {
        let mut received = 0;
        loop {
            let m = tokio::time::timeout(PATIENCE, sub.rx.recv())
                .await
                .unwrap()
                .unwrap();
            match &*m {
                BusMessage::Live {
                    event: LiveEvent::Token { .. },
                    ..
                } => received += 1,
                BusMessage::Durable { .. } => return (received, t0.elapsed()),
                _ => {}
            }
        }
    });
    for i in 20..20 + N {
        pa.publish(&chat, token(&t, i, "tok ")).await.unwrap();
    }
    pa.publish(&chat, ended(&t, 1, "", 20 + N)).await.unwrap();
    let publish_time = t0.elapsed();
    let (received, delivered_in) = reader.await.unwrap();
    assert_eq!(received, N);
    let after = a.stats();
    let ops = after.ops - before.ops;
    let batches = after.batches - before.batches;
    let ratio = ops as f64 / N as f64;
    eprintln!(
        "idle: p50 {:?} max {:?} publish→delivery per token; loaded: {N} tokens in {:?} \
         (delivered {:?}), {batches} batches, {ops} redis ops = {ratio:.3} ops/token",
        idle_latency[idle_latency.len() / 2],
        idle_latency.last().unwrap(),
        publish_time,
        delivered_in,
    );
    assert!(
        ratio < 0.5,
        "tokens were not batched: {ratio} ops per token"
    );
    let stats = b.stats();
    assert!(stats.tokens_received >= N + 20);
    // The buffer holds every token, in order, on any node.
    let snap = Arc::new(sb.running_turn(&chat).await.unwrap());
    assert!(snap.is_none(), "the end dropped the buffer");
}
