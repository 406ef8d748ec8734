"""What mcrouter sends a memcached backend (mcrouter is not packaged):
single-key get/gets, gat/gats, storage commands, cas, incr/decr, touch,
`delete <key> 0`, `flush_all`, and `version` as its health probe, pipelined
on one connection with replies expected in order. The same byte stream goes
to gannet and to the real memcached; replies must be identical after
normalising the version string and CAS values."""
import re
import socket
import time

import pytest

from conftest import MEMCACHED, Server, gannet_bin, require


def read_replies(sock, count, timeout=5.0):
    """Read exactly `count` replies of mcrouter-style requests."""
    buf = b""
    replies = []
    deadline = time.time() + timeout
    sock.settimeout(0.5)
    pos = 0
    current = b""
    while len(replies) < count:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            assert time.time() < deadline, f"timed out after {len(replies)}/{count} replies: {buf[-200:]!r}"
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f"connection closed after {len(replies)}/{count} replies"
            buf += chunk
            continue
        line = buf[pos:nl + 2]
        if line.startswith(b"VALUE "):
            size = int(line.split()[3])
            if len(buf) < nl + 2 + size + 2:
                assert time.time() < deadline, "timed out in a value"
                chunk = sock.recv(65536)
                assert chunk, "closed in a value"
                buf += chunk
                continue
            current += line + buf[nl + 2:nl + 2 + size + 2]
            pos = nl + 2 + size + 2
            continue
        current += line
        pos = nl + 2
        if not line.startswith(b"VALUE "):
            replies.append(current)
            current = b""
    return replies


class Normaliser:
    def __init__(self):
        self.cas = {}

    def __call__(self, reply):
        reply = re.sub(rb"^VERSION \S+", b"VERSION <v>", reply)

        def cas(m):
            n = self.cas.setdefault(m.group(2), len(self.cas) + 1)
            return m.group(1) + b"#%d" % n
        return re.sub(rb"(VALUE \S+ \d+ \d+ )(\d+)", cas, reply)


def mcrouter_requests():
    """(request, description) pairs in the order mcrouter would send them."""
    reqs = [b"version\r\n"]                                  # health probe
    for i in range(20):
        v = b"value-%d" % i
        reqs.append(b"set route:%d %d 0 %d\r\n%s\r\n" % (i, i, len(v), v))
    for i in range(25):                                       # single-key gets
        reqs.append(b"get route:%d\r\n" % i)
        reqs.append(b"gets route:%d\r\n" % i)
    reqs += [
        b"gat 3600 route:1\r\n", b"gats 3600 route:2\r\n", b"gat 0 route:missing\r\n",
        b"add route:1 0 0 1\r\nx\r\n", b"add route:new 0 0 1\r\nx\r\n",
        b"replace route:2 7 0 3\r\nabc\r\n", b"replace route:none 0 0 1\r\nx\r\n",
        b"append route:3 0 0 2\r\n++\r\n", b"prepend route:3 0 0 2\r\n--\r\n",
        b"get route:3\r\n",
        b"set ctr 0 0 2\r\n10\r\n", b"incr ctr 5\r\n", b"decr ctr 100\r\n",
        b"incr nokey 1\r\n", b"touch route:4 3600\r\n", b"touch nokey 10\r\n",
        b"delete route:5 0\r\n", b"delete route:5 0\r\n", b"delete route:6\r\n",
        b"get route:5\r\n",
        b"gets route:7\r\n",
        b"cas route:7 0 0 3 999999999\r\nnew\r\n",
        b"set route:big 0 0 100000\r\n" + b"b" * 100000 + b"\r\n",
        b"get route:big\r\n",
        b"set route:exp 0 -1 1\r\nx\r\n", b"get route:exp\r\n",
        b"version\r\n",
        b"flush_all 0\r\n", b"get route:1\r\n",
        b"version\r\n",
    ]
    return reqs


@pytest.fixture
def pair():
    require(MEMCACHED)
    servers = [Server(MEMCACHED).start(), Server(gannet_bin()).start()]
    yield servers
    for s in servers:
        s.stop()


def run(server, requests, batch):
    """Send `requests` pipelined `batch` at a time; return normalised replies."""
    norm = Normaliser()
    out = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(requests), batch):
            chunk = requests[i:i + batch]
            s.sendall(b"".join(chunk))
            out += [norm(r) for r in read_replies(s, len(chunk))]
    return out


@pytest.mark.parametrize("batch", [1, 7, 1000], ids=["serial", "pipelined-7", "all-at-once"])
def test_mcrouter_stream_matches_memcached(pair, batch):
    reqs = mcrouter_requests()
    expected = run(pair[0], reqs, batch)
    got = run(pair[1], reqs, batch)
    diffs = [(reqs[i][:60], e, g) for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    assert not diffs, diffs[:5]


def test_mcrouter_cas_with_real_token(pair):
    """gets then cas with the returned token, as mcrouter forwards it."""
    results = []
    for server in pair:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"set c 0 0 1\r\n1\r\ngets c\r\n")
            r = read_replies(s, 2)
            token = r[1].split(b"\r\n")[0].split()[4]
            s.sendall(b"cas c 0 0 1 " + token + b"\r\n2\r\ncas c 0 0 1 " + token + b"\r\n3\r\nget c\r\n")
            results.append(read_replies(s, 3))
    assert results[0] == results[1] == [b"STORED\r\n", b"EXISTS\r\n", b"VALUE c 0 1\r\n2\r\nEND\r\n"]


def test_in_order_replies_under_pipelining(gannet):
    """1000 distinct requests in one write: the n-th reply answers the n-th request."""
    with socket.create_connection(("127.0.0.1", gannet.port), timeout=5) as s:
        reqs = []
        for i in range(500):
            v = b"%d" % i
            reqs.append(b"set order:%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
            reqs.append(b"get order:%d\r\n" % i)
        s.sendall(b"".join(reqs))
        replies = read_replies(s, len(reqs), timeout=10)
    for i in range(500):
        assert replies[2 * i] == b"STORED\r\n"
        v = b"%d" % i
        assert replies[2 * i + 1] == b"VALUE order:%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(v), v)


def test_version_probe_on_fresh_connections(gannet):
    """mcrouter probes a backend marked down with `version` on a new connection."""
    for _ in range(20):
        reply = gannet.raw(b"version\r\n", until=b"\r\n")
        assert re.fullmatch(rb"VERSION 1\.6\.18\S*\r\n", reply), reply
