//! [`RedisPresence`]: who is online in a chat, across nodes (like centrifuge's Redis
//! presence): per chat a sorted set connection → expiry and a hash connection → user.
//!
//! Each node writes only its own connections and refreshes them (`refresh`, every few
//! seconds from the core) to now + `presence_ttl` (25 s by default), on Redis's clock. Any
//! change (join, leave, refresh) first drops the chat's expired connections, whichever node
//! added them, so a dead node's members leave within the TTL plus one refresh period (under
//! 30 s). `refresh` reports each chat whose set of users changed (the users before and after
//! the script, compared), so exactly one node announces a dead node's members leaving.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use natter_core::bus::BusError;
use natter_core::chat::{ChatKey, ConnectionId};
use natter_core::presence::Presence;
use redis::Value;

use crate::{Shared, scripts};

/// This node's connections per chat: connection → user.
type Local = HashMap<ChatKey, HashMap<ConnectionId, String>>;

pub struct RedisPresence {
    shared: Arc<Shared>,
    local: Mutex<Local>,
    ttl: Duration,
}

fn users(v: &Value) -> Vec<String> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| match i {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Sorted, each user once.
fn sorted(users: Vec<String>) -> Vec<String> {
    users
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl RedisPresence {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let ttl = shared.config.presence_ttl;
        Self {
            shared,
            local: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's view of a chat, for when Redis cannot be reached.
    fn local_online(&self, chat: &ChatKey) -> Vec<String> {
        sorted(
            self.local()
                .get(chat)
                .map(|c| c.values().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// Runs `PRESENCE_UPDATE`; returns the users (one per connection) before and after.
    async fn update(
        &self,
        chat: &ChatKey,
        mode: &str,
        args: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>), BusError> {
        let keys = &self.shared.keys;
        let mut inv = scripts::PRESENCE_UPDATE.prepare_invoke();
        inv.key(keys.presence(chat))
            .key(keys.presence_users(chat))
            .arg(
                u64::try_from(self.ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(mode);
        for a in &args {
            inv.arg(a);
        }
        let mut conn = self.shared.conn();
        let value: Value = self
            .shared
            .run("presence", async move { inv.invoke_async(&mut conn).await })
            .await?;
        match value {
            Value::Array(parts) if parts.len() == 2 => Ok((users(&parts[0]), users(&parts[1]))),
            _ => Err(BusError("unexpected presence reply".into())),
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, chat: &ChatKey, user_id: &str, conn: &ConnectionId) -> Vec<String> {
        self.local()
            .entry(chat.clone())
            .or_default()
            .insert(conn.clone(), user_id.to_owned());
        match self
            .update(chat, "add", vec![conn.to_string(), user_id.to_owned()])
            .await
        {
            Ok((_, after)) => sorted(after),
            Err(e) => {
                tracing::warn!(%chat, error = %e, "presence join not recorded in redis");
                self.local_online(chat)
            }
        }
    }

    async fn leave(&self, chat: &ChatKey, _user_id: &str, conn: &ConnectionId) -> Vec<String> {
        {
            let mut local = self.local();
            if let Some(c) = local.get_mut(chat) {
                c.remove(conn);
                if c.is_empty() {
                    local.remove(chat);
                }
            }
        }
        match self.update(chat, "rem", vec![conn.to_string()]).await {
            Ok((_, after)) => sorted(after),
            Err(e) => {
                // The entry expires by itself (nobody refreshes it any more).
                tracing::warn!(%chat, error = %e, "presence leave not recorded in redis");
                self.local_online(chat)
            }
        }
    }

    async fn online(&self, chat: &ChatKey) -> Vec<String> {
        let keys = &self.shared.keys;
        let mut inv = scripts::PRESENCE_ONLINE.prepare_invoke();
        inv.key(keys.presence(chat)).key(keys.presence_users(chat));
        let mut conn = self.shared.conn();
        match self
            .shared
            .run("presence_online", async move {
                inv.invoke_async::<Value>(&mut conn).await
            })
            .await
        {
            Ok(v) => sorted(users(&v)),
            Err(e) => {
                tracing::warn!(%chat, error = %e, "reading presence from redis failed");
                self.local_online(chat)
            }
        }
    }

    async fn refresh(&self) -> Vec<(ChatKey, Vec<String>)> {
        let chats: Vec<(ChatKey, Vec<String>)> = self
            .local()
            .iter()
            .map(|(chat, conns)| {
                let args = conns
                    .iter()
                    .flat_map(|(c, u)| [c.to_string(), u.clone()])
                    .collect();
                (chat.clone(), args)
            })
            .collect();
        // One script call per chat, pipelined on the multiplexed connection.
        let results = futures::future::join_all(chats.into_iter().map(|(chat, args)| async move {
            let result = self.update(&chat, "add", args).await;
            (chat, result)
        }))
        .await;
        let mut changed = Vec::new();
        for (chat, result) in results {
            match result {
                Ok((before, after)) => {
                    let (before, after) = (sorted(before), sorted(after));
                    if before != after {
                        changed.push((chat, after));
                    }
                }
                Err(e) => {
                    tracing::warn!(%chat, error = %e, "refreshing presence failed");
                }
            }
        }
        changed
    }
}
