# Shared by bench/run-*.sh: builds the tools, starts the fake upstream and the servers under
# test, and kills everything it started when the calling script exits. Source it; don't run it.
#
# Env knobs (all optional):
#   TARGETS        servers to measure, in order (default "node natter"); natter is skipped with
#                  a message when its binary can't be built or found
#   NATTER_ARGS    extra flags for natter serve (e.g. "--merge-delta-bytes 0")
#   NATTER_BIN     a prebuilt natter binary (default: target/release/natter, built if possible)
#   NODE_PORT      port of the Node baseline (default 4100)
#   NATTER_PORT    port of natter (default 4200)
#   BUILD=0        don't run cargo/npm, use what is already built
#   KEEP=1         keep the scratch directory (logs, sqlite db) instead of deleting it
#   BENCH_BIN      a prebuilt natter-bench (default: target/release/natter-bench)
#   FAKE_BIN       a prebuilt natter-fake-upstream (default: target/release/natter-fake-upstream)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGETS=${TARGETS:-"node natter"}
NODE_PORT=${NODE_PORT:-4100}
NATTER_PORT=${NATTER_PORT:-4200}
NATTER_BIN=${NATTER_BIN:-$ROOT/target/release/natter}
NATTER_ARGS=${NATTER_ARGS:-}
BENCH=${BENCH_BIN:-$ROOT/target/release/natter-bench}
FAKE_BIN=${FAKE_BIN:-$ROOT/target/release/natter-fake-upstream}
WORK=$(mktemp -d /tmp/natter-bench.XXXXXX)
STARTED=()      # pids this script started, killed on exit
CLEANUP_HOOKS=() # commands run on exit once those are gone (e.g. dropping a database)
# natter serve flags that switch off its per-connection/user/IP rate limits and connection caps
# (the bench drives every socket from one address, and each sender far above a human's rate).
NATTER_NO_LIMITS=(--message-rate-per-connection 0 --message-rate-per-user 0
    --message-rate-per-ip 0 --turn-rate-per-connection 0 --turn-rate-per-user 0
    --turn-rate-per-ip 0 --max-connections-per-user 0 --max-connections-per-ip 0)
SERVER_PID=""
SERVER_URL=""

log() { printf '[bench] %s\n' "$*" >&2; }

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        # Give each a moment to exit, then insist.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    local hook
    for hook in "${CLEANUP_HOOKS[@]}"; do
        $hook || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds natter-bench and the fake upstream (required) and natter (optional).
build_all() {
    if [[ ${BUILD:-1} == 1 ]]; then
        log "building natter-bench and natter-fake-upstream (release)"
        (cd "$ROOT" && cargo build --release -q -p natter-bench -p natter-fake-upstream)
        if [[ " $TARGETS " == *" natter "* && $NATTER_BIN == "$ROOT/target/release/natter" ]]; then
            log "building natter (release); failure only skips natter"
            (cd "$ROOT" && cargo build --release -q -p natter) >"$WORK/natter-build.log" 2>&1 ||
                log "natter did not build (see the build log with KEEP=1); skipping it"
        fi
        if [[ " $TARGETS " == *" node "* && ! -d $ROOT/bench/node-baseline/node_modules ]]; then
            log "installing the Node baseline's packages (npm ci)"
            (cd "$ROOT/bench/node-baseline" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    fi
    [[ -x $BENCH && -x $FAKE_BIN ]] || { log "natter-bench / natter-fake-upstream not built"; exit 1; }
}

# Waits until $1 (a pid) prints "listening on http://…" into file $2; echoes the URL. $3: how
# many tenths of a second to wait (default 100).
wait_listening() {
    local pid=$1 file=$2 url=""
    for _ in $(seq 1 "${3:-100}"); do
        url=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$file" | head -n1)
        [[ -n $url ]] && { echo "$url"; return 0; }
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Waits until $1 answers HTTP at all (GET /healthz; any status will do) for up to ~30 s while
# pid $2 lives.
wait_healthy() {
    local url=$1 pid=$2 code
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$url/healthz" 2>/dev/null || true)
        [[ -n $code && $code != 000 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_fake_upstream() {
    "$FAKE_BIN" --listen 127.0.0.1:0 >"$WORK/fake.out" 2>"$WORK/fake.err" &
    local pid=$!
    STARTED+=("$pid")
    FAKE_URL=$(wait_listening "$pid" "$WORK/fake.out") || {
        log "fake upstream did not start:"; cat "$WORK/fake.err" >&2; exit 1; }
    log "fake upstream at $FAKE_URL (pid $pid)"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Echoes a port on 127.0.0.1 nothing listens on now (random, 20000–59999).
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        port_free "$p" && { echo "$p"; return 0; }
    done
    return 1
}

# start_server node|natter: sets SERVER_PID and SERVER_URL; returns 1 if the target can't run.
start_server() {
    local target=$1
    case $target in
        node)
            port_free "$NODE_PORT" || { log "port $NODE_PORT is taken; set NODE_PORT"; return 1; }
            PORT=$NODE_PORT HOST=127.0.0.1 OPENAI_BASE_URL=$FAKE_URL/v1 OPENAI_API_KEY=x \
                node "$ROOT/bench/node-baseline/server.js" >"$WORK/node.out" 2>"$WORK/node.err" &
            SERVER_PID=$!
            SERVER_URL=http://127.0.0.1:$NODE_PORT
            ;;
        natter)
            if [[ ! -x $NATTER_BIN ]]; then
                log "no natter binary at $NATTER_BIN; skipping natter"
                return 1
            fi
            port_free "$NATTER_PORT" || { log "port $NATTER_PORT is taken; set NATTER_PORT"; return 1; }
            OPENAI_API_KEY=x "$NATTER_BIN" serve --provider openai \
                --openai-base-url "$FAKE_URL/v1" \
                --listen "127.0.0.1:$NATTER_PORT" \
                --database "sqlite://$WORK/bench.db" "${NATTER_NO_LIMITS[@]}" \
                $NATTER_ARGS >"$WORK/natter.out" 2>"$WORK/natter.err" &
            SERVER_PID=$!
            SERVER_URL=http://127.0.0.1:$NATTER_PORT
            ;;
        *)
            log "unknown target $target (known: node natter)"
            return 1
            ;;
    esac
    STARTED+=("$SERVER_PID")
    if ! wait_healthy "$SERVER_URL" "$SERVER_PID"; then
        log "$target did not become healthy at $SERVER_URL; its stderr:"
        tail -n 20 "$WORK/$target.err" >&2 || true
        stop_server
        return 1
    fi
    log "$target at $SERVER_URL (pid $SERVER_PID)"
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 25); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
