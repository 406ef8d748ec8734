//! Slab allocator: item memory comes from fixed-size pages cut into
//! equal chunks, one chunk size per class.
//!
//! Why pages and classes instead of `malloc` per item: a cache churns
//! millions of small objects, and a general allocator fragments under that
//! churn until RSS no longer tracks the memory limit. Equal chunks inside
//! a page can be reused by any item of the class without fragmentation,
//! and a whole page can later change class when the size mix shifts.
//!
//! Chunks are named by a 32-bit `Ref` (page id in the high bits, chunk
//! offset / 8 in the low bits) instead of a pointer, so the item header can
//! hold its hash-chain and LRU links in 4 bytes each. `Ref` 0 is null:
//! page id 0 is never used.
//!
//! Pages are `mmap`ed lazily, so memory a class never touches costs no
//! RSS. The page budget (`limit_pages`) is global; each class has its own
//! lock over its free list and the page it is carving chunks from.
//!
//! Locks here: `Pool` (the page budget) and one `ClassState` per class.
//! Order: a class lock may be held while taking the pool lock, never the
//! other way round. Callers (the engine) may hold a shard lock while
//! taking either, never the reverse.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A chunk reference: `(page_id << off_bits) | (offset_in_page / 8)`.
pub(crate) type Ref = u32;
/// The null reference (page 0 does not exist).
pub(crate) const NULL: Ref = 0;
/// Largest class id + 1 (memcached's `MAX_NUMBER_OF_SLAB_CLASSES`).
pub(crate) const MAX_CLASSES: usize = 64;

/// One class: its chunk size and the mutable state behind its lock.
pub(crate) struct Class {
    pub(crate) size: u32,
    pub(crate) perpage: u32,
    state: Mutex<ClassState>,
}

/// Everything a class allocates from, guarded by the class lock.
#[derive(Default)]
pub(crate) struct ClassState {
    /// Head of the intrusive free list (next ref in a free chunk's first 4 bytes).
    free_head: Ref,
    pub(crate) free_count: u32,
    /// Page currently being cut into chunks (0 = none).
    cur_page: u32,
    /// Chunks already cut from `cur_page`.
    carved: u32,
    /// Pages owned by this class.
    pub(crate) pages: Vec<u32>,
    /// Chunks handed out and not yet freed.
    pub(crate) used: u64,
    /// Chunks handed out ever (demand, for the page mover).
    pub(crate) allocs: u64,
    /// The page being emptied by the page mover, if any.
    draining: Option<Draining>,
}

/// A page taken out of circulation while the page mover empties it
/// (memcached's `slab_rebal`).
///
/// Invariant: while a class has a `Draining`, none of the page's chunks
/// is on the class's free list and the page is not the class's carving
/// page, so `alloc` never hands one out; every chunk of the page that is
/// free is marked in `free`, and `nfree` counts the marks. A chunk freed
/// meanwhile is marked instead of being threaded onto the free list.
/// So the page is empty exactly when `nfree == perpage`.
struct Draining {
    page: u32,
    free: Vec<u64>,
    nfree: u32,
}

impl Draining {
    fn mark(&mut self, chunk: usize) {
        let (w, b) = (chunk / 64, 1u64 << (chunk % 64));
        debug_assert!(self.free[w] & b == 0, "chunk freed twice while draining");
        self.free[w] |= b;
        self.nfree += 1;
    }
}

impl ClassState {
    /// Chunks of `cur_page` never handed out (memcached's `free_chunks_end`).
    pub(crate) fn free_end(&self, perpage: u32) -> u32 {
        if self.cur_page == 0 {
            0
        } else {
            perpage - self.carved
        }
    }
}

/// The global page budget.
struct Pool {
    limit_pages: usize,
    /// Pages currently mapped (assigned to a class or idle in `idle`).
    mapped: usize,
    /// Mapped pages owned by no class.
    idle: Vec<u32>,
    /// Page ids whose mapping was released and can be reused.
    unused_ids: Vec<u32>,
    next_id: u32,
    /// `-L`: one reservation of the whole budget, handed out page by page
    /// before any fresh `mmap` (see [`Slabs::preallocate`]).
    region: Region,
}

/// A reserved range of address space for preallocated pages.
/// Invariant: `base` is null, or the start of a private anonymous mapping
/// of `pages` pages of which the first `used` have been handed out as
/// pages (and are unmapped one by one like any other page) while the rest
/// are still mapped and owned by the region.
struct Region {
    base: *mut u8,
    pages: usize,
    used: usize,
}

