//! The engine: llama.cpp itself, built from source by the `llama-cpp-2` crate, behind
//! Natter's Provider seam.
//!
//! - Any GGUF that llama.cpp runs (Llama, Qwen, Mistral, Phi, Gemma, SmolLM, …).
//! - One model in memory; `--local-workers` threads, each with its own llama.cpp context (KV
//!   cache). A turn waits in a queue for a free worker; a dropped stream gives its place up.
//! - The chat template is the GGUF's `tokenizer.chat_template` (or `--chat-template FILE`),
//!   rendered with minijinja, because llama.cpp's `llama_chat_apply_template` only knows a
//!   fixed list of templates it recognises by their text, and a newer model's template falls
//!   outside it. Message text is tokenized as plain text (no control tokens): only the
//!   template's own markers are special, so a message cannot forge a turn.
//! - Sampling with llama.cpp's samplers: repeat penalty over the reply's last
//!   `repeat_last_n` tokens, then top-p, temperature and a seeded draw (greedy at 0).
//! - Abort between tokens; streamed text is cut at whole characters ([`Utf8Stream`]).

use std::num::NonZeroU32;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc as std_mpsc};

use async_trait::async_trait;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use natter_core::provider::{
    CompletionRequest, PromptMessage, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream,
};
use tokio::sync::mpsc;

use crate::model::{FinishReason, Generation, ModelError, SamplingOptions};
use crate::provider::{LocalOptions, send_ending, send_piece};
use crate::utf8_stream::Utf8Stream;

pub use llama_cpp_2;

/// Tokens evaluated in one llama.cpp call while reading a prompt.
pub const BATCH_TOKENS: usize = 512;

/// llama.cpp's process-wide backend: it may be initialised only once.
fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp logs every tensor at load to stderr; Natter logs the load itself.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| ModelError::Llama(format!("starting llama.cpp: {e}")))
}

/// The model file, its vocabulary and its chat template; shared by every worker.
pub struct LlamaEngine {
    model: LlamaModel,
    template: ChatTemplate,
}

