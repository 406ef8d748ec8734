#!/usr/bin/env bash
# Per-operation profiles of gannet and memcached under the same load:
# user-space instructions per op (valgrind --tool=callgrind), system calls
# per op (perf's syscall tracepoints, or strace -c), and gannet's cost by
# function (callgrind_annotate). BENCHMARKS.md, "Where the time goes",
# quotes its output.
#
# Why these tools: the machine has 2 shared cores, so times are noisy;
# instruction counts and syscall counts repeat whatever else runs.
# - callgrind counts user-space instructions only (the kernel's share is
#   the syscall count times a per-call cost). Counters are zeroed after the
#   prefill (callgrind_control -z) and dumped after the measured run, so
#   the totals cover exactly the run; divided by the ops gannet-bench
#   completed, that is instructions per op. Under valgrind the server is
#   ~20x slower, so each run is a few seconds of gannet-bench.
# - Syscalls are counted with perf's syscalls:* tracepoints (in-kernel
#   counters: the server runs at full speed, unlike under strace, whose
#   ptrace stops slow it so much that every "extra" read finds the next
#   request already there). strace -c is the fallback (METHOD=strace).
#
# Usage: benches/profile.sh [CASE...]     (default: text1 bin8 big)
#   text1  text, 10 conns x pipeline 1, 90/10 get/set, 32 B keys, 100 B values
#   text8  the same, pipeline 8
#   bin1   binary, 10 x 1
#   bin8   binary, 10 x 8
#   big    text, 10 x 1, 100 KB values (2000 keys)
#   bigbin binary, 10 x 1, 100 KB values
# Environment: KEYS (small-value cases, default 50000), CG_SECONDS
# (callgrind run, default 4), SC_SECONDS (syscall-count run, default 4),
# METHOD (perf|strace, default perf when its tracepoints work), RECORD
# (1: also sample CPU with perf record, kernel included; default 1),
# SERVERS (default "memcached gannet"), OUT (default
# $CARGO_TARGET_DIR/profile/DATE), MEMCACHED (default /usr/bin/memcached).
# All traffic goes to 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
KEYS=${KEYS:-50000}
CG_SECONDS=${CG_SECONDS:-4}
SC_SECONDS=${SC_SECONDS:-4}
SERVERS=${SERVERS:-memcached gannet}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${OUT:-$TARGET/profile/$(date -u +%Y%m%d-%H%M%S)}
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(text1 bin8 big)

log() { echo "profile.sh: $*" >&2; }

# --- tools -----------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
need_apt=()
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v callgrind_annotate >/dev/null || need_apt+=(valgrind)
command -v strace >/dev/null || need_apt+=(strace)
command -v jq >/dev/null || need_apt+=(jq)
command -v perf >/dev/null || need_apt+=(linux-perf)
[ -x "$MEMCACHED" ] || need_apt+=(memcached)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null || true
    if command -v systemctl >/dev/null; then
        $SUDO systemctl stop memcached 2>/dev/null || true
    fi
fi
for t in valgrind callgrind_annotate callgrind_control jq; do
    command -v $t >/dev/null || { log "$t is missing"; exit 1; }
done
[ -x "$MEMCACHED" ] || MEMCACHED=$(command -v memcached)

if [ -z "${METHOD:-}" ]; then
    METHOD=strace
    if command -v perf >/dev/null &&
        perf stat -e syscalls:sys_enter_read -- true >/dev/null 2>&1; then
        METHOD=perf
    fi
fi
[ "$METHOD" = perf ] || command -v strace >/dev/null || { log "strace is missing"; exit 1; }

log "building gannet and gannet-bench (release, with debug info)"
CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --quiet --bin gannet --bin gannet-bench
GANNET=$TARGET/release/gannet
BENCH=$TARGET/release/gannet-bench

# Servers refuse to run as root without -u; valgrind's vgdb (behind
# callgrind_control) needs the server and itself to be the same user, so
# as root the whole server runs as nobody instead.
AS=()
if [ "$(id -u)" -eq 0 ]; then
    AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
PIN_SERVER=()
PIN_CLIENT=()
if [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 1)
    PIN_CLIENT=(taskset -c 0)
fi

# memcached sets its descriptor limit (soft and hard) to -c 1024. Under
# valgrind that succeeds only when the new hard limit equals valgrind's
# own view of it, which is the soft limit at start: so start with 1024.
ulimit -Sn 1024

mkdir -p "$OUT"
chmod 777 "$OUT" # the server (as nobody) writes its callgrind output here
log "output in $OUT (method for syscalls: $METHOD)"

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((12000 + RANDOM % 15000))
        port_open "$p" || { echo "$p"; return; }
    done
}

