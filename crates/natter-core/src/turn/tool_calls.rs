//! The tools the model asked for: each call stored, run (on the server, or by a member of the
//! chat for a client tool), its result stored, and both given back to the model.

use natter_protocol::time::now_millis;

use super::context::tool_output;
use super::model_call::StepAnswer;
use super::{Ending, RunningTurn};
use crate::event::EventBody;
use crate::provider::{PromptMessage, ProviderError, ProviderErrorKind, Role, ToolCall};
use crate::store::Guard;
use crate::telemetry;
use crate::tools::{Executor, check_arguments};

impl RunningTurn<'_> {
    /// Runs the calls of a step that asked for tools, in order, and appends to `messages`
    /// the model's message with the calls, then each call's result. `allowed`: the server
    /// tools the chat's agent has (`None`: all). `Err`: the turn ends.
    pub(super) async fn run_tools(
        &self,
        messages: &mut Vec<PromptMessage>,
        answer: StepAnswer,
        allowed: Option<&[String]>,
        tokens_before: u64,
    ) -> Result<(), Ending> {
        messages.push(PromptMessage {
            role: Role::Assistant,
            content: answer.text,
            tool_calls: answer.calls.clone(),
            tool_call_id: None,
            images: Vec::new(),
        });
        for call in answer.calls {
            let content = self.run_tool(&call, allowed, tokens_before).await?;
            messages.push(PromptMessage {
                role: Role::Tool,
                content,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
                images: Vec::new(),
            });
        }
        Ok(())
    }

    /// Stores the call, runs the tool (or waits for a member to), stores the result, and
    /// returns what goes back to the model: the result as JSON text, or `{"error": …}`.
    // A span per tool call, a child of the turn's (exported with --otlp-endpoint).
    #[tracing::instrument(name = "tool.call", skip_all, fields(tool = %call.name, toolCallId = %call.id))]
    async fn run_tool(
        &self,
        call: &ToolCall,
        allowed: Option<&[String]>,
        tokens_before: u64,
    ) -> Result<String, Ending> {
        let (inner, req, turn) = (self.inner, self.req, &*self.turn);
        // A server tool the chat's agent was not given is as unknown to the model as any other.
        let offered = |name: &str| allowed.is_none_or(|a| a.iter().any(|n| n == name));
        let executor = inner
            .tools
            .get(&call.name)
            .filter(|_| offered(&call.name))
            .cloned()
            .or_else(|| {
                req.client_tools
                    .iter()
                    .find(|t| t.name == call.name)
                    .map(|t| Executor::Client(t.clone()))
            });
        let checked = match &executor {
            None => Err(format!("there is no tool named `{}`", call.name)),
            Some(e) => check_arguments(&call.arguments, &e.spec().parameters),
        };
        let arguments = match &checked {
            Ok(v) => v.clone(),
            Err(_) => serde_json::from_str(&call.arguments)
                .unwrap_or_else(|_| serde_json::Value::String(call.arguments.clone())),
        };
        let record = EventBody::ToolCall {
            request_id: turn.request_id.to_string(),
            message_id: turn.message_id.to_string(),
            token_index: tokens_before,
            tool_call_id: call.id.clone(),
            name: call.name.clone(),
            arguments,
            executor: executor
                .as_ref()
                .map(|e| e.as_str())
                .unwrap_or("server")
                .to_owned(),
            trace_id: turn.trace_id.as_deref().map(str::to_owned),
        };
        self.store_and_publish(record).await?;
        metrics::counter!(telemetry::TOOL_CALLS).increment(1);

        let outcome: Result<serde_json::Value, String> = match (executor, checked) {
            (_, Err(e)) => Err(e),
            (None, Ok(_)) => Err(format!("there is no tool named `{}`", call.name)),
            (Some(Executor::Server(tool)), Ok(input)) => {
                let child = self.cancel.child_token();
                tokio::select! {
                    r = tokio::time::timeout(tool.timeout(), tool.run(input, child.clone())) => match r {
                        Ok(r) => r,
                        Err(_) => {
                            child.cancel();
                            Err(format!("the tool did not answer within {} s", tool.timeout().as_secs_f64()))
                        }
                    },
                    ending = self.interrupted() => { child.cancel(); return Err(ending); }
                }
            }
            (Some(Executor::Client(_)), Ok(_)) => {
                let rx = inner.turns.await_client_result(&req.chat, &call.id, turn);
                let wait = inner.config.client_tool_timeout;
                let r = tokio::select! {
                    r = tokio::time::timeout(wait, rx) => match r {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Err("the wait for the client's result was dropped".to_owned()),
                        Err(_) => Err(format!("no member of the chat answered within {} s", wait.as_secs_f64())),
                    },
                    ending = self.interrupted() => {
                        inner.turns.forget_client_wait(&req.chat, &call.id);
                        return Err(ending);
                    }
                };
                inner.turns.forget_client_wait(&req.chat, &call.id);
                r
            }
        };
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let for_model = tool_output(result.as_ref(), error.as_deref());
        let record = EventBody::ToolResult {
            request_id: turn.request_id.to_string(),
            message_id: turn.message_id.to_string(),
            token_index: tokens_before,
            tool_call_id: call.id.clone(),
            name: call.name.clone(),
            result,
            error,
            trace_id: turn.trace_id.as_deref().map(str::to_owned),
        };
        self.store_and_publish(record).await?;
        Ok(for_model)
    }

    /// Stores a tool event and tells the chat; a store failure ends the turn.
    async fn store_and_publish(&self, record: EventBody) -> Result<(), Ending> {
        let chat = &self.req.chat;
        let stored = self
            .inner
            .store
            .append_guarded(chat, record, now_millis(), Guard::Fence(self.req.fence))
            .await
            .map_err(|e| {
                Ending::Failed(ProviderError::new(
                    ProviderErrorKind::Unavailable,
                    format!("storing a tool event: {e}"),
                ))
            })?;
        self.inner
            .publish_durable(chat, stored.event().clone(), None)
            .await;
        Ok(())
    }
}
