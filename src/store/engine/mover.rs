//! The page mover: pages change class when the size mix shifts
//! (memcached's `slab_automove`) or when an operator asks
//! (`slabs reassign`).
//!
//! Why move pages at all: the budget is counted in pages, and a page,
//! once cut into one class's chunks, would otherwise belong to that class
//! forever. When a workload's values grow, the new class would have only
//! the pages nobody had claimed yet, and would evict its items within
//! seconds while old classes keep memory nobody reads.
//!
//! Why rescue items instead of evicting the page's contents: a page of a
//! class that has free chunks elsewhere (after deletes or expiries) can be
//! emptied without losing anything, as memcached's mover does; only what
//! has no room is evicted.
//!
//! Locking: the `mover` mutex admits one move at a time; under it the
//! mover takes shard locks one at a time, and the class and pool locks
//! inside them (the order of `slab`).

use super::*;
use crate::store::item::BIT_CHAINED;

/// Why `slabs reassign` was refused (memcached's reply names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassignError {
    /// `-o no_slab_reassign`.
    Disabled,
    /// A page move is under way.
    Running,
    /// Source and destination are the same class.
    Same,
    /// A class id out of range (or no donor for `-1`).
    BadClass,
    /// The source has fewer than two pages.
    NoSpare,
}

/// Free chunks, in pages, above which a class gives a page before any
/// age comparison (memcached's `MIN_PAGES_FOR_RECLAIM`).
const RECLAIM_PAGES: f64 = 2.5;

/// Whether a class of `npages` pages with `free` free chunks can give a
/// page without losing an item: it keeps one, and has more than
/// `RECLAIM_PAGES` pages' worth of free chunks to rescue into.
pub(super) fn spare(npages: usize, free: u32, perpage: u32) -> bool {
    npages >= 2 && f64::from(free) > f64::from(perpage) * RECLAIM_PAGES
}

/// What `Store::donors` found.
struct Donors {
    spare: Option<u8>,
    oldest: Option<u8>,
    oldest_age: u64,
    to_age: u64,
}

impl Store {
    /// Give one page to class `to`, which has run out of chunks.
    ///
    /// A class holding more than `RECLAIM_PAGES` pages' worth of free
    /// chunks gives one first: its page moves without losing an item
    /// (memcached's automover returns such pages to the global pool).
    /// Otherwise the donor is the class whose oldest (COLD, else HOT)
    /// items are the oldest, and a page moves when `to`'s oldest items
    /// are younger than `slab_automove_ratio` times the donor's
    /// (memcached's rule), so a steady mix does not pass pages back and
    /// forth. Age is measured in CAS units (stores since the item was
    /// written), which works at any request rate, unlike seconds. A class
    /// with no page at all is served at once, from any class with a page.
    /// The donor's first page is emptied (see `drain_page`) and changes
    /// class.
    pub(super) fn move_page_to(&self, to: u8, force: bool) -> bool {
        let tick = self.move_tick.fetch_add(1, Ordering::Relaxed);
        let aggressive = self.automove.load(Ordering::Relaxed) >= 2;
        // A class without any page (or with nothing left to evict) can
        // store nothing: serve it at once.
        let starving = force || self.slabs.class_state(to).pages.is_empty();
        if !aggressive && !starving && !tick.is_multiple_of(32) {
            return false;
        }
        // Waiting is safe: the caller holds no lock, and the mover takes
        // shard locks one at a time.
        let _one_mover = if starving {
            lock(&self.mover)
        } else {
            match self.mover.try_lock() {
                Ok(g) => g,
                Err(_) => return false,
            }
        };
        // Another thread may have just served this class.
        if starving && self.slabs.class_free(to) {
            return true;
        }
        let d = self.donors(Some(to), if starving { 1 } else { 2 });
        let donor = match (d.spare, d.oldest) {
            (Some(c), _) => c,
            (None, Some(c)) => {
                let ratio = f64::from_bits(self.automove_ratio.load(Ordering::Relaxed));
                // The constant keeps tiny ages (a fresh cache) from moving
                // pages on noise.
                let younger = (d.to_age as f64) + 32.0 < ratio * d.oldest_age as f64;
                if !aggressive && !starving && !younger {
                    return false;
                }
                c
            }
            (None, None) => return false,
        };
        self.moving.store(true, Ordering::Relaxed);
        let page = self.take_page(donor);
        if let Some(page) = page {
            self.slabs.page_to_class(to, page);
            self.slabs_moved.fetch_add(1, Ordering::Relaxed);
        }
        self.moving.store(false, Ordering::Relaxed);
        drop(_one_mover);
        if let (Some(_), Some(hook)) = (page, self.cfg.on_slab_move) {
            hook(donor, to);
        }
        page.is_some()
    }

