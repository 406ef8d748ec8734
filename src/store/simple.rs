//! A stand-in engine: sharded hash maps with a byte budget.
//!
//! It exists so the protocol and server layers can be built and tested
//! against the store contract while the slab engine is written. It keeps
//! memcached's semantics (modes, CAS, arithmetic, expiry, flush) but not
//! its memory layout: items are heap allocations and eviction picks an
//! arbitrary item of the same shard. Nothing outside `store/` may depend
//! on this file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::{is_expired, Clock, RelTime};

use super::types::*;

const SHARDS: usize = 64;
/// Rough per-item overhead charged against the memory limit.
const ITEM_OVERHEAD: usize = 56;

struct Item {
    flags: u32,
    exptime: RelTime,
    time: RelTime,
    cas: u64,
    fetched: bool,
    stale: bool,
    win_sent: bool,
    value: Box<[u8]>,
}

impl Item {
    fn cost(key: &[u8], value_len: usize) -> usize {
        key.len() + value_len + ITEM_OVERHEAD
    }
}

/// Borrowed view of an item, valid inside `Store::get`'s closure.
pub struct ItemRef<'a> {
    key: &'a [u8],
    item: &'a mut Item,
}

impl<'a> ItemRef<'a> {
    pub fn key(&self) -> &[u8] {
        self.key
    }
    pub fn flags(&self) -> u32 {
        self.item.flags
    }
    pub fn cas(&self) -> u64 {
        self.item.cas
    }
    pub fn value_len(&self) -> usize {
        self.item.value.len()
    }
    pub fn value(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.item.value[..])
    }
    pub fn class_id(&self) -> u8 {
        1
    }
    pub fn exptime(&self) -> RelTime {
        self.item.exptime
    }
    pub fn last_access(&self) -> RelTime {
        self.item.time
    }
    pub fn fetched(&self) -> bool {
        self.item.fetched
    }
    pub fn stale(&self) -> bool {
        self.item.stale
    }
    pub fn win_sent(&self) -> bool {
        self.item.win_sent
    }
    pub fn set_exptime(&mut self, exptime: RelTime) {
        self.item.exptime = exptime;
    }
    pub fn set_win_sent(&mut self) {
        self.item.win_sent = true;
    }
}

#[derive(Default)]
struct Counters {
    total_items: AtomicU64,
    evictions: AtomicU64,
    reclaimed: AtomicU64,
    expired_unfetched: AtomicU64,
    evicted_unfetched: AtomicU64,
}

pub struct Store {
    cfg: StoreConfig,
    clock: Arc<Clock>,
    shards: Vec<Mutex<HashMap<Box<[u8]>, Item>>>,
    hasher: ahash::RandomState,
    bytes: AtomicUsize,
    items: AtomicUsize,
    limit: AtomicUsize,
    cas_counter: AtomicU64,
    /// `flush_all`: items with `time <= oldest_live` are invalid once
    /// `oldest_live <= now` (0 = no flush pending).
    oldest_live: AtomicU64,
    /// Items with a CAS below this were flushed (immediate flush).
    oldest_cas: AtomicU64,
    counters: Counters,
}

enum Lookup {
    Live,
    Missing(Miss),
}

