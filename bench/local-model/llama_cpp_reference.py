#!/usr/bin/env python3
"""llama.cpp reference numbers for the local model provider.

Measures, through llama-cpp-python, prompt-processing and generation throughput of a GGUF model
(SmolLM2-135M-Instruct Q4_1 in Natter) so the candle-based provider can be compared against
llama.cpp on the same machine in the same run. Optionally writes a tokenizer fixture (text ->
llama.cpp token ids) to check the provider's tokenizer against.

Needs only the standard library and `llama_cpp` (numpy comes with it). Not part of the product.
"""

import argparse
import ctypes
import json
import statistics
import sys
import time

import llama_cpp
import numpy as np

N_CTX = 2048
N_BATCH = 512
SEED = 1234

PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of "
    "salt and wind. Every evening the keeper climbed the spiral stairs, trimmed the wick, and "
    "watched the beam sweep across the dark water. Ships passed far out at sea, and sometimes a "
    "fishing boat came close enough that he could hear the crew laughing over the sound of the "
    "waves. He kept a notebook of every vessel he saw, writing down the time, the weather, and "
    "anything unusual about the way it moved. "
)

GEN_PROMPT = "<|im_start|>user\nTell me a short story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"

SPECIAL_CASE = "<|im_start|>user\nhi<|im_end|>\n"

FIXTURE_TEXTS = [
    # ASCII prose
    "Hello world",
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    PARAGRAPH.strip(),
    # spaces, newlines, tabs
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "multiple   spaces    between words",
    "   ",
    "line one\nline two\n\nline four",
    "\n\n\n",
    "tab\tseparated\tvalues",
    "\tindented with a tab",
    "mixed \t \n whitespace\r\nCRLF",
    # digits and numbers
    "12345 3.14",
    "1 22 333 4444 55555 666666 7777777",
    "Version 2.0.1 released on 2024-12-31 at 23:59:59, costs $1,299.99 (-15%).",
    "0x1F 1e-9 -42 +7",
    # accents and Latin scripts
    "café naïve Ångström",
    "Straße, Größe, Übermut",
    "résumé façade jalapeño coöperate",
    "Ça va? Où est la gare? Señor, ¿qué tal?",
    "Łódź Dvořák Ørsted Þórr",
    # CJK, Japanese, Korean
    "你好，世界",
    "こんにちは",
    "日本語のテキストと漢字、カタカナ。",
    "안녕하세요, 세계!",
    # Arabic, Hebrew, Cyrillic, Greek, Hindi
    "مرحبا بالعالم",
    "שלום עולם",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "नमस्ते दुनिया",
    # emoji, ZWJ sequences, flags, skin tones
    "😀",
    "I love pizza 🍕🍕!",
    "👩‍👩‍👧 🇫🇷",
    "👨‍💻 🏳️‍🌈 👍🏽 🇯🇵🇺🇸",
    "❤️‍🔥 and ✨ and ☕",
    # code
    'fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!("{:?}", x);\n}\n',
    "impl<'a> Foo<'a> {\n    pub fn bar(&self) -> Option<&'a str> {\n        self.inner.get(0).copied()\n    }\n}",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class A:\n\tdef __init__(self):\n\t\tself.x = {'a': [1, 2, 3]}\n",
    "    if (a && b || !c) { return a->b; } // comment",
    "x+=1;y-=2;z*=3;w/=4;v**=5",
    # contractions
    "don't I'll we've",
    "I'm sure they're here, it's fine, you'd know, she'll come, we'd've gone",
    "DON'T I'LL WE'VE",
    "rock 'n' roll, 'quoted', \"double quoted\"",
    # punctuation runs
    "!!! ... ???",
    "Wait...what?!?! No way!!!!",
    "-----===== ***** ##### @@@@@",
    "(([[{{<>}}]]))",
    "a,b;c:d.e!f?g",
    # URLs, emails, paths
    "https://example.com/path?query=1&b=two#frag",
    "Visit http://www.natter.dev/docs/getting-started.html or mail me at a.b@c.io",
    "/usr/local/bin/natter --config ./natter.toml",
    "C:\\Users\\name\\file.txt",
    # mixed
    "Mixed: English, 中文, русский, العربية, 😀 and code `let x = 1;`",
    "<|im_start|> looks special but special=False",
    "<b>bold</b> &amp; <i>italic</i>",
    "CamelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
    "a",
    " ",
    "\n",
]


