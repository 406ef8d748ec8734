//! The slab engine: items in slab chunks, a sharded hash index, and a
//! segmented LRU per class in each shard.
//!
//! Why shards own both index and LRUs: every operation on a key touches
//! its hash chain and its LRU links together, so putting both behind one
//! lock (the key's shard) makes each operation take exactly one lock, and
//! there is no global lock on the request path. 64 shards keep contention
//! low on any realistic core count.
//!
//! Locks and what they guard:
//! - shard `Mutex<Shard>`: that shard's hash index (`index`), the LRU
//!   links and state bits of every item linked in it, and the
//!   contents of those items (readers copy values under it).
//! - class lock (in `slab`): a class's free list and carving page.
//! - pool lock (in `slab`): the global page budget.
//! - mover lock: one page move at a time.
//!
//! Lock order: mover -> shard -> class -> pool. A new item's chunk is allocated
//! and filled before the shard lock is taken (allocation holds only the
//! class lock), and eviction locks one shard at a time while holding no
//! other shard lock, so no thread ever waits for a shard lock while
//! holding another one; the mover lock is only taken with no other lock
//! held: there is no cycle and no deadlock. Items are
//! freed only under their shard's lock (after unlinking), so a reader
//! under that lock never sees its chunk reused; a pinned item's chunks
//! only at its last unpin (`pin`), so a pinned value stays readable
//! after the lock.
//!
//! Invariants: an item is in its shard's index iff it is in exactly
//! one of its class's LRU lists in that shard iff `BIT_LINKED` is set;
//! `Shard::count` is the number of linked items; a chunk is either on a
//! class free list, owned by one thread while being filled (for a large
//! value, by a connection until it arrives: `fill::Reserved`), linked,
//! or unlinked but pinned (freed by the last `unpin`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::index::Index;
use super::item::{
    chain_len, ntotal, Item, Segments, BIT_ACTIVE, BIT_BINKEY, BIT_FETCHED, BIT_LINKED, BIT_STALE,
    BIT_WIN,
};
use super::sizes::Sizes;
use super::slab::{ClassSpec, Ref, Slabs, MAX_CLASSES, NULL};
use super::types::*;
use crate::clock::{is_expired, Clock, RelTime};

const SHARD_BITS: u32 = 6;
const NSHARDS: usize = 1 << SHARD_BITS;

const HOT: u8 = 0;
const WARM: u8 = 1;
const COLD: u8 = 2;
const TEMP: u8 = 3;

/// Items looked at from an LRU tail per eviction attempt.
const TAIL_SEARCH: usize = 5;
/// Juggle passes per class and shard in one `maintain` call (each moves
/// at most four items; memcached's maintainer makes up to 500).
const MAINTAIN_PASSES: usize = 128;
/// Most `reclaim_tails` rounds per class in one `maintain` call: a round
/// takes at most 512 items per tail, so a wave of a few hundred thousand
/// expiries is gone within a pass, not over minutes.
const RECLAIM_ROUNDS: usize = 16;
/// Retries of an optimistic read-allocate-relink operation.
const RETRIES: usize = 16;

#[derive(Default, Clone, Copy)]
struct Lru {
    head: Ref,
    tail: Ref,
    count: u32,
}

/// Per-class counters, kept per shard under the shard lock (no atomics
/// on the hot path) and summed for `stats`.
#[derive(Default, Clone, Copy)]
struct ClassCounters {
    mem_requested: u64,
    total_items: u64,
    evicted: u64,
    evicted_nonzero: u64,
    evicted_time: u32,
    outofmemory: u64,
    reclaimed: u64,
    expired_unfetched: u64,
    evicted_unfetched: u64,
    evicted_active: u64,
    crawler_reclaimed: u64,
    crawler_items_checked: u64,
    moves_to_cold: u64,
    moves_to_warm: u64,
    moves_within_lru: u64,
    direct_reclaims: u64,
    /// Maintenance passes that moved an item (`lru_maintainer_juggles`).
    juggles: u64,
    hits: [u64; 4],
    get_hits: u64,
    cmd_set: u64,
    delete_hits: u64,
    incr_hits: u64,
    decr_hits: u64,
    cas_hits: u64,
    cas_badval: u64,
    touch_hits: u64,
}

struct Shard {
    index: Index,
    count: usize,
    lru: Vec<[Lru; 4]>,
    cs: Vec<ClassCounters>,
    /// Items whose value a reader sends after the lock (`pin`).
    pins: Vec<pin::PinEntry>,
}

/// Cache-line aligned so two shards' locks never share a line.
#[repr(align(64))]
struct ShardSlot(Mutex<Shard>);

/// The storage engine. See the module docs for locking.
pub struct Store {
    cfg: StoreConfig,
    /// The LRU settings `lru tune|mode|temp_ttl` change.
    lru: LruTuning,
    clock: Arc<Clock>,
    slabs: Slabs,
    shards: Box<[ShardSlot]>,
    hasher: ahash::RandomState,
    next_cas: AtomicU64,
    oldest_live: AtomicU32,
    oldest_cas: AtomicU64,
    /// Watermarks of flushes that took effect and were then replaced by
    /// a later `flush_all`: what they hid stays hidden (see `flush`).
    dead_time: AtomicU32,
    dead_cas: AtomicU64,
    evict_cursor: AtomicUsize,
    slabs_moved: AtomicU64,
    reassign_evictions: AtomicU64,
    reassign_rescues: AtomicU64,
    reassign_chunk_rescues: AtomicU64,
    reassign_busy_items: AtomicU64,
    /// `slab_automove` now (the `slabs automove` command changes it).
    automove: AtomicU8,
    /// `slab_automove_ratio` now, as f64 bits (`slabs automove ratio`).
    automove_ratio: AtomicU64,
    /// Serialises page moves (one at a time, like memcached's rebalancer).
    mover: Mutex<()>,
    /// A page move is under way (`slab_reassign_running`).
    moving: AtomicBool,
    /// Where `slabs reassign -1 <dst>` looks for a donor next.
    reassign_cursor: AtomicU8,
    /// Counts allocation failures; a page move is considered every 32nd.
    move_tick: AtomicU64,
    /// `stats sizes` histogram (`-o track_sizes`).
    sizes: Sizes,
}

/// A live item borrowed inside `Store::get`'s closure, under its shard lock.
pub struct ItemRef<'a> {
    it: Item,
    slabs: &'a Slabs,
    use_cas: bool,
    /// The item's shard and its number, when the borrow may pin it
    /// (inside `Store::get`).
    pins: Option<(&'a mut Shard, usize)>,
    _locked: PhantomData<&'a mut Shard>,
}

