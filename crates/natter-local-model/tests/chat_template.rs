//! The ChatML prompt, byte for byte against the model's own Jinja template
//! (`fixtures/chat_template.json`, rendered by `fixtures/render_chat_template.py`).

mod common;

use natter_local_model::chat_template::{self, TemplateMessage};
use natter_local_model::{LocalModel, WeightFormat};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    text: String,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("fixtures/chat_template.json")).unwrap()
}

fn template_messages(case: &Case) -> Vec<TemplateMessage<'_>> {
    case.messages
        .iter()
        .map(|m| TemplateMessage {
            role: &m.role,
            content: &m.content,
        })
        .collect()
}

#[test]
fn render_matches_the_jinja_template_byte_for_byte() {
    let cases = cases();
    assert!(cases.len() >= 6);
    for case in &cases {
        let rendered = chat_template::render(&template_messages(case), case.add_generation_prompt);
        assert_eq!(rendered, case.text);
    }
}

#[test]
fn encoded_prompt_decodes_to_the_rendered_text_with_real_control_tokens() {
    let Some(path) = common::model_path() else {
        return;
    };
    let model = LocalModel::load(&path, WeightFormat::AsStored).unwrap();
    let tokenizer = model.tokenizer();
    let im_start = tokenizer.special("<|im_start|>").unwrap();
    let im_end = tokenizer.special("<|im_end|>").unwrap();
    for case in cases().iter().filter(|c| c.add_generation_prompt) {
        let messages = template_messages(case);
        let ids = chat_template::encode(tokenizer, &messages).unwrap().ids();
        assert_eq!(tokenizer.decode_with_specials(&ids), case.text);
        let turns = chat_template::render(&messages, true)
            .matches("<|im_start|>")
            .count();
        assert_eq!(ids.iter().filter(|&&id| id == im_start).count(), turns);
        // A message spelling `<|im_end|>` does not end its turn: only the template's do.
        assert_eq!(ids.iter().filter(|&&id| id == im_end).count(), turns - 1);
    }
}
