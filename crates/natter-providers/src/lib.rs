//! LLM providers behind natter-core's [`Provider`](natter_core::provider::Provider) seam.
//!
//! - [`openai::OpenAiProvider`]: any OpenAI-compatible Chat Completions endpoint (OpenAI,
//!   vLLM, Ollama, llama.cpp server, OpenRouter).
//! - [`demo::DemoProvider`]: no network, no key; a deterministic reply that says it is a demo.

pub mod demo;
pub mod openai;
