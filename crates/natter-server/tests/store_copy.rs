//! `natter store copy`: SQLite → Postgres → SQLite and SQLite → SQLite read back the same,
//! chat by chat (log, summary, members, receipts, turn queue, fence), and a non-empty
//! target is refused without `--force`. The Postgres legs skip loudly without a server
//! (fail with `CI=true`), see `natter_store_postgres::testing`.

use std::sync::Arc;

use natter_core::chat::{ChatKey, ChatScope, NewChat};
use natter_core::event::EventBody;
use natter_core::store::{Guard, Store};
use natter_core::store_transfer::Transfer;
use natter_server::store::{StoreOptions, open_transfer};
use natter_server::store_copy::copy_databases;
use natter_store_postgres::testing::TestDb;
use natter_store_sqlite::{Durability, SqliteStore};

fn sqlite_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}/{name}", dir.path().display())
}

fn user(id: &str, who: &str, text: &str, request: Option<&str>) -> EventBody {
    EventBody::UserMessage {
        message_id: id.into(),
        user_id: who.into(),
        text: text.into(),
        parts: None,
        request_id: request.map(Into::into),
        trace_id: request.map(|r| format!("trace-{r}")),
        origin: None,
        tools: None,
        attachments: None,
        role: None,
    }
}

fn reply(id: &str, request: &str, text: &str) -> EventBody {
    EventBody::AssistantMessage {
        message_id: id.into(),
        request_id: request.into(),
        text: text.into(),
        finish_reason: "stop".into(),
        usage: None,
        model: Some("demo".into()),
        trace_id: None,
        token_count: Some(3),
        warnings: None,
    }
}

/// Chats with everything a chat can hold; returns their keys.
async fn populate(url: &str) -> Vec<ChatKey> {
    let s = SqliteStore::open(url, Durability::Normal).await.unwrap();
    let support = ChatKey::new("acme", "support");
    let new = NewChat {
        created_by: Some("ann".into()),
        metadata: Some(serde_json::json!({"agentName": "helper", "n": 1.5})),
        members: Some(vec!["bob".into()]),
    };
    s.open_chat(&support, Some(&new)).await.unwrap();
    let m1 = s
        .append(
            &support,
            user("m1", "ann", "Where is my refund?", Some("r1")),
            10,
        )
        .await
        .unwrap()
        .event()
        .seq;
    let call = EventBody::ToolCall {
        request_id: "r1".into(),
        message_id: "a1".into(),
        token_index: 2,
        tool_call_id: "c1".into(),
        name: "current_time".into(),
        arguments: serde_json::json!({"tz": "UTC"}),
        executor: "server".into(),
        trace_id: None,
    };
    s.append(&support, call, 11).await.unwrap();
    s.append(&support, reply("a1", "r1", "Soon."), 12)
        .await
        .unwrap();
    // A regenerate: the old reply and its tool call leave history; the new turn is queued.
    let sup = EventBody::MessageSuperseded {
        message_id: "a1".into(),
        request_id: "r2".into(),
        superseded_by: Some("ann".into()),
        context_seq: Some(m1),
        tools: None,
    };
    s.append(&support, sup, 13).await.unwrap();
    s.append(&support, user("m2", "bob", "me too", Some("r3")), 14)
        .await
        .unwrap();
    let receipt = EventBody::ReadReceipt {
        user_id: "bob".into(),
        message_ids: vec!["m1".into(), "a1".into()],
        read_at: 15,
        trace_id: None,
        origin: None,
    };
    s.append(&support, receipt, 15).await.unwrap();
    let rename = EventBody::ChatUpdated {
        title: Some("Refunds".into()),
        pinned: Some(true),
        members: Some(vec!["bob".into(), "cat".into()]),
        updated_by: Some("ann".into()),
    };
    s.append(&support, rename, 16).await.unwrap();
    // A reaction and a CSAT answer: the copy has the message's reactions and the summary's csat.
    let react = EventBody::ReactionAdded {
        message_id: "m1".into(),
        user_id: "bob".into(),
        emoji: "👍".into(),
        reactions: Vec::new(),
        trace_id: None,
    };
    s.append(&support, react, 16).await.unwrap();
    let csat = EventBody::CsatSubmitted {
        user_id: "ann".into(),
        rating: 4,
        comment: Some("ok".into()),
        trace_id: None,
    };
    s.append(&support, csat, 16).await.unwrap();
    // The queue: r2 started by the owner of fence 2, r3 queued, r4 asked with no event.
    s.claim_turns(&support).await.unwrap();
    let fence = s.claim_turns(&support).await.unwrap();
    assert!(s.start_turn(&support, "r2", fence).await.unwrap());
    s.request_turn(&support, "r4", None, m1).await.unwrap();
    s.append_guarded(
        &support,
        reply("a2", "r2", "Tomorrow."),
        17,
        Guard::Fence(fence),
    )
    .await
    .unwrap();
    s.request_turn(&support, "r5", Some("t5"), m1)
        .await
        .unwrap();

    // A long log (more than a page), ended.
    let long = ChatKey::new("acme", "long");
    s.open_chat(&long, Some(&NewChat::default())).await.unwrap();
    for i in 0..1_100 {
        s.append(
            &long,
            user(&format!("l{i}"), "dan", &format!("line {i}"), None),
            100 + i,
        )
        .await
        .unwrap();
    }
    let end = EventBody::ChatEnded {
        ended_by: Some("dan".into()),
        reason: Some("done".into()),
    };
    s.append(&long, end, 5_000).await.unwrap();

    // The same chat id in another org, and more chats than a page of keys.
    let other = ChatKey::new("other", "support");
    s.open_chat(&other, Some(&NewChat::default()))
        .await
        .unwrap();
    s.append(&other, user("m1", "eve", "hello", None), 20)
        .await
        .unwrap();
    let mut keys = vec![support, long, other];
    for i in 0..205 {
        let k = ChatKey::new("many", format!("chat-{i:03}"));
        s.open_chat(&k, Some(&NewChat::default())).await.unwrap();
        keys.push(k);
    }
    keys.sort();
    keys
}

