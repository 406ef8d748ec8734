"""twemproxy (Debian `nutcracker`) in front of three gannet servers, with
the pool configuration of tests/compat/twemproxy.yml (ketama, fnv1a_64,
auto_eject_hosts)."""
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from conftest import free_port, require, wait_port

CONFIG = Path(__file__).with_name("twemproxy.yml")
KEYS = {f"user:{i}": f"v{i}".encode() for i in range(300)}


@pytest.fixture
def proxy(gannet3, tmp_path):
    nutcracker = require("nutcracker")
    text = CONFIG.read_text()
    listen = free_port()
    text = text.replace("127.0.0.1:22121", f"127.0.0.1:{listen}")
    for i, s in enumerate(gannet3):
        text = text.replace(f"127.0.0.1:{22201 + i}:1", f"127.0.0.1:{s.port}:1")
    conf = tmp_path / "nutcracker.yml"
    conf.write_text(text)
    check = subprocess.run([nutcracker, "-t", "-c", str(conf)], capture_output=True, timeout=10)
    assert check.returncode == 0, check.stderr
    stats_port = free_port()
    proc = subprocess.Popen(
        [nutcracker, "-c", str(conf), "-s", str(stats_port), "-a", "127.0.0.1", "-i", "100",
         "-o", str(tmp_path / "nutcracker.log"), "-p", str(tmp_path / "nutcracker.pid")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(listen, proc)
        yield listen, gannet3, stats_port
    finally:
        proc.kill()
        proc.wait(timeout=5)


def proxy_stats(port):
    """nutcracker's statistics (JSON, sent on connect)."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def client(port):
    return Client(("127.0.0.1", port), connect_timeout=2, timeout=2, default_noreply=False)


def owner_of(servers):
    """Which backend holds each key (asked directly)."""
    owners = {}
    for idx, s in enumerate(servers):
        c = client(s.port)
        for k in c.get_many(list(KEYS)):
            owners[k] = idx
        c.close()
    return owners


def test_sets_and_multigets_spread_over_backends(proxy):
    port, servers, _ = proxy
    c = client(port)
    for k, v in KEYS.items():
        assert c.set(k, v) is True
    keys = list(KEYS)
    for i in range(0, len(keys), 50):                 # multi-gets split per backend
        chunk = keys[i:i + 50]
        assert c.get_many(chunk) == {k: KEYS[k] for k in chunk}
    assert c.get("absent") is None
    counts = [int(s.stats()["curr_items"]) for s in servers]
    assert all(n > 0 for n in counts), f"not spread: {counts}"
    assert sum(counts) == len(KEYS)
    # Other forwarded commands.
    assert c.add("user:0", b"x") is False
    assert c.append("user:1", b"+") is True and c.get("user:1") == b"v1+"
    c.set("ctr", b"1")
    assert c.incr("ctr", 41) == 42
    value, cas = c.gets("ctr")
    assert c.cas("ctr", b"7", cas) is True
    assert c.touch("ctr", 100) is True
    assert c.delete("ctr") is True and c.get("ctr") is None
    assert owner_of(servers).keys() >= set(KEYS) - {"user:1"}


def test_ejected_backend_keys_miss_others_hit(proxy):
    port, servers, stats_port = proxy
    c = client(port)
    for k, v in KEYS.items():
        assert c.set(k, v) is True
    owners = owner_of(servers)
    assert len(owners) == len(KEYS)
    victim = 1
    servers[victim].stop()
    # Until the proxy ejects the dead server, requests for its keys fail;
    # drive requests through until a whole pass is error-free (bounded).
    deadline = time.time() + 4
    clean = False
    while time.time() < deadline and not clean:
        clean = True
        for k in KEYS:
            try:
                c.get(k)
            except (MemcacheError, OSError):
                clean = False
                c = client(port)
                break
    assert clean, "proxy kept returning errors after the backend was killed"
    # The pool keeps serving: the victim's keys miss, the others hit.
    errors, wrong = 0, []
    for k, v in KEYS.items():
        try:
            got = c.get(k)
        except (MemcacheError, OSError):
            errors += 1
            c = client(port)
            continue
        expected = None if owners[k] == victim else v
        if got != expected:
            wrong.append((k, got, expected))
    assert errors == 0
    time.sleep(0.3)                                   # stats are aggregated every 100 ms
    pool = proxy_stats(stats_port)["gannet"]
    assert pool["server_ejects"] >= 1, pool
    assert pool["gannet-b"]["server_ejected_at"] > 0, pool
    assert pool["gannet-a"]["server_ejected_at"] == 0 == pool["gannet-c"]["server_ejected_at"], pool
    assert not wrong, wrong[:5]
    got = c.get_many(list(KEYS))
    assert got == {k: v for k, v in KEYS.items() if owners[k] != victim}
    # New writes land on the remaining servers and read back.
    for i in range(50):
        assert c.set(f"after:{i}", b"x") is True
        assert c.get(f"after:{i}") == b"x"
