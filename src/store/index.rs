//! One shard's hash index: open addressing with Robin Hood linear
//! probing, holding 32-bit chunk references.
//!
//! Why not chaining: a chained table needs a "next in bucket" link in
//! every item, and those 4 bytes sit inside the slab chunk, where they
//! count against `-m` and can push an item into the next size class.
//! Here the index costs 5 bytes per slot (a 4-byte `Ref` and a 1-byte
//! probe distance) outside item memory, and an item holds no index state
//! at all.
//!
//! Why Robin Hood with stored distances: every slot records how far it
//! sits from its home slot, so
//! - a lookup only compares keys of entries whose distance equals its own
//!   probe distance, i.e. entries with the same home slot (the same work
//!   as walking one bucket's chain), and stops as soon as it meets an
//!   entry closer to home than itself;
//! - removal shifts the following entries back by one using only the
//!   stored distances (no key is read or rehashed);
//! - only growing needs the hash of every key, which the caller supplies.
//!
//! Slots are stored in 40-byte groups of eight (distances, then
//! references), so a probe finds a slot's distance and reference in the
//! same group, one or two cache lines, instead of in two arrays. The capacity need not be
//! a power of two: the home slot is the high half of
//! `hash32 * capacity`, so the table can grow by 1.5x and its load stays
//! between 7/12 and 7/8.

use super::slab::{Ref, NULL};

/// Slots per group.
const LANES: usize = 8;
/// Grow when more than `MAX_LOAD_NUM / MAX_LOAD_DEN` of the slots are used.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;
/// Stored distance is `probe distance + 1` (0 = empty); an insert that
/// would need more than this grows the table instead.
const MAX_DIST: u8 = u8::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
struct Group {
    dist: [u8; LANES],
    refs: [Ref; LANES],
}

const EMPTY: Group = Group {
    dist: [0; LANES],
    refs: [NULL; LANES],
};

/// The index. Invariants:
/// - a slot is empty iff its distance byte is 0; an occupied slot holds
///   `d + 1`, where `d` is how many slots past its home slot it sits
///   (wrapping at the end);
/// - no empty slot lies between an entry and its home slot, and along
///   any run `dist[i + 1] <= dist[i] + 1` (Robin Hood order), which is
///   what lets a lookup stop at the first entry closer to home than
///   itself;
/// - `len` counts occupied slots plus `spill`; occupied slots are at most
///   7/8 of the capacity after every insert;
/// - `spill` holds entries whose probe run would not fit the distance
///   byte even after growing: only possible when hundreds of keys share
///   one 32-bit hash, which a random-seeded hash makes unreachable in
///   practice, but the index stays correct (lookups then scan `spill`).
pub(crate) struct Index {
    groups: Vec<Group>,
    len: usize,
    spill: Vec<Ref>,
}

