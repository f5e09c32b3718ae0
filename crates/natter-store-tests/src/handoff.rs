//! Handoff to a human agent (CONTRACT §7.2): the state the store keeps from the
//! `human_agent_*` events, and the agents' queue.

use std::sync::Arc;

use natter_core::chat::{ChatKey, ChatScope};
use natter_core::event::{EventBody, HandoffState};
use natter_core::store::Store;

use crate::fixtures::*;

fn requested(by: &str, since: i64, agents: &[&str]) -> EventBody {
    EventBody::HumanAgentRequested {
        requested_by: Some(by.into()),
        handoff: HandoffState {
            waiting_since: Some(since),
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        },
    }
}

fn joined(agent: &str, agents: &[&str]) -> EventBody {
    EventBody::HumanAgentJoined {
        agent_id: agent.into(),
        handoff: HandoffState {
            waiting_since: None,
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        },
    }
}

fn left(agent: &str, agents: &[&str]) -> EventBody {
    EventBody::HumanAgentLeft {
        agent_id: agent.into(),
        handoff: HandoffState {
            waiting_since: None,
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        },
    }
}

async fn waiting_ids(
    store: &dyn Store,
    scope: &ChatScope,
    limit: usize,
    offset: usize,
) -> (Vec<String>, u64) {
    let page = store
        .list_waiting_chats("org", scope, limit, offset)
        .await
        .unwrap_or_else(|e| panic!("list_waiting_chats failed: {e}"));
    (
        page.chats
            .iter()
            .map(|c| c.key.chat_id.to_string())
            .collect(),
        page.total,
    )
}

/// **Summary kept with the log** (handoff): `waiting_since` and `human_agents` follow the
/// latest `human_agent_*` event's `handoff`; `list_waiting_chats` lists the org's waiting
/// chats oldest `waiting_since` first, in scope, paged; the events and an agent's message
/// role read back as appended.
pub async fn handoff_state_follows_the_log(store: Arc<dyn Store>) {
    let (a, b, c) = (
        ChatKey::new("org", "a"),
        ChatKey::new("org", "b"),
        ChatKey::new("org", "c"),
    );
    let other = ChatKey::new("other", "x");
    for chat in [&a, &b, &c, &other] {
        create(&*store, chat, &created_by("ann")).await;
    }
    let s = store.chat_summary(&a).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents)),
        Some((None, Vec::new())),
        "handoff: a new chat waits for nobody and has no agent"
    );
    append_new(&*store, &b, user("mb", "bob", "help"), 10).await;
    append_new(&*store, &a, requested("ann", 300, &[]), 300).await;
    append_new(&*store, &b, requested("bob", 200, &[]), 200).await;
    append_new(&*store, &other, requested("ann", 100, &[]), 100).await;
    let s = store.chat_summary(&a).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents)),
        Some((Some(300), Vec::new())),
        "handoff: human_agent_requested sets waiting_since"
    );
    assert_eq!(
        waiting_ids(&*store, &ChatScope::Org, 10, 0).await,
        (vec!["b".to_owned(), "a".to_owned()], 2),
        "handoff: the waiting list holds the org's waiting chats, oldest waiting_since first"
    );
    assert_eq!(
        waiting_ids(&*store, &ChatScope::Org, 1, 1).await,
        (vec!["a".to_owned()], 2),
        "handoff: the waiting list pages with limit and offset"
    );
    assert_eq!(
        waiting_ids(&*store, &ChatScope::Member("bob".into()), 10, 0).await,
        (vec!["b".to_owned()], 1),
        "handoff: a member's waiting list holds only their chats"
    );

    let seq = append_new(&*store, &b, joined("agent1", &["agent1"]), 400).await;
    let s = store.chat_summary(&b).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents)),
        Some((None, vec!["agent1".to_owned()])),
        "handoff: human_agent_joined ends the wait and engages the agent"
    );
    assert_eq!(
        waiting_ids(&*store, &ChatScope::Org, 10, 0).await,
        (vec!["a".to_owned()], 1),
        "handoff: a chat an agent took leaves the waiting list"
    );
    let mut agent_says = user("mg", "agent1", "hello, I am a person");
    if let EventBody::UserMessage { role, .. } = &mut agent_says {
        *role = Some("humanAgent".into());
    }
    append_new(&*store, &b, agent_says.clone(), 410).await;
    append_new(&*store, &b, left("agent1", &[]), 500).await;
    let s = store.chat_summary(&b).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents)),
        Some((None, Vec::new())),
        "handoff: human_agent_left with no agent left disengages"
    );
    let events = store
        .events_after(&b, seq - 1, 10)
        .await
        .unwrap_or_else(|e| panic!("events_after failed: {e}"));
    let bodies: Vec<EventBody> = events.into_iter().map(|e| e.body).collect();
    assert_eq!(
        bodies,
        vec![
            joined("agent1", &["agent1"]),
            agent_says.clone(),
            left("agent1", &[])
        ],
        "handoff: the events and the agent message's role read back as appended"
    );
    let messages = store
        .messages_after(&b, 0, 10)
        .await
        .unwrap_or_else(|e| panic!("messages_after failed: {e}"));
    assert!(
        messages.iter().any(|e| e.body == agent_says),
        "handoff: an agent's message is history like any other"
    );
    let _ = c;
}

