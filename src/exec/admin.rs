//! Administrative commands: `slabs`, `lru`, `lru_crawler`, `watch`,
//! `extstore`, and the debug-build-only `debugtime`.
//!
//! They tune the running cache the way memcached's do, and answer with
//! memcached's exact replies (argument checks included), because operators
//! script them. The LRU and page-mover settings they change live in the
//! store (`Store::runtime_settings`), which applies them to the running
//! cache; the crawler's live in `Tunables`. `stats settings` reports both.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::config::{ExtstoreSettings, Settings};
use crate::protocol::number;
use crate::protocol::text::{self as proto, Tokens};

use super::{Action, Ctx};
use crate::store::{ItemRef, ReassignError, Walk};

/// The crawler settings an operator may change at run time (the LRU and
/// page-mover ones live in the store: `Store::runtime_settings`).
#[derive(Debug)]
pub struct Tunables {
    pub lru_crawler: AtomicBool,
    pub lru_crawler_sleep: AtomicU32,
    pub lru_crawler_tocrawl: AtomicU32,
    /// The `ext_*` settings the `extstore` command changes. gannet has no
    /// external store; they are kept for `stats settings`.
    pub ext: Mutex<ExtstoreSettings>,
}

impl Tunables {
    pub fn new(s: &Settings) -> Tunables {
        Tunables {
            lru_crawler: AtomicBool::new(s.lru_crawler),
            lru_crawler_sleep: AtomicU32::new(s.lru_crawler_sleep),
            lru_crawler_tocrawl: AtomicU32::new(s.lru_crawler_tocrawl),
            ext: Mutex::new(s.ext.clone()),
        }
    }
}