impl Index {
    /// An index with room for about `slots` slots (at least one group).
    pub(crate) fn with_slots(slots: usize) -> Index {
        Index {
            groups: vec![EMPTY; slots.div_ceil(LANES).max(1)],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.groups.len() * LANES
    }

    /// Bytes the index occupies.
    pub(crate) fn bytes(&self) -> usize {
        self.groups.len() * std::mem::size_of::<Group>() + self.spill.len() * 4
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (((h as u32) as u64 * self.slots() as u64) >> 32) as usize
    }

    #[inline]
    fn dist(&self, i: usize) -> u8 {
        self.groups[i / LANES].dist[i % LANES]
    }

    #[inline]
    fn get_ref(&self, i: usize) -> Ref {
        self.groups[i / LANES].refs[i % LANES]
    }

    #[inline]
    fn set(&mut self, i: usize, d: u8, r: Ref) {
        let g = &mut self.groups[i / LANES];
        g.dist[i % LANES] = d;
        g.refs[i % LANES] = r;
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots() {
            0
        } else {
            i + 1
        }
    }

    /// The first entry with hash `h` for which `is_match` holds. Only
    /// entries sharing `h`'s home slot are offered to `is_match`.
    #[inline]
    pub(crate) fn find(&self, h: u64, mut is_match: impl FnMut(Ref) -> bool) -> Option<Ref> {
        let mut i = self.home(h);
        let mut want = 1u8;
        loop {
            let d = self.dist(i);
            if d < want {
                break;
            }
            if d == want {
                let r = self.get_ref(i);
                if is_match(r) {
                    return Some(r);
                }
            }
            if want == MAX_DIST {
                break;
            }
            want += 1;
            i = self.next(i);
        }
        if self.spill.is_empty() {
            None
        } else {
            self.spill.iter().copied().find(|&r| is_match(r))
        }
    }

    /// Add `r` under hash `h`. The caller guarantees `r` is not already
    /// present. `hash_of` gives the hash of any stored entry, for growing.
    pub(crate) fn insert(&mut self, h: u64, r: Ref, hash_of: impl Fn(Ref) -> u64) {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots() * MAX_LOAD_NUM {
            self.grow(&hash_of);
        }
        if let Err(carried) = self.place(h, r) {
            // A probe run too long for the distance byte (see `spill`):
            // growing would not shorten a run of equal hashes.
            self.spill.push(carried);
        }
        self.len += 1;
    }

    /// Robin Hood placement; on distance overflow returns the entry left
    /// in hand (which may be a displaced one, not `r`), with every other
    /// entry still in place.
    fn place(&mut self, h: u64, r: Ref) -> Result<(), Ref> {
        let mut i = self.home(h);
        let mut cur_r = r;
        let mut cur_d = 1u8;
        loop {
            let d = self.dist(i);
            if d == 0 {
                self.set(i, cur_d, cur_r);
                return Ok(());
            }
            if d < cur_d {
                let old = self.get_ref(i);
                self.set(i, cur_d, cur_r);
                cur_r = old;
                cur_d = d;
            }
            if cur_d == MAX_DIST {
                return Err(cur_r);
            }
            cur_d += 1;
            i = self.next(i);
        }
    }

    /// Remove `r`, stored under hash `h`. Returns whether it was there.
    pub(crate) fn remove(&mut self, h: u64, r: Ref) -> bool {
        let Some(mut i) = self.slot_of(h, r) else {
            return self.remove_spilled(r);
        };
        // Backward shift: pull each following displaced entry one slot
        // closer to home until an empty slot or an entry already at home.
        loop {
            let j = self.next(i);
            let d = self.dist(j);
            if d <= 1 {
                self.set(i, 0, NULL);
                break;
            }
            let rj = self.get_ref(j);
            self.set(i, d - 1, rj);
            i = j;
        }
        self.len -= 1;
        true
    }

    /// Point the entry for `old`, stored under hash `h`, at `new` (the
    /// item moved to another chunk). Returns whether `old` was there.
    pub(crate) fn replace(&mut self, h: u64, old: Ref, new: Ref) -> bool {
        if let Some(i) = self.slot_of(h, old) {
            let d = self.dist(i);
            self.set(i, d, new);
            return true;
        }
        match self.spill.iter_mut().find(|x| **x == old) {
            Some(x) => {
                *x = new;
                true
            }
            None => false,
        }
    }

    /// The slot holding `r`, stored under hash `h` (`None`: not in a slot;
    /// it may be spilled).
    fn slot_of(&self, h: u64, r: Ref) -> Option<usize> {
        let mut i = self.home(h);
        let mut want = 1u8;
        loop {
            let d = self.dist(i);
            if d < want {
                return None;
            }
            if d == want && self.get_ref(i) == r {
                return Some(i);
            }
            if want == MAX_DIST {
                return None;
            }
            want += 1;
            i = self.next(i);
        }
    }

    fn remove_spilled(&mut self, r: Ref) -> bool {
        match self.spill.iter().position(|&x| x == r) {
            Some(k) => {
                self.spill.swap_remove(k);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Rebuild at 1.5x the capacity. An entry whose probe run still
    /// overflows goes to `spill` (see the invariants).
    fn grow(&mut self, hash_of: &impl Fn(Ref) -> u64) {
        let slots = self.slots();
        let mut t = Index::with_slots((slots + slots / 2).max(LANES * 2));
        t.spill = std::mem::take(&mut self.spill);
        let stored = self
            .groups
            .iter()
            .flat_map(|g| (0..LANES).filter(|&l| g.dist[l] != 0).map(|l| g.refs[l]));
        for r in stored {
            if let Err(left) = t.place(hash_of(r), r) {
                t.spill.push(left);
            }
        }
        t.len = self.len;
        *self = t;
    }

    /// Positions a walk visits: every slot, then every spilled entry.
    pub(crate) fn positions(&self) -> usize {
        self.slots() + self.spill.len()
    }

    /// The entry at walk position `i` (see `positions`), if any. Positions
    /// are stable while the index is not changed; an insert, a removal
    /// (which shifts the entries after it back by one) or a growth moves
    /// entries, so a walk that drops the lock between positions may miss
    /// or repeat an entry.
    pub(crate) fn at(&self, i: usize) -> Option<Ref> {
        if i < self.slots() {
            (self.dist(i) != 0).then(|| self.get_ref(i))
        } else {
            self.spill.get(i - self.slots()).copied()
        }
    }

    /// Every stored reference (tests and consistency checks).
    #[cfg(test)]
    pub(crate) fn refs(&self) -> Vec<Ref> {
        let mut v = self.spill.clone();
        for g in &self.groups {
            for lane in 0..LANES {
                if g.dist[lane] != 0 {
                    v.push(g.refs[lane]);
                }
            }
        }
        v
    }

    /// Check the stored distances against real hashes (tests).
    #[cfg(test)]
    fn check(&self, hash_of: impl Fn(Ref) -> u64) {
        let n = self.slots();
        let mut count = 0;
        for i in 0..n {
            let d = self.dist(i);
            if d == 0 {
                continue;
            }
            count += 1;
            let home = self.home(hash_of(self.get_ref(i)));
            let real = (i + n - home) % n;
            assert_eq!(real + 1, d as usize, "slot {i}: stored distance is wrong");
            // No empty slot between home and here.
            let mut k = home;
            while k != i {
                assert_ne!(self.dist(k), 0, "hole in the probe path of slot {i}");
                k = self.next(k);
            }
        }
        assert_eq!(count + self.spill.len(), self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A hash for a ref: a fixed pseudo-random mix, so tests can steer it.
    fn mix(r: Ref) -> u64 {
        let mut x = r as u64 ^ 0x9e37_79b9_7f4a_7c15;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    #[test]
    fn group_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Group>(), 40);
    }

    #[test]
    fn insert_find_remove_against_a_model() {
        let mut ix = Index::with_slots(16);
        let mut model: HashSet<Ref> = HashSet::new();
        let mut seed = 12345u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..200_000 {
            let r = (rnd() % 5000) as Ref + 1;
            if model.contains(&r) {
                if rnd() % 2 == 0 {
                    assert!(ix.remove(mix(r), r));
                    model.remove(&r);
                } else {
                    assert_eq!(ix.find(mix(r), |x| x == r), Some(r));
                }
            } else {
                assert_eq!(ix.find(mix(r), |x| x == r), None);
                assert!(!ix.remove(mix(r), r));
                ix.insert(mix(r), r, mix);
                model.insert(r);
            }
            assert_eq!(ix.len(), model.len());
            if step % 20_000 == 0 {
                ix.check(mix);
            }
        }
        ix.check(mix);
        let mut got = ix.refs();
        got.sort_unstable();
        let mut want: Vec<Ref> = model.iter().copied().collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(ix.len() * MAX_LOAD_DEN <= ix.slots() * MAX_LOAD_NUM);
    }

    /// The page mover moves an item to another chunk: its entry keeps its
    /// place and now names the new chunk, also in a long shared run.
    #[test]
    fn replace_points_an_entry_at_a_new_chunk() {
        let same = |r: Ref| {
            if r % 1000 < 50 {
                u64::MAX
            } else {
                mix(r % 1000)
            }
        };
        let mut ix = Index::with_slots(8);
        for r in 1..=100 {
            ix.insert(same(r), r, same);
        }
        for r in [3, 40, 77] {
            assert!(ix.replace(same(r), r, r + 1000));
            assert!(!ix.replace(same(r), r, r + 2000), "r {r} is gone");
        }
        ix.check(same);
        assert_eq!(ix.len(), 100);
        for r in 1..=100 {
            let want = if [3, 40, 77].contains(&r) {
                r + 1000
            } else {
                r
            };
            assert_eq!(ix.find(same(r), |x| x == want), Some(want));
            assert_eq!(ix.find(same(r), |x| x == r).is_some(), want == r);
        }
        assert!(ix.remove(same(40), 1040));
    }

    #[test]
    fn colliding_hashes_share_a_home_and_all_stay_findable() {
        // Every entry has the same hash: one long probe run that wraps
        // around the end of the table.
        let same = |_r: Ref| u64::MAX;
        let mut ix = Index::with_slots(8);
        for r in 1..=100 {
            ix.insert(u64::MAX, r, same);
        }
        ix.check(same);
        for r in 1..=100 {
            assert_eq!(ix.find(u64::MAX, |x| x == r), Some(r));
        }
        for r in (1..=100).step_by(3) {
            assert!(ix.remove(u64::MAX, r));
        }
        ix.check(same);
        for r in 1..=100 {
            let want = (r % 3 != 1).then_some(r);
            assert_eq!(ix.find(u64::MAX, |x| x == r), want);
        }
    }

    #[test]
    fn probe_runs_longer_than_the_distance_byte_spill_and_stay_correct() {
        // 300 entries with one hash cannot share a 255-slot probe run in
        // any table: the rest must spill, and everything stays findable
        // and removable.
        let same = |_r: Ref| 7u64;
        let mut ix = Index::with_slots(8);
        for r in 1..=300 {
            ix.insert(7, r, same);
        }
        ix.check(same);
        assert!(!ix.spill.is_empty());
        for r in 1..=300 {
            assert_eq!(ix.find(7, |x| x == r), Some(r), "ref {r}");
        }
        for r in (1..=300).rev().step_by(2) {
            assert!(ix.remove(7, r), "ref {r}");
        }
        ix.check(same);
        assert_eq!(ix.len(), 150);
        for r in 1..=300 {
            assert_eq!(ix.find(7, |x| x == r).is_some(), r % 2 == 1, "ref {r}");
        }
    }

    #[test]
    fn a_walk_over_positions_sees_every_entry_once() {
        // Spilled entries included: 300 refs with one hash spill.
        let same = |_r: Ref| 7u64;
        let mut ix = Index::with_slots(8);
        for r in 1..=300 {
            ix.insert(7, r, same);
        }
        let mut seen: Vec<Ref> = (0..ix.positions()).filter_map(|i| ix.at(i)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=300).collect::<Vec<Ref>>());
        assert_eq!(ix.at(ix.positions()), None);
    }

    #[test]
    fn find_offers_only_same_home_entries() {
        let mut ix = Index::with_slots(64);
        for r in 1..=40 {
            ix.insert(mix(r), r, mix);
        }
        for r in 1..=40 {
            let home = ix.home(mix(r));
            ix.find(mix(r), |x| {
                assert_eq!(ix.home(mix(x)), home);
                x == r
            });
        }
    }
}
