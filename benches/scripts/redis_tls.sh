#!/usr/bin/env bash
# What TLS costs on the Redis port, measured in one go: the leader of a
# 3-node `sampan-cluster --tls` (sync durability) over its plain port and
# its TLS port, beside one `redis-server --appendonly yes --appendfsync
# always` over its plain and TLS ports, with the same certificates
# (`sampan-cli certs`) and the same redis-benchmark flags, rounds
# interleaved. Prints a Markdown table of requests per second.
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
cleanup() {
    [ -n "${CLUSTER:-}" ] && kill "$CLUSTER" 2>/dev/null && wait "$CLUSTER" 2>/dev/null
    redis-cli -p 16379 shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"$BIN/sampan-cluster" --no-demo --tls --data-dir "$DIR/cluster" >"$DIR/cluster.out" 2>&1 &
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
CERTS="$DIR/cluster/certs"
TLS=(--tls --cacert "$CERTS/ca.pem" --cert "$CERTS/client-demo.pem" --key "$CERTS/client-demo.key")

mkdir -p "$DIR/redis"
redis-server --port 16379 --tls-port 16380 --dir "$DIR/redis" --save "" \
    --appendonly yes --appendfsync always --daemonize yes --logfile "$DIR/redis/log" \
    --tls-cert-file "$CERTS/node-1.pem" --tls-key-file "$CERTS/node-1.key" \
    --tls-ca-cert-file "$CERTS/ca.pem" >/dev/null
for _ in $(seq 1 20); do redis-cli -p 16379 PING >/dev/null 2>&1 && break; sleep 0.2; done

# bench NAME PORT TLS(0|1) PIPELINE -> "SET GET" requests/s
bench() {
    local extra=()
    [ "$3" = 1 ] && extra=("${TLS[@]}")
    redis-benchmark -p "$2" "${extra[@]}" -t set,get -n 200000 -c 50 -d 100 -r 100000 -P "$4" -q 2>/dev/null \
        | tr '\r' '\n' | awk '/^SET:/ {s=$2} /^GET:/ {g=$2} END {printf "%.0f %.0f\n", s, g}'
}

declare -A RES
for round in $(seq 1 "$ROUNDS"); do
    for p in 1 16; do
        for target in "sampan 638$LEADER 0" "sampan-tls 639$LEADER 1" "redis 16379 0" "redis-tls 16380 1"; do
            set -- $target
            r=$(bench "$1" "$2" "$3" "$p")
            RES["$1/$p/$round"]="$r"
            echo "round $round -P $p $1: $r (SET GET)" >&2
        done
    done
done

echo
echo "machine: $(nproc) cores, $(uname -sr), commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
echo
echo "| case | Sampan plain | Sampan TLS | TLS/plain | Redis plain | Redis TLS | TLS/plain |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for p in 1 16; do
    for i in 1 2; do
        op=$([ $i = 1 ] && echo SET || echo GET)
        row="| $op -P $p"
        for pair in "sampan sampan-tls" "redis redis-tls"; do
            set -- $pair
            a="" b="" ra=0 rb=0
            for round in $(seq 1 "$ROUNDS"); do
                x=$(echo "${RES[$1/$p/$round]}" | cut -d' ' -f$i)
                y=$(echo "${RES[$2/$p/$round]}" | cut -d' ' -f$i)
                a+="${a:+ · }$(awk -v v="$x" 'BEGIN{printf "%.1fk", v/1000}')"
                b+="${b:+ · }$(awk -v v="$y" 'BEGIN{printf "%.1fk", v/1000}')"
                ra=$(awk -v s="$ra" -v v="$x" 'BEGIN{print s+v}')
                rb=$(awk -v s="$rb" -v v="$y" 'BEGIN{print s+v}')
            done
            ratio=$(awk -v a="$ra" -v b="$rb" 'BEGIN{ if (a>0) printf "%.2f", b/a; else print "-" }')
            row+=" | $a | $b | $ratio"
        done
        echo "$row |"
    done
done
