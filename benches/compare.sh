#!/usr/bin/env bash
# Side-by-side comparison of gannet and memcached with gannet-bench.
#
# Why it is built this way (see BENCHMARKS.md for the method):
# - On a 2-core machine the client and the server compete for CPU, so the
#   server runs with one worker pinned to CPU 1 and the client on CPU 0;
#   unpinned runs are several times noisier at p99.9.
# - Noise from other processes comes and goes, so the two servers alternate
#   (memcached, gannet, memcached, gannet, ...) within each case, each run
#   on a fresh server with a fresh prefill, and the table shows medians and
#   gannet/memcached ratios rather than single absolute numbers.
# - Unpipelined throughput is bounded by the client, so server CPU time per
#   operation (from /proc/PID/stat) is printed next to ops/s.
#
# Usage: benches/compare.sh [SCENARIO...]     (default: 1 2 3 4 5 6 7 8)
#   1 throughput: 10 conns x pipeline 1/8/32, text and binary
#   2 open loop at RATE ops/s (default 20000): latency percentiles
#   3 50 connections, no pipelining
#   4 100-key multi-get
#   5 100 KB values
#   6 IDLE_CONNS idle connections (default 10000) + 10 active
#   7 memory per item (1M items, 100 B and 50-500 B values) and cache-aside Zipf(1) hit ratio at -m 32/64
#   8 unbounded pipelining (client writes as fast as it can): ops/s, max RSS
# Environment: DURATION (s, default 10), WARMUP (s, default 2), ROUNDS
# (default 3), KEYS (default 1000000), RATE, IDLE_CONNS, HR_WARMUP (s of
# cache-aside warm-up before the hit ratio is measured, default 20),
# OUT (results directory), MEMCACHED (default /usr/bin/memcached),
# CARGO_TARGET_DIR.
# Quick check: DURATION=2 ROUNDS=1 benches/compare.sh 1
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000000}
RATE=${RATE:-20000}
IDLE_CONNS=${IDLE_CONNS:-10000}
HR_WARMUP=${HR_WARMUP:-20}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${OUT:-$TARGET/bench-results/$(date -u +%Y%m%d-%H%M%S)}
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(1 2 3 4 5 6 7 8)
fi

log() { echo "compare.sh: $*" >&2; }

# --- summary ---------------------------------------------------------------
# Medians over rounds (errors: the largest), then gannet/memcached ratios.
summarize() {
    jq -rs '
      def cols($s):
        {"1": ["ops_per_sec","p50_us","p99_us","p999_us","server_cpu_us_per_op","errors"],
         "2": ["ops_per_sec","p50_us","p99_us","p999_us","server_cpu_us_per_op","errors"],
         "3": ["ops_per_sec","p50_us","p99_us","p999_us","server_cpu_us_per_op","errors"],
         "4": ["ops_per_sec","get_keys_per_sec","p50_us","p99_us","p999_us","server_cpu_us_per_op","errors"],
         "5": ["ops_per_sec","p50_us","p99_us","p999_us","server_cpu_us_per_op","rss_max_mib","errors"],
         "6": ["ops_per_sec","p50_us","p99_us","p999_us","idle_connect_s","rss_bytes_per_idle_conn","errors"],
         "7": ["rss_bytes_per_item","hit_ratio","ops_per_sec","server_cpu_us_per_op","errors"],
         "8": ["ops_per_sec","p50_us","p99_us","rss_max_mib","errors"]}[$s];
      def colname:
        {"ops_per_sec":"ops/s","get_keys_per_sec":"keys/s","p50_us":"p50 us","p99_us":"p99 us",
         "p999_us":"p99.9 us","server_cpu_us_per_op":"server CPU us/op","errors":"errors",
         "rss_max_mib":"max RSS MiB","idle_connect_s":"accept all s",
         "rss_bytes_per_idle_conn":"RSS B/idle conn","rss_bytes_per_item":"RSS B/item",
         "hit_ratio":"hit ratio"}[.];
      def title:
        {"1":"Throughput, 90/10 get/set, 32 B keys, 100 B values",
         "2":"Open loop at a fixed rate (latency from the scheduled send time)",
         "3":"50 connections, no pipelining","4":"100-key multi-get",
         "5":"100 KB values","6":"Idle connections held open during the run",
         "7":"Memory per item and cache-aside hit ratio",
         "8":"Unbounded pipelining (client writes as fast as it can)"}[.];
      def median: map(select(. != null)) | sort
        | if length == 0 then null else .[((length - 1) / 2 | floor)] end;
      def metric($k):
        if $k == "rss_max_mib" then (if .rss_max == null then null else .rss_max / 1048576 end)
        elif $k == "get_keys_per_sec" then
          (if .seconds == null or .seconds == 0 then null else .get_keys / .seconds end)
        else .[$k] end;
      def agg($k): if $k == "errors" then (map(.errors) | max)
        else (map(metric($k)) | median) end;
      def fmt: if . == null then "-"
        elif (. | fabs) >= 1000 then (. | round | tostring)
        elif (. | fabs) >= 10 then ((. * 10 | round) / 10 | tostring)
        else ((. * 1000 | round) / 1000 | tostring) end;
      def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-"
        else (($a / $b * 100 | round) / 100 | tostring) end;
      group_by(.scenario)[] as $sc
      | ($sc[0].scenario) as $s
      | cols($s) as $cols
      | "\n### \($s). \($s | title)\n",
        "| case | server | \($cols | map(colname) | join(" | ")) | runs |",
        "|---|---|\($cols | map("---") | join("|"))|---|",
        ( $sc | group_by(.case) | sort_by(.[0].order)[] as $cs
          | ($cs | map(select(.server == "memcached" and (.failed | not)))) as $m
          | ($cs | map(select(.server == "gannet" and (.failed | not)))) as $g
          | ($cols | map(. as $k | $m | agg($k))) as $mv
          | ($cols | map(. as $k | $g | agg($k))) as $gv
          | "| \($cs[0].case) | memcached | \($mv | map(fmt) | join(" | ")) | \($m | length) |",
            "| | gannet | \($gv | map(fmt) | join(" | ")) | \($g | length) |",
            "| | gannet/memcached | \([range(0; $cols | length)] | map(ratio($gv[.]; $mv[.])) | join(" | ")) | |"
        )
    ' "$RESULTS" | tee "$OUT/summary.md"
}

