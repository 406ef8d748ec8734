//! Listening sockets.
//!
//! Every worker thread gets its own socket on each address, all in one
//! SO_REUSEPORT group, so the kernel spreads new connections over the
//! workers and no thread hands sockets to another. The unix socket cannot
//! be shared that way; one worker owns it.
//!
//! Why the first TCP socket of each address is bound *without*
//! SO_REUSEPORT: that option lets any process of the same user join the
//! port, so a second gannet started on a busy port would start, share the
//! connections with the first, and each would serve half the keys.
//! memcached refuses such a port (exit 71). The first socket is therefore
//! bound and listening as an ordinary socket, which no later ordinary
//! bind can share, and only then given SO_REUSEPORT so the other workers'
//! sockets can join it. Of two gannets starting at once, the second
//! `listen` on the port fails, so exactly one wins. UDP sockets stay
//! shareable, as memcached's are (SO_REUSEADDR lets two bind one port).
//!
//! Which addresses, and how failure is reported, follow memcached's
//! `server_sockets`: each `-l` entry (or, without `-l`, the passive
//! wildcard: `0.0.0.0` and `::`) is looked up with `getaddrinfo`; an
//! address already in use is skipped, and an entry fails only when none
//! of its addresses could be bound or a call failed for another reason
//! (printed as `bind(): reason`). Every entry is tried; the report ends
//! with one `failed to listen on ...` line naming the port (no `-l`) or
//! the whole `-l` string, with the reason of the first failure.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

use super::port_file::PortFile;
use super::resolve::{lookup, SockType};
use crate::config::{Protocol, Settings};
use crate::daemon::os_text;

/// The network transports `-l` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }

    /// Its `-p` or `-U`.
    fn port(self, s: &Settings) -> i32 {
        match self {
            Transport::Tcp => s.port,
            Transport::Udp => s.udp_port,
        }
    }
}

