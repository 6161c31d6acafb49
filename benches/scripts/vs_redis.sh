#!/usr/bin/env bash
# Sampan against Redis, measured the same way in one go: SET and GET, 50
# connections, 1 and 16 requests in flight per connection, 100-byte
# values over 100,000 keys, each for SECONDS (default 30) after a 3 s
# warm-up, with `sampan-bench run` against
#   - a fresh 3-node Sampan cluster (sync durability: fdatasync on a
#     quorum before the reply), started and stopped by sampan-bench;
#   - one `redis-server --appendonly yes --appendfsync always`;
#   - one `redis-server --appendonly yes --appendfsync everysec`;
# then `sampan-bench compare` tables (ops/s, latency, CPU and disk per
# op). Then the same cases with redis-benchmark against the leader of a
# `sampan-cluster` (group 1: sync) and the two redis-servers, beside
# sampan-bench's ops/s, so the two tools can be checked against each other.
#
#   bash benches/scripts/vs_redis.sh [SECONDS]
#
# Results (JSON and SVG per run) go to $OUT (default
# bench-vs-redis-<time>/); RB_REQUESTS sets redis-benchmark's -n
# (default 200000).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-30}"
RB_REQUESTS="${RB_REQUESTS:-200000}"
OUT="${OUT:-bench-vs-redis-$(date -u +%Y%m%d-%H%M%S)}"
case "$SECS" in '' | *[!0-9]*) echo "SECONDS must be a whole number, not '$SECS'"; exit 2 ;; esac
for tool in redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools; do
    command -v "${tool%%:*}" >/dev/null || {
        echo "needs ${tool%%:*} (Debian/Ubuntu: apt-get install ${tool#*:})"
        exit 2
    }
