//! The in-process [`Bus`]: one [`ring`] channel per chat with subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;

use crate::bus::{Bus, BusError, Subscription, TurnSnapshot, UserEvent, UserSubscription};
use crate::chat::{ChatKey, Identity};
use crate::event::{BusMessage, LiveEvent};
use crate::ring;

struct Channel {
    tx: ring::Sender<Arc<BusMessage>>,
    turn: Option<TurnSnapshot>,
}

type Channels = Mutex<HashMap<ChatKey, Channel>>;

/// Keyed by org and user: a user's channel is the same whatever scopes its tokens carry.
type UserKey = (Arc<str>, Arc<str>);
type UserChannels = Mutex<HashMap<UserKey, ring::Sender<Arc<UserEvent>>>>;

fn user_key(user: &Identity) -> UserKey {
    (user.org.clone(), user.user_id.clone())
}

/// Delivers within one process. The default when Natter runs as a single node.
pub struct MemoryBus {
    channels: Arc<Channels>,
    users: Arc<UserChannels>,
    capacity: usize,
}

/// A user's channel carries only a few events per user action.
const USER_CHANNEL_CAPACITY: usize = 64;

impl MemoryBus {
    /// `capacity` bounds how far (in messages) one subscriber may fall behind before it lags.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Arc::new(Mutex::new(HashMap::new())),
            users: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(16),
        }
    }

    /// Chats with a channel open (subscribers or a running turn).
    pub fn open_channels(&self) -> usize {
        self.channels.lock().map(|c| c.len()).unwrap_or(0)
    }
}

fn lock(
    channels: &Channels,
) -> Result<std::sync::MutexGuard<'_, HashMap<ChatKey, Channel>>, BusError> {
    channels
        .lock()
        .map_err(|_| BusError("memory bus lock poisoned".into()))
}

