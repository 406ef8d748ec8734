//! The vocabulary of the store contract: arguments, outcomes, settings and
//! counters. Engines implement the operations on `Store` with exactly
//! these types (see `store/mod.rs` for the list of operations).
//!
//! Contract every engine's `Store` provides (all `&self`, `Store: Send + Sync`):
//!
//! - `Store::new(cfg: StoreConfig, clock: Arc<Clock>) -> Store`
//! - `get<R>(&self, key, bump: bool, f: impl FnOnce(Result<&mut ItemRef<'_>, Miss>) -> R) -> R`
//!   runs `f` under the key's lock. A miss says why (`NotFound`, `Expired`,
//!   `Flushed`); expired or flushed items are unlinked on the way. With
//!   `bump`, after `f` returns the item counts as accessed: its last
//!   access time becomes now, it is marked fetched (and active on a second
//!   fetch) and its LRU position is refreshed. `f` therefore sees the state
//!   from before this access (what meta's `h` and `l` flags report).
//! - `store(&self, args: &StoreArgs) -> StoreOutcome`
//! - `delete(&self, args: &DeleteArgs) -> DeleteOutcome`
//! - `arith(&self, args: &ArithArgs) -> ArithOutcome`
//! - `flush(&self, when: RelTime)`: every item stored before `when`
//!   (0 = now) is invalid from `when` on, without walking memory.
//! - `set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError>`
//! - `stats(&self) -> StoreStats`, and `stats_items`, `stats_slabs`,
//!   `stats_sizes`: `Vec<(String, String)>` of `STAT` name/value pairs in
//!   memcached's order and naming (`items:1:number`, `1:chunk_size`, ...).
//! - `reset_stats(&self)` for `stats reset`.
//!
//! `ItemRef` (borrowed inside `get`'s closure, under the key's lock):
//! `key() -> &[u8]`, `flags() -> u32`, `cas() -> u64`, `value_len() -> usize`,
//! `value() -> impl Iterator<Item = &[u8]>` (segments, in order),
//! `class_id() -> u8`, `exptime() -> RelTime` (0 = never),
//! `last_access() -> RelTime`, `fetched() -> bool`, `stale() -> bool`,
//! `win_sent() -> bool`, `key_binary() -> bool` (stored with
//! `StoreArgs::key_binary`), and mutators `set_exptime(RelTime)`,
//! `set_win_sent()`.

use crate::clock::RelTime;

/// How a storage command treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// One storage request (`set`, `cas`, binary SET, meta `ms`, ...).
#[derive(Debug, Clone, Copy)]
pub struct StoreArgs<'a> {
    pub mode: Mode,
    pub key: &'a [u8],
    /// Client flags; ignored by append/prepend (the old item's are kept).
    pub flags: u32,
    /// Absolute relative time (already through `Clock::realtime`); 0 = never.
    /// Ignored by append/prepend.
    pub exptime: RelTime,
    pub value: &'a [u8],
    /// CAS the client expects the item to have; 0 = no check. With a
    /// check: missing item -> `NotFound`, other CAS -> `Exists` (see
    /// `invalidate`), for every mode, as memcached's `do_store_item`.
    pub cas: u64,
    /// Meta `I`: when `cas` is older (smaller) than the item's, store
    /// anyway but mark the new item stale; it keeps the old item's
    /// exptime and its win-token-sent mark (memcached's `CAS_STALE`).
    pub invalidate: bool,
    /// Meta `E`: the CAS value the new item gets; 0 = take the next one.
    pub set_cas: u64,
    /// Meta `N` with append/prepend: a missing item is created empty with
    /// this exptime first (autovivify), then appended to.
    pub vivify: Option<RelTime>,
    /// Mark the new item as having had its win token sent (meta `mg N`
    /// vivify on miss stores an empty item this way).
    pub win_sent: bool,
    /// The key was sent base64-encoded (meta `b`): the item remembers it
    /// (`ItemRef::key_binary`) so meta replies and `me` echo the key
    /// re-encoded, whichever form later requests use.
    pub key_binary: bool,
}

