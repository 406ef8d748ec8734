//! Item size histogram for `stats sizes` (memcached's `-o track_sizes`).
//!
//! Operators turn this on to see what sizes their items really are before
//! choosing `-f`/`-n`/`slab_chunk_max`. It counts linked items by their
//! total size (header + key + value) rounded up to 32 bytes, like
//! memcached, but the sizes are gannet's own (a 40-byte header where
//! memcached has 56), because the point is to show what the memory holds.
//!
//! Off, it costs one relaxed load per link/unlink. On, one relaxed
//! read-modify-write on a shared counter: tracking is a diagnostic mode,
//! as in memcached (which takes a global mutex for it). Counts start from
//! zero whenever tracking is (re)enabled and never go below zero, so an
//! item linked before enabling and removed after does not corrupt them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Bucket width in bytes (memcached's).
const BUCKET: usize = 32;

type Hist = Option<Box<[AtomicU64]>>;

pub(crate) struct Sizes {
    /// Fast check for the hot path; mirrors `hist.is_some()`.
    enabled: AtomicBool,
    /// `hist[i]` counts items of total size in `(32*(i-1), 32*i]`.
    /// Written only when tracking is switched (rare), so readers, which
    /// only take the read side, practically never wait.
    hist: RwLock<Hist>,
    nbuckets: usize,
}

impl Sizes {
    /// A histogram for items up to `item_size_max` bytes (larger totals
    /// land in the last bucket), enabled from the start when `on`.
    pub(crate) fn new(item_size_max: usize, on: bool) -> Sizes {
        let s = Sizes {
            enabled: AtomicBool::new(false),
            hist: RwLock::new(None),
            nbuckets: item_size_max / BUCKET + 2,
        };
        if on {
            s.set_enabled(true);
        }
        s
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Hist> {
        self.hist.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Turn tracking on (with fresh zero counts) or off.
    pub(crate) fn set_enabled(&self, on: bool) {
        let mut h = self.hist.write().unwrap_or_else(|e| e.into_inner());
        *h = on.then(|| (0..self.nbuckets).map(|_| AtomicU64::new(0)).collect());
        self.enabled.store(on, Ordering::Relaxed);
    }

    fn bucket(&self, ntotal: usize) -> usize {
        ntotal.div_ceil(BUCKET).min(self.nbuckets - 1)
    }

    /// An item of `ntotal` bytes was linked.
    #[inline]
    pub(crate) fn add(&self, ntotal: usize) {
        if !self.enabled() {
            return;
        }
        if let Some(h) = self.read().as_ref() {
            h[self.bucket(ntotal)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An item of `ntotal` bytes was unlinked.
    #[inline]
    pub(crate) fn remove(&self, ntotal: usize) {
        if !self.enabled() {
            return;
        }
        if let Some(h) = self.read().as_ref() {
            let _ =
                h[self.bucket(ntotal)]
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
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

    #[test]
    fn disabled_reports_status_and_counts_nothing() {
        let s = Sizes::new(1 << 20, false);
        s.add(100);
        assert_eq!(s.report(), vec![("sizes_status".into(), "disabled".into())]);
    }

    #[test]
    fn buckets_round_up_to_32() {
        let s = Sizes::new(1 << 20, true);
        for n in [1, 32, 33, 64, 65, 172] {
            s.add(n);
        }
        let r: Vec<(String, String)> = s.report();
        let want: Vec<(String, String)> = [("32", "2"), ("64", "2"), ("96", "1"), ("192", "1")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(r, want);
        s.remove(172);
        s.remove(1);
        assert_eq!(r.len() - 1, s.report().len());
    }

    #[test]
    fn never_negative_and_fresh_on_reenable() {
        let s = Sizes::new(1 << 20, true);
        s.add(50);
        s.set_enabled(false);
        s.set_enabled(true);
        assert!(s.report().is_empty());
        s.remove(50);
        s.add(50);
        assert_eq!(s.report(), vec![("64".into(), "1".into())]);
    }

    #[test]
    fn huge_items_land_in_the_last_bucket() {
        let s = Sizes::new(1024, true);
        s.add(10_000);
        assert_eq!(s.report(), vec![("1056".into(), "1".into())]);
    }
}
