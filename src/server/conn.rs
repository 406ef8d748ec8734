//! One client connection: its socket, the bytes it has sent that are not
//! yet a whole request, and the replies the socket has not yet taken.
//!
//! An idle connection owns no buffer at all. Reads land in the worker's
//! scratch buffer; only a request split across reads is copied into the
//! connection's own `input`, and only output the socket refused is kept
//! in `pending`. Both are released once empty, so ten thousand idle
//! connections cost their `Conn` structs and nothing more (a large emptied
//! input buffer goes to the worker's `BufPool` for the next large request).

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::clock::RelTime;
use crate::exec::out::{fill_iovecs, Out};
use crate::exec::session::Session;
use crate::store::Store;

use super::bufpool::BufPool;
use super::pending::Pending;
use super::tls::TlsStream;

/// Capacity above which an emptied buffer is freed (or pooled) rather
/// than kept.
pub(super) const KEEP_CAPACITY: usize = 16 * 1024;

/// iovecs per `writev` (well under `IOV_MAX`, 1024 on Linux; a batch of
/// replies rarely has more than a few dozen pieces).
const IOV_BATCH: usize = 64;

/// A TCP or unix stream, or a TLS session over TCP (boxed: a plaintext
/// connection pays one pointer-sized variant, not a rustls session).
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_vectored(bufs),
            Stream::Unix(s) => s.read_vectored(bufs),
            Stream::Tls(s) => s.read_vectored(bufs),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

impl Stream {
    /// Whether replies may send values from item memory (`Out` splices):
    /// kernel streams only; TLS encrypts from its own buffers.
    pub fn takes_splices(&self) -> bool {
        matches!(self, Stream::Tcp(_) | Stream::Unix(_))
    }

