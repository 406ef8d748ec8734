#!/usr/bin/env bash
# TLS cost: gannet plaintext, gannet -Z, memcached plaintext and memcached
# -Z side by side with gannet-bench (--tls for the TLS servers), 10
# connections x pipeline 1 and 32, 90/10 get/set, 32 B keys, 100 B values.
#
# Same method as benches/compare.sh (see BENCHMARKS.md): server pinned to
# CPU 1 with one worker thread, client pinned to CPU 0, a fresh prefilled
# server per run, servers alternating within each round, medians printed.
# The test CA and server certificate (EC P-256) are made here with the
# openssl CLI.
#
# Usage: benches/tls.sh          Environment: DURATION (s, default 5),
# WARMUP (s, default 1), ROUNDS (default 3), KEYS (default 100000),
# MEMCACHED (default /usr/bin/memcached), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-100000}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
TARGET=${CARGO_TARGET_DIR:-target}

command -v openssl >/dev/null || { echo "openssl CLI missing (apt-get install openssl)" >&2; exit 1; }
[ -x "$MEMCACHED" ] || { echo "$MEMCACHED missing" >&2; exit 1; }
cargo build --release --quiet --bins
GANNET=$TARGET/release/gannet
BENCH=$TARGET/release/gannet-bench

PKI=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$PKI"
}
trap cleanup EXIT
(
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile server.ext 2>/dev/null
    chmod 755 . && chmod 644 ./*
)
TLS_OPTS="ssl_chain_cert=$PKI/server.pem,ssl_key=$PKI/server.key"
USER_ARGS=()
[ "$(id -u)" = 0 ] && USER_ARGS=(-u nobody)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run NAME PIPELINE -> one JSON line
run() {
    local name=$1 pipeline=$2 port bin tls_server=() tls_client=()
    port=$(free_port)
    case $name in
        gannet*) bin=$GANNET ;;
        memcached*) bin=$MEMCACHED ;;
    esac
    case $name in
        *-tls) tls_server=(-Z -o "$TLS_OPTS"); tls_client=(--tls --tls-ca "$PKI/ca.pem") ;;
    esac
    taskset -c 1 "$bin" -p "$port" -l 127.0.0.1 -U 0 -t 1 -m 1024 "${USER_ARGS[@]}" \
        "${tls_server[@]}" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    taskset -c 0 "$BENCH" -p "$port" -c 10 -P "$pipeline" --ratio 9:1 -n "$KEYS" \
        --prefill -w "$WARMUP" -d "$DURATION" --server-pid "$SERVER_PID" --json \
        "${tls_client[@]}"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

declare -A OPS CPU
for pipeline in 1 32; do
    for round in $(seq "$ROUNDS"); do
        for name in memcached gannet memcached-tls gannet-tls; do
            line=$(run "$name" "$pipeline")
            echo "round $round P$pipeline $name $line" >&2
            OPS[$name/$pipeline]+="$(field "$line" ops_per_sec) "
            CPU[$name/$pipeline]+="$(field "$line" server_cpu_us_per_op) "
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "| server | pipeline | ops/s (median of $ROUNDS) | server CPU us/op (median) |"
echo "|---|---|---|---|"
for pipeline in 1 32; do
    for name in gannet gannet-tls memcached memcached-tls; do
        echo "| $name | $pipeline | $(echo "${OPS[$name/$pipeline]}" | median) | $(echo "${CPU[$name/$pipeline]}" | median) |"
    done
done
