//! The replies of one batch of requests, as the socket will take them:
//! reply bytes, with large values left in item memory.
//!
//! Why: a reply carrying a 100 KB value used to be copied into the reply
//! buffer and then copied again by the kernel. memcached sends a value
//! from its item with `sendmsg` while it holds a reference on the item;
//! gannet does the same with a store `Pin`. A value of `SPLICE_MIN` bytes
//! or more is recorded as a *splice* (where in the reply bytes it goes,
//! and its segments in item memory) instead of being copied; the worker
//! hands bytes and splices to `writev` in order, copies whatever the
//! socket did not take into the connection's pending output, and then
//! gives every pin back (`release`) before its turn ends.
//!
//! Splicing is off unless the worker turns it on for a batch
//! (`set_splicing`): datagrams, TLS (rustls needs the bytes), and `-vv`
//! reply logging (which reads the bytes) keep copying.
//!
//! `Out` dereferences to its byte buffer, so every encoder that appends
//! to a `Vec<u8>` writes into it unchanged; only code that places values
//! (`push_value`) or measures or cuts the whole reply (`total`,
//! `truncate`) needs `Out` itself.

use std::io::IoSlice;
use std::ops::{Deref, DerefMut};

use crate::store::{ItemRef, Pin, Store};

/// Values this large or larger are sent from item memory when splicing is
/// on: below it, copying costs less than the pin, its lock round trip and
/// the extra iovec.
pub const SPLICE_MIN: usize = 16 * 1024;

/// A value segment to send from item memory, placed before byte `at` of
/// the reply bytes.
#[derive(Debug, Clone, Copy)]
struct Splice {
    at: usize,
    ptr: *const u8,
    len: usize,
}

/// Reply bytes plus spliced values (see the module docs).
///
/// Invariant: every splice points into the value of an item pinned by a
/// `Pin` in `pins`, and `pins` is only emptied by `release`, which first
/// drops every splice. So a splice's memory is readable and unchanged for
/// as long as the splice exists. Splices are kept in reply order (`at`
/// never decreases) and `at <= bytes.len()`.
#[derive(Debug, Default)]
pub struct Out {
    bytes: Vec<u8>,
    splices: Vec<Splice>,
    pins: Vec<Pin>,
    spliced: usize,
    splicing: bool,
}

// SAFETY: the raw pointers in `splices` point into slab memory that the
// pins in the same `Out` keep alive and unchanged (see the invariant);
// slab memory is shared by all threads, so an `Out` may move between
// threads like any owner of its pins.
unsafe impl Send for Out {}

impl Deref for Out {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Out {
    pub fn with_capacity(n: usize) -> Out {
        Out {
            bytes: Vec::with_capacity(n),
            ..Out::default()
        }
    }

    /// Whether values of `SPLICE_MIN` bytes or more may stay in item
    /// memory from now on.
    pub fn set_splicing(&mut self, on: bool) {
        self.splicing = on;
    }

    /// Length of the whole reply: bytes and spliced values.
    pub fn total(&self) -> usize {
        self.bytes.len() + self.spliced
    }

    /// Whether any value is spliced (the reply is not all in `bytes`).
    pub fn has_splices(&self) -> bool {
        !self.splices.is_empty()
    }

    /// Append the value of `item`: spliced when splicing is on, the value
    /// is large and the item can be pinned; copied otherwise.
    pub fn push_value(&mut self, item: &mut ItemRef<'_>) {
        if self.splicing && item.value_len() >= SPLICE_MIN {
            let at = self.bytes.len();
            let mut added = 0;
            let splices = &mut self.splices;
            let pin = item.pin(|ptr, len| {
                splices.push(Splice { at, ptr, len });
                added += len;
            });
            if let Some(pin) = pin {
                self.pins.push(pin);
                self.spliced += added;
                return;
            }
        }
        for seg in item.value() {
            self.bytes.extend_from_slice(seg);
        }
    }

    /// Cut the reply back to `len` bytes of `bytes`, dropping the values
    /// spliced after that point (their pins are given back by `release`).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
        while let Some(s) = self.splices.last() {
            // A splice at `len` follows the bytes that stay: it stays
            // (a value's header always precedes it, so a value of a
            // reply being cut is placed after `len`).
            if s.at <= len {
                break;
            }
            self.spliced -= s.len;
            self.splices.pop();
        }
    }

    /// The reply's pieces in the order they are sent: runs of reply bytes
    /// and spliced value segments (empty runs skipped).
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces {
            out: self,
            next_splice: 0,
            from: 0,
            splice_due: false,
        }
    }

    /// Give every pin back and empty the reply. Call once the pieces have
    /// been written or copied elsewhere.
    pub fn release(&mut self, store: &Store) {
        self.splices.clear();
        self.spliced = 0;
        for pin in self.pins.drain(..) {
            store.unpin(pin);
        }
        self.bytes.clear();
    }
}

