//! What the store keeps with the log: summaries and lists, superseded messages, receipts,
//! and what a delete removes.

use std::sync::Arc;

use natter_core::chat::{ChatKey, ChatScope, ChatStatus, ChatSummary, NewChat, title_from_text};
use natter_core::event::EventBody;
use natter_core::store::{Store, StoreError};

use crate::fixtures::*;

async fn summary(store: &dyn Store, chat: &ChatKey) -> ChatSummary {
    store
        .chat_summary(chat)
        .await
        .unwrap_or_else(|e| panic!("chat_summary({chat}) failed: {e}"))
        .unwrap_or_else(|| panic!("chat_summary({chat}) is None for an existing chat"))
}

/// **Summary kept with the log**: the creation fields, the title from the first user message
/// (`title_from_text`) until a rename, pin and unpin, the end status, the member list (an
/// empty one opens the chat again), the latest activity time (never going back) and the head.
pub async fn summaries_follow_the_log(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    let new = NewChat {
        created_by: Some("ann".into()),
        metadata: Some(serde_json::json!({"agentName": "helper", "n": 1})),
        members: None,
    };
    let info = create(&*store, &chat, &new).await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        s,
        ChatSummary {
            key: chat.clone(),
            title: None,
            pinned: false,
            status: ChatStatus::Active,
            created_by: Some("ann".into()),
            metadata: Some(serde_json::json!({"agentName": "helper", "n": 1})),
            created_at: info.created_at,
            updated_at: info.created_at,
            head_seq: 1,
            epoch: info.epoch.clone(),
            members: None,
            waiting_since: None,
            human_agents: Vec::new(),
            csat: None,
        },
        "Summary kept with the log: a new chat's summary"
    );
    let t = info.created_at + 1000;
    let first = "  What is the   refund policy for orders placed before the spring sale of last year?\nmore";
    append_new(&*store, &chat, user("m1", "bob", first), t).await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.title.as_deref(), s.updated_at, s.head_seq),
        (Some(title_from_text(first).as_str()), t, 2),
        "Summary kept with the log: the title comes from the first user message (title_from_text), \
         updated_at is the event's time, head_seq the new head"
    );
    append_new(&*store, &chat, user("m2", "bob", "second"), t + 1).await;
    append_new(&*store, &chat, answered("a1", "r1"), t - 500).await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.title.as_deref(), s.updated_at),
        (Some(title_from_text(first).as_str()), t + 1),
        "Summary kept with the log: a later message keeps the title, and an event with an \
         older time does not move the latest activity back"
    );
    append_new(&*store, &chat, updated(Some("Refunds"), None, None), t + 2).await;
    append_new(&*store, &chat, user("m3", "bob", "third"), t + 3).await;
    assert_eq!(
        summary(&*store, &chat).await.title.as_deref(),
        Some("Refunds"),
        "Summary kept with the log: a rename sets the title, later messages keep it"
    );
    append_new(&*store, &chat, updated(None, Some(true), None), t + 4).await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.title.as_deref(), s.pinned),
        (Some("Refunds"), true),
        "Summary kept with the log: a pin without a title keeps the title"
    );
    append_new(
        &*store,
        &chat,
        updated(None, None, Some(&["bob", "cat"])),
        t + 5,
    )
    .await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.pinned, s.members),
        (true, Some(vec!["bob".to_owned(), "cat".to_owned()])),
        "Summary kept with the log: a member list sets members and keeps the pin"
    );
    append_new(&*store, &chat, updated(None, Some(false), Some(&[])), t + 6).await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.pinned, s.members, s.status),
        (false, None, ChatStatus::Active),
        "Summary kept with the log: unpin; an empty member list opens the chat to the org (None)"
    );
    append_new(
        &*store,
        &chat,
        EventBody::ChatEnded {
            ended_by: Some("ann".into()),
            reason: None,
        },
        t + 7,
    )
    .await;
    let s = summary(&*store, &chat).await;
    assert_eq!(
        (s.status, s.updated_at, s.head_seq, s.created_at, s.epoch),
        (
            ChatStatus::Closed,
            t + 7,
            10,
            info.created_at,
            info.epoch.clone()
        ),
        "Summary kept with the log: ChatEnded closes the chat; creation fields never change"
    );

    // A members-only chat: its list from creation; an empty list at creation is org-wide.
    let private = ChatKey::new("org", "private");
    create(
        &*store,
        &private,
        &NewChat {
            created_by: Some("ann".into()),
            metadata: None,
            members: Some(vec!["bob".into()]),
        },
    )
    .await;
    assert_eq!(
        summary(&*store, &private).await.members,
        Some(vec!["bob".to_owned()]),
        "Summary kept with the log: a NewChat's member list"
    );
    let open = ChatKey::new("org", "open");
    create(
        &*store,
        &open,
        &NewChat {
            created_by: None,
            metadata: None,
            members: Some(Vec::new()),
        },
    )
    .await;
    assert_eq!(
        summary(&*store, &open).await.members,
        None,
        "Summary kept with the log: an empty member list at creation is an org-wide chat"
    );
}