impl<'a> StoreArgs<'a> {
    /// A plain request: no CAS check, no meta extras.
    pub fn new(mode: Mode, key: &'a [u8], flags: u32, exptime: RelTime, value: &'a [u8]) -> Self {
        StoreArgs {
            mode,
            key,
            flags,
            exptime,
            value,
            cas: 0,
            invalidate: false,
            set_cas: 0,
            vivify: None,
            win_sent: false,
            key_binary: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    Stored,
    NotStored,
    Exists,
    NotFound,
    /// Larger than the item size limit. Any existing item under the key
    /// has been removed (memcached does the same).
    TooLarge,
    /// No memory could be found (with eviction off, or nothing evictable).
    NoMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    pub status: StoreStatus,
    /// CAS of the stored item (0 when not stored or CAS is disabled).
    pub cas: u64,
    /// Slab class of the stored (or compared) item, 0 when none.
    pub class: u8,
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The item was there but its exptime had passed (`get_expired`).
    Expired,
    /// The item was there but a `flush_all` invalidated it (`get_flushed`).
    Flushed,
}

/// One delete request (`delete`, binary DELETE, meta `md`).
#[derive(Debug, Clone, Copy)]
pub struct DeleteArgs<'a> {
    pub key: &'a [u8],
    /// Expected CAS, 0 = no check (mismatch -> `Exists`).
    pub cas: u64,
    /// Meta `I`: instead of removing, mark the item stale, bump its CAS
    /// and clear its win-token-sent mark (so the next fetch wins); with
    /// `Some(t)` also set its exptime to `t` (meta `T`).
    pub invalidate: Option<Option<RelTime>>,
    /// Meta `E`: the CAS value an item that stays in place gets (with
    /// `invalidate` or `clear_value`); 0 = as without `E` (`invalidate`
    /// takes the next CAS, `clear_value` alone keeps the item's CAS).
    pub set_cas: u64,
    /// Meta `x`: instead of removing the item, atomically replace it with
    /// an empty one under the same key. The empty item keeps the exptime
    /// (and the base64-key mark); its client flags are 0 and it is neither
    /// stale nor marked win-sent unless `invalidate` makes it so. Counts
    /// as a delete hit. When no memory is found for the empty item nothing
    /// changes and the outcome has `no_memory` set.
    pub clear_value: bool,
}

impl<'a> DeleteArgs<'a> {
    pub fn new(key: &'a [u8]) -> Self {
        DeleteArgs {
            key,
            cas: 0,
            invalidate: None,
            set_cas: 0,
            clear_value: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStatus {
    Deleted,
    NotFound,
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub status: DeleteStatus,
    pub class: u8,
    /// With `DeleteArgs::invalidate`: the item stays the same item but
    /// takes a new version, so its id changes from `.0` to `.1`. A
    /// caller holding the old id (`exec::pins`) still holds the item, as
    /// memcached's reference would.
    pub renamed: Option<(ItemId, ItemId)>,
    /// Only with `DeleteArgs::clear_value`: no memory for the empty item
    /// (status is then `NotFound` and the old item is untouched).
    pub no_memory: bool,
}

/// One arithmetic request (`incr`/`decr`, binary INCR/DECR, meta `ma`).
#[derive(Debug, Clone, Copy)]
pub struct ArithArgs<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// Expected CAS, 0 = no check.
    pub cas: u64,
    /// Create a missing item with this initial value and exptime
    /// (binary INCR with exptime != 0xffffffff, meta `N`/`J`).
    pub create: Option<(u64, RelTime)>,
    /// When `Some`, also set the item's exptime (meta `T`), but only when
    /// the result is written in place. memcached applies `T` to the item
    /// its incr found; when the result needs a new item (longer, or the
    /// item is held), that is the old, unlinked copy, and the new item
    /// keeps the old exptime. Not applied to an item made from `create`
    /// either: its exptime there is final.
    pub exptime: Option<RelTime>,
    /// Meta `E`: CAS for the new value, 0 = next.
    pub set_cas: u64,
    /// Items the caller's unsent replies still reference (see
    /// `exec::pins`): when the item found is one of them, the result is
    /// stored as a new item, never rewritten in place, as memcached does
    /// for an item someone else holds.
    pub held: &'a [ItemId],
}

/// One version of one item: which chunk holds it, and its internal
/// version (unique per store, whether or not clients see CAS). A replaced
/// or rewritten item gets a new id, so an id names exactly the item a
/// reply saw. An item marked stale in place (meta `md I`) keeps being the
/// same item; `DeleteOutcome::renamed` says which id it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemId {
    pub(crate) chunk: u32,
    pub(crate) version: u64,
}

impl<'a> ArithArgs<'a> {
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> Self {
        ArithArgs {
            key,
            incr,
            delta,
            cas: 0,
            create: None,
            exptime: None,
            set_cas: 0,
            held: &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithStatus {
    /// Updated an existing item.
    Ok,
    /// Created a missing item from `create`.
    Created,
    NotFound,
    /// The stored value is not a decimal number of at most 20 digits.
    NonNumeric,
    Exists,
    NoMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithOutcome {
    pub status: ArithStatus,
    /// The value after the operation (`Ok`, `Created`).
    pub value: u64,
    pub cas: u64,
    /// Exptime of the item after the operation.
    pub exptime: RelTime,
    /// Exptime of the item before the operation (what a meta `t` before
    /// `T` shows); for a created item, the same as `exptime`.
    pub prev_exptime: RelTime,
    pub class: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemLimitError {
    /// Below the smallest limit the engine accepts.
    TooSmall,
    /// `-L`: the memory was reserved at start-up (memcached refuses too).
    Preallocated,
}

/// Why `stats sizes_enable` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizesRefused {
    /// `-C`: the histogram tells old items from new by CAS
    /// (memcached's `sizes_error cas_support_disabled`).
    CasDisabled,
}

/// `-L` could not give every size class its first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreallocError {
    /// The smallest `-m`, in megabytes, that would do.
    pub min_mb: usize,
}

impl std::fmt::Display for PreallocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // memcached's two lines, word for word.
        write!(
            f,
            "Error while preallocating slab memory!\nIf using -L or other prealloc options, \
             max memory must be at least {} megabytes.",
            self.min_mb
        )
    }
}

/// An item the store evicted to make room, as `watch evictions` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Eviction<'a> {
    pub key: &'a [u8],
    pub fetched: bool,
    /// 0 = never expires.
    pub exptime: RelTime,
    pub last_access: RelTime,
    pub class: u8,
    /// Bytes of item memory (header, key, value).
    pub size: usize,
}

/// Called for every eviction, under the evicted key's lock: it must be
/// cheap and must not call back into the store. The store stays ignorant
/// of who listens (the `watch` command, in `exec`).
pub type EvictionHook = fn(&Eviction<'_>, RelTime);

/// Called when the page mover, on its own (`slab_automove`), has moved a
/// page from class `src` to class `dst`; no store lock is held.
pub type SlabMoveHook = fn(src: u8, dst: u8);

/// The settings commands change while the store runs (`lru tune|mode|
/// temp_ttl`, `slabs automove`), as `stats settings` shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeSettings {
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub lru_segmented: bool,
    pub temp_lru: bool,
    pub temporary_ttl: u32,
    pub slab_automove: u8,
    pub slab_automove_ratio: f64,
}

/// What the engine needs from the command line.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `-m`, in bytes.
    pub mem_limit: usize,
    /// `-I`: the largest item (key + value + header) accepted.
    pub item_size_max: usize,
    /// `-n`: minimum space for key + value + flags in the smallest class.
    pub chunk_size_min: usize,
    /// `-f`: chunk size growth factor.
    pub growth_factor: f64,
    /// `-o slab_sizes`: the chunk sizes of the classes below
    /// `slab_chunk_max`, in place of `-n`/`-f` (which then do nothing).
    pub slab_sizes: Option<Vec<u32>>,
    /// `-o slab_chunk_max`: the largest chunk; larger items are chained.
    pub slab_chunk_max: usize,
    /// Page size (1 MiB, as memcached).
    pub page_size: usize,
    /// `!-M`: evict to make room instead of failing.
    pub evict_to_free: bool,
    /// `!-C`: assign CAS values.
    pub use_cas: bool,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    /// With `temp_lru`, items with a ttl of at most this go to the TEMP
    /// LRU.
    pub temporary_ttl: u32,
    /// `-o temporary_ttl` given (memcached's `temp_lru`; off by default).
    pub temp_lru: bool,
    /// `!-o no_lru_maintainer`: `stats items` shows the per-segment lines.
    pub lru_maintainer: bool,
    /// `-o hashpower`: initial hash table size is 2^hashpower.
    pub hashpower_init: u8,
    /// `-o slab_automove` (0 off, 1 on, 2 aggressive).
    pub slab_automove: u8,
    /// `-o slab_automove_ratio`: a page moves to a class whose oldest
    /// items are younger than this share of the donor's.
    pub slab_automove_ratio: f64,
    /// `!-o no_slab_reassign`: pages may change class at all.
    pub slab_reassign: bool,
    /// Segmented LRU (default on; `-o no_lru_maintainer` turns it off, and
    /// `lru mode flat` at run time).
    pub lru_segmented: bool,
    /// `-L`: preallocate all memory up front.
    pub prealloc: bool,
    /// `-o track_sizes`: keep the `stats sizes` histogram from the start.
    pub track_sizes: bool,
    /// Told about every eviction (see `EvictionHook`).
    pub on_evict: Option<EvictionHook>,
    /// Told about every page the automover moves (see `SlabMoveHook`).
    pub on_slab_move: Option<SlabMoveHook>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 * 1024 * 1024,
            item_size_max: 1024 * 1024,
            chunk_size_min: 48,
            growth_factor: 1.25,
            slab_sizes: None,
            slab_chunk_max: 512 * 1024,
            page_size: 1024 * 1024,
            evict_to_free: true,
            use_cas: true,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temporary_ttl: 61,
            temp_lru: false,
            lru_maintainer: true,
            hashpower_init: 16,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_reassign: true,
            lru_segmented: true,
            prealloc: false,
            track_sizes: false,
            on_evict: None,
            on_slab_move: None,
        }
    }
}