/// Every chat reads back the same from both stores.
async fn assert_same(a: &dyn Transfer, b: &dyn Transfer, keys: &[ChatKey]) {
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = b.chat_keys(after.as_ref(), 50).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        listed.extend(page);
        after = Some(last);
    }
    assert_eq!(listed, keys, "the target holds exactly the chats copied");
    for k in keys {
        let (ea, eb) = (
            a.export_chat(k).await.unwrap().unwrap(),
            b.export_chat(k).await.unwrap().unwrap(),
        );
        assert_eq!(
            ea, eb,
            "{k}: header (summary, fence, members, receipts, queue)"
        );
        assert_eq!(
            a.events_after(k, 0, 10_000).await.unwrap(),
            b.events_after(k, 0, 10_000).await.unwrap(),
            "{k}: log"
        );
        assert_eq!(
            a.export_events(k, 0, 10_000).await.unwrap(),
            b.export_events(k, 0, 10_000).await.unwrap(),
            "{k}: superseded marks"
        );
        assert_eq!(
            a.messages_after(k, 0, 10_000).await.unwrap(),
            b.messages_after(k, 0, 10_000).await.unwrap(),
            "{k}: history"
        );
        assert_eq!(
            a.open_turns(k).await.unwrap(),
            b.open_turns(k).await.unwrap(),
            "{k}: turn queue"
        );
        assert_eq!(
            a.chat_summary(k).await.unwrap(),
            b.chat_summary(k).await.unwrap(),
            "{k}: summary"
        );
        let ids: Vec<String> = ["m1", "m2", "a1", "a2"].map(String::from).to_vec();
        assert_eq!(
            a.reactions(k, &ids).await.unwrap(),
            b.reactions(k, &ids).await.unwrap(),
            "{k}: reactions"
        );
    }
    for (org, scope) in [
        ("acme", ChatScope::Org),
        ("acme", ChatScope::Member("bob".into())),
        ("many", ChatScope::Org),
    ] {
        assert_eq!(
            a.list_chats(org, &scope, 500, 0).await.unwrap(),
            b.list_chats(org, &scope, 500, 0).await.unwrap(),
            "list of {org} {scope:?}"
        );
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        sqlite_durability: Durability::Normal,
        max_connections: Some(4),
    }
}

