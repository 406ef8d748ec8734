//! Which protocol a connection speaks, decided by its first byte.
//!
//! With `-B auto` (the default) a connection whose first byte is 0x80 (the
//! binary request magic) speaks the binary protocol for its whole life;
//! anything else is text. `-B ascii` and `-B binary` force one protocol;
//! a listener's `proto[...]:` prefix (`-l`) does the same for its own
//! connections.

use crate::config::Protocol;
use crate::protocol::binary::{Header, HEADER_LEN, REQUEST_MAGIC};

use super::binary::Session as BinarySession;
use super::fill::Slot;
use super::out::Out;
use super::text::{Progress, Session as TextSession};
use super::Ctx;
use crate::store::Store;

/// Per-connection protocol state.
#[derive(Debug)]
pub enum Session {
    /// No byte seen yet; what the listener allows, and whether the
    /// connection is a stream (see `for_stream`).
    Detect(Protocol, bool),
    Text(TextSession),
    Binary(BinarySession),
}

impl Session {
    /// A session for a connection of a listener that speaks `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Session::Detect(protocol, false)
    }

    /// A session of a stream connection: a large value is read straight
    /// into its item as it arrives (`value_room`). Call `abandon` before
    /// dropping it.
    pub fn for_stream(protocol: Protocol) -> Self {
        Session::Detect(protocol, true)
    }

    /// Where the next bytes read belong when a value is being read into
    /// its item: that item's memory, up to the end of its chunk. `None`
    /// when the next bytes belong in the input buffer. Report what was
    /// written with `value_filled`.
    pub fn value_room<'a>(&'a mut self, store: &'a Store) -> Option<&'a mut [u8]> {
        self.fill_slot()?.room(store)
    }

    /// `n` bytes were written into `value_room`.
    pub fn value_filled(&mut self, store: &Store, n: usize) {
        if let Some(slot) = self.fill_slot() {
            slot.filled(store, n);
        }
    }

    /// The connection is closing: give back any item being filled.
    pub fn abandon(&mut self, store: &Store) {
        if let Some(slot) = self.fill_slot() {
            slot.abandon(store);
        }
    }

    /// Whether a refused data block is being discarded (`conn_swallow`).
    pub fn swallowing(&self) -> bool {
        match self {
            Session::Text(s) => s.swallowing(),
            Session::Binary(s) => s.swallowing(),
            Session::Detect(..) => false,
        }
    }

    /// Whether the connection is reading a data block whose command is
    /// known (memcached's `conn_nread`), given what it holds (`input`) and
    /// the size its next request needs (`Progress::need`, 0 if unknown):
    /// a value being read into its item, a text data block (with its
    /// `\r\n`), or a binary value once header, extras and key are in.
    pub fn reading_value(&self, input: &[u8], need: usize) -> bool {
        match self {
            Session::Text(s) => s.fill.as_ref().is_some_and(|f| f.active()) || need > 0,
            Session::Binary(s) => {
                let head_in = input.first_chunk::<HEADER_LEN>().is_some_and(|h| {
                    let h = Header::decode(h);
                    input.len() >= HEADER_LEN + usize::from(h.extras_len) + usize::from(h.key_len)
                });
                s.fill.as_ref().is_some_and(|f| f.active()) || (head_in && need > input.len())
            }
            Session::Detect(..) => false,
        }
    }

    fn fill_slot(&mut self) -> Option<&mut Slot> {
        match self {
            Session::Text(s) => s.fill.as_deref_mut(),
            Session::Binary(s) => s.fill.as_deref_mut(),
            Session::Detect(..) => None,
        }
    }

    /// Run the complete requests at the start of `input` (see
    /// `text::Session::process` for the meaning of the arguments).
    pub fn process(
        &mut self,
        ctx: &Ctx,
        input: &[u8],
        out: &mut Out,
        budget: usize,
        out_limit: usize,
    ) -> Progress {
        if let Session::Detect(protocol, stream) = *self {
            let Some(&first) = input.first() else {
                return Progress::idle();
            };
            let binary = match protocol {
                Protocol::Auto => first == REQUEST_MAGIC,
                Protocol::Binary => true,
                Protocol::Ascii => false,
            };
            *self = if binary && stream {
                Session::Binary(BinarySession::for_stream())
            } else if binary {
                Session::Binary(BinarySession::new())
            } else if stream {
                Session::Text(TextSession::for_stream())
            } else {
                Session::Text(TextSession::new())
            };
        }
        match self {
            Session::Text(s) => s.process(ctx, input, out, budget, out_limit),
            Session::Binary(s) => s.process(ctx, input, out, budget, out_limit),
            Session::Detect(..) => unreachable!("decided above"),
        }
    }
}
