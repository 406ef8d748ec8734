//! Item size histogram for `stats sizes` (memcached's `-o track_sizes`).
//!
//! Operators turn this on to see what sizes their items really are before
//! choosing `-f`/`-n`/`slab_chunk_max`. It counts linked items by their
//! total size (header + key + value) rounded up to 32 bytes, like
//! memcached, but the sizes are gannet's own (a 32-byte header where
//! memcached has 56), because the point is to show what the memory holds.
//!
//! Off, it costs one relaxed load per link/unlink. On, one relaxed
//! read-modify-write on a shared counter: tracking is a diagnostic mode,
//! as in memcached (which takes a global mutex for it).
//!
//! Items linked before tracking started are not in the counts, so their
//! unlink must not be taken from them either. memcached tells them apart
//! by CAS: enabling takes a CAS value, and an item whose CAS is below it
//! is ignored both ways. gannet does the same (its items carry a CAS even
//! under `-C`, where the store passes 0 and everything counts). A counter
//! still never goes below zero: an in-place incr gives an old item a new
//! CAS, which memcached's histogram miscounts too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Bucket width in bytes (memcached's).
const BUCKET: usize = 32;

type Hist = Option<Box<[AtomicU64]>>;

pub(crate) struct Sizes {
    /// Fast check for the hot path; set before `hist` is made, so a link
    /// that misses it took its CAS before `cas_min` did.
    enabled: AtomicBool,
    /// `hist[i]` counts items of total size in `(32*(i-1), 32*i]`.
    /// Written only when tracking is switched (rare), so readers, which
    /// only take the read side, practically never wait.
    hist: RwLock<Hist>,
    /// Items with a CAS below this were linked before tracking started
    /// (memcached's `stats_sizes_cas_min`). Written under `hist`'s write
    /// lock, read under its read lock.
    cas_min: AtomicU64,
    nbuckets: usize,
}

impl Sizes {
    /// A histogram for items up to `item_size_max` bytes (larger totals
    /// land in the last bucket), off until [`Sizes::enable`].
    pub(crate) fn new(item_size_max: usize) -> Sizes {
        Sizes {
            enabled: AtomicBool::new(false),
            hist: RwLock::new(None),
            cas_min: AtomicU64::new(0),
            nbuckets: item_size_max / BUCKET + 2,
        }
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Hist> {
        self.hist.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Start tracking with zero counts, ignoring items whose CAS is below
    /// what `cas_min` returns (called only when tracking was off). Already
    /// on, the counts are kept, as memcached keeps them.
    pub(crate) fn enable(&self, cas_min: impl FnOnce() -> u64) {
        self.enabled.store(true, Ordering::Relaxed);
        let mut h = self.hist.write().unwrap_or_else(|e| e.into_inner());
        if h.is_none() {
            self.cas_min.store(cas_min(), Ordering::Relaxed);
            *h = Some((0..self.nbuckets).map(|_| AtomicU64::new(0)).collect());
        }
    }

    /// Stop tracking and drop the counts.
    pub(crate) fn disable(&self) {
        let mut h = self.hist.write().unwrap_or_else(|e| e.into_inner());
        *h = None;
        self.enabled.store(false, Ordering::Relaxed);
    }

    fn bucket(&self, ntotal: usize) -> usize {
        ntotal.div_ceil(BUCKET).min(self.nbuckets - 1)
    }

    /// An item of `ntotal` bytes with CAS `cas` was linked.
    #[inline]
    pub(crate) fn add(&self, ntotal: usize, cas: u64) {
        if !self.enabled() {
            return;
        }
        if let Some(h) = self.read().as_ref() {
            if cas >= self.cas_min.load(Ordering::Relaxed) {
                h[self.bucket(ntotal)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An item of `ntotal` bytes with CAS `cas` was unlinked.
    #[inline]
    pub(crate) fn remove(&self, ntotal: usize, cas: u64) {
        if !self.enabled() {
            return;
        }
        if let Some(h) = self.read().as_ref() {
            if cas >= self.cas_min.load(Ordering::Relaxed) {
                let _ = h[self.bucket(ntotal)].fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
            }
        }
    }

    /// `stats sizes`: `<size> <count>` for each non-empty bucket, or
    /// `sizes_status disabled`.
    pub(crate) fn report(&self) -> Vec<(String, String)> {
        match self.read().as_ref() {
            None => vec![("sizes_status".into(), "disabled".into())],
            Some(h) => h
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let n = n.load(Ordering::Relaxed);
                    (n > 0).then(|| ((i * BUCKET).to_string(), n.to_string()))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(item_size_max: usize, cas_min: u64) -> Sizes {
        let s = Sizes::new(item_size_max);
        s.enable(|| cas_min);
        s
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn disabled_reports_status_and_counts_nothing() {
        let s = Sizes::new(1 << 20);
        s.add(100, 1);
        assert_eq!(s.report(), pairs(&[("sizes_status", "disabled")]));
    }

    #[test]
    fn buckets_round_up_to_32() {
        let s = on(1 << 20, 0);
        for n in [1, 32, 33, 64, 65, 172] {
            s.add(n, 1);
        }
        let r = s.report();
        assert_eq!(
            r,
            pairs(&[("32", "2"), ("64", "2"), ("96", "1"), ("192", "1")])
        );
        s.remove(172, 1);
        s.remove(1, 1);
        assert_eq!(s.report(), pairs(&[("32", "1"), ("64", "2"), ("96", "1")]));
    }

    #[test]
    fn items_from_before_enabling_are_ignored_both_ways() {
        // memcached: set A, sizes_enable, set B (same bucket), delete A:
        // B is still counted.
        let s = on(1 << 20, 10);
        s.add(50, 10);
        s.remove(50, 9);
        s.add(50, 3);
        assert_eq!(s.report(), pairs(&[("64", "1")]));
    }

    #[test]
    fn enabling_again_keeps_the_counts_and_the_watermark() {
        let s = on(1 << 20, 5);
        s.add(50, 5);
        s.enable(|| unreachable!("already on: no new watermark"));
        s.remove(50, 4);
        assert_eq!(s.report(), pairs(&[("64", "1")]));
    }

    #[test]
    fn never_negative_and_fresh_after_disable() {
        let s = on(1 << 20, 0);
        s.add(50, 1);
        s.disable();
        assert_eq!(s.report(), pairs(&[("sizes_status", "disabled")]));
        s.enable(|| 0);
        assert!(s.report().is_empty());
        s.remove(50, 1);
        s.add(50, 2);
        assert_eq!(s.report(), pairs(&[("64", "1")]));
    }

    #[test]
    fn huge_items_land_in_the_last_bucket() {
        let s = on(1024, 0);
        s.add(10_000, 1);
        assert_eq!(s.report(), pairs(&[("1056", "1")]));
    }
}