fn reply(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Run `name args...` (the command word already split off).
pub fn run(ctx: &Ctx, name: &[u8], args: &[u8], out: &mut Vec<u8>) -> Action {
    let toks: Vec<&[u8]> = Tokens::new(args).collect();
    // memcached's token count includes the command and a final empty token.
    let ntokens = toks.len() + 2;
    let arg = |i: usize| toks.get(i).copied().unwrap_or(b"");
    // memcached honours a final `noreply` only where it looks for one:
    // `slabs automove`, `lru` and `extstore`, not `slabs reassign` (or a
    // `slabs` it does not know) nor `lru_crawler`.
    let takes_noreply = match name {
        b"slabs" => ntokens >= 4 && arg(0) == b"automove",
        b"lru_crawler" => false,
        _ => true,
    };
    let noreply = takes_noreply && toks.last() == Some(&&b"noreply"[..]);
    let mut answer = |msg: &str| {
        if !noreply {
            reply(out, msg)
        }
    };
    let t = &ctx.shared.tunables;
    match name {
        b"slabs" => {
            if ntokens == 5 && arg(0) == b"reassign" {
                if !ctx.shared.store.reassign_enabled() {
                    answer("CLIENT_ERROR slab reassignment disabled");
                } else {
                    match (number::strtol(arg(1)), number::strtol(arg(2))) {
                        (Some(src), Some(dst)) => answer(slabs_reassign(ctx, src, dst)),
                        _ => answer(proto::BAD_FORMAT),
                    }
                }
            } else if ntokens >= 4 && arg(0) == b"automove" {
                if arg(1) == b"ratio" {
                    match (ntokens >= 5).then(|| number::strtod(arg(2))).flatten() {
                        Some(r) => {
                            ctx.shared.store.set_automove_ratio(r);
                            answer("OK");
                        }
                        None => answer("ERROR"),
                    }
                } else {
                    match number::strtoul(arg(1)) {
                        None => answer(proto::BAD_FORMAT),
                        Some(level @ 0..=2) => {
                            ctx.shared.store.set_automove(level as u8);
                            answer("OK");
                        }
                        Some(_) => answer("ERROR"),
                    }
                }
            } else {
                answer("ERROR");
            }
        }
        b"lru" => {
            // memcached takes `mode` and `temp_ttl` only while its LRU
            // maintainer runs (not with `-o no_lru_maintainer`).
            let maintainer = ctx.shared.settings.lru_maintainer;
            if arg(0) == b"tune" && ntokens >= 7 {
                let parsed = (
                    number::strtoul(arg(1)),
                    number::strtoul(arg(2)),
                    number::strtod(arg(3)),
                    number::strtod(arg(4)),
                );
                match parsed {
                    (Some(hot), Some(warm), Some(hf), Some(wf)) => {
                        if hot.saturating_add(warm) > 80 {
                            answer("ERROR hot and warm pcts must not exceed 80");
                        } else if wf <= 0.0 || hf <= 0.0 {
                            answer("ERROR hot/warm age factors must be greater than 0");
                        } else {
                            ctx.shared.store.lru_tune(hot, warm, hf, wf);
                            answer("OK");
                        }
                    }
                    _ => answer("ERROR"),
                }
            } else if arg(0) == b"mode" && ntokens >= 4 && maintainer {
                match arg(1) {
                    b"flat" | b"segmented" => {
                        let on = arg(1) == b"segmented";
                        ctx.shared.store.set_lru_segmented(on);
                        answer("OK");
                    }
                    _ => answer("ERROR"),
                }
            } else if arg(0) == b"temp_ttl" && ntokens >= 4 && maintainer {
                match number::strtol(arg(1)) {
                    None => answer("ERROR"),
                    Some(ttl) => {
                        ctx.shared.store.set_temp_ttl(u32::try_from(ttl).ok());
                        answer("OK");
                    }
                }
            } else {
                answer("ERROR");
            }
        }
        b"lru_crawler" => {
            if ntokens == 4 && arg(0) == b"crawl" {
                answer(crawl(ctx, arg(1)));
            } else if ntokens == 4 && arg(0) == b"tocrawl" {
                match number::strtoul(arg(1)) {
                    Some(n) => {
                        t.lru_crawler_tocrawl.store(n, Ordering::Relaxed);
                        answer("OK");
                    }
                    None => answer(proto::BAD_FORMAT),
                }
            } else if ntokens == 4 && arg(0) == b"sleep" {
                match number::strtoul(arg(1)) {
                    Some(n) if n > 1_000_000 => {
                        answer("CLIENT_ERROR sleep must be one second or less")
                    }
                    Some(n) => {
                        t.lru_crawler_sleep.store(n, Ordering::Relaxed);
                        answer("OK");
                    }
                    None => answer(proto::BAD_FORMAT),
                }
            } else if ntokens == 3 && arg(0) == b"enable" {
                // Already running: memcached fails to start a second one.
                if t.lru_crawler.swap(true, Ordering::Relaxed) {
                    answer("ERROR failed to start lru crawler thread");
                } else {
                    answer("OK");
                }
            } else if ntokens == 3 && arg(0) == b"disable" {
                // Stopping a stopped crawler succeeds in memcached.
                t.lru_crawler.store(false, Ordering::Relaxed);
                answer("OK");
            } else {
                answer("ERROR");
            }
        }
        b"extstore" => {
            let ok = ntokens >= 4 && {
                let mut ext = t.ext.lock().unwrap_or_else(|e| e.into_inner());
                extstore(&mut ext, arg(0), arg(1), arg(2), ntokens)
            };
            answer(if ok { "OK" } else { "ERROR" });
        }
        #[cfg(debug_assertions)]
        b"debugtime" => {
            // Test-only: move the clock forward. Compiled out of release
            // builds, so no client of a production server can reach it.
            match number::strtoul(arg(0)) {
                Some(secs) => {
                    ctx.shared.clock.advance(secs);
                    answer("OK");
                }
                None => answer(proto::BAD_FORMAT),
            }
        }
        #[cfg(debug_assertions)]
        b"debugpanic" => {
            // Test-only: prove the panic policy (log and abort) from a
            // worker thread. Compiled out of release builds.
            panic!("debugpanic requested by a client");
        }
        _ => reply(out, "ERROR"),
    }
    Action::Continue
}

/// memcached's `extstore <setting> <value>`: sets one `ext_*` value
/// (read as memcached reads it) and says whether it took. memcached reads
/// straight into the setting, and its readers store 0 before they parse,
/// so a bad value answers ERROR and leaves the setting at 0.
/// `free_memchunks <class> <limit>` is deprecated there and only checked.
fn extstore(ext: &mut ExtstoreSettings, what: &[u8], v: &[u8], v2: &[u8], ntokens: usize) -> bool {
    let set = |field: &mut u32| {
        let n = number::strtoul(v);
        *field = n.unwrap_or(0);
        n.is_some()
    };
    match what {
        b"free_memchunks" if ntokens > 4 => {
            matches!((number::strtoul(v), number::strtoul(v2)), (Some(class), Some(_)) if class < 64)
        }
        b"item_size" => set(&mut ext.item_size),
        b"item_age" => set(&mut ext.item_age),
        b"low_ttl" => set(&mut ext.low_ttl),
        b"recache_rate" => set(&mut ext.recache_rate),
        b"compact_under" => set(&mut ext.compact_under),
        b"drop_under" => set(&mut ext.drop_under),
        b"max_sleep" => set(&mut ext.max_sleep),
        b"max_frag" => {
            let f = number::strtod(v);
            ext.max_frag = f.unwrap_or(0.0);
            f.is_some()
        }
        b"drop_unread" => number::strtoul(v)
            .map(|n| ext.drop_unread = n != 0)
            .is_some(),
        _ => false,
    }
}

/// memcached's class list for the crawler: `all`, or class ids from 1 to
/// 63 separated by commas (empty pieces are skipped). Bit `c` of the
/// result stands for class `c`; `None` is `BADCLASS`.
fn class_list(arg: &[u8]) -> Option<u64> {
    if arg == b"all" {
        return Some(u64::MAX);
    }
    let mut mask = 0u64;
    for piece in arg.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        match number::strtoul(piece) {
            Some(id @ 1..=63) => mask |= 1 << id,
            _ => return None,
        }
    }
    Some(mask)
}

