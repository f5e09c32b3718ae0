//! The log itself: sequencing, idempotency, visibility, epoch, isolation, reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use natter_core::chat::{ChatKey, ChatScope, NewChat};
use natter_core::event::EventBody;
use natter_core::store::{Appended, Store, StoreError};

use crate::fixtures::*;

/// **Sequencing**: many tasks appending to one chat at once get `seq`s head+1, head+2, …
/// with no gap and no `seq` twice; each task's own appends get increasing `seq`s; the log
/// holds each event at the `seq` its append returned. A second chat appended to at the same
/// time has its own sequence.
pub async fn sequencing_is_gapless_under_concurrency(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const EACH: usize = 50;
    const OTHER_TASKS: usize = 4;
    let chat = ChatKey::new("org", "busy");
    let other = ChatKey::new("org", "also-busy");
    create(&*store, &chat, &NewChat::default()).await;
    create(&*store, &other, &NewChat::default()).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS + OTHER_TASKS {
        let store = store.clone();
        let chat = if t < TASKS {
            chat.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let id = format!("t{t}-m{i}");
                let seq = append_new(&*store, &chat, user(&id, "u", "hi"), i as i64).await;
                got.push((seq, id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut all_other = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let got = task.await.expect("an appending task panicked");
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "Sequencing: one task's successive appends got seqs that do not increase: {:?}",
            got.iter().map(|g| g.0).collect::<Vec<_>>()
        );
        if t < TASKS {
            all.extend(got);
        } else {
            all_other.extend(got);
        }
    }
    for (chat, mut got, n) in [
        (&chat, all, TASKS * EACH),
        (&other, all_other, OTHER_TASKS * EACH),
    ] {
        got.sort();
        let want: Vec<u64> = (2..=n as u64 + 1).collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            want,
            "Sequencing: {n} concurrent appends to {chat} must get exactly seqs 2..={} \
             (chat_created is 1): no gap, no seq twice",
            n + 1
        );
        let events = log(&*store, chat).await;
        assert_eq!(
            seqs(&events),
            (1..=n as u64 + 1).collect::<Vec<_>>(),
            "Sequencing: events_after(0) must return every event of {chat} once, in seq order"
        );
        for ((seq, id), event) in got.iter().zip(&events[1..]) {
            assert_eq!(
                (event.seq, event.body.message_id()),
                (*seq, Some(id.as_str())),
                "Sequencing: the log must hold each event at the seq its append returned"
            );
        }
        assert_eq!(
            head(&*store, chat).await,
            n as u64 + 1,
            "Sequencing: the head is the last seq"
        );
        let summary = store.chat_summary(chat).await.ok().flatten();
        assert_eq!(
            summary.map(|s| s.head_seq),
            Some(n as u64 + 1),
            "Summary kept with the log: chat_summary's head_seq is the last seq"
        );
    }
}

/// **Idempotency**: a user message whose `messageId` the chat holds is not stored again;
/// the append returns the stored event (its `seq`, text and time) as a duplicate, even
/// after other events, and the head does not move. The key is per chat.
pub async fn idempotency_stores_a_message_once(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    let other = ChatKey::new("org", "c2");
    create(&*store, &chat, &NewChat::default()).await;
    create(&*store, &other, &NewChat::default()).await;
    let first = append(&*store, &chat, user("m1", "ann", "first text"), 10).await;
    let Appended::New(stored) = first else {
        panic!("Idempotency: the first append of a messageId must be New, got {first:?}");
    };
    assert_eq!(
        stored.seq, 2,
        "Sequencing: the first append after creation is seq 2"
    );
    let again = append(&*store, &chat, user("m1", "ann", "resent, other text"), 11).await;
    assert_eq!(
        again,
        Appended::Duplicate(stored.clone()),
        "Idempotency: a resent messageId must return the stored event (same seq, text and time) as Duplicate"
    );
    append_new(&*store, &chat, answered("a1", "r1"), 12).await;
    append_new(&*store, &chat, user("m2", "bob", "second"), 13).await;
    let later = append(&*store, &chat, asked("m1", "r-resent"), 14).await;
    assert_eq!(
        later,
        Appended::Duplicate(stored.clone()),
        "Idempotency: a messageId stays a duplicate after other events"
    );
    assert_eq!(
        head(&*store, &chat).await,
        4,
        "Idempotency: a duplicate must not move the head"
    );
    assert_eq!(
        ids(&log(&*store, &chat).await),
        ["chat_created", "m1", "a1", "m2"],
        "Idempotency: a duplicate must not be stored"
    );
    assert!(
        matches!(
            append(&*store, &other, user("m1", "ann", "x"), 15).await,
            Appended::New(ref e) if e.seq == 2
        ),
        "Idempotency: the same messageId in another chat is another message"
    );
    // Events without a key are never duplicates, even when they repeat.
    append_new(&*store, &chat, answered("a1", "r1"), 16).await;
}

/// **Idempotency** under races: many tasks appending one `messageId` at once store it once;
/// exactly one gets `New`, every other gets `Duplicate` of that same event.
pub async fn idempotency_under_concurrent_duplicates(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    append_new(&*store, &chat, user("before", "u", "x"), 1).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let chat = chat.clone();
            tokio::spawn(async move {
                store
                    .append(&chat, user("same", "u", &format!("try {i}")), i as i64)
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        let r = task.await.expect("an appending task panicked");
        results.push(r.unwrap_or_else(|e| panic!("a concurrent duplicate append failed: {e}")));
    }
    let new: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Appended::New(_)))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "Idempotency: {TASKS} concurrent appends of one messageId must give exactly one New: {results:?}"
    );
    let stored = new[0].event().clone();
    assert!(
        results.iter().all(|r| r.event() == &stored),
        "Idempotency: every concurrent duplicate must return the one stored event: {results:?}"
    );
    let events = log(&*store, &chat).await;
    assert_eq!(
        ids(&events),
        ["chat_created", "before", "same"],
        "Idempotency: a messageId raced by {TASKS} tasks must be stored once"
    );
    assert_eq!(
        head(&*store, &chat).await,
        3,
        "Sequencing: the head after the race"
    );
}

