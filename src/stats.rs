//! Counters and their `STAT` rendering.
//!
//! Every worker thread owns a `ThreadStats` and is its only writer, so a
//! counter bump is a relaxed load and store of a cache line no other
//! thread writes: no lock and no locked instruction on the request path.
//! `stats` sums all threads' counters when asked (readers may see a value
//! a few increments old, which is what memcached's per-thread stats give
//! too). Connection counts are shared by all threads and use atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::store::StoreStats;

/// Slab classes tracked per thread (memcached's MAX_NUMBER_OF_SLAB_CLASSES).
pub const MAX_CLASSES: usize = 64;

/// A counter with one writer thread.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: a plain load and store is enough and avoids a
        // locked read-modify-write.
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

macro_rules! counters {
    ($name:ident { $($field:ident),* $(,)? }) => {
        /// Plain per-thread counters (memcached's thread stats names).
        #[derive(Default, Debug)]
        pub struct $name { $(pub $field: Counter,)* }

        impl $name {
            /// Add every counter of `self` into `into`.
            pub fn sum_into(&self, into: &mut [u64]) {
                let vals = [$(self.$field.get(),)*];
                for (d, v) in into.iter_mut().zip(vals) {
                    *d += v;
                }
            }
            pub fn reset(&self) {
                $(self.$field.reset();)*
            }
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field),)*];
        }
    };
}

counters!(Ops {
    get_cmds,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    touch_cmds,
    touch_hits,
    touch_misses,
    set_cmds,
    flush_cmds,
    meta_cmds,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    conn_yields,
    read_buf_oom,
});

counters!(ClassOps {
    get_hits,
    set_cmds,
    delete_hits,
    incr_hits,
    decr_hits,
    cas_hits,
    cas_badval,
    touch_hits,
});

/// One worker thread's counters.
#[derive(Debug)]
pub struct ThreadStats {
    pub ops: Ops,
    /// Per slab class (index = class id).
    pub classes: [ClassOps; MAX_CLASSES],
    /// Server-side latency per command family (`stats latency`).
    pub latency: crate::latency::Latency,
    /// Sampled hot-key table (`stats hotkeys`, `-o hotkeys=N`).
    pub hot: crate::hotkeys::Table,
    /// This thread's read buffers (gauges, not reset).
    pub read_bufs: ReadBufs,
}

/// A worker's read buffers, memcached's `read_buf_*` gauges: its scratch
/// buffer plus the connections' own input buffers. A buffer is free
/// while it holds no unprocessed input. Only the owning worker writes.
#[derive(Debug, Default)]
pub struct ReadBufs {
    pub count: AtomicU64,
    pub bytes: AtomicU64,
    pub free: AtomicU64,
}

impl ReadBufs {
    /// A buffer went from `before` to `after`, each `(capacity, empty)`
    /// (capacity 0: no buffer).
    pub fn change(&self, before: (usize, bool), after: (usize, bool)) {
        if before == after {
            return;
        }
        let add = |a: &AtomicU64, old: usize, new: usize| {
            a.fetch_add((new as u64).wrapping_sub(old as u64), Ordering::Relaxed);
        };
        let free = |(cap, empty): (usize, bool)| if empty { cap } else { 0 };
        add(
            &self.count,
            usize::from(before.0 > 0),
            usize::from(after.0 > 0),
        );
        add(&self.bytes, before.0, after.0);
        add(&self.free, free(before), free(after));
    }

    /// `(count, bytes, free)`.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.free.load(Ordering::Relaxed),
        )
    }
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            ops: Ops::default(),
            classes: std::array::from_fn(|_| ClassOps::default()),
            latency: crate::latency::Latency::default(),
            hot: crate::hotkeys::Table::default(),
            read_bufs: ReadBufs::default(),
        }
    }
}

impl ThreadStats {
    #[inline]
    pub fn class(&self, id: u8) -> &ClassOps {
        &self.classes[(id as usize) % MAX_CLASSES]
    }
    pub fn reset(&self) {
        self.ops.reset();
        for c in &self.classes {
            c.reset();
        }
        self.latency.reset();
        self.hot.reset();
    }
}