    /// Candidate donors of a page, other than `to`: the first class with
    /// at least two pages and more than `RECLAIM_PAGES` pages' worth of
    /// free chunks (`spare`), and the class whose oldest (COLD, else HOT)
    /// items are the oldest among those with at least `min_pages` pages,
    /// with its age and `to`'s in CAS units (stores since written).
    fn donors(&self, to: Option<u8>, min_pages: usize) -> Donors {
        let largest = self.slabs.largest;
        let mut oldest = vec![u64::MAX; largest as usize + 1];
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            for (c, o) in oldest.iter_mut().enumerate().skip(1) {
                let l = &sh.lru[c];
                let t = if l[COLD as usize].tail != NULL {
                    l[COLD as usize].tail
                } else {
                    l[HOT as usize].tail
                };
                if t != NULL {
                    *o = (*o).min(Item::at(&self.slabs, t).h().cas);
                }
            }
        }
        let now = self.next_cas.load(Ordering::Relaxed);
        let age = |c: u8| {
            let o = oldest[c as usize];
            if o == u64::MAX {
                0
            } else {
                now.saturating_sub(o)
            }
        };
        let mut d = Donors {
            spare: None,
            oldest: None,
            oldest_age: 0,
            to_age: to.map_or(0, age),
        };
        for c in 1..=largest {
            if Some(c) == to {
                continue;
            }
            let perpage = self.slabs.class(c).perpage;
            let (npages, free) = {
                let st = self.slabs.class_state(c);
                (st.pages.len(), st.free_count + st.free_end(perpage))
            };
            if npages == 0 || npages < min_pages {
                continue;
            }
            if d.spare.is_none() && spare(npages, free, perpage) {
                d.spare = Some(c);
            }
            if d.oldest.is_none() || age(c) > d.oldest_age {
                d.oldest = Some(c);
                d.oldest_age = age(c);
            }
        }
        d
    }

    /// `cache_memlimit` lowered the budget below what is mapped: give one
    /// page back to the system, taken from a class with spare free chunks
    /// if there is one (nothing is lost), else from the class with the
    /// oldest items (what its page holds is rescued or evicted). Under
    /// `-M` only spare pages go, since a drain may evict; with
    /// `no_slab_reassign` none (memcached releases nothing then either).
    /// Returns whether a page went (call again while it does).
    pub fn shrink_step(&self) -> bool {
        if !self.cfg.slab_reassign || !self.slabs.over_limit() {
            return false;
        }
        let _one_mover = lock(&self.mover);
        let d = self.donors(None, 2);
        let Some(donor) = d.spare.or(d.oldest.filter(|_| self.cfg.evict_to_free)) else {
            return false;
        };
        self.page_to_pool(donor)
    }

    /// Move one page of `class` to the pool of idle pages (see
    /// `take_page`); whether one went. The caller holds the `mover` lock.
    pub(super) fn page_to_pool(&self, class: u8) -> bool {
        self.moving.store(true, Ordering::Relaxed);
        let page = self.take_page(class);
        if let Some(page) = page {
            self.slabs.page_to_pool(page);
            self.slabs_moved.fetch_add(1, Ordering::Relaxed);
        }
        self.moving.store(false, Ordering::Relaxed);
        page.is_some()
    }

    /// Take one page away from `class`: one whose chunks are all free if
    /// it has one, else its oldest, emptied first (`drain_page`).
    /// The caller holds the `mover` lock.
    fn take_page(&self, class: u8) -> Option<u32> {
        if let Some(page) = self.slabs.take_empty_page(class) {
            return Some(page);
        }
        let page = self.slabs.class_state(class).pages.first().copied()?;
        self.drain_page(class, page)
    }

    /// Empty `page` of `class` and take it from the class, as memcached's
    /// slab mover does: each live item in it moves to a free chunk of the
    /// class elsewhere (`slab_reassign_rescues`), or is evicted when there
    /// is none (`slab_reassign_evictions_nomem`); expired and flushed
    /// items are dropped. Returns `None`, and leaves the page to the
    /// class, if a chunk is still in use after a few passes (an item
    /// being written while the walk went by, or a `Reserved` item a
    /// connection is still reading a large value into).
    ///
    /// A chunk of the page is free, being filled by its owner, or linked.
    /// Only linked chunks can be identified safely, and only under their
    /// shard lock; we find the shard by hashing the key, which needs the
    /// key before the lock. To stay race free we lock each shard in turn
    /// and, under it, walk that shard's LRUs for the class. While the
    /// page drains, the allocator hands out none of its chunks (see
    /// `Slabs::begin_drain`), so a rescue never lands in it.
    fn drain_page(&self, class: u8, page: u32) -> Option<u32> {
        if !self.slabs.begin_drain(class, page) {
            return None;
        }
        let now = self.clock.now();
        for pass in 0..4 {
            if pass > 0 {
                let left = self.slabs.drain_left(class);
                if left == 0 {
                    break;
                }
                self.reassign_busy_items
                    .fetch_add(u64::from(left), Ordering::Relaxed);
                std::thread::yield_now();
            }
            for s in 0..NSHARDS {
                let mut sh = self.shard(s);
                for seg in 0..4 {
                    let mut r = sh.lru[class as usize][seg].head;
                    while r != NULL {
                        let it = Item::at(&self.slabs, r);
                        let next = it.h().next;
                        let mut tail_in = false;
                        it.chain_refs(&self.slabs, |c| tail_in |= self.slabs.page_of(c) == page);
                        if tail_in || self.slabs.page_of(r) == page {
                            self.drain_item(&mut sh, it, page, now);
                        }
                        r = next;
                    }
                }
            }
        }
        self.slabs.finish_drain(class)
    }

    /// Move `it` out of draining `page`, or drop it (see `drain_page`).
    /// A chained item may have its head, continuation chunks, or both in
    /// the page: continuation chunks move first
    /// (`slab_reassign_chunk_rescues`, memcached's name), each into a free
    /// chunk-max chunk elsewhere with the link before it repointed, then
    /// the head. If any chunk finds no room the whole item is evicted.
    fn drain_item(&self, sh: &mut Shard, it: Item, page: u32, now: RelTime) {
        if sh.is_pinned(it.r) {
            // Being sent from its chunks: busy, like a chunk being filled.
            return;
        }
        let h = self.hash(it.key());
        if self.dead(it, now).is_some() {
            self.remove(sh, it, h);
            return;
        }
        let class = it.h().class;
        let largest = self.slabs.largest;
        let chunks = it.move_chunks(
            &self.slabs,
            |r| self.slabs.page_of(r) == page,
            || self.slabs.alloc_no_new_page(largest),
            |r| self.slabs.free(largest, r),
        );
        let (Ok(n) | Err(n)) = chunks;
        self.reassign_chunk_rescues
            .fetch_add(u64::from(n), Ordering::Relaxed);
        let moved = match chunks {
            Err(_) => None,
            Ok(_) if self.slabs.page_of(it.r) != page => return,
            Ok(_) => self.slabs.alloc_no_new_page(class),
        };
        let Some(nr) = moved else {
            self.reassign_evictions.fetch_add(1, Ordering::Relaxed);
            self.remove(sh, it, h);
            return;
        };
        let len = if it.h().bits & BIT_CHAINED != 0 {
            self.slabs.class(class).size as usize
        } else {
            it.ntotal()
        };
        // SAFETY: `it` is linked in `sh`, whose lock we hold; `nr` is a
        // chunk of the same class just handed to us, in another page, so
        // the ranges do not overlap and both are `len` bytes or more.
        unsafe { std::ptr::copy_nonoverlapping(self.slabs.ptr(it.r), self.slabs.ptr(nr), len) };
        let new = Item::at(&self.slabs, nr);
        sh.lru_replace(&self.slabs, new);
        let found = sh.index.replace(h, it.r, nr);
        debug_assert!(found, "linked item missing from its index");
        self.slabs.free(class, it.r);
        self.reassign_rescues.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `slabs reassign` may run at all (`-o no_slab_reassign`).
    pub fn reassign_enabled(&self) -> bool {
        self.cfg.slab_reassign
    }

    /// `slab_reassign_running`: a page move is under way.
    pub fn page_move_running(&self) -> bool {
        self.moving.load(Ordering::Relaxed)
    }

    /// memcached's checks of `slabs reassign <src> <dst>`, in its order.
    /// `src` -1 picks any class with a page to spare, round robin; class 0
    /// is the global page pool. On success the classes to pass to
    /// [`Store::reassign`].
    pub fn reassign_check(&self, src: i32, dst: i32) -> Result<(u8, u8), ReassignError> {
        if !self.cfg.slab_reassign {
            return Err(ReassignError::Disabled);
        }
        if self.page_move_running() {
            return Err(ReassignError::Running);
        }
        if src == dst {
            return Err(ReassignError::Same);
        }
        let largest = i32::from(self.slabs.largest);
        let src = if src == -1 { self.pick_donor(dst) } else { src };
        if !(0..=largest).contains(&src) || !(0..=largest).contains(&dst) {
            return Err(ReassignError::BadClass);
        }
        if self.pages_of(src as u8) < 2 {
            return Err(ReassignError::NoSpare);
        }
        Ok((src as u8, dst as u8))
    }

    /// Pages of class `c`; class 0 is the pool of idle pages.
    fn pages_of(&self, c: u8) -> usize {
        if c == 0 {
            self.slabs.idle_pages()
        } else {
            self.slabs.class_state(c).pages.len()
        }
    }

    /// memcached's `slabs_reassign_pick_any`: the next class after the
    /// last one picked that has more than one page, skipping `dst`; -1
    /// when there is none.
    fn pick_donor(&self, dst: i32) -> i32 {
        let largest = self.slabs.largest;
        let mut cur = self.reassign_cursor.load(Ordering::Relaxed);
        for _ in 0..largest {
            cur = if cur >= largest { 1 } else { cur + 1 };
            if i32::from(cur) != dst && self.pages_of(cur) > 1 {
                self.reassign_cursor.store(cur, Ordering::Relaxed);
                return i32::from(cur);
            }
        }
        self.reassign_cursor.store(cur, Ordering::Relaxed);
        -1
    }

    /// Move one page from class `src` to class `dst` (0 for either: the
    /// pool of idle pages), emptying it first: `slabs reassign` after
    /// [`Store::reassign_check`]. Waits for a page move under way.
    /// Returns whether a page moved (not when every page of `src` stayed
    /// busy, or it had none left).
    pub fn reassign(&self, src: u8, dst: u8) -> bool {
        let _one_mover = lock(&self.mover);
        self.moving.store(true, Ordering::Relaxed);
        let page = if src == 0 {
            self.slabs.take_idle_page()
        } else {
            self.take_page(src)
        };
        if let Some(page) = page {
            if dst == 0 {
                self.slabs.page_to_pool(page);
            } else {
                self.slabs.page_to_class(dst, page);
            }
            self.slabs_moved.fetch_add(1, Ordering::Relaxed);
        }
        self.moving.store(false, Ordering::Relaxed);
        page.is_some()
    }
}
