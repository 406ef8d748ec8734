//! Where the daemon listens and how it reports a listener it cannot set
//! up, measured against the real memcached: the addresses `-l` (or its
//! absence) gives, a port another server holds, failure messages and exit
//! codes, and the `proto[...]:` listener prefix.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin_packet, show, Kind, Server, MEMCACHED};

const GANNET: &str = env!("CARGO_BIN_EXE_gannet");

fn program(kind: Kind) -> &'static str {
    match kind {
        Kind::Gannet => GANNET,
        Kind::Memcached => {
            common::require_file(MEMCACHED);
            MEMCACHED
        }
    }
}

fn root_args() -> Vec<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        vec!["-u".into(), "nobody".into()]
    } else {
        Vec::new()
    }
}

/// A server process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `kind` with `args` (and `-U 0`, `-u nobody` as root), its stderr
/// on a file opened for reading *and* writing. Why: glibc's first `perror`
/// on a write-only stderr (a pipe) resets errno to EINVAL, so memcached's
/// line after a `bind(): ...` line would read `Invalid argument` there but
/// the real reason on a terminal or the journal; gannet always prints the
/// real one (docs/COMPATIBILITY.md).
fn spawn(kind: Kind, args: &[&str]) -> (Proc, std::fs::File) {
    spawn_with_env(kind, args, &[])
}

/// `spawn` with extra environment variables.
fn spawn_with_env(kind: Kind, args: &[&str], env: &[(&str, &str)]) -> (Proc, std::fs::File) {
    let path = common::temp_path("listeners-stderr");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("stderr file");
    let _ = std::fs::remove_file(&path);
    let child = Command::new(program(kind))
        .envs(env.iter().copied())
        .args(root_args())
        .args(["-U", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file.try_clone().expect("dup")))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
    (Proc(child), file)
}

/// Run `kind` with `args`, expecting it to exit within 5 s: its exit code
/// and stderr.
fn run_to_exit(kind: Kind, args: &[&str]) -> (Option<i32>, String) {
    let (mut p, mut file) = spawn(kind, args);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = p.0.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "{} {args:?} kept running",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut err).unwrap();
    (status.code(), err)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A port free on both 0.0.0.0 and [::].
fn free_dual_port() -> u16 {
    for _ in 0..50 {
        let v4 = TcpListener::bind("0.0.0.0:0").expect("bind v4");
        let port = v4.local_addr().unwrap().port();
        if v6_only_listener(port).is_some() {
            return port;
        }
    }
    panic!("no port free on both families");
}

/// Wait until `addr` accepts (at most 5 s).
fn wait_accepting(addr: &str, who: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        if let Some(st) = who.0.try_wait().unwrap() {
            panic!("server exited ({st}) before {addr} accepted");
        }
        assert!(Instant::now() < deadline, "{addr} never accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bind_failures_read_like_memcached() {
    // A plain socket holding a port on 127.0.0.1, and one holding a port
    // on both wildcard addresses.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port().to_string();
    let wild_port = free_dual_port();
    let _wild4 = TcpListener::bind(("0.0.0.0", wild_port)).unwrap();
    let _wild6 = v6_only_listener(wild_port).expect("[::] port free");
    let wild = wild_port.to_string();
    let free = free_port().to_string();
    let free2 = free_port().to_string();
    let dup = format!("127.0.0.1:{free2},127.0.0.1:{free2}");
    let second_busy = format!("127.0.0.1:{free},127.0.0.1:{held}");
    // 192.0.2.1 (TEST-NET-1) is never an address of this machine.
    let cases: Vec<Vec<&str>> = vec![
        vec!["-p", &held, "-l", "127.0.0.1"],
        vec!["-p", &wild],
        vec!["-p", &free, "-l", "192.0.2.1"],
        vec!["-p", &free, "-l", "192.0.2.1,127.0.0.1"],
        vec!["-p", &free, "-l", &dup],
        vec!["-p", &free, "-l", &second_busy],
        vec!["-p", "0", "-U", &free, "-l", "192.0.2.1"],
        // Ports are memcached's ints, read by getaddrinfo: -1 is "any".
        vec!["-p", "-5", "-l", "127.0.0.1"],
        vec!["-s", "/nonexistent-gannet-dir/sock"],
    ];
    for args in &cases {
        let mc = run_to_exit(Kind::Memcached, args);
        let ours = run_to_exit(Kind::Gannet, args);
        assert_eq!(mc.0, Some(71), "memcached {args:?}: {}", mc.1);
        assert_eq!(ours, mc, "{args:?}");
    }
}

/// An IPv6 listener on [::]:port, v6-only (as memcached's), so the IPv4
/// wildcard can be held separately; `None` if the port is taken.
fn v6_only_listener(port: u16) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // sockaddr is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        let rc = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        if rc != 0 {
            return None;
        }
        assert_eq!(libc::listen(fd, 8), 0);
        Some(owned)
    }
}

