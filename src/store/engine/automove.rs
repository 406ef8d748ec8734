//! The periodic half of `slab_automove=1`: free pages go back to the
//! global pool once a class has been quiet for `slab_automove_window`
//! checks, as memcached's automover does.
//!
//! Why this exists next to the on-demand mover (`mover`): that one only
//! runs when some class cannot allocate, so after a mass delete or a wave
//! of expiries the emptied pages would stay with their class until then.
//! memcached hands them back to the pool (visible as
//! `slab_global_page_pool` and `slabs_moved`), from where any class
//! takes them at once, and `cache_memlimit` can unmap them; operators
//! watch for exactly that.
//!
//! Why a window: a class that evicted, ran out of memory or got a page in
//! the last `window` checks will probably need its free chunks again
//! soon; giving a page away only to take one back costs two drains.
//! memcached keeps a window of samples per class and takes pages only
//! from a class whose whole window is clean; here the run number of the
//! last dirty sample says the same with one word per class, whatever the
//! window size.
//!
//! memcached's other automove rule (a page from the class with the
//! oldest items to a younger class that keeps evicting, decided on
//! window-averaged ages) is not run here: gannet makes that decision when
//! the class actually runs out of chunks (`Store::move_page_to`), which
//! absorbs a shift in the size mix within the shift itself instead of one
//! page per second after half a window of evictions.

use super::mover::spare;
use super::*;

/// What one check saw of a class.
#[derive(Clone, Copy, Default)]
struct Sample {
    evicted: u64,
    outofmemory: u64,
    pages: usize,
}

/// The automover's memory between checks; owned by the thread that runs
/// them (the LRU maintainer), so it needs no lock.
pub struct AutomoveWindow {
    size: u64,
    /// Checks run so far (memcached's `window_cur`).
    runs: u64,
    /// `slab_automove_ratio` when the window was started: memcached
    /// starts over when it changes.
    ratio_bits: u64,
    before: Vec<Sample>,
    /// Per class, the check that last found it dirty.
    last_dirty: Vec<Option<u64>>,
}

impl AutomoveWindow {
    /// A window of `size` checks (`-o slab_automove_window`, at least 3),
    /// started from what `store` holds now.
    pub fn new(store: &Store, size: u32) -> AutomoveWindow {
        let mut w = AutomoveWindow {
            size: u64::from(size.max(1)),
            runs: 0,
            ratio_bits: 0,
            before: Vec::new(),
            last_dirty: Vec::new(),
        };
        w.restart(store);
        w
    }

    fn restart(&mut self, store: &Store) {
        self.runs = 0;
        self.ratio_bits = store.automove_ratio.load(Ordering::Relaxed);
        self.before = store.automove_samples();
        self.last_dirty = vec![None; self.before.len()];
    }

    /// Record a check's samples; returns which classes are clean (not
    /// dirty in any of the last `size` checks, this one included).
    fn record(&mut self, now: &[Sample]) -> Vec<bool> {
        self.runs += 1;
        let mut clean = vec![false; now.len()];
        for (c, (s, b)) in now.iter().zip(&self.before).enumerate() {
            let dirty = s.evicted > b.evicted || s.outofmemory > b.outofmemory || s.pages > b.pages;
            if dirty {
                self.last_dirty[c] = Some(self.runs);
            }
            clean[c] = self.last_dirty[c].is_none_or(|d| self.runs - d >= self.size);
        }
        self.before = now.to_vec();
        clean
    }
}

impl Store {
    /// One automove check, memcached's `slab_automove_run` with a
    /// destination of the global pool: the first class (lowest id) with
    /// more than 2.5 pages' worth of free chunks (`mover::spare`) and a clean
    /// window gives one page to the pool, its live items rescued into its
    /// other free chunks. Runs only at `slab_automove=1` with page moves
    /// allowed. Returns whether a page moved; memcached then checks again
    /// at once instead of a second later, and so should the caller.
    pub fn automove_check(&self, w: &mut AutomoveWindow) -> bool {
        if self.automove.load(Ordering::Relaxed) != 1 || !self.cfg.slab_reassign {
            return false;
        }
        if self.automove_ratio.load(Ordering::Relaxed) != w.ratio_bits {
            w.restart(self);
        }
        let now = self.automove_samples();
        let clean = w.record(&now);
        let donor = (1..now.len()).find(|&c| {
            let perpage = self.slabs.class(c as u8).perpage;
            let st = self.slabs.class_state(c as u8);
            clean[c]
                && spare(
                    st.pages.len(),
                    st.free_count + st.free_end(perpage),
                    perpage,
                )
        });
        let Some(class) = donor.map(|c| c as u8) else {
            return false;
        };
        // memcached's slabs_reassign answers RUNNING while a move is
        // under way, and its automover lets the check go.
        let Ok(one_mover) = self.mover.try_lock() else {
            return false;
        };
        let moved = self.page_to_pool(class);
        drop(one_mover);
        if let (true, Some(hook)) = (moved, self.cfg.on_slab_move) {
            hook(class, 0);
        }
        moved
    }

    /// Evictions, out-of-memory refusals and pages of every class (index
    /// 0 unused), as one automove check sees them.
    fn automove_samples(&self) -> Vec<Sample> {
        let n = self.slabs.largest as usize + 1;
        let mut s = vec![Sample::default(); n];
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            for (c, t) in s.iter_mut().enumerate().skip(1) {
                t.evicted += sh.cs[c].evicted;
                t.outofmemory += sh.cs[c].outofmemory;
            }
        }
        for (c, t) in s.iter_mut().enumerate().skip(1) {
            t.pages = self.slabs.class_state(c as u8).pages.len();
        }
        s
    }
}