/// Why `Slabs::new` refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlabError {
    /// A page must be a power of two between 4 KiB and 1 GiB.
    BadPageSize,
}

pub(crate) struct Slabs {
    page_size: usize,
    off_bits: u32,
    /// Page id -> base address (null when not mapped). Never shrinks.
    pages: Box<[AtomicPtr<u8>]>,
    pool: Mutex<Pool>,
    classes: Vec<Class>,
    pub(crate) largest: u8,
    /// Let a class with no page take one beyond the limit (for
    /// configurations without a page mover).
    pub(crate) first_page_grace: AtomicBool,
    pub(crate) total_malloced: AtomicU64,
    pub(crate) malloc_fails: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding
    // it; the allocator's state is updated in single steps, so go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the class table is laid out (memcached's `slabs_init`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClassSpec<'a> {
    /// From `min_item` bytes, each class `factor` times the one before
    /// (`-n`, `-f`), while below `chunk_max / factor`.
    Grow { min_item: usize, factor: f64 },
    /// `-o slab_sizes`: exactly these chunk sizes, each rounded up to 8
    /// bytes. Sizes above `chunk_max` or not above the one before are
    /// skipped (the command line refuses them first).
    List(&'a [u32]),
}

impl Slabs {
    /// The classes of `spec`, then one class of `chunk_max` for the
    /// largest items and chains (memcached's `slabs_init`).
    pub(crate) fn new(
        page_size: usize,
        mem_limit: usize,
        spec: ClassSpec<'_>,
        chunk_max: usize,
    ) -> Result<Slabs, SlabError> {
        if !page_size.is_power_of_two() || !(4096..=1 << 30).contains(&page_size) {
            return Err(SlabError::BadPageSize);
        }
        let off_bits = (page_size / 8).trailing_zeros();
        let npages = 1usize << (32 - off_bits);
        let chunk_max = (chunk_max.clamp(64, page_size) / 8) * 8;
        let mut classes = vec![Class {
            size: 0,
            perpage: 0,
            state: Mutex::new(ClassState::default()),
        }];
        let push = |classes: &mut Vec<Class>, s: usize| {
            classes.push(Class {
                size: s as u32,
                perpage: (page_size / s) as u32,
                state: Mutex::new(ClassState::default()),
            })
        };
        match spec {
            ClassSpec::Grow { min_item, factor } => {
                let factor = if factor.is_finite() && factor > 1.0 {
                    factor
                } else {
                    1.25
                };
                let mut size = min_item.max(16) as f64;
                while classes.len() < MAX_CLASSES - 1 {
                    if size >= chunk_max as f64 / factor {
                        break;
                    }
                    let s = (size as usize).div_ceil(8) * 8;
                    push(&mut classes, s);
                    size = (s as f64 * factor).max(s as f64 + 8.0);
                }
            }
            ClassSpec::List(sizes) => {
                let mut last = 0;
                for &size in sizes {
                    let s = (size.max(8) as usize).div_ceil(8) * 8;
                    if classes.len() >= MAX_CLASSES - 1 || s > chunk_max || s <= last {
                        continue;
                    }
                    push(&mut classes, s);
                    last = s;
                }
            }
        }
        push(&mut classes, chunk_max);
        let largest = (classes.len() - 1) as u8;
        Ok(Slabs {
            page_size,
            off_bits,
            pages: (0..npages)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            pool: Mutex::new(Pool {
                limit_pages: mem_limit / page_size,
                mapped: 0,
                idle: Vec::new(),
                unused_ids: Vec::new(),
                next_id: 1,
                region: Region {
                    base: std::ptr::null_mut(),
                    pages: 0,
                    used: 0,
                },
            }),
            classes,
            largest,
            first_page_grace: AtomicBool::new(false),
            total_malloced: AtomicU64::new(0),
            malloc_fails: AtomicU64::new(0),
        })
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    pub(crate) fn class(&self, id: u8) -> &Class {
        &self.classes[id as usize]
    }

    pub(crate) fn class_state(&self, id: u8) -> MutexGuard<'_, ClassState> {
        lock(&self.classes[id as usize].state)
    }

