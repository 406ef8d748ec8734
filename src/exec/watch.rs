//! `watch`: memcached's live log stream.
//!
//! `watch [fetchers] [mutations] [evictions] [connevents] [deletions]
//! [sysevents] ...`
//! answers `OK` and turns the connection into a watcher: from then on it
//! receives one line per event of the kinds it asked for, in memcached's
//! format (`ts=<sec>.<usec> gid=<n> type=item_get key=... status=...`).
//!
//! How events travel: there are `MAX_WATCHERS` watcher slots. A slot in
//! use has one single-producer/single-consumer byte ring per producer
//! thread (worker `i` writes ring `i`; any other thread shares the last
//! ring under a try-lock it never waits on) of `worker_logbuf_size` bytes,
//! as memcached's per-worker log buffer, allocated when the slot is first
//! used. A producer formats its line on the stack and copies it into its
//! ring, or, when the ring is full, counts it as skipped: a slow watcher
//! loses lines and never slows a worker. The watcher's own worker drains
//! its rings from its poll loop (every `DRAIN_MS` at most) into the
//! connection's output, at most `watcher_logbuf_size` bytes at a time
//! (memcached's per-watcher buffer). When nobody watches, an event costs
//! one relaxed load of the combined mask.

use std::cell::{Cell, UnsafeCell};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::clock::RelTime;
use crate::logging::WIRE;
use crate::protocol::text::Tokens;

use super::Ctx;

pub const FETCHERS: u32 = 1 << 0;
pub const MUTATIONS: u32 = 1 << 1;
pub const EVICTIONS: u32 = 1 << 2;
pub const CONNEVENTS: u32 = 1 << 3;
pub const DELETIONS: u32 = 1 << 4;
/// memcached's `sysevents`: gannet emits its `slab_move` and `lru_crawler`
/// lines.
pub const SYSEVENTS: u32 = 1 << 5;
/// Accepted for compatibility; gannet emits no such events.
const SILENT: u32 = 1 << 8;

/// Watchers at once (further `watch` commands get memcached's
/// `WATCHER_TOO_MANY`).
pub const MAX_WATCHERS: usize = 8;
/// Producer rings per watcher: one per worker (up to this many), the last
/// one shared by every other thread.
const MAX_PRODUCERS: usize = 65;
/// Bytes per producer ring by default (memcached's `worker_logbuf_size`,
/// 64 KB; `-o worker_logbuf_size` sets it).
#[cfg(test)]
const RING_BYTES: usize = 64 * 1024;
/// How often a worker with watchers drains them, at most.
pub const DRAIN_MS: u64 = 10;

/// One single-producer single-consumer byte ring.
struct Ring {
    buf: UnsafeCell<Box<[u8]>>,
    /// `buf.len()`, never 0.
    cap: usize,
    /// Total bytes written (producer).
    head: AtomicUsize,
    /// Total bytes read (consumer).
    tail: AtomicUsize,
    /// Lines dropped because the ring was full (producer-owned), reported
    /// to the watcher as `skipped=N` once there is room.
    skipped: AtomicU64,
    /// Guards the shared last ring (try-lock; never waited on).
    busy: AtomicBool,
}

// SAFETY: the producer writes only the free region [head, tail+cap) and
// publishes it with a Release store of `head`; the consumer reads only
// [tail, head) after an Acquire load of `head` and frees it with a
// Release store of `tail`. Each ring has one producer (its worker, or the
// holder of `busy`) and one consumer (the watcher's worker), so the
// regions never overlap.
unsafe impl Sync for Ring {}

impl Ring {
    fn new(cap: usize) -> Ring {
        let cap = cap.max(1);
        Ring {
            buf: UnsafeCell::new(vec![0u8; cap].into_boxed_slice()),
            cap,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            skipped: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    /// Producer: append `line` whole, or return false when it does not fit.
    fn push(&self, line: &[u8]) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if self.cap - (head - tail) < line.len() {
            return false;
        }
        // SAFETY: see `unsafe impl Sync`: this region is the producer's.
        let buf = unsafe { &mut *self.buf.get() };
        for (i, &b) in line.iter().enumerate() {
            buf[(head + i) % self.cap] = b;
        }
        self.head.store(head + line.len(), Ordering::Release);
        true
    }

    /// Consumer: move up to `max` bytes to `out`.
    fn pop(&self, out: &mut Vec<u8>, max: usize) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = (head - tail).min(max);
        // SAFETY: [tail, tail+n) was published by the producer.
        let buf = unsafe { &*self.buf.get() };
        let start = tail % self.cap;
        let first = n.min(self.cap - start);
        out.extend_from_slice(&buf[start..start + first]);
        out.extend_from_slice(&buf[..n - first]);
        self.tail.store(tail + n, Ordering::Release);
        n
    }

