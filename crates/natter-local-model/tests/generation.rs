//! Real generations with the real model.

mod common;

use std::ops::ControlFlow;

use natter_local_model::chat_template::{self, TemplateMessage};
use natter_local_model::model::FinishReason;
use natter_local_model::{LocalModel, SamplingOptions, WeightFormat};

fn prompt(model: &LocalModel, text: &str) -> Vec<u32> {
    let messages = [TemplateMessage {
        role: "user",
        content: text,
    }];
    chat_template::encode(model.tokenizer(), &messages)
        .unwrap()
        .ids()
}

#[test]
fn greedy_reply_is_english_and_stops_on_its_own() {
    let Some(path) = common::model_path() else {
        return;
    };
    let mut model = LocalModel::load(&path, WeightFormat::default()).unwrap();
    let ids = prompt(
        &model,
        "What is the capital of France? Answer in one sentence.",
    );
    let greedy = SamplingOptions {
        temperature: 0.0,
        ..SamplingOptions::default()
    };
    let mut text = String::new();
    let g = model
        .generate(&ids, 64, &greedy, |piece| {
            text.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    eprintln!("reply: {text:?} {g:?}");
    assert_eq!(g.finish, FinishReason::Stop, "{text}");
    assert!(text.contains("Paris"), "{text}");
    assert!(g.completion_tokens > 2 && g.completion_tokens < 64);
}
