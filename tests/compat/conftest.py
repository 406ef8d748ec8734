"""Shared fixtures for the compatibility suite: start gannet (and the
reference memcached) on 127.0.0.1 and stop them afterwards.

Servers bind a port the kernel picks (`-p -1`) and publish it through
memcached's MEMCACHED_PORT_FILENAME, so no test guesses a free port for a
server. free_port() is left for peers that cannot do that (nutcracker, an
extra `-l` entry).

The binary is $GANNET_BIN, else target/debug/gannet under $CARGO_TARGET_DIR
or the repository. A missing binary or peer is a failure, never a skip.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEMCACHED = "/usr/bin/memcached"


def gannet_bin():
    env = os.environ.get("GANNET_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    path = Path(target) / "debug" / "gannet"
    if not path.exists():
        path = REPO / "target" / "debug" / "gannet"
    assert path.exists(), f"gannet binary not found ({path}); run cargo build or set GANNET_BIN"
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(path_or_cmd):
    found = shutil.which(path_or_cmd) or (os.path.exists(path_or_cmd) and path_or_cmd)
    assert found, f"{path_or_cmd} is missing: scripts/compat.sh installs it"
    return found


def wait_port(port, proc, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.03)
    raise AssertionError(f"port {port} never accepted: {proc.args}")


def wait_port_file(path, proc, timeout=5.0):
    """The TCP INET port a server wrote to its MEMCACHED_PORT_FILENAME.

    The file appears (renamed from `<path>.lck`) once every listener is up,
    so the port accepts connections when this returns.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.args}")
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            time.sleep(0.01)
            continue
        for line in text.splitlines():
            if line.startswith("TCP INET: "):
                return int(line.split(": ", 1)[1])
        raise AssertionError(f"no TCP INET line in the port file of {proc.args}: {text!r}")
    raise AssertionError(f"no port file within {timeout} s: {proc.args}")


class Server:
    """One memcached-compatible server process on 127.0.0.1."""

    def __init__(self, binary, extra=()):
        self.binary = binary
        self.extra = list(extra)
        self.proc = None
        self.port = None

    def start(self):
        # Retried only for an extra `-l` entry on a guessed port (test_tls).
        for _ in range(3):
            fd, portfile = tempfile.mkstemp(prefix="gannet-compat-port-")
            os.close(fd)
            os.unlink(portfile)
            args = [self.binary, "-p", "-1", "-l", "127.0.0.1", "-U", "0", "-t", "2"]
            if os.geteuid() == 0:
                args += ["-u", "nobody"]
            env = dict(os.environ, MEMCACHED_PORT_FILENAME=portfile)
            self.proc = subprocess.Popen(args + self.extra, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env=env)
            try:
                self.port = wait_port_file(portfile, self.proc)
                return self
            except AssertionError:
                self.stop()
            finally:
                for leftover in (portfile, portfile + ".lck"):
                    try:
                        os.unlink(leftover)
                    except FileNotFoundError:
                        pass
        raise AssertionError(f"{self.binary} did not start")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def raw(self, data, timeout=2.0, until=None):
        """Send raw bytes; read until `until` ends the reply, or timeout."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            out = b""
            deadline = time.time() + timeout
            while time.time() < deadline:
                if until is not None and out.endswith(until):
                    break
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
            return out

    def stats(self, group=""):
        cmd = b"stats" + (b" " + group.encode() if group else b"") + b"\r\n"
        reply = self.raw(cmd, until=b"END\r\n")
        assert reply.endswith(b"END\r\n"), f"stats {group}: {reply[-200:]!r}"
        out = {}
        for line in reply.split(b"\r\n")[:-2]:
            parts = line.decode().split(" ", 2)
            assert parts[0] == "STAT" and len(parts) == 3, f"bad stats line {line!r}"
            out[parts[1]] = parts[2]
        return out


@pytest.fixture
def gannet():
    s = Server(gannet_bin()).start()
    yield s
    s.stop()


@pytest.fixture
def gannet3():
    servers = [Server(gannet_bin()).start() for _ in range(3)]
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def memcached():
    require(MEMCACHED)
    s = Server(MEMCACHED).start()
    yield s
    s.stop()
