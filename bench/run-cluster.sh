#!/usr/bin/env bash
# Streaming fan-out on natter as one node and as a cluster, the same load in one run:
#   a  one node, SQLite + the in-process bus (the default setup)
#   b  one node, PostgreSQL + Redis
#   c  NODES nodes (3), PostgreSQL + Redis; member k of every chat on node k mod NODES, so every
#      chat's tokens cross nodes through Redis (each chat's sender is on the first node)
#
#   bench/run-cluster.sh [extra natter-bench args…]
#
# Env: R (chats, 200), M (members per chat, 4), T (measured rounds, 10),
#      SCENARIO ("[fake:bench n=50]"), TIMEOUT_S (per configuration, 120) as run-fanout.sh;
#      CONFIGS (which of "a b c" to run, in order), NODES (nodes in c, 3),
#      PG (the PostgreSQL server, default postgres://postgres@127.0.0.1:5432; a database
#      natter_bench_<pid>_<config> is created for b and for c and dropped on exit),
#      PG_AUX (PostgreSQL's shared processes counted with the backends, "|"-separated,
#      default "walwriter|background writer|checkpointer|autovacuum launcher"; "" for none),
#      REDIS_PORT (default: a free port; never 6379 unless you say so), plus lib.sh's knobs
#      (NATTER_BIN, NATTER_ARGS, BENCH_BIN, FAKE_BIN, BUILD, KEEP).
# Rate limits and connection caps are switched off on every node (NATTER_NO_LIMITS in lib.sh).
# Prints each configuration's summary, then all RESULT lines and a table comparing them.
TARGETS=natter # lib.sh: build natter (release) unless BUILD=0; no Node baseline here
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

R=${R:-200}
M=${M:-4}
T=${T:-10}
SCENARIO=${SCENARIO:-"[fake:bench n=50]"}
TIMEOUT_S=${TIMEOUT_S:-120}
CONFIGS=${CONFIGS:-"a b c"}
NODES=${NODES:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PG=${PG%/}
PG_AUX=${PG_AUX-"walwriter|background writer|checkpointer|autovacuum launcher"}

NODE_PIDS=()
NODE_URLS=()
DATABASES=() # created here, dropped on exit
REDIS_PID=""
REDIS_URL=""

needs_cluster() { [[ " $CONFIGS " == *" b "* || " $CONFIGS " == *" c "* ]]; }

drop_databases() {
    local db
    for db in "${DATABASES[@]}"; do
        psql "$PG/postgres" -qAt -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $db"
    done
}
CLEANUP_HOOKS+=(drop_databases)

# create_database NAME: a fresh, empty database on $PG (dropped on exit).
create_database() {
    local name=$1
    DATABASES+=("$name")
    psql "$PG/postgres" -qAt -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 &&
        psql "$PG/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" >/dev/null
}

start_redis() {
    local port=${REDIS_PORT:-}
    if [[ -z $port ]]; then
        port=$(free_port) || { log "no free port for redis-server"; exit 1; }
    fi
    port_free "$port" || { log "port $port is taken; set REDIS_PORT"; exit 1; }
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        >"$WORK/redis.out" 2>&1 &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    for _ in $(seq 1 100); do
        [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
        kill -0 "$REDIS_PID" 2>/dev/null || { log "redis-server exited:"; cat "$WORK/redis.out" >&2; exit 1; }
        sleep 0.1
    done
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || { log "redis-server did not answer"; exit 1; }
    REDIS_URL=redis://127.0.0.1:$port/
    log "redis-server at $REDIS_URL (pid $REDIS_PID)"
}

# Waits up to ~60 s for GET $1/readyz to answer 200 while pid $2 lives.
wait_ready() {
    local url=$1 pid=$2 code
    for _ in $(seq 1 600); do
        code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$url/readyz" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_node NAME DATABASE [BUS]: one natter on a free port; appends to NODE_PIDS / NODE_URLS.
start_node() {
    local name=$1 database=$2 bus=${3:-} pid url
    local args=(serve --provider openai --openai-base-url "$FAKE_URL/v1"
        --listen 127.0.0.1:0 --database "$database" "${NATTER_NO_LIMITS[@]}")
    [[ -n $bus ]] && args+=(--bus "$bus")
    # shellcheck disable=SC2086 # NATTER_ARGS is a list of flags
    OPENAI_API_KEY=x "$NATTER_BIN" "${args[@]}" $NATTER_ARGS \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    STARTED+=("$pid")
    if ! url=$(wait_listening "$pid" "$WORK/$name.out" 600) || ! wait_ready "$url" "$pid"; then
        log "$name did not become ready; its stderr:"
        tail -n 20 "$WORK/$name.err" >&2 || true
        return 1
    fi
    log "$name at $url (pid $pid)"
    NODE_PIDS+=("$pid")
    NODE_URLS+=("$url")
}

stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        SERVER_PID=$pid
        stop_server
    done
    NODE_PIDS=()
    NODE_URLS=()
}

# start_config a|b|c: starts its nodes (and database); sets BENCH_ARGS and LABEL.
start_config() {
    local config=$1 db database i aux
    BENCH_ARGS=()
    case $config in
        a)
            LABEL=a-sqlite-memory-1node
            start_node a-node0 "sqlite://$WORK/bench.db" || return 1
            ;;
        b | c)
            local nodes=1
            [[ $config == c ]] && nodes=$NODES
            LABEL=$config-postgres-redis-${nodes}node
            [[ $nodes -gt 1 ]] && LABEL+=s
            db=natter_bench_$$_$config
            create_database "$db" || { log "could not create database $db"; return 1; }
            database=$PG/$db
            # Redis keeps nothing a run needs; start each configuration from an empty one.
            redis-cli -u "$REDIS_URL" flushall >/dev/null
            # One at a time: the first migrates the schema, the others find it.
            for ((i = 0; i < nodes; i++)); do
                start_node "$config-node$i" "$database" "$REDIS_URL" || return 1
            done
            BENCH_ARGS+=(--extra-pid "redis=$REDIS_PID" --redis "$REDIS_URL"
                --extra-procs "postgres=postgres:$db")
            local auxes=()
            [[ -n $PG_AUX ]] && IFS='|' read -r -a auxes <<<"$PG_AUX"
            for aux in "${auxes[@]}"; do
                BENCH_ARGS+=(--extra-procs "postgres=postgres:$aux")
            done
            ;;
        *)
            log "unknown configuration $config (known: a b c)"
            return 1
            ;;
    esac
    for i in "${!NODE_PIDS[@]}"; do
        BENCH_ARGS+=(--url "${NODE_URLS[$i]}" --pid "${NODE_PIDS[$i]}")
    done
}

