#!/usr/bin/env bash
# Streaming fan-out: the same load against the Node baseline and against natter.
#
#   bench/run-fanout.sh [extra natter-bench args…]
#
# Env: R (chats, 200), M (members per chat, 4), T (measured rounds, 10),
#      SCENARIO ("[fake:bench n=50]"), TIMEOUT_S (per target, 120), plus lib.sh's knobs
#      (TARGETS, NATTER_BIN, NODE_PORT, NATTER_PORT, BUILD, KEEP).
# Prints each target's summary, then all RESULT lines together at the end.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

R=${R:-200}
M=${M:-4}
T=${T:-10}
SCENARIO=${SCENARIO:-"[fake:bench n=50]"}
TIMEOUT_S=${TIMEOUT_S:-120}

build_all
start_fake_upstream
for target in $TARGETS; do
    start_server "$target" || continue
    log "fanout against $target: R=$R M=$M T=$T scenario=$SCENARIO"
    "$BENCH" --mode fanout --url "$SERVER_URL" --pid "$SERVER_PID" --label "$target" \
        --chats "$R" --members "$M" --turns "$T" --scenario "$SCENARIO" \
        --timeout-s "$TIMEOUT_S" "$@" | tee "$WORK/result-$target.txt" ||
        log "natter-bench failed against $target"
    stop_server
done
echo
grep -h '^RESULT ' "$WORK"/result-*.txt 2>/dev/null || log "no results"
