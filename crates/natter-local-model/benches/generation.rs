//! Tokens/s of the local model: prompt processing (one batch of P tokens from an empty
//! cache) and generation (G single-token steps, greedy, not stopping at end of turn), for
//! each weight format. Prints one JSON line per format, medians over R runs.
//!
//!   cargo bench -p natter-local-model --bench generation -- [--model PATH] [--prompt-tokens P]
//!       [--gen-tokens G] [--repeats R]
//!
//! The model: --model, else NATTER_MODEL_PATH, else ~/.cache/natter/models/…

use std::path::PathBuf;
use std::time::Instant;

use natter_local_model::{LocalModel, WeightFormat};

const PARAGRAPH: &str = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. To be or not to be, that is the question. ";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
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
            natter_local_model::pull::model_path(
                &PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/natter"),
            )
        });
    if !path.exists() {
        eprintln!(
            "no model at {} (natter model pull, or --model)",
            path.display()
        );
        std::process::exit(2);
    }
    let formats = [
        ("as stored (Q4_1)", WeightFormat::AsStored),
        ("Q8_0 (default)", WeightFormat::Q8_0),
        ("Q4_0 (lossy, not offered)", WeightFormat::Q4_0),
    ];
    for (label, format) in formats {
        let started = Instant::now();
        let mut model = LocalModel::load(&path, format).expect("model loads");
        let load_ms = started.elapsed().as_millis();
        let text = PARAGRAPH.repeat(prompt_tokens / 10 + 1);
        let mut prompt = model.tokenizer().encode(&text);
        prompt.truncate(prompt_tokens);
        let mut pp_runs = Vec::new();
        let mut tg_runs = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            model.forward(&prompt, 0).expect("prompt");
            pp_runs.push(prompt.len() as f64 / t.elapsed().as_secs_f64());

            let short = &prompt[..8.min(prompt.len())];
            let mut next = argmax(&model.forward(short, 0).expect("prompt"));
            let t = Instant::now();
            for step in 0..gen_tokens {
                next = argmax(&model.forward(&[next], short.len() + step).expect("step"));
            }
            tg_runs.push(gen_tokens as f64 / t.elapsed().as_secs_f64());
        }
        let round = |v: &[f64]| {
            v.iter()
                .map(|x| (x * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        };
        println!(
            "{{\"engine\":\"natter candle\",\"weights\":\"{label}\",\"threads\":{},\"load_ms\":{load_ms},\"prompt_tokens\":{},\"gen_tokens\":{gen_tokens},\"pp_tok_s\":{:.1},\"tg_tok_s\":{:.1},\"pp_runs\":{:?},\"tg_runs\":{:?}}}",
            candle_core::utils::get_num_threads(),
            prompt.len(),
            median(pp_runs.clone()),
            median(tg_runs.clone()),
            round(&pp_runs),
            round(&tg_runs),
        );
    }
}
