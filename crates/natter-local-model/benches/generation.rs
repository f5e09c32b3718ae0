//! Tokens/s of the local model (llama.cpp): prompt processing (one batch of P tokens from an
//! empty cache), generation (G single-token steps, greedy, not stopping at end of turn) and
//! the provider's own `generate()` loop. Prints one JSON line, medians over R runs; with
//! `--concurrent 1,2,4`, one line per count of chats at once through `LocalProvider` instead.
//!
//!   cargo bench -p natter-local-model --bench generation -- [--model PATH] [--prompt-tokens P]
//!       [--gen-tokens G] [--repeats R] [--concurrent N,N,…]
//!
//! Threads: `THREADS`, else every core.
//!
//! The model: --model, else NATTER_MODEL_PATH, else $XDG_CACHE_HOME/natter/models/… (an
//! absolute one), else ~/.cache/natter/models/…

use std::path::PathBuf;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: usize| {
        arg(&args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let prompt_tokens = num("--prompt-tokens", 256);
    let gen_tokens = num("--gen-tokens", 128);
    let repeats = num("--repeats", 3).max(1);
    let path = arg(&args, "--model")
        .or_else(|| std::env::var("NATTER_MODEL_PATH").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The per-user cache `natter model pull` fills (natter_server::config::user_cache_dir):
            // an absolute $XDG_CACHE_HOME, else ~/.cache.
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|d| d.is_absolute())
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            natter_local_model::pull::model_path(&cache.join("natter"))
        });
    if !path.exists() {
        eprintln!(
            "no model at {} (natter model pull, or --model)",
            path.display()
        );
        std::process::exit(2);
    }
    if let Some(counts) = arg(&args, "--concurrent") {
        // `--concurrent 1,2,4`: chats at once through LocalProvider with that many workers.
        for n in counts.split(',').filter_map(|c| c.parse().ok()) {
            llama::concurrent(&path, n, gen_tokens);
        }
        return;
    }
    llama::bench(&path, prompt_tokens, gen_tokens, repeats);
}

/// Measured as bench/local-model/llama_cpp_reference.py measures llama.cpp through Python:
/// n_ctx 2048, one batch for the prompt, single-token decode steps timed alone, greedy,
/// threads from `THREADS` (default: every core).
mod llama {
    use std::path::Path;
    use std::time::Instant;

    use natter_local_model::llama::LlamaEngine;
    use natter_local_model::llama::llama_cpp_2::context::LlamaContext;
    use natter_local_model::llama::llama_cpp_2::llama_batch::LlamaBatch;
    use natter_local_model::llama::llama_cpp_2::token::LlamaToken;

    // As llama_cpp_reference.py's PARAGRAPH and GEN_PROMPT.
    const PARAGRAPH: &str = "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of salt and wind. Every evening the keeper climbed the spiral stairs, trimmed the wick, and watched the beam sweep across the dark water. Ships passed far out at sea, and sometimes a fishing boat came close enough that he could hear the crew laughing over the sound of the waves. He kept a notebook of every vessel he saw, writing down the time, the weather, and anything unusual about the way it moved. ";
    const GEN_PROMPT: &str = "<|im_start|>user\nTell me a short story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n";

    fn decode(
        context: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch,
        ids: &[LlamaToken],
        start: usize,
    ) {
        batch.clear();
        for (i, &id) in ids.iter().enumerate() {
            batch
                .add(id, (start + i) as i32, &[0], i + 1 == ids.len())
                .expect("batch has room");
        }
        context.decode(batch).expect("decode");
        context.synchronize();
    }

    fn argmax(logits: &[f32]) -> LlamaToken {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        LlamaToken(best as i32)
    }

