//! A turn's steps: the chat's agent and context, then model calls and tool rounds until the
//! model answers in text.

use std::sync::Arc;

use natter_protocol::ErrorCode;
use natter_protocol::socketio::TurnWarning;
use tracing::warn;

use super::context::build_context;
use super::{Ending, Generation, RunningTurn};
use crate::agents::Agent;
use crate::chat::ChatKey;
use crate::core::Inner;
use crate::event::{LiveEvent, ProcessingStatus};
use crate::provider::{CompletionRequest, ProviderError, ProviderErrorKind, ToolSpec};

impl RunningTurn<'_> {
    /// Generates the turn's reply: its text, tokens and usage, and how it ended.
    pub(super) async fn generate(&self) -> Generation {
        let inner = self.inner;
        let chat = &self.req.chat;
        let mut g = Generation::empty(Ending::Finished("stop".into()));
        inner
            .publish_live(chat, self.processing(ProcessingStatus::Working, None), None)
            .await;
        inner
            .publish_live(
                chat,
                LiveEvent::TurnStarted {
                    turn: self.turn.clone(),
                },
                None,
            )
            .await;
        g.ending = match self.steps(&mut g).await {
            Ok(reason) => Ending::Finished(reason),
            Err(ending) => ending,
        };
        g
    }

    /// Asks the model, runs the tools it called and asks again with their results, until it
    /// answers in text. `Ok`: that answer's finish reason; `Err`: how the turn ended instead.
    /// What streamed meanwhile is in `g` either way.
    async fn steps(&self, g: &mut Generation) -> Result<String, Ending> {
        let inner = self.inner;
        // The chat's agent (CONTRACT §7.5): its prompt, provider, model, tools, temperature.
        let agent = chat_agent(inner, &self.req.chat).await?;
        let agent = agent.as_deref();
        let provider = agent
            .and_then(|a| a.provider.clone())
            .unwrap_or_else(|| inner.provider.clone());
        let model = agent
            .and_then(|a| a.model.clone())
            .unwrap_or_else(|| inner.config.model.clone());
        g.model = Some(model.clone());
        let allowed = agent.and_then(|a| a.tools.as_deref());
        // Building may wait for a document being processed: the turn stays abortable.
        let mut messages = tokio::select! {
            built = build_context(inner, self.req, agent) => built.map_err(Ending::Failed)?,
            ending = self.interrupted() => return Err(ending),
        };
        let tools = self.offered_tools(allowed);
        // A provider that cannot call tools is not offered them, and the reply says so
        // rather than leaving the sender to wonder why none was called.
        let tools = if tools.is_empty() || provider.offers_tools() {
            tools
        } else {
            g.warnings.push(tools_not_offered(provider.name(), &tools));
            Vec::new()
        };
        let max_steps = inner.config.max_steps.max(1);
        for step in 0..max_steps {
            let request = CompletionRequest {
                model: model.clone(),
                messages: messages.clone(),
                max_tokens: None,
                temperature: agent.and_then(|a| a.temperature),
                // The last step offers no tools, so the model has to answer in text.
                tools: if step + 1 < max_steps {
                    tools.clone()
                } else {
                    Vec::new()
                },
            };
            let answer = self.call_model(g, provider.as_ref(), &request).await?;
            if answer.calls.is_empty() || tools.is_empty() {
                if !answer.calls.is_empty() {
                    warn!("the model called a tool although none was offered; ignored");
                }
                return Ok(answer.finish_reason);
            }
            // The model asked for tools: run them, give it the results, and go on.
            self.run_tools(&mut messages, answer, allowed, g.tokens)
                .await?;
        }
        // Unreachable in practice: the last step offers no tools, so it ends above.
        Ok("length".into())
    }

    /// The tools the model is offered: the registry's that the chat's agent has (`allowed`;
    /// `None`: all), then the client's declared with the message.
    fn offered_tools(&self, allowed: Option<&[String]>) -> Vec<ToolSpec> {
        let mut tools = self.inner.tools.specs();
        if let Some(allowed) = allowed {
            tools.retain(|t| allowed.contains(&t.name));
        }
        tools.extend(self.req.client_tools.iter().cloned());
        tools
    }
}

/// The `tools_not_offered` warning: which tools, and why.
fn tools_not_offered(provider: &str, tools: &[ToolSpec]) -> TurnWarning {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    TurnWarning {
        code: TurnWarning::TOOLS_NOT_OFFERED.into(),
        message: format!(
            "the {provider} provider cannot call tools, so the model was not offered {}: {}",
            if names.len() == 1 {
                "this one"
            } else {
                "these"
            },
            names.join(", ")
        ),
    }
}

/// The agent `chat` is bound to (`None`: unbound, or no agents configured: the core's
/// defaults). Read from the store, so every node answers a chat with the same agent.
async fn chat_agent(inner: &Inner, chat: &ChatKey) -> Result<Option<Arc<Agent>>, Ending> {
    if inner.agents.is_empty() {
        return Ok(None);
    }
    let summary = inner.store.chat_summary(chat).await.map_err(|e| {
        Ending::Failed(ProviderError::new(
            ProviderErrorKind::Unavailable,
            format!("reading the chat's agent: {e}"),
        ))
    })?;
    let metadata = summary.as_ref().and_then(|s| s.metadata.as_ref());
    inner
        .agents
        .bound(metadata)
        .map_err(|message| Ending::Refused(ErrorCode::NotFound, message))
}
