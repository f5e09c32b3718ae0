//! The in-process [`Presence`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::chat::{ChatKey, ConnectionId};
use crate::presence::Presence;

#[derive(Default)]
pub struct MemoryPresence {
    /// chat → user → that user's connections in the chat.
    chats: Mutex<HashMap<ChatKey, BTreeMap<String, BTreeSet<ConnectionId>>>>,
}

impl MemoryPresence {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<ChatKey, BTreeMap<String, BTreeSet<ConnectionId>>>) -> R,
    ) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain maps;
        // the data is still consistent enough to keep serving presence.
        let mut guard = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn list(users: Option<&BTreeMap<String, BTreeSet<ConnectionId>>>) -> Vec<String> {
    users
        .map(|u| u.keys().cloned().collect())
        .unwrap_or_default()
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String> {
        self.with(|chats| {
            let users = chats.entry(chat.clone()).or_default();
            users
                .entry(user_id.to_owned())
                .or_default()
                .insert(conn.clone());
            list(Some(users))
        })
    }

    async fn leave(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String> {
        self.with(|chats| {
            let Some(users) = chats.get_mut(chat) else {
                return Vec::new();
            };
            if let Some(conns) = users.get_mut(user_id) {
                conns.remove(conn);
                if conns.is_empty() {
                    users.remove(user_id);
                }
            }
            let online = list(Some(users));
            if users.is_empty() {
                chats.remove(chat);
            }
            online
        })
    }

    async fn online(&self, chat: &ChatKey) -> Vec<String> {
        self.with(|chats| list(chats.get(chat)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tabs_count_once() {
        let p = MemoryPresence::default();
        let chat = ChatKey::new("o", "c");
        let (a1, a2, b): (ConnectionId, ConnectionId, ConnectionId) =
            ("a1".into(), "a2".into(), "b".into());
        p.join(&chat, "ann", &a1).await;
        p.join(&chat, "ann", &a2).await;
        assert_eq!(p.join(&chat, "bob", &b).await, vec!["ann", "bob"]);
        assert_eq!(p.leave(&chat, "ann", &a1).await, vec!["ann", "bob"]);
        assert_eq!(p.leave(&chat, "ann", &a2).await, vec!["bob"]);
        assert!(p.leave(&chat, "bob", &b).await.is_empty());
    }
}
