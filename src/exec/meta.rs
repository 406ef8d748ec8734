//! Meta commands (`mg ms md ma mn me`): their memcached 1.6.18 meaning.
//!
//! Meta clients (stampede-protected caches, proxies) rely on details that
//! the text protocol never had, so each one here reproduces what the
//! memcached 1.6.18 binary does, checked reply by reply (see
//! `docs/meta-notes.md` and `tests/meta_protocol.rs`):
//!
//! - Return flags are written in request order, and `T`/`N` take effect at
//!   their position in that walk: a `t` before a `T` shows the old ttl.
//!   The walk therefore runs inside the store's `get` closure, under the
//!   key's lock, writing straight into the output buffer.
//! - After the request-order flags come `Z` (a win token was already sent
//!   for this item), `X` (stale), `W` (this client won the right to
//!   recache). A win comes from `N` creating the item, from `R` when
//!   little ttl remains, or from the first fetch of a stale item.
//! - `q` hides only the "nominal" reply of each command: `EN` for `mg`,
//!   `HD` for `ms`/`md`, an update for `ma` (an item `ma` creates is still
//!   reported). Errors are always sent.
//! - Counters move as memcached moves them: `mg` is a get (or a touch when
//!   it has `T`), `ms` a set (a CAS set with `C`), `md` a delete, `ma` an
//!   incr/decr; `cmd_meta` counts only `me`, as in memcached 1.6.18.
//!
//! - Beyond 1.6.18, as memcached's current `doc/protocol.txt` defines
//!   them: `E(token)` gives the item `mg N` creates, an `ms` store, an
//!   `md I`/`md x` item and an `ma` result the CAS `token` instead of the
//!   next one; `md x` replaces the item by an empty one in place (client
//!   flags 0, exptime kept, CAS kept unless `I` or `E`), which with `I` is
//!   a stale tombstone. `E0` is the same as no `E`.
//!
//! The parser (`protocol::meta`) has already refused malformed lines, so
//! everything here is infallible: no input can make it panic, and replies
//! are appended to `out` without intermediate allocation.

use crate::clock::RelTime;
use crate::protocol::meta::{
    self as proto, ArithMode, MetaCommand, MetaRequest, MetaStatus, SetMode, DECODED_KEY_MAX,
};
use crate::store::{
    ArithArgs, ArithStatus, DeleteArgs, DeleteStatus, ItemId, ItemRef, Mode, Reserved, StoreArgs,
    StoreOutcome, StoreStatus,
};

use super::out::Out;
use super::pins::Pins;
use super::text::memcached_item_size;
use super::watch;
use super::{Action, Ctx};
use crate::protocol::number::{self, push_u64};

const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";

/// For `ms`, before its data block is read: `Err(n)` when a reply was
/// written and `n` input bytes (the block) must be discarded.
///
/// memcached allocates the item before reading the data, so a value too
/// large for the cache is refused up front: the block is swallowed and
/// any existing item under the key is removed, whatever the mode.
pub fn ms_precheck(ctx: &Ctx, req: &MetaRequest, out: &mut Vec<u8>) -> Result<(), usize> {
    let settings = &ctx.shared.settings;
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let len = req.data_len as usize;
    let flags = req.client_flags.unwrap_or(0);
    if memcached_item_size(key.len(), flags, len, !settings.no_cas) <= settings.item_size_max {
        return Ok(());
    }
    ctx.stats.ops.store_too_large.incr();
    out.extend_from_slice(TOO_LARGE);
    ctx.shared.store.delete(&DeleteArgs::new(key));
    Err(len + 2)
}

/// An `ms` data block: buffered with its line end, or already read into
/// its item (see `exec::fill`) with the two bytes that followed it.
pub enum Block<'a> {
    Bytes(&'a [u8]),
    Filled(Reserved, [u8; 2]),
}

/// For an `ms` whose data block is still arriving: its item, when the
/// value can be read straight into it (set, add and replace; not a `C0`
/// that can match nothing; see `exec::fill`). Called after `ms_precheck`.
pub fn ms_reserve(ctx: &Ctx, req: &MetaRequest) -> Option<Reserved> {
    let mode = req.set_mode();
    if matches!(mode, SetMode::Append | SetMode::Prepend) || req.compare_cas == Some(0) {
        return None;
    }
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let flags = req.client_flags.unwrap_or(0);
    // The exptime and CAS check come from the line when the item is stored.
    ctx.shared
        .store
        .reserve(key, flags, 0, 0, req.data_len as usize)
}

