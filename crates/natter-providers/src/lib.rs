//! LLM providers behind natter-core's [`Provider`](natter_core::provider::Provider) seam.
//!
//! - [`openai::OpenAiProvider`]: any OpenAI-compatible Chat Completions endpoint (OpenAI,
//!   vLLM, Ollama, llama.cpp server, OpenRouter).
//! - [`anthropic::AnthropicProvider`]: Anthropic's streaming Messages API (`/v1/messages`),
//!   tool use included.
//! - [`demo::DemoProvider`]: no network, no key; a deterministic reply that says it is a demo.

pub mod anthropic;
pub mod demo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod openai;
mod sse;