/// `list_chats`: pinned first, then latest activity first, then chat id; `total` counts the
/// whole scope; `limit` and `offset` page; `Member` holds the chats a user created or posted
/// in; every listed summary is the chat's `chat_summary`.
pub async fn list_chats_orders_scopes_and_pages(store: Arc<dyn Store>) {
    let key = |id: &str| ChatKey::new("org", id);
    let mut created_at = 0;
    for (id, by) in [("a", "ann"), ("b", "bob"), ("c", "bob"), ("d", "bob")] {
        let info = create(&*store, &key(id), &created_by(by)).await;
        created_at = created_at.max(info.created_at);
    }
    create(&*store, &ChatKey::new("other-org", "z"), &created_by("ann")).await;
    let t = created_at + 1_000_000;
    append_new(&*store, &key("a"), user("m1", "bob", "x"), t + 10).await;
    append_new(&*store, &key("b"), user("m1", "bob", "x"), t + 30).await;
    append_new(&*store, &key("c"), user("m1", "ann", "x"), t + 20).await;
    append_new(&*store, &key("d"), user("m1", "bob", "x"), t + 30).await;
    // Pinning is an event too, at the chat's latest time so the order stays by activity.
    append_new(&*store, &key("c"), updated(None, Some(true), None), t + 20).await;

    let list = |scope: ChatScope, limit: usize, offset: usize| {
        let store = store.clone();
        async move {
            let page = store
                .list_chats("org", &scope, limit, offset)
                .await
                .unwrap_or_else(|e| panic!("list_chats failed: {e}"));
            let ids: Vec<String> = page
                .chats
                .iter()
                .map(|c| c.key.chat_id.to_string())
                .collect();
            (ids, page.total, page.chats)
        }
    };
    let (ids, total, chats) = list(ChatScope::Org, 10, 0).await;
    assert_eq!(
        (ids, total),
        (vec!["c".into(), "b".into(), "d".into(), "a".into()], 4),
        "list_chats: pinned first, then latest activity first, then chat id (b and d tie); \
         only the org's chats"
    );
    for c in &chats {
        assert_eq!(
            Some(c),
            store.chat_summary(&c.key).await.ok().flatten().as_ref(),
            "list_chats: a listed summary is the chat's chat_summary"
        );
    }
    assert_eq!(
        list(ChatScope::Org, 2, 0).await.0[..],
        ["c", "b"],
        "list_chats: limit 2"
    );
    let (ids, total, _) = list(ChatScope::Org, 2, 2).await;
    assert_eq!(
        (ids, total),
        (vec!["d".into(), "a".into()], 4),
        "list_chats: offset 2 is the second page, total still counts all"
    );
    for (limit, offset) in [(10, 4), (10, usize::MAX), (0, 0)] {
        let (ids, total, _) = list(ChatScope::Org, limit, offset).await;
        assert_eq!(
            (ids.len(), total),
            (0, 4),
            "list_chats: limit {limit} offset {offset} is an empty page with the full total"
        );
    }
    let (ids, total, _) = list(ChatScope::Member("ann".into()), 10, 0).await;
    assert_eq!(
        (ids, total),
        (vec!["c".into(), "a".into()], 2),
        "list_chats: Member(ann) holds the chats ann created (a) or posted in (c), not another org's"
    );
    let (ids, total, _) = list(ChatScope::Member("bob".into()), 1, 1).await;
    assert_eq!(
        (ids, total),
        (vec!["b".into()], 4),
        "list_chats: Member(bob) pages like Org"
    );
    let (_, total, _) = list(ChatScope::Member("zed".into()), 10, 0).await;
    assert_eq!(total, 0, "list_chats: a user in no chat has none");
    let page = store
        .list_chats("no-such-org", &ChatScope::Org, 10, 0)
        .await;
    assert!(
        matches!(page, Ok(ref p) if p.total == 0 && p.chats.is_empty()),
        "list_chats of an org without chats is empty: {page:?}"
    );
}

