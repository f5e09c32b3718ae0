//! The Postgres store against a real server: the Store conformance suite, and what only a
//! shared database shows (several nodes appending to one chat, starting at once, fencing
//! each other). Each test makes a database of its own and drops it at the end; without a
//! reachable server the tests skip loudly (fail with `CI=true`), see `natter_store_postgres::testing`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use natter_core::chat::{ChatKey, NewChat};
use natter_core::event::EventBody;
use natter_core::store::{Appended, Guard, Store, StoreError};
use natter_store_postgres::testing::TestDb;
use natter_store_postgres::{PgOptions, PgStore};

fn user(id: &str, text: &str) -> EventBody {
    EventBody::UserMessage {
        message_id: id.into(),
        user_id: "u".into(),
        text: text.into(),
        parts: None,
        request_id: None,
        trace_id: None,
        origin: None,
        tools: None,
        attachments: None,
        role: None,
    }
}

fn options(max_connections: u32) -> PgOptions {
    PgOptions {
        max_connections,
        ..PgOptions::default()
    }
}

async fn node(db: &TestDb, max_connections: u32) -> Arc<PgStore> {
    Arc::new(
        PgStore::connect(db.url(), options(max_connections))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keeps_the_store_contract() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let started = Instant::now();
    // One database, emptied for each case (faster than a database per case).
    let first = node(&db, 2).await;
    let url = db.url().to_owned();
    natter_store_tests::run_all(|| {
        let url = url.clone();
        async move {
            let store = PgStore::connect(&url, options(8)).await.unwrap();
            sqlx::query("TRUNCATE chats, events, read_receipts, chat_members, open_turns, reactions, attachments, attachment_blobs")
                .execute(store.pool())
                .await
                .unwrap();
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
    eprintln!(
        "postgres conformance suite: {} ms",
        started.elapsed().as_millis()
    );
    first.close().await;
    db.drop_db().await;
}

/// Four nodes (pools of their own) append to one chat at once: every ack has its own seq,
/// the log is exactly 1..=head with no gap, and an acked event is readable on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_append_to_one_chat_without_gaps() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    const NODES: usize = 4;
    const WRITERS_PER_NODE: usize = 4;
    const APPENDS: usize = 25;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(node(&db, 4).await);
    }
    let chat = ChatKey::new("org", "busy");
    nodes[0]
        .open_chat(&chat, Some(&NewChat::default()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (n, store) in nodes.iter().enumerate() {
        for w in 0..WRITERS_PER_NODE {
            let store = store.clone();
            let reader = nodes[(n + 1) % NODES].clone();
            let chat = chat.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..APPENDS {
                    let id = format!("n{n}-w{w}-{i}");
                    let a = store.append(&chat, user(&id, "x"), 1).await.unwrap();
                    let Appended::New(e) = a else {
                        panic!("a fresh messageId was a duplicate");
                    };
                    // Visible on another node as soon as it is acked, with all before it.
                    let seen = reader.events_after(&chat, 0, e.seq as usize).await.unwrap();
                    assert_eq!(seen.len() as u64, e.seq, "a hole below an acked seq");
                    seqs.push(e.seq);
                }
                seqs
            }));
        }
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for s in t.await.unwrap() {
            assert!(all.insert(s), "seq {s} was given twice");
        }
    }
    let total = (NODES * WRITERS_PER_NODE * APPENDS) as u64;
    assert_eq!(all, (2..=total + 1).collect::<BTreeSet<_>>());
    let log = nodes[3].events_after(&chat, 0, 10_000).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=total + 1).collect::<Vec<_>>()
    );
    let head = nodes[2].open_chat(&chat, None).await.unwrap().unwrap();
    assert_eq!(head.head_seq, total + 1);
    for n in &nodes {
        n.close().await;
    }
    db.drop_db().await;
}

/// The same messageId sent through every node at once is stored once: one `New`, the rest
/// `Duplicate` of it, and the log has no gap where the losers tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_across_nodes_store_one_message() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(node(&db, 4).await);
    }
    let chat = ChatKey::new("org", "dups");
    nodes[0]
        .open_chat(&chat, Some(&NewChat::default()))
        .await
        .unwrap();
    for round in 0..10 {
        let id = format!("m{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = nodes[i % nodes.len()].clone();
                let (chat, id) = (chat.clone(), id.clone());
                tokio::spawn(async move { store.append(&chat, user(&id, "same"), 5).await })
            })
            .collect();
        let mut new = Vec::new();
        let mut dup = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Appended::New(e) => new.push(e),
                Appended::Duplicate(e) => dup.push(e),
            }
        }
        assert_eq!(new.len(), 1, "round {round}: exactly one New");
        assert!(
            dup.iter().all(|e| *e == new[0]),
            "duplicates return the stored event"
        );
        assert_eq!(new[0].seq, round + 2, "no gap from the losers");
    }
    for n in &nodes {
        n.close().await;
    }
    db.drop_db().await;
}

