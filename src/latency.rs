//! Server-side latency per command family (`stats latency`, a gannet
//! extension).
//!
//! What is measured: for each request, the time from the read that
//! completed it to the write of the batch holding its reply. A worker
//! takes one clock reading right after a read (or before re-running a
//! connection from its ready list) and one after the batch's write, and
//! records that one duration for every request of the batch. The request
//! path itself only bumps a per-family pending count, so the clock cost is
//! two `Instant::now()` calls per batch, not per request.
//!
//! Each worker owns its histograms (one writer: relaxed load and store,
//! no locked instruction); `stats latency` sums every thread's buckets.
//! The histograms are log-linear (16 linear sub-buckets per power of two,
//! about 6% relative precision) over nanoseconds, fixed size, never
//! allocated after start.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Command families, in `stats latency` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    Get = 0,
    Set = 1,
    Delete = 2,
    Arith = 3,
    Touch = 4,
    Meta = 5,
    Other = 6,
}

/// Number of families.
pub const FAMILIES: usize = 7;
/// Names as `stats latency` prints them.
pub const FAMILY_NAMES: [&str; FAMILIES] =
    ["get", "set", "delete", "arith", "touch", "meta", "other"];

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered: up to 2^40 ns (about 18 minutes); longer
/// durations land in the last bucket (the max is kept exactly).
const MAX_EXP: u32 = 40;
/// Bucket count: the first `SUB` values are exact, then `SUB` per power.
pub const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS) as usize * SUB;

/// Tracking on (default) or off (`stats latency off`), process-wide.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switch latency tracking on or off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether latency tracking is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Bucket of a duration in nanoseconds.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= SUB_BITS
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// Largest duration (ns) that falls in bucket `b`.
pub fn bucket_high(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let exp = (b - SUB) / SUB + SUB_BITS as usize;
    let sub = ((b - SUB) % SUB) as u64;
    let low = (1u64 << exp) + (sub << (exp - SUB_BITS as usize));
    low + (1u64 << (exp - SUB_BITS as usize)) - 1
}

