//! The model: candle's quantized llama over a GGUF file, on the CPU.

use std::fs::File;
use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use crate::tokenizer::{Tokenizer, TokenizerError, Utf8Stream};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read the model file: {0}")]
    Io(#[from] std::io::Error),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the model's vocabulary has no ChatML markers (<|im_start|>, <|im_end|>)")]
    NotChatMl,
    #[error("llama.cpp: {0}")]
    Llama(String),
    #[error(
        "the model file has no chat template (tokenizer.chat_template): give one with --chat-template FILE"
    )]
    NoChatTemplate,
    #[error("the chat template is not valid Jinja: {0}")]
    ChatTemplate(String),
}

/// How the weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// As the file stores them.
    AsStored,
    /// Q4_1 matrices re-quantized to Q8_0 at load. candle has no SIMD kernel for Q4_1 (its
    /// dot product is scalar) but has an AVX2 one for Q8_0; Q8_0 holds every Q4_1 value to
    /// within 1/254 of its block's largest magnitude. Costs about 1.7× the weights' memory.
    #[default]
    Q8_0,
    /// Q4_1 re-quantized to Q4_0 (AVX2 kernel, about Q4_1's bytes). Lossy: every weight is
    /// rounded a second time. For comparison in the benchmark; not offered by the server.
    Q4_0,
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

/// A loaded model with its own KV cache. [`LocalModel::fork`] gives another one that
/// shares the weights, for a second generation at the same time.
#[derive(Clone)]
pub struct LocalModel {
    weights: ModelWeights,
    tokenizer: Arc<Tokenizer>,
    /// Tokens that end the assistant's turn.
    stop: Vec<u32>,
}

impl LocalModel {
    /// The most positions (prompt and reply) a generation may use: candle's quantized
    /// llama precomputes its rotary tables for this many, less than the model's 8192.
    pub const MAX_POSITIONS: usize = MAX_SEQ_LEN;

    pub fn load(path: &Path, format: WeightFormat) -> Result<Self, ModelError> {
        let mut file = File::open(path)?;
        let content = Content::read(&mut file)?;
        let tokenizer = Tokenizer::from_gguf(&content)?;
        let weights = match format {
            WeightFormat::AsStored => ModelWeights::from_gguf(content, &mut file, &Device::Cpu)?,
            WeightFormat::Q8_0 | WeightFormat::Q4_0 => {
                let to = if format == WeightFormat::Q8_0 {
                    GgmlDType::Q8_0
                } else {
                    GgmlDType::Q4_0
                };
                let bytes = requantized(&content, &mut file, GgmlDType::Q4_1, to)?;
                let mut reader = Cursor::new(bytes);
                let content = Content::read(&mut reader)?;
                ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)?
            }
        };
        let im_end = tokenizer
            .special("<|im_end|>")
            .ok_or(ModelError::NotChatMl)?;
        tokenizer
            .special("<|im_start|>")
            .ok_or(ModelError::NotChatMl)?;
        let mut stop = vec![im_end, tokenizer.eos];
        stop.dedup();
        Ok(Self {
            weights,
            tokenizer: Arc::new(tokenizer),
            stop,
        })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Another instance sharing these weights, with an empty KV cache.
    pub fn fork(&self) -> Self {
        self.clone()
    }

    /// Runs `ids` at positions `pos..`, returning the logits after the last one as f32.
    /// `pos == 0` starts a new sequence (the KV cache is reset).
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, pos)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?)
    }

    /// Generates a reply to `prompt` (ids, e.g. from [`crate::chat_template::encode`]),
    /// calling `on_step` after each token with the text it completed (maybe empty when a
    /// character spans tokens). `on_step` returning `Break` stops, as an abort.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: &SamplingOptions,
        mut on_step: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, ModelError> {
        let mut processor = LogitsProcessor::from_sampling(
            sampling.seed,
            if sampling.temperature <= 0.0 {
                Sampling::ArgMax
            } else {
                Sampling::TopP {
                    p: sampling.top_p,
                    temperature: sampling.temperature,
                }
            },
        );
        let max_tokens = max_tokens.min(Self::MAX_POSITIONS.saturating_sub(prompt.len()));
        let mut text = Utf8Stream::default();
        let mut generated: Vec<u32> = Vec::new();
        let mut finish = FinishReason::Length;
        let mut logits = if prompt.is_empty() || max_tokens == 0 {
            None
        } else {
            Some(self.forward(prompt, 0)?)
        };
        while let Some(mut current) = logits.take() {
            if generated.len() >= max_tokens {
                break;
            }
            if sampling.repeat_penalty != 1.0 {
                let start = generated.len().saturating_sub(sampling.repeat_last_n);
                penalize(&mut current, &generated[start..], sampling.repeat_penalty);
            }
            let next = processor.sample(&Tensor::new(current, &Device::Cpu)?)?;
            if self.stop.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            generated.push(next);
            let piece = text.push(self.tokenizer.token_bytes(next));
            if on_step(&piece).is_break() {
                finish = FinishReason::Cancelled;
                break;
            }
            if generated.len() < max_tokens {
                logits = Some(self.forward(&[next], prompt.len() + generated.len() - 1)?);
            }
        }
        let rest = text.finish();
        if !rest.is_empty() && finish != FinishReason::Cancelled {
            let _ = on_step(&rest);
        }
        Ok(Generation {
            finish,
            prompt_tokens: prompt.len(),
            completion_tokens: generated.len(),
        })
    }
}

/// llama.cpp's repeat penalty: a seen token's positive logit is divided by `penalty`, a
/// negative one multiplied.
fn penalize(logits: &mut [f32], seen: &[u32], penalty: f32) {
    let mut done = std::collections::HashSet::new();
    for &id in seen {
        if done.insert(id)
            && let Some(l) = logits.get_mut(id as usize)
        {
            *l = if *l >= 0.0 {
                *l / penalty
            } else {
                *l * penalty
            };
        }
    }
}

/// The GGUF rewritten in memory with every `from` tensor converted to `to`.
fn requantized(
    content: &Content,
    file: &mut File,
    from: GgmlDType,
    to: GgmlDType,
) -> Result<Vec<u8>, ModelError> {
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(content.tensor_infos.len());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = if tensor.dtype() == from {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, to)?
        } else {
            tensor
        };
        tensors.push((name.clone(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_counts_each_token_once() {
        let mut logits = vec![2.0, -2.0, 1.0];
        penalize(&mut logits, &[0, 0, 1], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }
}