/// Why the listeners could not be set up, with what memcached prints.
#[derive(Debug)]
pub enum BindError {
    /// A TCP or UDP entry failed: the failed calls' lines
    /// (`bind(): reason`, `getaddrinfo(): reason`), what was being
    /// bound (`TCP port 11211`, `one of interface(s) <-l string>`) and
    /// the OS error number of the first failure (0 when the first failure
    /// was a lookup, which sets none: memcached then says `Success`).
    Network {
        calls: Vec<String>,
        target: String,
        errno: i32,
    },
    /// Out of descriptors while opening a socket (memcached gives up at
    /// once, `server_socket: Too many open files`).
    Descriptors(io::Error),
    /// The unix socket (`-s`): the failed call and its error.
    Unix {
        path: PathBuf,
        call: &'static str,
        err: io::Error,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Network {
                calls,
                target,
                errno,
            } => {
                for c in calls {
                    writeln!(f, "{c}")?;
                }
                let why = os_text(&io::Error::from_raw_os_error(*errno));
                write!(f, "failed to listen on {target}: {why}")
            }
            BindError::Descriptors(err) => write!(f, "server_socket: {}", os_text(err)),
            BindError::Unix { path, call, err } => {
                let why = os_text(err);
                write!(
                    f,
                    "{call}(): {why}\nfailed to listen on UNIX socket: {}: {why}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for BindError {}

/// One bound address: a socket for each worker, and what its
/// connections speak.
pub struct Endpoint {
    pub sockets: Vec<Socket>,
    /// Connections start a TLS handshake (`-Z`, unless `notls:`; TCP only).
    pub tls: bool,
    /// `-B`, or the entry's own `proto[...]:` prefix.
    pub protocol: Protocol,
}

/// One `-l` entry (or the implicit one), before lookup.
struct Entry<'a> {
    /// `None` = the passive wildcard (no `-l`, or memcached's `*`).
    host: Option<&'a str>,
    port: i32,
    tls: bool,
    protocol: Protocol,
}

/// The entries a transport binds: none when its port is 0 (memcached
/// skips a transport whose `-p`/`-U` is 0, whatever ports `-l` names);
/// else each `-l` entry on its own port if it names one (for both
/// transports, as memcached), or on the transport's port.
fn entries(s: &Settings, transport: Transport) -> Vec<Entry<'_>> {
    let port = transport.port(s);
    if port == 0 {
        return Vec::new();
    }
    if s.listen.is_empty() {
        return vec![Entry {
            host: None,
            port,
            tls: transport == Transport::Tcp && s.tls,
            protocol: s.protocol,
        }];
    }
    s.listen
        .iter()
        .map(|l| Entry {
            host: (l.host != "*").then_some(l.host.as_str()),
            port: l.port.unwrap_or(port),
            tls: transport == Transport::Tcp && s.tls && !l.notls,
            protocol: l.protocol.unwrap_or(s.protocol),
        })
        .collect()
}

/// Bind `copies` sockets on every address the settings ask `transport`
/// to serve (listening, for TCP), noting each in `ports`. Fails as
/// memcached would; see the module docs.
pub fn bind_network(
    s: &Settings,
    transport: Transport,
    copies: usize,
    mut ports: Option<&mut PortFile>,
) -> Result<Vec<Endpoint>, BindError> {
    let (ty, backlog) = match transport {
        Transport::Tcp => (SockType::Stream, Some(s.backlog)),
        Transport::Udp => (SockType::Datagram, None),
    };
    let mut out = Vec::new();
    let mut calls = Vec::new();
    // memcached's errno: the last failed call's, kept from the first
    // failed entry on.
    let mut errno = 0;
    let mut first_failure = None;
    for e in entries(s, transport) {
        let addrs = match lookup(e.host, e.port, ty) {
            Ok(addrs) => addrs,
            Err(why) => {
                calls.push(format!("getaddrinfo(): {}", why.0));
                first_failure.get_or_insert(errno);
                continue;
            }
        };
        let mut bound = 0;
        let mut failed = false;
        for addr in addrs {
            match bind_address(addr, ty, copies.max(1), backlog) {
                Ok((actual, sockets)) => {
                    bound += 1;
                    if let Some(p) = ports.as_deref_mut() {
                        p.record(transport, actual);
                    }
                    out.push(Endpoint {
                        sockets,
                        tls: e.tls,
                        protocol: e.protocol,
                    });
                }
                Err(Failure::Skip(err)) => errno = err.raw_os_error().unwrap_or(0),
                Err(Failure::Descriptors(err)) => return Err(BindError::Descriptors(err)),
                Err(Failure::Call(call, err)) => {
                    calls.push(format!("{call}(): {}", os_text(&err)));
                    errno = err.raw_os_error().unwrap_or(0);
                    failed = true;
                    break;
                }
            }
        }
        if failed || bound == 0 {
            first_failure.get_or_insert(errno);
        }
    }
    match first_failure {
        None => Ok(out),
        Some(errno) => Err(BindError::Network {
            calls,
            target: match &s.listen_spec {
                Some(spec) if !s.listen.is_empty() => format!("one of interface(s) {spec}"),
                _ => format!("{} port {}", transport.name(), transport.port(s)),
            },
            errno,
        }),
    }
}

/// How binding one address failed.
enum Failure {
    /// memcached moves on to the next address: in use, or no socket of
    /// this family can be made here (e.g. IPv6 disabled).
    Skip(io::Error),
    /// memcached stops: out of descriptors.
    Descriptors(io::Error),
    /// memcached fails the entry and prints `<call>(): <reason>`.
    Call(&'static str, io::Error),
}

/// `copies` non-blocking sockets on `addr` (listening when `backlog` is
/// given), the first exclusive while it is set up for TCP (module docs),
/// and the address they got (the kernel's port for port 0).
fn bind_address(
    addr: SocketAddr,
    ty: SockType,
    copies: usize,
    backlog: Option<i32>,
) -> Result<(SocketAddr, Vec<Socket>), Failure> {
    let exclusive = ty == SockType::Stream;
    let first = open(addr, ty, !exclusive)?;
    first.bind(&addr.into()).map_err(|e| in_use_or(e, "bind"))?;
    if let Some(b) = backlog {
        first.listen(b).map_err(|e| in_use_or(e, "listen"))?;
    }
    if exclusive && copies > 1 {
        first
            .set_reuse_port(true)
            .map_err(|e| Failure::Call("setsockopt", e))?;
    }
    // With port 0 the kernel picked one: the other workers join it.
    let actual = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let mut sockets = vec![first];
    for _ in 1..copies {
        let s = open(actual, ty, true)?;
        s.bind(&actual.into()).map_err(|e| in_use_or(e, "bind"))?;
        if let Some(b) = backlog {
            s.listen(b).map_err(|e| in_use_or(e, "listen"))?;
        }
        sockets.push(s);
    }
    Ok((actual, sockets))
}

fn in_use_or(err: io::Error, call: &'static str) -> Failure {
    if err.raw_os_error() == Some(libc::EADDRINUSE) {
        Failure::Skip(err)
    } else {
        Failure::Call(call, err)
    }
}

/// A non-blocking socket for `addr` with SO_REUSEADDR (IPv6 sockets
/// v6-only, as memcached's), and SO_REUSEPORT when `shared`.
fn open(addr: SocketAddr, ty: SockType, shared: bool) -> Result<Socket, Failure> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let ty = match ty {
        SockType::Stream => Type::STREAM,
        SockType::Datagram => Type::DGRAM,
    };
    let sock = Socket::new(domain, ty, None).map_err(|e| match e.raw_os_error() {
        Some(libc::EMFILE) => Failure::Descriptors(e),
        _ => Failure::Skip(e),
    })?;
    let setup = |s: &Socket| -> io::Result<()> {
        s.set_reuse_address(true)?;
        if shared {
            s.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)
    };
    setup(&sock).map_err(|e| Failure::Call("setsockopt", e))?;
    Ok(sock)
}

/// Bind the unix socket at `path` with permissions `mask`, replacing a
/// stale socket file left by a previous run. With `owner` (uid, gid: root
/// started with `-u`), the socket file is handed to that user before
/// `listen`: memcached creates its socket after taking the user's
/// identity, so the file is the user's and `-a` grants access relative to
/// that user and group. Handing it over before `listen` means no client
/// can ever connect while the file is still root's.
pub fn bind_unix(
    path: &Path,
    mask: u32,
    owner: Option<(u32, u32)>,
    backlog: i32,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    let err = |call| {
        move |err| BindError::Unix {
            path: path.to_path_buf(),
            call,
            err,
        }
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(err("socket"))?;
    let addr = socket2::SockAddr::unix(path).map_err(err("bind"))?;
    sock.bind(&addr).map_err(err("bind"))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(err("chown"))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask)).map_err(err("chmod"))?;
    sock.listen(backlog).map_err(err("listen"))?;
    sock.set_nonblocking(true).map_err(err("fcntl"))?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenAddr;

    fn settings(port: i32, listen: &[(&str, Option<i32>)]) -> Settings {
        let mut s = Settings {
            port,
            ..Settings::default()
        };
        s.listen = listen
            .iter()
            .map(|(h, p)| ListenAddr {
                host: h.to_string(),
                port: *p,
                notls: false,
                protocol: None,
                tag: None,
            })
            .collect();
        if !listen.is_empty() {
            let spec: Vec<String> = listen
                .iter()
                .map(|(h, p)| match p {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
                .collect();
            s.listen_spec = Some(spec.join(","));
        }
        s
    }

    fn local(e: &Endpoint) -> Vec<SocketAddr> {
        e.sockets
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap())
            .collect()
    }

    #[test]
    fn workers_share_the_port_the_first_socket_got() {
        let s = settings(1, &[("127.0.0.1", Some(0))]);
        let eps = bind_network(&s, Transport::Tcp, 3, None).unwrap();
        assert_eq!(eps.len(), 1);
        let addrs = local(&eps[0]);
        assert_eq!(addrs.len(), 3);
        assert_ne!(addrs[0].port(), 0);
        assert!(addrs.iter().all(|a| *a == addrs[0]), "{addrs:?}");
    }

    #[test]
    fn connections_reach_every_workers_socket() {
        // The first socket got SO_REUSEPORT only after it listened: it
        // must still be in the group the kernel spreads connections over.
        let s = settings(1, &[("127.0.0.1", Some(0))]);
        let eps = bind_network(&s, Transport::Tcp, 3, None).unwrap();
        let addr = local(&eps[0])[0];
        let clients: Vec<_> = (0..300)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut accepted = [0usize; 3];
        while accepted.iter().sum::<usize>() < clients.len() {
            assert!(std::time::Instant::now() < deadline, "{accepted:?}");
            for (n, sock) in accepted.iter_mut().zip(&eps[0].sockets) {
                while sock.accept().is_ok() {
                    *n += 1;
                }
            }
        }
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    #[test]
    fn a_second_server_cannot_join_the_port() {
        let s = settings(1, &[("127.0.0.1", Some(0))]);
        let eps = bind_network(&s, Transport::Tcp, 2, None).unwrap();
        let port = local(&eps[0])[0].port();
        let again = settings(port.into(), &[("127.0.0.1", None)]);
        let err = bind_network(&again, Transport::Tcp, 2, None)
            .err()
            .expect("port is ours");
        assert_eq!(
            err.to_string(),
            "failed to listen on one of interface(s) 127.0.0.1: Address already in use"
        );
        // Nor can a plain socket, as with any listening port.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_port_held_elsewhere_is_refused() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let s = settings(port.into(), &[("127.0.0.1", None)]);
        assert!(bind_network(&s, Transport::Tcp, 1, None).is_err());
    }

    #[test]
    fn the_same_address_twice_fails_as_in_memcached() {
        let s = settings(1, &[("127.0.0.1", Some(0))]);
        let eps = bind_network(&s, Transport::Tcp, 1, None).unwrap();
        let port = local(&eps[0])[0].port();
        drop(eps);
        let s = settings(port.into(), &[("127.0.0.1", None), ("127.0.0.1", None)]);
        let err = bind_network(&s, Transport::Tcp, 2, None)
            .err()
            .expect("duplicate");
        assert!(
            matches!(err, BindError::Network { errno: libc::EADDRINUSE, ref calls, .. } if calls.is_empty()),
            "{err:?}"
        );
    }

    #[test]
    fn every_entry_is_tried_and_the_first_failure_names_the_reason() {
        // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
        let s = settings(1, &[("192.0.2.1", Some(0)), ("127.0.0.1", Some(0))]);
        match bind_network(&s, Transport::Tcp, 1, None) {
            Err(BindError::Network {
                calls,
                target,
                errno,
            }) => {
                assert_eq!(calls, vec!["bind(): Cannot assign requested address"]);
                assert_eq!(target, "one of interface(s) 192.0.2.1:0,127.0.0.1:0");
                assert_eq!(errno, libc::EADDRNOTAVAIL);
            }
            other => panic!("{:?}", other.map(|v| v.len())),
        }
    }

    #[test]
    fn without_l_the_wildcard_names_the_port() {
        let e = BindError::Network {
            calls: Vec::new(),
            target: "TCP port 7".into(),
            errno: libc::EADDRINUSE,
        };
        assert_eq!(
            e.to_string(),
            "failed to listen on TCP port 7: Address already in use"
        );
        let e = BindError::Network {
            calls: vec!["getaddrinfo(): Name or service not known".into()],
            target: "one of interface(s) x".into(),
            errno: 0,
        };
        assert_eq!(
            e.to_string(),
            "getaddrinfo(): Name or service not known\n\
             failed to listen on one of interface(s) x: Success"
        );
    }

    #[test]
    fn entries_follow_memcached_port_rules() {
        let mut s = settings(11211, &[("*", None), ("127.0.0.1", Some(5))]);
        s.udp_port = 0;
        let tcp = entries(&s, Transport::Tcp);
        assert_eq!((tcp[0].host, tcp[0].port), (None, 11211));
        assert_eq!((tcp[1].host, tcp[1].port), (Some("127.0.0.1"), 5));
        assert!(entries(&s, Transport::Udp).is_empty());
        s.udp_port = 9;
        let udp = entries(&s, Transport::Udp);
        assert_eq!((udp[0].port, udp[1].port), (9, 5));
        s.port = 0;
        assert!(entries(&s, Transport::Tcp).is_empty());
    }

    #[test]
    fn udp_sockets_stay_shareable() {
        let mut s = settings(0, &[("127.0.0.1", Some(0))]);
        s.udp_port = 1;
        let eps = bind_network(&s, Transport::Udp, 2, None).unwrap();
        let addr = local(&eps[0])[0];
        let mut again = settings(0, &[("127.0.0.1", Some(addr.port().into()))]);
        again.udp_port = 1;
        assert!(bind_network(&again, Transport::Udp, 2, None).is_ok());
    }

    #[test]
    fn unix_socket_gets_mask_and_replaces_stale_file() {
        let dir = std::env::temp_dir().join(format!("gannet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let first = bind_unix(&path, 0o700, None, 8).unwrap();
        drop(first);
        let _second = bind_unix(&path, 0o755, None, 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Root hands the socket file to the `-u` user inside `bind_unix`,
    /// before `listen`, so no client ever connects to a root-owned file.
    #[test]
    fn unix_socket_is_the_owner_s_before_it_listens() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid takes no arguments and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = std::env::temp_dir().join(format!("gannet-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let _l = bind_unix(&path, 0o770, Some((65534, 65533)), 8).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65533));
        assert_eq!(meta.permissions().mode() & 0o777, 0o770);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unix_failure_reads_like_memcached() {
        let err = bind_unix(Path::new("/nonexistent-gannet-dir/sock"), 0o700, None, 8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bind(): No such file or directory\n\
             failed to listen on UNIX socket: /nonexistent-gannet-dir/sock: No such file or directory"
        );
    }
}