case_args() {
    local w=(--ratio 9:1 --key-size 32 -c 10)
    case $1 in
        text1) echo "${w[*]} --value-size 100 --protocol text -P 1 -n $KEYS" ;;
        text8) echo "${w[*]} --value-size 100 --protocol text -P 8 -n $KEYS" ;;
        bin1) echo "${w[*]} --value-size 100 --protocol binary -P 1 -n $KEYS" ;;
        bin8) echo "${w[*]} --value-size 100 --protocol binary -P 8 -n $KEYS" ;;
        big) echo "${w[*]} --value-size 102400 --protocol text -P 1 -n 2000" ;;
        bigbin) echo "${w[*]} --value-size 102400 --protocol binary -P 1 -n 2000" ;;
        *) log "unknown case $1"; exit 2 ;;
    esac
}

# start NAME [WRAPPER...]: start a server (-t 1 -m 1024) on a free port.
start() {
    local name=$1 bin _
    shift
    case $name in
        memcached) bin=$MEMCACHED ;;
        gannet) bin=$GANNET ;;
    esac
    PORT=$(free_port)
    "${AS[@]}" "$@" "$bin" -p "$PORT" -l 127.0.0.1 -U 0 -t 1 -m 1024 -c 1024 \
        >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        port_open "$PORT" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start: $(cat "$OUT/server.log")"
    exit 1
}

# The pid of the server process itself (under valgrind/taskset wrappers,
# exec keeps the pid; setpriv execs too).
SYSCALLS="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl"

# syscalls CASE NAME: syscalls per op at full speed.
count_syscalls() {
    local cs=$1 name=$2 args tag=$1.$2 cpid
    read -r -a args <<<"$(case_args "$cs")"
    start "$name" "${PIN_SERVER[@]}"
    "${PIN_CLIENT[@]}" "$BENCH" -p "$PORT" "${args[@]}" --prefill -d 0 --json >/dev/null
    if [ "$METHOD" = perf ]; then
        local ev=(-e raw_syscalls:sys_enter -e page-faults) s
        for s in $SYSCALLS; do ev+=(-e "syscalls:sys_enter_$s"); done
        # Calls that returned an error (EAGAIN, almost always).
        for s in read recvfrom recvmsg readv; do
            ev+=(-e "syscalls:sys_exit_$s" --filter 'ret < 0')
        done
        perf stat -x, -p "$SERVER_PID" "${ev[@]}" -o "$OUT/sys.$tag.txt" &
    else
        strace -c -f -p "$SERVER_PID" -o "$OUT/sys.$tag.txt" 2>/dev/null &
    fi
    cpid=$!
    sleep 1
    "${PIN_CLIENT[@]}" "$BENCH" -p "$PORT" "${args[@]}" --server-pid "$SERVER_PID" \
        -w 0 -d "$SC_SECONDS" --json >"$OUT/sys.$tag.json"
    kill -INT "$cpid"
    wait "$cpid" || true
    cleanup
    local ops
    ops=$(jq .ops "$OUT/sys.$tag.json")
    if [ "$METHOD" = perf ]; then
        # perf -x, lines: count,,event,... ; an exit_* line counts errors.
        awk -F, -v ops="$ops" -v tag="$tag" '
            $3 == "page-faults" && $1 ~ /^[0-9]+$/ {
                printf "%s\t%s\t%d\t%.3f\n", tag, "page faults", $1, $1 / ops
            }
            $3 ~ /^(raw_)?syscalls:/ && $1 ~ /^[0-9]+$/ && $1 > 0 {
                ev = $3; sub(/.*sys_enter_?/, "", ev)
                if ($3 ~ /sys_exit_/) { ev = $3; sub(/.*sys_exit_/, "", ev); ev = ev " (errors)" }
                if (ev == "") ev = "all syscalls"
                printf "%s\t%s\t%d\t%.3f\n", tag, ev, $1, $1 / ops
            }' "$OUT/sys.$tag.txt"
    else
        awk -v ops="$ops" -v tag="$tag" '
            $NF ~ /^[a-z_0-9]+$/ && $(NF-1) ~ /^[0-9]+$/ && $NF != "total" {
                calls = ($0 ~ /[0-9]+ +[0-9]+ +[a-z]/) ? $(NF-2) : $(NF-1)
                printf "%s\t%s\t%d\t%.3f\n", tag, $NF, calls, calls / ops
            }' "$OUT/sys.$tag.txt"
    fi
    printf "%s\tops\t%s\tserver_cpu_us_per_op %s\n" "$tag" "$ops" \
        "$(jq .server_cpu_us_per_op "$OUT/sys.$tag.json")"
}

