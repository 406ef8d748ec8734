//! Address lookup for the listeners, through the C library's
//! `getaddrinfo` with the hints memcached passes (`AI_PASSIVE`, any
//! family).
//!
//! Why not `std::net::ToSocketAddrs`: it cannot ask for the passive
//! wildcard (memcached's default, and `-l *`, which give `0.0.0.0` *and*
//! `::`), and its error text is not the `gai_strerror` line memcached
//! prints. Calling the same function with the same hints also gives the
//! same addresses in the same order, so the listeners, and which one a
//! failure names, match memcached's.

use std::ffi::{CStr, CString};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Which socket type to look up for (it filters the answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockType {
    Stream,
    Datagram,
}

/// Why a lookup failed: memcached's `getaddrinfo(): ...` line text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

/// The IPv4 and IPv6 addresses `host` resolves to on port `port`, in the
/// C library's order; `None` asks for the passive wildcard addresses.
/// The port is memcached's `int`, passed as the decimal service string
/// it prints (-1 is memcached's "any port", 0 to the kernel), so values
/// outside 0..=65535 fail or wrap exactly as they do in memcached.
/// Answers of other families are left out (memcached cannot open a
/// socket for them either and skips them).
pub fn lookup(host: Option<&str>, port: i32, ty: SockType) -> Result<Vec<SocketAddr>, LookupError> {
    let host = match host.map(CString::new) {
        None => None,
        Some(Ok(h)) => Some(h),
        // A NUL byte cannot name a host.
        Some(Err(_)) => return Err(LookupError("Name or service not known".into())),
    };
    let port = if port == -1 { 0 } else { port };
    let service = CString::new(port.to_string()).expect("digits only");
    // SAFETY: an all-zero addrinfo is a valid "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_PASSIVE;
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = match ty {
        SockType::Stream => libc::SOCK_STREAM,
        SockType::Datagram => libc::SOCK_DGRAM,
    };
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    let host_ptr = host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr());
    // SAFETY: the strings are NUL-terminated and outlive the call; `list`
    // is written only on success and then freed below, exactly once.
    let rc = unsafe { libc::getaddrinfo(host_ptr, service.as_ptr(), &hints, &mut list) };
    if rc != 0 {
        return Err(LookupError(if rc == libc::EAI_SYSTEM {
            crate::daemon::os_text(&std::io::Error::last_os_error())
        } else {
            // SAFETY: gai_strerror returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
                .to_string_lossy()
                .into_owned()
        }));
    }
    let mut out = Vec::new();
    let mut next = list;
    while !next.is_null() {
        // SAFETY: `next` walks the list getaddrinfo returned, which stays
        // valid until freeaddrinfo.
        let ai = unsafe { &*next };
        if let Some(a) = socket_addr(ai) {
            out.push(a);
        }
        next = ai.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is not used
    // after this.
    unsafe { libc::freeaddrinfo(list) };
    Ok(out)
}

/// The address of one answer, if it is IPv4 or IPv6.
fn socket_addr(ai: &libc::addrinfo) -> Option<SocketAddr> {
    if ai.ai_addr.is_null() {
        return None;
    }
    let len = ai.ai_addrlen as usize;
    match ai.ai_family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say it is a sockaddr_in; read
            // unaligned in case the C library packs the list.
            let sa = unsafe { (ai.ai_addr as *const libc::sockaddr_in).read_unaligned() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                u16::from_be(sa.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let sa = unsafe { (ai.ai_addr as *const libc::sockaddr_in6).read_unaligned() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sa.sin6_addr.s6_addr),
                u16::from_be(sa.sin6_port),
                sa.sin6_flowinfo,
                sa.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_wildcard_is_both_families() {
        let a = lookup(None, 11211, SockType::Stream).unwrap();
        assert!(a.contains(&"0.0.0.0:11211".parse().unwrap()), "{a:?}");
        assert!(a.contains(&"[::]:11211".parse().unwrap()), "{a:?}");
    }

    #[test]
    fn numeric_hosts_and_ports() {
        assert_eq!(
            lookup(Some("127.0.0.1"), 5, SockType::Datagram).unwrap(),
            vec!["127.0.0.1:5".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            lookup(Some("::1"), 6, SockType::Stream).unwrap(),
            vec!["[::1]:6".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn ports_are_read_by_the_c_library() {
        let one = |port| lookup(Some("127.0.0.1"), port, SockType::Stream);
        assert_eq!(one(-1).unwrap()[0].port(), 0);
        assert_eq!(one(70000).unwrap()[0].port(), 4464); // 70000 - 65536
        assert_eq!(
            one(-5).unwrap_err().0,
            "Servname not supported for ai_socktype"
        );
    }

    #[test]
    fn a_nul_byte_names_no_host() {
        // (Unknown names are not tried here: that would ask a DNS server.)
        let e = lookup(Some("a\0b"), 1, SockType::Stream).unwrap_err();
        assert_eq!(e.0, "Name or service not known");
    }
}