#[test]
fn a_busy_port_is_refused_whoever_holds_it() {
    // SO_REUSEPORT would let a second gannet share the first one's port
    // and take half its connections; memcached refuses the port instead.
    for holder in [Kind::Gannet, Kind::Memcached] {
        for starter in [Kind::Gannet, Kind::Memcached] {
            let port = free_port().to_string();
            let args = ["-p", port.as_str(), "-l", "127.0.0.1", "-t", "4"];
            let (mut first, _err) = spawn(holder, &args);
            wait_accepting(&format!("127.0.0.1:{port}"), &mut first);
            let (code, err) = run_to_exit(starter, &args);
            assert_eq!(
                (code, err.as_str()),
                (
                    Some(71),
                    "failed to listen on one of interface(s) 127.0.0.1: Address already in use\n"
                ),
                "{} started on {}'s port",
                starter.name(),
                holder.name()
            );
        }
    }
}

#[test]
fn without_l_both_address_families_are_served() {
    for kind in [Kind::Gannet, Kind::Memcached] {
        for listen in [None, Some("*")] {
            let port = free_dual_port().to_string();
            let mut args = vec!["-p", port.as_str()];
            if let Some(l) = listen {
                args.extend(["-l", l]);
            }
            let (mut p, _err) = spawn(kind, &args);
            for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
                wait_accepting(&addr, &mut p);
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                std::io::Write::write_all(&mut s, b"version\r\n").unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap();
                assert!(
                    buf[..n].starts_with(b"VERSION "),
                    "{} {args:?} on {addr}: {}",
                    kind.name(),
                    show(&buf[..n])
                );
            }
        }
    }
}

#[test]
fn per_entry_port_applies_to_udp_and_p_0_turns_tcp_off() {
    // memcached binds UDP on an entry's own port too, and with -p 0 binds
    // no TCP at all, whatever ports -l names.
    for kind in [Kind::Gannet, Kind::Memcached] {
        let own = free_port();
        let udp = free_port().to_string();
        let entry = format!("127.0.0.1:{own}");
        let (mut p, _err) = spawn(kind, &["-p", "0", "-U", &udp, "-l", &entry]);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.is_empty() && Instant::now() < deadline {
            assert!(p.0.try_wait().unwrap().is_none(), "{} exited", kind.name());
            sock.send_to(
                b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n",
                ("127.0.0.1", own),
            )
            .unwrap();
            let mut buf = [0u8; 256];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                got = buf[..n].to_vec();
            }
        }
        assert!(
            got.len() > 8 && got[8..].starts_with(b"VERSION "),
            "{}: no UDP reply on the entry's port: {}",
            kind.name(),
            show(&got)
        );
        assert!(
            TcpStream::connect(("127.0.0.1", own)).is_err(),
            "{}: TCP listens with -p 0",
            kind.name()
        );
    }
}