/// Run one meta command. `data` is the `ms` data block; `pins` are the
/// connection's items held by unsent replies.
pub fn run(
    ctx: &Ctx,
    req: &MetaRequest,
    data: Option<Block>,
    out: &mut Out,
    pins: &mut Pins,
) -> Action {
    match req.command {
        MetaCommand::Get => mg_inner(ctx, req, out, Some(pins)),
        MetaCommand::Set => match data {
            Some(block) => ms(ctx, req, block, out),
            // The text session always passes the block; refuse rather
            // than store something made up.
            None => out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n"),
        },
        MetaCommand::Delete => md(ctx, req, out, pins),
        MetaCommand::Arithmetic => ma(ctx, req, out, pins.held()),
        MetaCommand::Noop => {
            proto::write_status(out, MetaStatus::Mn);
            proto::end_line(out);
            // memcached writes its queued replies at once after `mn`.
            pins.written();
        }
        MetaCommand::Debug => me(ctx, req, out),
    }
    Action::Continue
}

/// A request ttl (`T`, `N`, `R`) as an item exptime. memcached maps a
/// negative ttl to "already expired", which `Clock::realtime` does too.
fn rel(ctx: &Ctx, ttl: Option<i32>) -> Option<RelTime> {
    ttl.map(|t| ctx.shared.clock.realtime(i64::from(t)))
}

/// ` t<remaining>`: `-1` for no expiry; otherwise the unsigned 32-bit
/// difference memcached prints (huge for an item `T` just expired).
fn write_ttl(out: &mut Vec<u8>, exptime: RelTime, now: RelTime) {
    if exptime == 0 {
        proto::write_flag_i64(out, b't', -1);
    } else {
        proto::write_flag_u64(out, b't', u64::from(exptime.wrapping_sub(now)));
    }
}

/// ` O<opaque>` from the flag token (which includes its letter).
fn write_opaque_token(out: &mut Vec<u8>, token: &[u8]) {
    proto::write_opaque(out, token.get(1..).unwrap_or(&[]));
}

/// Appends the ` O` and ` k` return flags in request order: all that a
/// miss or a failed update echoes.
fn write_opaque_key(out: &mut Vec<u8>, req: &MetaRequest, key: &[u8]) {
    for (letter, token) in req.flag_tokens() {
        match letter {
            b'O' => write_opaque_token(out, token),
            b'k' => proto::write_key(out, key, req.is_base64()),
            _ => {}
        }
    }
}

/// The absolute times of a request's `T` and `N`.
#[derive(Clone, Copy)]
struct Ttls {
    ttl: Option<RelTime>,
    vivify: Option<RelTime>,
}

impl Ttls {
    fn new(ctx: &Ctx, req: &MetaRequest) -> Ttls {
        Ttls {
            ttl: rel(ctx, req.ttl),
            vivify: rel(ctx, req.vivify_ttl),
        }
    }

    /// The exptime of an item this request created, after flag `letter`:
    /// memcached creates it with no expiry and applies `T` and `N` at
    /// their place in the flag walk.
    fn step(self, letter: u8, exp: RelTime) -> RelTime {
        match letter {
            b'T' => self.ttl.unwrap_or(exp),
            b'N' => self.vivify.unwrap_or(exp),
            _ => exp,
        }
    }

    /// The exptime of a created item once the whole walk is done.
    fn created(self, req: &MetaRequest) -> RelTime {
        req.flag_tokens()
            .fold(0, |exp, (letter, _)| self.step(letter, exp))
    }
}

// ---------------------------------------------------------------- mg

/// The effects of an `mg` that memcached refused for a too-long opaque,
/// found only while it wrote the reply: the item was already fetched
/// (and bumped, unless `N`/`R`/`T` made memcached defer the bump),
/// vivified, and touched by a `T` before the opaque; but the win token is
/// never marked and a hit is not counted (a miss is). The caller cuts
/// `req` at the bad opaque; the reply is for the caller to throw away.
pub(crate) fn mg_refused(ctx: &Ctx, req: &MetaRequest, out: &mut Out) {
    mg_inner(ctx, req, out, None);
}

