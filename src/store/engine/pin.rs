//! Pins: a reader keeps an item's value readable after its shard lock is
//! released, so a large value can be handed to the kernel straight from
//! item memory (memcached's reference count on an item it is sending).
//!
//! Why pins live in a per-shard list and not in the item header: the
//! header has no spare byte, and pins are rare (a worker takes one for a
//! large value in a reply and gives it back once the socket has taken
//! the bytes: in the same turn, or, for a client reading slower than the
//! server writes, when the connection's held reply drains or it closes).
//! The list is almost always empty, so the checks on the free path cost
//! one length test; each slow reader of a large value adds one entry to
//! scan while it reads.
//!
//! What a pin guarantees, for as long as it is held (the invariant every
//! writer below keeps):
//! - the item's chunks are not freed: `remove` of a pinned item unlinks
//!   it (it is gone for every client) but leaves its chunks to the last
//!   `unpin` (`Shard::defer_free`);
//! - its chunks are not moved: the page mover skips a pinned item, as it
//!   skips a chunk being filled, and its page stays with the class;
//! - its value bytes are not rewritten: an incr/decr on a pinned item
//!   makes a new item, as memcached's does on an item someone references.
//!
//! Header fields (LRU links, times, state bits) may still change under
//! the shard lock; a pin only covers the value bytes.

use super::super::item::Item;
use super::super::slab::Ref;
use super::{Shard, Store};

/// One pinned item of a shard.
#[derive(Debug, Clone, Copy)]
pub(super) struct PinEntry {
    r: Ref,
    count: u32,
    /// Unlinked while pinned: free its chunks at the last unpin.
    dead: bool,
}

/// A pin on an item's value (see the module docs). Give it back with
/// `Store::unpin`; one never given back keeps its item's memory forever.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a pin must be given back with Store::unpin"]
pub struct Pin {
    shard: u16,
    r: Ref,
}

impl Shard {
    /// Whether the item at `r` is pinned.
    pub(super) fn is_pinned(&self, r: Ref) -> bool {
        !self.pins.is_empty() && self.pins.iter().any(|e| e.r == r)
    }

    /// Pin the item at `r` of this shard (number `shard`).
    pub(super) fn pin(&mut self, shard: usize, r: Ref) -> Pin {
        match self.pins.iter_mut().find(|e| e.r == r) {
            Some(e) => e.count += 1,
            None => self.pins.push(PinEntry {
                r,
                count: 1,
                dead: false,
            }),
        }
        Pin {
            shard: shard as u16,
            r,
        }
    }

    /// The item at `r` was just unlinked: if it is pinned, mark it to be
    /// freed at its last unpin and return true (the caller must not free
    /// it now).
    pub(super) fn defer_free(&mut self, r: Ref) -> bool {
        if self.pins.is_empty() {
            return false;
        }
        match self.pins.iter_mut().find(|e| e.r == r) {
            Some(e) => {
                e.dead = true;
                true
            }
            None => false,
        }
    }
}

impl Store {
    /// Give back a pin taken with `ItemRef::pin`. The last pin of an item
    /// removed meanwhile frees its chunks.
    pub fn unpin(&self, pin: Pin) {
        let mut sh = self.shard(usize::from(pin.shard));
        let Some(i) = sh.pins.iter().position(|e| e.r == pin.r) else {
            debug_assert!(false, "unpin of an item that is not pinned");
            return;
        };
        let e = &mut sh.pins[i];
        e.count -= 1;
        if e.count > 0 {
            return;
        }
        let e = sh.pins.swap_remove(i);
        if e.dead {
            // Unlinked while pinned: nothing else refers to it.
            self.free_item(Item::at(&self.slabs, e.r));
        }
    }

    /// Items pinned now, summed over shards (for tests).
    #[cfg(test)]
    pub(crate) fn pinned_items(&self) -> usize {
        (0..super::NSHARDS).map(|s| self.shard(s).pins.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::lock;
    use super::*;
    use crate::clock::Clock;
    use crate::store::{ArithArgs, ArithStatus, DeleteArgs, Mode, StoreArgs, StoreConfig};
    use crate::store::{DeleteStatus, StoreStatus};

    fn store(mb: usize) -> Store {
        let cfg = StoreConfig {
            mem_limit: mb << 20,
            ..StoreConfig::default()
        };
        Store::new(cfg, Clock::new())
    }

    fn set(s: &Store, k: &[u8], v: &[u8]) -> StoreStatus {
        s.store(&StoreArgs::new(Mode::Set, k, 0, 0, v)).status
    }

    /// Pin `k` and keep its segments, as `exec::out` does.
    fn pin(s: &Store, k: &[u8]) -> (Pin, Vec<(*const u8, usize)>) {
        s.get(k, false, |r| {
            let it = r.expect("pinned key present");
            let mut segs = Vec::new();
            let p = it.pin(|ptr, len| segs.push((ptr, len))).expect("pinnable");
            (p, segs)
        })
    }

    fn read(segs: &[(*const u8, usize)]) -> Vec<u8> {
        segs.iter()
            // SAFETY: the tests read segments only while their pin is held.
            .flat_map(|&(p, n)| unsafe { std::slice::from_raw_parts(p, n) })
            .copied()
            .collect()
    }

    fn used_chunks(s: &Store, class: u8) -> u64 {
        let key = format!("{class}:used_chunks");
        s.stats_slabs()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, v)| v.parse().unwrap())
    }