async fn open(url: &str) -> Arc<dyn Transfer> {
    open_transfer(url, &options()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_copies_and_refuses_a_non_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (sqlite_url(&dir, "from.db"), sqlite_url(&dir, "to.db"));
    let keys = populate(&from).await;
    let mut lines = Vec::new();
    let report = copy_databases(&from, &to, false, &mut |l: &str| lines.push(l.to_owned()))
        .await
        .unwrap();
    assert_eq!(report.chats, keys.len() as u64);
    assert!(report.skipped.is_empty());
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("copied {} chats", keys.len()))
    );
    let copied = open(&to).await;
    assert_same(&*open(&from).await, &*copied, &keys).await;
    // What was compared is what `populate` made.
    let support = copied
        .export_chat(&ChatKey::new("acme", "support"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(support.turn_fence, 2);
    assert_eq!(
        support
            .open_turns
            .iter()
            .map(|t| (
                t.request_id.as_str(),
                t.opened_seq,
                t.context_seq,
                t.started_fence
            ))
            .collect::<Vec<_>>(),
        vec![("r3", 6, 6, None), ("r4", 10, 2, None), ("r5", 11, 2, None)]
    );
    assert_eq!(support.participants, vec!["ann", "bob"]);
    assert_eq!(support.receipts.len(), 2);
    let s = &support.summary;
    assert_eq!(
        s.csat.as_ref().map(|c| c.rating),
        Some(4),
        "the CSAT answer is copied"
    );
    let reacted = copied
        .reactions(&ChatKey::new("acme", "support"), &["m1".into()])
        .await
        .unwrap();
    assert_eq!(reacted.len(), 1, "the reactions are copied");
    assert_eq!(
        (s.title.as_deref(), s.pinned, s.head_seq),
        (Some("Refunds"), true, 11)
    );
    assert_eq!(s.members, Some(vec!["bob".to_owned(), "cat".to_owned()]));
    let events = copied
        .export_events(&s.key, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.superseded)
        .map(|e| e.event.seq)
        .collect::<Vec<_>>();
    assert_eq!(events, vec![3, 4], "the superseded reply and its tool call");
    let long = copied
        .chat_summary(&ChatKey::new("acme", "long"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (long.status, long.head_seq),
        (natter_core::chat::ChatStatus::Closed, 1102)
    );

    let refused = copy_databases(&from, &to, false, &mut |_: &str| {}).await;
    let e = format!("{:#}", refused.unwrap_err());
    assert!(
        e.contains("already holds chats") && e.contains("--force"),
        "{e}"
    );

    // With --force every chat the target has is skipped, none overwritten.
    let again = copy_databases(&from, &to, true, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!((again.chats, again.skipped.len()), (0, keys.len()));
    assert!(
        copy_databases(&from, &from, true, &mut |_: &str| {})
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_postgres_and_back_reads_the_same() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (from, back) = (sqlite_url(&dir, "from.db"), sqlite_url(&dir, "back.db"));
    let keys = populate(&from).await;
    let report = copy_databases(&from, db.url(), false, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!(report.chats, keys.len() as u64);
    assert_eq!(report.events, 11 + 1102 + 2 + 205);
    let (sqlite, pg) = (open(&from).await, open(db.url()).await);
    assert_same(&*sqlite, &*pg, &keys).await;

    // The copy is a working store: the log goes on where it was, fenced as it was.
    let support = ChatKey::new("acme", "support");
    let head = pg
        .open_chat(&support, None)
        .await
        .unwrap()
        .unwrap()
        .head_seq;
    let next = pg
        .append(&support, user("m9", "ann", "again", None), 99)
        .await
        .unwrap();
    assert_eq!(next.event().seq, head + 1);
    assert_eq!(pg.claim_turns(&support).await.unwrap(), 3);

    let refused = copy_databases(&from, db.url(), false, &mut |_: &str| {}).await;
    assert!(refused.is_err(), "a non-empty Postgres target is refused");

    // And back: Postgres → SQLite reads the same as Postgres.
    let report = copy_databases(db.url(), &back, false, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!(report.chats, keys.len() as u64);
    assert_same(&*pg, &*open(&back).await, &keys).await;
    drop(pg);
    db.drop_db().await;
}
