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
        let c = table.entry(key[..end].to_vec()).or_default();
        match op {
            Op::Get { hit } => {
                c.get += 1;
                c.hit += hit as u64;
            }
            Op::Set => c.set += 1,
            Op::Delete => c.del += 1,
        }
    }

    /// memcached's dump: one `PREFIX` line per prefix, then `END`.
    pub fn dump(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for (prefix, c) in table.iter() {
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
            b"PREFIX a get 2 hit 1 set 1 del 0\r\nPREFIX b get 0 hit 0 set 0 del 1\r\nEND\r\n"
        );
        d.clear();
        out.clear();
        d.dump(&mut out);
        assert_eq!(out, b"END\r\n");
    }
}
