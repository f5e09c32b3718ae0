//! Who is in a chat and what they see: join (with catch-up and the live feed), follow,
//! leave, presence (`online`, `typing`) and read receipts.

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tracing::warn;

use super::{ChatCore, Inner, JoinOutcome, JoinRequest, check_id, not_found};
use crate::bus::{Subscription, TurnSnapshot};
use crate::chat::{ChatInfo, ChatKey, ConnectionId, Identity, NewChat};
use crate::error::CoreError;
use crate::event::{EventBody, LiveEvent, StoredEvent};
use crate::feed::Feed;
use crate::store::OpenTurn;
use crate::telemetry;

impl ChatCore {
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
        self.authorize(who, chat).await?;
        let inner = &self.inner;
        let agent = match &req.agent_id {
            Some(id) => {
                check_id("agentId", id)?;
                inner.agents.resolve_id(id)?
            }
            None => None,
        };
        let create = inner.config.auto_create_chats.then(|| NewChat {
            created_by: Some(who.user_id.to_string()),
            metadata: req
                .agent_id
                .as_ref()
                .map(|id| serde_json::json!({ crate::agents::AGENT_ID_KEY: id })),
            members: req.members.clone(),
        });
        let (info, subscription) = self.subscribe_at_head(chat, create.as_ref()).await?;
        if let Some(agent) = &agent {
            self.check_binding(chat, agent).await?;
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
        // Observers watch without being listed (CONTRACT §7.1).
        let online_user_ids = if who.may_write() {
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
            online_user_ids
        } else {
            inner.presence.online(chat).await
        };
        metrics::counter!(telemetry::CHATS_JOINED).increment(1);
        let running = subscription
            .running_turn
            .as_ref()
            .map(|t| t.turn.request_id.clone());
        // Read after the subscription, so no turn the feed will not bring is missed. A store
        // error costs the list (logged), not the join.
        let open_turns = match inner.store.open_turns(chat).await {
            Ok(turns) => turns,
            Err(e) => {
                warn!(chat = %chat, error = %e, "reading the open turns for a join failed");
                Vec::new()
            }
        };
        let pending_tool_calls = match running {
            Some(request_id) if !recovered => {
                self.pending_tool_calls(chat, &open_turns, &request_id, info.head_seq)
                    .await
            }
            _ => Vec::new(),
        };
        let feed = self.feed(chat, conn, info.head_seq, subscription);
        Ok(JoinOutcome {
            info,
            recovered,
            replay,
            messages,
            online_user_ids,
            feed,
            pending_tool_calls,
            open_turns,
        })
    }