    /// Whether a read that returns fewer bytes than asked for proves the
    /// socket's receive queue empty, so that waiting for the next
    /// edge-triggered event is safe without a read that returns EAGAIN.
    /// True for kernel streams; a stream that buffers in user space (TLS)
    /// must answer false (the default for any other variant).
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Stream::Tcp(_) | Stream::Unix(_))
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.socket().as_raw_fd(),
        }
    }

    /// Output is still buffered below `pending`: ciphertext rustls could
    /// not send yet. Always false for plaintext streams.
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(s) => s.wants_write(),
            _ => false,
        }
    }

    /// Before closing: a TLS session says close_notify (best effort).
    pub fn shutdown(&mut self) {
        if let Stream::Tls(s) = self {
            s.close_notify();
        }
    }

    /// Read and drop, without blocking, up to `limit` bytes that arrived
    /// but were never read. Closing a socket whose receive queue holds
    /// data makes the kernel send a reset instead of a FIN and throw away
    /// the replies it has not sent yet; a client that pipelined past the
    /// request that ends its connection (`quit`, a bad binary header)
    /// would lose the replies to the requests before it. memcached loses
    /// them too once more than its read buffer is left unread.
    ///
    /// Returns the number of bytes dropped: they were read from the
    /// network, so they count in `bytes_read` as memcached's do when its
    /// read buffer took them in with the request that closed.
    pub fn discard_unread(&mut self, scratch: &mut [u8], limit: usize) -> usize {
        let mut left = limit;
        while left > 0 {
            let n = scratch.len().min(left);
            let got = match self {
                Stream::Tcp(s) => s.read(&mut scratch[..n]),
                Stream::Unix(s) => s.read(&mut scratch[..n]),
                // Raw ciphertext: nothing of it will be answered.
                Stream::Tls(s) => s.socket_mut().read(&mut scratch[..n]),
            };
            match got {
                Ok(0) => break,
                Ok(k) => left = left.saturating_sub(k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        limit - left
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
            Stream::Tls(s) => s.socket_mut().register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
            Stream::Tls(s) => s.socket_mut().reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
            Stream::Tls(s) => s.socket_mut().deregister(r),
        }
    }
}

/// A connection's own input buffer: bytes in `buf[start..end]`.
///
/// Consuming moves `start` instead of shifting bytes, and the space
/// after `end` is kept initialised (the vector's length is its whole
/// size), so reading into it neither zeroes memory nor moves data; live
/// bytes move to the front only when the space after them runs out.
/// Invariant: `start <= end <= buf.len()`.
#[derive(Debug, Default)]
pub struct InputBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuf {
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// `(bytes allocated, holds no input)`, for the `read_buf_*` stats.
    pub fn footprint(&self) -> (usize, bool) {
        (self.buf.len(), self.is_empty())
    }

    /// The unprocessed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drop `n` processed bytes from the front. An emptied buffer larger
    /// than `KEEP_CAPACITY` goes back to the worker's `pool`.
    pub fn consume(&mut self, n: usize, pool: &mut BufPool) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_CAPACITY {
                pool.give(std::mem::take(&mut self.buf));
            }
        }
    }

    /// Let go of the buffer (the connection is closing): it goes back to
    /// `pool`.
    pub fn release(&mut self, pool: &mut BufPool) {
        self.start = 0;
        self.end = 0;
        pool.give(std::mem::take(&mut self.buf));
    }

    /// Make room for at least `n` more bytes after `end`. Live bytes move
    /// to the front when that makes room; otherwise they move into a new
    /// buffer (from `pool` when one fits), and the old one goes back to
    /// the pool. The new buffer's size is a power of
    /// two when more may follow (`exact` false: growth stays amortised),
    /// else the request's size rounded up to 4 KiB, so a value just over
    /// 1 MiB does not hold 2 MiB.
    fn reserve(&mut self, n: usize, exact: bool, pool: &mut BufPool) {
        if self.buf.len() - self.end >= n {
            return;
        }
        let len = self.end - self.start;
        if self.buf.len() - len >= n {
            self.buf.copy_within(self.start..self.end, 0);
        } else {
            let size = if exact {
                (len + n).div_ceil(4096) * 4096
            } else {
                (len + n).next_power_of_two()
            };
            let mut grown = pool.take(size);
            grown[..len].copy_from_slice(&self.buf[self.start..self.end]);
            pool.give(std::mem::replace(&mut self.buf, grown));
        }
        self.start = 0;
        self.end = len;
    }

    /// Make room for a request of `total` bytes, of which the buffer
    /// holds the first ones: growing once to its known size saves copying
    /// the bytes already buffered at every growth.
    pub fn reserve_total(&mut self, total: usize, pool: &mut BufPool) {
        if let Some(more) = total.checked_sub(self.len()) {
            self.reserve(more, true, pool);
        }
    }

    pub fn extend_from_slice(&mut self, data: &[u8], pool: &mut BufPool) {
        self.reserve(data.len(), false, pool);
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// One `read` from `src` into all the free space, which is made at
    /// least `want` bytes, the rest of a request of known size. Returns
    /// the bytes read and whether they filled less than the space offered
    /// (on a stream socket: it is empty now).
    pub fn read_from(
        &mut self,
        src: &mut impl Read,
        want: usize,
        pool: &mut BufPool,
    ) -> io::Result<(usize, bool)> {
        self.reserve(want, true, pool);
        let offered = self.buf.len() - self.end;
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, n < offered))
    }
}

/// Per-connection state.
pub struct Conn {
    pub stream: Stream,
    /// Unprocessed input that did not fit one read (a split request, or
    /// requests left over when the `-R` budget ran out).
    pub input: InputBuf,
    /// Output the socket has not accepted yet.
    pub pending: Pending,
    pub session: Session,
    /// Last time a request arrived (for idle_timeout).
    pub last_active: RelTime,
    /// The connection is to be closed once `pending` is written.
    pub closing: bool,
    /// More input may be waiting in the socket or in `input` although no
    /// new readiness event will say so (budget ran out, or output was
    /// blocked).
    pub has_more: bool,
    /// This connection's `stats conns` entry.
    pub entry: std::sync::Arc<crate::stats::ConnEntry>,
    pub fd: i32,
}

impl Conn {
    pub fn new(
        stream: Stream,
        now: RelTime,
        entry: std::sync::Arc<crate::stats::ConnEntry>,
        fd: i32,
        protocol: crate::config::Protocol,
    ) -> Conn {
        Conn {
            entry,
            fd,
            stream,
            input: InputBuf::default(),
            pending: Pending::default(),
            session: Session::for_stream(protocol),
            last_active: now,
            closing: false,
            has_more: true,
        }
    }

