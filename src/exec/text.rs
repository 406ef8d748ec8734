//! The text protocol's meaning: each command as memcached 1.6 runs it.
//!
//! `Session::process` takes whatever input a connection has buffered and
//! runs every complete request in it (up to a budget), appending all
//! replies to one output buffer so the server can send a whole batch with
//! one write. A request whose line or data block has not fully arrived is
//! left in the input, untouched, for the next call.

use crate::clock::RelTime;
use crate::protocol::meta::{self as meta_proto, MetaCommand, MetaError};
use crate::protocol::number;
use crate::protocol::text::{self as proto, Command, Frame, StoreCmd};
use crate::store::{
    ArithArgs, ArithStatus, DeleteArgs, DeleteStatus, ItemId, Mode, Reserved, StoreArgs,
    StoreStatus,
};

use super::detail::Op as DetailOp;
use super::fill::{Kind, Slot, FILL_MIN};
use super::out::Out;
use super::pins::Pins;
use super::watch;
use super::{Action, Ctx, StopRequest, WIRE_VERSION};
use crate::latency::Family;

const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";

/// Per-connection text protocol state that outlives one read.
#[derive(Debug, Default)]
pub struct Session {
    /// Bytes of a refused data block still to discard.
    /// (u32: a data block is at most 2^31 bytes; this struct lives in
    /// every connection, so its size matters.)
    swallow: u32,
    /// Send "object too large" once the swallow is done: memcached
    /// answers a refused data block only after it has read the whole
    /// block.
    too_large_after_swallow: bool,
    /// A multi-get stopped because its output reached the limit: the
    /// offset (in its key list) of the next key. The get's line stays at
    /// the front of the input until it completes.
    get_resume: Option<u32>,
    /// `-Y` authentication state (see `exec::auth`).
    auth: super::auth::TextAuth,
    /// A `lru_crawler metadump` stopped because its output reached the
    /// limit: where its walk stands. Like a stopped get, its line stays at
    /// the front of the input until it completes.
    dump: Option<Box<crate::store::Walk>>,
    /// Items this connection's unsent replies hold, as memcached counts
    /// them (see `exec::pins`).
    pins: Pins,
    /// A storage command whose value is being read into its item (see
    /// `exec::fill`); made on a connection's first such command.
    pub(super) fill: Option<Box<Slot>>,
    /// Whether a large value may be read into its item before it has
    /// arrived (stream connections; a datagram is complete or never).
    fills: bool,
}

/// Result of one `process` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes fully handled; the caller drops them.
    pub consumed: usize,
    /// Requests handled.
    pub requests: usize,
    /// What the connection must do next.
    pub action: Action,
    /// Bytes the next request needs in total (line + data block) when it
    /// is known and larger than what is buffered, so the caller can
    /// reserve room once instead of growing step by step.
    pub need: usize,
    /// Complete requests may remain in the input: processing stopped
    /// because the output reached its limit. The caller sends the output
    /// and calls again without waiting for new input.
    pub more: bool,
}

impl Progress {
    /// Nothing done, nothing pending.
    pub fn idle() -> Self {
        Progress {
            consumed: 0,
            requests: 0,
            action: Action::Continue,
            need: 0,
            more: false,
        }
    }
}

