//! Walking every item, for the LRU crawler: `lru_crawler crawl` reclaims
//! expired and flushed items, `lru_crawler metadump` lists the live ones.
//!
//! Why the walk follows each shard's hash index rather than the LRU lists
//! (memcached threads a placeholder item through its LRUs): a position in
//! an index is a plain number that still means something after the shard
//! lock is dropped. A walk can therefore stop anywhere (a full output
//! buffer, a pause between batches) and resume later, holding a shard
//! lock only for one bounded batch and putting nothing into item memory.
//! The price: while a walk is paused, items inserted, removed or moved by
//! an index growth can be missed or seen twice, the caveat memcached gives
//! for its own walks. Nothing is ever seen that was not stored.

use super::*;

/// Index positions looked at per shard-lock hold: short enough that a
/// walk never delays a request on that shard by more than a few
/// microseconds of cache misses.
const BATCH: usize = 256;

/// Where a walk stands, and which classes it covers.
#[derive(Debug, Clone)]
pub struct Walk {
    shard: usize,
    pos: usize,
    /// Bit `c` set: class `c` is walked.
    classes: u64,
    /// Entries met in this shard before its first empty slot. A removal
    /// near the end of the table shifts the entry in slot 0 back to the
    /// last slot (Robin Hood backward shift wraps around), so these are
    /// the entries the walk could meet a second time there; it skips
    /// them once past the first empty slot.
    head: Vec<Ref>,
    /// The walk has met an empty slot in this shard.
    past_head: bool,
}

impl Walk {
    /// A walk over the classes whose bits are set (bit `c` for class `c`).
    pub fn new(classes: u64) -> Walk {
        Walk {
            shard: 0,
            pos: 0,
            classes,
            head: Vec::new(),
            past_head: false,
        }
    }

    pub fn done(&self) -> bool {
        self.shard >= NSHARDS
    }

    fn wants(&self, class: u8) -> bool {
        class < 64 && self.classes >> class & 1 == 1
    }

    /// Move to `pos`; past the end of this shard's index, to the next shard.
    fn stop_at(&mut self, pos: usize, positions: usize) {
        if pos >= positions {
            self.shard += 1;
            self.pos = 0;
            self.head.clear();
            self.past_head = false;
        } else {
            self.pos = pos;
        }
    }

    /// The entry at a position, as the walk should see it: `None` for an
    /// empty slot or one it has seen already (see `head`).
    fn visit(&mut self, entry: Option<Ref>) -> Option<Ref> {
        let Some(r) = entry else {
            self.past_head = true;
            return None;
        };
        if !self.past_head {
            self.head.push(r);
        } else if self.head.contains(&r) {
            return None;
        }
        Some(r)
    }
}

/// memcached's LRU ids, one per class and segment: `class | segment << 6`
/// (HOT 0-63, WARM 64-127, COLD 128-191, TEMP 192-255). A crawl counts
/// what it saw per id, as memcached's crawler does per LRU.
pub const LRU_IDS: usize = 4 * 64;

/// The LRU id of an item of `class` in segment `seg`.
#[inline]
pub fn lru_id(class: u8, seg: u8) -> usize {
    (class as usize & 63) | (seg as usize) << 6
}

/// One crawl in progress: its walk, its per-LRU limit and what it found
/// so far.
#[derive(Debug, Clone)]
pub struct Crawl {
    walk: Walk,
    /// Bit `c` of `lrus[s]`: the LRU of class `c`, segment `s`, is crawled.
    lrus: [u64; 4],
    /// Items checked per LRU at most (0: no limit), memcached's
    /// `lru_crawler tocrawl`.
    limit: u32,
    checked: Vec<u32>,
    pub tally: CrawlTally,
}

impl Crawl {
    /// A crawl of every segment of the classes in `classes` (bit `c` for
    /// class `c`), as `lru_crawler crawl <classes>` asks.
    pub fn new(classes: u64, limit: u32) -> Crawl {
        Crawl::of_lrus([classes; 4], limit)
    }

    /// A crawl of the LRUs in `lrus` (bit `c` of `lrus[s]` for class `c`,
    /// segment `s`), as the automatic crawler schedules them.
    pub fn of_lrus(lrus: [u64; 4], limit: u32) -> Crawl {
        Crawl {
            walk: Walk::new(lrus.iter().fold(0, |a, m| a | m)),
            lrus,
            limit,
            checked: vec![0; LRU_IDS],
            tally: CrawlTally::default(),
        }
    }
}

/// What a crawl found, in total and per LRU id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlTally {
    pub checked: u64,
    pub reclaimed: u64,
    /// Indexed by LRU id (`lru_id`); `LRU_IDS` entries.
    pub lru: Vec<LruTally>,
}

impl Default for CrawlTally {
    fn default() -> CrawlTally {
        CrawlTally {
            checked: 0,
            reclaimed: 0,
            lru: vec![LruTally::default(); LRU_IDS],
        }
    }
}

/// What a crawl saw in one LRU (memcached's `crawlerstats_t`): the
/// automatic crawler schedules that LRU's next crawl by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LruTally {
    /// Live items checked (reclaimed ones are not counted here).
    pub seen: u64,
    /// Live items without a TTL.
    pub noexp: u64,
    /// Live items with an hour or more to live.
    pub ttl_hourplus: u64,
    /// Live items by whole minutes left to live (bucket `m`: 60m to
    /// 60m+59 seconds).
    pub histo: [u64; 60],
    /// Expired and flushed items reclaimed.
    pub reclaimed: u64,
}

