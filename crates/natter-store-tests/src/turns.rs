//! The turn queue kept with the log, and the turn fence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use natter_core::chat::{ChatKey, NewChat};
use natter_core::store::{Appended, Guard, OpenTurn, Store, StoreError};

use crate::fixtures::*;

async fn turns(store: &dyn Store, chat: &ChatKey) -> Vec<OpenTurn> {
    store
        .open_turns(chat)
        .await
        .unwrap_or_else(|e| panic!("open_turns({chat}) failed: {e}"))
}

/// `(request_id, opened_seq, context_seq, started_fence)` of each open turn, in order.
async fn queue(store: &dyn Store, chat: &ChatKey) -> Vec<(String, u64, u64, Option<u64>)> {
    turns(store, chat)
        .await
        .into_iter()
        .map(|t| (t.request_id, t.opened_seq, t.context_seq, t.started_fence))
        .collect()
}

fn q(id: &str, opened: u64, context: u64, started: Option<u64>) -> (String, u64, u64, Option<u64>) {
    (id.to_owned(), opened, context, started)
}

async fn claim(store: &dyn Store, chat: &ChatKey) -> u64 {
    store
        .claim_turns(chat)
        .await
        .unwrap_or_else(|e| panic!("claim_turns({chat}) failed: {e}"))
}

async fn request(store: &dyn Store, chat: &ChatKey, id: &str, trace: Option<&str>, ctx: u64) {
    store
        .request_turn(chat, id, trace, ctx)
        .await
        .unwrap_or_else(|e| panic!("request_turn({chat}, {id}) failed: {e}"));
}

/// **The turn queue kept with the log**: a user message with a `requestId` opens a queued
/// turn (its context is the message itself), one without opens none, a duplicate opens
/// nothing, `MessageSuperseded` opens one with its `context_seq` (or its own `seq`), a
/// `requestId` already open keeps its first opening, `AssistantMessage` and `TurnFailed`
/// close; every turn carries its chat and trace id.
pub async fn turn_queue_follows_the_log(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    assert!(
        turns(&*store, &chat).await.is_empty(),
        "Turn queue: a new chat has no open turns"
    );
    let s1 = append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    let open = turns(&*store, &chat).await;
    assert_eq!(
        open,
        vec![OpenTurn {
            chat: chat.clone(),
            request_id: "r1".into(),
            trace_id: Some("trace-r1".into()),
            opened_seq: s1,
            context_seq: s1,
            started_fence: None,
        }],
        "Turn queue: a user message with a requestId opens a queued turn at its seq, \
         its context ending at the message"
    );
    append_new(&*store, &chat, user("m2", "u", "AI off"), 2).await;
    let dup = append(&*store, &chat, asked("m1", "r1-resent"), 3).await;
    assert!(
        matches!(dup, Appended::Duplicate(_)),
        "Idempotency: {dup:?}"
    );
    let s3 = append_new(&*store, &chat, asked("m3", "r2"), 4).await;
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s1, s1, None), q("r2", s3, s3, None)],
        "Turn queue: a message without requestId and a duplicate open nothing"
    );
    let s_sup = append_new(&*store, &chat, superseded("a-x", "r3", Some(s1)), 5).await;
    let s_sup_own = append_new(&*store, &chat, superseded("a-y", "r4", None), 6).await;
    // Already open: keeps its first opening (seq, context, trace).
    append_new(&*store, &chat, superseded("a-z", "r1", Some(99)), 7).await;
    append_new(&*store, &chat, asked("m4", "r2"), 8).await;
    let open = turns(&*store, &chat).await;
    assert_eq!(
        open.iter()
            .map(|t| (
                t.request_id.as_str(),
                t.opened_seq,
                t.context_seq,
                t.trace_id.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("r1", s1, s1, Some("trace-r1")),
            ("r2", s3, s3, Some("trace-r2")),
            ("r3", s_sup, s1, None),
            ("r4", s_sup_own, s_sup_own, None),
        ],
        "Turn queue: MessageSuperseded opens its turn with its context_seq (else its own seq); \
         a requestId already open keeps its first opening"
    );
    assert!(
        open.iter().all(|t| t.chat == chat),
        "Turn queue: every open turn names its chat"
    );
    append_new(&*store, &chat, answered("a2", "r2"), 9).await;
    append_new(&*store, &chat, failed("a3", "r3"), 10).await;
    append_new(&*store, &chat, answered("a-none", "never-opened"), 11).await;
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s1, s1, None), q("r4", s_sup_own, s_sup_own, None)],
        "Turn queue: AssistantMessage and TurnFailed close their turn (ending an unknown turn is fine)"
    );
    let again = append(&*store, &chat, asked("m3", "r2"), 12).await;
    assert!(
        matches!(again, Appended::Duplicate(_)),
        "Idempotency: {again:?}"
    );
    assert_eq!(
        queue(&*store, &chat).await.len(),
        2,
        "Turn queue: resending the message of an ended turn does not open it again"
    );
    append_new(&*store, &chat, failed("a1", "r1"), 13).await;
    append_new(&*store, &chat, answered("a4", "r4"), 14).await;
    assert!(
        turns(&*store, &chat).await.is_empty(),
        "Turn queue: every turn ended, nothing is open"
    );
    let missing = store.open_turns(&ChatKey::new("org", "missing")).await;
    assert!(
        nothing(&missing),
        "Turn queue: open_turns of a chat that does not exist is empty: {missing:?}"
    );
}

