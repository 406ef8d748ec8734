//! Listening sockets.
//!
//! Every worker thread binds its own TCP listener to the same address with
//! SO_REUSEPORT, so the kernel spreads new connections over the workers
//! and no thread hands sockets to another. The unix socket cannot be
//! shared that way; one worker owns it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;

/// A failed step of setting up a listener, with the address and the
/// operating system's reason.
#[derive(Debug)]
pub enum BindError {
    Resolve { host: String, err: io::Error },
    Socket { addr: SocketAddr, err: io::Error },
    Bind { addr: SocketAddr, err: io::Error },
    Listen { addr: SocketAddr, err: io::Error },
    Unix { path: PathBuf, err: io::Error },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Resolve { host, err } => write!(f, "getaddrinfo({host}): {err}"),
            BindError::Socket { addr, err } => write!(f, "socket() for {addr}: {err}"),
            BindError::Bind { addr, err } => {
                write!(f, "failed to listen on TCP port {}: {}", addr.port(), err)
            }
            BindError::Listen { addr, err } => write!(f, "listen() on {addr}: {err}"),
            BindError::Unix { path, err } => {
                write!(
                    f,
                    "failed to listen on UNIX socket \"{}\": {}",
                    path.display(),
                    err
                )
            }
        }
    }
}

impl std::error::Error for BindError {}

/// The TCP addresses the settings ask for (`-l` list, or all interfaces),
/// each with whether it speaks TLS (`-Z`, unless its `-l` entry has
/// memcached's `notls:` prefix).
pub fn tcp_addrs(settings: &Settings) -> Result<Vec<(SocketAddr, bool)>, BindError> {
    if settings.port == 0 && settings.listen.iter().all(|l| l.port.is_none()) {
        return Ok(Vec::new());
    }
    let tagged = resolve_tagged(settings, settings.port, |l| l.port.unwrap_or(settings.port))?;
    Ok(tagged
        .into_iter()
        .map(|(a, notls)| (a, settings.tls && !notls))
        .collect())
}

/// Resolve the `-l` hosts, each on the port `port_of` gives it, without
/// duplicates; with no `-l`, all interfaces on `default_port`. Shared by
/// the TCP and UDP listeners.
pub fn resolve(
    settings: &Settings,
    default_port: u16,
    port_of: impl Fn(&crate::config::ListenAddr) -> u16,
) -> Result<Vec<SocketAddr>, BindError> {
    let tagged = resolve_tagged(settings, default_port, port_of)?;
    Ok(tagged.into_iter().map(|(a, _)| a).collect())
}

/// `resolve`, keeping each address's `notls:` flag (the first `-l` entry
/// that names an address decides).
fn resolve_tagged(
    settings: &Settings,
    default_port: u16,
    port_of: impl Fn(&crate::config::ListenAddr) -> u16,
) -> Result<Vec<(SocketAddr, bool)>, BindError> {
    if settings.listen.is_empty() {
        return Ok(vec![(
            SocketAddr::from(([0, 0, 0, 0], default_port)),
            false,
        )]);
    }
    let mut out: Vec<(SocketAddr, bool)> = Vec::new();
    for l in &settings.listen {
        let host = l.host.trim_start_matches('[').trim_end_matches(']');
        let resolved = (host, port_of(l))
            .to_socket_addrs()
            .map_err(|err| BindError::Resolve {
                host: l.host.clone(),
                err,
            })?;
        for a in resolved {
            if !out.iter().any(|(b, _)| *b == a) {
                out.push((a, l.notls));
            }
        }
    }
    Ok(out)
}

/// Bind one non-blocking TCP listener with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> Result<std::net::TcpListener, BindError> {
    let sock = bind_reuseport(addr, Type::STREAM, Protocol::TCP)?;
    sock.listen(backlog)
        .map_err(|err| BindError::Listen { addr, err })?;
    Ok(sock.into())
}

/// A non-blocking socket bound to `addr` with SO_REUSEADDR and
/// SO_REUSEPORT (IPv6 sockets v6-only), so every worker can bind its own
/// socket to the same address: the TCP listeners and the UDP sockets.
pub fn bind_reuseport(addr: SocketAddr, ty: Type, proto: Protocol) -> Result<Socket, BindError> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock =
        Socket::new(domain, ty, Some(proto)).map_err(|err| BindError::Socket { addr, err })?;
    let setup = |s: &Socket| -> io::Result<()> {
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)
    };
    setup(&sock).map_err(|err| BindError::Socket { addr, err })?;
    sock.bind(&addr.into())
        .map_err(|err| BindError::Bind { addr, err })?;
    Ok(sock)
}

/// Bind the unix socket at `path` with permissions `mask`, replacing a
/// stale socket file left by a previous run.
pub fn bind_unix(
    path: &Path,
    mask: u32,
    backlog: i32,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    let err = |err| BindError::Unix {
        path: path.to_path_buf(),
        err,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(err)?;
    let addr = socket2::SockAddr::unix(path).map_err(err)?;
    sock.bind(&addr).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask)).map_err(err)?;
    sock.listen(backlog).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_listeners_share_a_port() {
        let a = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_tcp(addr, 16).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }

    #[test]
    fn bind_error_names_the_port() {
        // A port held without SO_REUSEPORT cannot be shared.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let err = bind_tcp(addr, 16).unwrap_err();
        assert!(matches!(err, BindError::Bind { .. }));
        assert!(err.to_string().contains(&addr.port().to_string()));
    }

    #[test]
    fn unix_socket_gets_mask_and_replaces_stale_file() {
        let dir = std::env::temp_dir().join(format!("gannet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let first = bind_unix(&path, 0o700, 8).unwrap();
        drop(first);
        let _second = bind_unix(&path, 0o755, 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