impl Store {
    pub fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Store {
        let limit = cfg.mem_limit;
        Store {
            cfg,
            clock,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: ahash::RandomState::new(),
            bytes: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            cas_counter: AtomicU64::new(0),
            oldest_live: AtomicU64::new(0),
            oldest_cas: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Box<[u8]>, Item>> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    fn next_cas(&self) -> u64 {
        if self.cfg.use_cas {
            self.cas_counter.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        }
    }

    fn is_flushed(&self, item: &Item, now: RelTime) -> bool {
        let oldest_live = self.oldest_live.load(Ordering::Relaxed) as RelTime;
        if oldest_live != 0 && oldest_live <= now && item.time <= oldest_live {
            return true;
        }
        let oldest_cas = self.oldest_cas.load(Ordering::Relaxed);
        self.cfg.use_cas && oldest_cas != 0 && item.cas < oldest_cas
    }

    /// Check the item under `key` in a locked map: unlink it when expired
    /// or flushed.
    fn check(&self, map: &mut HashMap<Box<[u8]>, Item>, key: &[u8], now: RelTime) -> Lookup {
        let state = match map.get(key) {
            None => return Lookup::Missing(Miss::NotFound),
            Some(it) if self.is_flushed(it, now) => Miss::Flushed,
            Some(it) if is_expired(it.exptime, now) => Miss::Expired,
            Some(_) => return Lookup::Live,
        };
        if let Some(old) = map.remove(key) {
            self.account_remove(key, &old);
            if state == Miss::Expired {
                self.counters.reclaimed.fetch_add(1, Ordering::Relaxed);
                if !old.fetched {
                    self.counters
                        .expired_unfetched
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Lookup::Missing(state)
    }

    fn account_remove(&self, key: &[u8], item: &Item) {
        self.bytes
            .fetch_sub(Item::cost(key, item.value.len()), Ordering::Relaxed);
        self.items.fetch_sub(1, Ordering::Relaxed);
    }

    fn account_add(&self, key: &[u8], item: &Item) {
        self.bytes
            .fetch_add(Item::cost(key, item.value.len()), Ordering::Relaxed);
        self.items.fetch_add(1, Ordering::Relaxed);
        self.counters.total_items.fetch_add(1, Ordering::Relaxed);
    }

    /// Make room for `need` bytes, evicting from the locked shard.
    fn reserve(&self, map: &mut HashMap<Box<[u8]>, Item>, keep: &[u8], need: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        while self.bytes.load(Ordering::Relaxed) + need > limit {
            if !self.cfg.evict_to_free {
                return false;
            }
            let victim = map.keys().find(|k| &k[..] != keep).cloned();
            let Some(victim) = victim else { return false };
            if let Some(old) = map.remove(&victim) {
                self.account_remove(&victim, &old);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                if !old.fetched {
                    self.counters
                        .evicted_unfetched
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        true
    }

    pub fn get<R>(
        &self,
        key: &[u8],
        bump: bool,
        f: impl FnOnce(Result<&mut ItemRef<'_>, Miss>) -> R,
    ) -> R {
        let now = self.clock.now();
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Lookup::Missing(m) = self.check(&mut map, key, now) {
            return f(Err(m));
        }
        let item = map.get_mut(key).expect("checked live");
        let mut r = ItemRef { key, item };
        let out = f(Ok(&mut r));
        if bump {
            r.item.fetched = true;
            r.item.time = now;
        }
        out
    }

    pub fn store(&self, args: &StoreArgs) -> StoreOutcome {
        let fail = |status| StoreOutcome {
            status,
            cas: 0,
            class: 0,
        };
        let now = self.clock.now();
        let mut map = self
            .shard(args.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if args.key.len() + args.value.len() + ITEM_OVERHEAD > self.cfg.item_size_max {
            if let Some(old) = map.remove(args.key) {
                self.account_remove(args.key, &old);
            }
            return fail(StoreStatus::TooLarge);
        }
        let live = matches!(self.check(&mut map, args.key, now), Lookup::Live);
        if !live && args.vivify.is_some() && matches!(args.mode, Mode::Append | Mode::Prepend) {
            let item = Item {
                flags: 0,
                exptime: args.vivify.unwrap_or(0),
                time: now,
                cas: self.next_cas(),
                fetched: false,
                stale: false,
                win_sent: false,
                value: Box::new([]),
            };
            self.account_add(args.key, &item);
            map.insert(args.key.into(), item);
        }
        let old = map.get(args.key);
        let mut stale = false;
        if args.cas != 0 {
            match old {
                None => return fail(StoreStatus::NotFound),
                Some(o) if o.cas == args.cas => {}
                Some(o) if args.invalidate && args.cas < o.cas => stale = true,
                Some(_) => return fail(StoreStatus::Exists),
            }
        }
        let (flags, exptime, value): (u32, RelTime, Box<[u8]>) = match (args.mode, old) {
            (Mode::Add, Some(_)) => {
                if let Some(o) = map.get_mut(args.key) {
                    o.time = now;
                }
                return fail(StoreStatus::NotStored);
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, None) => {
                return fail(StoreStatus::NotStored)
            }
            (Mode::Append, Some(o)) => {
                let mut v = Vec::with_capacity(o.value.len() + args.value.len());
                v.extend_from_slice(&o.value);
                v.extend_from_slice(args.value);
                (o.flags, o.exptime, v.into())
            }
            (Mode::Prepend, Some(o)) => {
                let mut v = Vec::with_capacity(o.value.len() + args.value.len());
                v.extend_from_slice(args.value);
                v.extend_from_slice(&o.value);
                (o.flags, o.exptime, v.into())
            }
            _ => (args.flags, args.exptime, args.value.into()),
        };
        if args.key.len() + value.len() + ITEM_OVERHEAD > self.cfg.item_size_max {
            return fail(StoreStatus::TooLarge);
        }
        if let Some(old) = map.remove(args.key) {
            self.account_remove(args.key, &old);
        }
        if !self.reserve(&mut map, args.key, Item::cost(args.key, value.len())) {
            return fail(StoreStatus::NoMemory);
        }
        let cas = if args.set_cas != 0 && self.cfg.use_cas {
            args.set_cas
        } else {
            self.next_cas()
        };
        let item = Item {
            flags,
            exptime,
            time: now,
            cas,
            fetched: false,
            stale,
            win_sent: args.win_sent,
            value,
        };
        self.account_add(args.key, &item);
        map.insert(args.key.into(), item);
        StoreOutcome {
            status: StoreStatus::Stored,
            cas,
            class: 1,
        }
    }

    pub fn delete(&self, args: &DeleteArgs) -> DeleteOutcome {
        let now = self.clock.now();
        let mut map = self
            .shard(args.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let out = |status| DeleteOutcome { status, class: 1 };
        if let Lookup::Missing(_) = self.check(&mut map, args.key, now) {
            return DeleteOutcome {
                status: DeleteStatus::NotFound,
                class: 0,
            };
        }
        let cas = map.get(args.key).map(|i| i.cas).unwrap_or(0);
        if args.cas != 0 && args.cas != cas {
            return out(DeleteStatus::Exists);
        }
        if let Some(ttl) = args.invalidate {
            let next = self.next_cas();
            if let Some(it) = map.get_mut(args.key) {
                it.stale = true;
                it.win_sent = false;
                it.cas = next;
                if let Some(t) = ttl {
                    it.exptime = t;
                }
            }
            return out(DeleteStatus::Deleted);
        }
        if let Some(old) = map.remove(args.key) {
            self.account_remove(args.key, &old);
        }
        out(DeleteStatus::Deleted)
    }

    pub fn arith(&self, args: &ArithArgs) -> ArithOutcome {
        let now = self.clock.now();
        let mut map = self
            .shard(args.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let out = |status, value, cas, exptime| ArithOutcome {
            status,
            value,
            cas,
            exptime,
            class: 1,
        };
        if let Lookup::Missing(_) = self.check(&mut map, args.key, now) {
            let Some((initial, exptime)) = args.create else {
                return out(ArithStatus::NotFound, 0, 0, 0);
            };
            let mut buf = [0u8; 20];
            let digits = fmt_u64(initial, &mut buf);
            let cas = self.next_cas();
            let item = Item {
                flags: 0,
                exptime,
                time: now,
                cas,
                fetched: false,
                stale: false,
                win_sent: false,
                value: digits.into(),
            };
            if !self.reserve(&mut map, args.key, Item::cost(args.key, digits.len())) {
                return out(ArithStatus::NoMemory, 0, 0, 0);
            }
            self.account_add(args.key, &item);
            map.insert(args.key.into(), item);
            return out(ArithStatus::Created, initial, cas, exptime);
        }
        let next = self.next_cas();
        let it = map.get_mut(args.key).expect("checked live");
        if args.cas != 0 && args.cas != it.cas {
            return out(ArithStatus::Exists, 0, it.cas, it.exptime);
        }
        let Some(cur) = parse_number(&it.value) else {
            return out(ArithStatus::NonNumeric, 0, it.cas, it.exptime);
        };
        let new = if args.incr {
            cur.wrapping_add(args.delta)
        } else {
            cur.saturating_sub(args.delta)
        };
        let mut buf = [0u8; 20];
        let digits = fmt_u64(new, &mut buf);
        let old_len = it.value.len();
        let mut v: Vec<u8> = digits.to_vec();
        if digits.len() < old_len {
            // memcached rewrites in place and pads with spaces.
            v.resize(old_len, b' ');
        }
        let grow = v.len().saturating_sub(old_len);
        it.value = v.into();
        it.cas = if args.set_cas != 0 {
            args.set_cas
        } else {
            next
        };
        if let Some(t) = args.exptime {
            it.exptime = t;
        }
        it.time = now;
        self.bytes.fetch_add(grow, Ordering::Relaxed);
        out(ArithStatus::Ok, new, it.cas, it.exptime)
    }

    pub fn flush(&self, when: RelTime) {
        let now = self.clock.now();
        if when == 0 || when <= now {
            self.oldest_live.store(now as u64 - 1, Ordering::Relaxed);
            let next = self.cas_counter.load(Ordering::Relaxed) + 1;
            self.oldest_cas.store(next, Ordering::Relaxed);
        } else {
            self.oldest_live.store(when as u64 - 1, Ordering::Relaxed);
        }
    }

    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError> {
        if bytes < 8 * 1024 * 1024 {
            return Err(MemLimitError::TooSmall);
        }
        self.limit.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
            curr_items: self.items.load(Ordering::Relaxed) as u64,
            total_items: c.total_items.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            reclaimed: c.reclaimed.load(Ordering::Relaxed),
            expired_unfetched: c.expired_unfetched.load(Ordering::Relaxed),
            evicted_unfetched: c.evicted_unfetched.load(Ordering::Relaxed),
            hash_power_level: 16,
            hash_bytes: 524288,
            limit_maxbytes: self.limit.load(Ordering::Relaxed) as u64,
            ..StoreStats::default()
        }
    }

    pub fn stats_items(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    pub fn stats_slabs(&self) -> Vec<(String, String)> {
        vec![
            ("active_slabs".into(), "0".into()),
            ("total_malloced".into(), "0".into()),
        ]
    }

    pub fn stats_sizes(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    pub fn reset_stats(&self) {
        let c = &self.counters;
        for a in [
            &c.total_items,
            &c.evictions,
            &c.reclaimed,
            &c.expired_unfetched,
            &c.evicted_unfetched,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// memcached's `safe_strtoull` on an item's data: C white space, an
/// optional `+`, decimal digits (no u64 overflow), then white space or
/// the end (memcached's data ends in `\r\n`, so what follows the first
/// white space is not looked at).
fn parse_number(v: &[u8]) -> Option<u64> {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = v.iter().take_while(|&&b| space(b)).count();
    if i < v.len() && v[i] == b'+' {
        i += 1;
    }
    let start = i;
    let mut n: u64 = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((v[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start || (i < v.len() && !space(v[i])) {
        return None;
    }
    Some(n)
}

fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}