/// **The turn queue kept with the log**: `request_turn` opens a queued turn with no event at
/// the chat's head with the given context; it is a no-op for a turn already open, opens
/// again one that ended, and `open_turns` is in the order asked for, also between turns
/// opened at the same head (not by request id).
pub async fn turn_queue_request_turn_and_order(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let s1 = append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    request(&*store, &chat, "zz", Some("trace-zz"), 1).await;
    request(&*store, &chat, "aa", None, s1).await;
    let head_now = head(&*store, &chat).await;
    assert_eq!(head_now, s1, "Turn queue: request_turn appends no event");
    let open = turns(&*store, &chat).await;
    assert_eq!(
        open,
        vec![
            OpenTurn {
                chat: chat.clone(),
                request_id: "r1".into(),
                trace_id: Some("trace-r1".into()),
                opened_seq: s1,
                context_seq: s1,
                started_fence: None,
            },
            OpenTurn {
                chat: chat.clone(),
                request_id: "zz".into(),
                trace_id: Some("trace-zz".into()),
                opened_seq: s1,
                context_seq: 1,
                started_fence: None,
            },
            OpenTurn {
                chat: chat.clone(),
                request_id: "aa".into(),
                trace_id: None,
                opened_seq: s1,
                context_seq: s1,
                started_fence: None,
            },
        ],
        "Turn queue: request_turn opens a queued turn at the head with its context; turns \
         opened at the same seq stay in the order asked for"
    );
    request(&*store, &chat, "zz", Some("other"), 7).await;
    append_new(&*store, &chat, user("m2", "u", "x"), 2).await;
    request(&*store, &chat, "r1", None, 9).await;
    assert_eq!(
        queue(&*store, &chat).await,
        vec![
            q("r1", s1, s1, None),
            q("zz", s1, 1, None),
            q("aa", s1, s1, None)
        ],
        "Turn queue: request_turn of a turn already open is a no-op (its first opening stays)"
    );
    append_new(&*store, &chat, answered("a1", "r1"), 3).await;
    request(&*store, &chat, "r1", Some("t2"), s1).await;
    let s3 = append_new(&*store, &chat, asked("m3", "r5"), 4).await;
    assert_eq!(
        queue(&*store, &chat).await,
        vec![
            q("zz", s1, 1, None),
            q("aa", s1, s1, None),
            q("r1", s1 + 2, s1, None),
            q("r5", s3, s3, None),
        ],
        "Turn queue: a turn that ended can be requested again (at the head, after the others)"
    );
    let missing = ChatKey::new("org", "missing");
    let r = store.request_turn(&missing, "r1", None, 1).await;
    assert!(
        matches!(r, Ok(()) | Err(StoreError::NoSuchChat(_))),
        "Turn queue: request_turn on a chat that does not exist: {r:?}"
    );
    assert!(
        nothing(&store.open_turns(&missing).await)
            && !store
                .chats_with_open_turns(100)
                .await
                .unwrap_or_default()
                .contains(&missing),
        "Turn queue: request_turn must not open a turn in a chat that does not exist"
    );
}

