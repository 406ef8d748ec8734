#!/usr/bin/env bash
# Run gannet's fuzz targets (fuzz/fuzz_targets/*.rs) with cargo-fuzz.
#
#   scripts/fuzz.sh smoke            every target for 20 s over its seeds
#   scripts/fuzz.sh long [seconds]   every target for [seconds] (default 600)
#   scripts/fuzz.sh run TARGET [seconds]
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET/, which
# also hold every crash ever found, so a smoke run replays them all first)
# plus the local corpus fuzz/corpus/TARGET/ (ignored by git). Any crash,
# assertion failure, leak or timeout fails the script; libFuzzer leaves the
# input in fuzz/artifacts/TARGET/. To keep a crash as a regression input:
#   cp fuzz/artifacts/TARGET/crash-* fuzz/seeds/TARGET/
# and fix the bug; `smoke` then replays it on every run.
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov);
# this runs them on the stable toolchain with RUSTC_BOOTSTRAP=1, which
# unlocks unstable flags on a stable compiler. Set FUZZ_SANITIZER=none for
# a faster run without AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(binary meta text store)
SMOKE_SECONDS=20
SANITIZER=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
# Build outside the shared target dir of the main crate when one is set.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    FUZZ_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
else
    FUZZ_TARGET_DIR="fuzz/target"
fi

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Longest input per target: the text framer needs lines past LINE_MAX
# (2048) and multi-gets past 4096 to reach its refusals, the binary parser
# a head past memcached's 16 KiB read buffer (BinError::HeadOverflow).
max_len() {
    case "$1" in
        text) echo 16384 ;;
        binary) echo 17408 ;;
        store) echo 4096 ;;
        *) echo 4096 ;;
    esac
}

run_target() {
    local target=$1 seconds=$2
    local seeds="fuzz/seeds/$target" corpus="fuzz/corpus/$target"
    [ -d "$seeds" ] || { echo "missing seed directory $seeds" >&2; exit 1; }
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    log "fuzz $target for ${seconds}s (sanitizer: $SANITIZER)"
    # -a: debug assertions and overflow checks in the fuzzed code too.
    if ! cargo fuzz run --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_DIR" \
        -s "$SANITIZER" -a "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$target")" -print_final_stats=1 2>"fuzz/artifacts/$target/last.log"; then
        tail -n 60 "fuzz/artifacts/$target/last.log" >&2
        echo "FAIL: fuzz target $target crashed; input in fuzz/artifacts/$target/" >&2
        return 1
    fi
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' \
        "fuzz/artifacts/$target/last.log" | sed "s/^/  $target /" || true
    grep -E '^#[0-9]+ +DONE' "fuzz/artifacts/$target/last.log" | tail -1 | sed "s/^/  $target /" || true
}

mode=${1:-smoke}
case "$mode" in
    smoke)
        for t in "${TARGETS[@]}"; do run_target "$t" "$SMOKE_SECONDS"; done
        ;;
    long)
        secs=${2:-600}
        for t in "${TARGETS[@]}"; do run_target "$t" "$secs"; done
        ;;
    run)
        [ $# -ge 2 ] || { echo "usage: $0 run TARGET [seconds]" >&2; exit 2; }
        run_target "$2" "${3:-60}"
        ;;
    *)
        echo "usage: $0 smoke | long [seconds] | run TARGET [seconds]" >&2
        exit 2
        ;;
esac
log "fuzzing passed: no crash"
