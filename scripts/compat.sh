#!/usr/bin/env bash
# Compatibility suite: real clients (pymemcache, pylibmc text+binary with
# ketama, python-binary-memcached), twemproxy in front of a gannet pool,
# mcrouter's request stream compared with memcached, and the fields the
# Prometheus memcached_exporter reads. See tests/compat/.
#
# Installs what it needs (Debian packages, a venv in .venv/), builds gannet
# and runs pytest over tests/compat/. Exits non-zero on any failure,
# including pytest finding no test (exit 5). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Pinned client versions: the suite checks these exact libraries.
PY_PACKAGES=(
    "pymemcache==4.0.0"
    "pylibmc==1.6.3"
    "python-binary-memcached==0.33.0"
    "pytest>=8"
    "pytest-timeout>=2.3"
)

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=/usr/bin/python3

need_apt=()
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need_apt+=(memcached)
command -v nutcracker >/dev/null 2>&1 || [ -x /usr/sbin/nutcracker ] || need_apt+=(nutcracker)
# test_tls.py makes its test CA and certificates with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# pylibmc builds against libmemcached (and zlib) when no wheel fits.
[ -e /usr/include/libmemcached/memcached.h ] || need_apt+=(libmemcached-dev)
[ -e /usr/include/zlib.h ] || need_apt+=(zlib1g-dev)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
"$PYTHON" - <<'PY' || need_apt+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}" >/dev/null
fi
# nutcracker lives in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PYTHON" -m venv .venv
fi
log "installing Python packages into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"

log "cargo build"
cargo build --quiet
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$PWD/$TARGET_DIR ;; esac
export GANNET_BIN=${GANNET_BIN:-$TARGET_DIR/debug/gannet}
[ -x "$GANNET_BIN" ] || { echo "gannet binary missing: $GANNET_BIN" >&2; exit 1; }

log "pytest tests/compat (gannet: $GANNET_BIN)"
# No __pycache__ in the work tree.
export PYTHONDONTWRITEBYTECODE=1
set +e
.venv/bin/python -m pytest tests/compat -p no:cacheprovider --timeout 120 -q -rfE "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "compat: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