impl<'a> ItemRef<'a> {
    pub fn key(&self) -> &[u8] {
        self.it.key()
    }
    pub fn flags(&self) -> u32 {
        self.it.flags()
    }
    pub fn cas(&self) -> u64 {
        if self.use_cas {
            self.it.h().cas
        } else {
            0
        }
    }
    pub fn value_len(&self) -> usize {
        self.it.h().nbytes as usize
    }
    /// The value's segments, in order (one unless the item is chained).
    pub fn value(&self) -> Segments<'_> {
        self.it.segments(self.slabs)
    }
    pub fn class_id(&self) -> u8 {
        self.it.h().class
    }
    /// This version of this item (see `ItemId`).
    pub fn id(&self) -> ItemId {
        ItemId {
            chunk: self.it.r,
            version: self.it.h().cas,
        }
    }
    pub fn exptime(&self) -> RelTime {
        self.it.h().exptime
    }
    pub fn last_access(&self) -> RelTime {
        self.it.h().atime
    }
    pub fn fetched(&self) -> bool {
        self.it.h().bits & BIT_FETCHED != 0
    }
    pub fn stale(&self) -> bool {
        self.it.h().bits & BIT_STALE != 0
    }
    pub fn win_sent(&self) -> bool {
        self.it.h().bits & BIT_WIN != 0
    }
    /// The key was stored from a base64 (meta `b`) request.
    pub fn key_binary(&self) -> bool {
        self.it.h().bits & BIT_BINKEY != 0
    }
    pub fn set_exptime(&mut self, t: RelTime) {
        self.it.hm().exptime = t;
    }
    pub fn set_win_sent(&mut self) {
        self.it.hm().bits |= BIT_WIN;
    }

    /// Keep this item's value readable, unchanged, after the lock is
    /// released, until `Store::unpin` (see `pin`). Returns the pin and
    /// the value's segments as raw parts, valid while the pin is held;
    /// `None` where pinning is not offered (outside `Store::get`).
    pub fn pin(&mut self, mut seg: impl FnMut(*const u8, usize)) -> Option<Pin> {
        let (sh, shard) = self.pins.as_mut()?;
        for s in self.it.segments(self.slabs) {
            seg(s.as_ptr(), s.len());
        }
        Some(sh.pin(*shard, self.it.r))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Shard state is consistent between statements that can panic (none
    // do on valid state), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// memcached's `safe_strtoull` applied to a value: optional leading
/// whitespace and sign, decimal digits, then end of value or whitespace.
/// Overflow and negative numbers are refused.
pub(crate) fn parse_number(v: &[u8]) -> Option<u64> {
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    while i < v.len() && is_space(v[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < v.len() && (v[i] == b'+' || v[i] == b'-') {
        neg = v[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut n: u64 = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((v[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start {
        return None;
    }
    // strtoull stops here; safe_strtoull wants whitespace or the end
    // (the stored "\r\n" in memcached's case).
    if i < v.len() && !is_space(v[i]) {
        return None;
    }
    if neg {
        let r = n.wrapping_neg();
        if (r as i64) < 0 {
            return None;
        }
        return Some(r);
    }
    Some(n)
}

/// Decimal digits of `n` into `buf`; returns the length.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = 20 - i;
    buf[..len].copy_from_slice(&tmp[i..]);
    len
}

enum Pull {
    Freed,
    Nothing,
}

impl Shard {
    fn new(slots: usize, nclasses: usize) -> Shard {
        Shard {
            index: Index::with_slots(slots),
            count: 0,
            lru: vec![[Lru::default(); 4]; nclasses],
            cs: vec![ClassCounters::default(); nclasses],
            pins: Vec::new(),
        }
    }

    fn find(&self, sl: &Slabs, h: u64, key: &[u8]) -> Option<Item> {
        self.index
            .find(h, |r| Item::at(sl, r).key() == key)
            .map(|r| Item::at(sl, r))
    }

    /// Index a new item. Growing the index (this shard only: 1/64 of it,
    /// so the pause is short and other shards keep serving) rehashes the
    /// keys of this shard's items.
    fn hash_insert(&mut self, sl: &Slabs, hasher: &ahash::RandomState, it: Item, h: u64) {
        self.index
            .insert(h, it.r, |r| hasher.hash_one(Item::at(sl, r).key()));
    }

    fn hash_remove(&mut self, it: Item, h: u64) {
        let found = self.index.remove(h, it.r);
        debug_assert!(found, "linked item missing from its index");
    }

    fn lru_push(&mut self, sl: &Slabs, it: Item, seg: u8) {
        let class = it.h().class as usize;
        let l = &mut self.lru[class][seg as usize];
        let h = it.hm();
        h.prev = NULL;
        h.next = l.head;
        h.seg = seg;
        if l.head != NULL {
            Item::at(sl, l.head).hm().prev = it.r;
        } else {
            l.tail = it.r;
        }
        l.head = it.r;
        l.count += 1;
    }

    fn lru_remove(&mut self, sl: &Slabs, it: Item) {
        let h = *it.h();
        let l = &mut self.lru[h.class as usize][h.seg as usize];
        if h.prev != NULL {
            Item::at(sl, h.prev).hm().next = h.next;
        } else {
            l.head = h.next;
        }
        if h.next != NULL {
            Item::at(sl, h.next).hm().prev = h.prev;
        } else {
            l.tail = h.prev;
        }
        l.count -= 1;
    }

    /// Put `new`, a copy of a linked item (header included), in the
    /// original's place in its LRU.
    fn lru_replace(&mut self, sl: &Slabs, new: Item) {
        let h = *new.h();
        let l = &mut self.lru[h.class as usize][h.seg as usize];
        if h.prev != NULL {
            Item::at(sl, h.prev).hm().next = new.r;
        } else {
            l.head = new.r;
        }
        if h.next != NULL {
            Item::at(sl, h.next).hm().prev = new.r;
        } else {
            l.tail = new.r;
        }
    }

    fn lru_move(&mut self, sl: &Slabs, it: Item, seg: u8) {
        self.lru_remove(sl, it);
        self.lru_push(sl, it, seg);
    }

    fn age(&self, sl: &Slabs, class: usize, seg: u8, now: RelTime) -> Option<u32> {
        let t = self.lru[class][seg as usize].tail;
        (t != NULL).then(|| now.saturating_sub(Item::at(sl, t).h().atime))
    }
}

impl Store {
    pub fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Store {
        let page_size = cfg.page_size.max(4096).next_power_of_two();
        let spec = match &cfg.slab_sizes {
            Some(list) => ClassSpec::List(list),
            None => ClassSpec::Grow {
                min_item: ntotal(0, 0, cfg.chunk_size_min.max(1)),
                factor: cfg.growth_factor,
            },
        };
        let slabs = Slabs::new(page_size, cfg.mem_limit, spec, cfg.slab_chunk_max)
            .or_else(|_| Slabs::new(1 << 20, cfg.mem_limit, spec, 512 * 1024))
            .unwrap_or_else(|_| unreachable!("1 MiB pages are always accepted"));
        let per_shard = (1usize << cfg.hashpower_init.clamp(10, 32)) / NSHARDS;
        let nclasses = slabs.nclasses() as usize + 1;
        let shards = (0..NSHARDS)
            .map(|_| ShardSlot(Mutex::new(Shard::new(per_shard.max(16), nclasses))))
            .collect();
        let store = Store {
            lru: LruTuning::new(&cfg),
            clock,
            slabs,
            shards,
            hasher: ahash::RandomState::new(),
            next_cas: AtomicU64::new(1),
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            dead_time: AtomicU32::new(0),
            dead_cas: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            slabs_moved: AtomicU64::new(0),
            reassign_evictions: AtomicU64::new(0),
            reassign_rescues: AtomicU64::new(0),
            reassign_chunk_rescues: AtomicU64::new(0),
            reassign_busy_items: AtomicU64::new(0),
            automove: AtomicU8::new(cfg.slab_automove),
            automove_ratio: AtomicU64::new(cfg.slab_automove_ratio.to_bits()),
            mover: Mutex::new(()),
            moving: AtomicBool::new(false),
            reassign_cursor: AtomicU8::new(0),
            move_tick: AtomicU64::new(0),
            sizes: Sizes::new(cfg.item_size_max),
            cfg,
        };
        store.set_automove(store.cfg.slab_automove);
        if store.cfg.track_sizes {
            // memcached's `-o track_sizes` takes a CAS value at start-up
            // (its first item then has CAS 2).
            store.sizes.enable(|| store.sizes_cas_min());
        }
        store
    }

    /// Whether the page mover may move pages by itself now.
    fn automoving(&self) -> bool {
        self.automove.load(Ordering::Relaxed) > 0
            && self.cfg.slab_reassign
            && self.cfg.evict_to_free
    }

    /// The settings commands change at run time, as they stand now.
    pub fn runtime_settings(&self) -> RuntimeSettings {
        let (hot, warm, hf, wf, segmented, temp, ttl) = self.lru.snapshot();
        RuntimeSettings {
            hot_lru_pct: hot,
            warm_lru_pct: warm,
            hot_max_factor: hf,
            warm_max_factor: wf,
            lru_segmented: segmented,
            temp_lru: temp,
            temporary_ttl: ttl,
            slab_automove: self.automove.load(Ordering::Relaxed),
            slab_automove_ratio: f64::from_bits(self.automove_ratio.load(Ordering::Relaxed)),
        }
    }

    /// `lru tune <hot_pct> <warm_pct> <hot_factor> <warm_factor>`: the
    /// caller has checked them as memcached does.
    pub fn lru_tune(&self, hot_pct: u32, warm_pct: u32, hot_factor: f64, warm_factor: f64) {
        self.lru.tune(hot_pct, warm_pct, hot_factor, warm_factor);
    }

    /// `lru mode segmented|flat`: new items go to HOT, or straight to COLD
    /// with no HOT/WARM maintenance (items already in HOT or WARM stay
    /// there and are evicted from there once COLD is empty).
    pub fn set_lru_segmented(&self, on: bool) {
        self.lru.set_segmented(on);
    }

    /// `lru temp_ttl <n>`: items with a ttl of at most `n` go to the TEMP
    /// LRU from now on; `None` (a negative `n`) stops using it.
    pub fn set_temp_ttl(&self, ttl: Option<u32>) {
        self.lru.set_temp_ttl(ttl);
    }

    /// `slabs automove ratio <r>`: see `StoreConfig::slab_automove_ratio`.
    pub fn set_automove_ratio(&self, ratio: f64) {
        self.automove_ratio
            .store(ratio.to_bits(), Ordering::Relaxed);
    }

    /// `slabs automove <0|1|2>` (and `-o slab_automove` at start).
    pub fn set_automove(&self, level: u8) {
        self.automove.store(level, Ordering::Relaxed);
        // Without page moves (automove off, no_slab_reassign, or -M, where
        // a move would evict), a class's first page may exceed the
        // budget, as in memcached's do_slabs_newslab.
        self.slabs
            .first_page_grace
            .store(!self.automoving(), Ordering::Relaxed);
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard_of(h: u64) -> usize {
        (h >> (64 - SHARD_BITS)) as usize
    }

    #[inline]
    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[i].0)
    }

    fn take_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    #[inline]
    fn vis_cas(&self, it: Item) -> u64 {
        if self.cfg.use_cas {
            it.h().cas
        } else {
            0
        }
    }

    fn is_flushed(&self, it: Item, now: RelTime) -> bool {
        let h = it.h();
        let dt = self.dead_time.load(Ordering::Relaxed);
        let dc = self.dead_cas.load(Ordering::Relaxed);
        if (dt != 0 && h.atime <= dt) || h.cas < dc {
            return true;
        }
        let ol = self.oldest_live.load(Ordering::Relaxed);
        if ol == 0 || ol > now {
            return false;
        }
        let oc = self.oldest_cas.load(Ordering::Relaxed);
        h.atime <= ol || (oc != 0 && h.cas < oc)
    }

    fn dead(&self, it: Item, now: RelTime) -> Option<Miss> {
        if self.is_flushed(it, now) {
            Some(Miss::Flushed)
        } else if is_expired(it.h().exptime, now) {
            Some(Miss::Expired)
        } else {
            None
        }
    }

    fn free_item(&self, it: Item) {
        let largest = self.slabs.largest;
        it.chain_refs(&self.slabs, |r| self.slabs.free(largest, r));
        self.slabs.free(it.h().class, it.r);
    }

    fn link(&self, sh: &mut Shard, it: Item, h: u64, now: RelTime) {
        let hd = it.hm();
        hd.bits |= BIT_LINKED;
        // memcached's do_item_link stamps the time: an item allocated
        // before a flush_all (a large value still arriving) but linked
        // after it is not flushed.
        hd.atime = now;
        let class = hd.class as usize;
        // memcached's do_item_alloc: TEMP first (only with temp_lru; an
        // expiry already past wraps to a huge ttl there, so not TEMP).
        let seg = match self.lru.temp_ttl() {
            Some(ttl) if hd.exptime != 0 && hd.exptime.wrapping_sub(now) <= ttl => TEMP,
            _ if self.lru.segmented() => HOT,
            _ => COLD,
        };
        sh.hash_insert(&self.slabs, &self.hasher, it, h);
        sh.lru_push(&self.slabs, it, seg);
        sh.count += 1;
        self.sizes.add(it.ntotal(), it.h().cas);
        let c = &mut sh.cs[class];
        c.mem_requested += it.ntotal() as u64;
        c.total_items += 1;
        self.juggle(sh, class, now);
    }

    fn unlink(&self, sh: &mut Shard, it: Item, h: u64) {
        sh.hash_remove(it, h);
        sh.lru_remove(&self.slabs, it);
        sh.count -= 1;
        self.sizes.remove(it.ntotal(), it.h().cas);
        sh.cs[it.h().class as usize].mem_requested -= it.ntotal() as u64;
        it.hm().bits &= !BIT_LINKED;
    }

    /// A borrowed view of `it` for a caller's closure; the caller holds
    /// the item's shard lock for as long as the view lives.
    fn item_ref(&self, it: Item) -> ItemRef<'_> {
        ItemRef {
            it,
            slabs: &self.slabs,
            use_cas: self.cfg.use_cas,
            pins: None,
            _locked: PhantomData,
        }
    }

    /// Unlink and free (the caller holds the item's shard lock); a
    /// pinned item's chunks are freed at its last unpin instead.
    fn remove(&self, sh: &mut Shard, it: Item, h: u64) {
        self.unlink(sh, it, h);
        if !sh.defer_free(it.r) {
            self.free_item(it);
        }
    }

    fn find_live(&self, sh: &mut Shard, h: u64, key: &[u8], now: RelTime) -> Result<Item, Miss> {
        let it = sh.find(&self.slabs, h, key).ok_or(Miss::NotFound)?;
        if let Some(m) = self.dead(it, now) {
            // Not `reclaimed`: memcached counts that only when the memory
            // of a dead item is reused from an LRU tail.
            self.remove(sh, it, h);
            return Err(m);
        }
        Ok(it)
    }

    /// Bounded LRU maintenance for one class of one shard: move at most a
    /// few items from the HOT and WARM tails. It rides on each link, and
    /// `maintain` runs it once a second for the items nobody writes near.
    /// Returns whether it moved anything.
    ///
    /// The age limits are those of memcached's maintainer: HOT and WARM
    /// items older than `hot_max_factor` and `warm_max_factor` times the
    /// age of the COLD tail move on, and with COLD empty that age is 0,
    /// so any item older than this second does.
    fn juggle(&self, sh: &mut Shard, class: usize, now: RelTime) -> bool {
        if !self.lru.segmented() {
            return false;
        }
        let sl = &self.slabs;
        let total = (sh.lru[class][HOT as usize].count
            + sh.lru[class][WARM as usize].count
            + sh.lru[class][COLD as usize].count) as u64;
        let cold_age = sh.age(sl, class, COLD, now).unwrap_or(0);
        let hot = (self.lru.hot_pct(), self.lru.hot_factor());
        let warm = (self.lru.warm_pct(), self.lru.warm_factor());
        let from_hot = self.juggle_tail(sh, class, HOT, hot, total, cold_age, now);
        let moved = self.juggle_tail(sh, class, WARM, warm, total, cold_age, now) || from_hot;
        if moved {
            sh.cs[class].juggles += 1;
        }
        moved
    }

    /// Move at most two items off the tail of `seg` (HOT or WARM) while
    /// the segment holds more than `share.0` percent of the class's
    /// `total` items or its tail is older than `share.1` times `cold_age`:
    /// an ACTIVE item loses the bit and goes to the head of WARM (counted
    /// as `moves_to_warm` from HOT, `moves_within_lru` from WARM), any
    /// other to COLD (`moves_to_cold`). Returns whether it moved one.
    #[allow(clippy::too_many_arguments)]
    fn juggle_tail(
        &self,
        sh: &mut Shard,
        class: usize,
        seg: u8,
        share: (u32, f64),
        total: u64,
        cold_age: u32,
        now: RelTime,
    ) -> bool {
        let sl = &self.slabs;
        let mut moved = false;
        for _ in 0..2 {
            let l = sh.lru[class][seg as usize];
            if l.tail == NULL {
                break;
            }
            let it = Item::at(sl, l.tail);
            let age = now.saturating_sub(it.h().atime);
            let over = l.count as u64 > total * share.0 as u64 / 100;
            let old = age as f64 > cold_age as f64 * share.1;
            if !(over || old) {
                break;
            }
            moved = true;
            if it.h().bits & BIT_ACTIVE != 0 {
                it.hm().bits &= !BIT_ACTIVE;
                sh.lru_move(sl, it, WARM);
                if seg == HOT {
                    sh.cs[class].moves_to_warm += 1;
                } else {
                    sh.cs[class].moves_within_lru += 1;
                }
            } else {
                sh.lru_move(sl, it, COLD);
                sh.cs[class].moves_to_cold += 1;
            }
        }
        moved
    }

    /// Idle LRU maintenance (memcached's LRU maintainer thread): reclaim
    /// the dead items at each class's tails (`reclaim_tails`), then
    /// juggle every class of every shard until nothing is left to move,
    /// at most `MAINTAIN_PASSES` times each, so items age out of HOT and
    /// WARM even when no set comes to do it. The caller runs it about once
    /// a second. Each shard lock is held for one class at a time.
    pub fn maintain(&self) {
        let now = self.clock.now();
        let classes = self.slabs.nclasses() as usize;
        for class in 1..=classes {
            for _ in 0..RECLAIM_ROUNDS {
                if self.reclaim_tails(class, now) == 0 {
                    break;
                }
            }
            for i in 0..NSHARDS {
                let mut sh = self.shard(i);
                for _ in 0..MAINTAIN_PASSES {
                    if !self.juggle(&mut sh, class, now) {
                        break;
                    }
                }
            }
        }
    }

    /// Free a dead item found at an LRU tail, counting it as memcached's
    /// `lru_pull_tail` does.
    fn reclaim(&self, sh: &mut Shard, class: usize, it: Item) {
        let c = &mut sh.cs[class];
        c.reclaimed += 1;
        if it.h().bits & BIT_FETCHED == 0 {
            c.expired_unfetched += 1;
        }
        let h = self.hash(it.key());
        self.remove(sh, it, h);
    }

    /// Free one item of `class` in this shard: an expired or flushed one
    /// near a tail if any, else (with `evict`) the COLD tail, rescuing
    /// active items to WARM on the way.
    fn pull_tail(&self, sh: &mut Shard, class: usize, now: RelTime, evict: bool) -> Pull {
        let sl = &self.slabs;
        for seg in [TEMP, COLD, HOT, WARM] {
            let mut r = sh.lru[class][seg as usize].tail;
            for _ in 0..TAIL_SEARCH {
                if r == NULL {
                    break;
                }
                let it = Item::at(sl, r);
                r = it.h().prev;
                if self.dead(it, now).is_some() {
                    self.reclaim(sh, class, it);
                    return Pull::Freed;
                }
            }
        }
        if !evict {
            return Pull::Nothing;
        }
        self.juggle(sh, class, now);
        for seg in [COLD, HOT, WARM, TEMP] {
            for _ in 0..TAIL_SEARCH {
                let t = sh.lru[class][seg as usize].tail;
                if t == NULL {
                    break;
                }
                let it = Item::at(sl, t);
                let bits = it.h().bits;
                if seg == COLD && bits & BIT_ACTIVE != 0 && self.lru.segmented() {
                    it.hm().bits &= !BIT_ACTIVE;
                    sh.lru_move(sl, it, WARM);
                    sh.cs[class].moves_to_warm += 1;
                    continue;
                }
                let c = &mut sh.cs[class];
                c.evicted += 1;
                c.evicted_time = now.saturating_sub(it.h().atime);
                if it.h().exptime != 0 {
                    c.evicted_nonzero += 1;
                }
                if bits & BIT_FETCHED == 0 {
                    c.evicted_unfetched += 1;
                }
                if bits & BIT_ACTIVE != 0 {
                    c.evicted_active += 1;
                }
                if let Some(hook) = self.cfg.on_evict {
                    let hd = it.h();
                    let ev = Eviction {
                        key: it.key(),
                        fetched: bits & BIT_FETCHED != 0,
                        exptime: hd.exptime,
                        last_access: hd.atime,
                        class: class as u8,
                        size: it.ntotal(),
                    };
                    hook(&ev, now);
                }
                let h = self.hash(it.key());
                self.remove(sh, it, h);
                return Pull::Freed;
            }
        }
        Pull::Nothing
    }

    /// One chunk of `class`, evicting (or moving a page) if needed.
    fn alloc_chunk(&self, class: u8, hint: usize) -> Option<Ref> {
        let now = self.clock.now();
        let mut empty_shards = 0;
        for attempt in 0..NSHARDS * 3 {
            if let Some(r) = self.slabs.alloc(class) {
                return Some(r);
            }
            // Consider a page move first, and insist (wait for the mover,
            // skip the age test) once this class has nothing to evict.
            let force = empty_shards > 0 && empty_shards % 8 == 0;
            // Under -M nothing may be evicted, and a page move evicts what
            // the page holds: no moves then (memcached keeps every item).
            if self.automoving() && (attempt == 0 || force) && self.move_page_to(class, force) {
                continue;
            }
            let s = if attempt == 0 {
                hint
            } else {
                self.evict_cursor.fetch_add(1, Ordering::Relaxed) % NSHARDS
            };
            let mut sh = self.shard(s);
            match self.pull_tail(&mut sh, class as usize, now, self.cfg.evict_to_free) {
                Pull::Freed => empty_shards = 0,
                Pull::Nothing => {
                    empty_shards += 1;
                    if empty_shards > NSHARDS {
                        sh.cs[class as usize].outofmemory += 1;
                        return None;
                    }
                }
            }
        }
        self.shard(hint).cs[class as usize].outofmemory += 1;
        None
    }

    /// Allocate and initialise an unlinked item (header + key; the value
    /// is written by the caller). `None` when no memory can be found.
    fn new_item(
        &self,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        nbytes: usize,
        hint: usize,
    ) -> Option<Item> {
        let total = ntotal(key.len(), flags, nbytes);
        let now = self.clock.now();
        if total <= self.slabs.chunk_max() {
            let class = self.slabs.class_for(total);
            let r = self.alloc_chunk(class, hint)?;
            let it = Item::at(&self.slabs, r);
            it.init(key, flags, exptime, nbytes, class, false, now);
            return Some(it);
        }
        let largest = self.slabs.largest;
        let n = chain_len(key.len(), flags, nbytes, self.slabs.chunk_max());
        let mut refs = Vec::with_capacity(n);
        for _ in 0..n {
            match self.alloc_chunk(largest, hint) {
                Some(r) => refs.push(r),
                None => {
                    for r in refs {
                        self.slabs.free(largest, r);
                    }
                    return None;
                }
            }
        }
        let it = Item::at(&self.slabs, refs[0]);
        it.init(key, flags, exptime, nbytes, largest, true, now);
        it.set_chain(&self.slabs, &refs[1..]);
        Some(it)
    }

    /// The `-I` limit is applied to the size memcached would give the
    /// item (48-byte header, 8 more with CAS, key + NUL, 4 bytes of flags
    /// when nonzero, value + CRLF), so the same requests are refused as
    /// by memcached even though our items are smaller.
    fn too_large(&self, nkey: usize, nbytes: usize, flags: u32) -> bool {
        let mc_total = 48
            + if self.cfg.use_cas { 8 } else { 0 }
            + nkey
            + 1
            + if flags != 0 { 4 } else { 0 }
            + nbytes
            + 2;
        mc_total > self.cfg.item_size_max
    }

    /// Look up `key` and run `f` on the item under the key's lock.
    pub fn get<R>(
        &self,
        key: &[u8],
        bump: bool,
        f: impl FnOnce(Result<&mut ItemRef<'_>, Miss>) -> R,
    ) -> R {
        let h = self.hash(key);
        let now = self.clock.now();
        let si = Self::shard_of(h);
        let mut sh = self.shard(si);
        let it = match self.find_live(&mut sh, h, key, now) {
            Ok(it) => it,
            Err(m) => return f(Err(m)),
        };
        let mut r = ItemRef {
            pins: Some((&mut sh, si)),
            ..self.item_ref(it)
        };
        let out = f(Ok(&mut r));
        if bump {
            let segmented = self.lru.segmented();
            let class = it.h().class as usize;
            let seg = it.h().seg;
            let c = &mut sh.cs[class];
            c.get_hits += 1;
            c.hits[seg as usize] += 1;
            let hd = it.hm();
            hd.atime = now;
            if hd.bits & BIT_FETCHED == 0 {
                hd.bits |= BIT_FETCHED;
            } else if hd.bits & BIT_ACTIVE == 0 {
                hd.bits |= BIT_ACTIVE;
                if segmented && seg == COLD {
                    // Rescued to WARM with the bit spent, as memcached's
                    // bump does: it stays in WARM past the tail only if it
                    // is hit again there. (Keeping the bit let one old hit
                    // buy two trips through WARM and cost hit ratio.)
                    hd.bits &= !BIT_ACTIVE;
                    sh.lru_move(&self.slabs, it, WARM);
                    sh.cs[class].moves_to_warm += 1;
                }
            }
            if !segmented {
                sh.lru_move(&self.slabs, it, seg);
            }
        }
        out
    }

    pub fn store(&self, a: &StoreArgs) -> StoreOutcome {
        let out = |status, cas, class| StoreOutcome { status, cas, class };
        if a.key.is_empty() || a.key.len() > 250 {
            return out(StoreStatus::NotStored, 0, 0);
        }
        match a.mode {
            Mode::Append | Mode::Prepend => self.store_concat(a),
            _ => self.store_plain(a, None),
        }
    }

    /// Set, add or replace; `filled` is an item already holding the value
    /// (see `fill`), used in place of `a.value`.
    fn store_plain(&self, a: &StoreArgs, filled: Option<Item>) -> StoreOutcome {
        let out = |status, cas, class| StoreOutcome { status, cas, class };
        let h = self.hash(a.key);
        let si = Self::shard_of(h);
        let nbytes = filled.map_or(a.value.len(), |it| it.h().nbytes as usize);
        if self.too_large(a.key.len(), nbytes, a.flags) {
            if let Some(it) = filled {
                self.free_item(it);
            }
            let now = self.clock.now();
            let mut sh = self.shard(si);
            if let Ok(old) = self.find_live(&mut sh, h, a.key, now) {
                self.remove(&mut sh, old, h);
            }
            return out(StoreStatus::TooLarge, 0, 0);
        }
        let it = if let Some(it) = filled {
            it.hm().exptime = a.exptime;
            it
        } else {
            let Some(it) = self.new_item(a.key, a.flags, a.exptime, nbytes, si) else {
                if a.mode == Mode::Set {
                    // As memcached: a failed set must not leave the old value.
                    let now = self.clock.now();
                    let mut sh = self.shard(si);
                    if let Ok(old) = self.find_live(&mut sh, h, a.key, now) {
                        self.remove(&mut sh, old, h);
                    }
                }
                return out(StoreStatus::NoMemory, 0, 0);
            };
            it.write_value(&self.slabs, 0, a.value);
            it
        };
        if a.win_sent {
            it.hm().bits |= BIT_WIN;
        }
        if a.key_binary {
            it.hm().bits |= BIT_BINKEY;
        }
        let class = it.h().class;
        let now = self.clock.now();
        let mut sh = self.shard(si);
        sh.cs[class as usize].cmd_set += 1;
        let old = self.find_live(&mut sh, h, a.key, now).ok();
        let mut stale = false;
        if a.cas != 0 {
            match old {
                None => {
                    drop(sh);
                    self.free_item(it);
                    return out(StoreStatus::NotFound, 0, 0);
                }
                Some(o) => {
                    let oc = self.vis_cas(o);
                    let ocl = o.h().class;
                    if oc == a.cas {
                        sh.cs[ocl as usize].cas_hits += 1;
                    } else if a.invalidate && a.cas < oc {
                        sh.cs[ocl as usize].cas_hits += 1;
                        stale = true;
                    } else {
                        sh.cs[ocl as usize].cas_badval += 1;
                        drop(sh);
                        self.free_item(it);
                        return out(StoreStatus::Exists, 0, ocl);
                    }
                }
            }
        }
        match (a.mode, old) {
            (Mode::Add, Some(o)) => {
                o.hm().atime = now;
                let ocl = o.h().class;
                drop(sh);
                self.free_item(it);
                return out(StoreStatus::NotStored, 0, ocl);
            }
            (Mode::Replace, None) => {
                drop(sh);
                self.free_item(it);
                return out(StoreStatus::NotStored, 0, 0);
            }
            _ => {}
        }
        if let (true, Some(o)) = (stale, old) {
            it.hm().exptime = o.h().exptime;
            it.hm().bits |= BIT_STALE | (o.h().bits & BIT_WIN);
        }
        let cas = if a.set_cas != 0 {
            a.set_cas
        } else {
            self.take_cas()
        };
        it.hm().cas = cas;
        if let Some(o) = old {
            self.remove(&mut sh, o, h);
        }
        self.link(&mut sh, it, h, now);
        out(
            StoreStatus::Stored,
            if self.cfg.use_cas { cas } else { 0 },
            class,
        )
    }

    fn store_concat(&self, a: &StoreArgs) -> StoreOutcome {
        let out = |status, cas, class| StoreOutcome { status, cas, class };
        let h = self.hash(a.key);
        let si = Self::shard_of(h);
        let append = a.mode == Mode::Append;
        for _ in 0..RETRIES {
            let now = self.clock.now();
            let mut sh = self.shard(si);
            let (oref, ocas, olen, oflags, oexp, ocl) = match self.find_live(&mut sh, h, a.key, now)
            {
                Err(_) => {
                    drop(sh);
                    // memcached: append/prepend to nothing is NOT_STORED,
                    // with or without a CAS.
                    let Some(t) = a.vivify else {
                        return out(StoreStatus::NotStored, 0, 0);
                    };
                    let mut add = *a;
                    add.mode = Mode::Add;
                    add.exptime = t;
                    add.flags = 0;
                    add.cas = 0;
                    let o = self.store_plain(&add, None);
                    if o.status == StoreStatus::NotStored {
                        continue; // someone created it meanwhile: append to theirs
                    }
                    return o;
                }
                Ok(o) => {
                    let hd = o.h();
                    // Without CAS (-C) memcached's new item carries no CAS
                    // to compare, so append/prepend skip the check.
                    if a.cas != 0 && self.cfg.use_cas && self.vis_cas(o) != a.cas {
                        sh.cs[hd.class as usize].cas_badval += 1;
                        return out(StoreStatus::Exists, 0, hd.class);
                    }
                    (
                        o.r,
                        hd.cas,
                        hd.nbytes as usize,
                        o.flags(),
                        hd.exptime,
                        hd.class,
                    )
                }
            };
            drop(sh);
            let nlen = olen + a.value.len();
            if self.too_large(a.key.len(), nlen, oflags) {
                return out(StoreStatus::NotStored, 0, ocl);
            }
            let Some(it) = self.new_item(a.key, oflags, oexp, nlen, si) else {
                return out(StoreStatus::NoMemory, 0, 0);
            };
            it.write_value(&self.slabs, if append { olen } else { 0 }, a.value);
            if a.key_binary {
                it.hm().bits |= BIT_BINKEY;
            }
            let now = self.clock.now();
            let mut sh = self.shard(si);
            match self.find_live(&mut sh, h, a.key, now) {
                Ok(o) if o.r == oref && o.h().cas == ocas => {
                    let mut off = if append { 0 } else { a.value.len() };
                    for seg in o.segments(&self.slabs) {
                        it.write_value(&self.slabs, off, seg);
                        off += seg.len();
                    }
                    let class = it.h().class;
                    sh.cs[class as usize].cmd_set += 1;
                    let cas = if a.set_cas != 0 {
                        a.set_cas
                    } else {
                        self.take_cas()
                    };
                    it.hm().cas = cas;
                    self.remove(&mut sh, o, h);
                    self.link(&mut sh, it, h, now);
                    return out(
                        StoreStatus::Stored,
                        if self.cfg.use_cas { cas } else { 0 },
                        class,
                    );
                }
                _ => {
                    drop(sh);
                    self.free_item(it);
                }
            }
        }
        out(StoreStatus::NotStored, 0, 0)
    }

    pub fn delete(&self, a: &DeleteArgs) -> DeleteOutcome {
        let out = |status, class| DeleteOutcome {
            status,
            class,
            no_memory: false,
            renamed: None,
        };
        let h = self.hash(a.key);
        let si = Self::shard_of(h);
        // Meta `x`: the empty replacement is allocated before the key's
        // lock is taken (allocation may evict from any shard).
        let empty = if a.clear_value {
            match self.new_item(a.key, 0, 0, 0, si) {
                Some(it) => Some(it),
                None => {
                    return DeleteOutcome {
                        no_memory: true,
                        ..out(DeleteStatus::NotFound, 0)
                    }
                }
            }
        } else {
            None
        };
        let now = self.clock.now();
        let mut sh = self.shard(si);
        let found = match self.find_live(&mut sh, h, a.key, now) {
            Ok(it) if a.cas != 0 && self.vis_cas(it) != a.cas => {
                Err(out(DeleteStatus::Exists, it.h().class))
            }
            Ok(it) => Ok(it),
            Err(_) => Err(out(DeleteStatus::NotFound, 0)),
        };
        let it = match found {
            Ok(it) => it,
            Err(res) => {
                drop(sh);
                if let Some(e) = empty {
                    self.free_item(e);
                }
                return res;
            }
        };
        let class = it.h().class;
        sh.cs[class as usize].delete_hits += 1;
        // The item that stays in place, if any.
        let kept = match empty {
            Some(e) => {
                let (oh, eh) = (it.h(), e.hm());
                eh.exptime = oh.exptime;
                eh.bits |= oh.bits & BIT_BINKEY;
                eh.cas = if a.set_cas != 0 { a.set_cas } else { oh.cas };
                self.remove(&mut sh, it, h);
                self.link(&mut sh, e, h, now);
                Some(e)
            }
            None if a.invalidate.is_some() => Some(it),
            None => {
                self.remove(&mut sh, it, h);
                None
            }
        };
        let mut renamed = None;
        if let (Some(it), Some(t)) = (kept, a.invalidate) {
            let r = it.r;
            let hd = it.hm();
            let before = ItemId {
                chunk: r,
                version: hd.cas,
            };
            // Stale, and the next fetch may win the recache token again.
            hd.bits = (hd.bits | BIT_STALE) & !BIT_WIN;
            hd.cas = if a.set_cas != 0 {
                a.set_cas
            } else {
                self.take_cas()
            };
            if let Some(t) = t {
                hd.exptime = t;
            }
            if empty.is_none() {
                let after = ItemId {
                    chunk: r,
                    version: hd.cas,
                };
                renamed = Some((before, after));
            }
        }
        DeleteOutcome {
            renamed,
            ..out(DeleteStatus::Deleted, class)
        }
    }

    pub fn arith(&self, a: &ArithArgs) -> ArithOutcome {
        let res = |status, value, cas, exptime, class| ArithOutcome {
            status,
            value,
            cas,
            exptime,
            prev_exptime: exptime,
            class,
        };
        let h = self.hash(a.key);
        let si = Self::shard_of(h);
        let mut buf = [0u8; 20];
        for _ in 0..RETRIES {
            let now = self.clock.now();
            let mut sh = self.shard(si);
            let found = self.find_live(&mut sh, h, a.key, now);
            let o = match found {
                Ok(o) => o,
                Err(_) => {
                    drop(sh);
                    let Some((init, exp)) = a.create else {
                        return res(ArithStatus::NotFound, 0, 0, 0, 0);
                    };
                    let n = format_u64(init, &mut buf);
                    let mut s = StoreArgs::new(Mode::Add, a.key, 0, exp, &buf[..n]);
                    s.set_cas = a.set_cas;
                    let o = self.store_plain(&s, None);
                    match o.status {
                        StoreStatus::Stored => {
                            return res(ArithStatus::Created, init, o.cas, exp, o.class)
                        }
                        StoreStatus::NotStored => continue,
                        _ => return res(ArithStatus::NoMemory, 0, 0, 0, 0),
                    }
                }
            };
            let hd = *o.h();
            // memcached's order: empty or chained, then CAS, then parse.
            // Chained as memcached would chain it: its items are larger,
            // so it chains some that gannet keeps in one chunk.
            let nkey = usize::from(hd.nkey);
            let mc_size =
                memcached_item_size(nkey, o.flags(), hd.nbytes as usize, self.cfg.use_cas);
            if hd.nbytes == 0 || o.chained() || mc_size > self.cfg.slab_chunk_max {
                return res(ArithStatus::NonNumeric, 0, 0, hd.exptime, hd.class);
            }
            if a.cas != 0 && self.vis_cas(o) != a.cas {
                return res(ArithStatus::Exists, 0, 0, hd.exptime, hd.class);
            }
            let Some(v) = o.segments(&self.slabs).next().and_then(parse_number) else {
                return res(ArithStatus::NonNumeric, 0, 0, hd.exptime, hd.class);
            };
            let nv = if a.incr {
                v.wrapping_add(a.delta)
            } else {
                v.saturating_sub(a.delta)
            };
            let n = format_u64(nv, &mut buf);
            let c = &mut sh.cs[hd.class as usize];
            if a.incr {
                c.incr_hits += 1;
            } else {
                c.decr_hits += 1;
            }
            let held = a.held.contains(&ItemId {
                chunk: o.r,
                version: hd.cas,
            });
            if n <= hd.nbytes as usize && !held && !sh.is_pinned(o.r) {
                // Same or shorter: rewrite in place, padded with spaces
                // (as memcached does; "10" decr 1 reads back "9 ").
                // The whole old length is rewritten, however long.
                o.write_value(&self.slabs, 0, &buf[..n]);
                let spaces = [b' '; 64];
                let mut at = n;
                while at < hd.nbytes as usize {
                    let k = (hd.nbytes as usize - at).min(spaces.len());
                    o.write_value(&self.slabs, at, &spaces[..k]);
                    at += k;
                }
                let cas = if a.set_cas != 0 {
                    a.set_cas
                } else {
                    self.take_cas()
                };
                let exptime = a.exptime.unwrap_or(hd.exptime);
                let w = o.hm();
                w.cas = cas;
                w.exptime = exptime;
                // The item stays the same item, so it keeps its fetched
                // and active bits (memcached's in-place path). memcached
                // makes a fresh, unfetched copy instead while another
                // reference pins the item: a reply not yet written (the
                // `held` list), or an LRU bump still queued after a hit
                // in COLD (timing, not protocol, so not modelled).
                return ArithOutcome {
                    prev_exptime: hd.exptime,
                    ..res(ArithStatus::Ok, nv, self.vis(cas), exptime, hd.class)
                };
            }
            drop(sh);
            // A new item keeps the old exptime: see `ArithArgs::exptime`.
            let exptime = hd.exptime;
            let Some(it) = self.new_item(a.key, o.flags(), exptime, n, si) else {
                return res(ArithStatus::NoMemory, 0, 0, 0, 0);
            };
            it.write_value(&self.slabs, 0, &buf[..n]);
            let now = self.clock.now();
            let mut sh = self.shard(si);
            match self.find_live(&mut sh, h, a.key, now) {
                Ok(o2) if o2.r == o.r && o2.h().cas == hd.cas => {
                    let cas = if a.set_cas != 0 {
                        a.set_cas
                    } else {
                        self.take_cas()
                    };
                    // A longer number, or any number for a held item, is
                    // a new item of exactly its length, as in memcached:
                    // not fetched, not stale, no win token sent.
                    it.hm().cas = cas;
                    let class = it.h().class;
                    self.remove(&mut sh, o2, h);
                    self.link(&mut sh, it, h, now);
                    return res(ArithStatus::Ok, nv, self.vis(cas), exptime, class);
                }
                _ => {
                    drop(sh);
                    self.free_item(it);
                }
            }
        }
        res(ArithStatus::NotFound, 0, 0, 0, 0)
    }

    fn vis(&self, cas: u64) -> u64 {
        if self.cfg.use_cas {
            cas
        } else {
            0
        }
    }

    /// Invalidate everything stored before `when` (0 = now), by time and
    /// CAS watermarks checked on access: no memory walk.
    ///
    /// memcached's arithmetic for the new watermarks, quirks included:
    /// `when` = 1 (an absolute time before the process started) sets the
    /// watermark to 0, which flushes nothing new; without CAS an immediate
    /// flush also invalidates items stored later in the same second.
    ///
    /// One difference: memcached simply overwrites the watermarks, so a
    /// later `flush_all` with a delay (or with that past time) makes
    /// items an earlier flush hid readable again, unless its LRU
    /// maintainer or crawler reclaimed them meanwhile, which it usually
    /// has. gannet reclaims flushed items only when it meets them, so it
    /// folds a flush that has taken effect into `dead_time`/`dead_cas`
    /// first: flushed items never come back.
    pub fn flush(&self, when: RelTime) {
        let now = self.clock.now();
        let ol = self.oldest_live.load(Ordering::Relaxed);
        if ol != 0 && ol <= now {
            self.dead_time.fetch_max(ol, Ordering::Relaxed);
            self.dead_cas
                .fetch_max(self.oldest_cas.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let new_oldest = if when == 0 { now } else { when };
        if self.cfg.use_cas {
            let ol = new_oldest - 1;
            if ol <= now {
                // A CAS value of its own, as memcached's `get_cas_id()`
                // here: items stored before it are flushed, and the next
                // item's CAS is one higher than memcached's would be
                // otherwise.
                self.oldest_cas.store(self.take_cas(), Ordering::Relaxed);
            }
            self.oldest_live.store(ol, Ordering::Relaxed);
        } else {
            self.oldest_live.store(new_oldest, Ordering::Relaxed);
        }
    }

    /// The latest `flush_all`'s watermark: items last stored at or before
    /// this time are (or will be, for a delayed flush) invalid; 0 when
    /// there was none (memcached's `settings.oldest_live`).
    pub fn oldest_live(&self) -> RelTime {
        self.oldest_live.load(Ordering::Relaxed)
    }

    /// `cache_memlimit`: a new page budget. Idle pages above it are
    /// unmapped at once; pages classes hold above it are given back by
    /// [`Store::shrink_step`], which the caller runs off the request path.
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError> {
        if bytes < 8 * 1024 * 1024 {
            return Err(MemLimitError::TooSmall);
        }
        if self.cfg.prealloc {
            return Err(MemLimitError::Preallocated);
        }
        self.slabs.set_limit(bytes);
        Ok(())
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats::default();
        let (mut slots, mut index_bytes) = (0u64, 0u64);
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            s.curr_items += sh.count as u64;
            slots += sh.index.slots() as u64;
            index_bytes += sh.index.bytes() as u64;
            for c in sh.cs.iter() {
                s.bytes += c.mem_requested;
                s.total_items += c.total_items;
                s.evictions += c.evicted;
                s.reclaimed += c.reclaimed;
                s.expired_unfetched += c.expired_unfetched;
                s.evicted_unfetched += c.evicted_unfetched;
                s.evicted_active += c.evicted_active;
                s.crawler_reclaimed += c.crawler_reclaimed;
                s.crawler_items_checked += c.crawler_items_checked;
                s.moves_to_cold += c.moves_to_cold;
                s.moves_to_warm += c.moves_to_warm;
                s.moves_within_lru += c.moves_within_lru;
                s.direct_reclaims += c.direct_reclaims;
                s.lru_maintainer_juggles += c.juggles;
            }
        }
        s.slabs_moved = self.slabs_moved.load(Ordering::Relaxed);
        s.slab_reassign_evictions_nomem = self.reassign_evictions.load(Ordering::Relaxed);
        s.slab_reassign_rescues = self.reassign_rescues.load(Ordering::Relaxed);
        s.slab_reassign_chunk_rescues = self.reassign_chunk_rescues.load(Ordering::Relaxed);
        s.slab_reassign_busy_items = self.reassign_busy_items.load(Ordering::Relaxed);
        s.slab_reassign_running = self.moving.load(Ordering::Relaxed);
        s.slab_global_page_pool = self.slabs.idle_pages() as u64;
        // The index is not a power of two in size: report the power of
        // two at or below its slot count, and its true size in bytes.
        s.hash_power_level = 63 - slots.max(1).leading_zeros() as u64;
        s.hash_bytes = index_bytes;
        s.hash_is_expanding = false;
        s.limit_maxbytes = (self.slabs.limit_pages() * self.slabs.page_size()) as u64;
        s.total_malloced = self.slabs.total_malloced.load(Ordering::Relaxed);
        s.malloc_fails = self.slabs.malloc_fails.load(Ordering::Relaxed);
        s
    }

    /// Per-class counters summed over shards, plus LRU sizes and ages.
    fn class_totals(&self) -> (Vec<ClassCounters>, Vec<[u64; 4]>, Vec<[u32; 3]>) {
        let n = self.slabs.nclasses() as usize + 1;
        let mut cs = vec![ClassCounters::default(); n];
        let mut counts = vec![[0u64; 4]; n];
        let mut ages = vec![[0u32; 3]; n];
        let now = self.clock.now();
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            for c in 1..n {
                let a = &sh.cs[c];
                let t = &mut cs[c];
                t.mem_requested += a.mem_requested;
                t.evicted += a.evicted;
                t.evicted_nonzero += a.evicted_nonzero;
                t.evicted_time = t.evicted_time.max(a.evicted_time);
                t.outofmemory += a.outofmemory;
                t.reclaimed += a.reclaimed;
                t.expired_unfetched += a.expired_unfetched;
                t.evicted_unfetched += a.evicted_unfetched;
                t.evicted_active += a.evicted_active;
                t.crawler_reclaimed += a.crawler_reclaimed;
                t.crawler_items_checked += a.crawler_items_checked;
                t.moves_to_cold += a.moves_to_cold;
                t.moves_to_warm += a.moves_to_warm;
                t.moves_within_lru += a.moves_within_lru;
                t.direct_reclaims += a.direct_reclaims;
                for (k, lru) in sh.lru[c].iter().enumerate() {
                    t.hits[k] += a.hits[k];
                    counts[c][k] += lru.count as u64;
                }
                t.get_hits += a.get_hits;
                t.cmd_set += a.cmd_set;
                t.delete_hits += a.delete_hits;
                t.incr_hits += a.incr_hits;
                t.decr_hits += a.decr_hits;
                t.cas_hits += a.cas_hits;
                t.cas_badval += a.cas_badval;
                t.touch_hits += a.touch_hits;
                for (k, seg) in [HOT, WARM, COLD].into_iter().enumerate() {
                    if let Some(age) = sh.age(&self.slabs, c, seg, now) {
                        ages[c][k] = ages[c][k].max(age);
                    }
                }
            }
        }
        (cs, counts, ages)
    }

    /// `stats items`, in memcached's order (classes holding items only).
    pub fn stats_items(&self) -> Vec<(String, String)> {
        let (cs, counts, ages) = self.class_totals();
        let mut v = Vec::new();
        for c in 1..cs.len() {
            let n: u64 = counts[c].iter().sum();
            if n == 0 {
                continue;
            }
            let t = &cs[c];
            let mut put = |k: &str, val: String| v.push((format!("items:{c}:{k}"), val));
            put("number", n.to_string());
            if self.cfg.lru_maintainer {
                put("number_hot", counts[c][HOT as usize].to_string());
                put("number_warm", counts[c][WARM as usize].to_string());
                put("number_cold", counts[c][COLD as usize].to_string());
                if self.lru.temp_ttl().is_some() {
                    put("number_temp", counts[c][TEMP as usize].to_string());
                }
                put("age_hot", ages[c][0].to_string());
                put("age_warm", ages[c][1].to_string());
            }
            put("age", ages[c][2].to_string());
            put("mem_requested", t.mem_requested.to_string());
            put("evicted", t.evicted.to_string());
            put("evicted_nonzero", t.evicted_nonzero.to_string());
            put("evicted_time", t.evicted_time.to_string());
            put("outofmemory", t.outofmemory.to_string());
            put("tailrepairs", "0".into());
            put("reclaimed", t.reclaimed.to_string());
            put("expired_unfetched", t.expired_unfetched.to_string());
            put("evicted_unfetched", t.evicted_unfetched.to_string());
            // memcached shows these only with its LRU maintainer.
            let maint = self.cfg.lru_maintainer;
            if maint {
                put("evicted_active", t.evicted_active.to_string());
            }
            put("crawler_reclaimed", t.crawler_reclaimed.to_string());
            put("crawler_items_checked", t.crawler_items_checked.to_string());
            put("lrutail_reflocked", "0".into());
            if maint {
                put("moves_to_cold", t.moves_to_cold.to_string());
                put("moves_to_warm", t.moves_to_warm.to_string());
                put("moves_within_lru", t.moves_within_lru.to_string());
                put("direct_reclaims", t.direct_reclaims.to_string());
                put("hits_to_hot", t.hits[HOT as usize].to_string());
                put("hits_to_warm", t.hits[WARM as usize].to_string());
                put("hits_to_cold", t.hits[COLD as usize].to_string());
                put("hits_to_temp", t.hits[TEMP as usize].to_string());
            }
        }
        v
    }

    /// `stats slabs`, in memcached's order (classes owning pages only).
    pub fn stats_slabs(&self) -> Vec<(String, String)> {
        let (cs, _, _) = self.class_totals();
        let mut v = Vec::new();
        let mut active = 0;
        for c in 1..=self.slabs.largest {
            let class = self.slabs.class(c);
            let st = self.slabs.class_state(c);
            let pages = st.pages.len() as u64;
            if pages == 0 {
                continue;
            }
            active += 1;
            let total = pages * class.perpage as u64;
            let used = st.used;
            let free = st.free_count as u64 + st.free_end(class.perpage) as u64;
            drop(st);
            let t = &cs[c as usize];
            let mut put = |k: &str, val: String| v.push((format!("{c}:{k}"), val));
            put("chunk_size", class.size.to_string());
            put("chunks_per_page", class.perpage.to_string());
            put("total_pages", pages.to_string());
            put("total_chunks", total.to_string());
            put("used_chunks", used.to_string());
            put("free_chunks", free.to_string());
            put("free_chunks_end", "0".into());
            put("get_hits", t.get_hits.to_string());
            put("cmd_set", t.cmd_set.to_string());
            put("delete_hits", t.delete_hits.to_string());
            put("incr_hits", t.incr_hits.to_string());
            put("decr_hits", t.decr_hits.to_string());
            put("cas_hits", t.cas_hits.to_string());
            put("cas_badval", t.cas_badval.to_string());
            put("touch_hits", t.touch_hits.to_string());
        }
        v.push(("active_slabs".into(), active.to_string()));
        v.push((
            "total_malloced".into(),
            self.slabs
                .total_malloced
                .load(Ordering::Relaxed)
                .to_string(),
        ));
        v
    }

    /// The slab class an item of this key and value length is stored in
    /// (the largest class for a chained item), whether or not it is
    /// stored: what a watcher's `item_store` line reports for a store
    /// that stored nothing.
    pub fn class_for_item(&self, nkey: usize, flags: u32, nbytes: usize) -> u8 {
        self.slabs.class_for(ntotal(nkey, flags, nbytes))
    }

    /// Every class as (id, chunk size, chunks per page), smallest first:
    /// what memcached prints at start-up under `-vv`.
    pub fn class_table(&self) -> Vec<(u8, u32, u32)> {
        (1..=self.slabs.nclasses())
            .map(|id| {
                let c = self.slabs.class(id);
                (id, c.size, c.perpage)
            })
            .collect()
    }

    /// `-L`: map the whole budget up front and give every class its
    /// first page (see `Slabs::preallocate`). Does nothing without
    /// `prealloc`; the daemon calls it once at start-up.
    pub fn reserve_memory(&self) -> Result<(), PreallocError> {
        if !self.cfg.prealloc {
            return Ok(());
        }
        self.slabs
            .preallocate()
            .map_err(|min_mb| PreallocError { min_mb })
    }

    /// `stats sizes`: the item size histogram, or `sizes_status disabled`.
    pub fn stats_sizes(&self) -> Vec<(String, String)> {
        self.sizes.report()
    }

    /// `stats sizes_enable` / `sizes_disable`: switch the histogram at run
    /// time. As memcached: enabling starts from zero counts and leaves out
    /// the items already stored (it takes a CAS value to tell them apart,
    /// so it is refused under `-C`); enabling it again keeps the counts.
    pub fn set_track_sizes(&self, on: bool) -> Result<(), SizesRefused> {
        if !on {
            self.sizes.disable();
        } else if !self.cfg.use_cas {
            return Err(SizesRefused::CasDisabled);
        } else {
            self.sizes.enable(|| self.sizes_cas_min());
        }
        Ok(())
    }

    /// The CAS watermark of a histogram starting now (0 under `-C`, where
    /// memcached's items all have CAS 0 and all count).
    fn sizes_cas_min(&self) -> u64 {
        if self.cfg.use_cas {
            self.take_cas()
        } else {
            0
        }
    }

    /// Whether `stats sizes` is being kept (`track_sizes` in `stats settings`).
    pub fn track_sizes(&self) -> bool {
        self.sizes.enabled()
    }

    /// `stats reset`: zero the event counters (not the gauges).
    pub fn reset_stats(&self) {
        for i in 0..NSHARDS {
            let mut sh = self.shard(i);
            for c in sh.cs.iter_mut() {
                *c = ClassCounters {
                    mem_requested: c.mem_requested,
                    ..ClassCounters::default()
                };
            }
        }
        self.slabs_moved.store(0, Ordering::Relaxed);
        self.reassign_evictions.store(0, Ordering::Relaxed);
        self.reassign_rescues.store(0, Ordering::Relaxed);
        self.reassign_chunk_rescues.store(0, Ordering::Relaxed);
        self.reassign_busy_items.store(0, Ordering::Relaxed);
    }
}

const _: () = assert!(MAX_CLASSES <= 256);

#[cfg(test)]
impl Store {
    /// An item's LRU segment and its ACTIVE bit, for tests.
    fn lru_state(&self, key: &[u8]) -> Option<(u8, bool)> {
        let h = self.hash(key);
        let sh = self.shard(Self::shard_of(h));
        sh.find(&self.slabs, h, key)
            .map(|it| (it.h().seg, it.h().bits & BIT_ACTIVE != 0))
    }
}

mod automove;
pub use automove::AutomoveWindow;
mod crawl;
pub use crawl::{lru_id, Crawl, CrawlTally, LruTally, Walk, LRU_IDS};
mod fill;
pub use fill::Reserved;
mod mover;
mod pin;
pub use pin::Pin;
mod tail_reclaim;
pub use mover::ReassignError;
mod tuning;
use tuning::LruTuning;

#[cfg(test)]
mod tests;
