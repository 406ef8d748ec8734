//! Large values read straight into their items.
//!
//! Why: a storage command whose data block spans several reads used to
//! wait in the connection's input buffer until complete, and its value
//! was then copied into the item: two copies of every byte, and a buffer
//! of the value's size outside `-m`. memcached instead allocates the item
//! from the command line (or packet header) and reads the data into it.
//! A session does the same once a block is `FILL_MIN` or more short: it
//! reserves the item (`Store::reserve`), moves the part already buffered
//! into it, and the server reads the rest into item memory (`room`). Once
//! the value is complete (and, in the text protocol, the `\r\n` after it
//! has arrived like any input), the command runs with the filled item in
//! place of a buffered value.
//!
//! Only commands that store a new item whole take part: `set`, `add`,
//! `replace`, `cas`, `ms` in those modes, and binary SET, ADD and REPLACE.
//! Append and prepend build their item from the old one, so their data is
//! buffered as before. When the item cannot be had (no memory under `-M`,
//! a size the store refuses) the value is buffered too, and the command
//! gets its usual answer once it is complete.

use crate::store::{Reserved, Store};

/// A data block at least this much short of complete is read into its
/// item; a smaller remainder is buffered, which copies a few bytes twice
/// but picks up the requests pipelined behind it in the same read.
pub const FILL_MIN: usize = 1024;

/// What a storage command needs once its value is in its item.
#[derive(Debug)]
pub(super) enum Kind {
    /// A classic command: which one, and `noreply`. The item keeps its
    /// exptime and the CAS a `cas` expects (`Store::reserved_args`).
    Text {
        cmd: crate::protocol::text::StoreCmd,
        noreply: bool,
    },
    /// An `ms`: its line is kept (`Slot::line`) and parsed again.
    Meta,
    /// A binary SET, ADD or REPLACE: its header, extras and key are kept
    /// (`Slot::line`, the header's body length cut to extras and key) and
    /// parsed again. Its value ends the packet: no end bytes follow.
    Binary,
}

impl Kind {
    /// Bytes that must follow the value (`\r\n` in the text protocol).
    fn end_len(&self) -> usize {
        match self {
            Kind::Binary => 0,
            _ => 2,
        }
    }
}

/// A command whose value is being read into its item.
#[derive(Debug)]
pub(super) struct Fill {
    pub item: Reserved,
    pub kind: Kind,
}

/// A connection's fill state. Boxed in the session and kept once made, so
/// an idle connection pays one pointer and a busy one allocates once.
#[derive(Debug, Default)]
pub(super) struct Slot {
    now: Option<Fill>,
    /// The line of the `ms` being filled (capacity kept between fills).
    pub line: Vec<u8>,
}

impl Slot {
    /// Start filling `item`: `line` is kept for `Kind::Meta`, and `part`,
    /// the bytes of the value already buffered (less than all of it),
    /// moves into the item.
    pub fn begin(
        &mut self,
        store: &Store,
        mut item: Reserved,
        kind: Kind,
        line: &[u8],
        part: &[u8],
    ) {
        debug_assert!(self.now.is_none());
        debug_assert!(part.len() < item.value_len());
        store.fill(&mut item, part);
        if !matches!(kind, Kind::Text { .. }) {
            self.line.clear();
            self.line.extend_from_slice(line);
        }
        self.now = Some(Fill { item, kind });
    }

    /// Whether a value is being filled.
    pub fn active(&self) -> bool {
        self.now.is_some()
    }

    /// Move what `input` holds of the value into the item, and take the
    /// command once its value is complete and the bytes that must end it
    /// (`Kind::end_len`) follow in `input`: they are the first bytes after
    /// the value, for the caller to check. Returns how much of `input`
    /// went into the item, and the command when it is ready.
    pub fn step(&mut self, store: &Store, input: &[u8]) -> (usize, Option<Fill>) {
        let Some(f) = &mut self.now else {
            return (0, None);
        };
        let took = store.fill(&mut f.item, input);
        let ready = f.item.missing() == 0 && input.len() - took >= f.kind.end_len();
        (took, if ready { self.now.take() } else { None })
    }

    /// See `exec::session::Session::value_room`.
    pub fn room<'a>(&'a mut self, store: &'a Store) -> Option<&'a mut [u8]> {
        match &mut self.now {
            Some(f) if f.item.missing() > 0 => Some(store.room(&mut f.item)),
            _ => None,
        }
    }

    /// `n` bytes were written into `room`.
    pub fn filled(&mut self, store: &Store, n: usize) {
        if let Some(f) = &mut self.now {
            store.filled(&mut f.item, n);
        }
    }

    /// The connection is closing: give the item back.
    pub fn abandon(&mut self, store: &Store) {
        if let Some(f) = self.now.take() {
            store.release(f.item);
        }
    }
}