/// **Visibility order**: once an append of `seq` n returned, `events_after` on any
/// connection returns every event up to n; a reader polling while writers append never sees
/// a `seq` before all lower ones.
pub async fn visibility_has_no_holes_for_readers(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, chat, done) = (store.clone(), chat.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                let got = store
                    .events_after(&chat, last, 1000)
                    .await
                    .unwrap_or_else(|e| panic!("events_after failed: {e}"));
                for e in &got {
                    assert_eq!(
                        e.seq,
                        last + 1,
                        "Visibility order: a reader after seq {last} got seq {} first (a hole)",
                        e.seq
                    );
                    last = e.seq;
                }
                if finished {
                    return last;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, chat) = (store.clone(), chat.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    let n =
                        append_new(&*store, &chat, user(&format!("w{w}-{i}"), "u", "x"), 0).await;
                    let upto = store
                        .events_after(&chat, 0, n as usize)
                        .await
                        .unwrap_or_else(|e| panic!("events_after failed: {e}"));
                    assert_eq!(
                        seqs(&upto),
                        (1..=n).collect::<Vec<_>>(),
                        "Visibility order: right after the append of seq {n} returned, \
                         every seq <= {n} must be readable"
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("a writer task panicked");
    }
    done.store(true, Ordering::Release);
    let last = reader.await.expect("the reader task panicked");
    assert_eq!(
        last,
        (WRITERS * EACH) as u64 + 1,
        "Visibility order: after every append returned, a reader must reach the head"
    );
}

/// **Epoch**: set once at creation (with a `chat_created` event at seq 1, even with several
/// creators racing); reopening and appending keep it; a chat deleted and created again has
/// a new epoch and a new log.
pub async fn epoch_is_fixed_and_new_after_recreate(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    assert!(
        matches!(store.open_chat(&chat, None).await, Ok(None)),
        "Epoch: open_chat without create on an absent chat must be Ok(None)"
    );
    assert!(
        matches!(store.chat_summary(&chat).await, Ok(None)),
        "Epoch: opening without create must not create the chat"
    );
    let new = NewChat {
        created_by: Some("ann".into()),
        metadata: Some(serde_json::json!({"agentName": "helper"})),
        members: Some(vec!["bob".into()]),
    };
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, chat, new) = (store.clone(), chat.clone(), new.clone());
            tokio::spawn(async move { store.open_chat(&chat, Some(&new)).await })
        })
        .collect();
    let mut infos = Vec::new();
    for t in tasks {
        let info = t.await.expect("an opening task panicked");
        infos.push(
            info.ok()
                .flatten()
                .expect("open_chat with create must return the chat"),
        );
    }
    let info = infos[0].clone();
    assert!(
        infos.iter().all(|i| i.epoch == info.epoch),
        "Epoch: concurrent creators of one chat must all get its one epoch: {infos:?}"
    );
    let events = log(&*store, &chat).await;
    assert_eq!(
        events.len(),
        1,
        "Epoch: a chat created by racing openers has exactly one chat_created event: {events:?}"
    );
    assert_eq!(
        events[0].body,
        EventBody::ChatCreated {
            created_by: Some("ann".into()),
            metadata: Some(serde_json::json!({"agentName": "helper"})),
            members: Some(vec!["bob".into()]),
        },
        "Epoch: the log starts with the chat_created event of the NewChat"
    );
    assert_eq!(events[0].seq, 1, "Epoch: chat_created is seq 1");
    append_new(&*store, &chat, user("m1", "ann", "hi"), 5).await;
    let again = store
        .open_chat(&chat, Some(&NewChat::default()))
        .await
        .ok()
        .flatten()
        .expect("reopening an existing chat must return it");
    assert_eq!(
        (again.epoch.as_str(), again.head_seq, again.created_at),
        (info.epoch.as_str(), 2, info.created_at),
        "Epoch: reopening (even with create) keeps epoch and creation time and reports the head"
    );
    assert!(
        store.delete_chat(&chat).await.unwrap_or(false),
        "Real delete: deleting an existing chat must return true"
    );
    let recreated = create(&*store, &chat, &NewChat::default()).await;
    assert_ne!(
        recreated.epoch, info.epoch,
        "Epoch: a chat created again after a delete must get a new epoch"
    );
    assert_eq!(
        ids(&log(&*store, &chat).await),
        ["chat_created"],
        "Real delete: the recreated chat's log starts afresh"
    );
}

