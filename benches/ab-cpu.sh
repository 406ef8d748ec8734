#!/usr/bin/env bash
# Interleaved server CPU per op: memcached and one or more gannet builds,
# round-robin (memcached, build 1, build 2, ...) for ROUNDS rounds, each on
# a fresh pinned server (-t 1, CPU 1) with gannet-bench pinned to CPU 0.
# For before/after comparisons of a change on a busy machine: compare the
# builds round by round, not the absolute numbers. Traffic stays on
# 127.0.0.1.
#
# Usage: benches/ab-cpu.sh GANNET_BIN [GANNET_BIN...]
# Environment: ROUNDS (3), DURATION (s, 4), KEYS (100000), BENCH
# (default $CARGO_TARGET_DIR/release/gannet-bench), MEMCACHED, CASES
# (client flags per case, cases separated by ';'; default: 90/10 get/set
# of 100-byte values over KEYS keys, text at pipeline 1 and binary at 8).
# Example, sets of 100 KB values:
#   CASES="--protocol text -P 1 --ratio 0:1 --value-size 102400 -n 2000" \
#       benches/ab-cpu.sh /tmp/gannet-before /tmp/gannet-after
# Output: one line per run: case, server, round, ops/s, server CPU us/op,
# errors.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 GANNET_BIN [GANNET_BIN...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
KEYS=${KEYS:-100000}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/gannet-bench}
command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 1; }
[ -x "$BENCH" ] || cargo build --release --quiet --bin gannet-bench
AS=()
[ "$(id -u)" -ne 0 ] || AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
SERVERS=("$MEMCACHED" "$@")
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT
common="--ratio 9:1 --value-size 100 -n $KEYS"
CASES=${CASES:-"--protocol text -P 1 $common;--protocol binary -P 8 $common"}
IFS=';' read -r -a cases <<<"$CASES"
for cs in "${cases[@]}"; do
    read -r -a cargs <<<"$cs"
    for round in $(seq "$ROUNDS"); do
        for bin in "${SERVERS[@]}"; do
            port=$((12000 + RANDOM % 15000))
            while port_open "$port"; do port=$((12000 + RANDOM % 15000)); done
            "${AS[@]}" taskset -c 1 "$bin" -p "$port" -l 127.0.0.1 -U 0 -t 1 -m 1024 \
                -c 1024 >/dev/null 2>&1 &
            pid=$!
            for _ in $(seq 50); do port_open "$port" && break; sleep 0.1; done
            j=$(taskset -c 0 "$BENCH" -p "$port" --key-size 32 \
                -c 10 --prefill -w 1 -d "$DURATION" "${cargs[@]}" \
                --server-pid "$pid" --json | tail -n 1)
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            pid=""
            printf '%s\t%s\t%s\t%s\n' "$cs" "$bin" "$round" \
                "$(jq -r '[.ops_per_sec, .server_cpu_us_per_op, .errors] | @tsv' <<<"$j")"
        done
    done
done
