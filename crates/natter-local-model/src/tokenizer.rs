//! A byte-level BPE tokenizer built from the vocabulary and merges a GGUF file embeds
//! (`tokenizer.ggml.model = "gpt2"`), so nothing is fetched from a model hub.
//!
//! Why our own: candle-core links the `tokenizers` crate and has `TokenizerFromGguf`, but it
//! maps SmolLM2's `smollm` pre-tokenizer to plain GPT-2, without the per-digit split the
//! model was trained with, so every number gets other ids (`tests/tokenizer.rs` shows it
//! against llama.cpp). Its added-token matching would also turn a user's literal
//! `<|im_end|>` into the control token. Assembling a `tokenizers` pipeline by hand to fix
//! both is about as long as this file, which also gives the raw token bytes that streaming
//! needs ([`Utf8Stream`]). `fancy-regex` (for the look-ahead in GPT-2's pattern) is already
//! a dependency of candle.
//!
//! Encoding follows llama.cpp's `smollm` pre-tokenizer (the same as the model's own
//! Hugging Face tokenizer: each digit alone, then GPT-2's split), then merges each piece by
//! rank with a heap, so a long run without spaces costs `n log n`, not `n²`. The tests in
//! `tests/tokenizer.rs` compare ids with llama.cpp's on a varied corpus.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};
use fancy_regex::Regex;

/// GPT-2's split, as in the model's `tokenizer.json` (`ByteLevel` with `use_regex`).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GGUF's `tokenizer.ggml.token_type` for control tokens (`<|im_start|>`, …).
const TOKEN_TYPE_CONTROL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the GGUF has no usable tokenizer: {0}")]
    Metadata(String),
}

