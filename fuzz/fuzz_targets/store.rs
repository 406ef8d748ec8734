//! Fuzz target for the storage engine: an operation stream decoded from
//! the input runs against a fresh `Store` with a small memory limit (so
//! eviction happens) and a test clock (so items expire), and every answer
//! is checked against a model.
//!
//! The model keeps, per key, either "absent" (known not to be there: after
//! a delete, a flush, a miss) or "maybe present" with the value, flags,
//! CAS and exptime the item has if it is still there. The engine may drop
//! an item at any time (eviction, expiry), never change one behind the
//! model's back, so: a hit returns exactly the model's value, flags, CAS
//! and exptime; an expired or absent item is never returned; a result that
//! proves the item was there (`add` refused, `replace`/`append` stored, a
//! CAS mismatch, `incr` done) is impossible for an absent key; `incr` and
//! `decr` compute from the model's value; a CAS store succeeds only with
//! the item's current CAS.
//!
//! Some gets also pin the item they hit (as a worker does to send a large
//! value from item memory) and hold the pin across later operations: a
//! pinned value must read back unchanged, whatever is deleted, replaced,
//! incremented or evicted meanwhile, until it is unpinned.
#![no_main]

use std::collections::HashMap;
use std::rc::Rc;

use gannet::clock::{is_expired, Clock, RelTime};
use gannet::store::{
    ArithArgs, ArithStatus, DeleteArgs, DeleteStatus, Mode, Pin, Store, StoreArgs, StoreConfig,
    StoreStatus,
};
use libfuzzer_sys::fuzz_target;

/// What the model knows about one key.
#[derive(Clone, Debug)]
struct Known {
    /// Shared so the per-operation snapshot of the model is cheap.
    value: Rc<Vec<u8>>,
    flags: u32,
    cas: u64,
    exptime: RelTime,
    /// Which engine item holds it: the serial of the operation that made
    /// the item (an in-place incr or a touch keeps it).
    item: u64,
}

const KEYS: usize = 12;
/// Small item size limit so "too large" is reachable.
const ITEM_SIZE_MAX: usize = 256 * 1024;

fn key_of(i: u8) -> Vec<u8> {
    let i = i as usize % KEYS;
    if i == KEYS - 1 {
        // One key of the maximum length.
        vec![b'K'; 250]
    } else {
        format!("key:{i}").into_bytes()
    }
}

/// Value lengths: mostly small, some large enough to force eviction and
/// chaining, one above the item size limit.
fn len_of(sel: u8) -> usize {
    let s = sel as usize;
    match sel % 32 {
        0 => 0,
        1 => 1,
        2..=11 => s % 64,
        12..=19 => 100 + s * 3,
        20..=25 => 2000 + s * 100,
        26..=28 => 20_000 + s * 100,
        29 => 70_000,
        30 => 150_000,
        _ => ITEM_SIZE_MAX + 10,
    }
}

/// A value unique to this version: its own serial written over and over,
/// or (sometimes) a number so incr/decr have something to work on.
fn value_of(serial: u64, len: usize, numeric: bool) -> Vec<u8> {
    if numeric {
        return (serial.wrapping_mul(7919) % 100_000)
            .to_string()
            .into_bytes();
    }
    let tag = format!("<{serial}>");
    let mut v = Vec::with_capacity(len + tag.len());
    while v.len() < len {
        v.extend_from_slice(tag.as_bytes());
    }
    v.truncate(len);
    v
}

/// memcached's reading of a stored number (`safe_strtoull`): decimal
/// digits that fit a u64, followed by the end or by whitespace (whatever
/// comes after that is ignored: "5 abc" is 5). The model's values never
/// start with whitespace or a sign.
fn model_number(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    if let Some(&next) = v.get(digits) {
        if !matches!(next, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            return None;
        }
    }
    std::str::from_utf8(&v[..digits]).ok()?.parse().ok()
}

/// Pins held at once, at most.
const MAX_PINS: usize = 3;

/// A value pinned by a get: its segments in item memory and what they
/// must hold until the pin is given back.
struct Held {
    pin: Pin,
    /// `Known::item` of the pinned item.
    item: u64,
    segments: Vec<(*const u8, usize)>,
    expect: Vec<u8>,
}

