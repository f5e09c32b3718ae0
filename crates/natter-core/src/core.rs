//! [`ChatCore`]: the one API every face calls.

use std::sync::Arc;

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tracing::warn;

use crate::bus::Bus;
use crate::chat::{ChatInfo, ChatKey, ConnectionId, Identity};
use crate::config::{AiMode, CoreConfig};
use crate::error::CoreError;
use crate::event::{BusMessage, EventBody, LiveEvent, StoredEvent};
use crate::feed::Feed;
use crate::presence::Presence;
use crate::provider::Provider;
use crate::store::{Appended, Store};
use crate::telemetry;
use crate::turn::{TurnRequest, TurnScheduler};

use natter_protocol::fields::check_id_len;

pub(crate) struct Inner {
    pub config: CoreConfig,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub provider: Arc<dyn Provider>,
    pub turns: TurnScheduler,
}

impl Inner {
    /// Publishes, logging (not failing) on a bus error: the event is already durable and
    /// members' feeds fill the gap from the store on the next event.
    pub async fn publish(&self, chat: &ChatKey, message: BusMessage) {
        if let Err(e) = self.bus.publish(chat, message).await {
            warn!(chat = %chat, error = %e, "bus publish failed");
        }
    }

    pub async fn publish_live(
        &self,
        chat: &ChatKey,
        event: LiveEvent,
        origin: Option<ConnectionId>,
    ) {
        self.publish(chat, BusMessage::Live { event, origin }).await;
    }

    pub async fn publish_durable(
        &self,
        chat: &ChatKey,
        event: StoredEvent,
        origin: Option<ConnectionId>,
    ) {
        self.publish(
            chat,
            BusMessage::Durable {
                event: Arc::new(event),
                origin,
            },
        )
        .await;
    }
}

/// Chats, their logs, turns and presence, behind one cheap-to-clone handle.
#[derive(Clone)]
pub struct ChatCore {
    inner: Arc<Inner>,
}

/// What a member asks for when joining.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub last_seq: Option<u64>,
    pub epoch: Option<String>,
}

/// The state a member starts from.
pub struct JoinOutcome {
    pub info: ChatInfo,
    /// Whether `replay` fills the whole gap after the client's `lastSeq`.
    pub recovered: bool,
    /// Events after `lastSeq`, in order (empty unless recovered).
    pub replay: Vec<StoredEvent>,
    /// The latest messages, oldest first.
    pub messages: Vec<StoredEvent>,
    pub online_user_ids: Vec<String>,
    /// Live events from `info.head_seq` on; starts with the running turn's tokens so far.
    pub feed: Feed,
}

/// A user message as a face hands it to the core.
#[derive(Debug, Clone)]
pub struct UserMessageInput {
    pub message_id: String,
    pub text: String,
    pub parts: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostOutcome {
    pub seq: u64,
    pub duplicate: bool,
    /// The turn this message started (or started the first time it was sent).
    pub request_id: Option<String>,
    pub created_at: i64,
}

/// Ids reach the core from every face, so the core checks their length itself.
fn check_id(what: &str, id: &str) -> Result<(), CoreError> {
    check_id_len("request", what, id).map_err(CoreError::Rejected)
}

impl ChatCore {
    pub fn new(
        config: CoreConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        provider: Arc<dyn Provider>,
    ) -> Self {
        telemetry::describe();
        let turns = TurnScheduler::new(config.max_concurrent_turns);
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                bus,
                presence,
                provider,
                turns,
            }),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// The provider's name (shown to users, e.g. to label the demo provider).
    pub fn provider_name(&self) -> &str {
        self.inner.provider.name()
    }

