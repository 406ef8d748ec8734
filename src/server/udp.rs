//! memcached's UDP transport (`-U <port>`, off by default).
//!
//! Every datagram starts with an 8-byte frame header, four big-endian
//! u16s: request id, sequence number, datagram count, reserved. A request
//! must fit in one datagram: a datagram whose count is not 1, or that is
//! no longer than the header, is dropped without a reply (as memcached
//! 1.6.18 does). memcached ignores the sequence number and the reserved
//! field of a request, and so does gannet.
//!
//! Each datagram is run on its own with a fresh session, so a partial
//! request at its end is dropped rather than joined with the next
//! datagram (memcached keeps the partial state of its one shared UDP
//! "connection", which lets one client's datagram complete another's).
//!
//! The reply to a datagram is split into datagrams of at most
//! `MAX_DATAGRAM` bytes (header included, as memcached's
//! UDP_MAX_PAYLOAD_SIZE), each carrying the request id, its sequence
//! number from 0 and the total count, sent to the request's source.
//! memcached frames every response of a multi-request datagram (and every
//! key of a multi-get) separately; gannet frames the whole reply to one
//! datagram as one message, so a client reassembles by request id and
//! sequence alone. A single reply is framed byte for byte as memcached's.
//!
//! Amplification guard (CVE-2018-1000115): memcached bounds a reply only
//! by the item size, so a 15-byte `get` can draw a megabyte. gannet sends
//! at most `reply_limit(request)` bytes of reply payload: `MIN_DATAGRAMS`
//! full datagrams for any request, more only for requests large enough
//! (`AMPLIFICATION` bytes of reply per request byte), never more than
//! `MAX_DATAGRAMS`. A larger reply is not truncated (a cut value would be
//! silently corrupt) but replaced by one `SERVER_ERROR` datagram; the
//! requests still ran. Large values belong on TCP.

use std::io;

use mio::net::UdpSocket;

use crate::config::Protocol;
use crate::exec::out::Out;
use crate::exec::session::Session;
use crate::exec::{Action, Ctx, StopRequest};

/// Frame header size.
pub const HEADER: usize = 8;
/// Largest reply datagram, header included (memcached's 1400).
pub const MAX_DATAGRAM: usize = 1400;
/// Reply payload per datagram.
pub const PAYLOAD: usize = MAX_DATAGRAM - HEADER;
/// Reply datagrams any request may draw.
pub const MIN_DATAGRAMS: usize = 8;
/// Reply datagrams no request may exceed.
pub const MAX_DATAGRAMS: usize = 64;
/// Reply bytes allowed per request byte above `MIN_DATAGRAMS`.
pub const AMPLIFICATION: usize = 16;
const TOO_LARGE: &[u8] = b"SERVER_ERROR reply too large for UDP\r\n";

/// Reply payload bytes allowed for a request datagram of `request_len`
/// bytes (header included).
pub fn reply_limit(request_len: usize) -> usize {
    (request_len * AMPLIFICATION).clamp(MIN_DATAGRAMS * PAYLOAD, MAX_DATAGRAMS * PAYLOAD)
}

/// The request id of a datagram that carries a whole request, or None
/// for one memcached drops (too short, or part of a multi-datagram
/// request).
pub fn parse_header(d: &[u8]) -> Option<u16> {
    if d.len() <= HEADER {
        return None;
    }
    let count = u16::from_be_bytes([d[4], d[5]]);
    if count != 1 {
        return None;
    }
    Some(u16::from_be_bytes([d[0], d[1]]))
}