    /// Write `out` (and anything pending before it) to the socket. What
    /// the socket does not take is kept in `pending`. Returns bytes
    /// written, or an error when the peer is gone.
    pub fn send(&mut self, out: &[u8], store: &Store) -> io::Result<usize> {
        let mut written = 0;
        if !self.pending.is_empty() {
            written += self.flush_pending(store)?;
            if !self.pending.is_empty() {
                self.pending.extend_from_slice(out);
                return Ok(written);
            }
        }
        let mut off = 0;
        while off < out.len() {
            match self.stream.write(&out[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        written += off;
        if off < out.len() {
            self.pending.extend_from_slice(&out[off..]);
        }
        Ok(written)
    }

    /// Write the pieces of `out` (reply bytes and values in item memory)
    /// with `writev`, after anything pending. When the socket does not
    /// take it all and nothing else waits, the reply is kept whole with
    /// its pins (`Pending::hold`; `out` is left empty), so the values are
    /// never copied; behind other pending output it is copied. Returns
    /// bytes written.
    pub fn send_out(&mut self, out: &mut Out, store: &Store) -> io::Result<usize> {
        if !out.has_splices() {
            return self.send(out, store);
        }
        let mut written = 0;
        if !self.pending.is_empty() {
            written += self.flush_pending(store)?;
        }
        if self.pending.is_empty() {
            let off = write_pieces(&mut self.stream, out, 0)?;
            written += off;
            if off < out.total() {
                self.pending.hold(out, off);
            }
            return Ok(written);
        }
        self.pending.reserve(out.total());
        for p in out.pieces() {
            self.pending.extend_from_slice(p);
        }
        Ok(written)
    }

    /// Replies wait below the socket: in `pending`, or (TLS) as
    /// ciphertext inside the session.
    #[inline]
    pub fn has_output(&self) -> bool {
        !self.pending.is_empty() || self.stream.wants_write()
    }

    /// Try to write what is pending: the held reply first (its pins go
    /// back once it is all written), then the copied bytes. Returns bytes
    /// written.
    pub fn flush_pending(&mut self, store: &Store) -> io::Result<usize> {
        if self.stream.wants_write() {
            self.stream.flush()?;
        }
        let mut written = 0;
        if let Some(h) = self.pending.held_mut() {
            let n = write_pieces(&mut self.stream, &h.out, h.off)?;
            h.off += n;
            written += n;
            if h.off < h.out.total() {
                return Ok(written);
            }
            self.pending.release_held(store);
        }
        while !self.pending.is_empty() {
            match self.stream.write(self.pending.data()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.consume(n);
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}

/// `writev` the pieces of `out` from byte `from` until the socket is full
/// or all is written; returns the bytes written.
fn write_pieces(stream: &mut Stream, out: &Out, from: usize) -> io::Result<usize> {
    let total = out.total();
    let mut off = from;
    let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
    while off < total {
        let n = fill_iovecs(out.pieces(), off, &mut iov);
        match stream.write_vectored(&iov[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => off += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(off - from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> (BufPool, std::sync::Arc<crate::stats::ThreadStats>) {
        let stats = std::sync::Arc::new(crate::stats::ThreadStats::default());
        (BufPool::new(std::sync::Arc::clone(&stats)), stats)
    }

    #[test]
    fn input_buf_consumes_and_compacts() {
        let (mut p, _) = pool();
        let mut b = InputBuf::default();
        b.extend_from_slice(b"hello world", &mut p);
        b.consume(6, &mut p);
        assert_eq!(b.data(), b"world");
        let mut src: &[u8] = b"!!";
        assert_eq!(b.read_from(&mut src, 100, &mut p).unwrap(), (2, true));
        assert_eq!(b.data(), b"world!!");
        assert!(b.buf.len() - b.end >= 98);
        b.consume(7, &mut p);
        assert!(b.is_empty());
        assert_eq!((b.start, b.end), (0, 0));
    }

    #[test]
    fn a_read_that_fills_the_space_offered_is_not_short() {
        let (mut p, _) = pool();
        let mut b = InputBuf::default();
        let data = vec![7u8; 5000];
        let mut src: &[u8] = &data[..1000];
        let (n, short) = b.read_from(&mut src, 600, &mut p).unwrap();
        // The rest of a request of known size: its size rounded up to
        // 4 KiB is offered, and 1000 bytes leave it short.
        assert_eq!((n, short, b.buf.len()), (1000, true, 4096));
        let mut src: &[u8] = &data;
        let (n, short) = b.read_from(&mut src, 24, &mut p).unwrap();
        assert_eq!((n, short), (3096, false));
        // Growth of unknown size goes by powers of two.
        b.extend_from_slice(&data[..1], &mut p);
        assert_eq!(b.buf.len(), 8192);
    }

    #[test]
    fn large_buffers_cycle_through_the_pool() {
        let (mut p, stats) = pool();
        let mut b = InputBuf::default();
        b.extend_from_slice(&[1; 100], &mut p);
        // Growing past KEEP_CAPACITY takes a pooled buffer when one fits;
        // the live bytes move with it.
        p.give(vec![9; 256 * 1024]);
        let mut src: &[u8] = &[2; 50_000];
        b.read_from(&mut src, 100_000, &mut p).unwrap();
        assert_eq!(b.buf.len(), 256 * 1024);
        // The 128-byte buffer it replaced waits in the pool.
        assert_eq!(p.bytes(), 128);
        assert_eq!(&b.data()[98..102], &[1, 1, 2, 2]);
        assert_eq!(b.len(), 50_100);
        // Emptied, it goes back rather than being freed.
        b.consume(50_100, &mut p);
        assert_eq!((b.buf.len(), p.bytes()), (0, 256 * 1024 + 128));
        assert_eq!(
            stats.read_bufs.get(),
            (2, 256 * 1024 + 128, 256 * 1024 + 128)
        );
        // A small emptied buffer stays with its connection, and goes to
        // the pool when the connection closes.
        b.extend_from_slice(b"x", &mut p);
        b.consume(1, &mut p);
        let small = b.buf.len();
        assert!(small <= KEEP_CAPACITY && small > 0);
        b.release(&mut p);
        assert!(b.buf.is_empty());
        assert_eq!(p.bytes(), 256 * 1024 + 128 + small);
        assert_eq!(p.take(1).len(), small);
        // Room for a whole request of known size, in one growth.
        b.reserve_total(100_000, &mut p);
        assert_eq!(b.buf.len(), 256 * 1024);
        b.extend_from_slice(&[3; 60_000], &mut p);
        b.reserve_total(100_000, &mut p);
        assert_eq!((b.buf.len(), b.len()), (256 * 1024, 60_000));
    }

    #[test]
    fn a_small_buffer_replaced_by_a_large_one_is_used_again() {
        // Leftovers alternating between a few KiB and a large value: the
        // small buffer waits in the pool while the large one is in use, so
        // the next small leftover allocates nothing.
        let (mut p, _) = pool();
        let mut b = InputBuf::default();
        b.extend_from_slice(&[1; 10_000], &mut p);
        let small = b.buf.as_ptr();
        b.extend_from_slice(&[2; 40_000], &mut p);
        assert!(b.buf.len() > KEEP_CAPACITY);
        b.consume(50_000, &mut p);
        assert!(b.buf.is_empty());
        b.extend_from_slice(&[3; 10_000], &mut p);
        assert_eq!(b.buf.as_ptr(), small);
        assert_eq!(b.data(), &[3; 10_000][..]);
    }

    #[test]
    fn conn_struct_stays_small() {
        // Idle connections cost this struct, their slab slot and their
        // `stats conns` entry: keep it well under memcached's ~600 bytes of
        // RSS per connection (gannet-bench measured 290 with 10k idle).
        // 168 since the session tracks the items its unsent replies hold
        // (`exec::pins`, 16 bytes; its list is allocated only when used),
        // 176 since it can read a large value into its item (`exec::fill`,
        // a pointer, allocated on the first such value), 192 since
        // pending output advances a start offset instead of moving what
        // waits and can hold a refused reply with its pins (`pending`).
        assert!(
            std::mem::size_of::<Conn>() <= 192,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    #[test]
    fn discard_unread_reports_what_it_dropped() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let mut s = Stream::Unix(a);
        let mut scratch = [0u8; 1024];
        b.write_all(&[1u8; 3000]).expect("write");
        // Up to the limit, in scratch-sized reads.
        assert_eq!(s.discard_unread(&mut scratch, 1000), 1000);
        // The rest, then the empty queue stops it (would block).
        assert_eq!(s.discard_unread(&mut scratch, 1 << 20), 2000);
        assert_eq!(s.discard_unread(&mut scratch, 1 << 20), 0);
        // End of input stops it too.
        b.write_all(&[2u8; 10]).expect("write");
        drop(b);
        assert_eq!(s.discard_unread(&mut scratch, 1 << 20), 10);
    }
}