impl Default for LruTally {
    fn default() -> LruTally {
        LruTally {
            seen: 0,
            noexp: 0,
            ttl_hourplus: 0,
            histo: [0; 60],
            reclaimed: 0,
        }
    }
}

impl LruTally {
    /// Count a live item with `exptime` (0: none) seen at `now`.
    fn saw(&mut self, exptime: RelTime, now: RelTime) {
        self.seen += 1;
        if exptime == 0 {
            self.noexp += 1;
            return;
        }
        let left = exptime.saturating_sub(now);
        if left > 3599 {
            self.ttl_hourplus += 1;
        } else {
            self.histo[(left / 60) as usize] += 1;
        }
    }
}

impl Store {
    /// Give `f` every live item of the walk's classes among its next
    /// batch of positions, under the item's shard lock. Dead items are
    /// skipped, not reclaimed: a dump only reads. Returns whether the
    /// walk has more to do.
    pub fn dump_step(&self, w: &mut Walk, mut f: impl FnMut(&ItemRef<'_>)) -> bool {
        if w.done() {
            return false;
        }
        let now = self.clock.now();
        let sh = self.shard(w.shard);
        let positions = sh.index.positions();
        let end = (w.pos + BATCH).min(positions);
        for i in w.pos..end {
            let Some(r) = w.visit(sh.index.at(i)) else {
                continue;
            };
            let it = Item::at(&self.slabs, r);
            if !w.wants(it.h().class) || self.dead(it, now).is_some() {
                continue;
            }
            f(&self.item_ref(it));
        }
        w.stop_at(end, positions);
        !w.done()
    }

    /// Check the walk's next batch of positions and reclaim the expired
    /// and flushed items of its classes (memcached's crawler counters:
    /// `crawler_items_checked`, `crawler_reclaimed`, and
    /// `expired_unfetched` for an expired item never fetched), tallying
    /// each LRU's items by time left to live. Returns whether the crawl
    /// has more to do.
    pub fn crawl_step(&self, c: &mut Crawl) -> bool {
        let (w, lrus, limit) = (&mut c.walk, c.lrus, c.limit);
        let (checked, tally) = (&mut c.checked, &mut c.tally);
        if w.done() {
            return false;
        }
        let now = self.clock.now();
        let mut sh = self.shard(w.shard);
        let mut i = w.pos;
        for _ in 0..BATCH {
            if i >= sh.index.positions() {
                break;
            }
            let Some(r) = w.visit(sh.index.at(i)) else {
                i += 1;
                continue;
            };
            let it = Item::at(&self.slabs, r);
            let hd = *it.h();
            let class = hd.class as usize;
            let id = lru_id(hd.class, hd.seg);
            let wanted = class < 64 && lrus[(hd.seg & 3) as usize] >> class & 1 == 1;
            if !wanted || (limit != 0 && checked[id] >= limit) {
                i += 1;
                continue;
            }
            checked[id] += 1;
            tally.checked += 1;
            sh.cs[class].crawler_items_checked += 1;
            let Some(miss) = self.dead(it, now) else {
                tally.lru[id].saw(hd.exptime, now);
                i += 1;
                continue;
            };
            tally.lru[id].reclaimed += 1;
            let c = &mut sh.cs[class];
            c.crawler_reclaimed += 1;
            if miss == Miss::Expired && hd.bits & BIT_FETCHED == 0 {
                c.expired_unfetched += 1;
            }
            tally.reclaimed += 1;
            let h = self.hash(it.key());
            self.remove(&mut sh, it, h);
            // The removal shifted the following entries back by one (or
            // moved the last spilled one here): look at `i` again.
        }
        let positions = sh.index.positions();
        w.stop_at(i, positions);
        !w.done()
    }
}

impl Store {
    /// memcached's `stats cachedump <class> <limit>`: items of `class`,
    /// expired ones included as memcached lists them, shard by shard and
    /// in each shard HOT, WARM, COLD, TEMP from their newest end. memcached
    /// lists only its class-wide HOT segment, but gannet's HOT is per shard
    /// and keeps 20% of each shard's items, so a small class would show
    /// nothing. Stops after `limit` items (0: no limit) or when `f` returns
    /// false.
    pub fn cachedump(&self, class: u8, limit: u32, mut f: impl FnMut(&ItemRef<'_>) -> bool) {
        if class as usize > self.slabs.nclasses() as usize {
            return;
        }
        let mut shown = 0u32;
        for i in 0..NSHARDS {
            let sh = self.shard(i);
            for seg in [HOT, WARM, COLD, TEMP] {
                let mut r = sh.lru[class as usize][seg as usize].head;
                while r != NULL {
                    if limit != 0 && shown >= limit {
                        return;
                    }
                    let it = Item::at(&self.slabs, r);
                    r = it.h().next;
                    let keep_going = f(&self.item_ref(it));
                    if !keep_going {
                        return;
                    }
                    shown += 1;
                }
            }
        }
    }
}