/// **Isolation**: one chat id in two orgs is two chats: their logs, keys, summaries, lists,
/// turns, fences and deletes never mix.
pub async fn orgs_are_isolated(store: Arc<dyn Store>) {
    let a = ChatKey::new("org-a", "same");
    let b = ChatKey::new("org-b", "same");
    let info_a = create(&*store, &a, &created_by("ann")).await;
    let info_b = create(&*store, &b, &created_by("bob")).await;
    assert_ne!(
        info_a.epoch, info_b.epoch,
        "Isolation: two orgs' chats of one id are two chats (two epochs)"
    );
    append_new(&*store, &a, asked("m1", "r1"), 10).await;
    append_new(&*store, &a, user("m2", "ann", "more"), 11).await;
    assert!(
        matches!(append(&*store, &b, user("m1", "bob", "other org"), 12).await, Appended::New(ref e) if e.seq == 2),
        "Isolation: another org's messageId is not a duplicate, and its seqs are its own"
    );
    assert_eq!(head(&*store, &a).await, 3, "Isolation: org-a's head");
    assert_eq!(head(&*store, &b).await, 2, "Isolation: org-b's head");
    let b_log = log(&*store, &b).await;
    assert!(
        b_log.iter().all(|e| match &e.body {
            EventBody::UserMessage { user_id, .. } => user_id == "bob",
            _ => true,
        }) && b_log.len() == 2,
        "Isolation: org-b's log must hold only org-b's events: {b_log:?}"
    );
    let found = store.find_message(&b, "m2").await;
    assert!(
        matches!(found, Ok(None)),
        "Isolation: find_message must not find another org's message: {found:?}"
    );
    let sa = store.chat_summary(&a).await.ok().flatten();
    let sb = store.chat_summary(&b).await.ok().flatten();
    assert_eq!(
        (
            sa.as_ref().and_then(|s| s.title.as_deref()),
            sb.as_ref().and_then(|s| s.title.as_deref())
        ),
        (Some("hi"), Some("other org")),
        "Isolation: each org's chat has its own summary"
    );
    assert_eq!(
        sb.map(|s| s.key),
        Some(b.clone()),
        "Isolation: a summary's key is its own org's"
    );
    let list_a = store.list_chats("org-a", &ChatScope::Org, 10, 0).await;
    let keys_a: Vec<_> = list_a
        .as_ref()
        .map(|p| p.chats.iter().map(|c| c.key.clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        (keys_a, list_a.map(|p| p.total).ok()),
        (vec![a.clone()], Some(1)),
        "Isolation: list_chats of org-a lists only org-a's chats"
    );
    let ann_in_b = store
        .list_chats("org-b", &ChatScope::Member("ann".into()), 10, 0)
        .await
        .map(|p| p.total);
    assert!(
        matches!(ann_in_b, Ok(0)),
        "Isolation: a member of org-a's chat is no member of org-b's: {ann_in_b:?}"
    );
    let turns_b = store.open_turns(&b).await;
    assert!(
        matches!(turns_b, Ok(ref t) if t.is_empty()),
        "Isolation: org-a's open turn must not appear in org-b's chat: {turns_b:?}"
    );
    let with_turns = store.chats_with_open_turns(10).await;
    assert!(
        matches!(with_turns, Ok(ref c) if c == std::slice::from_ref(&a)),
        "Isolation: chats_with_open_turns must name the org of the chat: {with_turns:?}"
    );
    let fence_b = store.claim_turns(&b).await.expect("claim_turns failed");
    for _ in 0..2 {
        store.claim_turns(&a).await.expect("claim_turns failed");
    }
    let r = append_guarded(
        &*store,
        &b,
        user("m9", "bob", "x"),
        13,
        natter_core::store::Guard::Fence(fence_b),
    )
    .await;
    assert!(
        matches!(r, Ok(Appended::New(_))),
        "Isolation: claiming org-a's chat must not overtake the owner of org-b's: {r:?}"
    );
    assert!(
        store.delete_chat(&a).await.unwrap_or(false),
        "Real delete: delete of an existing chat returns true"
    );
    assert_eq!(
        ids(&log(&*store, &b).await),
        ["chat_created", "m1", "m9"],
        "Isolation: deleting org-a's chat must leave org-b's alone"
    );
}

/// Reads page by `seq` and `limit`: `events_after`, `messages_after` (messages and tool
/// events, oldest first) and `recent_messages` (the latest messages up to a `seq`, oldest
/// first), including limits of 0 and bounds past the head or at `u64::MAX`.
pub async fn reads_page_by_seq_and_limit(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    // seq 2..=31: 30 user messages.
    for i in 0..30 {
        append_new(&*store, &chat, user(&format!("m{i}"), "u", "x"), i).await;
    }
    let page = |after: u64, limit: usize| {
        let store = store.clone();
        let chat = chat.clone();
        async move {
            seqs(
                &store
                    .events_after(&chat, after, limit)
                    .await
                    .unwrap_or_else(|e| panic!("events_after failed: {e}")),
            )
        }
    };
    assert_eq!(
        page(0, 10).await,
        (1..=10).collect::<Vec<_>>(),
        "Paging: events_after(0, 10)"
    );
    assert_eq!(
        page(10, 10).await,
        (11..=20).collect::<Vec<_>>(),
        "Paging: events_after(10, 10)"
    );
    assert_eq!(
        page(25, 100).await,
        (26..=31).collect::<Vec<_>>(),
        "Paging: events_after(25, 100)"
    );
    assert!(
        page(31, 10).await.is_empty(),
        "Paging: events_after(head) is empty"
    );
    assert!(
        page(u64::MAX, 10).await.is_empty(),
        "Paging: events_after(u64::MAX) is empty"
    );
    assert!(
        page(0, 0).await.is_empty(),
        "Paging: a limit of 0 returns nothing"
    );

    // seq 32..: a turn with tool events, a receipt, a rename, a failed turn, more messages.
    let t = 100;
    let s_call = append_new(&*store, &chat, tool_call("a1", "r1", "c1"), t).await;
    let s_result = append_new(&*store, &chat, tool_result("a1", "r1", "c1"), t).await;
    let s_reply = append_new(&*store, &chat, answered("a1", "r1"), t).await;
    append_new(
        &*store,
        &chat,
        EventBody::ReadReceipt {
            user_id: "u".into(),
            message_ids: vec!["a1".into()],
            read_at: t,
            trace_id: None,
            origin: None,
        },
        t,
    )
    .await;
    append_new(&*store, &chat, updated(Some("renamed"), None, None), t).await;
    append_new(&*store, &chat, failed("f1", "r2"), t).await;
    let s_last = append_new(&*store, &chat, user("last", "u", "x"), t).await;

    let history = |after: u64, limit: usize| {
        let store = store.clone();
        let chat = chat.clone();
        async move {
            ids(&store
                .messages_after(&chat, after, limit)
                .await
                .unwrap_or_else(|e| panic!("messages_after failed: {e}")))
        }
    };
    assert_eq!(
        history(28, 100).await,
        ["m27", "m28", "m29", "call:c1", "result:c1", "a1", "last"],
        "Paging: messages_after holds user and assistant messages and tool events only, oldest first"
    );
    assert_eq!(
        history(0, 3).await,
        ["m0", "m1", "m2"],
        "Paging: messages_after(0, 3) is the first 3"
    );
    assert_eq!(
        history(s_call, 2).await,
        ["result:c1", "a1"],
        "Paging: messages_after pages by seq (after the tool call)"
    );
    assert!(
        history(s_last, 10).await.is_empty(),
        "Paging: messages_after(head) is empty"
    );
    assert!(
        history(u64::MAX, 10).await.is_empty(),
        "Paging: messages_after(u64::MAX) is empty"
    );
    assert!(
        history(0, 0).await.is_empty(),
        "Paging: messages_after with limit 0 is empty"
    );

    let recent = |up_to: u64, limit: usize| {
        let store = store.clone();
        let chat = chat.clone();
        async move {
            ids(&store
                .recent_messages(&chat, up_to, limit)
                .await
                .unwrap_or_else(|e| panic!("recent_messages failed: {e}")))
        }
    };
    assert_eq!(
        recent(u64::MAX, 3).await,
        ["m29", "a1", "last"],
        "Paging: recent_messages(u64::MAX, 3) is the latest 3 messages (no tool events), oldest first"
    );
    assert_eq!(
        recent(s_result, 2).await,
        ["m28", "m29"],
        "Paging: recent_messages(up_to) holds only messages with seq <= up_to"
    );
    assert_eq!(
        recent(s_reply, 1).await,
        ["a1"],
        "Paging: recent_messages includes the message at seq == up_to"
    );
    assert_eq!(
        recent(3, 10).await,
        ["m0", "m1"],
        "Paging: recent_messages near the start"
    );
    assert!(
        recent(1, 10).await.is_empty(),
        "Paging: no message up to seq 1"
    );
    assert!(
        recent(u64::MAX, 0).await.is_empty(),
        "Paging: recent_messages with limit 0"
    );

    let missing = ChatKey::new("org", "missing");
    assert!(
        nothing(&store.events_after(&missing, 0, 10).await)
            && nothing(&store.messages_after(&missing, 0, 10).await)
            && nothing(&store.recent_messages(&missing, u64::MAX, 10).await),
        "Paging: reads of a chat that does not exist return nothing (or NoSuchChat)"
    );
}

/// `find_message` returns the event that created a message (user, assistant, failed turn),
/// not a tool event or receipt naming the same id, and nothing for another chat's message.
pub async fn find_message_finds_what_created_a_message(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    let other = ChatKey::new("org", "other");
    create(&*store, &chat, &NewChat::default()).await;
    create(&*store, &other, &NewChat::default()).await;
    let s_user = append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    append_new(&*store, &chat, tool_call("a1", "r1", "c1"), 2).await;
    append_new(&*store, &chat, tool_result("a1", "r1", "c1"), 3).await;
    let s_reply = append_new(&*store, &chat, answered("a1", "r1"), 4).await;
    append_new(
        &*store,
        &chat,
        EventBody::ReadReceipt {
            user_id: "bob".into(),
            message_ids: vec!["m1".into(), "f1".into()],
            read_at: 5,
            trace_id: None,
            origin: None,
        },
        5,
    )
    .await;
    let s_failed = append_new(&*store, &chat, failed("f1", "r2"), 6).await;
    for (id, seq, kind) in [
        ("m1", s_user, "user_message"),
        ("a1", s_reply, "assistant_message"),
        ("f1", s_failed, "turn_failed"),
    ] {
        let found = store
            .find_message(&chat, id)
            .await
            .unwrap_or_else(|e| panic!("find_message failed: {e}"));
        assert_eq!(
            found.as_ref().map(|e| (e.seq, e.body.kind())),
            Some((seq, kind)),
            "find_message({id}) must return the {kind} that created it: {found:?}"
        );
    }
    assert!(
        matches!(store.find_message(&chat, "c1").await, Ok(None)),
        "find_message must not return a tool event by its call id"
    );
    assert!(
        matches!(store.find_message(&chat, "nope").await, Ok(None)),
        "find_message of an unknown id is None"
    );
    assert!(
        matches!(store.find_message(&other, "m1").await, Ok(None)),
        "Isolation: find_message must not find another chat's message"
    );
    let missing = store
        .find_message(&ChatKey::new("org", "missing"), "m1")
        .await;
    assert!(
        matches!(missing, Ok(None) | Err(StoreError::NoSuchChat(_))),
        "find_message in a chat that does not exist finds nothing: {missing:?}"
    );
}
