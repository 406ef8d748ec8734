//! The most accessed keys over a recent window (`stats hotkeys`, a gannet
//! extension, on with `-o hotkeys=N`).
//!
//! Each worker keeps a space-saving table of `CAPACITY` candidate keys
//! (4-way set associative: a key may sit in one set of 4 slots), fed by
//! a random 1-in-`SAMPLE` sample of the requests it runs; every
//! `WINDOW_SECS` seconds its counts are halved, so keys that were hot long
//! ago fade out. `stats hotkeys` merges every thread's table and prints
//! the top N with counts scaled back by the sample rate.
//!
//! Cost on the request path when on: a countdown (a load, a decrement, a
//! store, a branch); on a sampled request, a word-at-a-time hash of the
//! key, a new random gap, and a look at the 4 slots of the key's set (one
//! writer, relaxed stores, no lock, no allocation). When off: one
//! comparison of a setting. A reader (`stats hotkeys`) copies
//! entries while the owner may be writing them; an entry whose hash
//! changed while it was copied is dropped from that answer (the hash
//! doubles as a
//! version: the owner clears it before rewriting the key).

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Candidate keys kept per worker.
pub const CAPACITY: usize = 128;
/// Slots a key may occupy (the table is `CAPACITY / WAYS` sets).
const WAYS: usize = 4;
/// One request in `SAMPLE` is counted, on average. (32 keeps the
/// tracking within 3% of a request's cost, see BENCHMARKS.md, and still
/// finds a key taking a few percent of the traffic within seconds at
/// production rates.)
pub const SAMPLE: u64 = 32;
/// Counts halve every this many seconds.
pub const WINDOW_SECS: u32 = 10;
/// Key bytes kept (memcached's maximum key length is 250).
const KEY_WORDS: usize = 32;

/// A candidate's key bytes (its hash and count live in the dense arrays
/// of `Table`, so a lookup scans 1 KiB, not every key).
#[derive(Debug)]
struct Entry {
    len: AtomicU32,
    key: [AtomicU64; KEY_WORDS],
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            len: AtomicU32::new(0),
            key: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// One worker's table. Only its worker writes it.
#[derive(Debug)]
pub struct Table {
    /// Hash per slot; 0 = empty or being rewritten.
    hashes: Box<[AtomicU64]>,
    counts: Box<[AtomicU64]>,
    entries: Box<[Entry]>,
    rng: AtomicU64,
    /// Requests left before the next sampled one.
    skip: AtomicU32,
    last_decay: AtomicU32,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            hashes: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect(),
            counts: (0..CAPACITY).map(|_| AtomicU64::new(0)).collect(),
            entries: (0..CAPACITY).map(|_| Entry::default()).collect(),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            skip: AtomicU32::new(1),
            last_decay: AtomicU32::new(0),
        }
    }
}

#[inline]
fn set(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed);
}

#[inline]
fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A 64-bit hash of a key, never 0: eight bytes per step (multiply and
/// fold), then a final mix. Only tells keys apart inside the table, so it
/// needs to be fast and well spread, not keyed.
#[inline]
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, w: u64| {
        let m = u128::from(h ^ w) * u128::from(K);
        (m as u64) ^ ((m >> 64) as u64)
    };
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(w) ^ 0xff);
    }
    mix(h, K) | 1
}

impl Table {
    /// Count one access to `key` at coarse time `now` (seconds), if the
    /// sampler picks it.
    #[inline]
    pub fn sample(&self, key: &[u8], now: u32) {
        if self.pick() {
            self.count(key, now);
        }
    }

    /// Draw the sampler: true one time in `SAMPLE` on average. A caller
    /// with several keys (a multi-get) draws once and counts them all,
    /// which keeps every key's expected count the same.
    ///
    /// A countdown, so an unsampled request costs a decrement; the gaps
    /// between sampled requests are random (uniform over 1..2*SAMPLE-1,
    /// mean `SAMPLE`), so a periodic workload cannot alias with them.
    #[inline]
    pub fn pick(&self) -> bool {
        // One writer: a load and a store, no locked instruction.
        let left = self.skip.load(Ordering::Relaxed);
        if left > 1 {
            self.skip.store(left - 1, Ordering::Relaxed);
            return false;
        }
        self.next_gap();
        true
    }

