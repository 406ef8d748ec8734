//! Items that replies not yet written still reference, counted the way
//! memcached counts them, so incr/decr make the same choice it makes.
//!
//! Why: memcached rewrites an incr/decr result in place (padding a shorter
//! number with spaces) only while nobody else holds the item. A hit from
//! `mg`, or from a binary get, keeps a reference in its reply until the
//! connection's replies are written; an incr/decr of that item before then
//! stores the result as a new, unfetched item of exactly its length. So
//! `set k 0 0 2 / 10`, then `mg k` and `decr k 1` in one write, reads back
//! `9`, where without the `mg` it reads back `9 `.
//!
//! gannet writes a whole batch of replies at once, so it keeps, per
//! connection, the items memcached would still hold (by `ItemId`, which
//! an `md I` changes without making another item: `renamed` follows it),
//! and forgets them where memcached would have written its replies:
//!
//! - when the input has no complete command left (the end of a batch).
//!   This includes a command whose data block has not fully arrived:
//!   memcached reads the rest of the block straight into the item, so
//!   once that command is done its read buffer is empty, and it writes
//!   before it reads what follows;
//! - after a classic `get`/`gets`/`gat`/`gats` (they write at once, so
//!   they hold nothing) and after `mn`;
//! - after a binary NOOP and after a binary error reply (except the
//!   key-echoing miss of GETK/GATK, which memcached queues);
//! - when memcached's `-R` budget runs out: after the first R + 1 commands
//!   of a batch, then after every R more.
//!
//! The same write points decide whether replies are still queued when a
//! `watch` or `lru_crawler metadump` arrives: memcached refuses both
//! ("cannot pipeline other commands") while any earlier command of the
//! batch, quiet ones included, still has its reply object queued.
//!
//! Not modelled, because they depend on timing rather than on the input:
//! references held by other connections' replies, a reply that could not
//! be written because the socket was full, and memcached's queued LRU bump
//! after a second hit on a COLD item.

use crate::store::ItemId;

/// At most this many items are remembered between two writes. memcached
/// writes at least every `-R` + 1 commands, and each command holds at
/// most one item, so this only binds with a very large `-R`; past it,
/// further hits are not remembered.
const MAX_HELD: usize = 1024;

/// Most emptied lists a thread keeps for the next `Pins` that needs one.
const SPARE_LISTS: usize = 8;

