//! Reactions and CSAT answers kept with the log (CONTRACT §7.3, §7.4).

use std::sync::Arc;

use natter_core::chat::ChatKey;
use natter_core::event::{Csat, EventBody, Reaction};
use natter_core::store::Store;

use crate::fixtures::*;

fn reaction(message_id: &str, user_id: &str, emoji: &str, add: bool) -> EventBody {
    let (message_id, user_id, emoji) = (message_id.into(), user_id.into(), emoji.into());
    if add {
        EventBody::ReactionAdded {
            message_id,
            user_id,
            emoji,
            reactions: Vec::new(),
            trace_id: None,
        }
    } else {
        EventBody::ReactionRemoved {
            message_id,
            user_id,
            emoji,
            reactions: Vec::new(),
            trace_id: None,
        }
    }
}

fn r(emoji: &str, user_id: &str, created_at: i64) -> Reaction {
    Reaction {
        emoji: emoji.into(),
        user_id: user_id.into(),
        created_at,
    }
}

async fn list_of(store: &dyn Store, chat: &ChatKey, id: &str) -> Vec<Reaction> {
    store
        .reactions(chat, &[id.to_owned()])
        .await
        .unwrap_or_else(|e| panic!("reactions({chat}) failed: {e}"))
        .into_iter()
        .find(|(m, _)| m == id)
        .map(|(_, l)| l)
        .unwrap_or_default()
}

/// **Reactions and CSAT kept with the log**: one reaction per (user, message, emoji) in the
/// order first added (a re-add keeps the first time), removal, the list written into each
/// reaction event as stored and as read back, only messages with reactions listed, per
/// chat; the latest CSAT answer in the summary; a delete drops the reactions.
pub async fn reactions_and_csat_follow_the_log(store: Arc<dyn Store>) {
    let chat = ChatKey::new("org", "react");
    let other = ChatKey::new("org", "react-other");
    create(&*store, &chat, &created_by("ann")).await;
    create(&*store, &other, &created_by("ann")).await;
    append_new(&*store, &chat, user("m1", "ann", "hi"), 100).await;
    append_new(&*store, &other, user("m1", "ann", "hi"), 100).await;

    let stored = append(&*store, &chat, reaction("m1", "bob", "👍", true), 200).await;
    let want = vec![r("👍", "bob", 200)];
    assert_eq!(
        stored
            .event()
            .body
            .reaction_target()
            .map(|(_, l)| l.to_vec()),
        Some(want.clone()),
        "Reactions kept with the log: append writes the list after the change into the event"
    );
    append_new(&*store, &chat, reaction("m1", "ann", "🎉", true), 300).await;
    // Adding the same one again (two racing adds) changes nothing, and keeps the first time.
    append_new(&*store, &chat, reaction("m1", "bob", "👍", true), 400).await;
    assert_eq!(
        list_of(&*store, &chat, "m1").await,
        vec![r("👍", "bob", 200), r("🎉", "ann", 300)],
        "Reactions kept with the log: one per (user, message, emoji), in the order first added"
    );
    let seq = append_new(&*store, &chat, reaction("m1", "bob", "👍", false), 500).await;
    append_new(&*store, &chat, reaction("m1", "bob", "👍", false), 600).await;
    assert_eq!(
        list_of(&*store, &chat, "m1").await,
        vec![r("🎉", "ann", 300)],
        "Reactions kept with the log: a removal takes the reaction out; removing again is a no-op"
    );
    let events = log(&*store, &chat).await;
    let e = events
        .iter()
        .find(|e| e.seq == seq)
        .expect("the removal is in the log");
    assert_eq!(
        e.body.reaction_target().map(|(_, l)| l.to_vec()),
        Some(vec![r("🎉", "ann", 300)]),
        "Reactions kept with the log: events read back hold the list as it was after them"
    );
    assert!(
        list_of(&*store, &other, "m1").await.is_empty(),
        "Reactions kept with the log: reactions belong to one chat"
    );
    let listed = store
        .reactions(&chat, &["m1".into(), "nope".into()])
        .await
        .expect("reactions");
    assert_eq!(
        listed.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        vec!["m1"],
        "Reactions kept with the log: only messages with reactions are listed"
    );

    let summary = store
        .chat_summary(&chat)
        .await
        .expect("summary")
        .expect("chat");
    assert_eq!(summary.csat, None, "CSAT: none until an answer");
    for (rating, comment, at) in [(4, Some("ok"), 700), (2, None, 800)] {
        append_new(
            &*store,
            &chat,
            EventBody::CsatSubmitted {
                user_id: "ann".into(),
                rating,
                comment: comment.map(str::to_owned),
                trace_id: None,
            },
            at,
        )
        .await;
    }
    let summary = store
        .chat_summary(&chat)
        .await
        .expect("summary")
        .expect("chat");
    assert_eq!(
        summary.csat,
        Some(Csat {
            user_id: "ann".into(),
            rating: 2,
            comment: None,
            submitted_at: 800,
        }),
        "CSAT kept with the log: the summary holds the latest answer"
    );
    let page = store
        .list_chats("org", &natter_core::chat::ChatScope::Org, 10, 0)
        .await
        .expect("list");
    let listed = page.chats.iter().find(|c| c.key == chat).expect("listed");
    assert_eq!(
        listed.csat.as_ref().map(|c| c.rating),
        Some(2),
        "CSAT kept with the log: lists show it too"
    );

    assert!(store.delete_chat(&chat).await.expect("delete"));
    create(&*store, &chat, &created_by("ann")).await;
    append_new(&*store, &chat, user("m1", "ann", "hi"), 900).await;
    assert!(
        list_of(&*store, &chat, "m1").await.is_empty(),
        "Real delete: a recreated chat has none of the old reactions"
    );
    let summary = store
        .chat_summary(&chat)
        .await
        .expect("summary")
        .expect("chat");
    assert_eq!(summary.csat, None, "Real delete: nor the old CSAT answer");
}
