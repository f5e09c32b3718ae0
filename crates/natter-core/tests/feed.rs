//! The member feed against the in-process bus: gap fill, lag recovery with coalesced tokens,
//! and no stale tokens after a turn ends.

use std::sync::Arc;

use natter_core::bus::Bus;
use natter_core::bus_memory::MemoryBus;
use natter_core::chat::ChatKey;
use natter_core::event::{BusMessage, EventBody, LiveEvent, TurnRef};
use natter_core::feed::{Feed, FeedItem};
use natter_core::store::Store;

mod common;
use common::LogStore;

/// The feed's next item; a feed that should have one but blocks fails the test instead of hanging.
async fn next_item(feed: &mut Feed) -> FeedItem {
    tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
        .await
        .expect("the feed produced nothing within 5 s")
        .expect("the feed ended")
}

fn turn() -> Arc<TurnRef> {
    Arc::new(TurnRef {
        message_id: "a1".into(),
        request_id: "r1".into(),
        trace_id: None,
    })
}

fn live(event: LiveEvent) -> BusMessage {
    BusMessage::Live {
        event,
        origin: None,
    }
}

fn user_message(id: &str) -> EventBody {
    EventBody::UserMessage {
        message_id: id.into(),
        user_id: "u".into(),
        text: "hi".into(),
        parts: None,
        request_id: None,
        trace_id: None,
    }
}

async fn setup(capacity: usize) -> (Arc<LogStore>, Arc<MemoryBus>, ChatKey, Feed) {
    let store = Arc::new(LogStore::default());
    let bus = Arc::new(MemoryBus::new(capacity));
    let chat = ChatKey::new("o", "c");
    let sub = bus.subscribe(&chat).await.unwrap();
    let head = store
        .open_chat(&chat, Some(&Default::default()))
        .await
        .unwrap()
        .unwrap()
        .head_seq;
    let feed = Feed::new(
        chat.clone(),
        "me".into(),
        head,
        sub,
        store.clone(),
        bus.clone(),
        1000,
    );
    (store, bus, chat, feed)
}

async fn publish_durable(store: &LogStore, bus: &MemoryBus, chat: &ChatKey, body: EventBody) {
    let event = store.append(chat, body, 0).await.unwrap().event().clone();
    bus.publish(
        chat,
        BusMessage::Durable {
            event: Arc::new(event),
            origin: None,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_lagging_member_gets_missed_tokens_coalesced_and_nothing_twice() {
    let (store, bus, chat, mut feed) = setup(16).await;
    let t = turn();
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    publish_durable(&store, &bus, &chat, user_message("m1")).await;
    // 100 tokens while the member reads nothing: far more than the channel's 16 slots.
    let mut expected = String::new();
    for i in 0..100u64 {
        let text = format!("t{i} ");
        expected.push_str(&text);
        bus.publish(
            &chat,
            live(LiveEvent::Token {
                turn: t.clone(),
                index: i,
                text: text.into(),
            }),
        )
        .await
        .unwrap();
    }
    let mut text = String::new();
    let mut next = 0;
    let mut events = 0;
    let mut saw_message = false;
    while next < 100 {
        match next_item(&mut feed).await {
            FeedItem::Tokens {
                index,
                through,
                text: t,
                ..
            } => {
                assert_eq!(index, next, "no gap and no duplicate");
                text.push_str(&t);
                next = through + 1;
                events += 1;
            }
            FeedItem::Durable(e) => {
                assert_eq!(e.seq, 2);
                saw_message = true;
            }
            FeedItem::Live(_) => {}
        }
    }
    assert!(
        saw_message,
        "the missed log event was refilled from the store"
    );
    assert_eq!(text, expected);
    assert!(
        events < 100,
        "the catch-up was coalesced ({events} events for 100 tokens)"
    );
}

#[tokio::test]
async fn a_seq_gap_is_filled_from_the_store_in_order() {
    let (store, bus, chat, mut feed) = setup(64).await;
    // seq 2 is stored but its publish is lost; seq 3 arrives.
    store.append(&chat, user_message("m1"), 0).await.unwrap();
    publish_durable(&store, &bus, &chat, user_message("m2")).await;
    let seqs: Vec<u64> = [next_item(&mut feed).await, next_item(&mut feed).await]
        .into_iter()
        .map(|i| match i {
            FeedItem::Durable(e) => e.seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![2, 3]);
}

#[tokio::test]
async fn tokens_of_an_ended_turn_are_dropped() {
    let (store, bus, chat, mut feed) = setup(64).await;
    let t = turn();
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    publish_durable(
        &store,
        &bus,
        &chat,
        EventBody::AssistantMessage {
            message_id: "a1".into(),
            request_id: "r1".into(),
            text: "x".into(),
            finish_reason: "stop".into(),
            usage: None,
            model: None,
            trace_id: None,
        },
    )
    .await;
    // A late token of the ended turn, then a marker event.
    bus.publish(
        &chat,
        live(LiveEvent::Token {
            turn: t.clone(),
            index: 0,
            text: "x".into(),
        }),
    )
    .await
    .unwrap();
    publish_durable(&store, &bus, &chat, user_message("m9")).await;
    let mut got = Vec::new();
    loop {
        let item = next_item(&mut feed).await;
        let done = matches!(&item, FeedItem::Durable(e) if e.seq == 3);
        got.push(item);
        if done {
            break;
        }
    }
    assert!(
        !got.iter().any(|i| matches!(i, FeedItem::Tokens { .. })),
        "{got:?}"
    );
}
