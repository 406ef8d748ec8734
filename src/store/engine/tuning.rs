//! LRU settings an operator changes at run time (`lru tune`, `lru mode`,
//! `lru temp_ttl`), read by every link and every bit of LRU maintenance.
//!
//! Why atomics and not the start-up `StoreConfig`: memcached's commands
//! change these for the running cache, and the only readers are the
//! request paths, which must not take a lock for them. Each value is
//! read on its own with a relaxed load; a change racing a juggle can mix
//! an old share with a new factor for that one juggle, which moves at
//! most two items and is corrected by the next.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::StoreConfig;

#[derive(Debug)]
pub(crate) struct LruTuning {
    hot_pct: AtomicU32,
    warm_pct: AtomicU32,
    /// f64 bits.
    hot_factor: AtomicU64,
    /// f64 bits.
    warm_factor: AtomicU64,
    segmented: AtomicBool,
    temp: AtomicBool,
    temporary_ttl: AtomicU32,
}

impl LruTuning {
    pub(crate) fn new(cfg: &StoreConfig) -> LruTuning {
        LruTuning {
            hot_pct: AtomicU32::new(cfg.hot_lru_pct),
            warm_pct: AtomicU32::new(cfg.warm_lru_pct),
            hot_factor: AtomicU64::new(cfg.hot_max_factor.to_bits()),
            warm_factor: AtomicU64::new(cfg.warm_max_factor.to_bits()),
            segmented: AtomicBool::new(cfg.lru_segmented),
            temp: AtomicBool::new(cfg.temp_lru),
            temporary_ttl: AtomicU32::new(cfg.temporary_ttl),
        }
    }

    #[inline]
    pub(crate) fn hot_pct(&self) -> u32 {
        self.hot_pct.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn warm_pct(&self) -> u32 {
        self.warm_pct.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn hot_factor(&self) -> f64 {
        f64::from_bits(self.hot_factor.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn warm_factor(&self) -> f64 {
        f64::from_bits(self.warm_factor.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn segmented(&self) -> bool {
        self.segmented.load(Ordering::Relaxed)
    }

    /// The TEMP LRU's ttl bound, when it is in use.
    #[inline]
    pub(crate) fn temp_ttl(&self) -> Option<u32> {
        self.temp
            .load(Ordering::Relaxed)
            .then(|| self.temporary_ttl.load(Ordering::Relaxed))
    }

    /// Every value, for `stats settings`.
    pub(crate) fn snapshot(&self) -> (u32, u32, f64, f64, bool, bool, u32) {
        (
            self.hot_pct(),
            self.warm_pct(),
            self.hot_factor(),
            self.warm_factor(),
            self.segmented(),
            self.temp.load(Ordering::Relaxed),
            self.temporary_ttl.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn tune(&self, hot_pct: u32, warm_pct: u32, hot_factor: f64, warm_factor: f64) {
        self.hot_pct.store(hot_pct, Ordering::Relaxed);
        self.warm_pct.store(warm_pct, Ordering::Relaxed);
        self.hot_factor
            .store(hot_factor.to_bits(), Ordering::Relaxed);
        self.warm_factor
            .store(warm_factor.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn set_segmented(&self, on: bool) {
        self.segmented.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_temp_ttl(&self, ttl: Option<u32>) {
        if let Some(t) = ttl {
            self.temporary_ttl.store(t, Ordering::Relaxed);
        }
        self.temp.store(ttl.is_some(), Ordering::Relaxed);
    }
}