# SUMMARIZE=path/results.jsonl: only print the table of an earlier run.
if [ -n "${SUMMARIZE:-}" ]; then
    RESULTS=$SUMMARIZE
    OUT=$(dirname "$SUMMARIZE")
    summarize
    exit 0
fi

# --- tools -----------------------------------------------------------------
need_apt=()
[ -x "$MEMCACHED" ] || need_apt+=(memcached)
command -v jq >/dev/null || need_apt+=(jq)
command -v taskset >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # The Debian package starts its own memcached on 11211; we use other
    # ports, but do not leave a stray server competing for the CPUs.
    if command -v systemctl >/dev/null; then
        $SUDO systemctl stop memcached 2>/dev/null || true
    fi
fi
[ -x "$MEMCACHED" ] || MEMCACHED=$(command -v memcached)

log "building gannet and gannet-bench (release)"
cargo build --release --quiet --bin gannet --bin gannet-bench
GANNET=$TARGET/release/gannet
BENCH=$TARGET/release/gannet-bench

# --- pinning and limits ----------------------------------------------------
if [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 1)
    PIN_CLIENT=(taskset -c 0)
else
    log "fewer than 2 CPUs: running unpinned (numbers will be noisy)"
    PIN_SERVER=()
    PIN_CLIENT=()
fi
# Idle connections need file descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
USER_ARGS=()
[ "$(id -u)" -ne 0 ] || USER_ARGS=(-u nobody)

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
log "results in $OUT"

# --- servers ---------------------------------------------------------------
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports below the kernel's ephemeral range, so that no client socket (the
# thousands of connections of earlier runs included) holds the port.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local p span=$((EPHEMERAL_LOW - 12000))
    [ "$span" -gt 1000 ] || span=1000
    while :; do
        p=$((12000 + RANDOM % span))
        port_open "$p" || { echo "$p"; return; }
    done
}

# start_server NAME MEM CONNLIMIT -> sets SERVER_PID and PORT. A port can
# still be taken between the check and the bind: try three ports.
start_server() {
    local bin attempt _
    case $1 in
        memcached) bin=$MEMCACHED ;;
        gannet) bin=$GANNET ;;
    esac
    for attempt in 1 2 3; do
        PORT=$(free_port)
        "${PIN_SERVER[@]}" "$bin" -p "$PORT" -l 127.0.0.1 -U 0 -t 1 -m "$2" -c "$3" \
            "${USER_ARGS[@]}" >"$OUT/server.log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do
            port_open "$PORT" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        log "$1 did not start (attempt $attempt): $(cat "$OUT/server.log")"
        stop_server
    done
    return 1
}

stop_server() {
    cleanup
    SERVER_PID=""
}

