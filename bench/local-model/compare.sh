#!/usr/bin/env bash
# Natter's local model against llama.cpp itself: same GGUF, same threads, same llama.cpp
# source, engines alternating in one run. Prints Natter's prompt and generation tokens/s as
# ratios of llama.cpp's (issue 19 asks for ≥ 95 %).
#
#   bench/local-model/compare.sh [MODEL.gguf]
#
# THREADS ("1 2": one pass per count), PROMPT_TOKENS (256), GEN_TOKENS (128), REPEATS (3).
# NATTER_LLAMA_REFERENCE_DIR: where llama.cpp's reference is built (default
# ${TMPDIR:-/tmp}/natter-llama-reference, reused by later runs). Needs cmake and a C++
# compiler, as the workspace's build does.
#
# The reference: llama-cpp-sys-2 (the crate that builds llama.cpp for Natter's engine) ships
# llama.cpp's libraries but not llama-bench's source, so this script builds those libraries
# from the cargo registry's copy of the llama-cpp-sys-2 version in Cargo.lock, with the same
# GGML_* options as the workspace (.cargo/config.toml's [env], or the caller's GGML_*
# variables, which win there too), and links reference/bench.cpp, which runs llama-bench's pp
# and tg tests on llama.cpp's C API. Per thread count the order is: reference, Natter
# (`cargo bench -p natter-local-model --bench generation`), reference again.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# The per-user cache `natter model pull` fills: an absolute $XDG_CACHE_HOME, else ~/.cache.
cache="$HOME/.cache"
case "${XDG_CACHE_HOME:-}" in /*) cache="$XDG_CACHE_HOME" ;; esac
model="${1:-${NATTER_MODEL_PATH:-$cache/natter/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
if [ ! -f "$model" ]; then
    echo "compare.sh: no model at $model (run \`natter model pull\`, or pass a GGUF)" >&2
    exit 2
fi
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
threads_list="${THREADS:-1 2}"
prompt_tokens="${PROMPT_TOKENS:-256}"
gen_tokens="${GEN_TOKENS:-128}"
repeats="${REPEATS:-3}"

# GGML_* options: the caller's environment, else .cargo/config.toml's [env] table (exported,
# so cargo and cmake see the very same values).
if ! env | grep -q '^GGML_' && [ -f .cargo/config.toml ]; then
    while IFS='=' read -r key value; do
        export "$key=$value"
    done < <(sed -n '/^\[env\]/,/^\[/s/^\(GGML_[A-Z0-9_]*\) *= *"\([^"]*\)".*/\1=\2/p' .cargo/config.toml)
fi
ggml_defines=()
while IFS='=' read -r key value; do
    ggml_defines+=("-D$key=$value")
done < <(env | grep '^GGML_' | sort)

# llama.cpp's source, as llama-cpp-sys-2 in Cargo.lock ships it.
sys_version=$(awk '$0 == "name = \"llama-cpp-sys-2\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$sys_version" ]; then
    echo "compare.sh: Cargo.lock has no llama-cpp-sys-2" >&2
    exit 1
fi
registry="${CARGO_HOME:-$HOME/.cargo}/registry"
build_root="${NATTER_LLAMA_REFERENCE_DIR:-${TMPDIR:-/tmp}/natter-llama-reference}"
flags_id=$(printf '%s\n' "${ggml_defines[@]}" | sha256sum | cut -c1-12)
build_dir="$build_root/llama-cpp-sys-2-$sys_version-$flags_id"
src=$(ls -d "$registry"/src/*/"llama-cpp-sys-2-$sys_version" 2>/dev/null | head -n1 || true)
if [ -z "$src" ]; then
    crate=$(ls "$registry"/cache/*/"llama-cpp-sys-2-$sys_version.crate" 2>/dev/null | head -n1 || true)
    if [ -z "$crate" ]; then
        cargo fetch --locked
        crate=$(ls "$registry"/cache/*/"llama-cpp-sys-2-$sys_version.crate" | head -n1)
    fi
    # Unpacked beside the build, not into cargo's registry.
    mkdir -p "$build_root"
    tar -xzf "$crate" -C "$build_root"
    src="$build_root/llama-cpp-sys-2-$sys_version"
fi
reference="$build_dir/natter-llama-reference"
if [ ! -x "$reference" ]; then
    mkdir -p "$build_root"
    echo "building llama.cpp's reference from $src/llama.cpp into $build_dir (${ggml_defines[*]:-no GGML_* options})" >&2
    cmake -S bench/local-model/reference -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CPP_DIR="$src/llama.cpp" -DLLAMA_CPP_SOURCE="llama-cpp-sys-2 $sys_version" \
        -DGGML_NATIVE=OFF -DGGML_OPENMP=ON "${ggml_defines[@]}" >"$build_dir.cmake.log" 2>&1 ||
        { cat "$build_dir.cmake.log" >&2; exit 1; }
    cmake --build "$build_dir" --target natter-llama-reference -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        >"$build_dir.build.log" 2>&1 || { tail -50 "$build_dir.build.log" >&2; exit 1; }
fi

# Natter's bench, built before anything is timed.
features=()
if grep -q '^llama-cpp *=' crates/natter-local-model/Cargo.toml; then
    features=(--features llama-cpp)
fi
bench=(cargo bench -q -p natter-local-model "${features[@]}" --bench generation)
"${bench[@]}" --no-run
bench_args=(--model "$model" --prompt-tokens "$prompt_tokens" --gen-tokens "$gen_tokens" --repeats "$repeats")

out=$(mktemp)
log=$(mktemp)
trap 'rm -f "$out" "$log"' EXIT
echo "load before: $(uptime)" >&2
for threads in $threads_list; do
    run_reference() {
        "$reference" "${bench_args[@]}" --threads "$threads" | tee -a "$out"
    }
    run_reference
    # The candle engine, where a checkout still has it, is not measured.
    THREADS=$threads NATTER_BENCH_SKIP_CANDLE=1 "${bench[@]}" -- "${bench_args[@]}" 2>"$log" | tee -a "$out" ||
        { cat "$log" >&2; exit 1; }
    run_reference
done
echo "load after: $(uptime)" >&2

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for threads in sorted({r["threads"] for r in rows}):
    ref = [r for r in rows if r["threads"] == threads and r["engine"] == "llama.cpp"]
    ours = [r for r in rows if r["threads"] == threads and r["engine"] != "llama.cpp"]
    pp_ref = statistics.median(r["pp_tok_s"] for r in ref)
    tg_ref = statistics.median(r["tg_tok_s"] for r in ref)
    print(f"\n{threads} thread(s). llama.cpp (median of {len(ref)} runs): prompt {pp_ref:.1f} tok/s,"
          f" generation {tg_ref:.1f} tok/s")
    for r in ours:
        print(f'  {r["weights"]:32} prompt {r["pp_tok_s"]:7.1f} tok/s ({r["pp_tok_s"]/pp_ref:4.0%}),'
              f' generation {r["tg_tok_s"]:6.1f} tok/s ({r["tg_tok_s"]/tg_ref:4.0%} of llama.cpp)')
        if "generate_tok_s" in r:
            print(f'  {"  its generate() loop":32} generation {r["generate_tok_s"]:6.1f} tok/s'
                  f' ({r["generate_tok_s"]/tg_ref:4.0%}; sampler, repeat penalty, UTF-8 stream)')
PY