/// `mg`. `pins` is `None` for a refused one (`mg_refused`): it marks no
/// win token and, as memcached drops its reference with the error,
/// holds nothing.
fn mg_inner(ctx: &Ctx, req: &MetaRequest, out: &mut Out, pins: Option<&mut Pins>) {
    let mark_win = pins.is_some();
    let shared = ctx.shared;
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let ttls = Ttls::new(ctx, req);
    let ttl = ttls.ttl;
    let recache = rel(ctx, req.recache_ttl);
    let bump = !req.flags.has(b'u');
    // Two rounds at most: a vivify that loses the race to another
    // client's store looks the key up again and reports that item.
    for round in 0..2 {
        let now = shared.clock.now();
        let found = shared.store.get(key, bump, |r| match r {
            Ok(item) => {
                if round == 0 {
                    watch::item_get(key, watch::found(item.class_id(), item.value_len()));
                }
                let id = item.id();
                Ok((mg_hit(req, item, now, ttl, recache, mark_win, out), id))
            }
            Err(miss) => {
                if round == 0 {
                    watch::item_get(key, miss.into());
                }
                Err(miss)
            }
        });
        let miss = match found {
            Ok((class, id)) => {
                if let Some(pins) = pins {
                    // The reply references the item until it is written.
                    pins.hold(id);
                    count_mg_hit(ctx, class, ttl.is_some());
                }
                return;
            }
            Err(miss) => miss,
        };
        if round == 0 {
            super::count_miss_reason(ctx, miss);
        }
        if round > 0 || ttls.vivify.is_none() {
            break;
        }
        let mut args = StoreArgs::new(Mode::Add, key, 0, ttls.created(req), b"");
        args.win_sent = mark_win;
        args.set_cas = req.new_cas.unwrap_or(0);
        let res = shared.store.store(&args);
        match res.status {
            StoreStatus::Stored => {
                mg_vivified(req, key, &res, ttls, now, out);
                if bump {
                    // memcached bumps the new item like any fetched one.
                    shared.store.get(key, true, |_| ());
                }
                if mark_win {
                    count_mg_hit(ctx, res.class, ttl.is_some());
                }
                return;
            }
            StoreStatus::NotStored => continue,
            _ => break,
        }
    }
    let ops = &ctx.stats.ops;
    ops.get_misses.incr();
    ops.get_cmds.incr();
    if !req.is_quiet() {
        proto::write_status(out, MetaStatus::En);
        write_opaque_key(out, req, key);
        proto::end_line(out);
    }
}

fn count_mg_hit(ctx: &Ctx, class: u8, touched: bool) {
    let stats = ctx.stats;
    if touched {
        stats.ops.touch_cmds.incr();
        stats.ops.touch_hits.incr();
        stats.class(class).touch_hits.incr();
    } else {
        stats.ops.get_cmds.incr();
        stats.ops.get_hits.incr();
        stats.class(class).get_hits.incr();
    }
}

/// Writes the reply for an existing item, applying `T` and the win rules.
/// Returns the item's class for the counters.
fn mg_hit(
    req: &MetaRequest,
    item: &mut ItemRef<'_>,
    now: RelTime,
    ttl: Option<RelTime>,
    recache: Option<RelTime>,
    mark_win: bool,
    out: &mut Out,
) -> u8 {
    let value = req.flags.has(b'v');
    let len = item.value_len();
    if value {
        proto::write_value_header(out, u32::try_from(len).unwrap_or(u32::MAX));
    } else {
        proto::write_status(out, MetaStatus::Hd);
    }
    let mut won = false;
    for (letter, token) in req.flag_tokens() {
        match letter {
            b'T' => {
                if let Some(t) = ttl {
                    item.set_exptime(t);
                }
            }
            b'R' => {
                let exp = item.exptime();
                if recache.is_some_and(|r| !item.win_sent() && exp != 0 && exp < r) {
                    won = true;
                }
            }
            b's' => proto::write_flag_u64(out, b's', len as u64),
            b't' => write_ttl(out, item.exptime(), now),
            b'c' => proto::write_flag_u64(out, b'c', item.cas()),
            b'f' => proto::write_flag_u64(out, b'f', u64::from(item.flags())),
            b'l' => {
                let idle = now.wrapping_sub(item.last_access());
                proto::write_flag_u64(out, b'l', u64::from(idle));
            }
            b'h' => proto::write_flag_u64(out, b'h', u64::from(item.fetched())),
            b'O' => write_opaque_token(out, token),
            b'k' => proto::write_key(out, item.key(), item.key_binary()),
            _ => {}
        }
    }
    // Z before X before W, and never W with Z.
    let sent = item.win_sent();
    if sent {
        proto::write_flag(out, b'Z');
    }
    if item.stale() {
        proto::write_flag(out, b'X');
        won |= !sent;
    }
    if won {
        proto::write_flag(out, b'W');
        if mark_win {
            item.set_win_sent();
        }
    }
    proto::end_line(out);
    if value {
        out.push_value(item);
        proto::end_line(out);
    }
    item.class_id()
}

