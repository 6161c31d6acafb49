#!/usr/bin/env bash
# What TLS costs, measured in one go: the leader of group 1 of a 3-node
# `sampan-cluster` (sync durability) with no TLS, then of
# `sampan-cluster --tls` (mutual TLS between nodes and on the service
# ports) over its plain Redis port and its TLS Redis port; beside one
# `redis-server --appendonly yes --appendfsync always` over its plain and
# TLS ports (certificates from `sampan-cli certs`), with the same
# redis-benchmark flags, round after round. Prints a Markdown table of
# requests per second; "ratio" is all-TLS over no-TLS.
#
#   bash benches/scripts/redis_tls.sh [ROUNDS]     # default 2
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-2}"
for tool in redis-benchmark redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: redis-tools, redis-server)"; exit 2; }
done
cargo build --release -q -p sampan-demos
BIN=target/release
DIR=$(mktemp -d /tmp/sampan-tls-bench.XXXXXX)
CLUSTER=""
cleanup() {
    [ -n "$CLUSTER" ] && kill "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null
    redis-cli -p 16379 shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

# start_cluster [--tls]: starts sampan-cluster, sets CLUSTER and LEADER.
start_cluster() {
    rm -rf "$DIR/cluster"
    "$BIN/sampan-cluster" --no-demo "$@" --data-dir "$DIR/cluster" >"$DIR/cluster.out" 2>&1 &
    CLUSTER=$!
    for _ in $(seq 1 120); do grep -q "cluster is up" "$DIR/cluster.out" && break; sleep 0.5; done
    grep -q "cluster is up" "$DIR/cluster.out" || { cat "$DIR/cluster.out"; exit 1; }
    LEADER=""
    for _ in $(seq 1 60); do
        for n in 1 2 3; do
            if redis-cli -p "638$n" INFO replication 2>/dev/null | grep -q "role:master"; then LEADER=$n; fi
        done
        [ -n "$LEADER" ] && break
        sleep 0.5
    done
    [ -n "$LEADER" ] || { echo "no leader of group 1"; exit 1; }
}
stop_cluster() {
    kill "$CLUSTER" 2>/dev/null; wait "$CLUSTER" 2>/dev/null || true
    CLUSTER=""
}

# Certificates for redis-server (and the TLS cluster makes its own).
"$BIN/sampan-cli" certs --out "$DIR/certs" --nodes 1 --clients demo >/dev/null
CERTS="$DIR/certs"
TLS=(--tls --cacert "$CERTS/ca.pem" --cert "$CERTS/client-demo.pem" --key "$CERTS/client-demo.key")

mkdir -p "$DIR/redis"
redis-server --port 16379 --tls-port 16380 --dir "$DIR/redis" --save "" \
    --appendonly yes --appendfsync always --daemonize yes --logfile "$DIR/redis/log" \
    --tls-cert-file "$CERTS/node-1.pem" --tls-key-file "$CERTS/node-1.key" \
    --tls-ca-cert-file "$CERTS/ca.pem" >/dev/null
for _ in $(seq 1 20); do redis-cli -p 16379 PING >/dev/null 2>&1 && break; sleep 0.2; done

# bench PORT TLS(0|1) PIPELINE [CERT_DIR] -> "SET GET" requests/s
bench() {
    local extra=()
    if [ "$2" = 1 ]; then
        local d="${4:-$CERTS}"
        extra=(--tls --cacert "$d/ca.pem" --cert "$d/client-demo.pem" --key "$d/client-demo.key")
    fi
    redis-benchmark -p "$1" "${extra[@]}" -t set,get -n 200000 -c 50 -d 100 -r 100000 -P "$3" -q 2>/dev/null \
        | tr '\r' '\n' | awk '/^SET:/ {s=$2} /^GET:/ {g=$2} END {printf "%.0f %.0f\n", s, g}'
}

declare -A RES
record() { RES["$1/$2/$3"]="$4"; echo "round $3 -P $2 $1: $4 (SET GET)" >&2; }
for round in $(seq 1 "$ROUNDS"); do
    start_cluster
    for p in 1 16; do record plain "$p" "$round" "$(bench "638$LEADER" 0 "$p")"; done
    stop_cluster
    start_cluster --tls
    for p in 1 16; do
        record peers-tls "$p" "$round" "$(bench "638$LEADER" 0 "$p")"
        record all-tls "$p" "$round" "$(bench "639$LEADER" 1 "$p" "$DIR/cluster/certs")"
    done
    stop_cluster
    for p in 1 16; do
        record redis "$p" "$round" "$(bench 16379 0 "$p")"
        record redis-tls "$p" "$round" "$(bench 16380 1 "$p")"
    done
done

k() { awk -v v="$1" 'BEGIN{printf "%.1fk", v/1000}'; }
# cell NAME P FIELD -> "a · b|SUM"
cell() {
    local out="" x sum=0
    for round in $(seq 1 "$ROUNDS"); do
        x=$(echo "${RES[$1/$2/$round]}" | cut -d' ' -f"$3")
        out+="${out:+ · }$(k "$x")"
        sum=$(awk -v s="$sum" -v v="$x" 'BEGIN{print s+v}')
    done
    echo "$out|$sum"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a>0) printf "%.2f", b/a; else print "-" }'; }

echo
echo "machine: $(nproc) cores, $(uname -sr), commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
echo
echo "| case | Sampan, no TLS | TLS between nodes | and to clients | ratio | Redis | Redis TLS | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for p in 1 16; do
    for f in 1 2; do
        op=$([ $f = 1 ] && echo SET || echo GET)
        IFS='|' read -r a sa <<<"$(cell plain $p $f)"
        IFS='|' read -r b _ <<<"$(cell peers-tls $p $f)"
        IFS='|' read -r c sc <<<"$(cell all-tls $p $f)"
        IFS='|' read -r d sd <<<"$(cell redis $p $f)"
        IFS='|' read -r e se <<<"$(cell redis-tls $p $f)"
        echo "| $op -P $p | $a | $b | $c | $(ratio "$sa" "$sc") | $d | $e | $(ratio "$sd" "$se") |"
    done
done
