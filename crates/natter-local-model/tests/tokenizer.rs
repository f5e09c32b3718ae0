//! llama.cpp's tokenizer on the real GGUF against `fixtures/tokenizer_llama_cpp.json`: the ids
//! llama.cpp gave (`bench/local-model/llama_cpp_reference.py --tokenize-fixture`) for a varied
//! corpus: ASCII, whitespace runs, digits (SmolLM2's `smollm` pre-tokenizer splits each digit
//! alone), accents, CJK, Korean, Arabic, Hebrew, Devanagari, emoji with ZWJ sequences and
//! flags, code, URLs. The engine must keep giving those ids, decode them back to the text, and
//! stream them as whole characters.

mod common;

use natter_local_model::Utf8Stream;
use natter_local_model::llama::LlamaEngine;
use natter_local_model::llama::llama_cpp_2::token::LlamaToken;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<i32>,
    special: bool,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("fixtures/tokenizer_llama_cpp.json")).unwrap()
}

fn ids(engine: &LlamaEngine, text: &str, special: bool) -> Vec<i32> {
    engine.tokenize(text, special).iter().map(|t| t.0).collect()
}

/// A token's bytes as generation streams them (control tokens render as nothing).
fn token_bytes(engine: &LlamaEngine, id: i32) -> Vec<u8> {
    engine
        .model()
        .vocab()
        .token_to_piece(LlamaToken(id), false, None)
}

#[test]
fn ids_equal_the_llama_cpp_fixture_and_text_round_trips() {
    let Some(engine) = common::engine() else {
        return;
    };
    assert_eq!(engine.model().n_vocab(), 49_152);
    let cases = cases();
    assert!(cases.len() >= 60);
    for case in &cases {
        assert_eq!(
            ids(engine, &case.text, case.special),
            case.ids,
            "ids for {:?}",
            case.text
        );
    }
    for case in cases.iter().filter(|c| !c.special) {
        let bytes: Vec<u8> = case
            .ids
            .iter()
            .flat_map(|&id| token_bytes(engine, id))
            .collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), case.text);
    }
}

#[test]
fn control_tokens_come_only_from_the_template() {
    let Some(engine) = common::engine() else {
        return;
    };
    let case = cases().into_iter().find(|c| c.special).unwrap();
    let (start, end) = (
        ids(engine, "<|im_start|>", true),
        ids(engine, "<|im_end|>", true),
    );
    assert_eq!((start.len(), end.len()), (1, 1), "each marker is one token");
    let mut built = start.clone();
    built.extend(ids(engine, "user\nhi", false));
    built.extend(&end);
    built.extend(ids(engine, "\n", false));
    assert_eq!(
        built, case.ids,
        "markers as control tokens, the rest as text, is what llama.cpp's special parse gives"
    );
    assert!(
        !ids(engine, &case.text, false).contains(&end[0]),
        "as plain text they are not markers"
    );
}

#[test]
fn streaming_any_split_of_any_text_gives_whole_characters() {
    let Some(engine) = common::engine() else {
        return;
    };
    for case in cases().iter().filter(|c| !c.special) {
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for &id in &case.ids {
            let piece = stream.push(&token_bytes(engine, id));
            assert!(
                !piece.contains('\u{FFFD}'),
                "a broken character streaming {:?}",
                case.text
            );
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, case.text);
    }
}