pub use crate::store::memcached_item_size;

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// A session of a stream connection: large values are read into
    /// their items (see `exec::fill`).
    pub fn for_stream() -> Self {
        Session {
            fills: true,
            ..Session::default()
        }
    }

    /// Start filling `item` (see `exec::fill`); `part` is the value's
    /// first bytes, already here.
    fn begin_fill(&mut self, ctx: &Ctx, item: Reserved, kind: Kind, line: &[u8], part: &[u8]) {
        let slot = self.fill.get_or_insert_with(Box::default);
        slot.begin(&ctx.shared.store, item, kind, line, part);
    }

    /// A filled command that is ready: run it. Returns the input it took
    /// (the value's bytes still buffered and its two end bytes) and
    /// whether it ran; `None` when no value is being filled.
    fn run_fill(&mut self, ctx: &Ctx, input: &[u8], out: &mut Out) -> Option<(usize, bool)> {
        let slot = self.fill.as_mut().filter(|s| s.active())?;
        let store = &ctx.shared.store;
        let (took, ready) = slot.step(store, input);
        let Some(f) = ready else {
            return Some((took, false));
        };
        let end = [input[took], input[took + 1]];
        match f.kind {
            Kind::Text { cmd, noreply } => {
                run_store(ctx, cmd, Data::Filled(f.item, end), 0, noreply, out);
            }
            Kind::Meta => match meta_proto::parse_meta(&slot.line) {
                Ok(req) => {
                    let data = Some(super::meta::Block::Filled(f.item, end));
                    super::meta::run(ctx, &req, data, out, &mut self.pins);
                }
                // The line parsed when the fill began.
                Err(_) => store.release(f.item),
            },
            Kind::Binary => store.release(f.item),
        }
        Some((took + 2, true))
    }

    /// True while discarding a refused data block.
    pub fn swallowing(&self) -> bool {
        self.swallow > 0
    }

    /// Run the complete requests at the start of `input`, at most
    /// `budget` of them, appending replies to `out`. Stops early when the
    /// output grows past `out_limit` (the caller flushes and calls again).
    pub fn process(
        &mut self,
        ctx: &Ctx,
        input: &[u8],
        out: &mut Out,
        budget: usize,
        out_limit: usize,
    ) -> Progress {
        let mut pos = 0;
        let mut requests = 0;
        let max_get_line = ctx.shared.settings.item_size_max.max(64 * 1024);
        let per_event = ctx.shared.settings.reqs_per_event;
        let mut counted = 0;
        let progress = |pos, requests, action, need| Progress {
            consumed: pos,
            requests,
            action,
            need,
            more: false,
        };
        loop {
            while counted < requests {
                self.pins.command_done(per_event);
                counted += 1;
            }
            if self.swallow > 0 {
                let n = (self.swallow as usize).min(input.len() - pos);
                self.swallow -= n as u32;
                pos += n;
                if self.swallow > 0 {
                    self.pins.batch_end();
                    return progress(pos, requests, Action::Continue, 0);
                }
                if std::mem::take(&mut self.too_large_after_swallow) {
                    reply(out, TOO_LARGE);
                }
            }
            if requests >= budget {
                return progress(pos, requests, Action::Continue, 0);
            }
            if out.total() >= out_limit {
                return Progress {
                    more: true,
                    ..progress(pos, requests, Action::Continue, 0)
                };
            }
            if let Some((took, ran)) = self.run_fill(ctx, &input[pos..], out) {
                // A value being read into its item: what was buffered went
                // in (once); its `\r\n` completes the command.
                pos += took;
                if !ran {
                    self.pins.batch_end();
                    return progress(pos, requests, Action::Continue, 0);
                }
                requests += 1;
                continue;
            }
            let buf = &input[pos..];
            if buf.is_empty() {
                self.pins.batch_end();
                return progress(pos, requests, Action::Continue, 0);
            }
            let gate = super::auth::text_hook(&mut self.auth, ctx, buf, out, pos, requests);
            if let Some(gate) = gate {
                match gate {
                    Ok(n) => {
                        pos += n;
                        requests += 1;
                        continue;
                    }
                    Err(p) => return p,
                }
            }
            let (line, line_len) = match proto::frame(buf, max_get_line) {
                Frame::Incomplete => {
                    self.pins.batch_end();
                    return progress(pos, requests, Action::Continue, 0);
                }
                Frame::TooLong => return progress(pos, requests, Action::Close, 0),
                Frame::Line { line, consumed } => (line, consumed),
            };
            watch::log_request(line);
            let cmd = match proto::parse_line(line) {
                Ok(cmd) => {
                    watch::on_text_command(ctx, line, &cmd);
                    cmd
                }
                Err(rej) => {
                    if !rej.noreply {
                        reply(out, rej.msg);
                    }
                    pos += line_len;
                    requests += 1;
                    continue;
                }
            };
            if let Command::Store {
                cmd: sc,
                key,
                flags,
                exptime,
                bytes,
                cas,
                noreply,
            } = cmd
            {
                crate::latency::note(ctx.stats, Family::Set);
                let settings = &ctx.shared.settings;
                if memcached_item_size(key.len(), flags, bytes, !settings.no_cas)
                    > settings.item_size_max
                {
                    ctx.stats.ops.store_too_large.incr();
                    if !noreply {
                        self.too_large_after_swallow = true;
                    }
                    if sc == StoreCmd::Set {
                        // A failed set must not leave the old value behind.
                        ctx.shared.store.delete(&DeleteArgs::new(key));
                    }
                    pos += line_len;
                    requests += 1;
                    self.swallow = (bytes + 2) as u32;
                    continue;
                }
                let total = line_len + bytes + 2;
                if buf.len() < total {
                    self.pins.batch_end();
                    if self.fills && total - buf.len() >= FILL_MIN {
                        if let Some(item) = reserve(ctx, sc, key, flags, exptime, cas, bytes) {
                            let kind = Kind::Text { cmd: sc, noreply };
                            self.begin_fill(ctx, item, kind, &[], &buf[line_len..]);
                            return progress(input.len(), requests, Action::Continue, 0);
                        }
                    }
                    return progress(pos, requests, Action::Continue, total);
                }
                let block = &buf[line_len..total];
                let (value, end) = block.split_at(bytes);
                let data = Data::Block(key, flags, exptime, value, end);
                run_store(ctx, sc, data, cas, noreply, out);
                pos += total;
                requests += 1;
                continue;
            }
            if let Command::Meta { line } = cmd {
                crate::latency::note(ctx.stats, Family::Meta);
                match meta_proto::parse_meta(line) {
                    Err(e) => {
                        if e == MetaError::OpaqueTooLong {
                            opaque_too_long_side_effects(ctx, line, out, &mut self.pins);
                        }
                        reply(out, e.as_str());
                        if let Some(n) = meta_proto::rejected_data_len(line) {
                            self.swallow = n + 2;
                        }
                        pos += line_len;
                    }
                    Ok(req) if req.command == MetaCommand::Set => {
                        if let Err(n) = super::meta::ms_precheck(ctx, &req, out) {
                            self.swallow = n as u32;
                            pos += line_len;
                        } else {
                            let total = line_len + req.data_len as usize + 2;
                            if buf.len() < total {
                                self.pins.batch_end();
                                if self.fills && total - buf.len() >= FILL_MIN {
                                    if let Some(item) = super::meta::ms_reserve(ctx, &req) {
                                        let part = &buf[line_len..];
                                        self.begin_fill(ctx, item, Kind::Meta, line, part);
                                        return progress(
                                            input.len(),
                                            requests,
                                            Action::Continue,
                                            0,
                                        );
                                    }
                                }
                                return progress(pos, requests, Action::Continue, total);
                            }
                            let data = Some(super::meta::Block::Bytes(&buf[line_len..total]));
                            super::meta::run(ctx, &req, data, out, &mut self.pins);
                            pos += total;
                        }
                    }
                    Ok(req) => {
                        pos += line_len;
                        let action = super::meta::run(ctx, &req, None, out, &mut self.pins);
                        if action != Action::Continue {
                            return progress(pos, requests + 1, action, 0);
                        }
                    }
                }
                requests += 1;
                continue;
            }
            if let Command::Get { keys, cas, touch } = cmd {
                let from = self.get_resume.take().unwrap_or(0) as usize;
                match get(ctx, keys, from, cas, touch, out, out_limit) {
                    Some(next) => {
                        // Output is full: send it, then come back here.
                        self.get_resume = Some(next as u32);
                        return Progress {
                            more: true,
                            ..progress(pos, requests, Action::Continue, 0)
                        };
                    }
                    None => {
                        // memcached writes a classic get's reply at once.
                        self.pins.written();
                        // Counted once, when done (a get resumed after a
                        // full output is parsed again).
                        let f = if touch.is_some() {
                            Family::Touch
                        } else {
                            Family::Get
                        };
                        crate::latency::note(ctx.stats, f);
                        pos += line_len;
                        requests += 1;
                        continue;
                    }
                }
            }
            if let Command::Admin {
                name: b"lru_crawler",
                args,
            } = cmd
            {
                if let Some(list) = super::admin::metadump_args(args) {
                    let queued = self.pins.replies_queued();
                    let dump = &mut self.dump;
                    if super::admin::metadump(ctx, list, queued, dump, out, out_limit)
                        == super::admin::Dump::More
                    {
                        // Counted as a request so that the -R budget lets
                        // other connections in between pieces of a dump.
                        return Progress {
                            more: true,
                            ..progress(pos, requests + 1, Action::Continue, 0)
                        };
                    }
                    pos += line_len;
                    requests += 1;
                    continue;
                }
            }
            if let Command::Admin {
                name: b"watch",
                args,
            } = cmd
            {
                pos += line_len;
                requests += 1;
                crate::latency::note_text(ctx.stats, &cmd);
                if watch::start(ctx, args, self.pins.replies_queued(), out) {
                    // A watcher's input is never read again (memcached
                    // leaves it in conn_watch): what was pipelined behind
                    // `watch` does not run.
                    self.pins.batch_end();
                    return progress(input.len(), requests, Action::Continue, 0);
                }
                continue;
            }
            pos += line_len;
            requests += 1;
            crate::latency::note_text(ctx.stats, &cmd);
            let action = run(ctx, cmd, out, self.pins.held());
            if action != Action::Continue {
                if let Action::Swallow(n) = action {
                    self.swallow = n as u32;
                    continue;
                }
                return progress(pos, requests, action, 0);
            }
        }
    }
}

