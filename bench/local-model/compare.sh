#!/usr/bin/env bash
# Natter's local model (its llama.cpp engine, then candle) against llama.cpp through Python on
# the same GGUF, same threads, same run.
#
#   bench/local-model/compare.sh [MODEL.gguf]
#
# LLAMA_PYTHON: a python with llama-cpp-python installed (default /tmp/llvenv/bin/python; see
# README.md). REPEATS (3), PROMPT_TOKENS (256), GEN_TOKENS (128), THREADS (2) as for both.
# ENGINES: `llama-cpp` (default: Natter's llama.cpp engine and candle) or `candle` (candle only,
# no C++ build).
set -euo pipefail
cd "$(dirname "$0")/../.."
# The per-user cache `natter model pull` fills: an absolute $XDG_CACHE_HOME, else ~/.cache.
cache="$HOME/.cache"
case "${XDG_CACHE_HOME:-}" in /*) cache="$XDG_CACHE_HOME" ;; esac
model="${1:-${NATTER_MODEL_PATH:-$cache/natter/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
python="${LLAMA_PYTHON:-/tmp/llvenv/bin/python}"
common=(--model "$model" --prompt-tokens "${PROMPT_TOKENS:-256}" --gen-tokens "${GEN_TOKENS:-128}" --repeats "${REPEATS:-3}")
export RAYON_NUM_THREADS="${THREADS:-2}" THREADS="${THREADS:-2}"
features=()
if [ "${ENGINES:-llama-cpp}" = llama-cpp ]; then
    features=(--features llama-cpp)
    # llama.cpp's SIMD level comes from these (see crates/natter-local-model/README.md):
    # x86-64-v3 unless the caller chose.
    if [ "$(uname -m)" = x86_64 ] && ! env | grep -q '^GGML_'; then
        export GGML_AVX=ON GGML_AVX2=ON GGML_FMA=ON GGML_F16C=ON GGML_BMI2=ON GGML_SSE42=ON
    fi
fi

out=$(mktemp)
# Alternate the engines so both see the same machine state.
"$python" bench/local-model/llama_cpp_reference.py "${common[@]}" --threads "${THREADS:-2}" | tee -a "$out"
cargo bench -q -p natter-local-model "${features[@]}" --bench generation -- "${common[@]}" 2>/dev/null | tee -a "$out"
"$python" bench/local-model/llama_cpp_reference.py "${common[@]}" --threads "${THREADS:-2}" | tee -a "$out"

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ref = [r for r in rows if r["engine"] == "llama.cpp"]
pp_ref = statistics.median(r["pp_tok_s"] for r in ref)
tg_ref = statistics.median(r["tg_tok_s"] for r in ref)
print(f"\nllama.cpp (median of {len(ref)} runs): prompt {pp_ref:.1f} tok/s, generation {tg_ref:.1f} tok/s")
for r in rows:
    if r["engine"] != "llama.cpp":
        print(f'{r["weights"]:28} prompt {r["pp_tok_s"]:7.1f} tok/s ({r["pp_tok_s"]/pp_ref:5.0%}),'
              f' generation {r["tg_tok_s"]:6.1f} tok/s ({r["tg_tok_s"]/tg_ref:5.0%} of llama.cpp)')
        if "generate_tok_s" in r:
            print(f'{"  its generate() loop":28} generation {r["generate_tok_s"]:6.1f} tok/s'
                  f' ({r["generate_tok_s"]/tg_ref:5.0%}; sampler, repeat penalty, UTF-8 stream)')
PY
rm -f "$out"
