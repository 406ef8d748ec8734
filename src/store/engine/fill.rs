//! Items filled before they are stored: a large value read from the
//! socket straight into item memory.
//!
//! Why: a value that spans many reads would otherwise wait in the
//! connection's buffer and be copied into its item once complete. That is
//! a second copy of every byte, and a buffer of the value's size that
//! `-m` does not count. memcached allocates the item as soon as the
//! command line arrives and reads the data block into it; `reserve` does
//! the same. The caller fills the value (`room` and `filled`, or `fill`),
//! then stores it (`store_reserved`) or gives it back (`release`).
//!
//! A reserved item is allocated but not linked: no other thread can find
//! it, so its owner writes it without a lock (the `Item` invariant), and
//! its chunks count against `-m` like any other. The page mover leaves a
//! page with such a chunk to its class until the chunk is linked or freed
//! (`drain_page` gives up on chunks it finds in no LRU).

use super::*;

/// An allocated, unlinked item whose value is being written. Owned by one
/// connection; it must end in `Store::store_reserved` or
/// `Store::release` (dropping it keeps its chunks until restart).
#[derive(Debug)]
#[must_use = "a reserved item holds cache memory until stored or released"]
pub struct Reserved {
    r: Ref,
    nbytes: u32,
    filled: u32,
}

impl Reserved {
    /// Value bytes still to be written.
    pub fn missing(&self) -> usize {
        (self.nbytes - self.filled) as usize
    }

    /// The value's length.
    pub fn value_len(&self) -> usize {
        self.nbytes as usize
    }
}

impl Store {
    /// Allocate an unlinked item for `key` with `flags`, `exptime` and a
    /// value of `nbytes` bytes (evicting as a store would), and keep
    /// `cas`, the CAS the request expects, with it until it is stored (as
    /// memcached keeps a `cas` command's in its new item's header; see
    /// `reserved_args`). `None` when the key or the size would be refused,
    /// or no memory can be found: the caller then buffers the value and
    /// stores it the usual way, which gives the request its usual answer.
    pub fn reserve(
        &self,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        cas: u64,
        nbytes: usize,
    ) -> Option<Reserved> {
        if key.is_empty()
            || key.len() > 250
            || nbytes > u32::MAX as usize
            || self.too_large(key.len(), nbytes, flags)
        {
            return None;
        }
        let si = Self::shard_of(self.hash(key));
        let it = self.new_item(key, flags, exptime, nbytes, si)?;
        it.hm().cas = cas;
        Some(Reserved {
            r: it.r,
            nbytes: nbytes as u32,
            filled: 0,
        })
    }

    /// The flags, exptime and expected CAS a reserved item was made with.
    pub fn reserved_args(&self, res: &Reserved) -> (u32, RelTime, u64) {
        let it = Item::at(&self.slabs, res.r);
        (it.flags(), it.h().exptime, it.h().cas)
    }

    /// The reserved item's key.
    pub fn reserved_key<'a>(&'a self, res: &'a Reserved) -> &'a [u8] {
        let it = Item::at(&self.slabs, res.r);
        let key = it.key();
        // SAFETY: the key lies in the chunk `res` owns, which stays
        // allocated, and is not written again, while `res` is borrowed.
        unsafe { std::slice::from_raw_parts(key.as_ptr(), key.len()) }
    }

    /// The unwritten room of the value at the next byte to fill, up to the
    /// end of its chunk; empty once the value is complete. Write into it,
    /// then report how much with `filled`.
    pub fn room<'a>(&'a self, res: &'a mut Reserved) -> &'a mut [u8] {
        let it = Item::at(&self.slabs, res.r);
        match it.value_room(&self.slabs, res.filled as usize) {
            // SAFETY: the range lies in the value of an allocated chunk
            // that `res` alone owns (it is linked nowhere, and `Reserved`
            // cannot be copied); the mutable borrow of `res` keeps any
            // other access through it away while the slice lives, and the
            // slab memory lives as long as the store.
            Some((p, n)) => unsafe { std::slice::from_raw_parts_mut(p, n) },
            None => &mut [],
        }
    }

    /// Count `n` bytes written into `room` as filled.
    pub fn filled(&self, res: &mut Reserved, n: usize) {
        debug_assert!(n <= res.missing());
        res.filled += n.min(res.missing()) as u32;
    }

    /// Copy as much of `data` as the value still misses; how much.
    pub fn fill(&self, res: &mut Reserved, data: &[u8]) -> usize {
        let n = data.len().min(res.missing());
        Item::at(&self.slabs, res.r).write_value(&self.slabs, res.filled as usize, &data[..n]);
        res.filled += n as u32;
        n
    }

    /// Give a reserved item's chunks back, unstored.
    pub fn release(&self, res: Reserved) {
        self.free_item(Item::at(&self.slabs, res.r));
    }