    #[cold]
    #[inline(never)]
    fn next_gap(&self) {
        // xorshift64
        let mut x = get(&self.rng);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        set(&self.rng, x);
        let gap = 1 + (x >> 40) % (2 * SAMPLE - 1);
        self.skip.store(gap as u32, Ordering::Relaxed);
    }

    /// Count `key` (no sampling).
    pub fn count(&self, key: &[u8], now: u32) {
        let last = self.last_decay.load(Ordering::Relaxed);
        if now.wrapping_sub(last) >= WINDOW_SECS {
            self.last_decay.store(now, Ordering::Relaxed);
            if last != 0 {
                for c in self.counts.iter() {
                    set(c, get(c) / 2);
                }
            }
        }
        let h = hash(key);
        let mut min_i = 0;
        let mut min_c = u64::MAX;
        // A key lives in one set of `WAYS` slots, chosen by its hash.
        let set_start = ((h >> 32) as usize % (CAPACITY / WAYS)) * WAYS;
        for i in set_start..set_start + WAYS {
            if get(&self.hashes[i]) == h {
                let c = &self.counts[i];
                set(c, get(c) + 1);
                return;
            }
            let c = get(&self.counts[i]);
            if c < min_c {
                min_c = c;
                min_i = i;
            }
        }
        // Space-saving within the set: the new key takes the least
        // counted slot and inherits its count (an upper bound of its own).
        let e = &self.entries[min_i];
        self.hashes[min_i].store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        let key = &key[..key.len().min(KEY_WORDS * 8)];
        let mut chunks = key.chunks_exact(8);
        let mut words = e.key.iter();
        // (Chunks first: zip stops on them without taking a word.)
        for (chunk, w) in (&mut chunks).zip(&mut words) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            set(w, u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if let (Some(w), false) = (words.next(), rest.is_empty()) {
            let mut b = [0u8; 8];
            for (d, s) in b.iter_mut().zip(rest) {
                *d = *s;
            }
            set(w, u64::from_le_bytes(b));
        }
        e.len.store(key.len() as u32, Ordering::Relaxed);
        set(
            &self.counts[min_i],
            if min_c == u64::MAX { 1 } else { min_c + 1 },
        );
        self.hashes[min_i].store(h, Ordering::Release);
    }

    /// A consistent copy of every filled entry: (hash, key, count).
    pub fn snapshot(&self, into: &mut Vec<(u64, Vec<u8>, u64)>) {
        for (i, e) in self.entries.iter().enumerate() {
            let h1 = self.hashes[i].load(Ordering::Acquire);
            if h1 == 0 {
                continue;
            }
            let len = (e.len.load(Ordering::Relaxed) as usize).min(KEY_WORDS * 8);
            let mut key = Vec::with_capacity(len);
            for w in e.key.iter() {
                key.extend_from_slice(&get(w).to_le_bytes());
                if key.len() >= len {
                    break;
                }
            }
            key.truncate(len);
            let count = get(&self.counts[i]);
            fence(Ordering::Acquire);
            if self.hashes[i].load(Ordering::Relaxed) == h1 && count > 0 {
                into.push((h1, key, count));
            }
        }
    }

    pub fn reset(&self) {
        for (h, c) in self.hashes.iter().zip(self.counts.iter()) {
            h.store(0, Ordering::Relaxed);
            set(c, 0);
        }
    }
}

/// Hook for the front ends: count an access to `key` when hot-key
/// tracking is on.
#[inline]
pub fn record(ctx: &crate::exec::Ctx, key: &[u8]) {
    if ctx.shared.settings.hotkeys == 0 || !ctx.stats.hot.pick() {
        return;
    }
    ctx.stats.hot.count(key, ctx.shared.clock.now());
}

/// The top `n` keys over every thread, most accessed first, with counts
/// scaled by `scale` (the sample rate).
pub fn top(threads: &[&crate::stats::ThreadStats], n: usize, scale: u64) -> Vec<(Vec<u8>, u64)> {
    let mut all = Vec::new();
    for t in threads {
        t.hot.snapshot(&mut all);
    }
    all.sort_by_key(|a| a.0);
    let mut merged: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut last_hash = 0;
    for (h, k, c) in all {
        if h == last_hash {
            if let Some(m) = merged.last_mut() {
                m.1 += c;
            }
        } else {
            merged.push((k, c));
            last_hash = h;
        }
    }
    merged.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    merged.truncate(n);
    for m in merged.iter_mut() {
        m.1 *= scale;
    }
    merged
}

/// A key as printable text: bytes outside `!`..`~` (and `%`) are
/// percent-encoded, as memcached's `watch` shows keys.
pub fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() && b != b'%' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// `stats hotkeys` lines.
pub fn write_stats(out: &mut Vec<u8>, n: usize, threads: &[&crate::stats::ThreadStats]) {
    use crate::stats::push_stat;
    if n == 0 {
        push_stat(out, "hotkeys_status", "disabled");
        return;
    }
    push_stat(out, "hotkeys_status", "enabled");
    push_stat(out, "hotkeys_sample_rate", SAMPLE);
    push_stat(out, "hotkeys_window_seconds", WINDOW_SECS);
    for (i, (k, c)) in top(threads, n, SAMPLE).iter().enumerate() {
        push_stat(out, &format!("hotkey:{}:key", i + 1), printable(k));
        push_stat(out, &format!("hotkey:{}:count", i + 1), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_heavy_hitters_of_a_skewed_stream() {
        let t = Table::default();
        let mut x: u64 = 12345;
        for i in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = if i % 4 == 0 {
                b"hot:a".to_vec()
            } else if i % 10 == 1 {
                b"hot:b".to_vec()
            } else {
                format!("cold:{}", (x >> 33) % 100_000).into_bytes()
            };
            t.sample(&key, 1);
        }
        let mut snap = Vec::new();
        t.snapshot(&mut snap);
        assert!(snap.len() <= CAPACITY);
        snap.sort_by_key(|b| std::cmp::Reverse(b.2));
        assert_eq!(snap[0].1, b"hot:a");
        assert_eq!(snap[1].1, b"hot:b");
        // 50_000 accesses sampled 1 in SAMPLE.
        let est = snap[0].2;
        let want = 50_000 / SAMPLE;
        assert!(est.abs_diff(want) < want / 5, "{est} vs {want}");
    }

    #[test]
    fn sampler_picks_one_in_sample_without_a_period() {
        let t = Table::default();
        let n = 400_000;
        let picks: Vec<bool> = (0..n).map(|_| t.pick()).collect();
        let hits = picks.iter().filter(|&&p| p).count() as u64;
        let want = n / SAMPLE;
        assert!(hits.abs_diff(want) < want / 50, "{hits} of {n}");
        // Gaps vary: not every SAMPLE-th request.
        let gaps: std::collections::HashSet<usize> = picks
            .iter()
            .enumerate()
            .filter(|(_, &p)| p)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert_eq!(gaps.len() as u64, 2 * SAMPLE - 1, "{gaps:?}");
    }

    #[test]
    fn hash_tells_keys_apart() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(hash(format!("key:{i}").as_bytes())));
        }
        for k in [&b""[..], b"a", b"a\0", b"\0", b"abcdefgh", b"abcdefgh\0"] {
            assert!(seen.insert(hash(k)), "{k:?}");
            assert_ne!(hash(k), 0);
        }
    }

    #[test]
    fn counts_decay_and_long_keys_are_kept() {
        let t = Table::default();
        let long = vec![b'k'; 250];
        for _ in 0..100 {
            t.count(&long, 100);
        }
        let mut snap = Vec::new();
        t.snapshot(&mut snap);
        assert_eq!(snap[0].1, long);
        assert_eq!(snap[0].2, 100);
        t.count(b"other", 100 + WINDOW_SECS);
        snap.clear();
        t.snapshot(&mut snap);
        let c = snap.iter().find(|e| e.1 == long).unwrap().2;
        assert_eq!(c, 50);
        assert_eq!(printable(b"a b%\x01"), "a%20b%25%01");
    }
}