    /// Smallest class whose chunk holds `ntotal` bytes; the largest class
    /// for anything bigger (such items are chained).
    pub(crate) fn class_for(&self, ntotal: usize) -> u8 {
        // Few classes (< 64): a linear scan beats a binary search here.
        for (i, c) in self.classes.iter().enumerate().skip(1) {
            if c.size as usize >= ntotal {
                return i as u8;
            }
        }
        self.largest
    }

    pub(crate) fn chunk_max(&self) -> usize {
        self.classes[self.largest as usize].size as usize
    }

    /// Base address of chunk `r`.
    ///
    /// `r` must come from `alloc` (its page is mapped and stays mapped
    /// while the chunk is allocated); the result is 8-byte aligned.
    #[inline]
    pub(crate) fn ptr(&self, r: Ref) -> *mut u8 {
        let page = (r >> self.off_bits) as usize;
        let off = ((r & ((1 << self.off_bits) - 1)) as usize) << 3;
        let base = self.pages[page].load(Ordering::Acquire);
        debug_assert!(!base.is_null());
        base.wrapping_add(off)
    }

    /// Take a chunk of class `id`, or `None` when the class has no free
    /// chunk and the page budget is spent.
    pub(crate) fn alloc(&self, id: u8) -> Option<Ref> {
        let class = &self.classes[id as usize];
        self.alloc_locked(class, &mut lock(&class.state), true)
    }

    fn alloc_locked(&self, class: &Class, st: &mut ClassState, new_page: bool) -> Option<Ref> {
        if st.free_head != NULL {
            let r = st.free_head;
            // SAFETY: a free chunk's first 4 bytes hold the next free ref;
            // the chunk is owned by the free list, which we hold locked.
            st.free_head = unsafe { (self.ptr(r) as *const u32).read() };
            st.free_count -= 1;
            st.used += 1;
            st.allocs += 1;
            return Some(r);
        }
        if st.cur_page == 0 || st.carved >= class.perpage {
            if !new_page {
                return None;
            }
            let first = st.pages.is_empty();
            let page = match self.new_page(first) {
                Some(p) => p,
                None => {
                    st.cur_page = 0;
                    return None;
                }
            };
            st.pages.push(page);
            st.cur_page = page;
            st.carved = 0;
        }
        let off = st.carved as usize * class.size as usize;
        st.carved += 1;
        st.used += 1;
        st.allocs += 1;
        Some((st.cur_page << self.off_bits) | (off >> 3) as u32)
    }

    /// Return chunk `r` to class `id`. The chunk must not be reachable
    /// from any index or LRU any more.
    pub(crate) fn free(&self, id: u8, r: Ref) {
        let class = &self.classes[id as usize];
        let mut st = lock(&class.state);
        if let Some(d) = st.draining.as_mut() {
            if r >> self.off_bits == d.page {
                d.mark(self.chunk_index(class, r));
                st.used -= 1;
                return;
            }
        }
        // SAFETY: the caller gave up the chunk; we own it until it is
        // popped again under this same lock.
        unsafe { (self.ptr(r) as *mut u32).write(st.free_head) };
        st.free_head = r;
        st.free_count += 1;
        st.used -= 1;
    }