/// The reply for an item `N` just created: empty, flags 0, this client
/// won. memcached creates it with no expiry and applies `T`/`N` in the
/// flag walk, so a `t` before them shows `-1`.
fn mg_vivified(
    req: &MetaRequest,
    key: &[u8],
    res: &StoreOutcome,
    ttls: Ttls,
    now: RelTime,
    out: &mut Vec<u8>,
) {
    let value = req.flags.has(b'v');
    if value {
        proto::write_value_header(out, 0);
    } else {
        proto::write_status(out, MetaStatus::Hd);
    }
    let mut exp: RelTime = 0;
    for (letter, token) in req.flag_tokens() {
        match letter {
            b'T' | b'N' => exp = ttls.step(letter, exp),
            b's' | b'f' | b'l' | b'h' => proto::write_flag_u64(out, letter, 0),
            b't' => write_ttl(out, exp, now),
            b'c' => proto::write_flag_u64(out, b'c', res.cas),
            b'O' => write_opaque_token(out, token),
            // memcached does not mark a vivified item's key binary.
            b'k' => proto::write_key(out, key, false),
            _ => {}
        }
    }
    proto::write_flag(out, b'W');
    proto::end_line(out);
    if value {
        proto::end_line(out);
    }
}

// ---------------------------------------------------------------- ms

fn ms(ctx: &Ctx, req: &MetaRequest, block: Block, out: &mut Vec<u8>) {
    let stats = ctx.stats;
    let store = &ctx.shared.store;
    let end_buf: [u8; 2];
    let (value, end, filled) = match block {
        Block::Bytes(b) => {
            let (value, end) = b.split_at(b.len().saturating_sub(2));
            (value, end, None)
        }
        Block::Filled(item, end) => {
            end_buf = end;
            (&[][..], &end_buf[..], Some(item))
        }
    };
    let value_len = filled.as_ref().map_or(value.len(), Reserved::value_len);
    if end != b"\r\n" {
        if let Some(item) = filled {
            store.release(item);
        }
        // Sent even with `q`; the connection then parses what follows.
        stats.ops.set_cmds.incr();
        out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
        return;
    }
    let mode = match req.set_mode() {
        SetMode::Set => Mode::Set,
        SetMode::Add => Mode::Add,
        SetMode::Replace => Mode::Replace,
        SetMode::Append => Mode::Append,
        SetMode::Prepend => Mode::Prepend,
    };
    let concat = matches!(mode, Mode::Append | Mode::Prepend);
    // memcached turns set and replace with `C` into its CAS command; add
    // ignores `C`, append/prepend only refuse a mismatch.
    let cas_cmd = req.compare_cas.is_some() && matches!(mode, Mode::Set | Mode::Replace);
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let exptime = rel(ctx, req.ttl).unwrap_or(0);
    let flags = req.client_flags.unwrap_or(0);
    let mut args = StoreArgs::new(mode, key, flags, exptime, value);
    // An appended item is a new allocation that memcached does not mark.
    args.key_binary = req.is_base64() && !concat;
    args.set_cas = req.new_cas.unwrap_or(0);
    // memcached looks up the item a store replaces (a watcher sees it).
    let old = watch::lookup(ctx, key, watch::FETCHERS | watch::MUTATIONS);
    if let Some(cas) = req.compare_cas.filter(|_| mode != Mode::Add) {
        args.cas = cas;
        args.invalidate = cas_cmd && req.flags.has(b'I');
    }
    let res = match (req.compare_cas, filled) {
        (Some(0), filled) if cas_cmd => {
            if let Some(item) = filled {
                store.release(item);
            }
            cas_zero(ctx, key)
        }
        (_, Some(item)) => store.store_reserved(&args, item),
        (_, None) => store.store(&args),
    };
    let wreq = watch::StoreReq {
        key,
        cmd: if cas_cmd { "cas" } else { mode_name(mode) },
        exptime,
        flags: args.flags,
        value_len,
    };
    watch::stored(ctx, &wreq, old, res.status, res.class);
    stats.ops.set_cmds.incr();
    stats.class(res.class).set_cmds.incr();
    let status = match res.status {
        StoreStatus::Stored => {
            if cas_cmd {
                stats.ops.cas_hits.incr();
                stats.class(res.class).cas_hits.incr();
            }
            MetaStatus::Hd
        }
        StoreStatus::NotStored => MetaStatus::Ns,
        StoreStatus::Exists => {
            if cas_cmd {
                stats.ops.cas_badval.incr();
                stats.class(res.class).cas_badval.incr();
            }
            MetaStatus::Ex
        }
        StoreStatus::NotFound if cas_cmd => {
            stats.ops.cas_misses.incr();
            MetaStatus::Nf
        }
        StoreStatus::NotFound => MetaStatus::Ns,
        StoreStatus::TooLarge | StoreStatus::NoMemory if concat => MetaStatus::Ns,
        StoreStatus::TooLarge => {
            stats.ops.store_too_large.incr();
            out.extend_from_slice(TOO_LARGE);
            return;
        }
        StoreStatus::NoMemory => {
            stats.ops.store_no_memory.incr();
            out.extend_from_slice(b"SERVER_ERROR out of memory storing object\r\n");
            return;
        }
    };
    if status == MetaStatus::Hd && req.is_quiet() {
        return;
    }
    proto::write_status(out, status);
    for (letter, token) in req.flag_tokens() {
        match letter {
            b'O' => write_opaque_token(out, token),
            b'k' => proto::write_key(out, key, req.is_base64()),
            b'c' => proto::write_flag_u64(out, b'c', res.cas),
            _ => {}
        }
    }
    proto::end_line(out);
}