    /// Store enough other values of `value`'s size to reuse every free
    /// chunk of its class several times over.
    fn churn(s: &Store, n: usize, size: usize) {
        for i in 0..n {
            let v = vec![b'0' + (i % 10) as u8; size];
            assert_eq!(
                set(s, format!("churn{i}").as_bytes(), &v),
                StoreStatus::Stored
            );
        }
    }

    #[test]
    fn a_pinned_value_survives_delete_overwrite_and_eviction() {
        let s = store(4);
        let n = 100_000;
        let class = s.class_for_item(1, 0, n);
        let a = vec![b'a'; n];
        for (i, end) in ["delete", "overwrite", "evict"].into_iter().enumerate() {
            assert_eq!(set(&s, b"k", &a), StoreStatus::Stored);
            let (p, segs) = pin(&s, b"k");
            let before = used_chunks(&s, class);
            match end {
                "delete" => {
                    let d = s.delete(&DeleteArgs::new(b"k")).status;
                    assert_eq!(d, DeleteStatus::Deleted);
                }
                "overwrite" => assert_eq!(set(&s, b"k", &vec![b'b'; n]), StoreStatus::Stored),
                _ => {}
            }
            // 4 MiB hold about 40 such values: 200 stores evict everything
            // older, the pinned item's key included.
            churn(&s, 200, n);
            assert!(s.get(b"k", false, |r| r.is_err()), "{end}: k still there");
            assert_eq!(read(&segs), a, "{end}: pinned value changed");
            assert_eq!(s.pinned_items(), 1);
            let held = used_chunks(&s, class);
            s.unpin(p);
            assert_eq!(s.pinned_items(), 0);
            assert_eq!(
                used_chunks(&s, class),
                held - 1,
                "{end}: chunk not freed at unpin"
            );
            assert!(before >= 1, "round {i}");
        }
    }

    #[test]
    fn a_chained_value_stays_whole_while_pinned() {
        let s = store(8);
        let big: Vec<u8> = (0..900_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(set(&s, b"big", &big), StoreStatus::Stored);
        let (p, segs) = pin(&s, b"big");
        assert!(segs.len() >= 2, "not chained");
        assert_eq!(
            s.delete(&DeleteArgs::new(b"big")).status,
            DeleteStatus::Deleted
        );
        churn(&s, 40, 500_000);
        assert_eq!(read(&segs), big);
        s.unpin(p);
        assert_eq!(s.pinned_items(), 0);
    }

    #[test]
    fn pins_count_and_the_last_unpin_frees() {
        let s = store(8);
        let class = s.class_for_item(1, 0, 3);
        assert_eq!(set(&s, b"k", b"abc"), StoreStatus::Stored);
        let (p1, segs) = pin(&s, b"k");
        let (p2, _) = pin(&s, b"k");
        assert_eq!(s.pinned_items(), 1);
        assert_eq!(
            s.delete(&DeleteArgs::new(b"k")).status,
            DeleteStatus::Deleted
        );
        assert_eq!(used_chunks(&s, class), 1);
        s.unpin(p1);
        assert_eq!(used_chunks(&s, class), 1, "freed with a pin left");
        assert_eq!(read(&segs), b"abc");
        s.unpin(p2);
        assert_eq!(used_chunks(&s, class), 0);
        // A pin on a live item given back frees nothing.
        assert_eq!(set(&s, b"k", b"abc"), StoreStatus::Stored);
        let (p, _) = pin(&s, b"k");
        s.unpin(p);
        assert_eq!(used_chunks(&s, class), 1);
        assert!(s.get(b"k", false, |r| r.is_ok()));
    }

    #[test]
    fn incr_on_a_pinned_item_makes_a_new_item() {
        let s = store(8);
        assert_eq!(set(&s, b"n", b"100"), StoreStatus::Stored);
        let (p, segs) = pin(&s, b"n");
        let o = s.arith(&ArithArgs::new(b"n", false, 95));
        assert_eq!((o.status, o.value), (ArithStatus::Ok, 5));
        assert_eq!(read(&segs), b"100", "rewritten in place while pinned");
        // A new item of the result's length, not "5  " padded in place.
        let v = s.get(b"n", false, |r| {
            r.unwrap().value().flatten().copied().collect::<Vec<u8>>()
        });
        assert_eq!(v, b"5");
        s.unpin(p);
        // Unpinned, the next one pads in place again (memcached's rule).
        assert_eq!(set(&s, b"n", b"10"), StoreStatus::Stored);
        assert_eq!(s.arith(&ArithArgs::new(b"n", false, 1)).value, 9);
        let v = s.get(b"n", false, |r| {
            r.unwrap().value().flatten().copied().collect::<Vec<u8>>()
        });
        assert_eq!(v, b"9 ");
    }

    #[test]
    fn a_page_move_skips_pinned_items_until_they_are_unpinned() {
        let s = store(64);
        let n = 100_000;
        let class = s.class_for_item(4, 0, n);
        let mut pins = Vec::new();
        for i in 0..30u8 {
            let key = format!("k{i:03}");
            assert_eq!(set(&s, key.as_bytes(), &vec![i; n]), StoreStatus::Stored);
            pins.push(pin(&s, key.as_bytes()));
        }
        assert!(s.slabs.class_state(class).pages.len() >= 3);
        let moved = |s: &Store| {
            let _one_mover = lock(&s.mover);
            s.page_to_pool(class)
        };
        assert!(!moved(&s), "a page of pinned items was moved");
        for (i, (_, segs)) in pins.iter().enumerate() {
            assert_eq!(read(segs), vec![i as u8; n]);
        }
        for (p, _) in pins {
            s.unpin(p);
        }
        assert!(moved(&s), "a page of unpinned items could not move");
    }
}
