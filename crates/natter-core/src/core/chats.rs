//! Chats themselves: opening and creating, agent binding, access checks, listing, updating,
//! ending and deleting; and per-user notifications.

use natter_protocol::ErrorCode;
use tracing::warn;

use super::{ChatCore, MAX_TITLE_CHARS, check_admits, check_id, new_id, not_found};
use crate::bus::{FollowReason, UserEvent, UserSubscription};
use crate::chat::{
    ChatInfo, ChatKey, ChatPage, ChatScope, ChatSummary, ConnectionId, Identity, NewChat,
};
use crate::error::CoreError;
use crate::event::{EventBody, LiveEvent, StoredEvent};
use crate::limits::Admission;

impl ChatCore {
    /// Opens a chat, creating it for `who` when it does not exist and `create` is set
    /// (`new` then gives its metadata and members; its creator is `who`).
    pub async fn open_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        create: Option<NewChat>,
    ) -> Result<ChatInfo, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.authorize(who, chat).await?;
        // An agent asked for in the metadata must exist; it is stored by id.
        let mut agent = None;
        let new = match create {
            Some(new) => {
                let (asked, metadata) = self.inner.agents.bind(new.metadata)?;
                agent = asked;
                Some(NewChat {
                    created_by: Some(who.user_id.to_string()),
                    metadata,
                    ..new
                })
            }
            None => None,
        };
        let info = self
            .inner
            .store
            .open_chat(chat, new.as_ref())
            .await?
            .ok_or_else(|| not_found(chat))?;
        if let Some(agent) = &agent {
            self.check_binding(chat, agent).await?;
        }
        Ok(info)
    }

    /// The agents chats may be bound to (`GET /api/v1/agents`); with none configured, the
    /// server's default as the one agent.
    pub fn agents(&self) -> Vec<crate::agents::AgentInfo> {
        self.inner.agents.infos()
    }

    /// Checks that `agent_id` names a configured agent (`not_found`) and that the existing
    /// `chat` is bound to it (`invalid_field`: a chat's agent is chosen when it is created).
    /// With no agents configured, nothing is checked.
    pub async fn check_agent(&self, chat: &ChatKey, agent_id: &str) -> Result<(), CoreError> {
        check_id("agentId", agent_id)?;
        if let Some(agent) = self.inner.agents.resolve_id(agent_id)? {
            self.check_binding(chat, &agent).await?;
        }
        Ok(())
    }

    pub(super) async fn check_binding(
        &self,
        chat: &ChatKey,
        agent: &crate::agents::Agent,
    ) -> Result<(), CoreError> {
        let summary = self.chat_summary(chat).await?;
        match crate::agents::bound_id(summary.metadata.as_ref()) {
            Some(id) if id == agent.id => Ok(()),
            Some(id) => Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "chat `{}` is bound to agent `{id}`, not `{}`; a chat's agent is chosen when it is created",
                    chat.chat_id, agent.id
                ),
            )),
            None => Err(CoreError::rejected(
                ErrorCode::InvalidField,
                format!(
                    "chat `{}` was created without an agent, so it cannot use `{}`; a chat's agent is chosen when it is created",
                    chat.chat_id, agent.id
                ),
            )),
        }
    }

    /// Creates a chat with a fresh id for `who`, and tells the user's other connections.
    pub async fn create_chat(
        &self,
        who: &Identity,
        origin: Option<&ConnectionId>,
        new: NewChat,
    ) -> Result<ChatSummary, CoreError> {
        let chat = ChatKey::new(who.org.clone(), new_id());
        self.open_chat(who, &chat, Some(new)).await?;
        self.tell_user(who, &chat, FollowReason::Created, 0, origin)
            .await;
        self.chat_summary(&chat).await
    }

    /// Tells every connection of `who` to follow `chat` from `after_seq` (another tab
    /// created, opened or posted to it).
    pub async fn tell_user(
        &self,
        who: &Identity,
        chat: &ChatKey,
        reason: FollowReason,
        after_seq: u64,
        origin: Option<&ConnectionId>,
    ) {
        let event = UserEvent {
            chat_id: chat.chat_id.clone(),
            reason,
            after_seq,
            origin: origin.cloned(),
        };
        if let Err(e) = self.inner.bus.publish_user(who, event).await {
            warn!(chat = %chat, error = %e, "bus publish to a user failed");
        }
    }

    /// The user's channel: what their other connections did (see [`Self::tell_user`]).
    pub async fn subscribe_user(&self, who: &Identity) -> Result<UserSubscription, CoreError> {
        Ok(self.inner.bus.subscribe_user(who).await?)
    }

    pub async fn chat_summary(&self, chat: &ChatKey) -> Result<ChatSummary, CoreError> {
        check_id("chatId", &chat.chat_id)?;
        self.inner
            .store
            .chat_summary(chat)
            .await?
            .ok_or_else(|| not_found(chat))
    }

    /// The chat's summary if it exists and `who` may use it: `not_found` for no such chat (in
    /// `who`'s org: another org's chat of the same id is a different chat), `forbidden` for a
    /// members-only chat `who` is not in.
    pub async fn accessible_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
    ) -> Result<ChatSummary, CoreError> {
        let summary = self.chat_summary(chat).await?;
        check_admits(who, &summary)?;
        Ok(summary)
    }

    /// Refuses `who` on a members-only chat it is not in. A chat that does not exist yet
    /// passes: whoever creates it decides.
    pub async fn authorize(&self, who: &Identity, chat: &ChatKey) -> Result<(), CoreError> {
        check_id("chatId", &chat.chat_id)?;
        match self.inner.store.chat_summary(chat).await? {
            Some(summary) => check_admits(who, &summary),
            None => Ok(()),
        }
    }

    /// Counts a long-lived connection of `who` from `ip` against the connection limits.
    pub fn admit(
        &self,
        who: &Identity,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Admission, CoreError> {
        self.inner.limits.admit(who, ip)
    }

    pub async fn list_chats(
        &self,
        org: &str,
        scope: &ChatScope,
        limit: usize,
        offset: usize,
    ) -> Result<ChatPage, CoreError> {
        Ok(self
            .inner
            .store
            .list_chats(org, scope, limit, offset)
            .await?)
    }

    /// Renames and/or (un)pins a chat, or changes who may use it (only its creator or an
    /// admin may; an empty list opens it to the org). The change is an event in the chat's log.
    pub async fn update_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        title: Option<String>,
        pinned: Option<bool>,
        members: Option<Vec<String>>,
    ) -> Result<ChatSummary, CoreError> {
        let summary = self.accessible_chat(who, chat).await?;
        if members.is_some() && !who.admin && summary.created_by.as_deref() != Some(&*who.user_id) {
            return Err(CoreError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "only the creator of chat `{}` or an admin may change its members",
                    chat.chat_id
                ),
            ));
        }
        if let Some(list) = &members {
            for m in list {
                check_id("members", m)?;
            }
        }
        if let Some(t) = &title
            && t.chars().count() > MAX_TITLE_CHARS
        {
            return Err(CoreError::rejected(
                ErrorCode::TooLarge,
                format!("a title has at most {MAX_TITLE_CHARS} characters"),
            ));
        }
        if title.is_some() || pinned.is_some() || members.is_some() {
            let body = EventBody::ChatUpdated {
                title,
                pinned,
                members,
                updated_by: Some(who.user_id.to_string()),
            };
            self.append_and_publish(chat, body, None).await?;
        }
        self.chat_summary(chat).await
    }

    /// Ends a chat (its status becomes closed); members are told.
    pub async fn end_chat(
        &self,
        who: &Identity,
        chat: &ChatKey,
        reason: Option<String>,
    ) -> Result<StoredEvent, CoreError> {
        self.accessible_chat(who, chat).await?;
        let body = EventBody::ChatEnded {
            ended_by: Some(who.user_id.to_string()),
            reason,
        };
        self.append_and_publish(chat, body, None).await
    }

    /// Deletes a chat and its whole log. Its turns stop, and its members are told and
    /// dropped.
    pub async fn delete_chat(&self, who: &Identity, chat: &ChatKey) -> Result<(), CoreError> {
        self.accessible_chat(who, chat).await?;
        if !self.inner.store.delete_chat(chat).await? {
            return Err(not_found(chat));
        }
        self.inner.turns.forget_chat(&self.inner, chat).await;
        self.inner
            .publish_live(
                chat,
                LiveEvent::ChatDeleted {
                    deleted_by: Some(who.user_id.clone()),
                },
                None,
            )
            .await;
        Ok(())
    }
}