/// **Fencing**: `claim_turns` raises the fence by one; a write fenced with any other number
/// (older, or never handed out) is `Fenced` and changes nothing (head, log, summary, turns,
/// idempotency keys); a duplicate is reported as such whatever the guard; concurrent claims
/// get distinct numbers; `claim_turns` of a missing chat is `NoSuchChat`.
pub async fn fencing_refuses_stale_owners(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let c1 = claim(&*store, &chat).await;
    let c2 = claim(&*store, &chat).await;
    assert!(
        c1 >= 1,
        "Fencing: claim_turns raises the fence, so the first claim is >= 1"
    );
    assert_eq!(c2, c1 + 1, "Fencing: claim_turns raises the fence by one");
    let s_r1 = append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    let ok = append_guarded(
        &*store,
        &chat,
        tool_call("a1", "r1", "c1"),
        2,
        Guard::Fence(c2),
    )
    .await;
    assert!(
        matches!(ok, Ok(Appended::New(ref e)) if e.seq == s_r1 + 1),
        "Fencing: a write fenced with the current fence is appended: {ok:?}"
    );
    let before = store.chat_summary(&chat).await.ok().flatten();
    let head_before = head(&*store, &chat).await;
    for (held, body) in [
        (c1, failed("a1", "r1")),
        (c1, user("m-stale", "stale", "a stale title")),
        (c2 + 1, answered("a1", "r1")),
        (0, updated(Some("stale"), Some(true), None)),
    ] {
        let r = append_guarded(&*store, &chat, body, 99_999_999_999_999, Guard::Fence(held)).await;
        assert!(
            matches!(r, Err(StoreError::Fenced { held: h, current, .. }) if h == held && current == c2),
            "Fencing: a write fenced with {held} while the fence is {c2} must be refused as \
             Fenced {{held: {held}, current: {c2}}}: {r:?}"
        );
    }
    assert_eq!(
        head(&*store, &chat).await,
        head_before,
        "Fencing: a refused write must not move the head"
    );
    assert_eq!(
        log(&*store, &chat).await.len() as u64,
        head_before,
        "Fencing: a refused write must not be stored"
    );
    assert_eq!(
        store.chat_summary(&chat).await.ok().flatten(),
        before,
        "Fencing: a refused write must not change the summary (title, pin, activity, head)"
    );
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s_r1, s_r1, None)],
        "Fencing: a refused end must not close the turn"
    );
    let listed = store
        .list_chats(
            "org",
            &natter_core::chat::ChatScope::Member("stale".into()),
            10,
            0,
        )
        .await
        .map(|p| p.total);
    assert!(
        matches!(listed, Ok(0)),
        "Fencing: a refused message must not make its author a member: {listed:?}"
    );
    assert!(
        matches!(
            append(&*store, &chat, user("m-stale", "u", "x"), 3).await,
            Appended::New(_)
        ),
        "Fencing: a refused message must not store its messageId"
    );

    // A duplicate is reported as such whatever the guard.
    let stored = log(&*store, &chat).await[1].clone();
    for guard in [
        Guard::Fence(c1),
        Guard::Fence(c2 + 7),
        Guard::Queued("nope".into()),
    ] {
        let r = append_guarded(&*store, &chat, asked("m1", "r1"), 4, guard.clone()).await;
        assert!(
            matches!(r, Ok(Appended::Duplicate(ref e)) if *e == stored),
            "Fencing: a duplicate is reported as Duplicate whatever the guard ({guard:?}): {r:?}"
        );
    }

    const CLAIMERS: u64 = 16;
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (store, chat) = (store.clone(), chat.clone());
            tokio::spawn(async move { store.claim_turns(&chat).await })
        })
        .collect();
    let mut got = BTreeSet::new();
    for t in tasks {
        let fence = t
            .await
            .expect("a claiming task panicked")
            .unwrap_or_else(|e| panic!("a concurrent claim_turns failed: {e}"));
        assert!(
            got.insert(fence),
            "Fencing: two concurrent claims got the same fence {fence}"
        );
    }
    assert_eq!(
        got,
        (c2 + 1..=c2 + CLAIMERS).collect::<BTreeSet<_>>(),
        "Fencing: {CLAIMERS} concurrent claims must get {}..={}",
        c2 + 1,
        c2 + CLAIMERS
    );
    let last = c2 + CLAIMERS;
    let r = append_guarded(&*store, &chat, failed("a1", "r1"), 5, Guard::Fence(last)).await;
    assert!(
        matches!(r, Ok(Appended::New(_))) && turns(&*store, &chat).await.is_empty(),
        "Fencing: the latest claimer's fenced end is appended and closes the turn: {r:?}"
    );
    assert!(
        matches!(
            store.claim_turns(&ChatKey::new("org", "missing")).await,
            Err(StoreError::NoSuchChat(_))
        ),
        "Fencing: claim_turns of a chat that does not exist is NoSuchChat"
    );
    let missing = ChatKey::new("org", "missing");
    for guard in [
        Guard::None,
        Guard::Fence(0),
        Guard::Fence(1),
        Guard::Queued("r".into()),
    ] {
        let r = append_guarded(&*store, &missing, user("m", "u", "x"), 0, guard.clone()).await;
        assert!(
            matches!(
                r,
                Err(StoreError::NoSuchChat(_)
                    | StoreError::Fenced { .. }
                    | StoreError::NotQueued { .. })
            ),
            "Fencing: a guarded append to a chat that does not exist fails ({guard:?}): {r:?}"
        );
        if guard == Guard::None {
            assert!(
                matches!(r, Err(StoreError::NoSuchChat(_))),
                "Sequencing: an append to a chat that does not exist is NoSuchChat: {r:?}"
            );
        }
    }
    assert!(
        matches!(store.open_chat(&missing, None).await, Ok(None)),
        "Fencing: a refused append must not create the chat"
    );
}