/// Storage fields of the general `stats` group (memcached's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `bytes`: bytes used by stored items.
    pub bytes: u64,
    pub curr_items: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    /// Items the LRU crawler reclaimed (expired or flushed) and checked.
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    pub moves_to_cold: u64,
    pub moves_to_warm: u64,
    pub moves_within_lru: u64,
    pub direct_reclaims: u64,
    /// LRU maintenance passes that moved an item between segments (the
    /// work memcached's maintainer thread counts per wake-up).
    pub lru_maintainer_juggles: u64,
    pub lru_bumps_dropped: u64,
    pub slab_reassign_rescues: u64,
    /// Continuation chunks of chained items moved out of a draining page.
    pub slab_reassign_chunk_rescues: u64,
    pub slab_reassign_evictions_nomem: u64,
    pub slab_reassign_busy_items: u64,
    /// A page move is under way.
    pub slab_reassign_running: bool,
    pub slabs_moved: u64,
    pub slab_global_page_pool: u64,
    pub hash_power_level: u64,
    pub hash_bytes: u64,
    pub hash_is_expanding: bool,
    /// `limit_maxbytes`: the current memory limit in bytes.
    pub limit_maxbytes: u64,
    /// Bytes of item memory taken from the system (`total_malloced`).
    pub total_malloced: u64,
    pub malloc_fails: u64,
}

/// memcached's size of an item: its 48-byte header, the key and its
/// terminator, the flags suffix, the value with `\r\n`, and the CAS.
/// memcached decides with it what is "too large" for `-I`, and which
/// items it stores in chunks (above `slab_chunk_max`), where incr/decr
/// refuse them. gannet's own items are smaller; this keeps both
/// decisions exactly where memcached makes them.
pub fn memcached_item_size(nkey: usize, flags: u32, vlen: usize, use_cas: bool) -> usize {
    48 + nkey + 1 + if flags == 0 { 0 } else { 4 } + vlen + 2 + if use_cas { 8 } else { 0 }
}