    /// A page for a class: an idle one, or a fresh mapping within the
    /// limit. A class's first page is granted past the limit only with
    /// `first_page_grace` (as memcached does); otherwise `total_malloced`
    /// never exceeds the limit and a class left without pages gets one
    /// from the engine's page mover instead.
    fn new_page(&self, first: bool) -> Option<u32> {
        let mut pool = lock(&self.pool);
        let page = if let Some(p) = pool.idle.pop() {
            p
        } else if pool.mapped < pool.limit_pages
            || (first
                && self.first_page_grace.load(Ordering::Relaxed)
                && pool.mapped < pool.limit_pages + 64)
        {
            let pid = match pool.unused_ids.pop() {
                Some(p) => p,
                None if (pool.next_id as usize) < self.pages.len() => {
                    pool.next_id += 1;
                    pool.next_id - 1
                }
                None => return None,
            };
            let from_region = (pool.region.used < pool.region.pages).then(|| {
                let r = &mut pool.region;
                r.used += 1;
                r.base.wrapping_add((r.used - 1) * self.page_size)
            });
            let Some(mem) = from_region.or_else(|| map_page(self.page_size)) else {
                pool.unused_ids.push(pid);
                self.malloc_fails.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            self.pages[pid as usize].store(mem, Ordering::Release);
            pool.mapped += 1;
            self.total_malloced
                .fetch_add(self.page_size as u64, Ordering::Relaxed);
            pid
        } else {
            return None;
        };
        Some(page)
    }

    /// `-L` (memcached's preallocation): reserve the whole page budget in
    /// one mapping advised for transparent huge pages, and give every
    /// class its first page now, touched so it is resident. Fails, with
    /// the number of megabytes needed, when the budget cannot give each
    /// class a page (memcached refuses to start then, too).
    pub(crate) fn preallocate(&self) -> Result<(), usize> {
        let nclasses = self.largest as usize;
        let mut pool = lock(&self.pool);
        if pool.limit_pages < nclasses {
            return Err(nclasses * self.page_size / (1 << 20));
        }
        if pool.region.base.is_null() && pool.mapped == 0 {
            let pages = pool.limit_pages;
            if let Some(base) = map_huge_region(pages * self.page_size) {
                pool.region = Region {
                    base,
                    pages,
                    used: 0,
                };
            }
        }
        drop(pool);
        for id in 1..=self.largest {
            let mut st = self.class_state(id);
            if !st.pages.is_empty() {
                continue;
            }
            let Some(page) = self.new_page(true) else {
                return Err(nclasses * self.page_size / (1 << 20));
            };
            let base = self.pages[page as usize].load(Ordering::Acquire);
            // SAFETY: the page was just mapped for this class and no chunk
            // of it has been handed out; zeroing it makes it resident.
            unsafe { std::ptr::write_bytes(base, 0, self.page_size) };
            st.pages.push(page);
            st.cur_page = page;
            st.carved = 0;
        }
        Ok(())
    }

    /// Take a whole page away from class `from`, if it has a page all of
    /// whose chunks are free, and return its id; the caller hands it on
    /// (`page_to_pool`, `page_to_class`).
    pub(crate) fn take_empty_page(&self, from: u8) -> Option<u32> {
        let class = &self.classes[from as usize];
        let mut st = lock(&class.state);
        let uncarved = st.free_end(class.perpage);
        if st.draining.is_some() || st.free_count + uncarved < class.perpage {
            return None;
        }
        // Count free chunks per page of this class (the carving page's
        // never-cut chunks count as free).
        let cur = st.cur_page;
        let mut counts: Vec<(u32, u32)> = st
            .pages
            .iter()
            .map(|&p| (p, if p == cur { uncarved } else { 0 }))
            .collect();
        counts.sort_unstable();
        let mut r = st.free_head;
        while r != NULL {
            let p = r >> self.off_bits;
            if let Ok(i) = counts.binary_search_by_key(&p, |&(pp, _)| pp) {
                counts[i].1 += 1;
            }
            // SAFETY: free list walk under the class lock.
            r = unsafe { (self.ptr(r) as *const u32).read() };
        }
        let &(victim, _) = counts.iter().find(|&&(_, n)| n == class.perpage)?;
        self.unthread_page(&mut st, victim, |_| {});
        st.pages.retain(|&p| p != victim);
        if st.cur_page == victim {
            st.cur_page = 0;
            st.carved = 0;
        }
        Some(victim)
    }

    /// Take a page of class `from` all of whose chunks are free and put
    /// it in the pool. Returns whether a page moved.
    #[cfg(test)]
    pub(crate) fn release_empty_page(&self, from: u8) -> bool {
        self.take_empty_page(from)
            .map(|p| self.page_to_pool(p))
            .is_some()
    }

    /// Hand an empty page that belongs to no class to the pool (memcached's
    /// global page pool): its memory goes back to the system, its mapping
    /// stays, and it is unmapped if the pool is over the budget.
    pub(crate) fn page_to_pool(&self, page: u32) {
        let base = self.pages[page as usize].load(Ordering::Acquire);
        // SAFETY: the page belongs to nobody now; MADV_DONTNEED on a
        // private anonymous mapping only zeroes it.
        unsafe { libc::madvise(base.cast(), self.page_size, libc::MADV_DONTNEED) };
        let mut pool = lock(&self.pool);
        pool.idle.push(page);
        self.release_over_limit(&mut pool);
    }

    /// An idle page out of the pool, if any.
    pub(crate) fn take_idle_page(&self) -> Option<u32> {
        lock(&self.pool).idle.pop()
    }

    /// Give an empty page that belongs to no class to class `to`: it
    /// becomes the carving page if the class has none with chunks left,
    /// else its chunks go onto the free list.
    pub(crate) fn page_to_class(&self, to: u8, page: u32) {
        let class = &self.classes[to as usize];
        let mut st = lock(&class.state);
        st.pages.push(page);
        if st.free_end(class.perpage) == 0 {
            st.cur_page = page;
            st.carved = 0;
            return;
        }
        for i in (0..class.perpage as usize).rev() {
            let r = self.chunk_ref(class, page, i);
            // SAFETY: the page is ours alone; its chunks join the free
            // list under the class lock.
            unsafe { (self.ptr(r) as *mut u32).write(st.free_head) };
            st.free_head = r;
            st.free_count += 1;
        }
    }

    /// Start emptying `page` of class `id` (see [`Draining`]): its free
    /// chunks leave the free list, and if it is the carving page its
    /// uncut chunks count as free and carving stops. Returns false when
    /// the class is already draining a page or does not own `page`.
    pub(crate) fn begin_drain(&self, id: u8, page: u32) -> bool {
        let class = &self.classes[id as usize];
        let mut st = lock(&class.state);
        if st.draining.is_some() || !st.pages.contains(&page) {
            return false;
        }
        let mut d = Draining {
            page,
            free: vec![0; (class.perpage as usize).div_ceil(64)],
            nfree: 0,
        };
        self.unthread_page(&mut st, page, |r| d.mark(self.chunk_index(class, r)));
        if st.cur_page == page {
            for i in st.carved..class.perpage {
                d.mark(i as usize);
            }
            st.cur_page = 0;
            st.carved = 0;
        }
        st.draining = Some(d);
        true
    }

    /// Chunks of the draining page of class `id` still in use.
    pub(crate) fn drain_left(&self, id: u8) -> u32 {
        let class = &self.classes[id as usize];
        let st = lock(&class.state);
        st.draining.as_ref().map_or(0, |d| class.perpage - d.nfree)
    }

    /// End the drain of class `id`. If every chunk of the page is free,
    /// the page leaves the class and its id is returned; otherwise its
    /// free chunks go back onto the free list and the class keeps it.
    pub(crate) fn finish_drain(&self, id: u8) -> Option<u32> {
        let class = &self.classes[id as usize];
        let mut st = lock(&class.state);
        let d = st.draining.take()?;
        if d.nfree == class.perpage {
            st.pages.retain(|&p| p != d.page);
            return Some(d.page);
        }
        // The page stays; the next drain of this class tries another one
        // first (memcached's mover takes the oldest page, `pages[0]`).
        if let Some(i) = st.pages.iter().position(|&p| p == d.page) {
            let p = st.pages.remove(i);
            st.pages.push(p);
        }
        for i in 0..class.perpage as usize {
            if d.free[i / 64] >> (i % 64) & 1 == 1 {
                let r = self.chunk_ref(class, d.page, i);
                // SAFETY: a free chunk of a page the class owns, put back
                // on the free list under the class lock.
                unsafe { (self.ptr(r) as *mut u32).write(st.free_head) };
                st.free_head = r;
                st.free_count += 1;
            }
        }
        None
    }

    /// A chunk of class `id` that is free now, without taking a page:
    /// what the page mover moves a live item into.
    pub(crate) fn alloc_no_new_page(&self, id: u8) -> Option<Ref> {
        let class = &self.classes[id as usize];
        self.alloc_locked(class, &mut lock(&class.state), false)
    }

    /// Take every chunk of `page` off the class's free list (`st` is the
    /// locked class state), telling `each` about them.
    fn unthread_page(&self, st: &mut ClassState, page: u32, mut each: impl FnMut(Ref)) {
        let mut prev: Ref = NULL;
        let mut r = st.free_head;
        while r != NULL {
            // SAFETY: a free chunk's first 4 bytes hold the next free ref;
            // the list is ours under the class lock.
            let next = unsafe { (self.ptr(r) as *const u32).read() };
            if r >> self.off_bits == page {
                if prev == NULL {
                    st.free_head = next;
                } else {
                    // SAFETY: prev is a free chunk owned by the list.
                    unsafe { (self.ptr(prev) as *mut u32).write(next) };
                }
                st.free_count -= 1;
                each(r);
            } else {
                prev = r;
            }
            r = next;
        }
    }

    fn chunk_index(&self, class: &Class, r: Ref) -> usize {
        (((r & ((1 << self.off_bits) - 1)) as usize) << 3) / class.size as usize
    }

    fn chunk_ref(&self, class: &Class, page: u32, i: usize) -> Ref {
        (page << self.off_bits) | ((i * class.size as usize) >> 3) as u32
    }

    /// Page id of chunk `r`.
    pub(crate) fn page_of(&self, r: Ref) -> u32 {
        r >> self.off_bits
    }

    /// Whether class `id` has a chunk to hand out without a new page.
    pub(crate) fn class_free(&self, id: u8) -> bool {
        let class = &self.classes[id as usize];
        let st = lock(&class.state);
        st.free_head != NULL || st.free_end(class.perpage) > 0
    }

    pub(crate) fn limit_pages(&self) -> usize {
        lock(&self.pool).limit_pages
    }

    #[cfg(test)]
    pub(crate) fn mapped_pages(&self) -> usize {
        lock(&self.pool).mapped
    }

    /// More pages are mapped than the budget allows (after `set_limit`
    /// lowered it).
    pub(crate) fn over_limit(&self) -> bool {
        let pool = lock(&self.pool);
        pool.mapped > pool.limit_pages
    }

    pub(crate) fn idle_pages(&self) -> usize {
        lock(&self.pool).idle.len()
    }

    /// Change the page budget; idle pages above it are unmapped at once.
    pub(crate) fn set_limit(&self, bytes: usize) {
        let mut pool = lock(&self.pool);
        pool.limit_pages = bytes / self.page_size;
        self.release_over_limit(&mut pool);
    }

    fn release_over_limit(&self, pool: &mut Pool) {
        while pool.mapped > pool.limit_pages {
            let Some(p) = pool.idle.pop() else { break };
            let base = self.pages[p as usize].swap(std::ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: idle pages hold no chunk anyone can reach.
            unsafe { libc::munmap(base.cast(), self.page_size) };
            pool.mapped -= 1;
            pool.unused_ids.push(p);
            self.total_malloced
                .fetch_sub(self.page_size as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn nclasses(&self) -> u8 {
        self.largest
    }
}

fn map_page(size: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p.cast())
    }
}

/// One mapping of `size` bytes starting on a 2 MiB boundary, advised for
/// transparent huge pages (memcached's `alloc_large_chunk`). `None` when
/// the system refuses; the caller then maps pages one by one as usual.
fn map_huge_region(size: usize) -> Option<*mut u8> {
    const HUGE: usize = 2 << 20;
    let span = size.checked_add(HUGE)?;
    let raw = map_page(span)?;
    let start = (raw as usize).next_multiple_of(HUGE);
    let head = start - raw as usize;
    let tail = span - head - size;
    // SAFETY: trimming the unaligned ends of our own fresh mapping, then
    // an advice call on what remains; neither can touch other memory.
    unsafe {
        if head > 0 {
            libc::munmap(raw.cast(), head);
        }
        if tail > 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
        libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
    }
    Some(start as *mut u8)
}

impl Drop for Slabs {
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(|e| e.into_inner());
        let r = &pool.region;
        if !r.base.is_null() && r.used < r.pages {
            // SAFETY: the part of the region never handed out is ours.
            unsafe {
                libc::munmap(
                    r.base.wrapping_add(r.used * self.page_size).cast(),
                    (r.pages - r.used) * self.page_size,
                )
            };
        }
        for p in self.pages.iter() {
            let base = p.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !base.is_null() {
                // SAFETY: we own every mapping and nothing can reach it now.
                unsafe { libc::munmap(base.cast(), self.page_size) };
            }
        }
    }
}

// SAFETY: the raw page addresses are shared memory whose access is
// coordinated by the engine's locks (see the module docs of `engine`).
unsafe impl Send for Slabs {}
unsafe impl Sync for Slabs {}

#[cfg(test)]
mod tests {
    use super::*;

    fn grow(min_item: usize) -> ClassSpec<'static> {
        ClassSpec::Grow {
            min_item,
            factor: 1.25,
        }
    }

    fn slabs(limit_pages: usize) -> Slabs {
        Slabs::new(1 << 20, limit_pages << 20, grow(88), 512 * 1024).unwrap()
    }

    #[test]
    fn classes_grow_aligned_up_to_chunk_max() {
        let s = slabs(4);
        let mut prev = 0;
        for id in 1..=s.largest {
            let c = s.class(id);
            assert_eq!(c.size % 8, 0);
            assert!(c.size > prev);
            prev = c.size;
        }
        assert_eq!(s.class(1).size, 88);
        assert_eq!(s.class(s.largest).size, 512 * 1024);
        assert_eq!(s.class_for(1), 1);
        assert_eq!(s.class_for(89), 2);
        assert_eq!(s.class_for(10 << 20), s.largest);
    }

    #[test]
    fn listed_sizes_are_the_classes_then_chunk_max() {
        let list = [100, 164, 173, 1000, 4096];
        let s = Slabs::new(1 << 20, 4 << 20, ClassSpec::List(&list), 16384).unwrap();
        let sizes: Vec<u32> = (1..=s.largest).map(|id| s.class(id).size).collect();
        assert_eq!(sizes, [104, 168, 176, 1000, 4096, 16384]);
        assert_eq!(s.class(2).perpage, (1 << 20) / 168);
        assert_eq!(s.class_for(168), 2);
        assert_eq!(s.class_for(169), 3);
        assert_eq!(s.class_for(5000), s.largest);
        // An empty list leaves only the largest class (memcached does the
        // same with `slab_sizes=-`); sizes beyond chunk_max are dropped.
        let s = Slabs::new(1 << 20, 4 << 20, ClassSpec::List(&[]), 16384).unwrap();
        assert_eq!((s.largest, s.class(1).size), (1, 16384));
        let s = Slabs::new(1 << 20, 4 << 20, ClassSpec::List(&[64, 20000]), 16384).unwrap();
        let sizes: Vec<u32> = (1..=s.largest).map(|id| s.class(id).size).collect();
        assert_eq!(sizes, [64, 16384]);
    }

    #[test]
    fn bad_page_size_is_refused() {
        assert!(matches!(
            Slabs::new(1000, 1 << 20, grow(88), 512),
            Err(SlabError::BadPageSize)
        ));
    }

    #[test]
    fn preallocate_gives_each_class_a_page_within_the_budget() {
        let small = slabs(4);
        let n = small.nclasses() as usize;
        assert!(n > 4);
        assert_eq!(small.preallocate(), Err(n));
        let s = slabs(n + 2);
        s.preallocate().unwrap();
        assert_eq!(s.mapped_pages(), n);
        for id in 1..=s.nclasses() {
            assert_eq!(s.class_state(id).pages.len(), 1, "class {id}");
            let r = s.alloc(id).unwrap();
            // SAFETY: a fresh chunk of a mapped page.
            assert_eq!(unsafe { s.ptr(r).read() }, 0);
        }
        // The rest of the budget still comes from the region, then stops.
        let big = s.nclasses();
        let mut pages = 1;
        while s.alloc(big).is_some() {
            pages = s.class_state(big).pages.len();
        }
        assert_eq!(pages, 3);
        assert_eq!(s.mapped_pages(), n + 2);
    }

    #[test]
    fn alloc_free_reuses_and_respects_limit() {
        let s = slabs(2);
        let id = s.class_for(1000);
        let per = s.class(id).perpage as usize;
        let mut got = Vec::new();
        while let Some(r) = s.alloc(id) {
            got.push(r);
            assert!(got.len() <= 2 * per, "limit ignored");
        }
        assert_eq!(got.len(), 2 * per);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a chunk was handed out twice");
        s.free(id, got[5]);
        assert_eq!(s.alloc(id), Some(got[5]));
        assert_eq!(s.mapped_pages(), 2);
    }

    #[test]
    fn limit_is_never_exceeded() {
        let s = slabs(1);
        assert!(s.alloc(1).is_some());
        // Class 1 took the only page; class 5 gets none.
        assert!(s.alloc(5).is_none());
        assert_eq!(s.mapped_pages(), 1);
        assert_eq!(s.total_malloced.load(Ordering::Relaxed), 1 << 20);
    }

    #[test]
    fn empty_page_moves_to_pool_and_other_class() {
        let s = slabs(1);
        let a = s.class_for(1000);
        let per = s.class(a).perpage as usize;
        let got: Vec<Ref> = (0..per).filter_map(|_| s.alloc(a)).collect();
        assert_eq!(got.len(), per);
        assert!(s.alloc(s.class_for(100)).is_none(), "budget spent");
        assert!(!s.release_empty_page(a), "page in use cannot move");
        for r in &got[1..] {
            s.free(a, *r);
        }
        assert!(!s.release_empty_page(a), "one chunk still used");
        s.free(a, got[0]);
        assert!(s.release_empty_page(a));
        assert_eq!(s.idle_pages(), 1);
        assert!(
            s.alloc(s.class_for(100)).is_some(),
            "the page changed class"
        );
        assert_eq!(s.idle_pages(), 0);
        assert!(s.alloc(a).is_none(), "class a has no page left");
    }

    #[test]
    fn partly_carved_page_can_move() {
        let s = slabs(1);
        let a = s.class_for(1000);
        let r = s.alloc(a).unwrap();
        assert!(!s.release_empty_page(a));
        s.free(a, r);
        assert!(s.release_empty_page(a));
        assert!(s.alloc(2).is_some());
    }

    /// The page mover's drain: no chunk of the page is handed out while it
    /// drains; chunks freed meanwhile are kept; an unfinished drain gives
    /// the free chunks back, a finished one takes the page away.
    #[test]
    fn a_draining_page_is_out_of_circulation() {
        let s = slabs(8);
        let c = s.class_for(1000);
        let perpage = s.class(c).perpage as usize;
        let refs: Vec<Ref> = (0..perpage + 5).map(|_| s.alloc(c).unwrap()).collect();
        let p1 = s.page_of(refs[0]);
        let p2 = s.page_of(refs[perpage]);
        assert_ne!(p1, p2);
        s.free(c, refs[0]);
        s.free(c, refs[perpage]);
        assert!(s.begin_drain(c, p1));
        assert!(!s.begin_drain(c, p2), "one drain per class at a time");
        assert_eq!(s.drain_left(c), perpage as u32 - 1);
        // Only p2's chunks are handed out: its free one, then its uncut ones.
        let mut got = Vec::new();
        while let Some(r) = s.alloc_no_new_page(c) {
            assert_eq!(s.page_of(r), p2);
            got.push(r);
        }
        assert_eq!(got.len(), 1 + perpage - 5);
        for &r in &refs[1..perpage - 1] {
            s.free(c, r);
        }
        assert_eq!(s.drain_left(c), 1);
        // One chunk still in use: the page stays, its free chunks return.
        assert_eq!(s.finish_drain(c), None);
        assert_eq!(s.class_state(c).pages.len(), 2);
        let back: Vec<Ref> = std::iter::from_fn(|| s.alloc_no_new_page(c)).collect();
        assert_eq!(back.len(), perpage - 1);
        assert!(back.iter().all(|&r| s.page_of(r) == p1));
        for &r in &back {
            s.free(c, r);
        }
        assert!(s.begin_drain(c, p1));
        s.free(c, refs[perpage - 1]);
        assert_eq!(s.drain_left(c), 0);
        assert_eq!(s.finish_drain(c), Some(p1));
        assert_eq!(s.class_state(c).pages, vec![p2]);
        // The page can serve another class at once.
        let d = s.class_for(100);
        s.page_to_class(d, p1);
        let r = s.alloc_no_new_page(d).unwrap();
        assert_eq!(s.page_of(r), p1);
    }

    /// A page given to a class that still has uncut chunks joins its free
    /// list instead of replacing the carving page.
    #[test]
    fn a_page_given_to_a_carving_class_joins_its_free_list() {
        let s = slabs(8);
        let (a, b) = (s.class_for(1000), s.class_for(100));
        let r = s.alloc(a).unwrap();
        s.free(a, r);
        let page = s.take_empty_page(a).unwrap();
        s.alloc(b).unwrap();
        s.page_to_class(b, page);
        let st = s.class_state(b);
        assert_eq!(st.pages.len(), 2);
        assert_eq!(st.free_count, s.class(b).perpage);
    }

    #[test]
    fn chunks_are_writable_and_aligned() {
        let s = slabs(1);
        let r = s.alloc(3).unwrap();
        let p = s.ptr(r);
        assert_eq!(p as usize % 8, 0);
        // SAFETY: freshly allocated chunk of class 3.
        unsafe { p.write_bytes(0xab, s.class(3).size as usize) };
        assert_eq!(unsafe { *p.add(5) }, 0xab);
    }
}