/// **Fencing** is checked in the same transaction as the append: while tasks of the old
/// owner keep appending with its fence and a new owner claims the chat, every write of the
/// old owner that was accepted committed before the claim returned (it is at or below the
/// head read right after), and once refused a task's writes stay refused.
pub async fn fencing_is_atomic_with_the_append(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const WRITES: usize = 100;
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let old = claim(&*store, &chat).await;
    let written = Arc::new(AtomicUsize::new(0));
    let wrote = Arc::new(tokio::sync::Notify::new());
    let old_owner: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, chat) = (store.clone(), chat.clone());
            let (written, wrote) = (written.clone(), wrote.clone());
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                let mut refused = false;
                for i in 0..WRITES {
                    let body = user(&format!("old-{w}-{i}"), "old", "x");
                    match store
                        .append_guarded(&chat, body, 0, Guard::Fence(old))
                        .await
                    {
                        Ok(a) => {
                            assert!(
                                !refused,
                                "Fencing: an old owner's write was accepted after one was refused"
                            );
                            accepted.push(a.event().seq);
                            written.fetch_add(1, Ordering::Release);
                            wrote.notify_one();
                        }
                        Err(StoreError::Fenced { .. }) => refused = true,
                        Err(e) => panic!("a fenced append failed: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                wrote.notify_one();
                accepted
            })
        })
        .collect();
    // Take the chat over while the old owner's tasks are busy writing.
    while written.load(Ordering::Acquire) < WRITERS && !old_owner.iter().all(|t| t.is_finished()) {
        wrote.notified().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let new = claim(&*store, &chat).await;
    // Every old write that was not refused committed before the claim: it is at or below
    // the head read right after the claim.
    let at_claim = head(&*store, &chat).await;
    let first_new = append_guarded(
        &*store,
        &chat,
        user("new-0", "new", "x"),
        0,
        Guard::Fence(new),
    )
    .await
    .unwrap_or_else(|e| panic!("Fencing: the new owner's write was refused: {e}"))
    .event()
    .seq;
    let mut accepted = Vec::new();
    for task in old_owner {
        accepted.extend(task.await.expect("an old owner's task panicked"));
    }
    let late: Vec<_> = accepted.iter().filter(|&&s| s > at_claim).collect();
    assert!(
        late.is_empty(),
        "Fencing: old owner's writes {late:?} were accepted after the claim returned (the \
         head was {at_claim} then): the fence was not checked with the append"
    );
    assert!(
        accepted.iter().all(|&s| s < first_new),
        "Fencing: an old owner's write landed after the new owner's first write (seq {first_new})"
    );
    assert_eq!(
        head(&*store, &chat).await,
        accepted.len() as u64 + 2,
        "Fencing: refused writes must leave no trace in the log"
    );
}