    /// Turn `request_id`'s client-run calls stored up to `head` and not answered yet
    /// (`open_turns`: the chat's, as the join read them). A store error costs the list
    /// (logged), not the join: a join with `lastSeq` still replays them.
    pub(super) async fn pending_tool_calls(
        &self,
        chat: &ChatKey,
        open_turns: &[OpenTurn],
        request_id: &str,
        head: u64,
    ) -> Vec<StoredEvent> {
        let Some(turn) = open_turns.iter().find(|t| t.request_id == request_id) else {
            return Vec::new();
        };
        let span = head.saturating_sub(turn.opened_seq) as usize;
        let limit = span.min(self.inner.config.replay_limit);
        let read = self.inner.store.events_after(chat, turn.opened_seq, limit);
        let events: Vec<StoredEvent> = match read.await {
            Ok(events) => events,
            Err(e) => {
                warn!(chat = %chat, error = %e, "reading a running turn's pending tool calls failed");
                return Vec::new();
            }
        };
        let answered: std::collections::HashSet<&str> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::ToolResult { tool_call_id, .. } => Some(tool_call_id.as_str()),
                _ => None,
            })
            .collect();
        events
            .iter()
            .filter(|e| {
                matches!(&e.body, EventBody::ToolCall {
                    request_id: r, tool_call_id, executor, ..
                } if r == request_id && executor == "client" && !answered.contains(tool_call_id.as_str()))
            })
            .cloned()
            .collect()
    }

    /// Subscribes to the chat and reads its head, so that every event after the head arrives
    /// live and the running turn's buffer (if any) belongs to a turn not yet ended at the head.
    pub(super) async fn subscribe_at_head(
        &self,
        chat: &ChatKey,
        create: Option<&NewChat>,
    ) -> Result<(ChatInfo, Subscription), CoreError> {
        let inner = &self.inner;
        // A member starts from a settled log: turns the last run left open have ended (at
        // once after a start; a no-op later). Should that fail, the join goes on and the ends
        // arrive live once stored.
        self.settle(chat).await;
        // Subscribe before reading the head: every event after the head then arrives live,
        // and anything live at or below the head is dropped by the feed as a duplicate.
        let mut subscription = inner.bus.subscribe(chat).await?;
        let info = inner
            .store
            .open_chat(chat, create)
            .await?
            .ok_or_else(|| not_found(chat))?;

        // A turn buffered at subscribe time may have ended before the head was read: its end
        // is then in the replay or the history, and its tokens must not follow. If it ends
        // after this check, its end arrives live after the tokens, as it should.
        let still_running = inner.bus.running_turn(chat).await?;
        let same_turn = |a: &TurnSnapshot| {
            still_running
                .as_ref()
                .is_some_and(|b| b.turn.message_id == a.turn.message_id)
        };
        if let Some(snapshot) = &subscription.running_turn
            && !same_turn(snapshot)
            && !Self::ended_after(inner, chat, info.head_seq, &snapshot.turn.message_id).await?
        {
            subscription.running_turn = None;
        }
        Ok((info, subscription))
    }

    /// Whether turn `message_id`, no longer running, ended after `head`: then it ended
    /// between the head read and the check above, so its end and the tokens since the
    /// subscription arrive live, and the member needs the snapshot's tokens before them (else
    /// its tokens would stop short of the reply). The bus drops a turn's buffer only once its
    /// end is stored, so the end is in the store by now, a few events past the head at most.
    pub(super) async fn ended_after(
        inner: &Inner,
        chat: &ChatKey,
        head: u64,
        message_id: &str,
    ) -> Result<bool, CoreError> {
        const LOOK_AHEAD: usize = 64;
        let after = inner.store.events_after(chat, head, LOOK_AHEAD).await?;
        Ok(after.iter().any(|e| e.body.ends_turn() == Some(message_id)))
    }

    pub(super) fn feed(
        &self,
        chat: &ChatKey,
        conn: &ConnectionId,
        head: u64,
        sub: Subscription,
    ) -> Feed {
        Feed::new(
            chat.clone(),
            conn.clone(),
            head,
            sub,
            self.inner.store.clone(),
            self.inner.bus.clone(),
            self.inner.config.replay_limit,
        )
    }

    /// Watches a chat without joining its presence (an HTTP stream following one turn, a
    /// resumed stream). The feed starts at the head, with the running turn's tokens so far:
    /// [`Feed::current_turn`] names that turn.
    pub async fn follow(
        &self,
        who: &Identity,
        conn: &ConnectionId,
        chat: &ChatKey,
    ) -> Result<(ChatInfo, Feed), CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.authorize(who, chat).await?;
        let (info, subscription) = self.subscribe_at_head(chat, None).await?;
        let feed = self.feed(chat, conn, info.head_seq, subscription);
        Ok((info, feed))
    }

    /// Takes `conn` out of the chat's presence. The face drops the member's feed.
    pub async fn leave(&self, who: &Identity, conn: &ConnectionId, chat: &ChatKey) {
        if !who.may_write() {
            return; // an observer never joined presence
        }
        let online_user_ids = self.inner.presence.leave(chat, &who.user_id, conn).await;
        self.inner
            .publish_live(chat, LiveEvent::Presence { online_user_ids }, None)
            .await;
    }

    pub async fn online(&self, chat: &ChatKey) -> Vec<String> {
        self.inner.presence.online(chat).await
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
            origin: Some(conn.to_string()),
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
}