/// memcached checks an `mg`/`ma` opaque's length only while writing the
/// reply, after the command has acted (fetched, touched, vivified,
/// counted). Replay those effects and throw the reply away. (An error
/// path: the one allocation is fine here.)
///
/// `ma` has done all its work by then: run it without its `O` tokens.
/// `mg` applies its flags in order while writing, so flags after the bad
/// opaque never act, and the win token is never marked. What memcached
/// decided before that walk still holds: `b` (key encoding), `u` (no
/// bump), and `N` (it vivifies with no expiry: `N0` first keeps that
/// while a `T` before the opaque still applies). With `N`, `R` or `T`
/// anywhere memcached defers the bump until after the reply, which the
/// error skips: `u`.
fn opaque_too_long_side_effects(ctx: &Ctx, line: &[u8], out: &mut Out, pins: &mut Pins) {
    let is_mg = line.starts_with(b"mg ");
    if !(is_mg || line.starts_with(b"ma ")) {
        return;
    }
    let toks: Vec<&[u8]> = proto::Tokens::new(line).collect();
    let bad = toks
        .iter()
        .skip(2)
        .position(|t| t.first() == Some(&b'O') && t.len() > meta_proto::OPAQUE_TOKEN_MAX)
        .map_or(toks.len(), |i| i + 2);
    let mut kept: Vec<&[u8]> = Vec::with_capacity(toks.len() + 1);
    for (i, &tok) in toks.iter().enumerate() {
        let letter = tok.first().copied();
        if i >= 2 && letter == Some(b'O') {
            continue;
        }
        if !is_mg || i < bad || matches!(letter, Some(b'b' | b'u')) {
            kept.push(tok);
        }
    }
    let n_late = is_mg
        && toks[bad.min(toks.len())..]
            .iter()
            .any(|t| t.first() == Some(&b'N'));
    let n_early = toks[2.min(toks.len())..bad.min(toks.len())]
        .iter()
        .any(|t| t.first() == Some(&b'N'));
    if n_late && !n_early && kept.len() >= 2 {
        kept.insert(2, b"N0");
    }
    let deferred_bump = toks
        .iter()
        .skip(2)
        .any(|t| matches!(t.first(), Some(b'N' | b'R' | b'T')));
    let has_u = kept.iter().skip(2).any(|t| t.first() == Some(&b'u'));
    if is_mg && deferred_bump && !has_u && kept.len() >= 2 {
        kept.push(b"u");
    }
    let stripped = kept.join(&b' ');
    if let Ok(req) = meta_proto::parse_meta(&stripped) {
        let mark = out.len();
        if is_mg {
            super::meta::mg_refused(ctx, &req, out);
        } else {
            super::meta::run(ctx, &req, None, out, pins);
        }
        out.truncate(mark);
    }
}