impl Held {
    /// Check the pinned bytes, then give the pin back.
    fn release(self, store: &Store) {
        let mut got = Vec::with_capacity(self.expect.len());
        for &(ptr, len) in &self.segments {
            // SAFETY: the pin is still held, so the segment is item memory
            // the store keeps allocated and unchanged (store::Pin).
            got.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
        }
        assert!(got == self.expect, "a pinned value changed");
        store.unpin(self.pin);
    }
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut input = Input { data };
    let Some(cfg_byte) = input.byte() else {
        return;
    };
    let clock = Clock::new();
    let cfg = StoreConfig {
        mem_limit: (2 + (cfg_byte as usize % 3)) << 20,
        item_size_max: ITEM_SIZE_MAX,
        slab_chunk_max: 64 * 1024,
        hashpower_init: 8,
        use_cas: cfg_byte & 0x10 == 0,
        lru_segmented: cfg_byte & 0x20 == 0,
        ..StoreConfig::default()
    };
    let use_cas = cfg.use_cas;
    let store = Store::new(cfg, clock.clone());
    let mut model: HashMap<Vec<u8>, Option<Known>> = HashMap::new();
    let mut serial = 0u64;
    let mut held: Vec<Held> = Vec::new();

    while let (Some(op), Some(k), Some(arg)) = (input.byte(), input.byte(), input.byte()) {
        serial += 1;
        let key = key_of(k);
        let known = model.get(&key).cloned().flatten();
        let now = clock.now();
        // A model item past its exptime must be gone.
        let live = known.clone().filter(|kn| !is_expired(kn.exptime, now));
        match op % 14 {
            // set / add / replace (plain)
            0..=3 => {
                let mode = match op % 14 {
                    0 | 1 => Mode::Set,
                    2 => Mode::Add,
                    _ => Mode::Replace,
                };
                let numeric = arg & 0x80 != 0 && arg & 0x40 != 0;
                let value = value_of(serial, len_of(arg), numeric);
                let ttl = match arg % 5 {
                    0 => 1,
                    1 => 3,
                    _ => 0,
                };
                let exptime = if ttl == 0 { 0 } else { clock.realtime(ttl) };
                let flags = (serial as u32).wrapping_mul(2654435761);
                let args = StoreArgs::new(mode, &key, flags, exptime, &value);
                // Some stores go the way a large value from a socket does:
                // the item reserved first, filled in pieces, then stored
                // (or, with no item to be had, stored the usual way).
                let reserved = match arg & 0x20 {
                    0 => None,
                    _ => store.reserve(&key, flags, exptime, 0, value.len()),
                };
                let o = match reserved {
                    Some(mut r) => {
                        let piece = 1 + usize::from(arg % 7) * 97;
                        for part in value.chunks(piece) {
                            assert_eq!(store.fill(&mut r, part), part.len());
                        }
                        assert_eq!(r.missing(), 0);
                        store.store_reserved(&args, r)
                    }
                    None => store.store(&args),
                };
                let stored = Known {
                    value: Rc::new(value.clone()),
                    flags,
                    cas: o.cas,
                    exptime,
                    item: serial,
                };
                match (mode, o.status) {
                    (_, StoreStatus::Stored) => {
                        if mode == Mode::Replace {
                            assert!(live.is_some(), "replace stored over an absent key");
                        }
                        if !use_cas {
                            assert_eq!(o.cas, 0);
                        }
                        model.insert(key, Some(stored));
                    }
                    (Mode::Add, StoreStatus::NotStored) => {
                        assert!(live.is_some(), "add refused for an absent key {known:?}");
                    }
                    (Mode::Replace, StoreStatus::NotStored) => {
                        model.insert(key, None);
                    }
                    (_, StoreStatus::TooLarge) => {
                        assert!(
                            value.len() > ITEM_SIZE_MAX / 2,
                            "too large: {}",
                            value.len()
                        );
                        model.insert(key, None);
                    }
                    (Mode::Set, StoreStatus::NoMemory) => {
                        model.insert(key, None);
                    }
                    (_, StoreStatus::NoMemory) => {}
                    (m, s) => panic!("{m:?} answered {s:?}"),
                }
            }
            // append / prepend
            4 | 5 => {
                let append = op % 14 == 4;
                let data = value_of(serial, len_of(arg) % 3000, false);
                let mode = if append { Mode::Append } else { Mode::Prepend };
                let o = store.store(&StoreArgs::new(mode, &key, 0, 0, &data));
                match o.status {
                    StoreStatus::Stored => {
                        let kn = live.expect("append stored to an absent key");
                        let value = if append {
                            [kn.value.as_slice(), &data].concat()
                        } else {
                            [data.as_slice(), kn.value.as_slice()].concat()
                        };
                        model.insert(
                            key,
                            Some(Known {
                                value: Rc::new(value),
                                cas: o.cas,
                                item: serial,
                                ..kn
                            }),
                        );
                    }
                    // Missing, or the result would be too large.
                    StoreStatus::NotStored | StoreStatus::NoMemory => {}
                    s => panic!("append answered {s:?}"),
                }
            }
            // cas
            6 => {
                let value = value_of(serial, len_of(arg) % 500, false);
                let want = match (arg % 3, &known) {
                    (0 | 1, Some(kn)) if kn.cas != 0 => kn.cas,
                    (_, Some(kn)) => kn.cas.wrapping_add(1).max(1),
                    _ => 1 + arg as u64 % 4,
                };
                let mut a = StoreArgs::new(Mode::Set, &key, 7, 0, &value);
                a.cas = want;
                let o = store.store(&a);
                match o.status {
                    StoreStatus::Stored => {
                        let kn = live.expect("cas stored to an absent key");
                        assert_eq!(kn.cas, want, "cas stored with a stale CAS");
                        model.insert(
                            key,
                            Some(Known {
                                value: Rc::new(value),
                                flags: 7,
                                cas: o.cas,
                                exptime: 0,
                                item: serial,
                            }),
                        );
                    }
                    StoreStatus::Exists => {
                        let kn = live.expect("cas mismatch on an absent key");
                        assert_ne!(kn.cas, want, "cas refused the current CAS");
                    }
                    StoreStatus::NotFound => {
                        model.insert(key, None);
                    }
                    StoreStatus::NoMemory => {}
                    s => panic!("cas answered {s:?}"),
                }
            }
            // get (with or without bump)
            7 | 8 => {
                let bump = op % 14 == 7;
                // Pin the hit, or give back the oldest pin first when
                // enough are held.
                let pin = arg & 0x40 != 0;
                if pin && held.len() == MAX_PINS {
                    held.remove(0).release(&store);
                }
                let item = live.as_ref().map_or(0, |kn| kn.item);
                let got = store.get(&key, bump, |r| {
                    r.ok().map(|it| {
                        let mut v = Vec::with_capacity(it.value_len());
                        for seg in it.value() {
                            v.extend_from_slice(seg);
                        }
                        assert_eq!(v.len(), it.value_len());
                        assert_eq!(it.key(), key.as_slice());
                        let mut segments = Vec::new();
                        let p = pin
                            .then(|| it.pin(|ptr, len| segments.push((ptr, len))))
                            .flatten()
                            .map(|pin| Held {
                                pin,
                                item,
                                segments,
                                expect: v.clone(),
                            });
                        (v, it.flags(), it.cas(), it.exptime(), p)
                    })
                });
                let got = got.map(|(v, flags, cas, exptime, p)| {
                    held.extend(p);
                    (v, flags, cas, exptime)
                });
                match got {
                    None => {
                        model.insert(key, None);
                    }
                    Some((v, flags, cas, exptime)) => {
                        let kn = live.unwrap_or_else(|| {
                            panic!("hit for an absent or expired key: {known:?}")
                        });
                        assert!(v == *kn.value, "wrong value: {} bytes", v.len());
                        assert_eq!(flags, kn.flags);
                        assert_eq!(exptime, kn.exptime);
                        if use_cas {
                            assert_eq!(cas, kn.cas);
                        }
                    }
                }
            }
            // delete
            9 => {
                let o = store.delete(&DeleteArgs::new(&key));
                match o.status {
                    DeleteStatus::Deleted => {
                        assert!(live.is_some(), "deleted an absent key");
                        model.insert(key, None);
                    }
                    DeleteStatus::NotFound => {
                        model.insert(key, None);
                    }
                    DeleteStatus::Exists => panic!("delete without CAS answered Exists"),
                }
            }
            // incr / decr
            10 | 11 => {
                let incr = op % 14 == 10;
                let delta = match arg % 4 {
                    0 => 1,
                    1 => arg as u64,
                    2 => u64::MAX - arg as u64,
                    _ => 1 << (arg % 64),
                };
                let o = store.arith(&ArithArgs::new(&key, incr, delta));
                match o.status {
                    ArithStatus::Ok => {
                        let kn = live.expect("incr on an absent key");
                        let old = model_number(&kn.value)
                            .unwrap_or_else(|| panic!("incr on a non-number {:?}", kn.value));
                        let want = if incr {
                            old.wrapping_add(delta)
                        } else {
                            old.saturating_sub(delta)
                        };
                        assert_eq!(
                            o.value,
                            want,
                            "{old} {} {delta}",
                            if incr { '+' } else { '-' }
                        );
                        let digits = want.to_string().into_bytes();
                        // In place (padded with spaces) when the result
                        // fits and nobody holds the item; a pinned item is
                        // replaced by a new one of the result's length, as
                        // in memcached for an item someone references.
                        let pinned = held.iter().any(|h| h.item == kn.item);
                        let (value, item) = if digits.len() <= kn.value.len() && !pinned {
                            let mut v = digits;
                            v.resize(kn.value.len(), b' ');
                            (v, kn.item)
                        } else {
                            (digits, serial)
                        };
                        model.insert(
                            key,
                            Some(Known {
                                value: Rc::new(value),
                                cas: o.cas,
                                item,
                                ..kn
                            }),
                        );
                    }
                    ArithStatus::NotFound => {
                        model.insert(key, None);
                    }
                    ArithStatus::NonNumeric => {
                        let kn = live.expect("non-numeric answer for an absent key");
                        // A value chained over several chunks is refused
                        // whatever it starts with.
                        assert!(
                            model_number(&kn.value).is_none() || kn.value.len() > 16 * 1024,
                            "a number was called non-numeric: {:?}",
                            String::from_utf8_lossy(&kn.value)
                        );
                    }
                    ArithStatus::NoMemory => {}
                    s => panic!("incr answered {s:?}"),
                }
            }
            // touch
            12 => {
                let exptime = if arg.is_multiple_of(2) {
                    0
                } else {
                    clock.realtime(1 + arg as i64 % 3)
                };
                let hit = store.get(&key, false, |r| match r {
                    Ok(it) => {
                        it.set_exptime(exptime);
                        true
                    }
                    Err(_) => false,
                });
                match (hit, live) {
                    (true, Some(kn)) => {
                        model.insert(key, Some(Known { exptime, ..kn }));
                    }
                    (true, None) => panic!("touch hit an absent key"),
                    (false, _) => {
                        model.insert(key, None);
                    }
                }
            }
            // flush, or let time pass
            _ => {
                if arg.is_multiple_of(4) {
                    store.flush(0);
                    for v in model.values_mut() {
                        *v = None;
                    }
                } else {
                    clock.advance(1 + arg as u32 % 3);
                }
            }
        }
    }

    for h in held {
        h.release(&store);
    }

    // Whatever the engine still holds agrees with the model.
    let now = clock.now();
    for i in 0..KEYS as u8 {
        let key = key_of(i);
        let live = model
            .get(&key)
            .cloned()
            .flatten()
            .filter(|kn| !is_expired(kn.exptime, now));
        let got = store.get(&key, false, |r| {
            r.ok().map(|it| {
                let mut v = Vec::new();
                for seg in it.value() {
                    v.extend_from_slice(seg);
                }
                v
            })
        });
        if let Some(v) = got {
            let kn = live.expect("final scan: an absent key is present");
            assert!(v == *kn.value, "final scan: wrong value");
        }
    }
    let stats = store.stats();
    assert!(
        stats.curr_items <= KEYS as u64,
        "{} items",
        stats.curr_items
    );
}