    /// Joins `conn` to a chat: creates it if allowed, replays what the client missed, and
    /// returns its live feed.
    pub async fn join(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        req: JoinRequest,
    ) -> Result<JoinOutcome, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        let inner = &self.inner;
        // Subscribe before reading the head: every event after the head then arrives live,
        // and anything live at or below the head is dropped by the feed as a duplicate.
        let mut subscription = inner.bus.subscribe(chat).await?;
        let info = inner
            .store
            .open_chat(chat, inner.config.auto_create_chats, Some(&who.user_id))
            .await?
            .ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::NotFound,
                    format!("chat `{}` does not exist", chat.chat_id),
                )
            })?;

        // A turn buffered at subscribe time may have ended before the head was read: its end
        // is then in the replay or the history, and its tokens must not follow the ack. If it
        // ends after this check, its end arrives live after the tokens, as it should.
        let still_running = inner.bus.running_turn(chat).await?;
        let same_turn = |a: &crate::bus::TurnSnapshot| {
            still_running
                .as_ref()
                .is_some_and(|b| b.turn.message_id == a.turn.message_id)
        };
        if !subscription.running_turn.as_ref().is_some_and(same_turn) {
            subscription.running_turn = None;
        }

        let mut recovered = false;
        let mut replay = Vec::new();
        if let (Some(last_seq), Some(epoch)) = (req.last_seq, req.epoch.as_deref()) {
            let gap = info.head_seq.saturating_sub(last_seq);
            if epoch == info.epoch
                && last_seq <= info.head_seq
                && gap as usize <= inner.config.replay_limit
            {
                replay = inner
                    .store
                    .events_after(chat, last_seq, gap as usize)
                    .await?;
                recovered = replay.len() as u64 == gap;
                if !recovered {
                    replay.clear();
                }
            }
        }
        let messages = inner
            .store
            .recent_messages(chat, info.head_seq, inner.config.join_history)
            .await?;
        let online_user_ids = inner.presence.join(chat, &who.user_id, conn).await;
        inner
            .publish_live(
                chat,
                LiveEvent::Presence {
                    online_user_ids: online_user_ids.clone(),
                },
                None,
            )
            .await;
        metrics::counter!(telemetry::CHATS_JOINED).increment(1);
        let feed = Feed::new(
            chat.clone(),
            conn.clone(),
            info.head_seq,
            subscription,
            inner.store.clone(),
            inner.bus.clone(),
            inner.config.replay_limit,
        );
        Ok(JoinOutcome {
            info,
            recovered,
            replay,
            messages,
            online_user_ids,
            feed,
        })
    }

    /// Takes `conn` out of the chat's presence. The face drops the member's feed.
    pub async fn leave(&self, who: &Identity, conn: &ConnectionId, chat: &ChatKey) {
        let online_user_ids = self.inner.presence.leave(chat, &who.user_id, conn).await;
        self.inner
            .publish_live(chat, LiveEvent::Presence { online_user_ids }, None)
            .await;
    }

    pub async fn online(&self, chat: &ChatKey) -> Vec<String> {
        self.inner.presence.online(chat).await
    }

    /// Stores a user message, tells the chat, and starts a turn when the AI mode says so.
    /// Returns only after the message is durable.
    pub async fn post_user_message(
        &self,
        who: &Identity,
        conn: Option<&ConnectionId>,
        chat: &ChatKey,
        msg: UserMessageInput,
    ) -> Result<PostOutcome, CoreError> {
        let inner = &self.inner;
        check_id("messageId", &msg.message_id)?;
        if let Some(r) = &msg.request_id {
            check_id("requestId", r)?;
        }
        if msg.text.len() > inner.config.max_text_bytes {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!(
                    "the text is {} bytes, the limit is {}",
                    msg.text.len(),
                    inner.config.max_text_bytes
                ),
            ));
        }
        let ai = inner.config.ai_mode == AiMode::EveryMessage;
        let request_id = ai.then(|| msg.request_id.clone().unwrap_or_else(new_id));
        let body = EventBody::UserMessage {
            message_id: msg.message_id,
            user_id: who.user_id.to_string(),
            text: msg.text,
            parts: msg.parts,
            request_id: request_id.clone(),
            trace_id: msg.trace_id.clone(),
        };
        let appended = inner
            .store
            .append(chat, body, now_millis())
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NoSuchChat(_) => CoreError::rejected(
                    ErrorCode::NotFound,
                    format!("chat `{}` does not exist", chat.chat_id),
                ),
                other => other.into(),
            })?;
        let event = match appended {
            Appended::Duplicate(event) => {
                let request_id = match &event.body {
                    EventBody::UserMessage { request_id, .. } => request_id.clone(),
                    _ => None,
                };
                return Ok(PostOutcome {
                    seq: event.seq,
                    duplicate: true,
                    request_id,
                    created_at: event.created_at,
                });
            }
            Appended::New(event) => event,
        };
        metrics::counter!(telemetry::MESSAGES).increment(1);
        let outcome = PostOutcome {
            seq: event.seq,
            duplicate: false,
            request_id: request_id.clone(),
            created_at: event.created_at,
        };
        let trigger_seq = event.seq;
        inner.publish_durable(chat, event, conn.cloned()).await;
        if let Some(request_id) = request_id {
            inner
                .turns
                .enqueue(
                    &self.inner,
                    TurnRequest {
                        chat: chat.clone(),
                        trigger_seq,
                        request_id: request_id.into(),
                        trace_id: msg.trace_id.map(Into::into),
                    },
                )
                .await;
        }
        Ok(outcome)
    }

    pub async fn typing(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        typing: bool,
        trace_id: Option<String>,
    ) {
        self.inner
            .publish_live(
                chat,
                LiveEvent::Typing {
                    user_id: who.user_id.clone(),
                    typing,
                    trace_id: trace_id.map(Into::into),
                },
                Some(conn.clone()),
            )
            .await;
    }

    /// Stops the chat's running turn (or the queued one named by `request_id`). The turn
    /// ends with its partial text and `finishReason: "aborted"`. Returns its request id.
    pub async fn abort(
        &self,
        chat: &ChatKey,
        request_id: Option<&str>,
        reason: Option<String>,
    ) -> Result<String, CoreError> {
        self.inner
            .turns
            .abort(&self.inner, chat, request_id, reason)
            .await
            .ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::NoActiveTurn,
                    match request_id {
                        Some(r) => format!("no running or queued turn with requestId `{r}`"),
                        None => "no turn is running in this chat".to_owned(),
                    },
                )
            })
    }

    /// Stores a read receipt and tells the chat. Returns its `seq`.
    pub async fn mark_read(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
        message_ids: Vec<String>,
        read_at: i64,
        trace_id: Option<String>,
    ) -> Result<StoredEvent, CoreError> {
        for id in &message_ids {
            check_id("messageIds", id)?;
        }
        if message_ids.len() > self.inner.config.max_read_ids {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!(
                    "at most {} messageIds per receipt",
                    self.inner.config.max_read_ids
                ),
            ));
        }
        let body = EventBody::ReadReceipt {
            user_id: who.user_id.to_string(),
            message_ids,
            read_at,
            trace_id,
        };
        let event = self
            .inner
            .store
            .append(chat, body, now_millis())
            .await?
            .event()
            .clone();
        self.inner
            .publish_durable(chat, event.clone(), Some(conn.clone()))
            .await;
        Ok(event)
    }

    /// Whether the store and the bus answer (for `/readyz`).
    pub async fn ready(&self) -> Result<(), CoreError> {
        self.inner.store.ping().await?;
        self.inner.bus.ping().await?;
        Ok(())
    }

    /// Ends every running and queued turn with `ai:error` code `shutdown`, keeping partial
    /// text, and waits (up to `grace`) for them to be stored.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.turns.shutdown(&self.inner, grace).await;
    }
}

/// A fresh, time-ordered id (UUID v7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
