"""Real client libraries against gannet: pymemcache (text), pylibmc (text
and binary, ketama over three servers), python-binary-memcached."""
import pytest
import pylibmc
import bmemcached
from pymemcache.client.base import Client as PymemcacheClient


def pm(server, **kw):
    return PymemcacheClient(("127.0.0.1", server.port), connect_timeout=2, timeout=2, **kw)


# --- pymemcache: every client method -------------------------------------

def test_pymemcache_storage_and_retrieval(gannet):
    c = pm(gannet, default_noreply=False)
    assert c.set("a", b"1", expire=0, flags=5) is True
    assert c.get("a") == b"1"
    assert c.add("a", b"x") is False
    assert c.add("b", b"2") is True
    assert c.replace("a", b"3") is True
    assert c.replace("missing", b"3") is False
    assert c.append("a", b"4") is True
    assert c.prepend("a", b"0") is True
    assert c.get("a") == b"034"
    assert c.get("missing") is None
    assert c.get("missing", default=b"d") == b"d"
    assert c.set_many({"m1": b"x", "m2": b"y", "m3": b"z"}) == []
    assert c.get_many(["m1", "m2", "m3", "nope"]) == {"m1": b"x", "m2": b"y", "m3": b"z"}
    assert c.get_multi(["m1"]) == {"m1": b"x"}
    assert c.set_multi({"m4": b"w"}) == []
    c.close()


def test_pymemcache_cas_and_gets(gannet):
    c = pm(gannet, default_noreply=False)
    c.set("k", b"v1")
    value, cas = c.gets("k")
    assert value == b"v1" and cas is not None
    assert c.cas("k", b"v2", cas) is True
    assert c.cas("k", b"v3", cas) is False          # EXISTS: the item changed
    assert c.cas("nokey", b"v", b"1") is None        # NOT_FOUND
    many = c.gets_many(["k", "absent"])
    assert many["k"][0] == b"v2" and "absent" not in many
    assert c.gets("absent") == (None, None)


def test_pymemcache_incr_decr_touch_delete(gannet):
    c = pm(gannet, default_noreply=False)
    c.set("n", b"10")
    assert c.incr("n", 5) == 15
    assert c.decr("n", 20) == 0                      # decr stops at 0
    c.set("n", b"18446744073709551615")
    assert c.incr("n", 1) == 0                       # incr wraps at 2^64
    assert c.incr("absent", 1) is None
    assert c.decr("absent", 1) is None
    assert c.touch("n", 100) is True
    assert c.touch("absent", 100) is False
    assert c.delete("n") is True
    assert c.delete("n") is False
    c.set_many({"d1": b"1", "d2": b"2"})
    assert c.delete_many(["d1", "d2"]) is True
    assert c.delete_multi(["d1"]) is True
    assert c.get_many(["d1", "d2"]) == {}


def test_pymemcache_gat_gats(gannet):
    c = pm(gannet, default_noreply=False)
    c.set("g", b"val", flags=0)
    # raw_command returns the reply without its end token.
    reply = c.raw_command(b"gat 100 g", b"END\r\n")
    assert reply == b"VALUE g 0 3\r\nval\r\n"
    reply = c.raw_command(b"gats 100 g", b"END\r\n")
    assert reply.startswith(b"VALUE g 0 3 ") and reply.endswith(b"\r\nval\r\n")
    assert c.raw_command(b"gat 100 absent", b"END\r\n") == b""


def test_pymemcache_noreply(gannet):
    c = pm(gannet)                                   # default_noreply=True
    assert c.set("q", b"1") is True
    assert c.add("q2", b"1") is True
    assert c.append("q", b"2") is True
    assert c.incr("q", 1, noreply=True) is None
    assert c.delete("q2") is True
    assert c.touch("q", 10) is True
    c.flush_all(noreply=True)
    # noreply sends nothing back: a request that does answer, on the same
    # connection, proves the flush ran before another connection reads.
    assert c.version().startswith(b"1.6.18")
    c2 = pm(gannet, default_noreply=False)
    assert c2.get("q") is None
    assert c2.version().startswith(b"1.6.18")