/// One writer's histogram.
#[derive(Debug)]
pub struct Hist {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

#[inline]
fn bump(a: &AtomicU64, n: u64) {
    // Single writer: plain load and store, no locked instruction.
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Hist {
    /// Record `n` requests that each took `ns` nanoseconds.
    #[inline]
    pub fn record_n(&self, ns: u64, n: u64) {
        bump(&self.buckets[bucket_of(ns)], n);
        bump(&self.count, n);
        if ns > self.max.load(Ordering::Relaxed) {
            self.max.store(ns, Ordering::Relaxed);
        }
    }

    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

/// Sums of several threads' histograms for one family.
#[derive(Debug, Clone)]
pub struct Summary {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

impl Summary {
    pub fn new() -> Self {
        Summary {
            buckets: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }

    pub fn add(&mut self, h: &Hist) {
        for (d, b) in self.buckets.iter_mut().zip(h.buckets.iter()) {
            *d += b.load(Ordering::Relaxed);
        }
        self.count += h.count.load(Ordering::Relaxed);
        self.max = self.max.max(h.max.load(Ordering::Relaxed));
    }

    /// The `q` quantile (0..=1) in nanoseconds: the upper bound of the
    /// bucket holding it, capped by the exact max.
    pub fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

/// One worker's latency state: a pending count per family for the batch
/// being run (and a bit per family that has any), and a histogram per
/// family.
#[derive(Debug, Default)]
pub struct Latency {
    pending: [AtomicU32; FAMILIES],
    /// Bit `f` set: `pending[f]` may be non-zero.
    touched: AtomicU32,
    pub hists: [Hist; FAMILIES],
}

impl Latency {
    /// A request of `f` was run in the current batch.
    #[inline]
    pub fn note(&self, f: Family) {
        // One writer: loads and stores, no locked instruction.
        let p = &self.pending[f as usize];
        p.store(p.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        let t = self.touched.load(Ordering::Relaxed);
        self.touched.store(t | 1 << f as u32, Ordering::Relaxed);
    }

    /// The batch's replies are written: record `ns` for each pending
    /// request and clear the pending counts. Visits only the families
    /// the batch had (usually one).
    #[inline]
    pub fn finish_ns(&self, ns: u64) {
        let mut m = self.touched.load(Ordering::Relaxed);
        if m == 0 {
            return;
        }
        self.touched.store(0, Ordering::Relaxed);
        while m != 0 {
            let f = m.trailing_zeros() as usize;
            m &= m - 1;
            if let (Some(p), Some(h)) = (self.pending.get(f), self.hists.get(f)) {
                let n = p.load(Ordering::Relaxed);
                if n != 0 {
                    p.store(0, Ordering::Relaxed);
                    h.record_n(ns, u64::from(n));
                }
            }
        }
    }

    pub fn reset(&self) {
        for h in &self.hists {
            h.reset();
        }
    }
}

/// The monotonic clock in nanoseconds. (`clock_gettime` straight into
/// integer nanoseconds: `Instant::elapsed` and its `Duration` checks cost
/// more than the clock read itself, twice per batch.)
#[inline]
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC exists
    // on every supported system, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Taken by a worker right after a read (or before re-running a ready
/// connection): `None` when tracking is off, so no clock is read.
#[inline]
pub fn start() -> Option<u64> {
    if enabled() {
        Some(now_ns())
    } else {
        None
    }
}

/// Called by a worker after writing a batch's replies.
#[inline]
pub fn finish(l: &Latency, t0: Option<u64>) {
    if let Some(t0) = t0 {
        l.finish_ns(now_ns().saturating_sub(t0));
    }
}

/// The family of a text command.
#[inline]
pub fn family_of_text(cmd: &crate::protocol::text::Command) -> Family {
    use crate::protocol::text::Command as C;
    match cmd {
        C::Get { touch: None, .. } => Family::Get,
        C::Get { touch: Some(_), .. } => Family::Touch,
        C::Store { .. } => Family::Set,
        C::Delete { .. } => Family::Delete,
        C::Arith { .. } => Family::Arith,
        C::Touch { .. } => Family::Touch,
        C::Meta { .. } => Family::Meta,
        _ => Family::Other,
    }
}

/// Hook for a front end that knows the family: count one request.
#[inline]
pub fn note(stats: &crate::stats::ThreadStats, f: Family) {
    if enabled() {
        stats.latency.note(f);
    }
}

/// Hook for the text front end: count one parsed command.
#[inline]
pub fn note_text(stats: &crate::stats::ThreadStats, cmd: &crate::protocol::text::Command) {
    if enabled() {
        stats.latency.note(family_of_text(cmd));
    }
}

/// Hook for the binary front end: count one request by opcode.
#[inline]
pub fn note_binary(stats: &crate::stats::ThreadStats, opcode: u8) {
    if !enabled() {
        return;
    }
    let f = match opcode {
        0x00 | 0x09 | 0x0c | 0x0d => Family::Get,
        0x01..=0x03 | 0x11..=0x13 | 0x0e | 0x0f | 0x19 | 0x1a => Family::Set,
        0x04 | 0x14 => Family::Delete,
        0x05 | 0x06 | 0x15 | 0x16 => Family::Arith,
        0x1c | 0x1d | 0x1e | 0x23 | 0x24 => Family::Touch,
        _ => Family::Other,
    };
    stats.latency.note(f);
}

/// Per-family summaries over every thread.
pub fn summarize(threads: &[&crate::stats::ThreadStats]) -> Vec<Summary> {
    (0..FAMILIES)
        .map(|f| {
            let mut s = Summary::new();
            for t in threads {
                s.add(&t.latency.hists[f]);
            }
            s
        })
        .collect()
}

/// Quantiles `stats latency` reports, with their field suffixes.
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999)];

/// Microseconds with three decimals (the value is in nanoseconds).
pub fn fmt_us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// `stats latency` lines: `<family>:count`, `<family>:p50_us` ...,
/// `<family>:max_us`, for every family, then `latency_tracking`.
pub fn write_stats(out: &mut Vec<u8>, threads: &[&crate::stats::ThreadStats]) {
    use crate::stats::push_stat;
    for (name, s) in FAMILY_NAMES.iter().zip(summarize(threads)) {
        push_stat(out, &format!("{name}:count"), s.count);
        for (q, v) in QUANTILES {
            push_stat(out, &format!("{name}:{q}_us"), fmt_us(s.quantile(v)));
        }
        push_stat(out, &format!("{name}:max_us"), fmt_us(s.max));
    }
    push_stat(
        out,
        "latency_tracking",
        if enabled() { "on" } else { "off" },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            12345,
            1 << 30,
            1 << 39,
        ] {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let hi = bucket_high(b);
            assert!(hi >= ns, "{ns} -> {hi}");
            // about 6% relative precision
            assert!(hi - ns <= ns / 16 + 1, "{ns} -> {hi}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for b in 1..BUCKETS {
            assert!(bucket_high(b) > bucket_high(b - 1));
            assert_eq!(bucket_of(bucket_high(b)), b);
        }
    }

    #[test]
    fn start_and_finish_time_a_batch() {
        let l = Latency::default();
        let t0 = start();
        assert!(t0.is_some(), "tracking is on by default");
        l.note(Family::Delete);
        l.note(Family::Delete);
        std::thread::sleep(std::time::Duration::from_millis(2));
        finish(&l, t0);
        let mut s = Summary::new();
        s.add(&l.hists[Family::Delete as usize]);
        assert_eq!(s.count, 2);
        assert!((2_000_000..1_000_000_000).contains(&s.max), "{}", s.max);
        // Nothing pending any more: a second finish records nothing.
        finish(&l, start());
        let mut s = Summary::new();
        s.add(&l.hists[Family::Delete as usize]);
        assert_eq!(s.count, 2);
    }

    #[test]
    fn quantiles_from_batches() {
        let l = Latency::default();
        for _ in 0..90 {
            l.note(Family::Get);
            l.finish_ns(1_000);
        }
        for _ in 0..10 {
            l.note(Family::Get);
            l.note(Family::Set);
            l.finish_ns(100_000);
        }
        let t = crate::stats::ThreadStats::default();
        let _ = &t;
        let mut s = Summary::new();
        s.add(&l.hists[Family::Get as usize]);
        assert_eq!(s.count, 100);
        let p50 = s.quantile(0.5);
        assert!((1_000..=1_063).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99);
        assert!((100_000..=106_250).contains(&p99), "{p99}");
        assert_eq!(s.max, 100_000);
        let mut set = Summary::new();
        set.add(&l.hists[Family::Set as usize]);
        assert_eq!(set.count, 10);
        l.reset();
        let mut z = Summary::new();
        z.add(&l.hists[0]);
        assert_eq!((z.count, z.quantile(0.5)), (0, 0));
    }
}