    /// Store a complete reserved item as `a` asks (`a.value` is ignored;
    /// `a.key` and `a.flags` must be those it was reserved with; its CAS
    /// is set anew when it is linked). Only
    /// set, add and replace (with or without a CAS check) take a reserved
    /// item: append and prepend build a new item from the old one.
    pub fn store_reserved(&self, a: &StoreArgs, res: Reserved) -> StoreOutcome {
        let it = Item::at(&self.slabs, res.r);
        debug_assert_eq!(res.missing(), 0, "stored before it was filled");
        debug_assert_eq!(it.key(), a.key);
        debug_assert_eq!(it.flags(), a.flags);
        debug_assert!(!matches!(a.mode, Mode::Append | Mode::Prepend));
        self.store_plain(a, Some(it))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(mb: usize, evict: bool) -> Store {
        let cfg = StoreConfig {
            mem_limit: mb << 20,
            evict_to_free: evict,
            ..StoreConfig::default()
        };
        Store::new(cfg, Clock::new())
    }

    fn used_chunks(s: &Store) -> u64 {
        s.stats_slabs()
            .iter()
            .filter(|(k, _)| k.ends_with(":used_chunks"))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum()
    }

    fn get(s: &Store, k: &[u8]) -> Option<Vec<u8>> {
        s.get(k, false, |r| {
            r.ok().map(|it| it.value().flatten().copied().collect())
        })
    }

    fn args<'a>(mode: Mode, key: &'a [u8], flags: u32, exptime: RelTime) -> StoreArgs<'a> {
        StoreArgs::new(mode, key, flags, exptime, b"")
    }

    /// Fill `res` through `room` in pieces of at most `piece` bytes.
    fn fill_by_room(s: &Store, res: &mut Reserved, value: &[u8], piece: usize) {
        let mut at = value.len() - res.missing();
        while res.missing() > 0 {
            let room = s.room(res);
            assert!(!room.is_empty() && room.len() <= value.len() - at);
            let n = room.len().min(piece);
            room[..n].copy_from_slice(&value[at..at + n]);
            s.filled(res, n);
            at += n;
        }
        assert!(s.room(res).is_empty());
    }

    #[test]
    fn a_reserved_item_is_invisible_until_stored_whole() {
        let s = store(16, true);
        // Chained (over the 512 KiB chunk maximum): `room` stops at each
        // chunk's end.
        let value: Vec<u8> = (0..900_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut res = s.reserve(b"big", 7, 1234, 0, value.len()).unwrap();
        assert_eq!(s.reserved_key(&res), b"big");
        assert_eq!(s.reserved_args(&res), (7, 1234, 0));
        assert_eq!(s.fill(&mut res, &value[..1000]), 1000);
        assert_eq!(get(&s, b"big"), None);
        fill_by_room(&s, &mut res, &value, 70_000);
        assert_eq!(get(&s, b"big"), None);
        let o = s.store_reserved(&args(Mode::Set, b"big", 7, 1234), res);
        assert_eq!(o.status, StoreStatus::Stored);
        assert!(o.cas > 0);
        assert_eq!(get(&s, b"big").unwrap(), value);
        s.get(b"big", false, |r| {
            let it = r.unwrap();
            assert_eq!((it.flags(), it.exptime(), it.cas()), (7, 1234, o.cas));
        });
        // A small one in one chunk; `fill` never takes more than the value.
        let mut res = s.reserve(b"small", 0, 0, 0, 5000).unwrap();
        assert_eq!(s.fill(&mut res, &[b'x'; 6000]), 5000);
        assert_eq!(res.missing(), 0);
        let o = s.store_reserved(&args(Mode::Set, b"small", 0, 0), res);
        assert_eq!(o.status, StoreStatus::Stored);
        assert_eq!(get(&s, b"small").unwrap(), vec![b'x'; 5000]);
    }

    /// A value stored after a `flush_all` is visible, however long ago its
    /// item was reserved: memcached stamps an item's time when it links it.
    /// Under `-C` the flush goes by that time alone.
    #[test]
    fn a_flush_during_the_fill_does_not_hide_the_stored_value() {
        for use_cas in [true, false] {
            let clock = Clock::new();
            let cfg = StoreConfig {
                use_cas,
                ..StoreConfig::default()
            };
            let s = Store::new(cfg, clock.clone());
            let mut res = s.reserve(b"k", 0, 0, 0, 5000).unwrap();
            clock.advance(5);
            s.flush(0);
            clock.advance(1);
            s.fill(&mut res, &[b'v'; 5000]);
            let o = s.store_reserved(&args(Mode::Set, b"k", 0, 0), res);
            assert_eq!(o.status, StoreStatus::Stored);
            assert_eq!(
                get(&s, b"k").map(|v| v.len()),
                Some(5000),
                "use_cas {use_cas}"
            );
        }
    }

    #[test]
    fn released_or_refused_reservations_give_their_chunks_back() {
        let s = store(16, true);
        let base = used_chunks(&s);
        for len in [3000, 900_000] {
            let res = s.reserve(b"k", 0, 0, 0, len).unwrap();
            assert!(used_chunks(&s) > base, "reserved chunks count as used");
            s.release(res);
            assert_eq!(used_chunks(&s), base, "{len}");
        }
        let full = |mode, key: &'static [u8], cas| {
            let mut res = s.reserve(key, 0, 0, cas, 3000).unwrap();
            s.fill(&mut res, &[b'v'; 3000]);
            let mut a = args(mode, key, 0, 0);
            a.cas = s.reserved_args(&res).2;
            s.store_reserved(&a, res).status
        };
        assert_eq!(full(Mode::Replace, b"k", 0), StoreStatus::NotStored);
        assert_eq!(used_chunks(&s), base);
        assert_eq!(full(Mode::Add, b"k", 0), StoreStatus::Stored);
        let one = used_chunks(&s);
        assert_eq!(one, base + 1);
        assert_eq!(full(Mode::Add, b"k", 0), StoreStatus::NotStored);
        assert_eq!(full(Mode::Set, b"k", 99), StoreStatus::Exists);
        assert_eq!(full(Mode::Set, b"nope", 99), StoreStatus::NotFound);
        assert_eq!(used_chunks(&s), one);
        let cas = s.get(b"k", false, |r| r.unwrap().cas());
        assert_eq!(full(Mode::Set, b"k", cas), StoreStatus::Stored);
        assert_eq!(used_chunks(&s), one, "the old item was freed");
    }

    #[test]
    fn reserve_refuses_what_a_store_would_refuse() {
        let s = store(8, false);
        assert!(s.reserve(b"", 0, 0, 0, 10).is_none());
        assert!(s.reserve(&[b'k'; 251], 0, 0, 0, 10).is_none());
        assert!(s.reserve(b"k", 0, 0, 0, 2 << 20).is_none(), "over -I");
        // -M: once memory is full nothing is evicted to make room.
        let mut held = Vec::new();
        while let Some(r) = s.reserve(format!("k{}", held.len()).as_bytes(), 0, 0, 0, 100_000) {
            held.push(r);
            assert!(held.len() < 1000, "the limit was never reached");
        }
        assert!(!held.is_empty());
        let n = used_chunks(&s);
        for r in held {
            s.release(r);
        }
        assert!(used_chunks(&s) < n);
        let again = s.reserve(b"again", 0, 0, 0, 100_000);
        assert!(again.is_some(), "released chunks are reused");
        s.release(again.unwrap());
    }

    /// A page move never takes a chunk a connection is filling: while
    /// every page of a class holds one, the move fails and leaves them
    /// alone; once they are stored, the page can move (its items are
    /// rescued or evicted like any linked item).
    #[test]
    fn a_page_move_waits_for_reserved_chunks() {
        let s = Store::new(
            StoreConfig {
                mem_limit: 64 << 20,
                ..StoreConfig::default()
            },
            Clock::new(),
        );
        let n = 100_000;
        let class = s.class_for_item(4, 0, n);
        let mut held: Vec<Reserved> = (0..30)
            .map(|i| {
                s.reserve(format!("k{i:03}").as_bytes(), 0, 0, 0, n)
                    .unwrap()
            })
            .collect();
        assert!(s.slabs.class_state(class).pages.len() >= 3);
        let moved = |s: &Store| {
            let _one_mover = lock(&s.mover);
            s.page_to_pool(class)
        };
        assert!(!moved(&s), "a page with chunks being filled was moved");
        for (i, r) in held.iter_mut().enumerate() {
            assert_eq!(s.fill(r, &vec![i as u8; n]), n);
        }
        for (i, r) in held.into_iter().enumerate() {
            let key = format!("k{i:03}");
            let a = StoreArgs::new(Mode::Set, key.as_bytes(), 0, 0, b"");
            assert_eq!(s.store_reserved(&a, r).status, StoreStatus::Stored);
        }
        assert!(moved(&s), "a page of linked items could not move");
        let mut intact = 0;
        for i in 0..30 {
            let key = format!("k{i:03}");
            let v = s.get(key.as_bytes(), false, |r| {
                r.ok()
                    .map(|it| it.value().flatten().copied().collect::<Vec<u8>>())
            });
            if let Some(v) = v {
                assert_eq!(v, vec![i as u8; n], "{key}");
                intact += 1;
            }
        }
        assert!(intact >= 20, "{intact}");
    }
}