    /// Consumer: forget everything written so far (a new watcher).
    fn discard(&self) {
        self.tail
            .store(self.head.load(Ordering::Acquire), Ordering::Release);
    }
}

struct Slot {
    /// Event kinds wanted; 0 = slot free or closing.
    flags: AtomicU32,
    /// Slot taken by a watcher (set before `flags`, cleared after).
    taken: AtomicBool,
    rings: OnceLock<Box<[Ring]>>,
}

/// The process-wide watcher registry (memcached's logger is global too).
struct Hub {
    /// Union of every watcher's flags: the only thing an event reads when
    /// nobody watches.
    mask: AtomicU32,
    gid: AtomicU64,
    slots: [Slot; MAX_WATCHERS],
    watchers: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    /// Next producer index handed to a thread.
    next_producer: AtomicUsize,
}

static HUB: Hub = Hub {
    mask: AtomicU32::new(0),
    gid: AtomicU64::new(0),
    slots: [const {
        Slot {
            flags: AtomicU32::new(0),
            taken: AtomicBool::new(false),
            rings: OnceLock::new(),
        }
    }; MAX_WATCHERS],
    watchers: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    skipped: AtomicU64::new(0),
    next_producer: AtomicUsize::new(0),
};

thread_local! {
    static PRODUCER: Cell<usize> = const { Cell::new(usize::MAX) };
    /// A `watch` that just started on this thread, for the worker to claim.
    static STARTED: Cell<Option<usize>> = const { Cell::new(None) };
}

fn producer_index() -> usize {
    PRODUCER.with(|p| {
        let mut i = p.get();
        if i == usize::MAX {
            i = HUB
                .next_producer
                .fetch_add(1, Ordering::Relaxed)
                .min(MAX_PRODUCERS - 1);
            p.set(i);
        }
        i
    })
}

fn recompute_mask() {
    let m = HUB
        .slots
        .iter()
        .fold(0, |m, s| m | s.flags.load(Ordering::Acquire));
    HUB.mask.store(m, Ordering::Release);
}

/// Whether any watcher wants `kind` (one relaxed load).
#[inline]
pub fn wants(kind: u32) -> bool {
    HUB.mask.load(Ordering::Relaxed) & kind != 0
}

/// `log_watchers`, `log_watcher_sent`, `log_watcher_skipped`.
pub fn counters() -> (u64, u64, u64) {
    (
        HUB.watchers.load(Ordering::Relaxed),
        HUB.sent.load(Ordering::Relaxed),
        HUB.skipped.load(Ordering::Relaxed),
    )
}

/// The `watch` command. `queued`: replies of earlier commands that
/// memcached would still hold (it refuses then). True when the connection
/// became a watcher.
pub fn start(ctx: &Ctx, args: &[u8], queued: bool, out: &mut Vec<u8>) -> bool {
    if Tokens::new(args).last() == Some(&b"noreply"[..]) {
        // memcached takes the `noreply`, then refuses it as an unknown
        // word: an `ERROR` nobody hears, whatever else was wrong.
        return false;
    }
    if ctx.shared.settings.no_watch {
        out.extend_from_slice(b"CLIENT_ERROR watch commands not allowed\r\n");
        return false;
    }
    if queued {
        out.extend_from_slice(b"ERROR cannot pipeline other commands before watch\r\n");
        return false;
    }
    let mut f = 0;
    let mut any = false;
    for tok in Tokens::new(args) {
        any = true;
        f |= match tok {
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"evictions" => EVICTIONS,
            b"connevents" => CONNEVENTS,
            b"deletions" => DELETIONS,
            b"sysevents" => SYSEVENTS,
            b"rawcmds" | b"proxyreqs" | b"proxyevents" | b"proxyuser" => SILENT,
            _ => {
                out.extend_from_slice(b"ERROR\r\n");
                return false;
            }
        };
    }
    if !any {
        f = FETCHERS;
    }
    let Some(idx) = HUB.slots.iter().position(|s| {
        s.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }) else {
        out.extend_from_slice(b"WATCHER_TOO_MANY log watcher limit reached\r\n");
        return false;
    };
    let slot = &HUB.slots[idx];
    let rings = slot.rings.get_or_init(|| {
        // Rings are calloc'ed: a producer that never writes costs no
        // resident memory.
        let cap = ctx.shared.settings.worker_logbuf_size as usize;
        (0..MAX_PRODUCERS).map(|_| Ring::new(cap)).collect()
    });
    for r in rings.iter() {
        r.discard();
        r.skipped.store(0, Ordering::Relaxed);
    }
    slot.flags.store(f, Ordering::Release);
    recompute_mask();
    HUB.watchers.fetch_add(1, Ordering::Relaxed);
    out.extend_from_slice(b"OK\r\n");
    STARTED.with(|s| s.set(Some(idx)));
    true
}

