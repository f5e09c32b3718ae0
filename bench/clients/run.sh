#!/usr/bin/env bash
# Client SDK benchmark: stock socket.io-client (the baseline), @natter/client's AIChatSocket and
# natter-client's AiChatSocket (Rust) each receive the same turns from one natter, alternating.
# See README.md beside this file for what is measured and how to read it.
#
#   bench/clients/run.sh
#
# Env: SIZES (tokens per turn, "20000,2000"), REPS (measured rounds, 5), CLIENTS
#      ("baseline,sdk,rust"), MERGE_DELTA_BYTES (natter's --merge-delta-bytes, 0: one event per
#      token), TIMEOUT_S (per client run, 120), OUT (JSON of every run; default in the scratch
#      dir), plus ../lib.sh's BUILD=0 (use what is built), KEEP=1 (keep logs), NATTER_ARGS.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

HERE=$ROOT/bench/clients
SIZES=${SIZES:-20000,2000}
REPS=${REPS:-5}
CLIENTS=${CLIENTS:-baseline,sdk,rust}
MERGE_DELTA_BYTES=${MERGE_DELTA_BYTES:-0}
TIMEOUT_S=${TIMEOUT_S:-120}
OUT=${OUT:-$WORK/clients.json}
RUST_CLIENT=$ROOT/target/release/examples/bench_receive
SDK_DIST=$ROOT/sdk/typescript/dist/src/index.js

if [[ ${BUILD:-1} == 1 ]]; then
    log "building natter, natter-fake-upstream and the bench_receive example (release)"
    (cd "$ROOT" && cargo build --release -q -p natter --bin natter -p natter-fake-upstream --bin natter-fake-upstream \
        -p natter-client --example bench_receive)
    if [[ ! -d $ROOT/sdk/typescript/node_modules ]]; then
        log "installing @natter/client's packages (npm ci)"
        (cd "$ROOT/sdk/typescript" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    log "building @natter/client (npm run build)"
    (cd "$ROOT/sdk/typescript" && npm run build --silent)
    if [[ ! -d $HERE/node_modules ]]; then
        log "installing the baseline's socket.io-client (npm ci)"
        (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
for f in "$NATTER_BIN" "$FAKE_BIN" "$RUST_CLIENT"; do
    [[ -x $f ]] || { log "missing $f (run without BUILD=0)"; exit 1; }
done
[[ -f $SDK_DIST ]] || { log "missing $SDK_DIST (run without BUILD=0)"; exit 1; }
[[ -d $HERE/node_modules ]] || { log "missing $HERE/node_modules (run without BUILD=0)"; exit 1; }

start_fake_upstream
FAKE_PID=${STARTED[-1]}

# The flags of tests/interop/lib/harness.mjs's startNatter: rate limits off (the bench sends a
# burst of turns from one user and address), relaxed SQLite durability. Port 0: a free one.
NATTER_LOG=${NATTER_LOG:-warn} OPENAI_API_KEY=x "$NATTER_BIN" serve \
    --listen 127.0.0.1:0 \
    --database "sqlite://$WORK/clients.db" --sqlite-durability normal \
    --provider openai --openai-base-url "$FAKE_URL/v1" --model fake-model \
    --message-rate-per-connection 0 --message-rate-per-user 0 --message-rate-per-ip 0 \
    --turn-rate-per-connection 0 --turn-rate-per-user 0 --turn-rate-per-ip 0 \
    --merge-delta-bytes "$MERGE_DELTA_BYTES" \
    $NATTER_ARGS >"$WORK/natter.out" 2>"$WORK/natter.err" &
SERVER_PID=$!
STARTED+=("$SERVER_PID")
SERVER_URL=$(wait_listening "$SERVER_PID" "$WORK/natter.out") || {
    log "natter did not start:"; tail -n 20 "$WORK/natter.err" >&2; exit 1; }
log "natter at $SERVER_URL (pid $SERVER_PID), --merge-delta-bytes $MERGE_DELTA_BYTES"

node "$HERE/run.mjs" --url "$SERVER_URL" --server-pid "$SERVER_PID" --upstream-pid "$FAKE_PID" \
    --rust-bin "$RUST_CLIENT" --sizes "$SIZES" --reps "$REPS" --clients "$CLIENTS" \
    --timeout-s "$TIMEOUT_S" --out "$OUT"
if [[ ${KEEP:-0} != 1 && $OUT == "$WORK"/* ]]; then
    log "(the per-run JSON is deleted with the scratch dir; set KEEP=1 or OUT=… to keep it)"
fi