done
cargo build --release -q -p sampan-demos -p sampan-benches
BIN=target/release
mkdir -p "$OUT"
DIR=$(mktemp -d /tmp/sampan-vs-redis.XXXXXX)
CLUSTER=""
PORTS=()
cleanup() {
    if [ -n "$CLUSTER" ]; then kill "$CLUSTER" 2>/dev/null || true; wait "$CLUSTER" 2>/dev/null || true; fi
    for p in "${PORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

# free_port FROM: the first port from FROM on that nothing listens on.
free_port() {
    local p=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
    echo "$p"
}

# start_redis NAME FSYNC: starts a redis-server with an AOF fsynced
# FSYNC (always|everysec) in $DIR/NAME; sets PORT and PID.
start_redis() {
    local d="$DIR/$1"
    mkdir -p "$d"
    PORT=$(free_port $((17379 + ${#PORTS[@]} * 10)))
    redis-server --port "$PORT" --bind 127.0.0.1 --dir "$d" --save "" \
        --appendonly yes --appendfsync "$2" --daemonize yes \
        --logfile "$d/log" --pidfile "$d/redis.pid" >/dev/null
    PORTS+=("$PORT")
    for _ in $(seq 1 50); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$PORT" PING >/dev/null || { cat "$d/log"; exit 1; }
    for _ in $(seq 1 50); do [ -s "$d/redis.pid" ] && break; sleep 0.1; done
    PID=$(cat "$d/redis.pid")
}
start_redis always always
ALWAYS_PORT=$PORT ALWAYS_PID=$PID
start_redis everysec everysec
EVERYSEC_PORT=$PORT EVERYSEC_PID=$PID

COMMON=(-c 50 -d 100 -r 100000 --duration-secs "$SECS" --warmup-secs 3 --quiet)
# bench NAME WORKLOAD P [TARGET ARGS...]: one sampan-bench run into $OUT.
bench() {
    local name=$1 w=$2 p=$3
    shift 3
    echo "== $name: $w -P $p, $SECS s" >&2
    "$BIN/sampan-bench" run --workload "$w" -P "$p" "${COMMON[@]}" \
        --label "$name" --out "$OUT/$name-$w-P$p.json" "$@" >"$OUT/$name-$w-P$p.txt"
}
for w in set get; do
    for p in 1 16; do
        bench sampan "$w" "$p" --durability sync
        bench redis-always "$w" "$p" --addr "127.0.0.1:$ALWAYS_PORT" --pids "$ALWAYS_PID" --disk-of "$DIR/always"
        bench redis-everysec "$w" "$p" --addr "127.0.0.1:$EVERYSEC_PORT" --pids "$EVERYSEC_PID" --disk-of "$DIR/everysec"
    done
done

# ops NAME W P: sampan-bench's ops/s of a run.
ops() { sed -n 's/.*"ops_per_sec": \([0-9]*\).*/\1/p' "$OUT/$1-$2-P$3.json" | head -1; }
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ); results in $OUT/"
for w in set get; do
    for p in 1 16; do
        echo
        echo "### $w, 50 connections, -P $p, $SECS s"
        echo
        "$BIN/sampan-bench" compare "$OUT/sampan-$w-P$p.json" "$OUT/redis-always-$w-P$p.json" \
            "$OUT/redis-everysec-$w-P$p.json" | sed '/^- /d'
    done
done

# redis-benchmark against the leader of group 1 of a sampan-cluster.
"$BIN/sampan-cluster" --no-demo --data-dir "$DIR/cluster" >"$DIR/cluster.out" 2>&1 &
CLUSTER=$!
for _ in $(seq 1 120); do grep -q "cluster is up" "$DIR/cluster.out" && break; sleep 0.5; done
grep -q "cluster is up" "$DIR/cluster.out" || { cat "$DIR/cluster.out"; exit 1; }
LEADER=""
for _ in $(seq 1 60); do
    for n in 1 2 3; do
        if redis-cli -p "638$n" INFO replication 2>/dev/null | grep -q "role:master"; then LEADER="638$n"; fi
    done
    [ -n "$LEADER" ] && break
    sleep 0.5
done
[ -n "$LEADER" ] || { echo "sampan-cluster: no leader of group 1"; exit 1; }

# rb PORT P -> "SET GET" requests/s ("failed failed" if redis-benchmark
# failed; its message goes to stderr and the other cases still run).
rb() {
    local out
    if ! out=$(redis-benchmark -p "$1" -t set,get -n "$RB_REQUESTS" -c 50 -d 100 -r 100000 -P "$2" -q 2>&1); then
        echo "redis-benchmark -p $1 -P $2 failed: $(echo "$out" | tr '\r' '\n' | grep -v '^ *$' | tail -1)" >&2
        echo "failed failed"
        return
    fi
    echo "$out" | tr '\r' '\n' | awk '/^SET:/ {s=$2} /^GET:/ {g=$2} END {printf "%.0f %.0f\n", s, g}'
}
declare -A RB
for p in 1 16; do
    for t in sampan:$LEADER redis-always:$ALWAYS_PORT redis-everysec:$EVERYSEC_PORT; do
        echo "== redis-benchmark: ${t%%:*} -P $p" >&2
        RB["${t%%:*}/$p"]=$(rb "${t#*:}" "$p")
    done
done
kill "$CLUSTER" 2>/dev/null || true
wait "$CLUSTER" 2>/dev/null || true
CLUSTER=""

echo
echo "### The two tools: requests/s (redis-benchmark -n $RB_REQUESTS -c 50 -d 100 -r 100000)"
echo
echo "| case | tool | Sampan (sync) | Redis always | Redis everysec |"
echo "|---|---|---:|---:|---:|"
for p in 1 16; do
    for f in 1 2; do
        w=$([ $f = 1 ] && echo set || echo get)
        W=$(echo "$w" | tr a-z A-Z)
        echo "| $W -P $p | sampan-bench | $(ops sampan "$w" "$p") | $(ops redis-always "$w" "$p") | $(ops redis-everysec "$w" "$p") |"
        echo "| $W -P $p | redis-benchmark | $(echo "${RB[sampan/$p]}" | cut -d' ' -f$f) | $(echo "${RB[redis-always/$p]}" | cut -d' ' -f$f) | $(echo "${RB[redis-everysec/$p]}" | cut -d' ' -f$f) |"
    done
done
echo
echo "sampan-bench keeps -P requests in flight on each connection (a new one as each reply"
echo "comes); redis-benchmark sends -P, waits for all -P replies, then sends again."