/// `start_turn` is fenced and starts only a queued turn (`false` once started or ended);
/// [`Guard::Queued`] appends only while the turn is queued, so an abort of a queued turn
/// and its start never both win; a new owner sees turns started by an older fence.
pub async fn start_turn_and_queued_guard(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "c");
    create(&*store, &chat, &NewChat::default()).await;
    let s1 = append_new(&*store, &chat, asked("m1", "r1"), 1).await;
    request(&*store, &chat, "r2", None, s1).await;
    let stale = claim(&*store, &chat).await;
    let fence = claim(&*store, &chat).await;
    for held in [stale, fence + 1] {
        let r = store.start_turn(&chat, "r1", held).await;
        assert!(
            matches!(r, Err(StoreError::Fenced { held: h, current, .. }) if h == held && current == fence),
            "Fencing: start_turn with fence {held} while the fence is {fence} must be Fenced: {r:?}"
        );
    }
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s1, s1, None), q("r2", s1, s1, None)],
        "Fencing: a refused start_turn must leave the turn queued"
    );
    let started = store.start_turn(&chat, "r1", fence).await;
    assert!(
        matches!(started, Ok(true)),
        "start_turn of a queued turn is true: {started:?}"
    );
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s1, s1, Some(fence)), q("r2", s1, s1, None)],
        "start_turn records the owner's fence on the turn"
    );
    let again = store.start_turn(&chat, "r1", fence).await;
    assert!(
        matches!(again, Ok(false)),
        "start_turn of a started turn is false: {again:?}"
    );
    let unknown = store.start_turn(&chat, "never", fence).await;
    assert!(
        matches!(unknown, Ok(false)),
        "start_turn of an unknown turn is false: {unknown:?}"
    );

    // Guard::Queued: refused once the turn started; nothing changes.
    let head_before = head(&*store, &chat).await;
    let r = append_guarded(
        &*store,
        &chat,
        failed("a1", "r1"),
        2,
        Guard::Queued("r1".into()),
    )
    .await;
    assert!(
        matches!(r, Err(StoreError::NotQueued { ref request_id, .. }) if request_id == "r1"),
        "Guard::Queued: refused for a started turn (NotQueued): {r:?}"
    );
    assert_eq!(
        (
            head(&*store, &chat).await,
            queue(&*store, &chat).await.len()
        ),
        (head_before, 2),
        "Guard::Queued: a refused append changes nothing (head, turns)"
    );
    // Accepted while queued: the abort of a queued turn ends it, and it can no longer start.
    let r = append_guarded(
        &*store,
        &chat,
        failed("a2", "r2"),
        3,
        Guard::Queued("r2".into()),
    )
    .await;
    assert!(
        matches!(r, Ok(Appended::New(ref e)) if e.seq == head_before + 1),
        "Guard::Queued: accepted while the turn is queued: {r:?}"
    );
    let late = store.start_turn(&chat, "r2", fence).await;
    assert!(
        matches!(late, Ok(false)),
        "start_turn of a turn ended while queued is false: {late:?}"
    );
    for id in ["r2", "never"] {
        let r = append_guarded(
            &*store,
            &chat,
            failed("ax", id),
            4,
            Guard::Queued(id.into()),
        )
        .await;
        assert!(
            matches!(r, Err(StoreError::NotQueued { .. })),
            "Guard::Queued: refused for a turn that ended or never opened ({id}): {r:?}"
        );
    }

    // A new owner sees the turn its predecessor started, and may end it.
    let next = claim(&*store, &chat).await;
    assert_eq!(
        queue(&*store, &chat).await,
        vec![q("r1", s1, s1, Some(fence))],
        "Fencing: a claim leaves started turns open with the older owner's fence"
    );
    let r = append_guarded(&*store, &chat, failed("a1", "r1"), 5, Guard::Fence(next)).await;
    assert!(
        matches!(r, Ok(Appended::New(_))) && turns(&*store, &chat).await.is_empty(),
        "Fencing: the new owner ends the turn its predecessor started: {r:?}"
    );
    let missing = store
        .start_turn(&ChatKey::new("org", "missing"), "r1", 1)
        .await;
    assert!(
        !matches!(missing, Ok(true)),
        "start_turn in a chat that does not exist must not start anything: {missing:?}"
    );
}