/// memcached's word for a store mode in watch lines.
fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Set => "set",
        Mode::Add => "add",
        Mode::Replace => "replace",
        Mode::Append => "append",
        Mode::Prepend => "prepend",
    }
}

/// A CAS set with `C0`: memcached compares the zero, which no item with a
/// CAS matches, so an existing item is `EX` and a missing one `NF`.
fn cas_zero(ctx: &Ctx, key: &[u8]) -> StoreOutcome {
    let class = ctx
        .shared
        .store
        .get(key, false, |r| r.map(|item| item.class_id()).ok());
    StoreOutcome {
        status: match class {
            Some(_) => StoreStatus::Exists,
            None => StoreStatus::NotFound,
        },
        cas: 0,
        class: class.unwrap_or(0),
    }
}

// ---------------------------------------------------------------- md

fn md(ctx: &Ctx, req: &MetaRequest, out: &mut Vec<u8>, pins: &mut Pins) {
    let stats = ctx.stats;
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let mut args = DeleteArgs::new(key);
    if req.flags.has(b'I') {
        args.invalidate = Some(rel(ctx, req.ttl));
    }
    args.set_cas = req.new_cas.unwrap_or(0);
    args.clear_value = req.flags.has(b'x');
    let old = watch::lookup(ctx, key, watch::FETCHERS | watch::DELETIONS);
    let status = match req.compare_cas {
        // `C0` is compared too: it matches only an item without a CAS.
        Some(0) if !ctx.shared.settings.no_cas => match cas_zero(ctx, key).status {
            StoreStatus::Exists => DeleteStatus::Exists,
            _ => DeleteStatus::NotFound,
        },
        cas => {
            args.cas = cas.unwrap_or(0);
            let res = ctx.shared.store.delete(&args);
            if res.no_memory {
                out.extend_from_slice(b"SERVER_ERROR out of memory\r\n");
                return;
            }
            if let Some((from, to)) = res.renamed {
                pins.renamed(from, to);
            }
            if res.status == DeleteStatus::Deleted && args.invalidate.is_none() {
                stats.ops.delete_hits.incr();
                stats.class(res.class).delete_hits.incr();
                if !args.clear_value {
                    // Only a removal is a deletion (`I` and `x` keep an item).
                    watch::deleted(key, "md", res.class, watch::looked_size(old));
                }
            }
            res.status
        }
    };
    let status = match status {
        DeleteStatus::Deleted if req.is_quiet() => return,
        DeleteStatus::Deleted => MetaStatus::Hd,
        DeleteStatus::NotFound => {
            stats.ops.delete_misses.incr();
            MetaStatus::Nf
        }
        DeleteStatus::Exists => {
            stats.ops.delete_misses.incr();
            MetaStatus::Ex
        }
    };
    proto::write_status(out, status);
    write_opaque_key(out, req, key);
    proto::end_line(out);
}

