#!/usr/bin/env bash
# Server CPU spent sending one large value to a client that reads it
# slowly, gannet and memcached side by side.
#
# Each round starts a fresh server (`-t 1 -m 1024 -I 256m`), stores one
# value of SIZE bytes, then a client with a 64 KiB receive buffer sends
# `get` and reads the reply 64 KiB at a time with a short pause after
# each read. The server's CPU time (utime + stime from /proc/PID/stat)
# over the reply is what is printed. A reply the socket cannot take at
# once waits in the server until the client frees room, so this shows
# what keeping and trimming that backlog costs.
#
# Usage: benches/slow_reader.sh   Environment: SIZE (bytes, default
# 200000000), ROUNDS (default 3), PAUSE (s after each read, default
# 0.0002), MEMCACHED (default /usr/bin/memcached), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-200000000}
ROUNDS=${ROUNDS:-3}
PAUSE=${PAUSE:-0.0002}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
TARGET=${CARGO_TARGET_DIR:-target}

[ -x "$MEMCACHED" ] || { echo "$MEMCACHED missing" >&2; exit 1; }
cargo build --release --quiet --bin gannet
GANNET=$TARGET/release/gannet
USER_ARGS=()
[ "$(id -u)" = 0 ] && USER_ARGS=(-u nobody)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

READER='
import os, socket, sys, time
port, pid, size, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
value = (b"0123456789abcdef" * (size // 16 + 1))[:size]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"set big 0 0 %d\r\n" % size + value + b"\r\n")
assert s.recv(100) == b"STORED\r\n"
s.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.connect(("127.0.0.1", port))
want = len(b"VALUE big 0 %d\r\n" % size) + size + len(b"\r\nEND\r\n")
c0, t0, got = cpu(), time.time(), 0
s.sendall(b"get big\r\n")
while got < want:
    d = s.recv(65536)
    assert d, "closed early"
    got += len(d)
    time.sleep(pause)
print(f"{cpu() - c0:.2f} {time.time() - t0:.2f}")
'

for round in $(seq 1 "$ROUNDS"); do
    for name in gannet memcached; do
        port=$(free_port)
        bin=$GANNET
        [ "$name" = memcached ] && bin=$MEMCACHED
        "$bin" "${USER_ARGS[@]}" -p "$port" -U 0 -l 127.0.0.1 -t 1 -m 1024 -I 256m &
        SERVER_PID=$!
        for _ in $(seq 50); do
            python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
            sleep 0.1
        done
        read -r cpu wall < <(python3 -c "$READER" "$port" "$SERVER_PID" "$SIZE" "$PAUSE")
        echo "round $round $name: server CPU ${cpu} s, wall ${wall} s"
        kill "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    done
done
