#!/usr/bin/env bash
# Soak test: a long mixed workload against one release-built gannet.
#
#   scripts/soak.sh [seconds]     (default 600)
#
# Builds gannet and the soak client (tests/soak.rs, an #[ignore]d test) in
# release mode, then runs it: 4 workers mixing gets, multi-gets, sets with
# and without TTLs, deletes and touches over 50 000 keys whose values carry
# a checksum of key and version (verified on every read), a flush_all every
# 20 s, a thread churning connections, RSS sampled every 5 s. At the end it
# checks curr_items and bytes against a full scan of the key space and
# prints one summary line:
#   soak summary: duration ..., ops ..., RSS start/end/max ..., wrong values 0
# Fails on any wrong value, an inconsistent count, growing RSS or a crash.
# GANNET_SOAK_WORKERS and GANNET_SOAK_KEYS override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac

echo "==> building release gannet and the soak client"
cargo build --release --bin gannet
cargo test --release --test soak --no-run

echo "==> soak for ${seconds}s"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The test starts and stops its own gannet; bound it by the duration plus
# time for the final scans.
if ! GANNET_SOAK_SECONDS="$seconds" timeout "$((seconds + 300))" \
    cargo test --release --test soak -- --ignored --nocapture --test-threads=1 2>&1 | tee "$log"; then
    echo "FAIL: soak failed" >&2
    exit 1
fi
grep -q '^soak summary:' "$log" || { echo "FAIL: no soak summary" >&2; exit 1; }
grep '^soak summary:' "$log"