/// Drops a chat's channel once nobody listens and no turn is buffering.
fn sweep(channels: &Weak<Channels>, chat: &ChatKey) {
    let Some(channels) = channels.upgrade() else {
        return;
    };
    if let Ok(mut map) = channels.lock()
        && map
            .get(chat)
            .is_some_and(|c| c.tx.receiver_count() == 0 && c.turn.is_none())
    {
        map.remove(chat);
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, chat: &ChatKey, message: BusMessage) -> Result<(), BusError> {
        let mut map = lock(&self.channels)?;
        let channel = match map.get_mut(chat) {
            Some(c) => c,
            None => {
                // Nobody listens, but a turn's buffer must still be kept for later joiners.
                if !matches!(
                    message,
                    BusMessage::Live {
                        event: LiveEvent::TurnStarted { .. } | LiveEvent::Token { .. },
                        ..
                    }
                ) {
                    return Ok(());
                }
                let (tx, _) = ring::channel(self.capacity);
                map.entry(chat.clone())
                    .or_insert(Channel { tx, turn: None })
            }
        };
        match &message {
            BusMessage::Live {
                event: LiveEvent::TurnStarted { turn },
                ..
            } => {
                channel.turn = Some(TurnSnapshot {
                    turn: turn.clone(),
                    tokens: Vec::new(),
                });
            }
            BusMessage::Live {
                event: LiveEvent::Token { turn, index, text },
                ..
            } => {
                if let Some(snap) = channel.turn.as_mut().filter(|s| s.turn == *turn) {
                    // Tokens arrive in index order from the one task running the turn.
                    if snap.tokens.len() as u64 == *index {
                        snap.tokens.push(text.clone());
                    }
                }
            }
            BusMessage::Live {
                event: LiveEvent::TurnEndUnstored { turn, .. },
                ..
            } if channel
                .turn
                .as_ref()
                .is_some_and(|s| s.turn.message_id == turn.message_id) =>
            {
                channel.turn = None;
            }
            BusMessage::Durable { event, .. } => {
                if let Some(ended) = event.body.ends_turn()
                    && channel
                        .turn
                        .as_ref()
                        .is_some_and(|s| &*s.turn.message_id == ended)
                {
                    channel.turn = None;
                }
            }
            _ => {}
        }
        let idle = channel.tx.receiver_count() == 0 && channel.turn.is_none();
        // A send error only means nobody is subscribed right now.
        let _ = channel.tx.send(Arc::new(message));
        if idle {
            map.remove(chat);
        }
        Ok(())
    }

    async fn subscribe(&self, chat: &ChatKey) -> Result<Subscription, BusError> {
        let mut map = lock(&self.channels)?;
        let channel = map.entry(chat.clone()).or_insert_with(|| Channel {
            tx: ring::channel(self.capacity).0,
            turn: None,
        });
        let rx = channel.tx.subscribe();
        let running_turn = channel.turn.clone();
        let weak = Arc::downgrade(&self.channels);
        let key = chat.clone();
        Ok(Subscription {
            rx,
            running_turn,
            on_drop: Some(Box::new(move || sweep(&weak, &key))),
        })
    }

    async fn running_turn(&self, chat: &ChatKey) -> Result<Option<TurnSnapshot>, BusError> {
        Ok(lock(&self.channels)?.get(chat).and_then(|c| c.turn.clone()))
    }

    async fn publish_user(&self, user: &Identity, event: UserEvent) -> Result<(), BusError> {
        let users = self
            .users
            .lock()
            .map_err(|_| BusError("memory bus lock poisoned".into()))?;
        if let Some(tx) = users.get(&user_key(user)) {
            // A send error only means nobody is subscribed right now.
            let _ = tx.send(Arc::new(event));
        }
        Ok(())
    }

    async fn subscribe_user(&self, user: &Identity) -> Result<UserSubscription, BusError> {
        let mut users = self
            .users
            .lock()
            .map_err(|_| BusError("memory bus lock poisoned".into()))?;
        let rx = users
            .entry(user_key(user))
            .or_insert_with(|| ring::channel(USER_CHANNEL_CAPACITY).0)
            .subscribe();
        let weak = Arc::downgrade(&self.users);
        let key = user_key(user);
        Ok(UserSubscription {
            rx,
            on_drop: Some(Box::new(move || {
                if let Some(users) = weak.upgrade()
                    && let Ok(mut map) = users.lock()
                    && map.get(&key).is_some_and(|tx| tx.receiver_count() == 0)
                {
                    map.remove(&key);
                }
            })),
        })
    }

    async fn ping(&self) -> Result<(), BusError> {
        lock(&self.channels).map(|_| ())
    }

    fn local_channels(&self) -> usize {
        self.open_channels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBody, StoredEvent, TurnRef};

    fn turn() -> Arc<TurnRef> {
        Arc::new(TurnRef {
            message_id: "a1".into(),
            request_id: "r1".into(),
            trace_id: None,
        })
    }

    fn token(t: &Arc<TurnRef>, index: u64, text: &str) -> BusMessage {
        BusMessage::Live {
            event: LiveEvent::Token {
                turn: t.clone(),
                index,
                text: text.into(),
            },
            origin: None,
        }
    }

    #[tokio::test]
    async fn buffers_the_running_turn_for_late_subscribers() {
        let bus = MemoryBus::new(64);
        let chat = ChatKey::new("o", "c");
        let t = turn();
        bus.publish(
            &chat,
            BusMessage::Live {
                event: LiveEvent::TurnStarted { turn: t.clone() },
                origin: None,
            },
        )
        .await
        .unwrap();
        bus.publish(&chat, token(&t, 0, "he")).await.unwrap();
        bus.publish(&chat, token(&t, 1, "llo")).await.unwrap();
        let mut sub = bus.subscribe(&chat).await.unwrap();
        let snap = sub.running_turn.clone().unwrap();
        assert_eq!(snap.tokens, vec![Arc::from("he"), Arc::from("llo")]);
        bus.publish(&chat, token(&t, 2, "!")).await.unwrap();
        let got = sub.rx.recv().await.unwrap();
        assert_eq!(*got, token(&t, 2, "!"));

        let end = StoredEvent {
            seq: 3,
            created_at: 0,
            body: EventBody::AssistantMessage {
                message_id: "a1".into(),
                request_id: "r1".into(),
                text: "hello!".into(),
                finish_reason: "stop".into(),
                usage: None,
                model: None,
                trace_id: None,
                token_count: Some(3),
                warnings: None,
            },
        };
        bus.publish(
            &chat,
            BusMessage::Durable {
                event: Arc::new(end),
                origin: None,
            },
        )
        .await
        .unwrap();
        assert!(bus.running_turn(&chat).await.unwrap().is_none());
        drop(sub);
        assert_eq!(bus.open_channels(), 0);
    }
}