pub struct Tokenizer {
    /// Each token's bytes (control tokens: their text, e.g. `<|im_end|>`).
    token_bytes: Vec<Vec<u8>>,
    control: Vec<bool>,
    /// `(left, right)` → `(rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The id of each single byte's token. SmolLM2's vocabulary lacks a few control bytes
    /// (e.g. 0x04); like its Hugging Face tokenizer (no `unk_token`), those bytes are left out.
    byte_tokens: [Option<u32>; 256],
    /// Control tokens by their text.
    specials: HashMap<String, u32>,
    split: Regex,
    digit: Regex,
    pub eos: u32,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF's metadata.
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let md = &content.metadata;
        let get = |key: &str| {
            md.get(key)
                .ok_or_else(|| TokenizerError::Metadata(format!("no `{key}`")))
        };
        let model = get("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| TokenizerError::Metadata(e.to_string()))?;
        if model != "gpt2" {
            return Err(TokenizerError::Metadata(format!(
                "tokenizer model `{model}` (only gpt2-style byte-level BPE is supported)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>, TokenizerError> {
            let values = get(key)?
                .to_vec()
                .map_err(|e| TokenizerError::Metadata(format!("`{key}`: {e}")))?;
            values
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(TokenizerError::Metadata(format!(
                        "`{key}` holds a non-string"
                    ))),
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| TokenizerError::Metadata(e.to_string()))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let eos = get("tokenizer.ggml.eos_token_id")?
            .to_u32()
            .map_err(|e| TokenizerError::Metadata(e.to_string()))?;
        Self::new(&tokens, &types, &merges, eos)
    }

    /// Builds the tokenizer from a vocabulary in GPT-2's byte-to-unicode alphabet, token
    /// types and merges (`"left right"`, best first).
    pub fn new(
        tokens: &[String],
        types: &[i32],
        merges: &[String],
        eos: u32,
    ) -> Result<Self, TokenizerError> {
        let unicode_to_byte: HashMap<char, u8> = byte_to_unicode()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut token_bytes = Vec::with_capacity(tokens.len());
        let mut control = Vec::with_capacity(tokens.len());
        let mut specials = HashMap::new();
        for (id, text) in tokens.iter().enumerate() {
            let id = id as u32;
            let is_control = types.get(id as usize) == Some(&TOKEN_TYPE_CONTROL);
            ids.insert(text.clone(), id);
            if is_control {
                specials.insert(text.clone(), id);
                token_bytes.push(text.as_bytes().to_vec());
            } else {
                // A normal token is spelled in the byte alphabet; anything else is kept as
                // its UTF-8 text.
                let bytes: Option<Vec<u8>> = text
                    .chars()
                    .map(|c| unicode_to_byte.get(&c).copied())
                    .collect();
                token_bytes.push(bytes.unwrap_or_else(|| text.as_bytes().to_vec()));
            }
            control.push(is_control);
        }
        let mut byte_tokens = [None; 256];
        for (byte, c) in byte_to_unicode().iter().enumerate() {
            byte_tokens[byte] = ids.get(&c.to_string()).copied();
        }
        if byte_tokens.iter().flatten().count() < 128 {
            return Err(TokenizerError::Metadata(
                "the vocabulary is not in GPT-2's byte alphabet".into(),
            ));
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, line) in merges.iter().enumerate() {
            let Some((left, right)) = line.split_once(' ') else {
                return Err(TokenizerError::Metadata(format!(
                    "merge `{line}` has no space"
                )));
            };
            let (Some(&l), Some(&r), Some(&merged)) = (
                ids.get(left),
                ids.get(right),
                ids.get(&format!("{left}{right}")),
            ) else {
                return Err(TokenizerError::Metadata(format!(
                    "merge `{line}` names tokens not in the vocabulary"
                )));
            };
            merge_map.entry((l, r)).or_insert((rank as u32, merged));
        }
        if eos as usize >= tokens.len() {
            return Err(TokenizerError::Metadata(format!(
                "eos id {eos} out of range"
            )));
        }
        Ok(Self {
            token_bytes,
            control,
            merges: merge_map,
            byte_tokens,
            specials,
            split: Regex::new(GPT2_SPLIT).map_err(|e| TokenizerError::Metadata(e.to_string()))?,
            digit: Regex::new(r"\p{N}").map_err(|e| TokenizerError::Metadata(e.to_string()))?,
            eos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// A control token's id by its text (`<|im_start|>`).
    pub fn special(&self, text: &str) -> Option<u32> {
        self.specials.get(text).copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text as plain text: a control token's spelling in `text` is not a control
    /// token (so a user cannot forge `<|im_end|>`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        for piece in split_isolated(&self.digit, text) {
            let mut at = 0;
            // fancy-regex only fails past its backtrack limit, which this pattern (one
            // bounded look-ahead) does not reach; a failure still encodes the rest whole.
            while at < piece.len() {
                match self.split.find_from_pos(piece, at) {
                    Ok(Some(m)) if m.end() > at => {
                        if m.start() > at {
                            self.bpe(&piece.as_bytes()[at..m.start()], &mut out);
                        }
                        self.bpe(m.as_str().as_bytes(), &mut out);
                        at = m.end();
                    }
                    _ => {
                        self.bpe(&piece.as_bytes()[at..], &mut out);
                        break;
                    }
                }
            }
        }
        out
    }

    /// The bytes a token stands for (control tokens: none, as llama.cpp renders them).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        match self.token_bytes.get(id as usize) {
            Some(_) if self.is_control(id) => &[],
            Some(bytes) => bytes,
            None => &[],
        }
    }

    /// Decodes ids to text, control tokens included as their spelling; invalid UTF-8 is
    /// replaced with U+FFFD.
    pub fn decode_with_specials(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes.get(id as usize).map_or(&[][..], |b| b))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Decodes ids to text, skipping control tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Merges one pre-token's bytes by rank: a heap of candidate pairs over a linked list
    /// of symbols, lowest rank (then leftmost) first, as byte-level BPE defines it.
    fn bpe(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = bytes
            .iter()
            .filter_map(|&b| self.byte_tokens[b as usize])
            .collect();
        let n = ids.len();
        if n == 0 {
            return;
        }
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut next: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
        let mut alive = vec![true; n];
        // (rank, left position, left id, right id): stale entries are skipped when popped.
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Reverse<(u32, usize, u32, u32)>>,
                    l: usize,
                    r: usize,
                    ids: &[u32]| {
            if let Some(&(rank, _)) = self.merges.get(&(ids[l], ids[r])) {
                heap.push(Reverse((rank, l, ids[l], ids[r])));
            }
        };
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, i, i + 1, &ids);
        }
        while let Some(Reverse((_, l, left_id, right_id))) = heap.pop() {
            let Some(r) = next[l] else { continue };
            if !alive[l] || ids[l] != left_id || ids[r] != right_id {
                continue;
            }
            let Some(&(_, merged)) = self.merges.get(&(left_id, right_id)) else {
                continue;
            };
            ids[l] = merged;
            alive[r] = false;
            next[l] = next[r];
            if let Some(after) = next[r] {
                prev[after] = Some(l);
            }
            if let Some(before) = prev[l] {
                push(&mut heap, before, l, &ids);
            }
            if let Some(after) = next[l] {
                push(&mut heap, l, after, &ids);
            }
        }
        let mut at = Some(0);
        while let Some(i) = at {
            out.push(ids[i]);
            at = next[i];
        }
    }
}

/// Splits `text` so that each match of `pattern` stands alone (Hugging Face's `Isolated`
/// split behaviour), keeping every byte.
fn split_isolated<'t>(pattern: &Regex, text: &'t str) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for m in pattern.find_iter(text).flatten() {
        if m.start() > at {
            pieces.push(&text[at..m.start()]);
        }
        pieces.push(m.as_str());
        at = m.end();
    }
    if at < text.len() {
        pieces.push(&text[at..]);
    }
    pieces
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        map[b as usize] = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{FFFD}')
        };
    }
    map
}

