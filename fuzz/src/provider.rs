//! A scripted model for the HTTP target: instant, deterministic, and steerable from the
//! message text, so inputs reach every kind of turn (text, client-run tool call, failure).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream,
    Role, ToolCall,
};

/// - last message a tool result: a short text answer;
/// - tools offered and the user text contains `tool`: calls the first tool (`call_fuzz_<n>`);
/// - text contains `refuse`: fails before the reply (not retryable);
/// - text contains `fail`: streams a word, then a stream error;
/// - otherwise: echoes the text word by word, then usage and `stop`.
#[derive(Default)]
pub struct ScriptedModel {
    calls: AtomicU64,
}

#[async_trait]
impl Provider for ScriptedModel {
    fn name(&self) -> &str {
        "fuzz"
    }

    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let last = request.messages.last();
        let text = last.map(|m| m.content.clone()).unwrap_or_default();
        let mut out: Vec<Result<ProviderEvent, ProviderError>> = Vec::new();
        if last.is_some_and(|m| m.role == Role::Tool) {
            out.push(Ok(ProviderEvent::TextDelta("tool said ".into())));
            out.push(Ok(ProviderEvent::TextDelta(
                text.chars().take(20).collect(),
            )));
            out.push(Ok(ProviderEvent::Finish("stop".into())));
        } else if text.contains("refuse") {
            return Err(ProviderError::new(
                ProviderErrorKind::BadRequest,
                "the scripted model refuses",
            ));
        } else if let Some(tool) = request.tools.first().filter(|_| text.contains("tool")) {
            out.push(Ok(ProviderEvent::ToolCall(ToolCall {
                id: format!("call_fuzz_{n}"),
                name: tool.name.clone(),
                arguments: "{}".into(),
            })));
            out.push(Ok(ProviderEvent::Finish("tool_calls".into())));
        } else {
            for word in text.split_inclusive(' ').take(4) {
                out.push(Ok(ProviderEvent::TextDelta(word.to_owned())));
            }
            if text.contains("fail") {
                out.push(Err(ProviderError::new(
                    ProviderErrorKind::StreamError,
                    "the scripted model fails",
                )));
            } else {
                out.push(Ok(ProviderEvent::Usage(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4,
                    total_tokens: 7,
                })));
                out.push(Ok(ProviderEvent::Finish("stop".into())));
            }
        }
        Ok(Box::pin(futures::stream::iter(out)))
    }
}
