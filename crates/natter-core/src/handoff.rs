//! Handoff to a human agent (CONTRACT §7.2): a customer asks for a person, a human agent
//! takes the chat (the AI stays silent meanwhile) and leaves it again. Each change is a
//! durable event carrying the state it leaves the chat in, which the store keeps in the
//! chat's summary, so every node and every face sees one state. The state proposed here
//! comes from a read that may be stale; the store recomputes it inside the append
//! ([`apply_handoff`](crate::event::apply_handoff)), so racing joins and leaves on different
//! nodes all count.

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;

use crate::chat::{ChatKey, ChatSummary, ClientType, ConnectionId, Identity};
use crate::core::{ChatCore, check_admits};
use crate::error::CoreError;
use crate::event::{EventBody, HandoffState, StoredEvent};

/// The role stored with a message `who` posts: `humanAgent` for a human agent's client, or
/// for any client of a user engaged as an agent in the chat (an agent over seed 002 with
/// auth off names no clientType on its POSTs).
pub(crate) fn message_role(who: &Identity, summary: Option<&ChatSummary>) -> Option<String> {
    let engaged = summary.is_some_and(|s| s.human_agents.iter().any(|a| **a == *who.user_id));
    (who.client_type == ClientType::HumanAgent || engaged).then(|| "humanAgent".to_owned())
}

/// What a handoff call did: the event it logged, or `None` when the chat was already in
/// that state (asking twice, joining twice, leaving when not in), and the state now.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffOutcome {
    pub event: Option<StoredEvent>,
    pub state: HandoffState,
    /// The chat's head after the call.
    pub seq: u64,
}

impl ChatCore {
    async fn handoff_summary(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<ChatSummary, CoreError> {
        let summary = self.chat_summary(chat).await?;
        check_admits(who, &summary)?;
        Ok(summary)
    }

    async fn log_handoff(
        &self,
        chat: &ChatKey,
        body: EventBody,
        origin: Option<&ConnectionId>,
    ) -> Result<HandoffOutcome, CoreError> {
        // The store recomputes the state inside its append from the chat as it is then (a
        // concurrent join on another node may have changed it since our read): use its copy.
        let event = self.append_and_publish(chat, body, origin).await?;
        let state = event.body.handoff().cloned().unwrap_or_default();
        Ok(HandoffOutcome {
            seq: event.seq,
            event: Some(event),
            state,
        })
    }

    /// A customer asks for a person: the chat waits for an agent (`human_agent_requested`).
    /// Asking while already waiting changes nothing.
    pub async fn request_human_agent(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<HandoffOutcome, CoreError> {
        who.check_may_write("ask for a human agent")?;
        let summary = self.handoff_summary(who, chat).await?;
        if summary.is_waiting_for_agent() {
            return Ok(HandoffOutcome {
                event: None,
                state: summary.handoff(),
                seq: summary.head_seq,
            });
        }
        let state = HandoffState {
            waiting_since: Some(now_millis()),
            agents: summary.human_agents.clone(),
        };
        let body = EventBody::HumanAgentRequested {
            requested_by: Some(who.user_id.to_string()),
            handoff: state,
        };
        self.log_handoff(chat, body, None).await
    }

    /// A human agent takes the chat (`human_agent_joined`): it stops waiting and the AI
    /// stays silent until every agent has left. Only a `humanAgent` client (or an org admin)
    /// may; an agent already engaged changes nothing.
    pub async fn human_agent_join(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<HandoffOutcome, CoreError> {
        if !who.is_human_agent() && !who.admin {
            return Err(CoreError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "only a humanAgent client may take a chat over; this one is a {}",
                    who.client_type.as_str()
                ),
            ));
        }
        let summary = self.handoff_summary(who, chat).await?;
        if summary.human_agents.iter().any(|a| **a == *who.user_id) {
            return Ok(HandoffOutcome {
                event: None,
                state: summary.handoff(),
                seq: summary.head_seq,
            });
        }
        let mut agents = summary.human_agents.clone();
        agents.push(who.user_id.to_string());
        let body = EventBody::HumanAgentJoined {
            agent_id: who.user_id.to_string(),
            handoff: HandoffState {
                waiting_since: None,
                agents,
            },
        };
        self.log_handoff(chat, body, None).await
    }

    /// A human agent leaves the chat (`human_agent_left`); with none left the AI answers
    /// again. A user who is not an engaged agent changes nothing.
    pub async fn human_agent_leave(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<HandoffOutcome, CoreError> {
        let summary = self.handoff_summary(who, chat).await?;
        if !summary.human_agents.iter().any(|a| **a == *who.user_id) {
            return Ok(HandoffOutcome {
                event: None,
                state: summary.handoff(),
                seq: summary.head_seq,
            });
        }
        let agents: Vec<String> = summary
            .human_agents
            .iter()
            .filter(|a| ***a != *who.user_id)
            .cloned()
            .collect();
        let body = EventBody::HumanAgentLeft {
            agent_id: who.user_id.to_string(),
            handoff: HandoffState {
                waiting_since: summary.waiting_since,
                agents,
            },
        };
        self.log_handoff(chat, body, None).await
    }

    /// Chats of `org` waiting for a human agent, oldest `waitingSince` first.
    pub async fn list_waiting_chats(
        &self,
        org: &str,
        scope: &crate::chat::ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<crate::chat::ChatPage, CoreError> {
        Ok(self
            .inner
            .store
            .list_waiting_chats(org, scope, limit, offset)
            .await?)
    }
}