/// **Superseded messages**: superseding a reply takes it and its turn's tool events out of
/// `messages_after` and `recent_messages`; the log (`events_after`, `find_message`) keeps
/// them, and other turns stay.
pub async fn superseded_messages_leave_history(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let s_m1 = append_new(&*store, &chat, asked("m1", "q1"), 1).await;
    append_new(&*store, &chat, tool_call("a1", "q1", "c1"), 2).await;
    append_new(&*store, &chat, tool_result("a1", "q1", "c1"), 3).await;
    let s_a1 = append_new(&*store, &chat, answered("a1", "q1"), 4).await;
    append_new(&*store, &chat, asked("m2", "q2"), 5).await;
    append_new(&*store, &chat, tool_call("a2", "q2", "c2"), 6).await;
    append_new(&*store, &chat, answered("a2", "q2"), 7).await;
    let before = ids(&store
        .messages_after(&chat, 0, 100)
        .await
        .unwrap_or_default());
    assert_eq!(
        before,
        ["m1", "call:c1", "result:c1", "a1", "m2", "call:c2", "a2"],
        "Superseded messages: history before superseding"
    );
    append_new(&*store, &chat, superseded("a1", "q3", Some(s_m1)), 8).await;
    assert_eq!(
        ids(&store
            .messages_after(&chat, 0, 100)
            .await
            .unwrap_or_default()),
        ["m1", "m2", "call:c2", "a2"],
        "Superseded messages: the superseded reply and its turn's tool events leave messages_after"
    );
    assert_eq!(
        ids(&store
            .recent_messages(&chat, u64::MAX, 100)
            .await
            .unwrap_or_default()),
        ["m1", "m2", "a2"],
        "Superseded messages: the superseded reply leaves recent_messages"
    );
    assert_eq!(
        ids(&store
            .recent_messages(&chat, u64::MAX, 2)
            .await
            .unwrap_or_default()),
        ["m2", "a2"],
        "Superseded messages: recent_messages' limit counts only messages still in history"
    );
    let all = log(&*store, &chat).await;
    assert_eq!(
        all.len(),
        9,
        "Superseded messages: the events themselves stay in the log: {all:?}"
    );
    let found = store.find_message(&chat, "a1").await;
    assert!(
        matches!(found, Ok(Some(ref e)) if e.seq == s_a1),
        "Superseded messages: find_message still finds the superseded reply in the log: {found:?}"
    );
    append_new(&*store, &chat, answered("a3", "q3"), 9).await;
    assert_eq!(
        ids(&store
            .messages_after(&chat, 0, 100)
            .await
            .unwrap_or_default()),
        ["m1", "m2", "call:c2", "a2", "a3"],
        "Superseded messages: the replacement reply is history"
    );
}

/// Read receipts are stored: the event is in the log with its body, moves the latest activity
/// and is neither history nor a title.
pub async fn read_receipts_are_stored(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    let info = create(&*store, &chat, &NewChat::default()).await;
    let t = info.created_at + 1000;
    let receipt = |read_at: i64, ids: &[&str]| EventBody::ReadReceipt {
        user_id: "bob".into(),
        message_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        read_at,
        trace_id: Some("trace-r".into()),
        origin: None,
    };
    append_new(&*store, &chat, user("m1", "ann", "hello"), t).await;
    append_new(&*store, &chat, answered("a1", "r1"), t + 1).await;
    let s1 = append_new(&*store, &chat, receipt(t + 2, &["m1", "a1"]), t + 2).await;
    let s2 = append_new(&*store, &chat, receipt(t + 3, &["a1"]), t + 3).await;
    let events = store
        .events_after(&chat, s1 - 1, 10)
        .await
        .unwrap_or_default();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.seq, e.created_at, e.body.clone()))
            .collect::<Vec<_>>(),
        vec![
            (s1, t + 2, receipt(t + 2, &["m1", "a1"])),
            (s2, t + 3, receipt(t + 3, &["a1"]))
        ],
        "Read receipts: each receipt is stored in the log as appended (seq, time, body)"
    );
    assert_eq!(
        ids(&store.messages_after(&chat, 0, 10).await.unwrap_or_default()),
        ["m1", "a1"],
        "Read receipts: a receipt is no message in history"
    );
    let s = store.chat_summary(&chat).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.title, s.updated_at, s.head_seq)),
        Some((Some("hello".into()), t + 3, s2)),
        "Summary kept with the log: a receipt moves the latest activity and the head, not the title"
    );
}

