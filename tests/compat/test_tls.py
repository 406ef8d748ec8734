"""TLS (-Z) with a real client: pymemcache over an ssl.SSLContext against
gannet and the reference memcached, with a test CA made here by the
openssl CLI. Client certificates required and refused, a plaintext client
on a TLS port, the notls: listener, and refresh_certs."""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from pymemcache.client.base import Client as PymemcacheClient

from conftest import MEMCACHED, Server, free_port, gannet_bin, require


def openssl(cwd, *args):
    exe = require("openssl")
    done = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {args}: {done.stderr}"


def make_ca(d, name, cn):
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={cn}")


def make_leaf(d, name, ca, cn, server):
    openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    ext = ("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
           if server else "extendedKeyUsage=clientAuth\n")
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    publish(d)


def publish(d):
    # The servers drop root for nobody before refresh_certs reads again.
    os.chmod(d, 0o755)
    for n in os.listdir(d):
        os.chmod(os.path.join(d, n), 0o644)


@pytest.fixture
def pki():
    # Not pytest's tmp_path: its parents are private to root, and the
    # servers (running as nobody) read the files again on refresh_certs.
    d = tempfile.mkdtemp(prefix="gannet-compat-tls-")
    make_ca(d, "ca", "gannet compat CA")
    make_ca(d, "rogueca", "another CA")
    make_leaf(d, "server", "ca", "localhost", True)
    make_leaf(d, "client", "ca", "compat client", False)
    make_leaf(d, "rogue", "rogueca", "rogue client", False)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(binary, pki, extra_opts=""):
    """A server with TLS on .port and a plaintext notls: listener on .plain."""
    plain = free_port()
    opts = f"ssl_chain_cert={pki}/server.pem,ssl_key={pki}/server.key"
    if extra_opts:
        opts += "," + extra_opts
    s = Server(binary, ["-Z", "-o", opts, "-l", f"notls:127.0.0.1:{plain}"]).start()
    s.plain = plain
    return s


@pytest.fixture(params=["gannet", "memcached"])
def binary(request):
    if request.param == "memcached":
        return require(MEMCACHED)
    return gannet_bin()


def context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
    if cert:
        ctx.load_cert_chain(f"{pki}/{cert}.pem", f"{pki}/{cert}.key")
    return ctx


def client(port, ctx):
    return PymemcacheClient(("localhost", port), tls_context=ctx, connect_timeout=3, timeout=3,
                            default_noreply=False)


def test_pymemcache_over_tls(binary, pki):
    s = start(binary, pki)
    try:
        c = client(s.port, context(pki))
        assert c.set("t", b"secret", expire=0, flags=3) is True
        assert c.get("t") == b"secret"
        assert c.get_many(["t", "absent"]) == {"t": b"secret"}
        big = os.urandom(300_000)
        assert c.set("big", big) is True
        assert c.get("big") == big
        assert c.incr("absent", 1) is None
        assert c.version().startswith(b"1.6.18")
        c.close()
    finally:
        s.stop()


def test_client_certificate_required_and_refused(binary, pki):
    s = start(binary, pki, f"ssl_ca_cert={pki}/ca.pem,ssl_verify_mode=2")
    try:
        good = client(s.port, context(pki, "client"))
        assert good.set("k", b"v") is True
        assert good.get("k") == b"v"
        for ctx in (context(pki), context(pki, "rogue")):
            refused = client(s.port, ctx)
            with pytest.raises((ssl.SSLError, OSError)):
                refused.get("k")
                refused.get("k")  # TLS 1.3: the alert may come on the second read
            refused.close()
    finally:
        s.stop()


def test_plaintext_client_on_tls_port_is_closed(binary, pki):
    s = start(binary, pki)
    try:
        t0 = time.time()
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"get foo\r\n")
            data = b""
            while True:
                try:
                    chunk = sock.recv(4096)  # a hang raises socket.timeout
                except ConnectionResetError:  # memcached: closed with input unread
                    break
                if not chunk:
                    break
                data += chunk
        assert time.time() - t0 < 3
        assert b"END" not in data
        assert data == b"" or data[0] == 0x15  # nothing, or a TLS alert record
    finally:
        s.stop()


def test_notls_listener_is_plaintext(binary, pki):
    s = start(binary, pki)
    try:
        plain = PymemcacheClient(("127.0.0.1", s.plain), connect_timeout=2, timeout=2,
                                 default_noreply=False)
        assert plain.set("shared", b"1") is True
        assert client(s.port, context(pki)).get("shared") == b"1"
    finally:
        s.stop()


def peer_cert(port, pki):
    ctx = context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_refresh_certs_serves_the_new_certificate(binary, pki):
    s = start(binary, pki)
    try:
        first = peer_cert(s.port, pki)
        make_leaf(pki, "server", "ca", "localhost", True)
        with socket.create_connection(("127.0.0.1", s.plain), timeout=3) as admin:
            admin.sendall(b"refresh_certs\r\n")
            assert admin.recv(100) == b"OK\r\n"
        second = peer_cert(s.port, pki)
        assert first != second
        c = client(s.port, context(pki))
        assert c.set("after", b"refresh") is True
    finally:
        s.stop()
