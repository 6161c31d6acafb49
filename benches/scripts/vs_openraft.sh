#!/usr/bin/env bash
# Sampan against OpenRaft in OpenRaft's `benchmarks/minimal` shape, one
# sitting: three replicas of one group in one process, an in-memory log, a
# state machine that holds nothing, messages passed by function call,
# empty commands proposed by 1 to 4,096 closed-loop clients. What each
# engine costs by itself, with no disk and no network. The two alternate
# client count by client count; the ratio table comes out as Markdown.
#
#   bash benches/scripts/vs_openraft.sh OPENRAFT_DIR [SECONDS]   (default 5)
#
# OPENRAFT_DIR is a checkout of https://github.com/databendlabs/openraft
# (measured at 5463678f). Its `rust-toolchain` names a nightly; the
# benchmark builds with stable, which this script uses. OpenRaft runs with
# one server worker thread and one client thread (its `--server-workers
# 1`); Sampan runs the replicas and the clients on one shard (one thread).
# Nothing else should run.
set -euo pipefail
OR=${1:?usage: vs_openraft.sh OPENRAFT_DIR [SECONDS]}
SECS=${2:-5}
CLIENTS="1 64 256 1024 4096"
cd "$(dirname "$0")/../.."
if [ ! -f "$OR/benchmarks/minimal/Cargo.toml" ]; then
    echo "no OpenRaft checkout at $OR (git clone https://github.com/databendlabs/openraft)" >&2
    exit 1
fi
OR=$(cd "$OR" && pwd)
ORT="$PWD/target/openraft-minimal"
echo "building OpenRaft's minimal benchmark (release, stable)..." >&2
(cd "$OR/benchmarks/minimal" && RUSTUP_TOOLCHAIN=stable CARGO_TARGET_DIR="$ORT" \
    cargo build -q --release --bin bench)
echo "building the Sampan side (release)..." >&2
cargo bench -q -p sampan-benches --bench minimal --no-run 2>&1 | tail -1 >&2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

sampan() { # clients -> ops/s
    cargo bench -q -p sampan-benches --bench minimal -- --clients "$1" --secs "$SECS" \
        2> /dev/null | awk -F'|' '/replicas/ {gsub(/ /, "", $3); print $3}'
}

openraft() { # clients ops -> ops/s (from its ns per op)
    "$ORT/release/bench" --server-workers 1 --client-workers 1 -c "$1" -n "$2" 2>&1 \
        | grep -oE 'ns/op: [0-9]+' | tail -1 \
        | awk '{ if ($2 > 0) printf "%.0f\n", 1e9 / $2; else print 0 }'
}

for c in $CLIENTS; do
    echo "$c client(s): Sampan..." >&2
    sp=$(sampan "$c")
    # As many operations as Sampan did in SECS seconds, a whole number per
    # client (OpenRaft's bench runs a count, not a time).
    n=$(( (${sp:-0} * SECS / c + 1) * c ))
    echo "$c client(s): OpenRaft, $n operations..." >&2
    or=$(openraft "$c" "$n")
    echo "$c ${sp:-0} ${or:-0}" >> "$OUT/rows"
done

echo
echo "OpenRaft's minimal shape, $(date -u '+%Y-%m-%d %H:%M UTC'), Sampan $(git rev-parse --short HEAD), OpenRaft $(git -C "$OR" rev-parse --short HEAD 2> /dev/null || echo '(not a git checkout)'), $(nproc) CPUs"
echo
echo "| clients | Sampan ops/s | OpenRaft ops/s | Sampan / OpenRaft |"
echo "|---:|---:|---:|---:|"
while read -r c sp or; do
    ratio=$(awk -v a="$sp" -v b="$or" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    echo "| $c | $sp | $or | $ratio |"
done < "$OUT/rows"