/// Append `msg\r\n`, or with `noreply` only log what memcached's `-vv`
/// logs for a reply it suppresses (`>fd NOREPLY msg`).
#[inline]
fn answer(out: &mut Vec<u8>, msg: &[u8], noreply: bool) {
    if noreply {
        watch::log_noreply(msg);
    } else {
        out.extend_from_slice(msg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Append `msg\r\n`.
#[inline]
fn reply(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A storage command's data: in the input, or already in its item.
enum Data<'a> {
    /// Key, flags, exptime as sent, value, and the two bytes after it.
    Block(&'a [u8], u32, i64, &'a [u8], &'a [u8]),
    /// A value read into its item (see `exec::fill`), and the two bytes after it.
    Filled(Reserved, [u8; 2]),
}

/// Allocate the item of a storage command whose value is still arriving,
/// if its kind can be filled in place (append and prepend build theirs
/// from the old item; a `cas` of 0 matches nothing).
fn reserve(
    ctx: &Ctx,
    sc: StoreCmd,
    key: &[u8],
    flags: u32,
    exptime: i64,
    cas: u64,
    bytes: usize,
) -> Option<Reserved> {
    match sc {
        StoreCmd::Append | StoreCmd::Prepend => return None,
        StoreCmd::Cas if cas == 0 => return None,
        _ => {}
    }
    let exptime = ctx.shared.clock.realtime(exptime);
    ctx.shared.store.reserve(key, flags, exptime, cas, bytes)
}

fn run_store(ctx: &Ctx, sc: StoreCmd, data: Data, cas: u64, noreply: bool, out: &mut Vec<u8>) {
    let stats = ctx.stats;
    let store = &ctx.shared.store;
    let (end, value_len) = match &data {
        Data::Block(_, _, _, value, end) => (*end, value.len()),
        Data::Filled(item, end) => (&end[..], item.value_len()),
    };
    if end != b"\r\n" {
        if let Data::Filled(item, _) = data {
            store.release(item);
        }
        stats.ops.set_cmds.incr();
        if !noreply {
            reply(out, "CLIENT_ERROR bad data chunk");
        }
        return;
    }
    let mode = match sc {
        StoreCmd::Set | StoreCmd::Cas => Mode::Set,
        StoreCmd::Add => Mode::Add,
        StoreCmd::Replace => Mode::Replace,
        StoreCmd::Append => Mode::Append,
        StoreCmd::Prepend => Mode::Prepend,
    };
    // A filled item's key is copied out of it: the item moves into the
    // store below while the key is still needed.
    let mut key_buf = [0u8; 250];
    let (key, flags, exptime, value, cas) = match &data {
        Data::Block(key, flags, exptime, value, _) => (
            *key,
            *flags,
            ctx.shared.clock.realtime(*exptime),
            *value,
            cas,
        ),
        Data::Filled(item, _) => {
            let key = store.reserved_key(item);
            key_buf[..key.len()].copy_from_slice(key);
            let (flags, exptime, cas) = store.reserved_args(item);
            (&key_buf[..key.len()], flags, exptime, &[][..], cas)
        }
    };
    let shared = ctx.shared;
    if shared.detail.enabled() {
        shared
            .detail
            .record(key, shared.settings.prefix_delimiter, DetailOp::Set);
    }
    let mut args = StoreArgs::new(mode, key, flags, exptime, value);
    // memcached looks up the item a store replaces (a watcher sees it).
    let old = watch::lookup(ctx, key, watch::FETCHERS | watch::MUTATIONS);
    let wreq = watch::StoreReq {
        key,
        cmd: watch::store_cmd_name(sc),
        exptime,
        flags: args.flags,
        value_len,
    };
    if sc == StoreCmd::Cas {
        // memcached compares even a zero CAS: "cas k 0 0 1 0" never matches.
        args.cas = cas;
        if cas == 0 {
            if let Data::Filled(item, _) = data {
                store.release(item);
            }
            return finish_cas_zero(ctx, &wreq, old, noreply, out);
        }
    }
    let res = match data {
        Data::Block(..) => store.store(&args),
        Data::Filled(item, _) => store.store_reserved(&args, item),
    };
    watch::stored(ctx, &wreq, old, res.status, res.class);
    stats.ops.set_cmds.incr();
    stats.class(res.class).set_cmds.incr();
    let msg = match res.status {
        StoreStatus::Stored => {
            if sc == StoreCmd::Cas {
                stats.ops.cas_hits.incr();
                stats.class(res.class).cas_hits.incr();
            }
            "STORED"
        }
        StoreStatus::NotStored if sc == StoreCmd::Cas => {
            stats.ops.cas_misses.incr();
            "NOT_FOUND"
        }
        StoreStatus::NotStored => "NOT_STORED",
        StoreStatus::Exists => {
            stats.ops.cas_badval.incr();
            stats.class(res.class).cas_badval.incr();
            "EXISTS"
        }
        StoreStatus::NotFound => {
            stats.ops.cas_misses.incr();
            "NOT_FOUND"
        }
        StoreStatus::TooLarge => match mode {
            Mode::Append | Mode::Prepend => "NOT_STORED",
            _ => {
                stats.ops.store_too_large.incr();
                "SERVER_ERROR object too large for cache"
            }
        },
        StoreStatus::NoMemory => match mode {
            Mode::Append | Mode::Prepend => "NOT_STORED",
            _ => {
                stats.ops.store_no_memory.incr();
                "SERVER_ERROR out of memory storing object"
            }
        },
    };
    answer(out, msg.as_bytes(), noreply);
}

/// `cas` with a CAS of 0: memcached treats it as "no item can match",
/// even with `-C` (where every item's CAS is 0): a missing key is
/// NOT_FOUND, an existing one EXISTS.
fn finish_cas_zero(
    ctx: &Ctx,
    wreq: &watch::StoreReq<'_>,
    old: Option<watch::Looked>,
    noreply: bool,
    out: &mut Vec<u8>,
) {
    let stats = ctx.stats;
    stats.ops.set_cmds.incr();
    let found = ctx
        .shared
        .store
        .get(wreq.key, false, |r| r.map(|i| i.class_id()).ok());
    let status = match found {
        Some(_) => StoreStatus::Exists,
        None => StoreStatus::NotFound,
    };
    watch::stored(ctx, wreq, old, status, found.unwrap_or(0));
    let msg = match found {
        Some(class) => {
            stats.class(class).set_cmds.incr();
            stats.ops.cas_badval.incr();
            stats.class(class).cas_badval.incr();
            "EXISTS"
        }
        None => {
            stats.ops.cas_misses.incr();
            "NOT_FOUND"
        }
    };
    answer(out, msg.as_bytes(), noreply);
}

/// Run one non-storage command.
/// Runs one command that needs no data block. `held`: the items this
/// connection's unsent replies hold (for incr/decr, see `exec::pins`).
fn run(ctx: &Ctx, cmd: Command, out: &mut Vec<u8>, held: &[ItemId]) -> Action {
    let shared = ctx.shared;
    let stats = ctx.stats;
    match cmd {
        Command::Get { .. } => unreachable!("gets are run by process"),
        Command::Store { .. } => unreachable!("storage commands are run with their data"),
        Command::Delete { key, noreply } => {
            if shared.detail.enabled() {
                let d = shared.settings.prefix_delimiter;
                shared.detail.record(key, d, DetailOp::Delete);
            }
            let old = watch::lookup(ctx, key, watch::FETCHERS | watch::DELETIONS);
            let res = shared.store.delete(&DeleteArgs::new(key));
            let msg = match res.status {
                DeleteStatus::Deleted => {
                    watch::deleted(key, "delete", res.class, watch::looked_size(old));
                    stats.ops.delete_hits.incr();
                    stats.class(res.class).delete_hits.incr();
                    "DELETED"
                }
                _ => {
                    stats.ops.delete_misses.incr();
                    "NOT_FOUND"
                }
            };
            answer(out, msg.as_bytes(), noreply);
            Action::Continue
        }
        Command::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            watch::lookup(ctx, key, watch::FETCHERS);
            let mut args = ArithArgs::new(key, incr, delta);
            args.held = held;
            let res = shared.store.arith(&args);
            let (hits, misses) = if incr {
                (&stats.ops.incr_hits, &stats.ops.incr_misses)
            } else {
                (&stats.ops.decr_hits, &stats.ops.decr_misses)
            };
            let mut num = [0u8; 20];
            let msg: &[u8] = match res.status {
                ArithStatus::Ok | ArithStatus::Created => {
                    hits.incr();
                    let c = stats.class(res.class);
                    if incr {
                        c.incr_hits.incr();
                    } else {
                        c.decr_hits.incr();
                    }
                    number::decimal(res.value, &mut num)
                }
                ArithStatus::NotFound => {
                    misses.incr();
                    b"NOT_FOUND"
                }
                ArithStatus::NonNumeric => {
                    b"CLIENT_ERROR cannot increment or decrement non-numeric value"
                }
                ArithStatus::NoMemory => b"SERVER_ERROR out of memory",
                ArithStatus::Exists => b"EXISTS",
            };
            answer(out, msg, noreply);
            Action::Continue
        }
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            let exp = shared.clock.realtime(exptime);
            stats.ops.touch_cmds.incr();
            let hit = shared.store.get(key, true, |r| match r {
                Ok(item) => {
                    watch::item_get(key, watch::found(item.class_id(), item.value_len()));
                    item.set_exptime(exp);
                    Some(item.class_id())
                }
                Err(miss) => {
                    watch::item_get(key, miss.into());
                    super::count_miss_reason(ctx, miss);
                    None
                }
            });
            let msg = match hit {
                Some(class) => {
                    stats.ops.touch_hits.incr();
                    stats.class(class).touch_hits.incr();
                    "TOUCHED"
                }
                None => {
                    stats.ops.touch_misses.incr();
                    "NOT_FOUND"
                }
            };
            answer(out, msg.as_bytes(), noreply);
            Action::Continue
        }
        Command::FlushAll { delay, noreply } => {
            stats.ops.flush_cmds.incr();
            let msg = if shared.settings.no_flush {
                "CLIENT_ERROR flush_all not allowed"
            } else if let Some(delay) = delay {
                let when: RelTime = if delay > 0 {
                    shared.clock.realtime(delay)
                } else {
                    0
                };
                shared.store.flush(when);
                "OK"
            } else {
                proto::BAD_EXPTIME
            };
            answer(out, msg.as_bytes(), noreply);
            Action::Continue
        }
        Command::Version => {
            out.extend_from_slice(b"VERSION ");
            reply(out, WIRE_VERSION);
            Action::Continue
        }
        Command::Verbosity { level, noreply } => {
            let level = level.min(crate::exec::MAX_VERBOSITY);
            shared
                .verbosity
                .store(level, std::sync::atomic::Ordering::Relaxed);
            crate::logging::set_verbosity(level);
            answer(out, "OK".as_bytes(), noreply);
            Action::Continue
        }
        Command::Quit | Command::HttpRequest => Action::Close,
        Command::RefreshCerts => {
            // memcached's replies: OK, the loader's own error line, or
            // this when TLS is off.
            match &shared.tls {
                None => reply(out, "Error TLS not enabled"),
                Some(tls) => match tls.refresh_certs() {
                    Ok(()) => reply(out, "OK"),
                    Err(msg) => out.extend_from_slice(msg.as_bytes()),
                },
            }
            Action::Continue
        }
        Command::Shutdown { mode } => {
            if !shared.settings.shutdown_enabled {
                reply(out, proto::SHUTDOWN_DISABLED);
                return Action::Continue;
            }
            match mode {
                Some(false) => Action::Stop(StopRequest::Now),
                Some(true) => Action::Stop(StopRequest::Graceful),
                None => {
                    reply(out, proto::BAD_SHUTDOWN);
                    Action::Continue
                }
            }
        }
        Command::CacheMemlimit { megabytes, noreply } => {
            let msg = if megabytes < 8 {
                "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m"
            } else if megabytes > 1_000_000_000 {
                "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes"
            } else {
                match shared.store.set_mem_limit(megabytes as usize * 1024 * 1024) {
                    Ok(()) => {
                        shared
                            .memlimit_mb
                            .store(megabytes, std::sync::atomic::Ordering::Relaxed);
                        shared.rebalancer.request_shrink();
                        log::info!("maxbytes adjusted to {megabytes}m");
                        "OK"
                    }
                    Err(_) => "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust",
                }
            };
            answer(out, msg.as_bytes(), noreply);
            Action::Continue
        }
        Command::Stats { args } => {
            super::stats_cmd::stats(ctx, args, out);
            Action::Continue
        }
        Command::Meta { .. } => unreachable!("meta commands are run by process"),
        Command::Admin { name: b"watch", .. } => unreachable!("watch is run by process"),
        Command::Admin { name, args } => super::admin::run(ctx, name, args, out),
    }
}

/// `get`/`gets`/`gat`/`gats`: one `VALUE` block per hit, then `END`.
///
/// Starts at byte `from` of `keys`. When `out` grows past `out_limit`
/// before the last key, stops and returns the offset of the next key, so
/// a huge multi-get to a client that does not read cannot make the server
/// buffer without bound; unless a key further on is over 250 bytes, which
/// makes the whole reply `CLIENT_ERROR`: then the rest is looked up (for
/// its effects) without keeping any value.
fn get(
    ctx: &Ctx,
    keys: &[u8],
    from: usize,
    cas: bool,
    touch: Option<i64>,
    out: &mut Out,
    out_limit: usize,
) -> Option<usize> {
    let shared = ctx.shared;
    let stats = ctx.stats;
    let exp = touch.map(|t| shared.clock.realtime(t));
    let start = out.len();
    let rest = &keys[from.min(keys.len())..];
    // A key over the limit further on: what this command writes will be
    // dropped, so nothing may be sent before it (see below).
    let mut doomed = false;
    for key in proto::Tokens::new(rest) {
        if !doomed && out.total() >= out_limit {
            let offset = key.as_ptr() as usize - keys.as_ptr() as usize;
            // memcached sends none of a get's values when a later key is
            // too long, however large they are. Look ahead only here, so
            // a get that fits its output pays nothing for it.
            doomed = proto::Tokens::new(&keys[offset..]).any(|k| k.len() > proto::KEY_MAX_LENGTH);
            if !doomed {
                return Some(offset);
            }
        }
        if doomed {
            // Only the lookups' effects count now; keep the output small.
            out.truncate(start);
        }
        if key.len() > proto::KEY_MAX_LENGTH {
            // memcached drops the values it had already queued.
            out.truncate(start);
            reply(out, proto::BAD_FORMAT);
            return None;
        }
        // memcached counts gat/gats keys in cmd_touch only.
        if exp.is_some() {
            stats.ops.touch_cmds.incr();
        } else {
            stats.ops.get_cmds.incr();
        }
        let hit = shared.store.get(key, true, |r| match r {
            Ok(item) => {
                if let Some(e) = exp {
                    item.set_exptime(e);
                }
                watch::item_get(key, watch::found(item.class_id(), item.value_len()));
                let c = if cas { Some(item.cas()) } else { None };
                proto::push_value_header(out, item.key(), item.flags(), item.value_len(), c);
                out.push_value(item);
                out.extend_from_slice(b"\r\n");
                Some(item.class_id())
            }
            Err(miss) => {
                watch::item_get(key, miss.into());
                super::count_miss_reason(ctx, miss);
                None
            }
        });
        let detail = &shared.detail;
        if detail.enabled() {
            let op = DetailOp::Get { hit: hit.is_some() };
            detail.record(key, shared.settings.prefix_delimiter, op);
        }
        match (hit, exp.is_some()) {
            (Some(class), false) => {
                stats.ops.get_hits.incr();
                stats.class(class).get_hits.incr();
            }
            (Some(class), true) => {
                stats.ops.touch_hits.incr();
                stats.class(class).touch_hits.incr();
            }
            (None, false) => stats.ops.get_misses.incr(),
            (None, true) => stats.ops.touch_misses.incr(),
        }
    }
    reply(out, "END");
    None
}
