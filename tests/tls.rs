//! TLS (`-Z`) on 127.0.0.1 against gannet and, where behaviour is
//! compared, the reference memcached (Debian's build has TLS): handshakes
//! with a CA generated here by the `openssl` CLI, client certificates
//! required and refused, a plaintext client on a TLS port, the `notls:`
//! listener, `refresh_certs`, the `ssl_*` stats, and output backpressure
//! for a TLS client that never reads. The client side is rustls. Every
//! read has a timeout, so a hang fails instead of blocking the suite.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kind, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A temporary directory with a test PKI, removed on drop. Files are
/// world-readable because the servers drop root for `nobody` before
/// `refresh_certs` reads them again.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("the openssl CLI is needed to make test certificates (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA (`ca.pem`), a server certificate for localhost/127.0.0.1
    /// signed by it (`server.pem`, `server.key`), a client certificate
    /// signed by it (`client.*`), and a client certificate from another
    /// CA (`rogue.*`).
    fn new(tag: &str) -> Pki {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("gannet-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki { dir };
        pki.make_ca("ca", "gannet test CA");
        pki.make_ca("rogueca", "someone else's CA");
        pki.make_leaf("server", "ca", "localhost", true);
        pki.make_leaf("client", "ca", "test client", false);
        pki.make_leaf("rogue", "rogueca", "rogue client", false);
        pki.publish();
        pki
    }

    fn make_ca(&self, name: &str, cn: &str) {
        let subj = format!("/CN={cn}");
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subj,
            ],
        );
    }

    /// A leaf certificate `name.pem`/`name.key` signed by `ca`.
    fn make_leaf(&self, name: &str, ca: &str, cn: &str, server: bool) {
        let subj = format!("/CN={cn}");
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ],
        );
        let ext = format!("{name}.ext");
        let text = if server {
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        } else {
            "extendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.dir.join(&ext), text).unwrap();
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }

    /// Make every file readable by the unprivileged server.
    fn publish(&self) {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `-o ssl_chain_cert=..,ssl_key=..` plus `extra` suboptions.
    fn server_opts(&self, extra: &str) -> String {
        let mut o = format!(
            "ssl_chain_cert={},ssl_key={}",
            self.path("server.pem"),
            self.path("server.key")
        );
        if !extra.is_empty() {
            o.push(',');
            o.push_str(extra);
        }
        o
    }

    fn der(&self, name: &str) -> Vec<u8> {
        CertificateDer::from_pem_file(self.dir.join(name))
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(pki: &Pki, client_cert: Option<&str>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.dir.join("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client_cert {
        None => b.with_no_client_auth(),
        Some(name) => {
            let chain =
                vec![CertificateDer::from_pem_file(pki.dir.join(format!("{name}.pem"))).unwrap()];
            let key = PrivateKeyDer::from_pem_file(pki.dir.join(format!("{name}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(cfg)
}

/// A TLS text-protocol client.
struct Tls {
    s: StreamOwned<ClientConnection, TcpStream>,
}

impl Tls {
    /// Connect and finish the handshake (as far as the client can tell:
    /// with TLS 1.3 a refused client certificate shows on the first read).
    fn connect(port: u16, cfg: Arc<ClientConfig>) -> std::io::Result<Tls> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.set_write_timeout(Some(Duration::from_secs(5)))?;
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Tls { s })
    }

    /// Send `req` and read until the reply ends with `end`; an error or
    /// end of stream before that is returned as `Err` with what arrived.
    fn cmd(&mut self, req: &[u8], end: &[u8]) -> Result<Vec<u8>, String> {
        self.s.write_all(req).map_err(|e| format!("write: {e}"))?;
        self.s.flush().map_err(|e| format!("flush: {e}"))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.ends_with(end) {
            if Instant::now() > deadline {
                return Err(format!("timeout; got {:?}", String::from_utf8_lossy(&got)));
            }
            match self.s.read(&mut buf) {
                Ok(0) => return Err(format!("closed; got {:?}", String::from_utf8_lossy(&got))),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{e}; got {:?}", String::from_utf8_lossy(&got))),
            }
        }
        Ok(got)
    }

    /// The server's leaf certificate (DER).
    fn peer_leaf(&self) -> Vec<u8> {
        self.s.conn.peer_certificates().expect("server certificate")[0]
            .as_ref()
            .to_vec()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with TLS on its main port and a plaintext `notls:` listener
/// on a second port (for stats, and to test `notls:` itself).
fn start_tls(kind: Kind, pki: &Pki, extra_opts: &str) -> (Server, u16) {
    let plain = free_port();
    let listen = format!("notls:127.0.0.1:{plain}");
    let opts = pki.server_opts(extra_opts);
    let server = Server::start(kind, &["-Z", "-o", &opts, "-l", &listen, "-t", "2"]);
    (server, plain)
}

fn stat(plain_port: u16, name: &str) -> String {
    let mut c = common::Client::connect(plain_port).unwrap();
    let r = c.exchange(b"stats\r\n", usize::MAX);
    let text = String::from_utf8_lossy(&r.bytes);
    common::stat_value(&text, name)
        .unwrap_or("(absent)")
        .to_string()
}

#[test]
fn tls_round_trip_and_server_certificate() {
    let pki = Pki::new("roundtrip");
    let (server, _) = start_tls(Kind::Gannet, &pki, "");
    let mut c = Tls::connect(server.port(), client_config(&pki, None)).expect("handshake");
    assert_eq!(
        c.peer_leaf(),
        pki.der("server.pem"),
        "presented certificate"
    );
    let r = c
        .cmd(b"set k 5 0 3\r\nabc\r\nget k\r\n", b"END\r\n")
        .unwrap();
    assert_eq!(r, b"STORED\r\nVALUE k 5 3\r\nabc\r\nEND\r\n");
    // A 1 MB value crosses many TLS records both ways (and is read into
    // its item as it comes): every byte comes back in place.
    let big: Vec<u8> = (0..1000 * 1000).map(|i| b'a' + (i % 23) as u8).collect();
    let mut req = b"set big 0 0 1000000\r\n".to_vec();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    assert_eq!(c.cmd(&req, b"\r\n").unwrap(), b"STORED\r\n");
    let r = c.cmd(b"get big\r\n", b"END\r\n").unwrap();
    let head = b"VALUE big 0 1000000\r\n";
    assert_eq!(r.len(), head.len() + 1000 * 1000 + 7);
    assert!(r.starts_with(head) && r.ends_with(b"\r\nEND\r\n"));
    assert!(
        r[head.len()..head.len() + big.len()] == big[..],
        "value differs"
    );
    // Pipelined requests in one write get their replies in order.
    let r = c.cmd(&b"get k\r\n".repeat(200), b"END\r\n".as_slice());
    let r = r.unwrap();
    let want = b"VALUE k 5 3\r\nabc\r\nEND\r\n".repeat(200);
    let mut got = r;
    // The last END may have come before every reply: read the rest.
    while got.len() < want.len() {
        let mut buf = [0u8; 4096];
        let n = c.s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
    let r = c.cmd(b"quit\r\n", b"never").unwrap_err();
    assert!(r.starts_with("closed"), "quit: {r}");
}

#[test]
fn tls13_only_and_tls12_both_work_when_allowed() {
    let pki = Pki::new("versions");
    let tls12 = || {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.dir.join("ca.pem")).unwrap())
            .unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    // Default (ssl_min_version=2): TLS 1.2 is accepted.
    let (server, _) = start_tls(Kind::Gannet, &pki, "");
    let mut c = Tls::connect(server.port(), tls12()).expect("TLS 1.2 handshake");
    assert_eq!(
        c.s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(c
        .cmd(b"version\r\n", b"\r\n")
        .unwrap()
        .starts_with(b"VERSION "));
    drop(server);
    // ssl_min_version=3: TLS 1.2 is refused, 1.3 works.
    let (server, plain) = start_tls(Kind::Gannet, &pki, "ssl_min_version=3");
    let refused = Tls::connect(server.port(), tls12());
    assert!(refused.is_err(), "TLS 1.2 accepted with ssl_min_version=3");
    let mut c = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
    assert_eq!(
        c.s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(c.cmd(b"version\r\n", b"\r\n").is_ok());
    assert_eq!(stat(plain, "ssl_handshake_errors"), "1");
}

/// What a client gets from a server that requires a client certificate.
fn verify_outcomes(kind: Kind, pki: &Pki, mode: &str) -> Vec<(&'static str, bool)> {
    let ca = format!("ssl_ca_cert={},ssl_verify_mode={mode}", pki.path("ca.pem"));
    let (server, _) = start_tls(kind, pki, &ca);
    let mut out = Vec::new();
    for (label, cert) in [
        ("none", None),
        ("good", Some("client")),
        ("rogue", Some("rogue")),
    ] {
        let ok = match Tls::connect(server.port(), client_config(pki, cert)) {
            Ok(mut c) => match c.cmd(b"version\r\n", b"\r\n") {
                Ok(r) => r.starts_with(b"VERSION "),
                Err(_) => false,
            },
            Err(_) => false,
        };
        out.push((label, ok));
    }
    out
}

#[test]
fn client_certificates_required_and_refused_like_memcached() {
    let pki = Pki::new("verify");
    for (mode, want) in [
        ("0", [true, true, true]),
        ("1", [true, true, false]),
        ("2", [false, true, false]),
        ("3", [false, true, false]),
    ] {
        for kind in [Kind::Memcached, Kind::Gannet] {
            let got = verify_outcomes(kind, &pki, mode);
            let flags: Vec<bool> = got.iter().map(|g| g.1).collect();
            assert_eq!(
                flags,
                want,
                "{} ssl_verify_mode={mode}: (none, good, rogue) client certificates",
                kind.name()
            );
        }
    }
}

#[test]
fn refused_handshakes_are_counted() {
    let pki = Pki::new("count");
    let ca = format!("ssl_ca_cert={},ssl_verify_mode=2", pki.path("ca.pem"));
    let (server, plain) = start_tls(Kind::Gannet, &pki, &ca);
    let before: u64 = stat(plain, "ssl_handshake_errors").parse().unwrap();
    for _ in 0..3 {
        if let Ok(mut c) = Tls::connect(server.port(), client_config(&pki, None)) {
            assert!(c.cmd(b"version\r\n", b"\r\n").is_err());
        }
    }
    let mut c = Tls::connect(server.port(), client_config(&pki, Some("client"))).unwrap();
    assert!(c.cmd(b"version\r\n", b"\r\n").is_ok());
    let after: u64 = stat(plain, "ssl_handshake_errors").parse().unwrap();
    assert_eq!(after - before, 3);
}

#[test]
fn plaintext_client_on_tls_port_is_closed_without_a_reply() {
    let pki = Pki::new("plain");
    for kind in [Kind::Memcached, Kind::Gannet] {
        let (mut server, _) = start_tls(kind, &pki, "");
        let mut c = server.connect();
        let t0 = Instant::now();
        c.send(b"get foo\r\n");
        let r = c.wait_close(Duration::from_secs(5));
        assert!(r.closed, "{}: connection left open", kind.name());
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{}: slow close",
            kind.name()
        );
        // Never a plaintext answer; at most a TLS alert record (0x15).
        assert!(
            r.bytes.is_empty() || r.bytes[0] == 0x15,
            "{}: answered {:?}",
            kind.name(),
            common::show(&r.bytes)
        );
        assert!(!r.bytes.windows(3).any(|w| w == b"END"));
        // A client that connects and says nothing is not answered either,
        // and the server still serves TLS clients afterwards.
        let mut idle = server.connect();
        assert!(idle
            .read_reply(1, Duration::from_millis(300))
            .bytes
            .is_empty());
        let mut t = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
        assert!(t.cmd(b"version\r\n", b"\r\n").is_ok(), "{}", kind.name());
        if kind == Kind::Gannet {
            // Not through assert_alive: its plaintext client would be refused.
            assert!(server.wait_exit(Duration::from_millis(10)).is_none());
        }
    }
}

#[test]
fn notls_listener_speaks_plaintext_beside_tls() {
    let pki = Pki::new("notls");
    for kind in [Kind::Memcached, Kind::Gannet] {
        let (server, plain) = start_tls(kind, &pki, "");
        let mut p = common::Client::connect(plain).unwrap();
        let r = p.exchange(b"set n 0 0 2\r\nhi\r\n", 8);
        assert_eq!(r.bytes, b"STORED\r\n", "{}", kind.name());
        let mut t = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
        assert_eq!(
            t.cmd(b"get n\r\n", b"END\r\n").unwrap(),
            b"VALUE n 0 2\r\nhi\r\nEND\r\n",
            "{}",
            kind.name()
        );
        // A TLS client on the notls port fails its handshake.
        assert!(Tls::connect(plain, client_config(&pki, None)).is_err());
    }
}

#[test]
fn refresh_certs_serves_new_certificate_to_new_connections() {
    let pki = Pki::new("refresh");
    let (server, plain) = start_tls(Kind::Gannet, &pki, "");
    // A fresh client configuration per connection: a resumed session
    // would report the certificate of the session it resumes.
    let cfg = || client_config(&pki, None);
    let mut old = Tls::connect(server.port(), cfg()).unwrap();
    let first = pki.der("server.pem");
    assert_eq!(old.peer_leaf(), first);
    // New key and certificate in the same files.
    pki.make_leaf("server", "ca", "localhost", true);
    pki.publish();
    let second = pki.der("server.pem");
    assert_ne!(first, second);
    std::thread::sleep(Duration::from_millis(1100));
    assert_ne!(stat(plain, "time_since_server_cert_refresh"), "0");
    assert_eq!(old.cmd(b"refresh_certs\r\n", b"\r\n").unwrap(), b"OK\r\n");
    assert_eq!(stat(plain, "time_since_server_cert_refresh"), "0");
    let mut new = Tls::connect(server.port(), cfg()).unwrap();
    assert_eq!(
        new.peer_leaf(),
        second,
        "new connection after refresh_certs"
    );
    assert!(new.cmd(b"version\r\n", b"\r\n").is_ok());
    // The connection made before keeps its session.
    assert!(old.cmd(b"version\r\n", b"\r\n").is_ok());

    // A broken key: memcached's error line, and the last good
    // certificate stays.
    std::fs::write(pki.dir.join("server.key"), "not a key\n").unwrap();
    let r = old.cmd(b"refresh_certs\r\n", b"\r\n").unwrap();
    let r = String::from_utf8_lossy(&r).into_owned();
    assert!(
        r.starts_with(&format!(
            "Error loading the key: {} : ",
            pki.path("server.key")
        )),
        "{r:?}"
    );
    let mut after = Tls::connect(server.port(), cfg()).unwrap();
    assert_eq!(after.peer_leaf(), second);
    assert!(after.cmd(b"version\r\n", b"\r\n").is_ok());
    // refresh_certs works from the plaintext listener too.
    let mut p = common::Client::connect(plain).unwrap();
    let r = p.exchange(b"refresh_certs\r\n", 3);
    assert!(String::from_utf8_lossy(&r.bytes).starts_with("Error loading the key: "));
}

#[test]
fn refresh_certs_without_tls_answers_like_memcached() {
    for kind in [Kind::Memcached, Kind::Gannet] {
        let server = Server::start(kind, &[]);
        let mut c = server.connect();
        let r = c.exchange(b"refresh_certs\r\nrefresh_certs x y\r\n", 46);
        assert_eq!(
            common::show(&r.bytes),
            common::show(b"Error TLS not enabled\r\nError TLS not enabled\r\n"),
            "{}",
            kind.name()
        );
    }
}

/// `STAT` names of a group, in order, through a plaintext connection.
fn stat_names(plain: u16, group: &str) -> Vec<String> {
    let mut c = common::Client::connect(plain).unwrap();
    let r = c.exchange(format!("stats {group}\r\n").as_bytes(), usize::MAX);
    common::stat_names(&String::from_utf8_lossy(&r.bytes))
}

#[test]
fn tls_stats_have_memcached_names_and_order() {
    let pki = Pki::new("stats");
    let (mc, mc_plain) = start_tls(Kind::Memcached, &pki, "ssl_session_cache");
    let (gn, gn_plain) = start_tls(Kind::Gannet, &pki, "ssl_session_cache");
    for group in ["", "settings"] {
        let (a, b) = (stat_names(mc_plain, group), stat_names(gn_plain, group));
        assert!(a.iter().any(|n| n.starts_with("ssl_")), "{group}: {a:?}");
        assert_eq!(a, b, "stats {group} with -Z: memcached vs gannet names");
    }
    for (name, want) in [
        ("ssl_enabled", "yes"),
        ("ssl_session_cache", "yes"),
        ("ssl_min_version", "tlsv1.2"),
    ] {
        let mut c = common::Client::connect(gn_plain).unwrap();
        let r = c.exchange(b"stats settings\r\n", usize::MAX);
        let line = format!("STAT {name} {want}\r\n");
        assert!(
            String::from_utf8_lossy(&r.bytes).contains(&line),
            "gannet lacks {line:?}"
        );
    }
    drop((mc, gn));
    // Without -Z neither prints the TLS counters.
    let plain = Server::start(Kind::Gannet, &[]);
    assert!(!stat_names(plain.port(), "")
        .iter()
        .any(|n| n == "ssl_handshake_errors"));
}

#[test]
fn session_resumption_with_and_without_session_cache() {
    let pki = Pki::new("resume");
    for opt in ["", "ssl_session_cache"] {
        let (server, plain) = start_tls(Kind::Gannet, &pki, opt);
        let cfg = client_config(&pki, None);
        let mut a = Tls::connect(server.port(), Arc::clone(&cfg)).unwrap();
        // The TLS 1.3 ticket arrives with the first reply.
        assert!(a.cmd(b"version\r\n", b"\r\n").is_ok());
        let mut b = Tls::connect(server.port(), Arc::clone(&cfg)).unwrap();
        assert!(b.cmd(b"version\r\n", b"\r\n").is_ok());
        assert_eq!(
            b.s.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "second connection not resumed with {opt:?}"
        );
        let new_sessions = stat(plain, "ssl_new_sessions");
        if opt.is_empty() {
            assert_eq!(new_sessions, "(absent)");
        } else {
            assert!(new_sessions.parse::<u64>().unwrap() >= 1, "{new_sessions}");
        }
    }
}

#[test]
fn tls_client_that_never_reads_keeps_server_memory_bounded() {
    let pki = Pki::new("backpressure");
    let (mut server, plain) = start_tls(Kind::Gannet, &pki, "");
    let mut c = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
    let value = vec![b'v'; 512 * 1024];
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(c.cmd(&req, b"\r\n").unwrap(), b"STORED\r\n");
    let rss0 = common::rss_kb(server.pid());
    // 2000 gets = 1 GB of replies; the client never reads them. Writes
    // stop once the server stops reading (write timeout 5 s).
    let gets = b"get big\r\n".repeat(2000);
    let t0 = Instant::now();
    let _ = c.s.write_all(&gets);
    assert!(t0.elapsed() < Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = common::rss_kb(server.pid());
    assert!(
        rss1 < rss0 + 32 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB for a client that never reads"
    );
    // Others are still served.
    let mut p = common::Client::connect(plain).unwrap();
    assert!(p.exchange(b"version\r\n", 10).bytes.starts_with(b"VERSION"));
    let mut t = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
    assert!(t.cmd(b"version\r\n", b"\r\n").is_ok());
    assert!(server.wait_exit(Duration::from_millis(10)).is_none());
}

/// gannet-bench's `--tls` mode against gannet -Z: pipelined 90/10 load
/// through rustls on both sides, every reply checked by the bench.
#[test]
fn bench_drives_tls_without_errors() {
    let pki = Pki::new("bench");
    let (server, plain) = start_tls(Kind::Gannet, &pki, "");
    let port = server.port().to_string();
    let ca = pki.path("ca.pem");
    for pipeline in ["1", "32"] {
        let out = Command::new(env!("CARGO_BIN_EXE_gannet-bench"))
            .args(["-p", &port, "--tls", "--tls-ca", &ca, "--json"])
            .args(["-c", "4", "-P", pipeline, "-n", "2000", "--prefill"])
            .args(["-w", "0.2", "-d", "0.5"])
            .output()
            .expect("run gannet-bench");
        let json = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| -> f64 {
            let pat = format!("\"{name}\":");
            let at = json
                .find(&pat)
                .unwrap_or_else(|| panic!("{name} in {json}"))
                + pat.len();
            let end = json[at..].find([',', '}']).unwrap() + at;
            json[at..end].parse().unwrap_or(-1.0)
        };
        assert!(field("ops") > 100.0, "P{pipeline}: {json}");
        assert_eq!(field("errors"), 0.0, "P{pipeline}: {json}");
        assert_eq!(field("misses"), 0.0, "P{pipeline}: {json}");
    }
    // The bench's load went through the TLS port: no handshake failed.
    assert_eq!(stat(plain, "ssl_handshake_errors"), "0");
    // Without --tls-ca the bench refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_gannet-bench"))
        .args(["-p", &port, "--tls", "-d", "0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
}

/// Garbage of many shapes on the TLS port: every connection is closed
/// (or left waiting for a record that never completes), the server never
/// answers in plaintext, never dies, and keeps serving TLS clients while
/// a stalled half-handshake is open.
#[test]
fn garbage_on_tls_port_never_hurts_the_server() {
    let pki = Pki::new("garbage");
    let (mut server, plain) = start_tls(Kind::Gannet, &pki, "");
    // A client that starts a handshake and stalls.
    let mut stalled = server.connect();
    stalled.send(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let shapes: Vec<Vec<u8>> = vec![
        b"\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff], // record longer than allowed
        vec![0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4], // application data first
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28], // an alert first
        vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00], // empty ClientHello
        vec![0x80, 0x2e, 0x01, 0x00, 0x02], // SSLv2 hello
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    for i in 0..60 {
        let junk: Vec<u8> = if i < shapes.len() {
            shapes[i].clone()
        } else {
            (0..(rnd() % 3000) as usize).map(|_| rnd() as u8).collect()
        };
        let mut c = server.connect();
        c.send(&junk);
        let r = c.read_reply(usize::MAX, Duration::from_millis(50));
        assert!(
            r.bytes.is_empty() || r.bytes[0] == 0x15,
            "case {i}: plaintext answer {:?}",
            common::show(&r.bytes)
        );
    }
    let mut t = Tls::connect(server.port(), client_config(&pki, None)).unwrap();
    assert!(t.cmd(b"version\r\n", b"\r\n").is_ok());
    assert!(server.wait_exit(Duration::from_millis(10)).is_none());
    let errors: u64 = stat(plain, "ssl_handshake_errors").parse().unwrap();
    assert!(errors >= 10, "ssl_handshake_errors {errors}");
    drop(stalled);
}
