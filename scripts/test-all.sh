#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the
# tests need (memcached and libmemcached-tools as reference peers; the
# compatibility suite installs twemproxy and the Python clients in .venv;
# the packaging checks install cargo-deb, cargo-generate-rpm, lintian...),
# then runs format and lint checks, every cargo test, a short run of
# every fuzz target, the compatibility suite and the packaging checks. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
command -v memccapable >/dev/null 2>&1 || need_apt+=(libmemcached-tools)
command -v nc >/dev/null 2>&1 || need_apt+=(netcat-openbsd)
# tests/tls.rs makes its test CA and certificates with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

command -v cargo-fmt >/dev/null 2>&1 || rustup component add rustfmt
command -v cargo-clippy >/dev/null 2>&1 || rustup component add clippy

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets -- -D warnings

log "cargo test"
cargo test --all-targets

log "fuzz smoke (every target, a short fixed time, committed seeds)"
scripts/fuzz.sh smoke

log "compatibility suite (clients, twemproxy, mcrouter stream, exporter fields)"
scripts/compat.sh

if [ -x packaging/test.sh ]; then
    log "packaging checks"
    packaging/test.sh
fi

log "all checks passed"