# run_case SCENARIO CASE MEM CONNLIMIT BENCH_ARGS...
# Runs ROUNDS rounds of memcached then gannet, fresh server each run.
run_case() {
    local scen=$1 case=$2 mem=$3 climit=$4
    shift 4
    local round server json
    CASE_NO=$((CASE_NO + 1))
    for round in $(seq "$ROUNDS"); do
        for server in memcached gannet; do
            log "[$scen] $case: $server, round $round"
            if ! start_server "$server" "$mem" "$climit"; then
                json='{"failed":true}'
            elif ! json=$("${PIN_CLIENT[@]}" "$BENCH" -p "$PORT" --server-pid "$SERVER_PID" \
                --json "$@" 2>>"$OUT/bench.log" | tail -n 1) || [ -z "$json" ]; then
                log "gannet-bench failed (see $OUT/bench.log)"
                json='{"failed":true}'
            fi
            if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
                log "$server died during the run"
                json='{"failed":true}'
            fi
            stop_server
            jq -c --arg s "$scen" --arg c "$case" --arg v "$server" --argjson r "$round" \
                --argjson o "$CASE_NO" \
                '. + {scenario: $s, case: $c, order: $o, server: $v, round: $r}' <<<"$json" >>"$RESULTS"
        done
    done
}

CASE_NO=0
# Common workload: 90% get / 10% set, 32-byte keys, 100-byte values.
W=(--ratio 9:1 --key-size 32 --value-size 100 -w "$WARMUP" -d "$DURATION")

for s in "${SCENARIOS[@]}"; do
    case $s in
        1)
            for proto in text binary; do
                for p in 1 8 32; do
                    run_case 1 "10x$p $proto" 1024 1024 "${W[@]}" --protocol "$proto" \
                        -c 10 -P "$p" -n "$KEYS" --prefill
                done
            done
            ;;
        2)
            for proto in text binary; do
                run_case 2 "open loop $RATE/s $proto" 1024 1024 "${W[@]}" --protocol "$proto" \
                    -c 10 -P 16 -r "$RATE" -n "$KEYS" --prefill
            done
            ;;
        3)
            for proto in text binary; do
                run_case 3 "50x1 $proto" 1024 1024 "${W[@]}" --protocol "$proto" \
                    -c 50 -P 1 -n "$KEYS" --prefill
            done
            ;;
        4)
            for proto in text binary; do
                run_case 4 "10x1 get of 100 keys $proto" 1024 1024 -w "$WARMUP" -d "$DURATION" \
                    --ratio 1:0 --key-size 32 --value-size 100 --protocol "$proto" \
                    -c 10 -P 1 -m 100 -n "$KEYS" --prefill
            done
            ;;
        5)
            # 2000 x 100 KB = 200 MB: fits -m 1024, so gets hit.
            for proto in text binary; do
                run_case 5 "10x1 100KB values $proto" 1024 1024 -w "$WARMUP" -d "$DURATION" \
                    --ratio 9:1 --key-size 32 --value-size 102400 --protocol "$proto" \
                    -c 10 -P 1 -n 2000 --prefill
            done
            ;;
        6)
            run_case 6 "$IDLE_CONNS idle + 10x1 text" 1024 20000 "${W[@]}" \
                -c 10 -P 1 -n "$KEYS" --prefill --idle-conns "$IDLE_CONNS"
            ;;
        7)
            run_case 7 "1M items: RSS/item" 1024 1024 --key-size 32 --value-size 100 \
                -n 1000000 --prefill -w 0 -d 0
            run_case 7 "1M items, 50-500 B values: RSS/item" 1024 1024 --key-size 32 \
                --value-size 50-500 -n 1000000 --prefill -w 0 -d 0
            for m in 32 64; do
                run_case 7 "cache-aside zipf 1, -m $m" "$m" 1024 --ratio 1:0 --key-size 32 \
                    --value-size 100 -n 1000000 --zipf 1 --cache-aside -m 10 -c 10 -P 4 \
                    -w "$HR_WARMUP" -d "$DURATION"
            done
            ;;
        8)
            run_case 8 "10 x unbounded text" 1024 1024 "${W[@]}" -c 10 -P 0 -n "$KEYS" --prefill
            run_case 8 "10 x unbounded binary" 1024 1024 "${W[@]}" --protocol binary \
                -c 10 -P 0 -n "$KEYS" --prefill
            ;;
        *)
            log "unknown scenario $s (1-8)"
            exit 2
            ;;
    esac
done

summarize
log "raw results: $RESULTS; table: $OUT/summary.md"