# callgrind CASE NAME: user-space instructions per op.
run_callgrind() {
    local cs=$1 name=$2 args tag=$1.$2 vp ops ir
    read -r -a args <<<"$(case_args "$cs")"
    rm -f "$OUT/cg.$tag".*
    start "$name" valgrind --tool=callgrind --dump-instr=no \
        --callgrind-out-file="$OUT/cg.$tag.%p"
    vp=$SERVER_PID
    "$BENCH" -p "$PORT" "${args[@]}" --prefill -d 0 --json >/dev/null
    "${AS[@]}" callgrind_control -z "$vp" >/dev/null 2>&1
    "$BENCH" -p "$PORT" "${args[@]}" -w 0 -d "$CG_SECONDS" --json >"$OUT/cg.$tag.json"
    "${AS[@]}" callgrind_control -d "$vp" >/dev/null 2>&1
    cleanup
    ops=$(jq .ops "$OUT/cg.$tag.json")
    local dumps dump
    dumps=("$OUT/cg.$tag".*.1)
    dump=${dumps[0]}
    ir=$(awk '/^summary:/ {print $2}' "$dump")
    printf "%s\tops\t%s\tIr\t%s\tIr/op\t%.0f\terrors\t%s\n" "$tag" "$ops" "$ir" \
        "$(awk -v a="$ir" -v b="$ops" 'BEGIN { print a / b }')" "$(jq .errors "$OUT/cg.$tag.json")"
    # Self cost per function, per op. (callgrind_annotate 3.19 puts all
    # self cost on `clone` for a dump taken after -z, so sum the file
    # here: a cost line belongs to the current fn=, except the line right
    # after calls=, which is the callee's inclusive cost.)
    awk -v ops="$ops" '
        /^fn=/ { s = substr($0, 4); id = s; sub(/ .*/, "", id)
                 if (s ~ /^\([0-9]+\) /) { nm = s; sub(/^\([0-9]+\) /, "", nm); name[id] = nm }
                 fn = id; next }
        /^cfn=\([0-9]+\) / { s = substr($0, 5); id = s; sub(/ .*/, "", id)
                 sub(/^\([0-9]+\) /, "", s); name[id] = s; next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } self[fn] += $NF; next }
        END { for (f in self) printf "%12d %8.1f  %s\n", self[f], self[f] / ops, name[f] }
    ' "$dump" | sort -rn >"$OUT/annotate.$tag.self.txt"
    # (head closes the pipe early: ignore the annotator's SIGPIPE.)
    { callgrind_annotate --inclusive=yes "$dump" 2>/dev/null || true; } |
        head -n 90 >"$OUT/annotate.$tag.incl.txt"
}

# record_cpu CASE NAME: where the CPU time goes, kernel included (perf
# sampling on cpu-clock, a software event that works in VMs without a
# PMU). Times are noisy on a shared machine; the shares are what to read.
record_cpu() {
    local cs=$1 name=$2 args tag=$1.$2 rpid
    read -r -a args <<<"$(case_args "$cs")"
    start "$name" "${PIN_SERVER[@]}"
    "${PIN_CLIENT[@]}" "$BENCH" -p "$PORT" "${args[@]}" --prefill -d 0 --json >/dev/null
    perf record -q -e cpu-clock -F 4999 -p "$SERVER_PID" -o "$OUT/perf.$tag.data" \
        >/dev/null 2>&1 &
    rpid=$!
    sleep 0.5
    "${PIN_CLIENT[@]}" "$BENCH" -p "$PORT" "${args[@]}" -w 0 -d "$SC_SECONDS" --json \
        >"$OUT/perf.$tag.json"
    kill -INT "$rpid"
    wait "$rpid" || true
    cleanup
    perf report -i "$OUT/perf.$tag.data" --sort dso --stdio 2>/dev/null |
        grep '%' >"$OUT/perf.$tag.dso.txt" || true
    perf report -i "$OUT/perf.$tag.data" --sort sym --stdio 2>/dev/null |
        grep '%' >"$OUT/perf.$tag.sym.txt" || true
    printf "%s\tcpu share by object (perf.%s.dso.txt): %s\n" "$tag" "$tag" \
        "$(head -n 4 "$OUT/perf.$tag.dso.txt" | awk '{printf "%s %s; ", $2, $1}')"
}

for cs in "${CASES[@]}"; do
    for name in $SERVERS; do
        log "$cs: $name: syscalls"
        count_syscalls "$cs" "$name" | tee -a "$OUT/syscalls.tsv"
        if [ "$METHOD" = perf ] && [ "${RECORD:-1}" = 1 ]; then
            log "$cs: $name: perf record"
            record_cpu "$cs" "$name" | tee -a "$OUT/cpu.tsv"
        fi
        log "$cs: $name: callgrind"
        run_callgrind "$cs" "$name" | tee -a "$OUT/instructions.tsv"
    done
done
log "done: $OUT (instructions.tsv, syscalls.tsv, annotate.*.txt)"