/// Connection-level counters shared by every thread.
///
/// `curr_conns` counts client connections only (the `-c` limit applies
/// to it). memcached also gives each listening socket a connection of its
/// own (each TCP address, the unix socket, and each worker's copy of each
/// UDP address), counts those in `total_connections` and
/// `connection_structures`, and shows `curr_connections` less one for
/// the first listener; `listen_conns` is that number, so the lines read
/// the same as memcached's with the same flags.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub curr_conns: AtomicUsize,
    /// memcached's listening connections for these settings (above).
    pub listen_conns: AtomicU64,
    pub total_conns: AtomicU64,
    pub rejected_conns: AtomicU64,
    /// The most client connections open at once. memcached keeps one
    /// connection structure per descriptor number and reuses it, and the
    /// kernel hands out the lowest free number, so its
    /// `connection_structures` is this peak plus its listeners.
    pub peak_conns: AtomicUsize,
    pub listen_disabled_num: AtomicU64,
    pub accepting: AtomicBool,
    /// When accepting last stopped (microseconds since the epoch).
    pub disabled_since_us: AtomicU64,
    /// Finished stretches of not accepting (`time_in_listen_disabled_us`).
    pub time_in_listen_disabled_us: AtomicU64,
}

impl ConnStats {
    /// The listeners are bound: memcached's count of `n` listening
    /// connections starts `total_connections` (and a `stats reset` zeroes
    /// it afterwards, as there).
    pub fn listeners_bound(&self, n: u64) {
        self.listen_conns.store(n, Ordering::Relaxed);
        self.total_conns.fetch_add(n, Ordering::Relaxed);
    }

    /// `curr_connections` as memcached shows it: open connections,
    /// listeners included, less one.
    pub fn shown_curr(&self) -> u64 {
        (self.curr_conns.load(Ordering::Relaxed) as u64 + self.listen_conns.load(Ordering::Relaxed))
            .saturating_sub(1)
    }

    /// `connection_structures`: the peak of client connections, and the
    /// listeners'.
    pub fn shown_structures(&self) -> u64 {
        self.peak_conns.load(Ordering::Relaxed) as u64 + self.listen_conns.load(Ordering::Relaxed)
    }

    /// New connections stop being taken (the `-c` limit reached with
    /// `no_maxconns_fast`): the first thread to notice counts
    /// `listen_disabled_num` and starts the clock, as memcached does when
    /// it turns its listeners off.
    pub fn stop_accepting(&self) {
        if self.accepting.swap(false, Ordering::AcqRel) {
            self.listen_disabled_num.fetch_add(1, Ordering::Relaxed);
            self.disabled_since_us.store(now_us(), Ordering::Relaxed);
        }
    }

    /// Connections are taken again: the stretch since `stop_accepting`
    /// adds to `time_in_listen_disabled_us`. One load when nothing
    /// changed.
    pub fn resume_accepting(&self) {
        if !self.accepting.load(Ordering::Relaxed) && !self.accepting.swap(true, Ordering::AcqRel) {
            let since = self.disabled_since_us.load(Ordering::Relaxed);
            self.time_in_listen_disabled_us
                .fetch_add(now_us().saturating_sub(since), Ordering::Relaxed);
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The sums of every thread's `Ops`, by field index.
#[derive(Debug, Clone)]
pub struct OpsTotals(pub Vec<u64>);

impl OpsTotals {
    pub fn sum(threads: &[&ThreadStats]) -> Self {
        let mut v = vec![0; Ops::NAMES.len()];
        for t in threads {
            t.ops.sum_into(&mut v);
        }
        OpsTotals(v)
    }

    pub fn get(&self, name: &str) -> u64 {
        Ops::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.0[i])
            .unwrap_or(0)
    }
}

/// Per-class sums of every thread's `ClassOps`.
pub fn class_totals(threads: &[&ThreadStats]) -> Vec<Vec<u64>> {
    (0..MAX_CLASSES)
        .map(|c| {
            let mut v = vec![0; ClassOps::NAMES.len()];
            for t in threads {
                t.classes[c].sum_into(&mut v);
            }
            v
        })
        .collect()
}

/// Process CPU time as memcached prints it: `seconds.microseconds`.
pub fn rusage() -> (String, String) {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF
    // is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let fmt = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (fmt(ru.ru_utime), fmt(ru.ru_stime))
}

/// Everything the general `stats` group needs, gathered by `exec`.
pub struct GeneralStats<'a> {
    pub pid: u32,
    pub uptime: u64,
    pub time: i64,
    pub version: &'a str,
    pub max_connections: usize,
    pub threads: usize,
    pub reserved_fds: u64,
    pub ops: &'a OpsTotals,
    pub conns: &'a ConnStats,
    pub store: &'a StoreStats,
    pub log_watchers: u64,
    /// Watch lines delivered / dropped because a watcher was slow.
    pub log_watcher_sent: u64,
    pub log_watcher_skipped: u64,
    /// `lru_crawler_running`, `lru_crawler_starts`.
    pub crawler_running: bool,
    pub crawler_starts: u64,
    /// Every thread's read buffers: `(count, bytes, free bytes)`.
    pub read_bufs: (u64, u64, u64),
    /// With `-Z`: the `ssl_*` counters.
    pub tls: Option<TlsStats>,
    /// Which optional groups memcached shows: `rejected_connections` with
    /// `maxconns_fast`, the `slab_reassign_*` lines and `slabs_moved` with
    /// `slab_reassign`, the crawler's two while it is enabled (it can be
    /// switched at run time), and the maintainer's counters with the LRU
    /// maintainer.
    pub shown: Shown,
}

/// The settings that decide which optional `stats` lines exist.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub maxconns_fast: bool,
    pub slab_reassign: bool,
    pub lru_crawler: bool,
    pub lru_maintainer: bool,
}

