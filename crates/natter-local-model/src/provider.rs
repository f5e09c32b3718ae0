//! The local model behind the Provider seam: the same events as a remote provider, made on
//! blocking threads, one generation per worker at a time.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream,
};
use tokio::sync::mpsc;

use crate::llama::LlamaProvider;
use crate::model::{FinishReason, Generation, ModelError, SamplingOptions};

/// Positions (prompt and reply) of each worker's context unless configured: SmolLM2 was
/// trained on 8192, but 4096 keeps each worker's KV cache small. A model trained on fewer
/// gets its own limit.
pub const DEFAULT_CONTEXT_TOKENS: usize = 4096;

/// Settings for [`LocalProvider`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Generations that may run at once, each with its own KV cache (the weights are
    /// shared). Each uses `threads` threads.
    pub workers: usize,
    /// Reply length when the request names none.
    pub default_max_tokens: usize,
    pub sampling: SamplingOptions,
    /// Positions a generation may use, prompt and reply (at most what the model was trained
    /// on). Older messages are left out to fit.
    pub context_tokens: usize,
    /// CPU threads per generation. Default: every core.
    pub threads: usize,
    /// A Jinja chat template file to use instead of the GGUF's `tokenizer.chat_template`.
    pub chat_template: Option<PathBuf>,
    /// Layers to offload to the GPU (a build with the `cuda` or `metal` feature; 0: CPU only).
    pub gpu_layers: u32,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            default_max_tokens: 512,
            sampling: SamplingOptions::default(),
            context_tokens: DEFAULT_CONTEXT_TOKENS,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chat_template: None,
            gpu_layers: 0,
        }
    }
}

/// The local model as a Provider (llama.cpp, see [`crate::llama`]).
pub struct LocalProvider {
    engine: LlamaProvider,
}

impl LocalProvider {
    /// Loads the model file (a second or so for SmolLM2-135M).
    pub fn load(path: &Path, options: LocalOptions) -> Result<Self, ModelError> {
        Ok(Self {
            engine: LlamaProvider::load(path, options)?,
        })
    }

    pub fn engine(&self) -> &LlamaProvider {
        &self.engine
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        self.engine.stream(request).await
    }

    fn offers_tools(&self) -> bool {
        self.engine.offers_tools()
    }
}

fn failed(kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, message)
}

/// The sending half of a generation's stream, written from its blocking thread.
pub(crate) type EventSender = mpsc::Sender<Result<ProviderEvent, ProviderError>>;

/// Sends one generated piece; `Break` stops the generation when the stream was dropped (abort).
pub(crate) fn send_piece(tx: &EventSender, piece: &str) -> ControlFlow<()> {
    if tx.is_closed() {
        return ControlFlow::Break(());
    }
    if !piece.is_empty()
        && tx
            .blocking_send(Ok(ProviderEvent::TextDelta(piece.to_owned())))
            .is_err()
    {
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Sends how a generation ended: `Finish` then `Usage`, or the error; nothing after an abort.
pub(crate) fn send_ending(tx: &EventSender, result: Result<Generation, ModelError>) {
    let tail: Vec<Result<ProviderEvent, ProviderError>> = match result {
        Ok(g) if g.finish == FinishReason::Cancelled => Vec::new(),
        Ok(g) => {
            let reason = match g.finish {
                FinishReason::Length => "length",
                _ => "stop",
            };
            let (prompt_tokens, completion_tokens) =
                (g.prompt_tokens as u64, g.completion_tokens as u64);
            vec![
                Ok(ProviderEvent::Finish(reason.into())),
                Ok(ProviderEvent::Usage(Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens.saturating_add(completion_tokens),
                })),
            ]
        }
        Err(e) => vec![Err(failed(ProviderErrorKind::StreamError, e.to_string()))],
    };
    for item in tail {
        if tx.blocking_send(item).is_err() {
            break;
        }
    }
}