/// **Real delete**: the chat, its log, summary, membership, receipts and open turns are gone
/// (every read says so, every write is `NoSuchChat`), a second delete is `false`, and the
/// same id can be created again from scratch.
pub async fn delete_is_real(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    let keep = ChatKey::new("org", "keep");
    let old = create(&*store, &chat, &created_by("ann")).await;
    create(&*store, &keep, &created_by("ann")).await;
    append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    append_new(
        &*store,
        &chat,
        updated(Some("Old"), Some(true), Some(&["bob"])),
        2,
    )
    .await;
    append_new(&*store, &chat, user("m2", "zed", "x"), 3).await;
    store
        .request_turn(&chat, "r2", None, 2)
        .await
        .unwrap_or_else(|e| panic!("request_turn failed: {e}"));
    let fence = store
        .claim_turns(&chat)
        .await
        .unwrap_or_else(|e| panic!("claim_turns failed: {e}"));
    let started = store.start_turn(&chat, "r1", fence).await;
    assert!(
        matches!(started, Ok(true)),
        "start_turn of a queued turn: {started:?}"
    );

    assert!(
        matches!(store.delete_chat(&chat).await, Ok(true)),
        "Real delete: delete_chat of an existing chat returns true"
    );
    assert!(
        matches!(store.delete_chat(&chat).await, Ok(false)),
        "Real delete: a second delete_chat returns false"
    );
    assert!(
        matches!(
            store.delete_chat(&ChatKey::new("org", "never")).await,
            Ok(false)
        ),
        "Real delete: delete_chat of a chat that never existed returns false"
    );
    assert!(
        matches!(store.chat_summary(&chat).await, Ok(None)),
        "Real delete: chat_summary is None"
    );
    assert!(
        matches!(store.open_chat(&chat, None).await, Ok(None)),
        "Real delete: open_chat without create finds nothing"
    );
    assert!(
        nothing(&store.events_after(&chat, 0, 100).await)
            && nothing(&store.messages_after(&chat, 0, 100).await)
            && nothing(&store.recent_messages(&chat, u64::MAX, 100).await),
        "Real delete: the log is gone"
    );
    assert!(
        matches!(
            store.find_message(&chat, "m1").await,
            Ok(None) | Err(StoreError::NoSuchChat(_))
        ),
        "Real delete: find_message finds nothing"
    );
    assert!(
        nothing(&store.open_turns(&chat).await),
        "Real delete: the chat's open turns are gone"
    );
    let with = store.chats_with_open_turns(100).await.unwrap_or_default();
    assert!(
        !with.contains(&chat),
        "Real delete: chats_with_open_turns must not name a deleted chat: {with:?}"
    );
    for scope in [
        ChatScope::Org,
        ChatScope::Member("ann".into()),
        ChatScope::Member("zed".into()),
    ] {
        let page = store.list_chats("org", &scope, 10, 0).await;
        assert!(
            matches!(page, Ok(ref p) if p.chats.iter().all(|c| c.key != chat)
                && p.total == u64::from(scope != ChatScope::Member("zed".into()))),
            "Real delete: the chat leaves every list and total ({scope:?}): {page:?}"
        );
    }
    assert!(
        matches!(
            store.append(&chat, user("m3", "ann", "x"), 4).await,
            Err(StoreError::NoSuchChat(_))
        ),
        "Real delete: an append to a deleted chat is NoSuchChat"
    );
    assert!(
        matches!(
            store.claim_turns(&chat).await,
            Err(StoreError::NoSuchChat(_))
        ),
        "Real delete: claim_turns on a deleted chat is NoSuchChat"
    );
    let _ = store.request_turn(&chat, "r9", None, 1).await;
    assert!(
        nothing(&store.open_turns(&chat).await)
            && matches!(store.open_chat(&chat, None).await, Ok(None)),
        "Real delete: request_turn on a deleted chat must not open a turn or a chat"
    );

    let new = create(&*store, &chat, &NewChat::default()).await;
    assert_ne!(
        new.epoch, old.epoch,
        "Epoch: a recreated chat has a new epoch"
    );
    let s = store.chat_summary(&chat).await.ok().flatten();
    assert!(
        matches!(s, Some(ref s) if s.title.is_none() && !s.pinned && s.members.is_none()
            && s.created_by.is_none() && s.status == ChatStatus::Active && s.head_seq == 1),
        "Real delete: a recreated chat's summary starts afresh: {s:?}"
    );
    assert!(
        matches!(append(&*store, &chat, user("m1", "bob", "again"), 5).await,
            natter_core::store::Appended::New(ref e) if e.seq == 2),
        "Real delete: the deleted chat's messageIds are gone with it (m1 is new again, seq 2)"
    );
    let zed = store
        .list_chats("org", &ChatScope::Member("zed".into()), 10, 0)
        .await
        .map(|p| p.total);
    assert!(
        matches!(zed, Ok(0)),
        "Real delete: the deleted chat's posters are no members of the recreated one: {zed:?}"
    );
    assert!(
        matches!(store.open_turns(&chat).await, Ok(ref t) if t.is_empty()),
        "Real delete: a recreated chat has no open turns"
    );
    assert_eq!(
        ids(&log(&*store, &keep).await),
        ["chat_created"],
        "Real delete: other chats are untouched"
    );
}