/// The TLS lines of `stats` (only with `-Z`, as in memcached).
#[derive(Debug, Clone, Copy)]
pub struct TlsStats {
    /// `ssl_new_sessions`, only with `ssl_session_cache`.
    pub new_sessions: Option<u64>,
    pub handshake_errors: u64,
    pub secs_since_cert_refresh: u32,
}

/// Append one `STAT <name> <value>\r\n` line.
pub fn push_stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "STAT {} {}\r\n", name, value);
}

/// The general `stats` group, in memcached 1.6's order and names.
pub fn write_general(out: &mut Vec<u8>, s: &GeneralStats) {
    let o = |n: &str| s.ops.get(n);
    let (ru_user, ru_sys) = rusage();
    let c = s.conns;
    let st = s.store;
    push_stat(out, "pid", s.pid);
    push_stat(out, "uptime", s.uptime);
    push_stat(out, "time", s.time);
    push_stat(out, "version", s.version);
    push_stat(out, "libevent", "mio");
    push_stat(out, "pointer_size", 8 * std::mem::size_of::<usize>());
    push_stat(out, "rusage_user", ru_user);
    push_stat(out, "rusage_system", ru_sys);
    push_stat(out, "max_connections", s.max_connections);
    push_stat(out, "curr_connections", c.shown_curr());
    push_stat(
        out,
        "total_connections",
        c.total_conns.load(Ordering::Relaxed),
    );
    if s.shown.maxconns_fast {
        push_stat(
            out,
            "rejected_connections",
            c.rejected_conns.load(Ordering::Relaxed),
        );
    }
    push_stat(out, "connection_structures", c.shown_structures());
    push_stat(out, "response_obj_oom", 0);
    push_stat(out, "response_obj_count", 0);
    push_stat(out, "response_obj_bytes", 0);
    push_stat(out, "read_buf_count", s.read_bufs.0);
    push_stat(out, "read_buf_bytes", s.read_bufs.1);
    push_stat(out, "read_buf_bytes_free", s.read_bufs.2);
    push_stat(out, "read_buf_oom", o("read_buf_oom"));
    push_stat(out, "reserved_fds", s.reserved_fds);
    push_stat(out, "cmd_get", o("get_cmds"));
    push_stat(out, "cmd_set", o("set_cmds"));
    push_stat(out, "cmd_flush", o("flush_cmds"));
    push_stat(out, "cmd_touch", o("touch_cmds"));
    push_stat(out, "cmd_meta", o("meta_cmds"));
    push_stat(out, "get_hits", o("get_hits"));
    push_stat(out, "get_misses", o("get_misses"));
    push_stat(out, "get_expired", o("get_expired"));
    push_stat(out, "get_flushed", o("get_flushed"));
    push_stat(out, "delete_misses", o("delete_misses"));
    push_stat(out, "delete_hits", o("delete_hits"));
    push_stat(out, "incr_misses", o("incr_misses"));
    push_stat(out, "incr_hits", o("incr_hits"));
    push_stat(out, "decr_misses", o("decr_misses"));
    push_stat(out, "decr_hits", o("decr_hits"));
    push_stat(out, "cas_misses", o("cas_misses"));
    push_stat(out, "cas_hits", o("cas_hits"));
    push_stat(out, "cas_badval", o("cas_badval"));
    push_stat(out, "touch_hits", o("touch_hits"));
    push_stat(out, "touch_misses", o("touch_misses"));
    push_stat(out, "store_too_large", o("store_too_large"));
    push_stat(out, "store_no_memory", o("store_no_memory"));
    push_stat(out, "auth_cmds", o("auth_cmds"));
    push_stat(out, "auth_errors", o("auth_errors"));
    push_stat(out, "bytes_read", o("bytes_read"));
    push_stat(out, "bytes_written", o("bytes_written"));
    push_stat(out, "limit_maxbytes", st.limit_maxbytes);
    push_stat(
        out,
        "accepting_conns",
        c.accepting.load(Ordering::Relaxed) as u8,
    );
    push_stat(
        out,
        "listen_disabled_num",
        c.listen_disabled_num.load(Ordering::Relaxed),
    );
    push_stat(
        out,
        "time_in_listen_disabled_us",
        c.time_in_listen_disabled_us.load(Ordering::Relaxed),
    );
    push_stat(out, "threads", s.threads);
    push_stat(out, "conn_yields", o("conn_yields"));
    push_stat(out, "hash_power_level", st.hash_power_level);
    push_stat(out, "hash_bytes", st.hash_bytes);
    push_stat(out, "hash_is_expanding", st.hash_is_expanding as u8);
    if s.shown.slab_reassign {
        push_stat(out, "slab_reassign_rescues", st.slab_reassign_rescues);
        push_stat(
            out,
            "slab_reassign_chunk_rescues",
            st.slab_reassign_chunk_rescues,
        );
        push_stat(
            out,
            "slab_reassign_evictions_nomem",
            st.slab_reassign_evictions_nomem,
        );
        push_stat(out, "slab_reassign_inline_reclaim", 0);
        push_stat(out, "slab_reassign_busy_items", st.slab_reassign_busy_items);
        push_stat(out, "slab_reassign_busy_deletes", 0);
        push_stat(out, "slab_reassign_running", st.slab_reassign_running as u8);
        push_stat(out, "slabs_moved", st.slabs_moved);
    }
    if s.shown.lru_crawler {
        push_stat(out, "lru_crawler_running", s.crawler_running as u8);
        push_stat(out, "lru_crawler_starts", s.crawler_starts);
    }
    if s.shown.lru_maintainer {
        push_stat(out, "lru_maintainer_juggles", st.lru_maintainer_juggles);
    }
    push_stat(out, "malloc_fails", st.malloc_fails);
    push_stat(out, "log_worker_dropped", 0);
    push_stat(out, "log_worker_written", s.log_watcher_sent);
    push_stat(out, "log_watcher_skipped", s.log_watcher_skipped);
    push_stat(out, "log_watcher_sent", s.log_watcher_sent);
    push_stat(out, "log_watchers", s.log_watchers);
    if let Some(t) = s.tls {
        if let Some(n) = t.new_sessions {
            push_stat(out, "ssl_new_sessions", n);
        }
        push_stat(out, "ssl_handshake_errors", t.handshake_errors);
        push_stat(
            out,
            "time_since_server_cert_refresh",
            t.secs_since_cert_refresh,
        );
    }
    push_stat(out, "unexpected_napi_ids", 0);
    push_stat(out, "round_robin_fallback", 0);
    push_stat(out, "bytes", st.bytes);
    push_stat(out, "curr_items", st.curr_items);
    push_stat(out, "total_items", st.total_items);
    push_stat(out, "slab_global_page_pool", st.slab_global_page_pool);
    push_stat(out, "expired_unfetched", st.expired_unfetched);
    push_stat(out, "evicted_unfetched", st.evicted_unfetched);
    if s.shown.lru_maintainer {
        push_stat(out, "evicted_active", st.evicted_active);
    }
    push_stat(out, "evictions", st.evictions);
    push_stat(out, "reclaimed", st.reclaimed);
    push_stat(out, "crawler_reclaimed", st.crawler_reclaimed);
    push_stat(out, "crawler_items_checked", st.crawler_items_checked);
    push_stat(out, "lrutail_reflocked", 0);
    if s.shown.lru_maintainer {
        push_stat(out, "moves_to_cold", st.moves_to_cold);
        push_stat(out, "moves_to_warm", st.moves_to_warm);
        push_stat(out, "moves_within_lru", st.moves_within_lru);
        push_stat(out, "direct_reclaims", st.direct_reclaims);
        push_stat(out, "lru_bumps_dropped", st.lru_bumps_dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_across_threads() {
        let a = ThreadStats::default();
        let b = ThreadStats::default();
        a.ops.get_hits.incr();
        b.ops.get_hits.add(2);
        b.ops.bytes_read.add(10);
        let t = OpsTotals::sum(&[&a, &b]);
        assert_eq!(t.get("get_hits"), 3);
        assert_eq!(t.get("bytes_read"), 10);
        assert_eq!(t.get("get_misses"), 0);
        a.reset();
        assert_eq!(OpsTotals::sum(&[&a]).get("get_hits"), 0);
    }

    #[test]
    fn class_counters_are_separate() {
        let a = ThreadStats::default();
        a.class(3).get_hits.incr();
        let t = class_totals(&[&a]);
        assert_eq!(t[3][0], 1);
        assert_eq!(t[2][0], 0);
    }

    /// The general group as text, with the optional groups `shown`.
    fn general_text(shown: Shown) -> String {
        let ops = OpsTotals::sum(&[]);
        let conns = ConnStats::default();
        let store = StoreStats::default();
        let mut out = Vec::new();
        write_general(
            &mut out,
            &GeneralStats {
                pid: 1,
                uptime: 2,
                time: 3,
                version: "1.6.18",
                max_connections: 1024,
                threads: 4,
                reserved_fds: 20,
                ops: &ops,
                conns: &conns,
                store: &store,
                log_watchers: 0,
                tls: None,
                log_watcher_sent: 0,
                log_watcher_skipped: 0,
                crawler_running: false,
                crawler_starts: 0,
                read_bufs: (4, 4 << 16, 4 << 16),
                shown,
            },
        );
        String::from_utf8(out).unwrap()
    }

    /// The general group's stat names with the optional groups `shown`.
    fn general_names(shown: Shown) -> Vec<String> {
        general_text(shown)
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect()
    }

    /// memcached leaves out `rejected_connections` without maxconns_fast,
    /// the `slab_reassign_*` lines and `slabs_moved` without
    /// slab_reassign, the crawler's two while it is disabled, and the LRU
    /// maintainer's counters without the maintainer (memcached.c
    /// server_stats, items.c do_item_stats_totals).
    #[test]
    fn optional_general_stats_follow_the_settings() {
        let all = Shown {
            maxconns_fast: true,
            slab_reassign: true,
            lru_crawler: true,
            lru_maintainer: true,
        };
        let optional = [
            "rejected_connections",
            "slab_reassign_rescues",
            "slab_reassign_busy_deletes",
            "slabs_moved",
            "lru_crawler_running",
            "lru_crawler_starts",
            "lru_maintainer_juggles",
            "evicted_active",
            "moves_to_cold",
            "direct_reclaims",
            "lru_bumps_dropped",
        ];
        let with = general_names(all);
        let without = general_names(Shown {
            maxconns_fast: false,
            slab_reassign: false,
            lru_crawler: false,
            lru_maintainer: false,
        });
        for name in optional {
            assert!(with.iter().any(|n| n == name), "{name} missing");
            assert!(!without.iter().any(|n| n == name), "{name} shown");
        }
        assert_eq!(with.len() - without.len(), 18);
        assert_eq!(
            without.last().map(String::as_str),
            Some("lrutail_reflocked")
        );
    }

    #[test]
    fn general_group_has_memcached_shape() {
        let text = general_text(Shown {
            maxconns_fast: true,
            slab_reassign: true,
            lru_crawler: true,
            lru_maintainer: true,
        });
        let names: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(names[0], "pid");
        assert!(names.contains(&"rusage_user"));
        assert_eq!(*names.last().unwrap(), "lru_bumps_dropped");
        let ru = text.lines().find(|l| l.contains("rusage_user")).unwrap();
        let v = ru.split(' ').nth(2).unwrap();
        let (sec, usec) = v.split_once('.').unwrap();
        assert!(sec.parse::<u64>().is_ok());
        assert_eq!(usec.len(), 6);
    }
}

/// What `stats conns` shows of one socket.
#[derive(Debug)]
pub struct ConnEntry {
    /// `tcp:ip:port` / `unix:path` of the peer (or of the listener itself).
    pub addr: String,
    /// For a client: the listener it came through.
    pub listen_addr: Option<String>,
    /// Relative time of the last request (written by the owning worker).
    pub last_cmd: std::sync::atomic::AtomicU32,
    /// What a client connection is doing, as memcached names its states
    /// (`ConnState`; written by the owning worker after each turn).
    pub state: std::sync::atomic::AtomicU8,
}

/// The state `stats conns` shows for a client connection that is not the
/// one asking (that one is always `conn_parse_cmd`), by memcached's names
/// for where its state machine stops between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Nothing read yet.
    NewCmd = 0,
    /// Waiting for a request, or for the rest of a command line (or of a
    /// binary header, extras and key).
    Read,
    /// Reading a data block whose command is known.
    NRead,
    /// Discarding a refused data block.
    Swallow,
    /// Replies are waiting for the socket to take them.
    MWrite,
    /// A `watch` stream.
    Watch,
}

impl ConnState {
    fn name(state: u8) -> &'static str {
        match state {
            0 => "conn_new_cmd",
            1 => "conn_read",
            2 => "conn_nread",
            3 => "conn_swallow",
            4 => "conn_mwrite",
            _ => "conn_watch",
        }
    }
}

