"""python-binary-memcached with SASL PLAIN against gannet started with -S
and MEMCACHED_SASL_PWDB naming a generated password file."""
import os
import tempfile
from pathlib import Path

import bmemcached
import bmemcached.exceptions
import pytest

from conftest import Server, gannet_bin

USER = "gannet-user"
PASSWORD = "s3cret-pw"


@pytest.fixture
def sasl_gannet(monkeypatch):
    # Not under tmp_path: that directory is private to the test user, and
    # gannet runs as `nobody` when the suite runs as root.
    fd, name = tempfile.mkstemp(prefix="gannet-sasl-", suffix=".pwdb")
    os.close(fd)
    pwdb = Path(name)
    # A third field after the password is ignored (the pwdb convention).
    pwdb.write_text(f"other:nope\n{USER}:{PASSWORD}:extra\n")
    pwdb.chmod(0o644)
    # The daemon reads the variable at its first login attempt; Popen
    # passes this environment to it.
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", str(pwdb))
    try:
        s = Server(gannet_bin(), ["-S"]).start()
        try:
            yield s
        finally:
            s.stop()
    finally:
        pwdb.unlink()


def client(server, user, password):
    return bmemcached.Client((server.addr,), user, password, socket_timeout=2)


def test_sasl_plain_login_then_commands(sasl_gannet):
    mc = client(sasl_gannet, USER, PASSWORD)
    try:
        assert mc.set("k", "v") is True
        assert mc.get("k") == "v"
        assert mc.set("n", 10) is True
        assert mc.incr("n", 5) == 15
        assert mc.decr("n", 3) == 12
        assert mc.delete("k") is True
        assert mc.get("k") is None
        # This client reports a NOT_FOUND delete as True as well.
        assert mc.delete("k") is True
        (stats,) = mc.stats().values()
        # One successful login on this connection, no failures.
        assert stats["auth_cmds"] == b"1"
        assert stats["auth_errors"] == b"0"
    finally:
        mc.disconnect_all()


@pytest.mark.parametrize("user,password", [(USER, "wrong"), ("nobody", PASSWORD), (USER, "s3cret"), (USER, PASSWORD + ":extra")])
def test_sasl_wrong_credentials_are_refused(sasl_gannet, user, password):
    bad = client(sasl_gannet, user, password)
    try:
        # The client authenticates when it opens its connection, on the
        # first command. The server answers status 0x20 "Auth failure."
        # (as memcached does); this client only maps 0x08 to
        # InvalidCredentials, so it raises the base MemcachedException.
        with pytest.raises(bmemcached.exceptions.MemcachedException) as err:
            bad.set("k", "v")
        assert type(err.value) is bmemcached.exceptions.MemcachedException
        assert err.value.code == 0x20
        assert "Auth failure." in err.value.message
    finally:
        bad.disconnect_all()
    # Nothing was stored, and the refusal was counted.
    good = client(sasl_gannet, USER, PASSWORD)
    try:
        assert good.get("k") is None
        (stats,) = good.stats().values()
        assert stats["auth_cmds"] == b"2"
        assert stats["auth_errors"] == b"1"
    finally:
        good.disconnect_all()


def test_sasl_required_without_credentials(sasl_gannet):
    """A client that does not log in is refused on its first command."""
    anon = bmemcached.Client((sasl_gannet.addr,), socket_timeout=2)
    try:
        with pytest.raises(bmemcached.exceptions.MemcachedException) as err:
            anon.set("k", "v")
        assert err.value.code == 0x20
    finally:
        anon.disconnect_all()