    fn threads() -> usize {
        std::env::var("THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// `chats` greedy turns at once through [`LocalProvider`] with `chats` workers (each on
    /// `THREADS` threads), each asked for `gen_tokens` tokens: total generated tokens per
    /// second of wall time, from sending the turns to the last one's end.
    pub fn concurrent(path: &Path, chats: usize, gen_tokens: usize) {
        use futures::StreamExt;
        use natter_core::provider::{
            CompletionRequest, PromptMessage, Provider, ProviderEvent, Role,
        };
        use natter_local_model::{LocalOptions, LocalProvider};

        let threads = threads();
        let options = LocalOptions {
            workers: chats,
            threads,
            context_tokens: 2048,
            ..LocalOptions::default()
        };
        let provider = LocalProvider::load(path, options).expect("model loads");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (tokens, seconds) = runtime.block_on(async {
            let started = Instant::now();
            let turns = (0..chats).map(|i| {
                let provider = &provider;
                async move {
                    let request = CompletionRequest {
                        model: "local".into(),
                        messages: vec![PromptMessage::text(
                            Role::User,
                            format!("Write a long story about lighthouse number {i}."),
                        )],
                        max_tokens: Some(gen_tokens as u32),
                        temperature: Some(0.0),
                        tools: Vec::new(),
                    };
                    let items: Vec<_> = provider
                        .stream(request)
                        .await
                        .expect("stream")
                        .collect()
                        .await;
                    items
                        .iter()
                        .find_map(|i| match i {
                            Ok(ProviderEvent::Usage(u)) => Some(u.completion_tokens),
                            _ => None,
                        })
                        .unwrap_or(0)
                }
            });
            let counts = futures::future::join_all(turns).await;
            (counts.iter().sum::<u64>(), started.elapsed().as_secs_f64())
        });
        println!(
            "{{\"engine\":\"natter llama.cpp\",\"chats\":{chats},\"workers\":{chats},\"threads_per_worker\":{threads},\"tokens\":{tokens},\"seconds\":{seconds:.2},\"total_tok_s\":{:.1},\"per_chat_tok_s\":{:.1}}}",
            tokens as f64 / seconds,
            tokens as f64 / seconds / chats as f64,
        );
    }

    pub fn bench(path: &Path, prompt_tokens: usize, gen_tokens: usize, repeats: usize) {
        let threads = threads();
        let started = Instant::now();
        let engine = LlamaEngine::load(path, None, 0).expect("model loads");
        let load_ms = started.elapsed().as_millis();
        let mut context = engine.new_context(2048, threads).expect("context");
        let mut batch = LlamaBatch::new(512, 1);
        let mut text = PARAGRAPH.to_owned();
        let mut prompt = engine.tokenize(&text, false);
        while prompt.len() < prompt_tokens {
            text = text.repeat(2);
            prompt = engine.tokenize(&text, false);
        }
        prompt.truncate(prompt_tokens.min(512));
        let short = engine.tokenize(GEN_PROMPT, true);
        let run_pp = |context: &mut LlamaContext<'_>, batch: &mut LlamaBatch| {
            context.clear_kv_cache();
            let t = Instant::now();
            decode(context, batch, &prompt, 0);
            prompt.len() as f64 / t.elapsed().as_secs_f64()
        };
        let run_tg = |context: &mut LlamaContext<'_>, batch: &mut LlamaBatch, n: usize| {
            context.clear_kv_cache();
            decode(context, batch, &short, 0);
            let mut next = argmax(context.get_logits_ith(-1));
            let mut spent = 0.0;
            for step in 0..n {
                let t = Instant::now();
                decode(context, batch, &[next], short.len() + step);
                spent += t.elapsed().as_secs_f64();
                next = argmax(context.get_logits_ith(-1));
            }
            n as f64 / spent
        };
        // Warm-up, not counted.
        run_pp(&mut context, &mut batch);
        run_tg(&mut context, &mut batch, gen_tokens.min(8));
        let pp_runs: Vec<f64> = (0..repeats)
            .map(|_| run_pp(&mut context, &mut batch))
            .collect();
        let tg_runs: Vec<f64> = (0..repeats)
            .map(|_| run_tg(&mut context, &mut batch, gen_tokens))
            .collect();
        // The provider's own loop (`generate`: sampler chain with the repeat penalty,
        // token_to_piece, UTF-8 stream), greedy: tokens/s between its first and last token.
        let chat = engine
            .prompt(
                &[natter_local_model::llama::ChatMessage {
                    role: "user".into(),
                    content: "Tell me a long story about a lighthouse.".into(),
                }],
                1024,
            )
            .expect("prompt");
        let greedy = natter_local_model::SamplingOptions {
            temperature: 0.0,
            ..natter_local_model::SamplingOptions::default()
        };
        let loop_runs: Vec<f64> = (0..repeats)
            .map(|_| {
                let mut first: Option<Instant> = None;
                let mut steps = 0usize;
                natter_local_model::llama::generate(
                    &engine,
                    &mut context,
                    &mut batch,
                    &chat,
                    gen_tokens,
                    &greedy,
                    |_| {
                        first.get_or_insert_with(Instant::now);
                        steps += 1;
                        std::ops::ControlFlow::Continue(())
                    },
                )
                .expect("generate");
                let spent = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
                steps.saturating_sub(1) as f64 / spent.max(1e-9)
            })
            .collect();
        let round = |v: &[f64]| {
            v.iter()
                .map(|x| (x * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        };
        println!(
            "{{\"engine\":\"natter llama.cpp\",\"weights\":\"llama.cpp engine (as stored)\",\"threads\":{threads},\"load_ms\":{load_ms},\"prompt_tokens\":{},\"gen_tokens\":{gen_tokens},\"pp_tok_s\":{:.1},\"tg_tok_s\":{:.1},\"pp_runs\":{:?},\"tg_runs\":{:?},\"generate_tok_s\":{:.1},\"generate_runs\":{:?}}}",
            prompt.len(),
            super::median(pp_runs.clone()),
            super::median(tg_runs.clone()),
            round(&pp_runs),
            round(&tg_runs),
            super::median(loop_runs.clone()),
            round(&loop_runs),
        );
    }
}