/// `chats_with_open_turns` names each chat with an open turn (queued or started) once, in
/// any org, honours `limit`, and forgets chats whose turns all ended or that were deleted.
pub async fn chats_with_open_turns_finds_every_queue(store: Arc<dyn Store>) {
    let listed = |limit: usize| {
        let store = store.clone();
        async move {
            store
                .chats_with_open_turns(limit)
                .await
                .unwrap_or_else(|e| panic!("chats_with_open_turns failed: {e}"))
        }
    };
    assert!(
        listed(10).await.is_empty(),
        "chats_with_open_turns of an empty store"
    );
    let a = ChatKey::new("org", "a");
    let b = ChatKey::new("org", "b");
    let c = ChatKey::new("org", "c");
    let d = ChatKey::new("other", "a");
    for k in [&a, &b, &c, &d] {
        create(&*store, k, &NewChat::default()).await;
    }
    append_new(&*store, &a, asked("m1", "r1"), 1).await;
    append_new(&*store, &a, asked("m2", "r2"), 2).await;
    request(&*store, &b, "r1", None, 1).await;
    let fence = claim(&*store, &b).await;
    assert!(
        matches!(store.start_turn(&b, "r1", fence).await, Ok(true)),
        "start_turn of a queued turn"
    );
    append_new(&*store, &c, user("m1", "u", "AI off"), 1).await;
    append_new(&*store, &d, asked("m1", "r1"), 1).await;
    let got = listed(100).await;
    let set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(
        (got.len(), set),
        (3, BTreeSet::from([a.clone(), b.clone(), d.clone()])),
        "chats_with_open_turns names each chat with queued or started turns once, across orgs"
    );
    let two = listed(2).await;
    assert!(
        two.len() == 2 && two.iter().all(|k| [&a, &b, &d].contains(&k)),
        "chats_with_open_turns honours its limit: {two:?}"
    );
    assert!(
        listed(0).await.is_empty(),
        "chats_with_open_turns(0) is empty"
    );
    append_new(&*store, &a, answered("a1", "r1"), 3).await;
    assert!(
        listed(100).await.contains(&a),
        "a chat with one turn left is still listed"
    );
    append_new(&*store, &a, failed("a2", "r2"), 4).await;
    assert!(
        matches!(store.delete_chat(&b).await, Ok(true)),
        "delete_chat of an existing chat"
    );
    assert_eq!(
        listed(100).await,
        vec![d.clone()],
        "chats_with_open_turns forgets chats whose turns ended and deleted chats"
    );
}