/// Split `reply` into framed datagrams for request `id`, calling `send`
/// with each.
pub fn frame(id: u16, reply: &[u8], mut send: impl FnMut(&[u8])) {
    let total = reply.len().div_ceil(PAYLOAD).max(1);
    // On the stack: framing allocates nothing per datagram.
    let mut dgram = [0u8; MAX_DATAGRAM];
    dgram[..2].copy_from_slice(&id.to_be_bytes());
    dgram[4..6].copy_from_slice(&(total as u16).to_be_bytes());
    for seq in 0..total {
        let chunk =
            &reply[(seq * PAYLOAD).min(reply.len())..((seq + 1) * PAYLOAD).min(reply.len())];
        dgram[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        dgram[HEADER..HEADER + chunk.len()].copy_from_slice(chunk);
        send(&dgram[..HEADER + chunk.len()]);
    }
}

/// Run the whole request datagram `req` (header stripped) and leave its
/// reply in `out`. Returns a stop request (`shutdown`) if one was made.
fn run(
    ctx: &Ctx,
    protocol: Protocol,
    req: &[u8],
    limit: usize,
    out: &mut Out,
) -> Option<StopRequest> {
    let mut session = Session::new(protocol);
    let mut pos = 0;
    let mut stop = None;
    while pos < req.len() {
        let p = session.process(ctx, &req[pos..], out, usize::MAX, limit + 1);
        pos += p.consumed;
        if let Action::Stop(why) = p.action {
            stop = Some(why);
        }
        let done = matches!(p.action, Action::Close | Action::Stop(_));
        if done || out.len() > limit || p.consumed == 0 || !p.more {
            break;
        }
    }
    // `watch` has no meaning without a connection.
    drop(crate::exec::watch::take_started());
    if out.len() > limit {
        out.clear();
        out.extend_from_slice(TOO_LARGE);
    }
    stop
}

/// Serve the datagrams waiting on `sock`, at most `budget` of them.
/// Returns true when the budget ran out first (more may be waiting: the
/// caller must come back, since readiness is edge-triggered).
pub fn serve(
    sock: &UdpSocket,
    protocol: Protocol,
    ctx: &Ctx,
    rbuf: &mut [u8],
    out: &mut Out,
    budget: usize,
) -> bool {
    for _ in 0..budget {
        let (n, peer) = match sock.recv_from(rbuf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        ctx.stats.ops.bytes_read.add(n as u64);
        let d = &rbuf[..n];
        let Some(id) = parse_header(d) else {
            continue;
        };
        out.clear();
        let stop = run(ctx, protocol, &d[HEADER..], reply_limit(n), out);
        if !out.is_empty() {
            let mut sent = 0u64;
            frame(id, out, |g| {
                if let Ok(k) = sock.send_to(g, peer) {
                    sent += k as u64;
                }
            });
            ctx.stats.ops.bytes_written.add(sent);
        }
        out.clear();
        if let Some(why) = stop {
            ctx.shared.request_stop(why);
            let sig = match why {
                StopRequest::Now => libc::SIGINT,
                StopRequest::Graceful => libc::SIGUSR1,
            };
            // SAFETY: kill() with our own pid and a valid signal number has
            // no memory effects; main's sigwait receives it.
            unsafe {
                libc::kill(libc::getpid(), sig);
            }
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules() {
        assert_eq!(parse_header(&[0, 7, 0, 0, 0, 1, 0]), None);
        assert_eq!(parse_header(&[0, 7, 0, 0, 0, 1, 0, 0]), None);
        assert_eq!(parse_header(b"\x00\x07\x00\x00\x00\x02\x00\x00x"), None);
        assert_eq!(parse_header(b"\x00\x07\x00\x00\x00\x00\x00\x00x"), None);
        assert_eq!(parse_header(b"\x00\x07\x00\x03\x00\x01\x00\x05x"), Some(7));
    }

    #[test]
    fn framing() {
        let reply = vec![b'x'; 5025];
        let mut got = Vec::new();
        frame(9, &reply, |g| got.push(g.to_vec()));
        assert_eq!(got.len(), 4);
        let mut all = Vec::new();
        for (i, g) in got.iter().enumerate() {
            assert!(g.len() <= MAX_DATAGRAM);
            assert_eq!(&g[..8], &[0, 9, 0, i as u8, 0, 4, 0, 0]);
            all.extend_from_slice(&g[8..]);
        }
        assert_eq!(all, reply);
        assert_eq!(got[3].len() - 8, 849);
    }

    #[test]
    fn limits() {
        assert_eq!(reply_limit(15), MIN_DATAGRAMS * PAYLOAD);
        assert_eq!(reply_limit(60_000), MAX_DATAGRAMS * PAYLOAD);
    }
}
