#!/usr/bin/env bash
# Natter's local model (candle) against llama.cpp on the same GGUF, same threads, same run.
#
#   bench/local-model/compare.sh [MODEL.gguf]
#
# LLAMA_PYTHON: a python with llama-cpp-python installed (default /tmp/llvenv/bin/python; see
# README.md). REPEATS (3), PROMPT_TOKENS (256), GEN_TOKENS (128), THREADS (2) as for both.
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:-${NATTER_MODEL_PATH:-$HOME/.cache/natter/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
python="${LLAMA_PYTHON:-/tmp/llvenv/bin/python}"
common=(--model "$model" --prompt-tokens "${PROMPT_TOKENS:-256}" --gen-tokens "${GEN_TOKENS:-128}" --repeats "${REPEATS:-3}")
export RAYON_NUM_THREADS="${THREADS:-2}"

out=$(mktemp)
# Alternate the engines so both see the same machine state.
"$python" bench/local-model/llama_cpp_reference.py "${common[@]}" --threads "${THREADS:-2}" | tee -a "$out"
cargo bench -q -p natter-local-model --bench generation -- "${common[@]}" 2>/dev/null | tee -a "$out"
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
PY
rm -f "$out"
