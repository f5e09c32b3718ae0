//! What the engine shares with its callers: load errors, sampling settings and how a
//! generation ended.

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read the model file: {0}")]
    Io(#[from] std::io::Error),
    #[error("llama.cpp: {0}")]
    Llama(String),
    #[error(
        "the model file has no chat template (tokenizer.chat_template): give one with --chat-template FILE"
    )]
    NoChatTemplate,
    #[error("the chat template is not valid Jinja: {0}")]
    ChatTemplate(String),
    #[error("cannot read the chat template {}: {source}", path.display())]
    ChatTemplateFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// 0 picks the most likely token (greedy).
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    /// Divides the logits of tokens seen in the last `repeat_last_n` (1.0: off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
}

impl Default for SamplingOptions {
    /// SmolLM2's model card suggests a low temperature and top-p 0.9 for this size.
    fn default() -> Self {
        Self {
            temperature: 0.2,
            top_p: 0.9,
            seed: 299_792_458,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}