const CRAWLER_DISABLED: &str = "CLIENT_ERROR lru crawler disabled";
const BADCLASS: &str = "BADCLASS invalid class id";

/// `lru_crawler crawl <classes>`: hand a crawl to the crawler thread.
fn crawl(ctx: &Ctx, list: &[u8]) -> &'static str {
    if !ctx.shared.tunables.lru_crawler.load(Ordering::Relaxed) {
        return CRAWLER_DISABLED;
    }
    if list == b"hash" {
        // memcached 1.6.18 has no hash walk for crawls and fails this way.
        return "ERROR an unknown error happened";
    }
    let Some(mask) = class_list(list) else {
        return BADCLASS;
    };
    match ctx.shared.crawler.request(mask) {
        Ok(()) => "OK",
        Err(super::crawler::Refused::Busy) => "BUSY currently processing crawler request",
    }
}

/// Where a `lru_crawler metadump` stands after one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// Finished (or refused): the command is done.
    Done,
    /// The output reached its limit: send it and call again.
    More,
}

/// The class list of a `lru_crawler metadump <list>` line, if `args` is
/// one.
pub fn metadump_args(args: &[u8]) -> Option<&[u8]> {
    let mut t = Tokens::new(args);
    match (t.next(), t.next(), t.next()) {
        (Some(b"metadump"), Some(list), None) => Some(list),
        _ => None,
    }
}

/// `lru_crawler metadump <classes|all|hash>`: one line per live item of
/// the classes, then `END`. The walk state lives in the connection
/// (`state`) so a dump of millions of items goes out in pieces of about
/// `out_limit` bytes as the client reads them, never all in memory.
/// `queued`: replies of earlier commands that memcached would still hold
/// (`Pins::replies_queued`).
pub fn metadump(
    ctx: &Ctx,
    list: &[u8],
    queued: bool,
    state: &mut Option<Box<Walk>>,
    out: &mut Vec<u8>,
    out_limit: usize,
) -> Dump {
    let shared = ctx.shared;
    let walk = match state {
        Some(w) => w,
        None => {
            let refused = if !shared.tunables.lru_crawler.load(Ordering::Relaxed) {
                Some(CRAWLER_DISABLED)
            } else if shared.settings.no_dump {
                Some("ERROR metadump not allowed")
            } else if queued {
                // memcached streams a dump from its crawler thread and
                // refuses while earlier commands of the same read still
                // hold their (even quiet) replies: not after a `get` or
                // `mn`, which write theirs at once.
                Some("ERROR cannot pipeline other commands before metadump")
            } else {
                None
            };
            if let Some(msg) = refused {
                reply(out, msg);
                return Dump::Done;
            }
            let Some(mask) = (if list == b"hash" {
                Some(u64::MAX)
            } else {
                class_list(list)
            }) else {
                reply(out, BADCLASS);
                return Dump::Done;
            };
            shared.crawler.count_start();
            state.insert(Box::new(Walk::new(mask)))
        }
    };
    let started = shared.clock.process_started();
    let use_cas = !shared.settings.no_cas;
    loop {
        let more = shared
            .store
            .dump_step(walk, |it| dump_line(it, started, use_cas, out));
        if !more {
            *state = None;
            out.extend_from_slice(b"END\r\n");
            return Dump::Done;
        }
        if out.len() >= out_limit {
            return Dump::More;
        }
    }
}

/// One metadump line, memcached 1.6.18's fields: the key URI-encoded,
/// absolute expiry (-1: never) and last access, CAS, fetched, class, and
/// the item's size as memcached lays it out. Ends in a bare `\n`, as
/// memcached's do.
fn dump_line(it: &ItemRef<'_>, started: i64, use_cas: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key=");
    uri_encode(it.key(), out);
    let exp = match it.exptime() {
        0 => -1,
        e => i64::from(e) + started,
    };
    let la = i64::from(it.last_access()) + started;
    super::meta::push_item_fields(it, exp, la, use_cas, out);
    out.push(b'\n');
}

/// Percent-encode everything but letters, digits and `-._~` (memcached's
/// `uriencode`, uppercase hex).
fn uri_encode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// `slabs reassign <src> <dst>`: memcached's checks and replies; the
/// move itself runs on the rebalancer thread.
fn slabs_reassign(ctx: &Ctx, src: i32, dst: i32) -> &'static str {
    const BUSY: &str = "BUSY currently processing reassign request";
    if ctx.shared.rebalancer.busy() {
        return BUSY;
    }
    match ctx.shared.store.reassign_check(src, dst) {
        Ok((src, dst)) if ctx.shared.rebalancer.request(src, dst) => "OK",
        Ok(_) | Err(ReassignError::Running) => BUSY,
        Err(ReassignError::Same) => "SAME src and dst class are identical",
        Err(ReassignError::BadClass) => "BADCLASS invalid src or dst class id",
        Err(ReassignError::NoSpare) => "NOSPARE source class has no spare pages",
        Err(ReassignError::Disabled) => "CLIENT_ERROR slab reassignment disabled",
    }
}