// ---------------------------------------------------------------- ma

fn ma(ctx: &Ctx, req: &MetaRequest, out: &mut Vec<u8>, held: &[ItemId]) {
    let shared = ctx.shared;
    let stats = ctx.stats;
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let incr = req.arith_mode() == ArithMode::Incr;
    let ttls = Ttls::new(ctx, req);
    let mut args = ArithArgs::new(key, incr, req.delta_or_default());
    args.held = held;
    args.cas = req.compare_cas.unwrap_or(0);
    args.set_cas = req.new_cas.unwrap_or(0);
    if req.vivify_ttl.is_some() {
        args.create = Some((req.initial.unwrap_or(0), ttls.created(req)));
    }
    args.exptime = ttls.ttl;
    watch::lookup(ctx, key, watch::FETCHERS);
    let res = shared.store.arith(&args);
    let created = match res.status {
        ArithStatus::Ok => {
            if incr {
                stats.ops.incr_hits.incr();
                stats.class(res.class).incr_hits.incr();
            } else {
                stats.ops.decr_hits.incr();
                stats.class(res.class).decr_hits.incr();
            }
            false
        }
        ArithStatus::Created => {
            // memcached creates the item with no expiry and applies `N`
            // after its add, so the add's line shows ttl 0.
            watch::arith_created(ctx, key, 0, res.class, res.value);
            true
        }
        ArithStatus::NotFound | ArithStatus::Exists => {
            let status = if res.status == ArithStatus::Exists {
                MetaStatus::Ex
            } else {
                if incr {
                    stats.ops.incr_misses.incr();
                } else {
                    stats.ops.decr_misses.incr();
                }
                MetaStatus::Nf
            };
            proto::write_status(out, status);
            write_opaque_key(out, req, key);
            proto::end_line(out);
            return;
        }
        ArithStatus::NonNumeric => {
            out.extend_from_slice(
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            );
            return;
        }
        ArithStatus::NoMemory if args.create.is_some() => {
            out.extend_from_slice(b"SERVER_ERROR Out of memory allocating new item\r\n");
            return;
        }
        ArithStatus::NoMemory => {
            out.extend_from_slice(b"SERVER_ERROR out of memory\r\n");
            return;
        }
    };
    // An update is the nominal reply `q` hides; a creation is reported.
    if req.is_quiet() && !created {
        return;
    }
    let mut digits = [0u8; 20];
    let number = number::decimal(res.value, &mut digits);
    let value = req.flags.has(b'v');
    if value {
        proto::write_value_header(out, number.len() as u32);
    } else {
        proto::write_status(out, MetaStatus::Hd);
    }
    let now = shared.clock.now();
    // The exptime as memcached's flag walk sees it on the item its incr
    // found: a created item starts with none (`N` then sets it), an
    // updated one with its exptime from before, which `T` then changes.
    // On a new item made for the result, that `T` changed only the old
    // copy (`ArithArgs::exptime`), but `t` after it still shows it.
    let mut exp = if created { 0 } else { res.prev_exptime };
    for (letter, token) in req.flag_tokens() {
        match letter {
            b'T' => exp = ttls.ttl.unwrap_or(exp),
            b'N' if created => exp = ttls.step(b'N', exp),
            b'c' => proto::write_flag_u64(out, b'c', res.cas),
            b't' => write_ttl(out, exp, now),
            b'O' => write_opaque_token(out, token),
            b'k' => proto::write_key(out, key, req.is_base64()),
            _ => {}
        }
    }
    proto::end_line(out);
    if value {
        out.extend_from_slice(number);
        proto::end_line(out);
    }
}

// ---------------------------------------------------------------- me