# The table comparing the configurations, from their RESULT lines.
summary() {
    command -v jq >/dev/null || { log "jq is not installed: no summary table"; return 0; }
    # jq: a number with n decimals, "-" for null.
    local fmt='def f(n): if . == null then "-" else
        ((. * pow(10; n)) | round | tostring) as $s
        | (if ($s | length) <= n then ("0" * (n + 1 - ($s | length))) + $s else $s end) as $p
        | $p[0:($p | length) - n] + "." + $p[($p | length) - n:] end;'
    local results=()
    local config
    for config in $CONFIGS; do
        [[ -s $WORK/result-$config.txt ]] && results+=("$WORK/result-$config.txt")
    done
    [[ ${#results[@]} -gt 0 ]] || return 0
    sed -n 's/^RESULT //p' "${results[@]}" | jq -rs "$fmt"'
        def i: if . == null then "-" else (round | tostring) end;
        (map(select(.label | startswith("a-"))) | first) as $a
        | ["config", "nodes", "token events/s", "server core-s", "redis core-s", "postgres core-s",
           "events/server core-s", "events/core-s incl. redis+pg", "vs a", "p50 ms", "p99 ms",
           "redis ops/token", "errors"],
          (.[] | (.token_events_per_core_s_with_extra // .token_events_per_core_s) as $all
            | [.label, (.urls | length | tostring), (.token_events_per_s | i),
               (.server_cpu_s | f(2)), (.extra_cpu_s.redis | f(2)), (.extra_cpu_s.postgres | f(2)),
               (.token_events_per_core_s | i), ($all | i),
               (if $a == null or $all == null or $a.token_events_per_core_s == null then "-"
                else ($all / $a.token_events_per_core_s | f(2)) end),
               (.latency_ms.p50 | f(2)), (.latency_ms.p99 | f(2)),
               (.redis.ops_per_token_event | f(3)), (.errors | tostring)])
        | @tsv' | { if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi; }
    local ratio
    ratio=$(sed -n 's/^RESULT //p' "${results[@]}" | jq -rs "$fmt"'
        (map(select(.label | startswith("a-"))) | first) as $a
        | (map(select(.label | startswith("c-"))) | first) as $c
        | if $a == null or $c == null or $a.token_events_per_core_s == null
             or $c.token_events_per_core_s_with_extra == null then empty
          else "c / a, token events per core-second: \($c.token_events_per_core_s_with_extra / $a.token_events_per_core_s | f(2)) with Redis and PostgreSQL counted in c, \($c.token_events_per_core_s / $a.token_events_per_core_s | f(2)) counting the natter nodes alone" end')
    if [[ -n $ratio ]]; then echo "$ratio"; fi
}

if needs_cluster; then
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
        { log "redis-server / redis-cli are not installed (configurations b and c need them)"; exit 1; }
    command -v psql >/dev/null || { log "psql is not installed (configurations b and c need it)"; exit 1; }
    psql "$PG/postgres" -qAt -c 'SELECT 1' >/dev/null 2>&1 ||
        { log "PostgreSQL does not answer at $PG (set PG)"; exit 1; }
fi
build_all
[[ -x $NATTER_BIN ]] || { log "no natter binary at $NATTER_BIN"; exit 1; }
start_fake_upstream
needs_cluster && start_redis

for config in $CONFIGS; do
    if ! start_config "$config"; then
        log "configuration $config could not start; skipping it"
        stop_nodes
        continue
    fi
    log "fanout against $LABEL: R=$R M=$M T=$T scenario=$SCENARIO"
    "$BENCH" --mode fanout "${BENCH_ARGS[@]}" --label "$LABEL" \
        --chats "$R" --members "$M" --turns "$T" --scenario "$SCENARIO" \
        --timeout-s "$TIMEOUT_S" "$@" | tee "$WORK/result-$config.txt" ||
        log "natter-bench failed against $LABEL"
    stop_nodes
done
echo
grep -h '^RESULT ' "$WORK"/result-*.txt 2>/dev/null || log "no results"
echo
summary
