//! The local model behind the Provider seam: the same events as a remote provider, made on
//! blocking threads, one generation per loaded instance at a time.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, PromptMessage, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream,
};
use tokio::sync::{Semaphore, mpsc};

use crate::chat_template::{self, TemplateMessage};
use crate::model::{
    FinishReason, Generation, LocalModel, ModelError, SamplingOptions, WeightFormat,
};
use crate::tokenizer::Tokenizer;

/// Settings for [`LocalProvider`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Generations that may run at once, each with its own KV cache (the weights are
    /// shared). Each uses every core, so more than one mostly helps short replies.
    pub workers: usize,
    /// Reply length when the request names none.
    pub default_max_tokens: usize,
    pub sampling: SamplingOptions,
    pub weight_format: WeightFormat,
    /// Positions a generation may use, prompt and reply (at most
    /// [`LocalModel::MAX_POSITIONS`]). Older messages are left out to fit.
    pub context_tokens: usize,
    /// CPU threads per generation (llama.cpp engine; candle uses rayon's pool, sized by
    /// `RAYON_NUM_THREADS`). Default: every core.
    pub threads: usize,
    /// A Jinja chat template file to use instead of the GGUF's `tokenizer.chat_template`
    /// (llama.cpp engine; the candle engine has SmolLM2's ChatML built in).
    pub chat_template: Option<PathBuf>,
    /// Layers to offload to the GPU (llama.cpp engine built with its `cuda` or `metal`
    /// feature; 0: CPU only).
    pub gpu_layers: u32,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            default_max_tokens: 512,
            sampling: SamplingOptions::default(),
            weight_format: WeightFormat::default(),
            context_tokens: LocalModel::MAX_POSITIONS,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chat_template: None,
            gpu_layers: 0,
        }
    }
}

/// The local model as a Provider: llama.cpp when built with the `llama-cpp` feature, else
/// candle.
pub struct LocalProvider {
    engine: Box<dyn Provider>,
}

impl LocalProvider {
    /// Loads the model file (a few seconds).
    pub fn load(path: &Path, options: LocalOptions) -> Result<Self, ModelError> {
        #[cfg(feature = "llama-cpp")]
        let engine: Box<dyn Provider> = Box::new(crate::llama::LlamaProvider::load(path, options)?);
        #[cfg(not(feature = "llama-cpp"))]
        let engine: Box<dyn Provider> = Box::new(CandleProvider::load(path, options)?);
        Ok(Self { engine })
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
}

/// The candle engine: SmolLM2's layout and ChatML only.
pub struct CandleProvider {
    tokenizer: Arc<Tokenizer>,
    idle: Arc<Mutex<Vec<LocalModel>>>,
    slots: Arc<Semaphore>,
    options: LocalOptions,
    /// Each generation's seed is the configured seed plus this count, so a server run is
    /// reproducible while a regenerated reply still differs.
    generations: AtomicU64,
}

impl CandleProvider {
    /// Loads the model file (a few seconds: the weights are read and re-quantized).
    pub fn load(path: &Path, options: LocalOptions) -> Result<Self, ModelError> {
        let model = LocalModel::load(path, options.weight_format)?;
        let workers = options.workers.max(1);
        let mut idle = Vec::with_capacity(workers);
        for _ in 0..workers {
            idle.push(model.fork());
        }
        Ok(Self {
            tokenizer: model.tokenizer().clone(),
            idle: Arc::new(Mutex::new(idle)),
            slots: Arc::new(Semaphore::new(workers)),
            options,
            generations: AtomicU64::new(0),
        })
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

/// Sends how a generation ended, whichever engine ran it: `Finish` then `Usage`, or the error;
/// nothing after an abort.
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

#[async_trait]
impl Provider for CandleProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let max_tokens = request
            .max_tokens
            .map_or(self.options.default_max_tokens, |n| n as usize)
            .max(1);
        let mut sampling = self.options.sampling;
        if let Some(t) = request.temperature {
            sampling.temperature = f64::from(t);
        }
        sampling.seed = sampling
            .seed
            .wrapping_add(self.generations.fetch_add(1, Ordering::Relaxed));
        // Leave room for at least a short reply; older messages are left out to fit.
        let context = self.options.context_tokens.min(LocalModel::MAX_POSITIONS);
        let budget = context.saturating_sub(max_tokens.min(context / 4));
        // Tokenizing a long context is CPU work: not on the async runtime's threads.
        let tokenizer = self.tokenizer.clone();
        // No vision: each image becomes a `[image: name, WxH]` line (CONTRACT §7.6).
        let messages: Vec<PromptMessage> = request
            .messages
            .into_iter()
            .map(|mut m| {
                if !m.images.is_empty() {
                    m.content = m.content_with_image_lines();
                    m.images.clear();
                }
                m
            })
            .collect();
        let prompt = tokio::task::spawn_blocking(move || prompt_ids(&tokenizer, &messages, budget))
            .await
            .map_err(|_| failed(ProviderErrorKind::Protocol, "encoding the prompt failed"))??;

        // Waiting here for a free instance is where a busy server queues turns; dropping
        // the stream (an abort) while waiting gives the place up.
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| {
            failed(
                ProviderErrorKind::Unavailable,
                "the local model is shut down",
            )
        })?;
        let mut model = self
            .idle
            .lock()
            .map_err(|_| {
                failed(
                    ProviderErrorKind::Unavailable,
                    "the local model failed earlier",
                )
            })?
            .pop()
            .ok_or_else(|| failed(ProviderErrorKind::Unavailable, "no idle model instance"))?;

        let (tx, rx) = mpsc::channel::<Result<ProviderEvent, ProviderError>>(64);
        let idle = self.idle.clone();
        // `fit` left at least min(max_tokens, context / 4) positions for the reply.
        let max_tokens = max_tokens.min(context.saturating_sub(prompt.len()));
        tokio::task::spawn_blocking(move || {
            let result = model.generate(&prompt, max_tokens, &sampling, |piece| {
                send_piece(&tx, piece)
            });
            send_ending(&tx, result);
            if let Ok(mut idle) = idle.lock() {
                idle.push(model);
            }
            drop(permit);
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}

/// The ChatML prompt within `budget` tokens (tools are not offered: SmolLM2-135M was not
/// trained to call them).
fn prompt_ids(
    tokenizer: &Tokenizer,
    messages: &[PromptMessage],
    budget: usize,
) -> Result<Vec<u32>, ProviderError> {
    let messages: Vec<TemplateMessage<'_>> = messages.iter().map(TemplateMessage::from).collect();
    let prompt = chat_template::encode(tokenizer, &messages).ok_or_else(|| {
        failed(
            ProviderErrorKind::Protocol,
            "the model is not a ChatML model",
        )
    })?;
    prompt.fit(budget).ok_or_else(|| {
        failed(
            ProviderErrorKind::ContextTooLong,
            format!("the last message does not fit the local model's context ({budget} tokens)"),
        )
    })
}
