//! One client connection: its socket, the bytes it has sent that are not
//! yet a whole request, and the replies the socket has not yet taken.
//!
//! An idle connection owns no buffer at all. Reads land in the worker's
//! scratch buffer; only a request split across reads is copied into the
//! connection's own `input`, and only output the socket refused is kept
//! in `pending`. Both are released once empty, so ten thousand idle
//! connections cost their `Conn` structs and nothing more.

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::clock::RelTime;
use crate::exec::session::Session;

/// Capacity above which an emptied buffer is freed rather than kept.
const KEEP_CAPACITY: usize = 16 * 1024;

/// A TCP or unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// Per-connection state.
pub struct Conn {
    pub stream: Stream,
    /// Unprocessed input that did not fit one read (a split request).
    pub input: Vec<u8>,
    /// Output the socket has not accepted yet.
    pub pending: Vec<u8>,
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
    ) -> Conn {
        Conn {
            entry,
            fd,
            stream,
            input: Vec::new(),
            pending: Vec::new(),
            session: Session::new(),
            last_active: now,
            closing: false,
            has_more: true,
        }
    }

    /// Drop `n` processed bytes from the front of `input`.
    pub fn consume_input(&mut self, n: usize) {
        if n >= self.input.len() {
            self.input.clear();
            if self.input.capacity() > KEEP_CAPACITY {
                self.input = Vec::new();
            }
        } else if n > 0 {
            self.input.drain(..n);
        }
    }

    /// Write `out` (and anything pending before it) to the socket. What
    /// the socket does not take is kept in `pending`. Returns bytes
    /// written, or an error when the peer is gone.
    pub fn send(&mut self, out: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        if !self.pending.is_empty() {
            written += self.flush_pending()?;
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

    /// Try to write what is pending. Returns bytes written.
    pub fn flush_pending(&mut self) -> io::Result<usize> {
        let mut off = 0;
        while off < self.pending.len() {
            match self.stream.write(&self.pending[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if off >= self.pending.len() {
            self.pending.clear();
            if self.pending.capacity() > KEEP_CAPACITY {
                self.pending = Vec::new();
            }
        } else {
            self.pending.drain(..off);
        }
        Ok(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_struct_stays_small() {
        // Idle connections cost this struct and nothing else: keep it
        // well under memcached's ~600 bytes per connection.
        assert!(
            std::mem::size_of::<Conn>() <= 128,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}
