//! Controlling a running turn: abort, and client-run tool calls (the wait, the result).

use std::sync::Arc;

use natter_protocol::ErrorCode;

use super::{ChatCore, check_id, store_error};
use crate::chat::ChatKey;
use crate::error::CoreError;
use crate::event::EventBody;
use crate::store::StoreError;

impl ChatCore {
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
            .map_err(|e| store_error(chat, e))?
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

    /// The turn waiting for a member's result for client-run call `tool_call_id`, if any, on
    /// this node or another (then read from the log: a client-run call of a started turn with
    /// no result yet).
    pub async fn waiting_tool_call(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
    ) -> Result<Option<Arc<crate::event::TurnRef>>, CoreError> {
        if let Some(turn) = self.inner.turns.local_client_wait(chat, tool_call_id) {
            return Ok(Some(turn));
        }
        self.stored_client_wait(chat, tool_call_id).await
    }

    pub(super) async fn stored_client_wait(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
    ) -> Result<Option<Arc<crate::event::TurnRef>>, CoreError> {
        let store = &self.inner.store;
        let open = match store.open_turns(chat).await {
            Ok(open) => open,
            Err(StoreError::NoSuchChat(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(running) = open.iter().find(|t| t.started_fence.is_some()) else {
            return Ok(None);
        };
        let events = store
            .events_after(chat, running.opened_seq, self.inner.config.replay_limit)
            .await?;
        let answered = events.iter().any(|e| {
            matches!(&e.body, EventBody::ToolResult { tool_call_id: id, .. } if id == tool_call_id)
        });
        if answered {
            return Ok(None);
        }
        Ok(events.iter().find_map(|e| match &e.body {
            EventBody::ToolCall {
                tool_call_id: id,
                request_id,
                message_id,
                executor,
                trace_id,
                ..
            } if id == tool_call_id
                && executor == "client"
                && *request_id == running.request_id =>
            {
                Some(Arc::new(crate::event::TurnRef {
                    message_id: message_id.as_str().into(),
                    request_id: request_id.as_str().into(),
                    trace_id: trace_id.as_deref().map(Into::into),
                }))
            }
            _ => None,
        }))
    }

    /// A member's answer to a client-run tool call: the first valid one goes to the waiting
    /// turn, on whichever node runs it. Exactly one of `result` and `error` must be given.
    pub async fn tool_result(
        &self,
        chat: &ChatKey,
        tool_call_id: &str,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), CoreError> {
        check_id("toolCallId", tool_call_id)?;
        let outcome = match (result, error) {
            (Some(_), Some(_)) => {
                return Err(CoreError::rejected(
                    ErrorCode::InvalidField,
                    "give `result` or `error`, not both",
                ));
            }
            (None, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(serde_json::Value::Null),
        };
        let local = self
            .inner
            .turns
            .local_client_wait(chat, tool_call_id)
            .is_some();
        let elsewhere = !local && self.stored_client_wait(chat, tool_call_id).await?.is_some();
        if self
            .inner
            .turns
            .deliver_client_result(&self.inner, chat, tool_call_id, outcome, elsewhere)
            .await
        {
            Ok(())
        } else {
            Err(CoreError::rejected(
                ErrorCode::NotFound,
                format!(
                    "no tool call `{tool_call_id}` is waiting for a result in this chat (unknown, already answered, or its turn ended)"
                ),
            ))
        }
    }
}