def test_pymemcache_admin(gannet):
    c = pm(gannet, default_noreply=False)
    c.set("x", b"1")
    v = c.version()
    assert v.startswith(b"1.6.18"), v
    st = c.stats()
    assert st[b"curr_items"] == 1 and st[b"cmd_set"] >= 1
    assert b"libevent" in st
    settings = c.stats("settings")
    assert settings[b"maxconns"] > 0
    assert c.flush_all(noreply=False) is True
    assert c.get("x") is None
    assert c.flush_all(delay=0, noreply=False) is True
    assert c.cache_memlimit(64) is True
    assert c.raw_command(b"verbosity 1", b"\r\n") == b"OK"
    c.quit()
    c2 = pm(gannet, default_noreply=False)
    assert c2.set("after", b"quit") is True
    c2.close()


def test_pymemcache_large_and_binary_values(gannet):
    c = pm(gannet, default_noreply=False)
    big = bytes(range(256)) * 4000                   # ~1 MB minus a bit
    assert c.set("big", big) is True
    assert c.get("big") == big
    with pytest.raises(Exception):
        c.set("toolarge", b"x" * (1024 * 1024 + 1))  # SERVER_ERROR object too large
    value = b"a\r\nb\x00c"
    c2 = pm(gannet, default_noreply=False)
    assert c2.set("crlf", value) is True
    assert c2.get("crlf") == value


# --- pylibmc: text and binary, ketama over three servers -----------------

KETAMA = {"ketama": True, "ketama_weighted": False, "tcp_nodelay": True,
          "connect_timeout": 2000, "receive_timeout": 2000000, "send_timeout": 2000000}


def ketama_client(servers, binary):
    return pylibmc.Client([s.addr for s in servers], binary=binary, behaviors=KETAMA)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_pylibmc_ketama_spreads_keys(gannet3, binary):
    mc = ketama_client(gannet3, binary)
    keys = {f"ketama:{i}": f"value-{i}".encode() for i in range(300)}
    for k, v in keys.items():
        assert mc.set(k, v), k
    for k, v in keys.items():
        assert mc.get(k) == v, k
    got = mc.get_multi(list(keys))
    assert got == keys
    counts = [int(s.stats()["curr_items"]) for s in gannet3]
    assert all(n > 0 for n in counts), f"keys not spread: {counts}"
    assert sum(counts) == len(keys), counts
    # A second client with the same server list finds every key too.
    other = ketama_client(gannet3, binary)
    assert other.get_multi(list(keys)) == keys


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_pylibmc_operations(gannet, binary):
    mc = pylibmc.Client([gannet.addr], binary=binary, behaviors={"cas": True, "connect_timeout": 2000})
    assert mc.set("a", "1")
    assert mc.get("a") == "1"
    assert mc.add("a", "2") is False
    assert mc.replace("a", "3")
    assert mc.append("a", "4") and mc.prepend("a", "0")
    assert mc.get("a") == "034"
    assert mc.incr("a", 1) == 35
    assert mc.decr("a", 100) == 0
    value, cas = mc.gets("a")
    # memcached decrements in place and pads the shorter number with spaces.
    assert value == "0  "
    assert mc.cas("a", "9", cas)
    assert not mc.cas("a", "10", cas)
    assert mc.touch("a", 100)
    assert mc.delete("a")
    assert not mc.delete("a")
    assert mc.set_multi({"x": 1, "y": [1, 2]}) == []
    assert mc.get_multi(["x", "y", "z"]) == {"x": 1, "y": [1, 2]}
    assert mc.delete_multi(["x", "y"])
    stats = mc.get_stats()
    assert stats and "curr_items" in stats[0][1]
    assert mc.flush_all()


# --- python-binary-memcached ---------------------------------------------

def test_bmemcached_basic(gannet):
    mc = bmemcached.Client((gannet.addr,), socket_timeout=2)
    assert mc.set("a", "1")
    assert mc.get("a") == "1"
    assert mc.add("a", "2") is False
    assert mc.replace("a", "3")
    assert mc.get("a") == "3"
    assert mc.set("n", 5)
    assert mc.incr("n", 2) == 7
    assert mc.decr("n", 10) == 0
    value, cas = mc.gets("a")
    assert value == "3" and cas
    assert mc.cas("a", "4", cas)
    assert not mc.cas("a", "5", cas)
    assert not mc.set_multi({"m1": "x", "m2": "y"})  # returns the failed keys
    assert mc.get_multi(["m1", "m2", "m3"]) == {"m1": "x", "m2": "y"}
    assert mc.delete("a")
    assert mc.delete_multi(["m1", "m2"])
    stats = mc.stats()
    assert any("curr_items" in v for v in stats.values())
    assert mc.flush_all()
    assert mc.get("n") is None
    mc.disconnect_all()