thread_local! {
    /// Lists let go of by dropped `Pins` on this thread (a closed
    /// connection, or the one-datagram session of a UDP request), so that
    /// the next first hold on this worker does not allocate. Without it
    /// every UDP `mg` or binary get hit would allocate a list. The boxes
    /// are kept whole: a `Pins` holds a box, and re-boxing a spare list
    /// would allocate again.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<Vec<ItemId>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One connection's held items and its count of commands since its
/// batch began.
///
/// Every connection has one, so it is kept small: the list is boxed and
/// made (or taken from the thread's spares) on the first hold, so a
/// connection that never sends `mg` or a binary get never has one, then
/// reused for the connection's life and given back to the spares.
#[derive(Debug, Default)]
pub struct Pins {
    // Boxed on purpose: 8 bytes in every connection instead of 24, for
    // one extra allocation in the connections that use it.
    #[allow(clippy::box_collection)]
    held: Option<Box<Vec<ItemId>>>,
    /// Commands run since the batch began (memcached's `nreqs` budget).
    commands: u32,
    /// Commands run since memcached last wrote (saturating): their reply
    /// objects are still queued. 16 bits keep `Pins` at 16 bytes.
    queued: u16,
    /// [`Pins::written`] was called by the command still running (a
    /// `get`, `mn`, ...), whose [`Pins::command_done`] comes after: that
    /// command's reply is written, not queued.
    wrote_current: bool,
}

impl Pins {
    /// A reply that has not been written yet references `id`.
    pub fn hold(&mut self, id: ItemId) {
        let held = self.held.get_or_insert_with(|| {
            SPARE
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default()
        });
        if held.len() < MAX_HELD {
            held.push(id);
        }
    }

    /// What incr/decr must treat as held (`ArithArgs::held`).
    pub fn held(&self) -> &[ItemId] {
        self.held.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// A held item took a new id without becoming another item
    /// (`DeleteOutcome::renamed`): it is still held.
    pub fn renamed(&mut self, from: ItemId, to: ItemId) {
        if let Some(held) = &mut self.held {
            for id in held.iter_mut().filter(|id| **id == from) {
                *id = to;
            }
        }
    }

    /// memcached would have written its replies here, the running
    /// command's included.
    pub fn written(&mut self) {
        if let Some(held) = &mut self.held {
            held.clear();
        }
        self.queued = 0;
        self.wrote_current = true;
    }

    /// Earlier commands' replies are still queued in memcached, which
    /// then refuses `watch` and `lru_crawler metadump`.
    pub fn replies_queued(&self) -> bool {
        self.queued > 0
    }

    /// One more command of this batch has run; with a budget of
    /// `per_event` commands (`-R`), memcached writes after command
    /// `per_event + 1` and then after every `per_event` more.
    pub fn command_done(&mut self, per_event: usize) {
        self.commands = self.commands.saturating_add(1);
        if !std::mem::take(&mut self.wrote_current) {
            self.queued = self.queued.saturating_add(1);
        }
        let r = per_event.max(1) as u64;
        let n = u64::from(self.commands);
        if n > r && (n - 1) % r == 0 {
            self.written();
            self.wrote_current = false;
        }
    }

    /// The batch ended: no complete command is left in the input.
    pub fn batch_end(&mut self) {
        self.written();
        self.wrote_current = false;
        self.commands = 0;
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Some(mut held) = self.held.take() {
            held.clear();
            // `try_with`: nothing to keep once the thread is ending.
            let _ = SPARE.try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < SPARE_LISTS {
                    s.push(held);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ItemId {
        ItemId {
            chunk: n as u32,
            version: n,
        }
    }

    #[test]
    fn a_dropped_list_serves_the_next_first_hold() {
        let mut p = Pins::default();
        p.hold(id(1));
        let list = p.held().as_ptr();
        drop(p);
        let mut q = Pins::default();
        assert!(q.held().is_empty());
        q.hold(id(2));
        assert_eq!(q.held().as_ptr(), list);
        assert_eq!(q.held(), &[id(2)]);
    }

    #[test]
    fn held_until_written() {
        let mut p = Pins::default();
        p.hold(id(1));
        p.hold(id(2));
        assert_eq!(p.held(), &[id(1), id(2)]);
        p.written();
        assert!(p.held().is_empty());
    }

    #[test]
    fn replies_queue_until_a_write_point() {
        let mut p = Pins::default();
        assert!(!p.replies_queued());
        p.command_done(20); // `set`
        assert!(p.replies_queued());
        p.written(); // a `get` after it writes both replies...
        p.command_done(20); // ...its own included
        assert!(!p.replies_queued());
        p.command_done(20); // `version`
        assert!(p.replies_queued());
        p.batch_end();
        assert!(!p.replies_queued());
        // The -R budget's write leaves nothing queued either.
        for _ in 0..21 {
            p.command_done(20);
        }
        assert!(!p.replies_queued());
        p.command_done(20);
        assert!(p.replies_queued());
    }

    #[test]
    fn a_renamed_item_stays_held() {
        let mut p = Pins::default();
        p.renamed(id(1), id(9)); // nothing held yet: no list is made
        assert!(p.held.is_none());
        p.hold(id(1));
        p.hold(id(2));
        p.renamed(id(1), id(7));
        assert_eq!(p.held(), &[id(7), id(2)]);
    }

    #[test]
    fn the_budget_writes_after_r_plus_one_then_every_r() {
        // memcached with -R 20: the first write comes after command 21,
        // then after 41, 61, ...
        let mut p = Pins::default();
        let mut writes = Vec::new();
        for n in 1..=70u32 {
            p.hold(id(u64::from(n)));
            p.command_done(20);
            if p.held().is_empty() {
                writes.push(n);
            }
        }
        assert_eq!(writes, [21, 41, 61]);
        // A new batch counts from the start again.
        p.batch_end();
        p.hold(id(1));
        for _ in 0..20 {
            p.command_done(20);
        }
        assert_eq!(p.held(), &[id(1)]);
        p.command_done(20);
        assert!(p.held().is_empty());
    }

    #[test]
    fn a_budget_of_one_writes_after_every_command_but_the_first() {
        let mut p = Pins::default();
        p.hold(id(1));
        p.command_done(1);
        assert_eq!(p.held(), &[id(1)]);
        p.command_done(1);
        assert!(p.held().is_empty());
        p.hold(id(2));
        p.command_done(1);
        assert!(p.held().is_empty());
    }

    #[test]
    fn small_enough_to_live_in_every_connection() {
        assert!(std::mem::size_of::<Pins>() <= 16);
    }

    #[test]
    fn at_most_max_held_are_remembered() {
        let mut p = Pins::default();
        for n in 0..(MAX_HELD as u64 + 10) {
            p.hold(id(n));
        }
        assert_eq!(p.held().len(), MAX_HELD);
    }
}