impl LlamaEngine {
    /// Loads `path` (any GGUF llama.cpp runs). The chat template is `chat_template` when
    /// given (the text of a Jinja template), else the file's `tokenizer.chat_template`.
    pub fn load(
        path: &Path,
        chat_template: Option<&str>,
        gpu_layers: u32,
    ) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a file", path.display()),
            )));
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend()?, path, &params).map_err(|e| {
            ModelError::Llama(format!(
                "llama.cpp cannot load {} ({e}): is it a GGUF model?",
                path.display()
            ))
        })?;
        let source = match chat_template {
            Some(text) => text.to_owned(),
            None => model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok())
                .ok_or(ModelError::NoChatTemplate)?,
        };
        let vocab = model.vocab();
        let piece = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        let template = ChatTemplate::new(source, piece(vocab.bos()), piece(vocab.eos()))?;
        Ok(Self { model, template })
    }

    /// A context (KV cache) for `positions` tokens, computing on `threads` CPU threads.
    pub fn new_context(
        &self,
        positions: usize,
        threads: usize,
    ) -> Result<LlamaContext<'_>, ModelError> {
        let threads = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(
                u32::try_from(positions.max(1)).unwrap_or(u32::MAX),
            ))
            .with_n_batch(BATCH_TOKENS as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        self.model
            .new_context(backend()?, params)
            .map_err(|e| ModelError::Llama(format!("creating a llama.cpp context: {e}")))
    }

    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Token ids of `text`: control tokens are recognised only when `special`.
    pub fn tokenize(&self, text: &str, special: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), false, special)
    }

    /// The prompt for `messages` in at most `budget` tokens: the template's text with
    /// control tokens, each message's text as plain text. When it is too long, the oldest
    /// messages after the leading system messages are left out (the last one always stays).
    pub fn prompt(
        &self,
        messages: &[ChatMessage],
        budget: usize,
    ) -> Result<Vec<LlamaToken>, PromptError> {
        let keep_front = messages.iter().take_while(|m| m.role == "system").count();
        let droppable = messages.len().saturating_sub(keep_front + 1);
        let mut last_error = None;
        for dropped in 0..=droppable {
            let kept: Vec<&ChatMessage> = messages[..keep_front]
                .iter()
                .chain(&messages[keep_front + dropped..])
                .collect();
            // Some templates reject a history that does not alternate: try one more left out.
            match self.encode(&kept) {
                Ok(ids) if ids.len() <= budget => return Ok(ids),
                Ok(ids) => last_error = Some(PromptError::TooLong(ids.len(), budget)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(PromptError::TooLong(0, budget)))
    }

    fn encode(&self, messages: &[&ChatMessage]) -> Result<Vec<LlamaToken>, PromptError> {
        let rendered = self.template.render_with_markers(messages)?;
        let vocab = self.model.vocab();
        let mut ids = Vec::new();
        for part in rendered {
            match part {
                Part::Template(text) => ids.extend(self.tokenize(&text, true)),
                Part::Message(i) => {
                    let content = messages.get(i).map_or("", |m| m.content.as_str());
                    ids.extend(self.tokenize(content, false));
                }
            }
        }
        if vocab.should_add_bos() && ids.first() != Some(&vocab.bos()) {
            ids.insert(0, vocab.bos());
        }
        Ok(ids)
    }
}

/// One message for the template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl From<&PromptMessage> for ChatMessage {
    fn from(m: &PromptMessage) -> Self {
        Self {
            role: m.role.as_str().to_owned(),
            content: m.content.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the chat template failed: {0}")]
    Template(String),
    #[error("the prompt needs {0} tokens, more than the local model's context leaves ({1})")]
    TooLong(usize, usize),
}

/// A Jinja chat template (Hugging Face's conventions: `messages`, `add_generation_prompt`,
/// `bos_token`, `eos_token`, `raise_exception`, Python string methods).
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

/// A piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Template(String),
    /// The content of message `i`.
    Message(usize),
}

/// Marks where a message's content goes in the rendered text (private-use characters, which
/// no template writes).
const MARK_OPEN: char = '\u{F0000}';
const MARK_CLOSE: char = '\u{F0001}';

impl ChatTemplate {
    pub fn new(source: String, bos: String, eos: String) -> Result<Self, ModelError> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
        Ok(Self { env, bos, eos })
    }

    /// The template's output for `messages`, ending with the assistant's turn opening when
    /// `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, PromptError> {
        let values: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        self.render_values(values, add_generation_prompt)
    }

    fn render_values(
        &self,
        messages: Vec<minijinja::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, PromptError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| PromptError::Template(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| PromptError::Template(e.to_string()))
    }

    /// Renders with each message's content replaced by a marker, and splits there, so the
    /// caller tokenizes the template's text and the messages' text differently.
    fn render_with_markers(&self, messages: &[&ChatMessage]) -> Result<Vec<Part>, PromptError> {
        let values: Vec<minijinja::Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                minijinja::context! {
                    role => m.role.as_str(),
                    content => format!("{MARK_OPEN}{i}{MARK_CLOSE}"),
                }
            })
            .collect();
        let text = self.render_values(values, true)?;
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find(MARK_OPEN) {
            let after = &rest[open + MARK_OPEN.len_utf8()..];
            let Some(close) = after.find(MARK_CLOSE) else {
                break;
            };
            let Ok(index) = after[..close].parse::<usize>() else {
                break;
            };
            if open > 0 {
                parts.push(Part::Template(rest[..open].to_owned()));
            }
            parts.push(Part::Message(index));
            rest = &after[close + MARK_CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            parts.push(Part::Template(rest.to_owned()));
        }
        Ok(parts)
    }
}

/// One turn for a worker.
struct Job {
    prompt: Vec<LlamaToken>,
    max_tokens: usize,
    sampling: SamplingOptions,
    events: mpsc::Sender<Result<ProviderEvent, ProviderError>>,
}

/// The local model on llama.cpp, as a Provider.
pub struct LlamaProvider {
    engine: Arc<LlamaEngine>,
    jobs: Mutex<std_mpsc::Sender<Job>>,
    options: LocalOptions,
    context_tokens: usize,
    generations: AtomicU64,
}