/// Turns a stream of token bytes into text pieces that are always whole UTF-8: a character
/// split across tokens is held back until its last byte arrives. A byte sequence that can
/// never be valid becomes U+FFFD.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds a token's bytes; returns the text that is now complete (maybe empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Checked by from_utf8 just above.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end: an incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let map = byte_to_unicode();
        let mut seen: Vec<char> = map.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn utf8_stream_holds_split_characters() {
        let mut s = Utf8Stream::default();
        let emoji = "👋".as_bytes();
        assert_eq!(s.push(b"hi "), "hi ");
        assert_eq!(s.push(&emoji[..1]), "");
        assert_eq!(s.push(&emoji[1..3]), "");
        assert_eq!(s.push(&emoji[3..]), "👋");
        assert_eq!(s.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(s.push(&[0xe2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn isolated_split_keeps_every_byte() {
        let digit = Regex::new(r"\p{N}").unwrap();
        assert_eq!(
            split_isolated(&digit, "ab12 c3"),
            ["ab", "1", "2", " c", "3"]
        );
        assert_eq!(split_isolated(&digit, ""), Vec::<&str>::new());
    }

    /// A toy vocabulary: every byte, plus merges `a b` → `ab` and `ab c` → `abc`.
    fn toy() -> Tokenizer {
        let mut tokens: Vec<String> = byte_to_unicode().iter().map(|c| c.to_string()).collect();
        tokens.extend(["ab".to_owned(), "abc".to_owned(), "<|im_end|>".to_owned()]);
        let mut types = vec![1; tokens.len()];
        types[258] = TOKEN_TYPE_CONTROL;
        let merges = vec!["a b".to_owned(), "ab c".to_owned()];
        Tokenizer::new(&tokens, &types, &merges, 258).unwrap()
    }

    #[test]
    fn merges_by_rank_and_round_trips() {
        let t = toy();
        let ids = t.encode("abcab");
        assert_eq!(ids, [257, 256]);
        assert_eq!(t.decode(&ids), "abcab");
        let text = "x <|im_end|> héllo 42";
        assert_eq!(t.decode(&t.encode(text)), text);
        assert!(
            !t.encode(text).contains(&258),
            "control spelling stays text"
        );
        assert_eq!(t.special("<|im_end|>"), Some(258));
        assert_eq!(t.decode_with_specials(&[256, 258]), "ab<|im_end|>");
        assert_eq!(t.decode(&[256, 258]), "ab");
    }

    #[test]
    fn a_long_run_without_spaces_is_fast_enough() {
        let t = toy();
        let text = "ab".repeat(200_000);
        assert_eq!(t.encode(&text).len(), 200_000);
    }
}
