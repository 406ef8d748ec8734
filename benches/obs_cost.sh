#!/usr/bin/env bash
# What latency tracking and hot-key sampling cost: throughput, server CPU
# per request and (with callgrind) instructions per request, with both
# off and with both on, in alternating rounds.
#
#   benches/obs_cost.sh                  # 3 rounds per mode, pipeline 32 and 1
#   ROUNDS=5 PIPELINES="32" benches/obs_cost.sh
#   CALLGRIND=0 benches/obs_cost.sh      # skip the instruction counts
#
# off: `stats latency off`, no `-o hotkeys`.
# on:  latency on (the default), `-o hotkeys=10`.
# Server: one worker pinned to CPU 1; client: pinned to CPU 0.
# Results: one JSON line per run in $OUT/results.jsonl, medians printed.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PIPELINES=${PIPELINES:-"32 1"}
CALLGRIND=${CALLGRIND:-1}
CG_SECONDS=${CG_SECONDS:-10}
CG_PIPELINES=${CG_PIPELINES:-"32 1"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
OUT=${OUT:-$BIN/../obs-cost/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
USER_ARGS=()
CG_USER_ARGS=()
if [ "$(id -u)" = 0 ]; then
    USER_ARGS=(-u nobody)
    CG_USER_ARGS=(-u root)
fi

(cd "$ROOT" && cargo build --release --bin gannet --bin gannet-bench >&2)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Send one text request, print the first reply line.
ask() {
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf '%s\r\n' "$2" >&3
    local line
    IFS= read -r line <&3
    exec 3<&-
    printf '%s\n' "${line%$'\r'}"
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2
    return 1
}

mode_args() { if [ "$1" = on ]; then echo "-o hotkeys=10"; fi; }

set_mode() { # port mode
    if [ "$2" = off ]; then
        [ "$(ask "$1" 'stats latency off')" = OK ]
    fi
}

run_round() { # mode pipeline round
    local mode=$1 p=$2 r=$3 port pid
    port=$(free_port)
    # shellcheck disable=SC2046
    taskset -c 1 "$BIN/gannet" -t 1 -p "$port" -l 127.0.0.1 -U 0 "${USER_ARGS[@]}" \
        $(mode_args "$mode") &
    pid=$!
    wait_port "$port"
    set_mode "$port" "$mode"
    taskset -c 0 "$BIN/gannet-bench" -p "$port" --server-pid "$pid" -c 10 -P "$p" \
        -n 20000 --prefill -w 1 -d "$DURATION" --json |
        jq -c --arg mode "$mode" --argjson round "$r" '. + {mode: $mode, round: $round}' \
            >>"$OUT/results.jsonl"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

for p in $PIPELINES; do
    for r in $(seq "$ROUNDS"); do
        for mode in off on; do
            run_round "$mode" "$p" "$r"
        done
    done
done

if [ -s "$OUT/results.jsonl" ]; then
echo "## throughput and server CPU per request (medians of $ROUNDS rounds)"
echo "| pipeline | mode | ops/s | server CPU us/op | runs (ops/s) |"
echo "|---|---|---|---|---|"
jq -rs '
  def median: sort | if length % 2 == 1 then .[length/2|floor]
              else (.[length/2-1] + .[length/2]) / 2 end;
  group_by([.pipeline, .mode]) | sort_by(-.[0].pipeline, .[0].mode)[] |
  "| \(.[0].pipeline) | \(.[0].mode) | \(map(.ops_per_sec) | median | round) | " +
  "\(map(.server_cpu_us_per_op) | median) | \(map(.ops_per_sec) | map(tostring) | join(", ")) |"
' "$OUT/results.jsonl"
fi

[ "$CALLGRIND" = 1 ] || exit 0

# Instructions per request: the server under callgrind with collection
# off, prefilled, then collection on for a fixed number of requests
# (whatever number of requests the client gets through), then the total
# divided by the requests the server counted meanwhile.
cg_run() { # mode pipeline
    local mode=$1 p=$2 port pid out before after
    port=$(free_port)
    out="$OUT/callgrind.$mode.P$p.out"
    # shellcheck disable=SC2046
    # (As root: `-u root`, so the process keeps access to the pipe
    # callgrind_control talks to.)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        "$BIN/gannet" -t 1 -p "$port" -l 127.0.0.1 -U 0 "${CG_USER_ARGS[@]}" \
        $(mode_args "$mode") 2>"$OUT/valgrind.$mode.P$p.log" &
    pid=$!
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    set_mode "$port" "$mode"
    "$BIN/gannet-bench" -p "$port" -c 1 -P 1 -n 2000 --prefill -d 0 >/dev/null
    before=$(ask_total "$port")
    callgrind_control -i on "$pid" >/dev/null 2>&1
    # Without pipelining, one connection: each request is then one
    # wake-up, one read, one write, so the count does not depend on how
    # many connections happen to be ready together.
    local conns=10
    [ "$p" = 1 ] && conns=1
    "$BIN/gannet-bench" -p "$port" -c "$conns" -P "$p" -n 2000 -w 0 -d "$CG_SECONDS" >/dev/null
    callgrind_control -i off "$pid" >/dev/null 2>&1
    after=$(ask_total "$port")
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    local ir
    ir=$(grep -m1 '^totals:' "$out" | awk '{print $2}')
    echo "| $p | $mode | $((after - before)) | $ir | $((ir / (after - before))) |"
}

# cmd_get + cmd_set so far.
ask_total() {
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'stats\r\n' >&3
    local line g=0 s=0
    while IFS= read -r line <&3; do
        line=${line%$'\r'}
        case $line in
        "STAT cmd_get "*) g=${line#STAT cmd_get } ;;
        "STAT cmd_set "*) s=${line#STAT cmd_set } ;;
        END) break ;;
        esac
    done
    exec 3<&-
    echo $((g + s))
}

echo
echo "## instructions per request (callgrind; pipeline 1 with one connection)"
echo "| pipeline | mode | requests | instructions | per request |"
echo "|---|---|---|---|---|"
for p in $CG_PIPELINES; do
    for mode in off on; do cg_run "$mode" "$p"; done
done