/// Every open socket, by file descriptor, for `stats conns`.
///
/// Workers add and remove entries on accept and close only (a lock there
/// is cheap next to the syscalls); the request path only stores the last
/// command time into the connection's own entry.
#[derive(Debug, Default)]
pub struct ConnTable {
    map: std::sync::Mutex<std::collections::BTreeMap<i32, std::sync::Arc<ConnEntry>>>,
}

impl ConnTable {
    pub fn insert(&self, fd: i32, entry: std::sync::Arc<ConnEntry>) {
        self.lock().insert(fd, entry);
    }

    pub fn remove(&self, fd: i32) {
        self.lock().remove(&fd);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i32, std::sync::Arc<ConnEntry>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// memcached's `stats conns` lines: for each fd `addr`, `listen_addr`
    /// (clients), `state`, `secs_since_last_cmd`. The asking connection
    /// (`me`) is the one parsing a command; the others show the state
    /// their worker last left them in (`ConnState`).
    pub fn write(&self, out: &mut Vec<u8>, me: i32, now: u32) {
        for (fd, e) in self.lock().iter() {
            push_stat(out, &format!("{fd}:addr"), &e.addr);
            if let Some(l) = &e.listen_addr {
                push_stat(out, &format!("{fd}:listen_addr"), l);
            }
            let state = match (&e.listen_addr, *fd == me) {
                (None, _) => "conn_listening",
                (Some(_), true) => "conn_parse_cmd",
                (Some(_), false) => ConnState::name(e.state.load(Ordering::Relaxed)),
            };
            push_stat(out, &format!("{fd}:state"), state);
            let last = e.last_cmd.load(Ordering::Relaxed);
            push_stat(
                out,
                &format!("{fd}:secs_since_last_cmd"),
                now.saturating_sub(last),
            );
        }
    }
}

/// memcached's form of a socket address: `tcp:1.2.3.4:5` / `tcp:[::1]:5`.
pub fn tcp_addr(a: std::net::SocketAddr) -> String {
    format!("tcp:{a}")
}

thread_local! {
    /// The descriptor of the connection this worker thread is serving
    /// right now (so `stats conns` can tell which entry is asking).
    static CURRENT_FD: std::cell::Cell<i32> = const { std::cell::Cell::new(-1) };
}

/// Set by a worker before it runs a connection's requests.
pub fn set_current_fd(fd: i32) {
    CURRENT_FD.with(|c| c.set(fd));
}

/// The connection the current worker thread is serving (-1 when none).
pub fn current_fd() -> i32 {
    CURRENT_FD.with(|c| c.get())
}