/// **Summary kept with the log** (handoff under concurrency): the store computes each
/// `human_agent_*` event's `handoff` from the chat as it is inside the append, not from the
/// caller's view. Two agents joining at once from the same stale view (each proposing a
/// list of only itself) both end up engaged, in the summary and in the last event; two
/// leaving at once from stale views leave none; a request from a stale view keeps them.
pub async fn handoff_state_counts_concurrent_changes(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "race");
    create(&*store, &chat, &created_by("ann")).await;
    append_new(&*store, &chat, requested("ann", 100, &[]), 100).await;

    let joins = ["agent1", "agent2"].map(|agent| {
        let (store, chat) = (store.clone(), chat.clone());
        // Each saw the chat waiting with nobody in: a stale view once the other has joined.
        tokio::spawn(async move { append_new(&*store, &chat, joined(agent, &[agent]), 200).await })
    });
    let mut seqs = Vec::new();
    for j in joins {
        seqs.push(j.await.expect("a joining task panicked"));
    }
    let mut agents = store
        .chat_summary(&chat)
        .await
        .ok()
        .flatten()
        .map(|s| (s.waiting_since, s.human_agents));
    if let Some((_, list)) = &mut agents {
        list.sort();
    }
    assert_eq!(
        agents,
        Some((None, vec!["agent1".to_owned(), "agent2".to_owned()])),
        "handoff: two agents joining at once from stale views are both engaged"
    );
    let events = log(&*store, &chat).await;
    let last = seqs.iter().max().copied().unwrap_or_default();
    let summary = store.chat_summary(&chat).await.ok().flatten();
    assert_eq!(
        events
            .iter()
            .find(|e| e.seq == last)
            .and_then(|e| e.body.handoff().cloned()),
        summary.map(|s| s.handoff()),
        "handoff: the later join's stored event carries the list the summary holds"
    );
    let first = seqs.iter().min().copied().unwrap_or_default();
    assert_eq!(
        events
            .iter()
            .find(|e| e.seq == first)
            .and_then(|e| e.body.handoff().map(|h| h.agents.len())),
        Some(1),
        "handoff: the earlier join's stored event lists only its agent"
    );

    // A customer asks again, seeing nobody in: the agents stay.
    append_new(&*store, &chat, requested("ann", 300, &[]), 300).await;
    let s = store.chat_summary(&chat).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents.len())),
        Some((Some(300), 2)),
        "handoff: a request from a stale view keeps the engaged agents"
    );

    let leaves = [("agent1", "agent2"), ("agent2", "agent1")].map(|(agent, other)| {
        let (store, chat) = (store.clone(), chat.clone());
        // Each saw the other still in.
        tokio::spawn(async move { append_new(&*store, &chat, left(agent, &[other]), 400).await })
    });
    for l in leaves {
        l.await.expect("a leaving task panicked");
    }
    let s = store.chat_summary(&chat).await.ok().flatten();
    assert_eq!(
        s.map(|s| (s.waiting_since, s.human_agents)),
        Some((Some(300), Vec::new())),
        "handoff: two agents leaving at once from stale views leave none engaged; the wait stays"
    );
}
