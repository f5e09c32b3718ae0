#!/usr/bin/env bash
# Idle sockets: server memory per connection, Node baseline vs natter. Each target starts fresh.
#
#   bench/run-idle.sh [extra natter-bench args…]
#
# Env: N (sockets, 5000: issue 15's figure), M (members per chat, 4), HOLD_S (30), SETTLE_S (5),
#      TIMEOUT_S (per target, 120), plus lib.sh's knobs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-5000}
M=${M:-4}
HOLD_S=${HOLD_S:-30}
SETTLE_S=${SETTLE_S:-5}
TIMEOUT_S=${TIMEOUT_S:-120}

build_all
start_fake_upstream
for target in $TARGETS; do
    start_server "$target" || continue
    sleep 2 # let the fresh server settle before the "before" reading
    log "idle against $target: N=$N M=$M"
    "$BENCH" --mode idle --url "$SERVER_URL" --pid "$SERVER_PID" --label "$target" \
        --idle-connections "$N" --members "$M" --settle-s "$SETTLE_S" --hold-s "$HOLD_S" \
        --timeout-s "$TIMEOUT_S" "$@" | tee "$WORK/result-$target.txt" ||
        log "natter-bench failed against $target"
    stop_server
done
echo
grep -h '^RESULT ' "$WORK"/result-*.txt 2>/dev/null || log "no results"