/// A watcher connection's handle, owned by its worker. Dropping it frees
/// the slot.
#[derive(Debug)]
pub struct Watcher {
    slot: usize,
}

/// For the worker, after running a connection's requests: the watcher
/// this connection just became, if it sent `watch`.
pub fn take_started() -> Option<Watcher> {
    STARTED.with(|s| s.take()).map(|slot| Watcher { slot })
}

impl Watcher {
    /// Move pending lines into `out`, at most about `max` bytes.
    /// Returns the number of bytes moved.
    pub fn drain(&self, out: &mut Vec<u8>, max: usize) -> usize {
        let Some(rings) = HUB.slots[self.slot].rings.get() else {
            return 0;
        };
        let mut moved = 0;
        for r in rings.iter() {
            if moved >= max {
                break;
            }
            moved += r.pop(out, max - moved);
        }
        moved
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let slot = &HUB.slots[self.slot];
        slot.flags.store(0, Ordering::Release);
        recompute_mask();
        HUB.watchers.fetch_sub(1, Ordering::Relaxed);
        slot.taken.store(false, Ordering::Release);
    }
}

/// A line being formatted on the stack (no allocation).
struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Line {
    /// `ts=<sec>.<usec> gid=<n> ` as memcached starts every line.
    fn new() -> Line {
        let mut l = Line {
            buf: [0; 1024],
            len: 0,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let gid = HUB.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = write!(
            l,
            "ts={}.{} gid={} ",
            now.as_secs(),
            now.subsec_micros(),
            gid
        );
        l
    }

    /// A key as memcached's watch shows it: bytes that are not printable
    /// are percent-encoded.
    fn key(&mut self, key: &[u8]) {
        for &b in key {
            if b.is_ascii_graphic() && b != b'%' {
                let _ = self.write(&[b]);
            } else {
                let _ = write!(self, "%{b:02X}");
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Deliver one line to every watcher that wants `kind`.
fn publish(kind: u32, line: &Line) {
    let p = producer_index();
    let mut line_end = line.len;
    // Ensure the line ends with a newline even if it was truncated.
    let mut buf = line.buf;
    if line_end == buf.len() {
        line_end -= 1;
    }
    buf[line_end] = b'\n';
    let bytes = &buf[..line_end + 1];
    for slot in HUB.slots.iter() {
        if slot.flags.load(Ordering::Acquire) & kind == 0 {
            continue;
        }
        let Some(rings) = slot.rings.get() else {
            continue;
        };
        let ring = &rings[p];
        let shared = p == MAX_PRODUCERS - 1;
        if shared
            && ring
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            HUB.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let skipped = ring.skipped.load(Ordering::Relaxed);
        let mut ok = true;
        if skipped > 0 {
            let mut s = Line {
                buf: [0; 1024],
                len: 0,
            };
            let _ = writeln!(s, "skipped={skipped}");
            if ring.push(s.bytes()) {
                ring.skipped.store(0, Ordering::Relaxed);
            } else {
                ok = false;
            }
        }
        if ok && ring.push(bytes) {
            HUB.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            ring.skipped
                .store(ring.skipped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            HUB.skipped.fetch_add(1, Ordering::Relaxed);
        }
        if shared {
            ring.busy.store(false, Ordering::Release);
        }
    }
}

/// Why a fetch found nothing, or that it found the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Found { clsid: u8, size: usize },
    NotFound,
    Expired,
    Flushed,
}

impl From<crate::store::Miss> for Fetch {
    fn from(m: crate::store::Miss) -> Fetch {
        match m {
            crate::store::Miss::Expired => Fetch::Expired,
            crate::store::Miss::Flushed => Fetch::Flushed,
            crate::store::Miss::NotFound => Fetch::NotFound,
        }
    }
}

/// `fetchers`: a key was looked up.
#[inline]
pub fn item_get(key: &[u8], r: Fetch) {
    if !wants(FETCHERS) {
        return;
    }
    item_get_slow(key, r);
}

#[cold]
fn item_get_slow(key: &[u8], r: Fetch) {
    let (status, clsid, size) = match r {
        Fetch::Found { clsid, size } => ("found", clsid, size),
        Fetch::NotFound => ("not_found", 0, 0),
        Fetch::Expired => ("expired", 0, 0),
        Fetch::Flushed => ("flushed", 0, 0),
    };
    let mut l = Line::new();
    let _ = l.write(b"type=item_get key=");
    l.key(key);
    let _ = write!(
        l,
        " status={status} clsid={clsid} cfd={} size={size}",
        crate::stats::current_fd()
    );
    publish(FETCHERS, &l);
}

/// `mutations`: a storage command ran. `status` is memcached's word
/// (`stored`, `not_stored`, `exists`, `not_found`, `too_large`,
/// `no_memory`), `cmd` the command (`set`, `add`, ...), `ttl` seconds
/// left (0 = never expires).
#[inline]
pub fn item_store(key: &[u8], status: &str, cmd: &str, ttl: u32, clsid: u8, size: usize) {
    if !wants(MUTATIONS) {
        return;
    }
    let mut l = Line::new();
    let _ = l.write(b"type=item_store key=");
    l.key(key);
    let _ = write!(
        l,
        " status={status} cmd={cmd} ttl={ttl} clsid={clsid} cfd={} size={size}",
        crate::stats::current_fd()
    );
    publish(MUTATIONS, &l);
}

/// `deletions`: an item was deleted by `cmd` (`delete`, `md`).
#[inline]
pub fn deleted(key: &[u8], cmd: &str, clsid: u8, size: usize) {
    if !wants(DELETIONS) {
        return;
    }
    let mut l = Line::new();
    let _ = l.write(b"type=deleted key=");
    l.key(key);
    let _ = write!(l, " cmd={cmd} clsid={clsid} size={size}");
    publish(DELETIONS, &l);
}

/// `evictions`: the store evicted an item to make room. `ttl` is -1 for
/// an item without expiry, `la` seconds since its last access.
#[inline]
pub fn eviction(key: &[u8], fetched: bool, ttl: i64, la: u32, clsid: u8, size: usize) {
    if !wants(EVICTIONS) {
        return;
    }
    let mut l = Line::new();
    let _ = l.write(b"type=eviction key=");
    l.key(key);
    let fetch = if fetched { "yes" } else { "no" };
    let _ = write!(
        l,
        " fetch={fetch} ttl={ttl} la={la} clsid={clsid} size={size}"
    );
    publish(EVICTIONS, &l);
}

/// The store's eviction hook (`StoreConfig::on_evict`): one `eviction`
/// line when a watcher asked for evictions.
pub fn eviction_hook(ev: &crate::store::Eviction<'_>, now: u32) {
    if !wants(EVICTIONS) {
        return;
    }
    let ttl = if ev.exptime == 0 {
        -1
    } else {
        ev.exptime as i64 - now as i64
    };
    eviction(
        ev.key,
        ev.fetched,
        ttl,
        now.saturating_sub(ev.last_access),
        ev.class,
        ev.size,
    );
}

/// `sysevents`: the automover moved a page (the store's `on_slab_move`
/// hook), in memcached's `type=slab_move src=<class> dst=<class>` form.
pub fn slab_move(src: u8, dst: u8) {
    if !wants(SYSEVENTS) {
        return;
    }
    let mut l = Line::new();
    let _ = write!(l, "type=slab_move src={src} dst={dst}");
    publish(SYSEVENTS, &l);
}

/// `sysevents`: the automatic crawler's verdict on one LRU after a run,
/// in memcached's `type=lru_crawler` form (see `crawler::Status`).
pub fn lru_crawler_status(st: &super::crawler::Status) {
    if !wants(SYSEVENTS) {
        return;
    }
    let mut l = Line::new();
    let _ = write!(l, "{st}");
    publish(SYSEVENTS, &l);
}

/// `connevents`: a client connected. `peer` is its `stats conns` address
/// (`tcp:ip:port`, or the unix socket's form).
pub fn conn_new(peer: &str, cfd: i32) {
    if !wants(CONNEVENTS) {
        return;
    }
    let mut l = Line::new();
    let (rip, rport) = split_peer(peer);
    let transport = transport_of(peer);
    let _ = write!(
        l,
        "type=conn_new rip={rip} rport={rport} transport={transport} cfd={cfd}"
    );
    publish(CONNEVENTS, &l);
}

/// `connevents`: a client connection closed (`reason`: `normal`,
/// `error`, `idle_timeout`, `shutdown`).
pub fn conn_close(peer: &str, reason: &str, cfd: i32) {
    if !wants(CONNEVENTS) {
        return;
    }
    let mut l = Line::new();
    let (rip, rport) = split_peer(peer);
    let transport = transport_of(peer);
    let _ = write!(
        l,
        "type=conn_close rip={rip} rport={rport} transport={transport} reason={reason} cfd={cfd}"
    );
    publish(CONNEVENTS, &l);
}

fn transport_of(peer: &str) -> &'static str {
    if peer.starts_with("tcp:") {
        "tcp"
    } else {
        "local"
    }
}

/// `tcp:1.2.3.4:5` / `tcp:[::1]:5` / `1.2.3.4:5` -> (`1.2.3.4`, `5`).
fn split_peer(peer: &str) -> (&str, &str) {
    let p = peer.strip_prefix("tcp:").unwrap_or(peer);
    match p.rsplit_once(':') {
        Some((ip, port)) => (ip.trim_start_matches('[').trim_end_matches(']'), port),
        None => (p, "0"),
    }
}

/// The `cmd=` word of a text storage command.
pub fn store_cmd_name(cmd: crate::protocol::text::StoreCmd) -> &'static str {
    use crate::protocol::text::StoreCmd as S;
    match cmd {
        S::Set => "set",
        S::Add => "add",
        S::Replace => "replace",
        S::Append => "append",
        S::Prepend => "prepend",
        S::Cas => "cas",
    }
}

/// The `status=` word of a store result.
pub fn store_status_name(s: &crate::store::StoreStatus) -> &'static str {
    use crate::store::StoreStatus as S;
    match s {
        S::Stored => "stored",
        S::NotStored => "not_stored",
        S::Exists => "exists",
        S::NotFound => "not_found",
        S::TooLarge => "too_large",
        S::NoMemory => "no_memory",
    }
}

/// `Fetch::Found` for an item of class `clsid` with a `size`-byte value.
#[inline]
pub fn found(clsid: u8, size: usize) -> Fetch {
    Fetch::Found { clsid, size }
}

/// Hook run by the text front end for every parsed command: its keys for
/// `stats hotkeys`. (Its latency family is counted where the command
/// runs, where the family is known without another match.)
#[inline]
pub fn on_text_command(ctx: &Ctx, line: &[u8], cmd: &crate::protocol::text::Command) {
    // Sample per command, before looking at any key.
    if ctx.shared.settings.hotkeys != 0 && ctx.stats.hot.pick() {
        hot_text(ctx, line, cmd);
    }
}

/// memcached's `-vv` request line (`<fd get foo`), at debug level, for
/// every line read, valid or not. Costs one level check when off.
#[inline]
pub fn log_request(line: &[u8]) {
    if log::log_enabled!(target: WIRE, log::Level::Debug) {
        log::debug!(
            target: WIRE,
            "<{} {}",
            crate::stats::current_fd(),
            String::from_utf8_lossy(line)
        );
    }
}

/// memcached's `-vv` line for a reply `noreply` suppressed
/// (`>fd NOREPLY STORED`).
#[inline]
pub fn log_noreply(msg: &[u8]) {
    if log::log_enabled!(target: WIRE, log::Level::Debug) {
        log::debug!(
            target: WIRE,
            ">{} NOREPLY {}",
            crate::stats::current_fd(),
            String::from_utf8_lossy(msg)
        );
    }
}

#[cold]
#[inline(never)]
fn hot_text(ctx: &Ctx, line: &[u8], cmd: &crate::protocol::text::Command) {
    use crate::protocol::text::Command as C;
    let hot = &ctx.stats.hot;
    let now = ctx.shared.clock.now();
    match cmd {
        C::Get { keys, .. } => {
            for k in Tokens::new(keys) {
                hot.count(k, now);
            }
        }
        C::Store { key, .. }
        | C::Delete { key, .. }
        | C::Arith { key, .. }
        | C::Touch { key, .. } => hot.count(key, now),
        C::Meta { .. } => {
            if let Some(k) = Tokens::new(line).nth(1) {
                hot.count(k, now);
            }
        }
        _ => {}
    }
}

/// What a command's own lookup of its key found: the item's class, value
/// length and exptime, or why there was none.
pub type Looked = Result<(u8, usize, RelTime), crate::store::Miss>;

/// The lookup memcached makes before a command acts on its key (a store
/// looks for the item it replaces, `delete`/`incr`/`md`/`ma` for the item
/// they change): one `item_get` line when `fetchers` are watched. Runs
/// only when a watcher wants one of `kinds` (the caller's events that
/// need the old item); otherwise it costs one relaxed load and returns
/// `None`. The look does not bump the item, so watching does not change
/// the LRU.
#[inline]
pub fn lookup(ctx: &Ctx, key: &[u8], kinds: u32) -> Option<Looked> {
    if !wants(kinds) {
        return None;
    }
    Some(lookup_slow(ctx, key))
}

#[cold]
#[inline(never)]
fn lookup_slow(ctx: &Ctx, key: &[u8]) -> Looked {
    let r = ctx.shared.store.get(key, false, |r| {
        r.map(|i| (i.class_id(), i.value_len(), i.exptime()))
    });
    item_get(
        key,
        match r {
            Ok((clsid, size, _)) => found(clsid, size),
            Err(m) => m.into(),
        },
    );
    r
}

/// The value length a [`lookup`] found (0 when it found nothing or did
/// not run).
pub fn looked_size(old: Option<Looked>) -> usize {
    match old {
        Some(Ok((_, size, _))) => size,
        _ => 0,
    }
}

/// Seconds an item with `exptime` has left, as memcached's watch prints
/// them (0 = never expires).
fn ttl_of(ctx: &Ctx, exptime: RelTime) -> u32 {
    if exptime == 0 {
        0
    } else {
        exptime.saturating_sub(ctx.shared.clock.now())
    }
}

/// A storage command's request, for its `item_store` line.
pub struct StoreReq<'a> {
    pub key: &'a [u8],
    /// memcached's command word (`set`, `add`, `cas`, ...).
    pub cmd: &'static str,
    /// The request's exptime (absolute).
    pub exptime: RelTime,
    /// The request's client flags (nonzero flags take room in an item).
    pub flags: u32,
    pub value_len: usize,
}

/// `mutations`: the `item_store` line of a storage command, after the
/// store answered `status` (`class`: the stored item's class). `old` is
/// what [`lookup`] found before the store.
///
/// memcached logs the item it tried to store: for a stored append or
/// prepend that is the combined item (old exptime, combined size);
/// otherwise the request's own item, whose class is the one its size
/// maps to even when nothing was stored.
#[inline]
pub fn stored(
    ctx: &Ctx,
    req: &StoreReq<'_>,
    old: Option<Looked>,
    status: crate::store::StoreStatus,
    class: u8,
) {
    if !wants(MUTATIONS) {
        return;
    }
    stored_slow(ctx, req, old, status, class);
}

#[cold]
#[inline(never)]
fn stored_slow(
    ctx: &Ctx,
    req: &StoreReq<'_>,
    old: Option<Looked>,
    status: crate::store::StoreStatus,
    class: u8,
) {
    use crate::store::StoreStatus as S;
    let concat = matches!(req.cmd, "append" | "prepend");
    let (exptime, size, clsid) = match (status, old) {
        (S::Stored, Some(Ok((_, old_len, old_exp)))) if concat => {
            (old_exp, old_len + req.value_len, class)
        }
        (S::Stored, _) => (req.exptime, req.value_len, class),
        _ => (
            req.exptime,
            req.value_len,
            ctx.shared
                .store
                .class_for_item(req.key.len(), req.flags, req.value_len),
        ),
    };
    item_store(
        req.key,
        store_status_name(&status),
        req.cmd,
        ttl_of(ctx, exptime),
        clsid,
        size,
    );
}

/// An incr/decr (binary, or `ma` with `N`) created its missing item:
/// memcached stores it with an `add`, which looks the key up again, so a
/// watcher sees a second `item_get` (not found) and the add's
/// `item_store`. `exptime` is the new item's, `value` the number stored.
#[inline]
pub fn arith_created(ctx: &Ctx, key: &[u8], exptime: RelTime, class: u8, value: u64) {
    if !wants(FETCHERS | MUTATIONS) {
        return;
    }
    item_get(key, Fetch::NotFound);
    if wants(MUTATIONS) {
        let digits = value.checked_ilog10().unwrap_or(0) as usize + 1;
        item_store(key, "stored", "add", ttl_of(ctx, exptime), class, digits);
    }
}

/// memcached's `-vv` reply lines (`>fd END`), at debug level; values
/// are shown as `>fd sending key <key>`. Costs one level check when off.
#[inline]
/// Whether `log_replies` logs anything (it reads the reply bytes, so
/// values must then be copied into them, not spliced).
pub fn logs_replies() -> bool {
    log::log_enabled!(target: WIRE, log::Level::Debug)
}

pub fn log_replies(fd: i32, out: &[u8]) {
    if !log::log_enabled!(target: WIRE, log::Level::Debug) || out.is_empty() {
        return;
    }
    log_replies_slow(fd, out);
}

#[cold]
fn log_replies_slow(fd: i32, out: &[u8]) {
    if out[0] == crate::protocol::binary::RESPONSE_MAGIC {
        log::debug!(target: WIRE, ">{fd} Writing bin response ({} bytes)", out.len());
        return;
    }
    let mut rest = out;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[i + 1..];
        if let Some(v) = line.strip_prefix(b"VALUE ") {
            let mut t = Tokens::new(v);
            let key = t.next().unwrap_or(b"");
            let len: usize = t
                .nth(1)
                .and_then(|l| std::str::from_utf8(l).ok()?.parse().ok())
                .unwrap_or(0);
            log::debug!(target: WIRE, ">{fd} sending key {}", String::from_utf8_lossy(key));
            // Skip the data block and its \r\n.
            rest = &rest[(len + 2).min(rest.len())..];
        } else if let Some(skip) = meta_reply(line) {
            // memcached does not log meta replies (only `MN`).
            rest = &rest[skip.min(rest.len())..];
        } else {
            log::debug!(target: WIRE, ">{fd} {}", String::from_utf8_lossy(line));
        }
    }
}