def load(model_path, threads):
    return llama_cpp.Llama(
        model_path=model_path,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_threads=threads,
        n_threads_batch=threads,
        seed=SEED,
        logits_all=False,
        verbose=False,
    )


def clear_cache(llm):
    """Empty the KV cache and the wrapper's token count."""
    llm.reset()
    mem = llama_cpp.llama_get_memory(llm.ctx)
    if mem is not None:
        llama_cpp.llama_memory_clear(mem, True)


def last_logits_argmax(llm, n_vocab):
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
    return int(np.argmax(logits))


def prompt_ids(llm, n):
    reps = 1
    while True:
        ids = llm.tokenize((PARAGRAPH * reps).encode("utf-8"), add_bos=False, special=False)
        if len(ids) >= n:
            return ids[:n]
        reps *= 2


def run_pp(llm, ids):
    clear_cache(llm)
    t0 = time.perf_counter()
    llm.eval(ids)  # one batch: len(ids) <= n_batch
    llama_cpp.llama_synchronize(llm.ctx)
    dt = time.perf_counter() - t0
    return len(ids) / dt


def run_tg(llm, prompt, gen_tokens, n_vocab):
    clear_cache(llm)
    llm.eval(prompt)
    tok = last_logits_argmax(llm, n_vocab)
    spent = 0.0
    for _ in range(gen_tokens):
        t0 = time.perf_counter()
        llm.eval([tok])
        llama_cpp.llama_synchronize(llm.ctx)
        spent += time.perf_counter() - t0
        tok = last_logits_argmax(llm, n_vocab)  # greedy, EOS is not special-cased
    return gen_tokens / spent


def write_fixture(llm, out):
    cases = []
    for text in FIXTURE_TEXTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        cases.append({"text": text, "special": False, "ids": ids})
    ids = llm.tokenize(SPECIAL_CASE.encode("utf-8"), add_bos=False, special=True)
    cases.append({"text": SPECIAL_CASE, "special": True, "ids": ids})
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokenize-fixture", metavar="OUT.json",
                    help="also write a tokenizer fixture (text -> llama.cpp ids) to this file")
    ap.add_argument("--system-info", action="store_true",
                    help="print llama_print_system_info() to stderr")
    args = ap.parse_args()

    if not 1 <= args.prompt_tokens <= N_BATCH:
        ap.error(f"--prompt-tokens must be in 1..{N_BATCH} (one batch)")
    if args.repeats < 1 or args.gen_tokens < 1:
        ap.error("--repeats and --gen-tokens must be >= 1")

    llm = load(args.model, args.threads)
    if args.system_info:
        print(llama_cpp.llama_print_system_info().decode("utf-8", "replace"), file=sys.stderr)

    if args.tokenize_fixture:
        write_fixture(llm, args.tokenize_fixture)

    n_vocab = llm.n_vocab()
    pp_ids = prompt_ids(llm, args.prompt_tokens)
    gen_prompt = llm.tokenize(GEN_PROMPT.encode("utf-8"), add_bos=False, special=True)
    if len(gen_prompt) + args.gen_tokens > N_CTX:
        ap.error(f"--gen-tokens too large for n_ctx {N_CTX}")

    # Warm-up (not counted): page the weights in, let the backend allocate its buffers.
    run_pp(llm, pp_ids)
    run_tg(llm, gen_prompt, min(8, args.gen_tokens), n_vocab)

    pp_runs = [run_pp(llm, pp_ids) for _ in range(args.repeats)]
    tg_runs = [run_tg(llm, gen_prompt, args.gen_tokens, n_vocab) for _ in range(args.repeats)]

    print(json.dumps({
        "engine": "llama.cpp",
        "version": f"llama-cpp-python {llama_cpp.__version__}",
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "pp_tok_s": round(statistics.median(pp_runs), 2),
        "tg_tok_s": round(statistics.median(tg_runs), 2),
        "pp_runs": [round(x, 2) for x in pp_runs],
        "tg_runs": [round(x, 2) for x in tg_runs],
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
