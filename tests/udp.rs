//! The UDP transport (`-U <port>`), against the reference memcached and
//! gannet on 127.0.0.1: frame headers, single- and multi-datagram replies,
//! dropped malformed datagrams, the amplification bound, and `-S -U`.
//! Every receive has a timeout, so a missing reply fails instead of
//! hanging.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kind, Server, MEMCACHED};

/// How long to wait for the first datagram of a reply.
const WAIT: Duration = Duration::from_millis(2000);
/// How long to wait for each further datagram of a reply.
const GAP: Duration = Duration::from_millis(150);
/// How long to wait when no reply is expected.
const QUIET: Duration = Duration::from_millis(400);

struct Udp {
    server: Server,
    sock: UdpSocket,
    port: u16,
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("local_addr").port()
}

impl Udp {
    fn start(kind: Kind) -> Udp {
        let port = free_udp_port();
        let p = port.to_string();
        let server = Server::start(kind, &["-U", &p]);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        Udp { server, sock, port }
    }

    fn send_raw(&self, dgram: &[u8]) {
        self.sock
            .send_to(dgram, ("127.0.0.1", self.port))
            .expect("send_to");
    }

    fn send(&self, id: u16, payload: &[u8]) {
        let mut d = frame(id, 0, 1, 0);
        d.extend_from_slice(payload);
        self.send_raw(&d);
    }

    /// Datagrams received: the first within `timeout`, each next one
    /// within `GAP` of the previous.
    fn recv_all(&self, timeout: Duration) -> Vec<Vec<u8>> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => out.push(buf[..n].to_vec()),
                Err(_) => break,
            }
            self.sock.set_read_timeout(Some(GAP)).unwrap();
        }
        out
    }

    /// Send one request datagram and reassemble the reply: every datagram
    /// must carry `id`, reserved 0, and be at most 1400 bytes. Returns the
    /// headers and the payloads concatenated in arrival-and-sequence order.
    fn request(&self, id: u16, payload: &[u8]) -> (Vec<[u16; 4]>, Vec<u8>) {
        self.send(id, payload);
        let got = self.recv_all(WAIT);
        let mut headers = Vec::new();
        let mut bytes = Vec::new();
        for d in &got {
            assert!(d.len() >= 8, "{}: short datagram", self.server.describe());
            assert!(d.len() <= 1400, "datagram of {} bytes", d.len());
            let h = header(d);
            assert_eq!(h[0], id, "request id echoed");
            assert_eq!(h[3], 0, "reserved is 0");
            headers.push(h);
            bytes.extend_from_slice(&d[8..]);
        }
        (headers, bytes)
    }
}

fn frame(id: u16, seq: u16, total: u16, reserved: u16) -> Vec<u8> {
    let mut d = Vec::new();
    for v in [id, seq, total, reserved] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d
}

fn header(d: &[u8]) -> [u16; 4] {
    let f = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    [f(0), f(2), f(4), f(6)]
}

fn both(test: impl Fn(&Udp)) {
    for kind in [Kind::Memcached, Kind::Gannet] {
        let u = Udp::start(kind);
        test(&u);
    }
}

#[test]
fn set_get_and_multi_get() {
    both(|u| {
        let (h, r) = u.request(1, b"set a 5 0 3\r\nabc\r\n");
        assert_eq!(r, b"STORED\r\n", "{}", u.server.describe());
        assert_eq!(h, vec![[1, 0, 1, 0]]);
        let (h, r) = u.request(2, b"set b 0 0 2\r\nxy\r\n");
        assert_eq!((h.len(), &r[..]), (1, &b"STORED\r\n"[..]));
        let (h, r) = u.request(3, b"get a\r\n");
        assert_eq!(h, vec![[3, 0, 1, 0]]);
        assert_eq!(r, b"VALUE a 5 3\r\nabc\r\nEND\r\n");
        let (_, r) = u.request(4, b"get a missing b\r\n");
        assert_eq!(r, b"VALUE a 5 3\r\nabc\r\nVALUE b 0 2\r\nxy\r\nEND\r\n");
        let (h, r) = u.request(0xfffe, b"get nothing\r\n");
        assert_eq!(h, vec![[0xfffe, 0, 1, 0]]);
        assert_eq!(r, b"END\r\n");
    });
}

/// A binary GET whose 16,361-byte key makes a head longer than memcached's
/// 16 KiB stream read buffer: over TCP memcached closes without a reply
/// (tests/binary_protocol.rs), but its UDP buffer holds the datagram, so
/// the key is judged as any other: `Invalid arguments`.
#[test]
fn a_binary_head_past_16k_is_judged_in_a_datagram() {
    both(|u| {
        for key_len in [251u16, 16361, 30000] {
            let mut get = vec![0x80, 0x00];
            get.extend_from_slice(&key_len.to_be_bytes());
            get.extend_from_slice(&[0, 0, 0, 0]);
            get.extend_from_slice(&u32::from(key_len).to_be_bytes());
            get.extend_from_slice(&[0, 0, 0, 9]);
            get.extend_from_slice(&[0; 8]);
            get.resize(24 + usize::from(key_len), b'k');
            let (h, r) = u.request(5, &get);
            let what = format!("{} key {key_len}", u.server.describe());
            assert_eq!(h, vec![[5, 0, 1, 0]], "{what}");
            assert_eq!(r.len(), 24 + 17, "{what}");
            assert_eq!(
                (r[0], r[7], &r[12..16]),
                (0x81, 0x04, &[0, 0, 0, 9][..]),
                "{what}"
            );
            assert_eq!(&r[24..], b"Invalid arguments", "{what}");
        }
    });
}