/// Nodes starting at once on a fresh database: each migration is applied once (sqlx's
/// advisory lock), all of them connect, and a later start finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { PgStore::connect(&url, options(2)).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().unwrap());
    }
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(stores[0].pool())
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied.len(), files, "every migration applied exactly once");
    assert!(applied.iter().all(|(_, ok)| *ok));
    let chat = ChatKey::new("org", "c");
    for (i, s) in stores.iter().enumerate() {
        s.open_chat(&chat, Some(&NewChat::default())).await.unwrap();
        s.append(&chat, user(&format!("m{i}"), "x"), 1)
            .await
            .unwrap();
    }
    let again = node(&db, 1).await;
    assert_eq!(
        again
            .open_chat(&chat, None)
            .await
            .unwrap()
            .unwrap()
            .head_seq,
        5
    );
    for s in stores {
        s.close().await;
    }
    again.close().await;
    db.drop_db().await;
}

/// A node whose claim was overtaken by another node's is refused on every fenced write, and
/// the chat's turn can be ended only by the newer owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fencing_holds_across_nodes() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = node(&db, 2).await;
    let b = node(&db, 2).await;
    let chat = ChatKey::new("org", "fenced");
    a.open_chat(&chat, Some(&NewChat::default())).await.unwrap();
    let asked = EventBody::UserMessage {
        message_id: "m1".into(),
        user_id: "u".into(),
        text: "hi".into(),
        parts: None,
        request_id: Some("r1".into()),
        trace_id: None,
        origin: None,
        tools: None,
        attachments: None,
        role: None,
    };
    a.append(&chat, asked, 1).await.unwrap();
    let fa = a.claim_turns(&chat).await.unwrap();
    assert!(a.start_turn(&chat, "r1", fa).await.unwrap());
    // Node a pauses; node b takes over.
    let fb = b.claim_turns(&chat).await.unwrap();
    assert_eq!(fb, fa + 1);
    let end = |text: &str| EventBody::AssistantMessage {
        message_id: "a1".into(),
        request_id: "r1".into(),
        text: text.into(),
        finish_reason: "stop".into(),
        usage: None,
        model: None,
        trace_id: None,
        token_count: None,
        warnings: None,
    };
    let stale = a
        .append_guarded(&chat, end("stale"), 2, Guard::Fence(fa))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Fenced { held, current, .. }) if held == fa && current == fb),
        "{stale:?}"
    );
    assert!(matches!(
        a.start_turn(&chat, "r1", fa).await,
        Err(StoreError::Fenced { .. })
    ));
    let turns = b.open_turns(&chat).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].started_fence, Some(fa));
    let ok = b
        .append_guarded(&chat, end("fresh"), 3, Guard::Fence(fb))
        .await
        .unwrap();
    assert_eq!(ok.event().seq, 3, "the refused write left no gap");
    assert!(a.open_turns(&chat).await.unwrap().is_empty());
    a.close().await;
    b.close().await;
    db.drop_db().await;
}

/// Text Postgres cannot hold as such (NUL) still round-trips in bodies; a title drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_round_trip_exactly() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let s = node(&db, 2).await;
    let chat = ChatKey::new("org", "ünïcode/chat");
    let new = NewChat {
        created_by: Some("ann".into()),
        metadata: Some(serde_json::json!({"n": 1.5, "big": u64::MAX, "s": "a\u{0}b"})),
        members: None,
    };
    s.open_chat(&chat, Some(&new)).await.unwrap();
    let body = user("m\u{1F600}", "nul \u{0} inside, emoji \u{1F600}");
    s.append(&chat, body.clone(), 7).await.unwrap();
    let log = s.events_after(&chat, 0, 10).await.unwrap();
    assert_eq!(log[1].body, body);
    let sum = s.chat_summary(&chat).await.unwrap().unwrap();
    assert_eq!(sum.title.as_deref(), Some("nul  inside, emoji \u{1F600}"));
    assert_eq!(sum.metadata, new.metadata);
    assert_eq!(
        s.find_message(&chat, "m\u{1F600}")
            .await
            .unwrap()
            .unwrap()
            .seq,
        2
    );
    s.close().await;
    db.drop_db().await;
}

/// `sslmode=require` gets an encrypted session when the server offers TLS (sqlx is built
/// with rustls); a server without TLS is skipped here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_the_server_offers_it() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let plain = node(&db, 1).await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(plain.pool())
        .await
        .unwrap();
    plain.close().await;
    if ssl == "on" {
        let url = format!("{}?sslmode=require", db.url());
        let s = PgStore::connect(&url, options(1)).await.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(s.pool())
                .await
                .unwrap();
        assert!(encrypted, "sslmode=require must give a TLS session");
        s.close().await;
    } else {
        eprintln!("the server has ssl = off: TLS not tested");
    }
    db.drop_db().await;
}