/// Iterator over `Out::pieces`.
pub struct Pieces<'a> {
    out: &'a Out,
    next_splice: usize,
    /// Start of the next run of reply bytes.
    from: usize,
    /// The run before `splices[next_splice]` has been given: the splice
    /// itself is next.
    splice_due: bool,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let bytes = &self.out.bytes;
        loop {
            let Some(s) = self.out.splices.get(self.next_splice) else {
                if self.from < bytes.len() {
                    let run = &bytes[self.from..];
                    self.from = bytes.len();
                    return Some(run);
                }
                return None;
            };
            if !self.splice_due {
                self.splice_due = true;
                if s.at > self.from {
                    let run = &bytes[self.from..s.at];
                    self.from = s.at;
                    return Some(run);
                }
                continue;
            }
            self.splice_due = false;
            self.next_splice += 1;
            if s.len == 0 {
                continue;
            }
            // SAFETY: the splice's item is pinned by `out.pins` until
            // `release`, which needs `&mut Out` and so cannot run while
            // this iterator borrows `out` (see the invariant on `Out`).
            return Some(unsafe { std::slice::from_raw_parts(s.ptr, s.len) });
        }
    }
}

/// Fill `iov` with the pieces of `pieces` that come after the first
/// `skip` bytes; returns how many slots were filled.
pub fn fill_iovecs<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    mut skip: usize,
    iov: &mut [IoSlice<'a>],
) -> usize {
    let mut n = 0;
    for p in pieces {
        if n == iov.len() {
            break;
        }
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        iov[n] = IoSlice::new(&p[skip..]);
        skip = 0;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(out: &Out) -> Vec<u8> {
        out.pieces().flat_map(|p| p.iter().copied()).collect()
    }

    /// A splice over a static buffer (no pin: tests only look at pieces).
    fn splice(out: &mut Out, data: &'static [u8]) {
        let at = out.bytes.len();
        out.splices.push(Splice {
            at,
            ptr: data.as_ptr(),
            len: data.len(),
        });
        out.spliced += data.len();
    }

    #[test]
    fn pieces_interleave_bytes_and_splices_in_order() {
        let mut out = Out::default();
        out.extend_from_slice(b"VALUE a 0 3\r\n");
        splice(&mut out, b"abc");
        out.extend_from_slice(b"\r\nVALUE b 0 4\r\n");
        splice(&mut out, b"de");
        splice(&mut out, b"fg");
        out.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(
            collect(&out),
            b"VALUE a 0 3\r\nabc\r\nVALUE b 0 4\r\ndefg\r\nEND\r\n".to_vec()
        );
        assert_eq!(out.total(), collect(&out).len());
        assert_eq!(out.pieces().count(), 6);
    }

    #[test]
    fn a_splice_at_the_start_or_end_has_no_empty_run() {
        let mut out = Out::default();
        splice(&mut out, b"xy");
        let p: Vec<&[u8]> = out.pieces().collect();
        assert_eq!(p, vec![&b"xy"[..]]);
        out.extend_from_slice(b"z");
        splice(&mut out, b"");
        let p: Vec<&[u8]> = out.pieces().collect();
        assert_eq!(p, vec![&b"xy"[..], &b"z"[..]]);
    }

    #[test]
    fn truncate_drops_the_splices_after_the_cut() {
        let mut out = Out::default();
        out.extend_from_slice(b"STORED\r\n");
        let mark = out.len();
        out.extend_from_slice(b"VALUE a 0 3\r\n");
        splice(&mut out, b"abc");
        out.extend_from_slice(b"\r\n");
        out.truncate(mark);
        assert_eq!(collect(&out), b"STORED\r\n".to_vec());
        assert_eq!(out.total(), 8);
        assert!(!out.has_splices());
        // A splice placed at the cut itself, after bytes that stay, stays.
        let mut out = Out::default();
        out.extend_from_slice(b"h:");
        splice(&mut out, b"v");
        out.extend_from_slice(b"\r\n");
        out.truncate(2);
        assert_eq!(collect(&out), b"h:v".to_vec());
    }

    #[test]
    fn iovecs_skip_what_was_written() {
        let mut out = Out::default();
        out.extend_from_slice(b"head");
        splice(&mut out, b"value");
        out.extend_from_slice(b"tail");
        let mut iov = [IoSlice::new(&[]); 4];
        let n = fill_iovecs(out.pieces(), 6, &mut iov);
        let got: Vec<&[u8]> = iov[..n].iter().map(|s| &s[..]).collect();
        assert_eq!(got, vec![&b"lue"[..], &b"tail"[..]]);
        let mut small = [IoSlice::new(&[]); 1];
        assert_eq!(fill_iovecs(out.pieces(), 0, &mut small), 1);
        assert_eq!(&small[0][..], b"head");
        assert_eq!(fill_iovecs(out.pieces(), 13, &mut iov), 0);
    }
}