/// `me <key> [b]`: memcached's debug line for one item. `size` is the
/// item's size as memcached would lay it out (header, key, suffix, value,
/// CAS), so tools that read it see the numbers they expect.
fn me(ctx: &Ctx, req: &MetaRequest, out: &mut Vec<u8>) {
    let shared = ctx.shared;
    ctx.stats.ops.meta_cmds.incr();
    let mut kbuf = [0u8; DECODED_KEY_MAX];
    let key = req.key_bytes(&mut kbuf);
    let now = shared.clock.now();
    let use_cas = !shared.settings.no_cas;
    let found = shared.store.get(key, false, |r| match r {
        Ok(item) => {
            watch::item_get(key, watch::found(item.class_id(), item.value_len()));
            out.extend_from_slice(b"ME ");
            if item.key_binary() {
                proto::encode_base64(item.key(), out);
            } else {
                out.extend_from_slice(item.key());
            }
            let exp = item.exptime();
            // memcached prints `current_time - exptime` as an int.
            let exp = if exp == 0 {
                -1
            } else {
                i64::from(now.wrapping_sub(exp) as i32)
            };
            let la = i64::from(now.wrapping_sub(item.last_access()));
            push_item_fields(item, exp, la, use_cas, out);
            proto::end_line(out);
            Ok(())
        }
        Err(miss) => {
            watch::item_get(key, miss.into());
            Err(miss)
        }
    });
    if let Err(miss) = found {
        super::count_miss_reason(ctx, miss);
        proto::write_status(out, MetaStatus::En);
        proto::end_line(out);
    }
}

