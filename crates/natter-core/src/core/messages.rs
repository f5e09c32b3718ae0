//! Writing to a chat: a user message (which may open a turn), regenerating the last answer,
//! and appending an event durably then publishing it.

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;

use super::{ChatCore, PostOutcome, UserMessageInput, check_admits, check_id, new_id, store_error};
use crate::chat::{ChatKey, ChatSummary, ConnectionId, Identity, Source};
use crate::config::AiMode;
use crate::error::CoreError;
use crate::event::{EventBody, StoredEvent};
use crate::provider::ToolSpec;
use crate::scheduler::Opened;
use crate::store::Appended;
use crate::telemetry;

impl ChatCore {
    /// Appends a chat-level event and tells the chat.
    pub(crate) async fn append_and_publish(
        &self,
        chat: &ChatKey,
        body: EventBody,
        origin: Option<&ConnectionId>,
    ) -> Result<StoredEvent, CoreError> {
        let event = self
            .inner
            .store
            .append(chat, body, now_millis())
            .await
            .map_err(|e| store_error(chat, e))?
            .event()
            .clone();
        self.inner
            .publish_durable(chat, event.clone(), origin.cloned())
            .await;
        Ok(event)
    }

    /// Stores a user message, tells the chat, and starts a turn when the AI mode says so.
    /// Returns only after the message is durable.
    pub async fn post_user_message(
        &self,
        who: &Identity,
        from: &Source,
        chat: &ChatKey,
        msg: UserMessageInput,
    ) -> Result<PostOutcome, CoreError> {
        let conn = from.conn.as_ref();
        let inner = &self.inner;
        who.check_may_write("send messages")?;
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
        if let Some(clash) = msg
            .tools
            .iter()
            .find(|t| inner.tools.get(&t.name).is_some())
        {
            return Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "`tools`: the server already has a tool named `{}`",
                    clash.name
                ),
            ));
        }
        check_id("chatId", &chat.chat_id)?;
        let summary = inner.store.chat_summary(chat).await?;
        if let Some(s) = &summary {
            check_admits(who, s)?;
        }
        // Handoff (CONTRACT §7.2): an agent's message is marked as such, and no AI turn
        // starts while a human agent is engaged.
        let role = crate::handoff::message_role(who, summary.as_ref());
        let ai = inner.config.ai_mode == AiMode::EveryMessage
            && role.is_none()
            && summary.as_ref().is_none_or(ChatSummary::ai_engaged);
        inner.limits.message(who, from, ai)?;
        if ai {
            self.settle(chat).await;
        }
        let attachments = if msg.attachments.is_empty() {
            None
        } else {
            let resolved = self.resolve_attachments(chat, &msg.attachments).await?;
            Some(
                resolved
                    .iter()
                    .map(crate::message_attachments::for_message)
                    .collect(),
            )
        };
        let request_id = ai.then(|| msg.request_id.clone().unwrap_or_else(new_id));
        let body = EventBody::UserMessage {
            message_id: msg.message_id,
            user_id: who.user_id.to_string(),
            text: msg.text,
            parts: msg.parts,
            request_id: request_id.clone(),
            trace_id: msg.trace_id.clone(),
            origin: conn.map(|c| c.to_string()),
            role,
            tools: (!msg.tools.is_empty()).then(|| msg.tools.clone()),
            attachments,
        };
        let appended = inner
            .store
            .append(chat, body, now_millis())
            .await
            .map_err(|e| store_error(chat, e))?;
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
        inner.publish_durable(chat, event, conn.cloned()).await;
        // The store opened the turn with the message: queue it here.
        if let Some(request_id) = request_id {
            let opened = Opened {
                opened_seq: outcome.seq,
                context_seq: outcome.seq,
            };
            inner
                .turns
                .enqueue(
                    &self.inner,
                    chat,
                    Some(opened),
                    &request_id,
                    msg.trace_id.as_deref(),
                    msg.tools,
                )
                .await;
        }
        Ok(outcome)
    }

    /// Answers again: replaces the assistant message `message_id` (default: the chat's latest
    /// message) with a new reply to the same context. The old message stays in the log,
    /// marked superseded. When the latest message is a user message (its turn failed or is
    /// missing), it is simply answered again. Returns the new turn's request id.
    pub async fn regenerate(
        &self,
        who: &Identity,
        from: &Source,
        chat: &ChatKey,
        message_id: Option<&str>,
        request_id: Option<String>,
        trace_id: Option<String>,
    ) -> Result<String, CoreError> {
        let inner = &self.inner;
        who.check_may_write("regenerate a reply")?;
        let summary = self.accessible_chat(who, chat).await?;
        // No new AI turn while a human agent has the chat (CONTRACT §7.2).
        if summary.human_agent_engaged() {
            return Err(CoreError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "a human agent is engaged in chat `{}`; the AI answers again once they leave",
                    chat.chat_id
                ),
            ));
        }
        let request_id = request_id.unwrap_or_else(new_id);
        check_id("requestId", &request_id)?;
        let target = match message_id {
            Some(id) => {
                check_id("messageId", id)?;
                inner
                    .store
                    .find_message(chat, id)
                    .await?
                    .filter(|e| e.body.ends_turn().is_some())
                    .ok_or_else(|| {
                        CoreError::rejected(
                            ErrorCode::NotFound,
                            format!("chat `{}` has no assistant message `{id}`", chat.chat_id),
                        )
                    })?
            }
            None => self.recent_messages(chat, 1).await?.pop().ok_or_else(|| {
                CoreError::rejected(
                    ErrorCode::NotFound,
                    format!("chat `{}` has no message to answer again", chat.chat_id),
                )
            })?,
        };
        inner.limits.turn(who, from)?;
        self.settle(chat).await;
        // The new answer may use the client-run tools the first one could.
        let tools = self.declared_tools(chat, &target).await?;
        // The context is what the old reply answered (it is superseded now, so it is not part
        // of it). The turn is queued in the store with the event that asks for it.
        let opened = if let Some(old_id) = target.body.ends_turn() {
            let body = EventBody::MessageSuperseded {
                message_id: old_id.to_owned(),
                request_id: request_id.clone(),
                superseded_by: Some(who.user_id.to_string()),
                context_seq: Some(target.seq),
                tools: (!tools.is_empty()).then(|| tools.clone()),
            };
            let superseded = self.append_and_publish(chat, body, None).await?;
            Some(Opened {
                opened_seq: superseded.seq,
                context_seq: target.seq,
            })
        } else {
            inner
                .store
                .request_turn(chat, &request_id, trace_id.as_deref(), target.seq)
                .await
                .map_err(|e| store_error(chat, e))?;
            // Queued at the chat's head, which only the store knows.
            None
        };
        inner
            .turns
            .enqueue(
                &self.inner,
                chat,
                opened,
                &request_id,
                trace_id.as_deref(),
                tools,
            )
            .await;
        Ok(request_id)
    }

    /// The client-run tools declared for the turn that `target` ends (or, for a user message,
    /// with it): kept with the event that asked for the turn, its user message or the
    /// `message_superseded` of an earlier regenerate. Looked for among the replay limit's
    /// events before `target`, nearest first.
    pub(super) async fn declared_tools(
        &self,
        chat: &ChatKey,
        target: &StoredEvent,
    ) -> Result<Vec<ToolSpec>, CoreError> {
        let request = match &target.body {
            EventBody::UserMessage { tools, .. } => return Ok(tools.clone().unwrap_or_default()),
            EventBody::AssistantMessage { request_id, .. }
            | EventBody::TurnFailed { request_id, .. } => request_id,
            _ => return Ok(Vec::new()),
        };
        let limit = self.inner.config.replay_limit as u64;
        // The asking event is nearly always a few events back: small windows first.
        for window in [64, 1024, limit] {
            let window = window.min(limit).min(target.seq);
            let from = target.seq - window;
            let events = self
                .inner
                .store
                .events_after(chat, from, window as usize)
                .await?;
            let asked = events.iter().rev().find_map(|e| match &e.body {
                EventBody::UserMessage {
                    request_id: Some(r),
                    tools,
                    ..
                }
                | EventBody::MessageSuperseded {
                    request_id: r,
                    tools,
                    ..
                } if r == request => Some(tools.clone().unwrap_or_default()),
                _ => None,
            });
            if let Some(tools) = asked {
                return Ok(tools);
            }
            if window >= target.seq || window >= limit {
                break;
            }
        }
        Ok(Vec::new())
    }
}