#[test]
fn proto_prefix_sets_the_listeners_protocol() {
    let version = bin_packet(0x0b, &[], &[], &[], 0, 0);
    for kind in [Kind::Gannet, Kind::Memcached] {
        let ascii = free_port();
        let binary = free_port();
        let spec = format!("proto[ascii]:127.0.0.1:{ascii},proto[binary]:127.0.0.1:{binary}");
        let server = Server::start(kind, &["-l", &spec]);
        // What a reply is: a binary response, a text VERSION line, nothing;
        // and whether the server closed.
        let outcome = |port: u16, input: &[u8]| {
            let mut c = common::Client::connect(port).unwrap();
            let r = c.exchange(input, 24);
            let what = match r.bytes.first() {
                None => "nothing".to_string(),
                Some(0x81) => "binary reply".to_string(),
                Some(_) if r.bytes.starts_with(b"VERSION ") => "text reply".to_string(),
                Some(_) => show(&r.bytes),
            };
            (what, r.closed)
        };
        let text: &[u8] = b"version\r\n";
        let three_texts: &[u8] = b"version\r\nversion\r\nversion\r\n";
        let cases: [(&str, u16, &[u8], &str, bool); 6] = [
            (
                "default listener negotiates",
                server.port(),
                &version,
                "binary reply",
                false,
            ),
            ("ascii listener, text", ascii, text, "text reply", false),
            // A binary request is an unfinished text line.
            ("ascii listener, binary", ascii, &version, "nothing", false),
            (
                "binary listener, binary",
                binary,
                &version,
                "binary reply",
                false,
            ),
            // Less than a header is not judged yet; a header's worth of
            // text is a bad magic.
            (
                "binary listener, short text",
                binary,
                text,
                "nothing",
                false,
            ),
            (
                "binary listener, text",
                binary,
                three_texts,
                "nothing",
                true,
            ),
        ];
        for (name, port, input, what, closed) in cases {
            assert_eq!(
                outcome(port, input),
                (what.to_string(), closed),
                "{}: {name}",
                kind.name()
            );
        }
    }
}

/// Start `kind` with `-p -1` style arguments and `MEMCACHED_PORT_FILENAME`,
/// and return the published file's lines once it appears.
fn port_file_lines(kind: Kind, args: &[&str]) -> (Proc, Vec<String>) {
    let name = common::temp_path("ports");
    let name_str = name.to_str().expect("utf-8 temp dir");
    let (mut p, _err) = spawn_with_env(kind, args, &[("MEMCACHED_PORT_FILENAME", name_str)]);
    let text = common::wait_port_file(&mut p.0, &name)
        .unwrap_or_else(|why| panic!("{} {args:?}: {why}", kind.name()));
    (p, text.lines().map(str::to_string).collect())
}

#[test]
fn port_minus_one_is_published_in_the_port_file() {
    for kind in [Kind::Gannet, Kind::Memcached] {
        // Without -l: one line per wildcard address, each its own port;
        // with -l and UDP: one line per transport.
        let cases: [(&[&str], [&str; 2]); 2] = [
            (&["-p", "-1", "-U", "0"], ["TCP INET", "TCP INET6"]),
            (
                &["-p", "-1", "-U", "-1", "-l", "127.0.0.1"],
                ["TCP INET", "UDP INET"],
            ),
        ];
        let mut lines = Vec::new();
        let mut procs = Vec::new();
        for (args, want) in cases {
            let (p, got) = port_file_lines(kind, args);
            let shape: Vec<&str> = got.iter().map(|l| l.split(": ").next().unwrap()).collect();
            assert_eq!(shape, want, "{} {args:?}: {got:?}", kind.name());
            procs.push(p);
            lines = got;
        }
        // The published TCP port serves.
        let port: u16 = lines[0].split(": ").nth(1).unwrap().parse().unwrap();
        assert_ne!(port, 0);
        let mut c = common::Client::connect(port).expect("the published port serves");
        let r = c.exchange(b"version\r\n", 10);
        assert!(r.bytes.starts_with(b"VERSION "), "{}", show(&r.bytes));
    }
}

#[test]
fn an_unwritable_port_file_is_reported_and_the_server_starts() {
    let port = free_port().to_string();
    let mut outcomes = Vec::new();
    for kind in [Kind::Memcached, Kind::Gannet] {
        let name = "/nonexistent-gannet-dir/ports";
        let (mut p, mut file) = spawn_with_env(
            kind,
            &["-p", &port, "-l", "127.0.0.1"],
            &[("MEMCACHED_PORT_FILENAME", name)],
        );
        wait_accepting(&format!("127.0.0.1:{port}"), &mut p);
        drop(p);
        let mut err = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut err).unwrap();
        outcomes.push(err);
    }
    assert_eq!(
        outcomes[0],
        "Failed to open \"/nonexistent-gannet-dir/ports.lck\": No such file or directory\n"
    );
    assert_eq!(outcomes[1], outcomes[0]);
}
