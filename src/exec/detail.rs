//! Per-prefix counters (`stats detail on|off|dump`, `-D <delimiter>`).
//!
//! memcached keeps these in one global table behind one lock, and so does
//! gannet: the table is touched only while detail is switched on (an
//! operator's debugging aid), so the request path pays one relaxed load
//! of a flag when it is off.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What happened to a key, for its prefix's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get { hit: bool },
    Set,
    Delete,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    get: u64,
    hit: u64,
    set: u64,
    del: u64,
    /// Order of first use (memcached lists newer prefixes of a hash
    /// bucket first).
    seq: u64,
}

/// The prefix table.
#[derive(Debug, Default)]
pub struct Detail {
    enabled: AtomicBool,
    table: Mutex<BTreeMap<Vec<u8>, Counts>>,
}

impl Detail {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Count `op` for `key`'s prefix (the bytes before the first
    /// `delimiter`); keys without the delimiter are not counted, as in
    /// memcached.
    pub fn record(&self, key: &[u8], delimiter: u8, op: Op) {
        if !self.enabled() {
            return;
        }
        let Some(end) = key.iter().position(|&b| b == delimiter) else {
            return;
        };
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let seq = table.len() as u64;
        let c = table.entry(key[..end].to_vec()).or_insert(Counts {
            seq,
            ..Counts::default()
        });
        match op {
            Op::Get { hit } => {
                c.get += 1;
                c.hit += hit as u64;
            }
            Op::Set => c.set += 1,
            Op::Delete => c.del += 1,
        }
    }

    /// memcached's dump: one `PREFIX` line per prefix, then `END`, in
    /// memcached's order: by hash bucket (MurmurHash3 of the prefix, 256
    /// buckets), newest first within a bucket.
    pub fn dump(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(&Vec<u8>, &Counts)> = table.iter().collect();
        rows.sort_by_key(|(p, c)| (murmur3_32(p) % 256, std::cmp::Reverse(c.seq)));
        for (prefix, c) in rows {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(prefix);
            let _ = write!(
                out,
                " get {} hit {} set {} del {}\r\n",
                c.get, c.hit, c.set, c.del
            );
        }
        out.extend_from_slice(b"END\r\n");
    }

    pub fn clear(&self) {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// MurmurHash3 (x86, 32-bit, seed 0): memcached 1.6's default hash,
/// which places prefixes in its table.
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h: u32 = 0;
    let mut blocks = data.chunks_exact(4);
    for b in blocks.by_ref() {
        h ^= mix(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= (b as u32) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_when_enabled_and_prefixed() {
        let d = Detail::default();
        d.record(b"a:1", b':', Op::Set);
        d.set_enabled(true);
        d.record(b"a:1", b':', Op::Set);
        d.record(b"a:2", b':', Op::Get { hit: true });
        d.record(b"a:3", b':', Op::Get { hit: false });
        d.record(b"b:1", b':', Op::Delete);
        d.record(b"nodelim", b':', Op::Set);
        let mut out = Vec::new();
        d.dump(&mut out);
        assert_eq!(
            out,
            b"PREFIX b get 0 hit 0 set 0 del 1\r\nPREFIX a get 2 hit 1 set 1 del 0\r\nEND\r\n"
        );
        // memcached's buckets: murmur3 % 256 of a, b, user, foo, bar.
        let b: Vec<u32> = ["a", "b", "user", "foo", "bar"]
            .iter()
            .map(|p| murmur3_32(p.as_bytes()) % 256)
            .collect();
        assert_eq!(b, [178, 3, 13, 32, 141]);
        d.clear();
        out.clear();
        d.dump(&mut out);
        assert_eq!(out, b"END\r\n");
    }
}
