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
        origin: None,
        tools: None,
        attachments: None,
        role: None,
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
            token_count: None,
            warnings: None,
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

/// Turn ends with the count of token events the turn published.
fn assistant_message(text: &str, token_count: u64) -> EventBody {
    EventBody::AssistantMessage {
        message_id: "a1".into(),
        request_id: "r1".into(),
        text: text.into(),
        finish_reason: "stop".into(),
        usage: None,
        model: None,
        trace_id: None,
        token_count: Some(token_count),
        warnings: None,
    }
}

/// Reads the feed into `got` up to the turn's durable end.
async fn read_to_end(feed: &mut Feed, got: &mut Assembled) {
    while got.end.is_none() {
        got.take(next_item(feed).await);
    }
}

/// Publishes a turn of `count` tokens (multi-byte text, so a bad cut would show) and its end.
async fn publish_turn(store: &LogStore, bus: &MemoryBus, chat: &ChatKey, count: u64) -> String {
    let t = turn();
    bus.publish(chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    let mut full = String::new();
    for i in 0..count {
        let text = format!("é{i} ");
        full.push_str(&text);
        bus.publish(
            chat,
            live(LiveEvent::Token {
                turn: t.clone(),
                index: i,
                text: text.into(),
            }),
        )
        .await
        .unwrap();
    }
    publish_durable(store, bus, chat, assistant_message(&full, count)).await;
    full
}

#[tokio::test]
async fn a_member_lagging_across_the_end_of_a_turn_gets_its_tail_before_the_end() {
    let (store, bus, chat, mut feed) = setup(16).await;
    let t = turn();
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    // The member reads the first tokens live, then stops reading while the turn runs far
    // past the channel's 16 slots and ends: the bus drops the turn's buffer at the end.
    let mut full = String::new();
    for i in 0..5u64 {
        let text = format!("é{i} ");
        full.push_str(&text);
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
    let mut got = Assembled::default();
    while got.next < 5 {
        got.take(next_item(&mut feed).await);
    }
    for i in 5..2000u64 {
        let text = format!("é{i} ");
        full.push_str(&text);
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
    publish_durable(&store, &bus, &chat, assistant_message(&full, 2000)).await;
    assert!(bus.running_turn(&chat).await.unwrap().is_none());

    read_to_end(&mut feed, &mut got).await;
    assert_eq!(got.end.as_deref(), Some(full.as_str()));
    assert_eq!(got.next, 2000, "every index 0..2000 was covered");
    assert_eq!(got.text, full, "the tokens concatenate to the reply");
}

#[tokio::test]
async fn a_member_lagging_past_the_start_of_a_turn_gets_all_its_tokens() {
    let (store, bus, chat, mut feed) = setup(16).await;
    // The member reads nothing while the whole turn, its start included, goes by.
    let full = publish_turn(&store, &bus, &chat, 500).await;
    let mut got = Assembled::default();
    read_to_end(&mut feed, &mut got).await;
    assert_eq!(got.end.as_deref(), Some(full.as_str()));
    assert_eq!(got.next, 500, "every index 0..500 was covered");
    assert_eq!(got.text, full);
}

/// What a member has assembled of one turn, by the client rule of CONTRACT §6.4.
#[derive(Default)]
struct Assembled {
    text: String,
    next: u64,
    end: Option<String>,
}

impl Assembled {
    fn take(&mut self, item: FeedItem) {
        match item {
            FeedItem::Tokens {
                index,
                through,
                text,
                ..
            } => {
                if through < self.next {
                    return;
                }
                assert!(self.end.is_none(), "a token after the turn's end");
                assert_eq!(
                    index, self.next,
                    "token gap or straddle at {index}..={through}"
                );
                self.text.push_str(&text);
                self.next = through + 1;
            }
            FeedItem::Durable(e) => {
                if let EventBody::AssistantMessage { text, .. } = &e.body {
                    self.end = Some(text.clone());
                }
            }
            FeedItem::Live(_) => {}
        }
    }
}

#[tokio::test]
async fn a_slow_member_of_many_long_turns_always_gets_every_token() {
    let (store, bus, chat, mut feed) = setup(16).await;
    for round in 0..30u64 {
        // Each turn has its own message id, as real turns do.
        let t = Arc::new(TurnRef {
            message_id: format!("a{round}").into(),
            request_id: format!("r{round}").into(),
            trace_id: None,
        });
        let count = 200 + round * 37;
        // The member reads what is ready every `burst` tokens; bursts past the channel's 16
        // slots (the bus's minimum) make it lag, at a different point of each turn: in the
        // middle, or across the turn's end.
        let burst = 1 + (round * 7) % 61;
        let mut got = Assembled::default();
        bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
            .await
            .unwrap();
        let mut full = String::new();
        for i in 0..count {
            let text = format!("ü{round}.{i} ");
            full.push_str(&text);
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
            if i % burst == 0 {
                while let Some(item) = feed.next_if_ready().await {
                    got.take(item.expect("the feed ended"));
                }
            }
        }
        let mut end = assistant_message(&full, count);
        if let EventBody::AssistantMessage {
            message_id,
            request_id,
            ..
        } = &mut end
        {
            *message_id = t.message_id.to_string();
            *request_id = t.request_id.to_string();
        }
        publish_durable(&store, &bus, &chat, end).await;
        read_to_end(&mut feed, &mut got).await;
        assert_eq!(got.end.as_deref(), Some(full.as_str()), "round {round}");
        assert_eq!(got.next, count, "round {round}: every index covered");
        assert_eq!(
            got.text, full,
            "round {round}: the tokens concatenate to the reply"
        );
    }
}

#[tokio::test]
async fn an_end_event_without_a_token_count_still_loads_and_ends_the_turn() {
    let stored = r#"{"kind":"assistant_message","messageId":"a1","requestId":"r1","text":"hi","finishReason":"stop"}"#;
    let body: Result<EventBody, _> = serde_json::from_str(stored);
    match body {
        Ok(EventBody::AssistantMessage { token_count, .. }) => assert_eq!(token_count, None),
        other => panic!("an older stored end did not load: {other:?}"),
    }
}

/// Publishes token `index` of `turn` and appends its text to `full`.
async fn publish_token(
    bus: &MemoryBus,
    chat: &ChatKey,
    turn: &Arc<TurnRef>,
    index: u64,
    full: &mut String,
) {
    let text = format!("é{index} ");
    full.push_str(&text);
    bus.publish(
        chat,
        live(LiveEvent::Token {
            turn: turn.clone(),
            index,
            text: text.into(),
        }),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_member_that_joined_mid_turn_gets_no_run_that_could_straddle_what_it_holds() {
    let store = Arc::new(LogStore::default());
    let bus = Arc::new(MemoryBus::new(16));
    let chat = ChatKey::new("o", "c");
    let head = store
        .open_chat(&chat, Some(&Default::default()))
        .await
        .unwrap()
        .unwrap()
        .head_seq;
    let t = turn();
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    let mut full = String::new();
    for i in 0..3 {
        publish_token(&bus, &chat, &t, i, &mut full).await;
    }
    // Joins while the turn runs, then lags across the turn's end.
    let sub = bus.subscribe(&chat).await.unwrap();
    let mut feed = Feed::new(
        chat.clone(),
        "me".into(),
        head,
        sub,
        store.clone(),
        bus.clone(),
        1000,
    );
    for i in 3..100 {
        publish_token(&bus, &chat, &t, i, &mut full).await;
    }
    publish_durable(&store, &bus, &chat, assistant_message(&full, 100)).await;
    let mut got = Assembled::default();
    read_to_end(&mut feed, &mut got).await;
    assert_eq!(got.end.as_deref(), Some(full.as_str()));
    // The replayed tokens 0..3, one per index; the end's text cannot be split back into
    // indexes, so the tail is not sent as a run a reconnected client might hold part of.
    assert_eq!(got.next, 3);
}

#[tokio::test]
async fn a_failed_turn_sends_its_missed_tail_from_the_partial_text() {
    let (store, bus, chat, mut feed) = setup(16).await;
    let t = turn();
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    let mut full = String::new();
    for i in 0..60u64 {
        let text = format!("ß{i}");
        full.push_str(&text);
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
    let failed = EventBody::TurnFailed {
        message_id: "a1".into(),
        request_id: "r1".into(),
        code: "timeout".into(),
        message: "too slow".into(),
        retryable: true,
        partial_text: full.clone(),
        trace_id: None,
        token_count: Some(60),
    };
    publish_durable(&store, &bus, &chat, failed).await;
    let mut text = String::new();
    let mut next = 0;
    loop {
        match next_item(&mut feed).await {
            FeedItem::Tokens {
                index,
                through,
                text: part,
                ..
            } => {
                assert_eq!(index, next, "token gap or straddle at {index}..={through}");
                text.push_str(&part);
                next = through + 1;
            }
            FeedItem::Durable(e) if e.body.ends_turn().is_some() => break,
            _ => {}
        }
    }
    assert_eq!(next, 60);
    assert_eq!(text, full);
}

#[tokio::test]
async fn a_repeated_start_of_the_turn_in_hand_does_not_replay_its_tokens() {
    let (_store, bus, chat, mut feed) = setup(64).await;
    let t = turn();
    let token = |i: u64| {
        live(LiveEvent::Token {
            turn: t.clone(),
            index: i,
            text: format!("t{i} ").into(),
        })
    };
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    bus.publish(&chat, token(0)).await.unwrap();
    // A bus that delivers the start again (e.g. after resubscribing) must not reset the
    // member's place in the turn.
    bus.publish(&chat, live(LiveEvent::TurnStarted { turn: t.clone() }))
        .await
        .unwrap();
    bus.publish(&chat, token(1)).await.unwrap();
    let mut indexes = Vec::new();
    while indexes.len() < 2 {
        if let FeedItem::Tokens { index, .. } = next_item(&mut feed).await {
            indexes.push(index);
        }
    }
    assert_eq!(indexes, vec![0, 1]);
}

#[tokio::test]
async fn a_refilled_message_of_the_members_own_connection_is_not_echoed() {
    let (store, bus, chat, mut feed) = setup(64).await;
    // seq 2, sent by this member's connection ("me"), arrives late (another node); seq 3 from
    // someone else arrives first, so the feed refills 2 from the store.
    let mut own = user_message("mine");
    if let EventBody::UserMessage { origin, .. } = &mut own {
        *origin = Some("me".into());
    }
    store.append(&chat, own, 0).await.unwrap();
    publish_durable(&store, &bus, &chat, user_message("theirs")).await;
    match next_item(&mut feed).await {
        FeedItem::Durable(e) => {
            assert_eq!(e.seq, 3, "the member's own message is not echoed: {e:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
}
