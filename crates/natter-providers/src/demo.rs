//! The demo provider: a canned, clearly labelled reply for trying Natter without a model.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderEvent, ProviderStream, Role,
};

/// Streams `[demo] …` word by word with a small pause, like a real model would.
pub struct DemoProvider {
    pub token_delay: Duration,
}

impl Default for DemoProvider {
    fn default() -> Self {
        Self {
            token_delay: Duration::from_millis(30),
        }
    }
}

/// The demo's reply to `user_text`. Deterministic: the same input gives the same reply.
pub fn demo_reply(user_text: &str) -> String {
    let quoted: String = user_text.chars().take(200).collect();
    format!(
        "[demo] This is Natter's demo provider, not a language model. You said: \"{quoted}\". \
         Start the server with --provider openai (and OPENAI_API_KEY) for real replies."
    )
}

/// Splits text into word tokens, each keeping the whitespace that follows it.
pub fn word_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if in_space && !c.is_whitespace() {
            tokens.push(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

#[async_trait]
impl Provider for DemoProvider {
    fn name(&self) -> &str {
        "demo"
    }

    /// Its canned reply never calls a tool.
    fn offers_tools(&self) -> bool {
        false
    }

    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let tokens = word_tokens(&demo_reply(last_user));
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count() as u64)
            .sum();
        let completion_tokens = tokens.len() as u64;
        let delay = self.token_delay;
        let deltas = futures::stream::iter(tokens).then(move |t| async move {
            tokio::time::sleep(delay).await;
            Ok(ProviderEvent::TextDelta(t))
        });
        let tail = futures::stream::iter([
            Ok(ProviderEvent::Finish("stop".into())),
            Ok(ProviderEvent::Usage(Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens.saturating_add(completion_tokens),
            })),
        ]);
        Ok(Box::pin(deltas.chain(tail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_join_back() {
        let text = demo_reply("héllo  wörld 👋");
        assert_eq!(word_tokens(&text).concat(), text);
        assert!(text.starts_with("[demo]"));
    }
}