/// A meta reply line other than `MN`: `Some(n)` with the bytes of data
/// block after it (a `VA <len>` value and its line end), else `None`.
fn meta_reply(line: &[u8]) -> Option<usize> {
    let mut t = Tokens::new(line);
    match t.next()? {
        b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"ME" => Some(0),
        b"VA" => {
            let len: usize = std::str::from_utf8(t.next()?).ok()?.parse().ok()?;
            Some(len + 2)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_replies_are_recognised() {
        assert_eq!(meta_reply(b"HD"), Some(0));
        assert_eq!(meta_reply(b"HD c5 t-1"), Some(0));
        assert_eq!(meta_reply(b"VA 3 s3"), Some(5));
        assert_eq!(meta_reply(b"EN"), Some(0));
        assert_eq!(meta_reply(b"END"), None);
        assert_eq!(meta_reply(b"MN"), None);
        assert_eq!(meta_reply(b"STORED"), None);
    }

    #[test]
    fn ring_wraps_and_refuses_when_full() {
        let r = Ring::new(RING_BYTES);
        let line = [b'x'; 1000];
        let mut n = 0;
        while r.push(&line) {
            n += 1;
        }
        assert_eq!(n, RING_BYTES / 1000);
        let mut out = Vec::new();
        assert_eq!(r.pop(&mut out, 1500), 1500);
        assert!(r.push(&line));
        out.clear();
        let total = r.pop(&mut out, usize::MAX);
        assert_eq!(total, (n + 1) * 1000 - 1500);
        assert!(out.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn peers_split_like_memcached_prints_them() {
        assert_eq!(split_peer("tcp:127.0.0.1:4000"), ("127.0.0.1", "4000"));
        assert_eq!(split_peer("tcp:[::1]:5"), ("::1", "5"));
    }
}
