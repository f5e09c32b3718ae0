//! SmolLM2's ChatML template, as the GGUF's `tokenizer.chat_template` writes it:
//!
//! ```text
//! <|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n   (only when the first message is not a system message)
//! <|im_start|>{role}\n{content}<|im_end|>\n   (each message)
//! <|im_start|>assistant\n   (the generation prompt)
//! ```
//!
//! [`render`] gives the text (tests compare it byte for byte with the Jinja template's own
//! output); [`encode`] gives the ids, where only the template's markers are control tokens
//! and message text is always encoded as plain text, so a message cannot forge a turn.

use natter_core::provider::PromptMessage;

use crate::tokenizer::Tokenizer;

/// The system prompt the template adds when the conversation has none.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// One message as the template sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> From<&'a PromptMessage> for TemplateMessage<'a> {
    fn from(m: &'a PromptMessage) -> Self {
        Self {
            role: m.role.as_str(),
            content: &m.content,
        }
    }
}

fn with_default_system<'a>(messages: &[TemplateMessage<'a>]) -> Vec<TemplateMessage<'a>> {
    let mut all = Vec::with_capacity(messages.len() + 1);
    if messages.first().is_some_and(|m| m.role != "system") {
        all.push(TemplateMessage {
            role: "system",
            content: DEFAULT_SYSTEM_PROMPT,
        });
    }
    all.extend_from_slice(messages);
    all
}

/// The prompt text, ending with the generation prompt when `add_generation_prompt`.
pub fn render(messages: &[TemplateMessage<'_>], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in with_default_system(messages) {
        out.push_str(IM_START);
        out.push_str(m.role);
        out.push('\n');
        out.push_str(m.content);
        out.push_str(IM_END);
        out.push('\n');
    }
    if add_generation_prompt {
        out.push_str(IM_START);
        out.push_str("assistant\n");
    }
    out
}

/// A prompt as ids: one span per message (the default system prompt, when added, is the
/// first span), then the generation prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    pub spans: Vec<Vec<u32>>,
    pub generation_prompt: Vec<u32>,
}

impl EncodedPrompt {
    /// All ids, in order: what [`render`] writes with the generation prompt.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.spans.iter().flatten().copied().collect();
        ids.extend_from_slice(&self.generation_prompt);
        ids
    }

    /// The ids within `budget` tokens: the first span (the system prompt) is kept and the
    /// oldest messages after it are left out until the rest fits. `None` if even the system
    /// prompt, the last message and the generation prompt don't fit.
    pub fn fit(&self, budget: usize) -> Option<Vec<u32>> {
        let len = |spans: &[Vec<u32>]| -> usize { spans.iter().map(Vec::len).sum() };
        let (first, rest) = self.spans.split_first()?;
        let mut from = 0;
        while first.len() + len(&rest[from..]) + self.generation_prompt.len() > budget {
            if from + 1 >= rest.len() {
                return None;
            }
            from += 1;
        }
        let mut ids = first.clone();
        ids.extend(rest[from..].iter().flatten());
        ids.extend_from_slice(&self.generation_prompt);
        Some(ids)
    }
}

/// Encodes a prompt for a reply. `None` if the vocabulary lacks ChatML's control tokens.
pub fn encode(tokenizer: &Tokenizer, messages: &[TemplateMessage<'_>]) -> Option<EncodedPrompt> {
    let start = tokenizer.special(IM_START)?;
    let end = tokenizer.special(IM_END)?;
    let newline = tokenizer.encode("\n");
    let spans = with_default_system(messages)
        .iter()
        .map(|m| {
            let mut ids = vec![start];
            ids.extend(tokenizer.encode(&format!("{}\n{}", m.role, m.content)));
            ids.push(end);
            ids.extend_from_slice(&newline);
            ids
        })
        .collect();
    let mut generation_prompt = vec![start];
    generation_prompt.extend(tokenizer.encode("assistant\n"));
    Some(EncodedPrompt {
        spans,
        generation_prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(role: &'a str, content: &'a str) -> TemplateMessage<'a> {
        TemplateMessage { role, content }
    }

    #[test]
    fn fit_keeps_the_system_prompt_and_the_newest_messages() {
        let prompt = EncodedPrompt {
            spans: vec![vec![1, 1], vec![2, 2, 2], vec![3, 3], vec![4]],
            generation_prompt: vec![9],
        };
        assert_eq!(prompt.fit(100), Some(prompt.ids()));
        assert_eq!(prompt.fit(6), Some(vec![1, 1, 3, 3, 4, 9]));
        assert_eq!(prompt.fit(4), Some(vec![1, 1, 4, 9]));
        assert_eq!(prompt.fit(3), None);
    }

    #[test]
    fn adds_the_default_system_prompt_only_when_missing() {
        let user_only = render(&[msg("user", "hi")], true);
        assert!(user_only.starts_with("<|im_start|>system\nYou are a helpful"));
        let with_system = render(&[msg("system", "Be brief."), msg("user", "hi")], false);
        assert_eq!(
            with_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
        assert_eq!(render(&[], true), "<|im_start|>assistant\n");
    }
}