impl LlamaProvider {
    pub fn load(path: &Path, options: LocalOptions) -> Result<Self, ModelError> {
        let template = match &options.chat_template {
            Some(file) => Some(std::fs::read_to_string(file).map_err(|source| {
                ModelError::ChatTemplateFile {
                    path: file.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let engine = Arc::new(LlamaEngine::load(
            path,
            template.as_deref(),
            options.gpu_layers,
        )?);
        let trained = usize::try_from(engine.model.n_ctx_train()).unwrap_or(usize::MAX);
        let context_tokens = options.context_tokens.clamp(16, trained.max(16));
        let threads = options.threads.max(1);
        let (jobs, queue) = std_mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for worker in 0..options.workers.max(1) {
            // llama.cpp's context creation is not safe to run concurrently on one model:
            // each worker reports its context ready (or failed) before the next starts.
            let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
            let engine = engine.clone();
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("natter-llama-{worker}"))
                .spawn(move || run_worker(&engine, context_tokens, threads, &queue, ready_tx))
                .map_err(ModelError::Io)?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ModelError::Llama(e)),
                Err(_) => return Err(ModelError::Llama("a worker failed to start".into())),
            }
        }
        Ok(Self {
            engine,
            jobs: Mutex::new(jobs),
            options,
            context_tokens,
            generations: AtomicU64::new(0),
        })
    }

    pub fn engine(&self) -> &LlamaEngine {
        &self.engine
    }
}

fn run_worker(
    engine: &LlamaEngine,
    context_tokens: usize,
    threads: usize,
    queue: &Mutex<std_mpsc::Receiver<Job>>,
    ready: std_mpsc::Sender<Result<(), String>>,
) {
    let mut context = match engine.new_context(context_tokens, threads) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut batch = LlamaBatch::new(BATCH_TOKENS, 1);
    loop {
        // The lock is held only while waiting: one idle worker takes the next job.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // the provider was dropped
        };
        if job.events.is_closed() {
            continue; // aborted while queued
        }
        run_job(engine, &mut context, &mut batch, job);
    }
}

fn run_job(engine: &LlamaEngine, context: &mut LlamaContext<'_>, batch: &mut LlamaBatch, job: Job) {
    let events = job.events;
    let result = generate(
        engine,
        context,
        batch,
        &job.prompt,
        job.max_tokens,
        &job.sampling,
        |piece| send_piece(&events, piece),
    );
    send_ending(&events, result);
}

/// llama.cpp's sampler chain for `sampling`: repeat penalty, then greedy at temperature 0,
/// else top-p, temperature and a seeded draw.
pub fn sampler(engine: &LlamaEngine, sampling: &SamplingOptions) -> LlamaSampler {
    let mut chain = Vec::new();
    if sampling.repeat_penalty != 1.0 && sampling.repeat_last_n > 0 {
        chain.push(LlamaSampler::penalties(
            engine.model.n_vocab(),
            i32::try_from(sampling.repeat_last_n).unwrap_or(i32::MAX),
            sampling.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.push(LlamaSampler::top_p(sampling.top_p as f32, 1));
        chain.push(LlamaSampler::temp(sampling.temperature as f32));
        // llama.cpp takes a 32-bit seed: fold the 64 bits so both halves count.
        chain.push(LlamaSampler::dist(
            (sampling.seed ^ (sampling.seed >> 32)) as u32,
        ));
    }
    LlamaSampler::chain_simple(chain)
}

/// Evaluates `prompt` from an empty KV cache, then samples up to `max_tokens` tokens,
/// calling `on_step` with the text each completes. Stops at the model's end-of-turn tokens
/// or when `on_step` breaks (an abort).
pub fn generate(
    engine: &LlamaEngine,
    context: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    prompt: &[LlamaToken],
    max_tokens: usize,
    sampling: &SamplingOptions,
    mut on_step: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, ModelError> {
    let vocab = engine.model.vocab();
    let positions = context.n_ctx() as usize;
    let max_tokens = max_tokens.min(positions.saturating_sub(prompt.len()));
    let mut generation = Generation {
        finish: FinishReason::Length,
        prompt_tokens: prompt.len(),
        completion_tokens: 0,
    };
    if prompt.is_empty() || max_tokens == 0 {
        return Ok(generation);
    }
    context.clear_kv_cache();
    let last = prompt.len() - 1;
    for (chunk_index, chunk) in prompt.chunks(BATCH_TOKENS).enumerate() {
        batch.clear();
        for (i, &token) in chunk.iter().enumerate() {
            let at = chunk_index * BATCH_TOKENS + i;
            batch
                .add(token, position(at)?, &[0], at == last)
                .map_err(|e| ModelError::Llama(e.to_string()))?;
        }
        decode(context, batch)?;
    }
    let mut sampler = sampler(engine, sampling);
    let mut text = Utf8Stream::default();
    let mut piece = Vec::new();
    loop {
        // Samples from the last evaluated position and records the token for the penalty.
        let next = sampler.sample(context, -1);
        if vocab.is_eog(next) {
            generation.finish = FinishReason::Stop;
            break;
        }
        generation.completion_tokens += 1;
        piece.clear();
        vocab.token_to_piece_into(next, &mut piece, false, None);
        if on_step(&text.push(&piece)).is_break() {
            generation.finish = FinishReason::Cancelled;
            break;
        }
        if generation.completion_tokens >= max_tokens {
            break;
        }
        batch.clear();
        batch
            .add(
                next,
                position(prompt.len() + generation.completion_tokens - 1)?,
                &[0],
                true,
            )
            .map_err(|e| ModelError::Llama(e.to_string()))?;
        decode(context, batch)?;
    }
    let rest = text.finish();
    if !rest.is_empty() && generation.finish != FinishReason::Cancelled {
        let _ = on_step(&rest);
    }
    Ok(generation)
}

fn position(at: usize) -> Result<i32, ModelError> {
    i32::try_from(at).map_err(|_| ModelError::Llama("position out of range".into()))
}

fn decode(context: &mut LlamaContext<'_>, batch: &mut LlamaBatch) -> Result<(), ModelError> {
    context
        .decode(batch)
        .map_err(|e| ModelError::Llama(format!("llama.cpp decode: {e}")))
}

fn failed(kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, message)
}

#[async_trait]
impl Provider for LlamaProvider {
    fn name(&self) -> &str {
        "local"
    }

    /// The prompt is the chat template over the text of the messages: no template variables
    /// for tools are passed and no tool-call syntax is parsed from the output, so offering
    /// tools would only mislead the model.
    fn offers_tools(&self) -> bool {
        false
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
        let context = self.context_tokens;
        let budget = context.saturating_sub(max_tokens.min(context / 4));
        // No vision: each image becomes a `[image: name, WxH]` line (CONTRACT §7.6).
        let messages: Vec<ChatMessage> = request
            .messages
            .into_iter()
            .map(|mut m| {
                if !m.images.is_empty() {
                    m.content = m.content_with_image_lines();
                    m.images.clear();
                }
                ChatMessage::from(&m)
            })
            .collect();
        let engine = self.engine.clone();
        // Rendering and tokenizing a long history is CPU work: not on the async threads.
        let prompt = tokio::task::spawn_blocking(move || engine.prompt(&messages, budget))
            .await
            .map_err(|_| failed(ProviderErrorKind::Protocol, "encoding the prompt failed"))?
            .map_err(|e| match e {
                PromptError::TooLong(..) => failed(
                    ProviderErrorKind::ContextTooLong,
                    format!(
                        "the last message does not fit the local model's context ({budget} tokens)"
                    ),
                ),
                PromptError::Template(_) => failed(ProviderErrorKind::Protocol, e.to_string()),
            })?;
        let max_tokens = max_tokens.min(context.saturating_sub(prompt.len()));
        let (events, rx) = mpsc::channel::<Result<ProviderEvent, ProviderError>>(64);
        let job = Job {
            prompt,
            max_tokens,
            sampling,
            events,
        };
        self.jobs
            .lock()
            .map_err(|_| failed(ProviderErrorKind::Unavailable, "the local model failed"))?
            .send(job)
            .map_err(|_| {
                failed(
                    ProviderErrorKind::Unavailable,
                    "the local model is shut down",
                )
            })?;
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}
