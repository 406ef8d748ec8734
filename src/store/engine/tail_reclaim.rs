//! The maintainer's reclaim of dead items at the LRU tails: expired or
//! flushed items that nothing touches go once they are the oldest of
//! their LRU, not only when an allocation needs their memory or the
//! crawler passes by. memcached's maintainer does this on each juggle
//! (`lru_pull_tail` counts them in `reclaimed`), so after a wave of
//! expiries its `curr_items` drops within a second; operators read that.
//!
//! Why the shards have to agree first: memcached has one LRU per class
//! and segment, and it reclaims the run of dead items at its tail,
//! stopping at the first live one. gannet splits each LRU over 64
//! shards, so the tail of one shard's list may be an item that sits in
//! the middle of memcached's single list (a few items per shard in a
//! small cache). Reclaiming every shard's dead tail would take most of a
//! small cache's dead items, where memcached leaves them to the crawler.
//! Items enter an LRU in the order of their internal version (the CAS,
//! kept even under `-C`), so the single list's tail run is, closely
//! enough, the dead items older than the oldest live item at any shard's
//! tail: a first pass finds that version, a second reclaims below it.

use super::*;

/// Most items one `reclaim_tails` round looks at or reclaims at one tail
/// (class, segment and shard). memcached pulls at most 500 x 5 per
/// juggle; this keeps one shard lock hold to a few microseconds.
const RECLAIM_RUN: usize = 512;

impl Store {
    /// Reclaim the dead items at the tails of `class`'s LRUs that a
    /// single list per class would have at its tail. Returns how many.
    pub(super) fn reclaim_tails(&self, class: usize, now: RelTime) -> usize {
        let segs = self.tail_segments();
        if segs.is_empty() {
            return 0;
        }
        let mut oldest_live = [u64::MAX; 4];
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            for &seg in segs {
                if let Some(cas) = self.first_live(&sh, class, seg, now) {
                    let o = &mut oldest_live[seg as usize];
                    *o = (*o).min(cas);
                }
            }
        }
        // A shard's HOT holds its own newest items, so the oldest end of
        // one shard's HOT may be older than all of another's: items a
        // single HOT would already have handed to COLD. Those may go only
        // if COLD's tail run reaches them too.
        let cold = oldest_live[COLD as usize];
        let hot = &mut oldest_live[HOT as usize];
        *hot = (*hot).min(cold);
        let mut freed = 0;
        for i in 0..NSHARDS {
            let mut sh = self.shard(i);
            for &seg in segs {
                freed += self.reclaim_run(&mut sh, class, seg, now, oldest_live[seg as usize]);
            }
        }
        freed
    }

    /// The LRUs memcached's maintainer pulls: TEMP (with `temp_lru`),
    /// HOT and WARM, and COLD only when segmented (a flat LRU is all
    /// COLD, which memcached reclaims on allocation instead).
    fn tail_segments(&self) -> &'static [u8] {
        match (self.lru.temp_ttl().is_some(), self.lru.segmented()) {
            (true, true) => &[TEMP, HOT, WARM, COLD],
            (false, true) => &[HOT, WARM, COLD],
            (true, false) => &[TEMP],
            (false, false) => &[],
        }
    }

    /// The version of the first live item from this tail, if one is
    /// within `RECLAIM_RUN` items.
    fn first_live(&self, sh: &Shard, class: usize, seg: u8, now: RelTime) -> Option<u64> {
        let mut r = sh.lru[class][seg as usize].tail;
        for _ in 0..RECLAIM_RUN {
            if r == NULL {
                return None;
            }
            let it = Item::at(&self.slabs, r);
            if self.dead(it, now).is_none() {
                return Some(it.h().cas);
            }
            r = it.h().prev;
        }
        None
    }

    /// Reclaim dead items from this tail while they are older than
    /// `oldest_live`.
    fn reclaim_run(
        &self,
        sh: &mut Shard,
        class: usize,
        seg: u8,
        now: RelTime,
        oldest_live: u64,
    ) -> usize {
        let mut freed = 0;
        while freed < RECLAIM_RUN {
            let t = sh.lru[class][seg as usize].tail;
            if t == NULL {
                break;
            }
            let it = Item::at(&self.slabs, t);
            if it.h().cas >= oldest_live || self.dead(it, now).is_none() {
                break;
            }
            self.reclaim(sh, class, it);
            freed += 1;
        }
        freed
    }
}