#[test]
fn multi_datagram_reply() {
    both(|u| {
        let value: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut set = b"set big 0 0 5000\r\n".to_vec();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        let (_, r) = u.request(10, &set);
        assert_eq!(r, b"STORED\r\n", "{}", u.server.describe());
        let (h, r) = u.request(11, b"get big\r\n");
        // 18 + 5000 + 2 + 5 = 5025 bytes: 3 x 1392 + 849.
        assert_eq!(h.len(), 4, "{}", u.server.describe());
        for (i, hh) in h.iter().enumerate() {
            assert_eq!(*hh, [11, i as u16, 4, 0]);
        }
        let mut want = b"VALUE big 0 5000\r\n".to_vec();
        want.extend_from_slice(&value);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(r, want);
    });
}

#[test]
fn malformed_datagrams_get_no_reply() {
    both(|u| {
        u.send(1, b"set k 0 0 1\r\nv\r\n");
        assert_eq!(u.recv_all(WAIT).len(), 1);
        // Shorter than a header; a bare header; multi-datagram requests.
        u.send_raw(&[0, 1, 0, 0, 0, 1, 0]);
        u.send_raw(&frame(2, 0, 1, 0));
        for total in [0u16, 2, 3] {
            let mut d = frame(3, 0, total, 0);
            d.extend_from_slice(b"get k\r\n");
            u.send_raw(&d);
        }
        // An incomplete request.
        u.send(4, b"get k");
        assert!(
            u.recv_all(QUIET).is_empty(),
            "{} replied to a malformed datagram",
            u.server.describe()
        );
        // Still serving.
        let (_, r) = u.request(5, b"get k\r\n");
        assert_eq!(r, b"VALUE k 0 1\r\nv\r\nEND\r\n");
    });
}

#[test]
fn sequence_and_reserved_of_a_request_are_ignored() {
    // memcached 1.6.18 reads only the id and the count of a request.
    both(|u| {
        let mut d = frame(9, 3, 1, 5);
        d.extend_from_slice(b"version\r\n");
        u.send_raw(&d);
        let got = u.recv_all(WAIT);
        assert_eq!(got.len(), 1, "{}", u.server.describe());
        assert_eq!(header(&got[0]), [9, 0, 1, 0]);
        assert!(got[0][8..].starts_with(b"VERSION "));
    });
}

#[test]
fn gannet_bounds_amplification() {
    // A 1 MB value is within the item limit; a tiny UDP get must not draw
    // it (memcached would send ~750 datagrams).
    let u = Udp::start(Kind::Gannet);
    let mut c = u.server.connect();
    let n = 200_000;
    let mut set = format!("set huge 0 0 {n}\r\n").into_bytes();
    set.extend_from_slice(&vec![b'z'; n]);
    set.extend_from_slice(b"\r\n");
    let r = c.exchange(&set, 8);
    assert_eq!(r.bytes, b"STORED\r\n");
    let (h, r) = u.request(7, b"get huge\r\n");
    assert_eq!(h, vec![[7, 0, 1, 0]]);
    assert_eq!(r, b"SERVER_ERROR reply too large for UDP\r\n");
}

#[test]
fn gannet_udp_is_off_by_default() {
    let server = Server::start(Kind::Gannet, &[]);
    let _ = server.port();
    // Nothing listens on a fresh UDP port; the send may error or vanish.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free_udp_port();
    let mut d = frame(1, 0, 1, 0);
    d.extend_from_slice(b"version\r\n");
    let _ = sock.send_to(&d, ("127.0.0.1", port));
    sock.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0u8; 2048];
    assert!(sock.recv_from(&mut buf).is_err());
}

#[test]
fn sasl_refuses_udp_like_memcached() {
    let run = |program: &str| {
        let mut args = vec!["-S", "-U", "21999", "-p", "21999", "-l", "127.0.0.1"];
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            args.extend(["-u", "nobody"]);
        }
        let out = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        (out.status.code(), out.stderr)
    };
    common::require_file(MEMCACHED);
    let want = run(MEMCACHED);
    let got = run(env!("CARGO_BIN_EXE_gannet"));
    assert_eq!(want.0, Some(64));
    assert_eq!(
        String::from_utf8_lossy(&want.1),
        "ERROR: Cannot enable UDP while using binary SASL authentication.\n"
    );
    assert_eq!(got, want);
}

/// A burst of datagrams larger than the per-turn budget (`-R 2`) is served
/// entirely: the worker comes back for what its budget left behind even
/// though no new readiness event announces it.
#[test]
fn a_burst_beyond_the_per_turn_budget_is_all_answered() {
    for kind in [Kind::Memcached, Kind::Gannet] {
        let port = free_udp_port();
        let p = port.to_string();
        let server = Server::start(kind, &["-U", &p, "-R", "2", "-t", "1"]);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        let u = Udp { server, sock, port };
        for id in 0..40u16 {
            u.send(id, b"version\r\n");
        }
        let got = u.recv_all(WAIT);
        let mut ids: Vec<u16> = got.iter().map(|d| header(d)[0]).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..40).collect::<Vec<u16>>(),
            "{}",
            u.server.describe()
        );
        assert!(got.iter().all(|d| d[8..].starts_with(b"VERSION ")));
    }
}
