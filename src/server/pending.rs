//! Output a connection's socket has refused, kept until it is writable.
//!
//! A slow reader takes a large reply a piece at a time, one piece per
//! writable event. Removing each written piece from the front of a `Vec`
//! moves everything behind it, so a reply of `n` bytes taken in pieces of
//! `k` costs about `n * n / 2k` bytes of `memmove`: with a 200 MB value
//! and a reader that frees a megabyte or so of socket buffer per event,
//! that was a second of server CPU where memcached spends 0.06 s.
//!
//! Here written bytes only advance a start offset. The buffer is
//! compacted when more output is appended and the written prefix is at
//! least as long as what is still waiting, so every byte moved is paid
//! for by a written byte at least as long as it: moves stay within the
//! bytes written, linear in the reply.
//!
//! A reply whose large values are spliced from item memory (`exec::out`)
//! is not copied at all when the socket refuses part of it: the whole
//! `Out`, with the pins that keep those values readable, is held here
//! until the socket has taken it, as memcached keeps its reference on an
//! item it is sending. Output produced later is copied behind it, so
//! the order is kept: first what is left of the held reply, then `buf`.

use crate::exec::out::Out;
use crate::store::Store;

use super::conn::KEEP_CAPACITY;

/// A reply kept with its pins: `out` from byte `off` on is unsent.
pub struct Held {
    pub out: Out,
    pub off: usize,
}

/// Pending output. Invariants: `start <= buf.len()`, and when no byte
/// waits in `buf` both are zero (an empty buffer is reused from its
/// start); `held`, when present, has unsent bytes and goes out before
/// `buf`.
#[derive(Default)]
pub struct Pending {
    buf: Vec<u8>,
    start: usize,
    held: Option<Box<Held>>,
}

#[cfg(test)]
thread_local! {
    /// Bytes moved by compaction on this thread, for the linearity test
    /// (a thread-local rather than a field, so `Conn` keeps its size).
    static MOVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Pending {
    /// Copied bytes waiting to be written (after any held reply).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Nothing waits: no held reply and no copied bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.held.is_none() && self.start == self.buf.len()
    }

    /// Copied bytes waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Keep the reply in `out`, of which the first `off` bytes were
    /// written, with its pins; `out` is left empty (and with no capacity)
    /// for the caller's next reply. Only when nothing else waits, so the
    /// held reply goes out first.
    pub fn hold(&mut self, out: &mut Out, off: usize) {
        debug_assert!(self.is_empty() && off < out.total());
        self.held = Some(Box::new(Held {
            out: std::mem::take(out),
            off,
        }));
    }

    /// The held reply, if any.
    #[inline]
    pub fn held_mut(&mut self) -> Option<&mut Held> {
        self.held.as_deref_mut()
    }

    /// Give back the held reply's pins (it was written, or the
    /// connection is closing).
    pub fn release_held(&mut self, store: &Store) {
        if let Some(mut h) = self.held.take() {
            h.out.release(store);
        }
    }

    /// Make room for `additional` more bytes, compacting first when the
    /// written prefix is at least as long as what waits.
    pub fn reserve(&mut self, additional: usize) {
        self.compact_if_worth_it();
        self.buf.reserve(additional);
    }

    /// Append output behind what already waits.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.compact_if_worth_it();
        self.buf.extend_from_slice(b);
    }

    /// `n` bytes from the front were written. Once everything is, the
    /// buffer is reset, and freed when it grew past `KEEP_CAPACITY`, so
    /// a connection that once fell behind does not keep a large buffer.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }

    fn compact_if_worth_it(&mut self) {
        if self.start > 0 && self.start >= self.len() {
            #[cfg(test)]
            MOVED.with(|m| m.set(m.get() + self.len()));
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_keeps_order_and_resets_when_drained() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.extend_from_slice(b"hello ");
        p.extend_from_slice(b"world");
        p.consume(3);
        assert_eq!(p.data(), b"lo world");
        assert_eq!(p.len(), 8);
        p.consume(8);
        assert!(p.is_empty());
        assert_eq!((p.start, p.buf.len()), (0, 0));
    }

    #[test]
    fn appending_behind_a_long_written_prefix_compacts() {
        let mut p = Pending::default();
        p.extend_from_slice(b"0123456789");
        p.consume(6);
        p.extend_from_slice(b"ab");
        assert_eq!(p.start, 0, "6 written >= 4 waiting: compacted");
        assert_eq!(p.data(), b"6789ab");
        p.consume(1);
        p.extend_from_slice(b"c");
        assert_eq!(p.start, 1, "1 written < 5 waiting: left alone");
        assert_eq!(p.data(), b"789abc");
    }

    #[test]
    fn a_large_emptied_buffer_is_freed() {
        let mut p = Pending::default();
        p.extend_from_slice(&vec![7u8; KEEP_CAPACITY + 1]);
        p.consume(KEEP_CAPACITY + 1);
        assert_eq!(p.capacity(), 0);
        p.extend_from_slice(b"small");
        p.consume(5);
        assert!(p.capacity() > 0, "a small buffer is kept");
    }

    /// A reply written in small pieces while more output keeps arriving
    /// moves no more bytes than were written, and comes out whole and in
    /// order.
    #[test]
    fn bytes_moved_stay_within_bytes_written() {
        MOVED.with(|m| m.set(0));
        let mut p = Pending::default();
        let reply: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        p.extend_from_slice(&reply[..3_000_000]);
        let mut fed = 3_000_000;
        let mut out = Vec::with_capacity(reply.len());
        while !p.is_empty() {
            let k = p.len().min(4096);
            out.extend_from_slice(&p.data()[..k]);
            p.consume(k);
            if fed < reply.len() {
                let m = (reply.len() - fed).min(1000);
                p.extend_from_slice(&reply[fed..fed + m]);
                fed += m;
            }
        }
        assert!(out == reply, "bytes lost or reordered");
        let moved = MOVED.with(|m| m.get());
        assert!(moved > 0, "the test never compacted");
        assert!(
            moved <= out.len(),
            "moved {moved} bytes for {} written",
            out.len()
        );
    }
}