/// ` exp=<exp> la=<la> cas=.. fetch=yes|no cls=.. size=..`: the item
/// fields `me` and `lru_crawler metadump` share (they differ in how they
/// express the two times). `size` is the item's size as memcached would
/// lay it out, so tools that read it see the numbers they expect.
pub(crate) fn push_item_fields(
    item: &crate::store::ItemRef<'_>,
    exp: i64,
    la: i64,
    use_cas: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b" exp=");
    proto::push_i64(out, exp);
    out.extend_from_slice(b" la=");
    proto::push_i64(out, la);
    out.extend_from_slice(b" cas=");
    push_u64(out, item.cas());
    out.extend_from_slice(if item.fetched() {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_u64(out, u64::from(item.class_id()));
    out.extend_from_slice(b" size=");
    let size = memcached_item_size(item.key().len(), item.flags(), item.value_len(), use_cas);
    push_u64(out, size as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Settings;
    use crate::exec::Shared;
    use crate::protocol::meta::parse_meta;
    use crate::stats::ThreadStats;

    struct Env {
        shared: Shared,
        stats: ThreadStats,
    }

    impl Env {
        fn new() -> Env {
            Env {
                shared: Shared::new(Settings::default(), Clock::new()),
                stats: ThreadStats::default(),
            }
        }

        /// One request line (and `ms` block) through precheck and run, as
        /// the text session does; returns the reply.
        fn send(&self, line: &[u8], block: &[u8]) -> Vec<u8> {
            let ctx = Ctx {
                shared: &self.shared,
                stats: &self.stats,
            };
            let mut out = Out::default();
            let Ok(req) = parse_meta(line) else {
                return b"PARSE\r\n".to_vec();
            };
            if req.command == MetaCommand::Set {
                if ms_precheck(&ctx, &req, &mut out).is_err() {
                    return out.to_vec();
                }
                run(
                    &ctx,
                    &req,
                    Some(Block::Bytes(block)),
                    &mut out,
                    &mut Pins::default(),
                );
            } else {
                run(&ctx, &req, None, &mut out, &mut Pins::default());
            }
            out.to_vec()
        }

        fn text(&self, line: &str) -> String {
            let (line, block) = line.split_once('|').unwrap_or((line, ""));
            String::from_utf8_lossy(&self.send(line.as_bytes(), block.as_bytes())).into_owned()
        }
    }

    #[test]
    fn ttl_flags_follow_request_order() {
        let env = Env::new();
        assert_eq!(env.text("ms a 2 T100|ab\r\n"), "HD\r\n");
        env.shared.clock.advance(10);
        assert_eq!(env.text("mg a t T30"), "HD t90\r\n");
        assert_eq!(env.text("mg a t"), "HD t30\r\n");
        assert_eq!(env.text("ma n N0 J5 t T40 v"), "VA 1 t-1\r\n5\r\n");
        assert_eq!(env.text("mg n t"), "HD t40\r\n");
        assert_eq!(env.text("ma n t T20"), "HD t40\r\n");
        assert_eq!(env.text("mg n t"), "HD t20\r\n");
        assert_eq!(env.text("ma n T50 t"), "HD t50\r\n");
        assert_eq!(env.text("mg x t N30 T90"), "HD t-1 W\r\n");
        assert_eq!(env.text("mg x t"), "HD t90 Z\r\n");
        assert_eq!(env.text("mg x t t"), "PARSE\r\n");
    }

    #[test]
    fn me_reports_memcached_layout() {
        let env = Env::new();
        assert_eq!(env.text("me a"), "EN\r\n");
        assert_eq!(env.text("ms foo 2 T60|ab\r\n"), "HD\r\n");
        let me = env.text("me foo");
        assert!(me.starts_with("ME foo exp=-60 la=0 cas="), "{me}");
        assert!(me.contains(" fetch=no cls="), "{me}");
        assert!(me.ends_with(" size=64\r\n"), "{me}");
        assert_eq!(env.stats.ops.meta_cmds.get(), 2);
    }

    #[test]
    fn too_large_ms_is_swallowed_and_removes_the_old_item() {
        let env = Env::new();
        assert_eq!(env.text("ms k 2|ab\r\n"), "HD\r\n");
        let ctx = Ctx {
            shared: &env.shared,
            stats: &env.stats,
        };
        let req = parse_meta(b"ms k 2000000 q").expect("parses");
        let mut out = Vec::new();
        assert_eq!(ms_precheck(&ctx, &req, &mut out), Err(2_000_002));
        assert_eq!(out, TOO_LARGE);
        assert_eq!(env.text("mg k v"), "EN\r\n");
        assert_eq!(env.stats.ops.store_too_large.get(), 1);
    }

    #[test]
    fn quiet_rules() {
        let env = Env::new();
        assert_eq!(env.text("mg a q k"), "");
        assert_eq!(env.text("ms a 1 q|x\r\n"), "");
        assert_eq!(env.text("ms a 1 q ME|x\r\n"), "NS\r\n");
        assert_eq!(env.text("mg a q s"), "HD s1\r\n");
        assert_eq!(env.text("ms n 1|1\r\n"), "HD\r\n");
        assert_eq!(env.text("ma n q v"), "");
        assert_eq!(env.text("ma m q N0 v"), "VA 1\r\n0\r\n");
        assert_eq!(env.text("ma z q"), "NF\r\n");
        assert_eq!(env.text("md a q"), "");
        assert_eq!(env.text("md a q"), "NF\r\n");
        assert_eq!(env.text("ms a 1 q|xy"), "CLIENT_ERROR bad data chunk\r\n");
    }

    #[test]
    fn arbitrary_lines_never_panic() {
        let env = Env::new();
        let words: &[&[u8]] = &[
            b"mg",
            b"ms",
            b"md",
            b"ma",
            b"mn",
            b"me",
            b"k",
            b"Zm9v",
            b"b",
            b"v",
            b"q",
            b"t",
            b"T-1",
            b"T2147483648",
            b"N0",
            b"N-5",
            b"R99",
            b"C0",
            b"C18446744073709551615",
            b"I",
            b"MA",
            b"MP",
            b"ME",
            b"MD",
            b"D18446744073709551615",
            b"J7",
            b"O",
            b"Oxy",
            b"c",
            b"f",
            b"h",
            b"l",
            b"s",
            b"u",
            b"k",
            b"F4294967295",
            b"1",
            b"0",
            b"3",
        ];
        // A deterministic walk over many combinations (no RNG dependency).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut line = Vec::new();
            let n = 1 + (seed % 7) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if !line.is_empty() {
                    line.push(b' ');
                }
                line.extend_from_slice(words[(seed % words.len() as u64) as usize]);
            }
            let block: &[u8] = match seed % 4 {
                0 => b"abc\r\n",
                1 => b"1\r\n",
                2 => b"x",
                _ => b"",
            };
            let _ = env.send(&line, block);
        }
        assert_eq!(env.text("mn"), "MN\r\n");
    }
}
