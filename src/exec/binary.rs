//! The binary protocol's meaning: each opcode as memcached 1.6 runs it.
//!
//! The codec (`protocol::binary`) frames and validates packets; this module
//! decides what a valid request does to the store and the counters, and
//! which reply bytes go back. It reuses the text front end's definitions
//! where memcached shares them (the `-I` item size formula, the `stats`
//! groups, `realtime()` for expiry) so one command has one meaning whichever
//! protocol carries it. The rules of memcached's binary code path are
//! reproduced, including where they differ from its text path, because
//! clients and dashboards were written against them:
//!
//! - GAT/TOUCH count as touches only (`cmd_touch`), not as gets; TOUCH
//!   answers the flags without the value.
//! - A too-large value is refused before the store is asked: no `cmd_set`
//!   and no `store_too_large` (memcached's binary path counts neither); a
//!   failed SET still drops the old value so stale data cannot survive.
//! - ADD/REPLACE/SET with a CAS are compare-and-swap (NOT_FOUND / EXISTS);
//!   a plain ADD that finds the key answers EXISTS, a plain REPLACE that
//!   misses answers NOT_FOUND; APPEND/PREPEND failures answer NOT_STORED.
//! - INCR/DECR on a miss create the item with the initial value unless the
//!   exptime is 0xffffffff; a creation counts neither a hit nor a miss.
//! - FLUSH under `-F` answers `Auth failure.` and leaves the connection open.
//! - STAT knows the groups memcached's binary STAT knows (general,
//!   `settings`, `items`, `slabs`, `sizes`, `reset`, `detail on|off|dump`,
//!   the last as one `detailed` pair); anything else, `conns` included,
//!   answers `Not found`.
//!
//! Quiet opcodes hide what memcached hides (misses for gets, success for
//! writes); every reply of a batch is appended to one output buffer, so a
//! pipeline of quiet requests closed by NOOP goes out in one write.
//!
//! SASL (`-S`): only PLAIN, checked against a `user:password` file (the
//! `MEMCACHED_SASL_PWDB` convention) named by `settings.auth_file` when
//! set, else by the `MEMCACHED_SASL_PWDB` environment variable, and read
//! once per process (memcached rereads it on every attempt; reading it
//! once keeps file I/O off the workers).
//! Before a connection authenticates, every opcode except SASL_LIST_MECHS,
//! SASL_AUTH, SASL_STEP and VERSION (memcached's own list) answers
//! `Auth failure.` and the connection closes. As with memcached, starting
//! a new SASL exchange (LIST_MECHS or AUTH) drops an earlier
//! authentication, and a SASL_AUTH with no data answers AUTH_CONTINUE and
//! expects the credentials in SASL_STEP. Passwords are compared in
//! constant time. Without `-S` the SASL opcodes answer `Unknown command`.

use std::sync::OnceLock;

use crate::protocol::binary::{
    self as proto, BinError, ErrorAction, Extras, Opcode, Parsed, Request, Status,
};
use crate::store::{
    ArithArgs, ArithStatus, DeleteArgs, DeleteStatus, ItemId, Mode, Reserved, StoreArgs,
    StoreStatus,
};

use super::detail::Op as DetailOp;
use super::fill::{Kind, Slot, FILL_MIN};
use super::out::Out;
use super::pins::Pins;
use super::stats_cmd::{self, Group};
use super::text::{memcached_item_size, Progress};
use super::watch;
use super::{Action, Ctx, WIRE_VERSION};

/// The longest packet head (header, extras, key) a value is read behind
/// (see `Session::begin_fill`).
const HEAD_MAX: usize = proto::HEADER_LEN + 255 + proto::KEY_MAX_LEN;

/// The only SASL mechanism offered.
const SASL_MECH: &[u8] = b"PLAIN";
/// memcached's `MAX_SASL_MECH_LEN`: longer mechanism names are invalid.
const SASL_MECH_MAX: usize = 32;
/// Binary INCR/DECR exptime meaning "do not create on a miss".
const NO_CREATE: u32 = 0xffff_ffff;

/// Per-connection binary protocol state that outlives one read.
#[derive(Debug, Default)]
pub struct Session {
    /// Bytes of a refused packet still to discard.
    swallow: usize,
    /// The connection passed SASL authentication.
    authenticated: bool,
    /// A SASL_AUTH answered AUTH_CONTINUE: SASL_STEP carries the credentials.
    sasl_started: bool,
    /// Items this connection's unsent replies hold, as memcached counts
    /// them (see `exec::pins`).
    pins: Pins,
    /// A SET, ADD or REPLACE whose value is being read into its item (see
    /// `exec::fill`); made on a connection's first such request.
    pub(super) fill: Option<Box<Slot>>,
    /// A stream connection, not a datagram: a large value may be read into
    /// its item before it has arrived, and a request's head must fit
    /// memcached's stream read buffer (`BinError::HeadOverflow`).
    stream: bool,
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// A session of a stream connection: large values are read into
    /// their items (see `exec::fill`).
    pub fn for_stream() -> Self {
        Session {
            stream: true,
            ..Session::default()
        }
    }

    /// For a SET, ADD or REPLACE packet of which `buf` holds the header,
    /// extras, key and part of the value: reserve its item, move that part
    /// into it, and keep the rest of the packet for the parse at the end
    /// (see `fill::Kind::Binary`). Whether it did; when not, the packet is
    /// buffered as usual.
    fn begin_fill(&mut self, ctx: &Ctx, buf: &[u8]) -> bool {
        let Some(head) = buf.first_chunk::<{ proto::HEADER_LEN }>() else {
            return false;
        };
        let h = proto::Header::decode(head);
        let storage = Opcode::from_u8(h.opcode)
            .is_some_and(|op| matches!(op.loud(), Opcode::Set | Opcode::Add | Opcode::Replace));
        if !storage || (ctx.shared.settings.sasl && !self.authenticated) {
            return false;
        }
        let lead = u32::from(h.extras_len) + u32::from(h.key_len);
        let key_end = proto::HEADER_LEN + lead as usize;
        let Some(value_len) = h.body_len.checked_sub(lead) else {
            return false;
        };
        if buf.len() < key_end || key_end > HEAD_MAX {
            return false;
        }
        // The packet without its value: the same header with the body cut
        // to extras and key parses as this request with an empty value.
        let mut line = [0u8; HEAD_MAX];
        line[..key_end].copy_from_slice(&buf[..key_end]);
        line[8..12].copy_from_slice(&lead.to_be_bytes());
        let line = &line[..key_end];
        let limit = ctx.shared.settings.item_size_max;
        let Ok(Parsed::Complete { req, .. }) = proto::parse_request(line, limit) else {
            return false;
        };
        let flags = match req.args {
            Extras::Store { flags, .. } => flags,
            _ => 0,
        };
        let store = &ctx.shared.store;
        // The exptime and CAS come from the packet when the item is stored.
        let Some(item) = store.reserve(req.key, flags, 0, 0, value_len as usize) else {
            return false;
        };
        let slot = self.fill.get_or_insert_with(Box::default);
        slot.begin(store, item, Kind::Binary, line, &buf[key_end..]);
        true
    }

    /// A filled request that is ready: run it. Returns the input it took
    /// (the value's bytes still buffered) and whether it ran; `None` when
    /// no value is being filled.
    fn run_fill(&mut self, ctx: &Ctx, input: &[u8], out: &mut Out) -> Option<(usize, bool)> {
        let slot = self.fill.as_mut().filter(|s| s.active())?;
        let store_ = &ctx.shared.store;
        let (took, ready) = slot.step(store_, input);
        let Some(f) = ready else {
            return Some((took, false));
        };
        let limit = ctx.shared.settings.item_size_max;
        match (&f.kind, proto::parse_request(&slot.line, limit)) {
            (Kind::Binary, Ok(Parsed::Complete { req, .. })) => {
                let start = out.len();
                crate::latency::note_binary(ctx.stats, req.opcode.as_u8());
                crate::hotkeys::record(ctx, req.key);
                store(ctx, &req, Some(f.item), out);
                if writes_at_once(&out[start..]) {
                    self.pins.written();
                }
            }
            // The head parsed when the fill began.
            _ => store_.release(f.item),
        }
        Some((took, true))
    }

    /// True while discarding the rest of a refused packet.
    pub fn swallowing(&self) -> bool {
        self.swallow > 0
    }

    /// True once SASL authentication succeeded on this connection.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Run the complete packets at the start of `input`, at most `budget`
    /// of them, appending replies to `out`; stop early once `out` holds
    /// `out_limit` bytes. `need` is, when known, the size of the next
    /// packet counted from the end of what was consumed.
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
        let progress = |pos, requests, action, need| Progress {
            consumed: pos,
            requests,
            action,
            need,
            more: false,
        };
        let limit = ctx.shared.settings.item_size_max;
        let per_event = ctx.shared.settings.reqs_per_event;
        let mut counted = 0;
        loop {
            while counted < requests {
                self.pins.command_done(per_event);
                counted += 1;
            }
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() - pos);
                self.swallow -= n;
                pos += n;
                if self.swallow > 0 {
                    self.pins.batch_end();
                    return progress(pos, requests, Action::Continue, 0);
                }
            }
            if requests >= budget {
                return progress(pos, requests, Action::Continue, 0);
            }
            if out.total() >= out_limit {
                // Complete packets may wait in the input: the caller sends
                // the output and calls again.
                return Progress {
                    more: pos < input.len(),
                    ..progress(pos, requests, Action::Continue, 0)
                };
            }
            if let Some((took, ran)) = self.run_fill(ctx, &input[pos..], out) {
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
            let parsed = if self.stream {
                proto::parse_request(buf, limit)
            } else {
                proto::parse_datagram_request(buf, limit)
            };
            match parsed {
                Ok(Parsed::Incomplete { need }) => {
                    self.pins.batch_end();
                    if self.stream && need >= buf.len() + FILL_MIN && self.begin_fill(ctx, buf) {
                        return progress(input.len(), requests, Action::Continue, 0);
                    }
                    return progress(pos, requests, Action::Continue, need);
                }
                Ok(Parsed::Complete { req, consumed }) => {
                    pos += consumed;
                    requests += 1;
                    let start = out.len();
                    let action = self.run(ctx, &req, out);
                    if writes_at_once(&out[start..]) {
                        self.pins.written();
                    }
                    if action != Action::Continue {
                        return progress(pos, requests, action, 0);
                    }
                }
                Err(err) => {
                    requests += 1;
                    match self.fault(ctx, &err, out) {
                        Some(skip) => {
                            let here = skip.min(buf.len());
                            pos += here;
                            self.swallow = skip - here;
                        }
                        None => return progress(pos, requests, Action::Close, 0),
                    }
                }
            }
        }
    }

    /// Answers a packet the codec refused. Returns the bytes to skip
    /// (counted from the packet start), or `None` when the connection
    /// must close.
    fn fault(&mut self, ctx: &Ctx, err: &BinError, out: &mut Vec<u8>) -> Option<usize> {
        let sasl = ctx.shared.settings.sasl;
        if let Some(op) = err.opcode_byte() {
            if sasl && !err.checked_before_auth() && !self.may_run(op) {
                proto::write_error(out, op, Status::AuthError, err.opaque());
                return None;
            }
        }
        if let BinError::ValueTooLarge {
            opcode,
            opaque,
            key,
            ..
        } = *err
        {
            if opcode.loud() == Opcode::Set {
                // A failed SET must not leave the old value behind.
                ctx.shared.store.delete(&DeleteArgs::new(key));
            }
            let status = match opcode {
                Opcode::SaslAuth | Opcode::SaslStep if !sasl => Status::UnknownCommand,
                Opcode::SaslAuth | Opcode::SaslStep => Status::OutOfMemory,
                _ => Status::TooLarge,
            };
            proto::write_error(out, opcode.as_u8(), status, opaque);
            return match err.action() {
                ErrorAction::ReplyAndSkip { skip, .. } => Some(skip),
                _ => None,
            };
        }
        err.write_reply(out);
        match err.action() {
            ErrorAction::ReplyAndSkip { skip, .. } => Some(skip),
            ErrorAction::Close | ErrorAction::ReplyAndClose(_) => None,
        }
    }

    /// Whether an opcode byte may run on this connection now (memcached's
    /// `authenticated()`): always without `-S`; with it, only the SASL
    /// opcodes and VERSION before authentication.
    fn may_run(&self, op: u8) -> bool {
        self.authenticated
            || matches!(
                Opcode::from_u8(op),
                Some(Opcode::SaslListMechs | Opcode::SaslAuth | Opcode::SaslStep | Opcode::Version)
            )
    }

    /// Runs one valid request.
    fn run(&mut self, ctx: &Ctx, req: &Request, out: &mut Out) -> Action {
        let settings = &ctx.shared.settings;
        if settings.sasl && !self.may_run(req.opcode.as_u8()) {
            error(out, req, Status::AuthError);
            return Action::Close;
        }
        crate::latency::note_binary(ctx.stats, req.opcode.as_u8());
        if !req.key.is_empty() && req.opcode.loud() != Opcode::Stat {
            crate::hotkeys::record(ctx, req.key);
        }
        match req.opcode.loud() {
            Opcode::Get | Opcode::GetK | Opcode::Touch | Opcode::Gat | Opcode::GatK => {
                get(ctx, req, out, &mut self.pins)
            }
            Opcode::Set | Opcode::Add | Opcode::Replace => store(ctx, req, None, out),
            Opcode::Append | Opcode::Prepend => append(ctx, req, out),
            Opcode::Delete => delete(ctx, req, out),
            Opcode::Incr | Opcode::Decr => arith(ctx, req, out, self.pins.held()),
            Opcode::Quit => {
                if !req.opcode.is_quiet() {
                    success(out, req, 0, &[], b"", b"");
                }
                return Action::Close;
            }
            Opcode::Flush => flush(ctx, req, out),
            Opcode::Noop => {
                success(out, req, 0, &[], b"", b"");
                // NOOP makes memcached write its queued replies.
                self.pins.written();
            }
            Opcode::Version => success(out, req, 0, &[], b"", WIRE_VERSION.as_bytes()),
            Opcode::Stat => stat(ctx, req, out),
            Opcode::SaslListMechs => {
                if !settings.sasl {
                    error(out, req, Status::UnknownCommand);
                } else {
                    // memcached starts a fresh SASL exchange here.
                    self.authenticated = false;
                    self.sasl_started = false;
                    success(out, req, 0, &[], b"", SASL_MECH);
                }
            }
            Opcode::SaslAuth | Opcode::SaslStep => self.sasl(ctx, req, out),
            // Quiet opcodes were mapped to their loud form above.
            _ => error(out, req, Status::UnknownCommand),
        }
        Action::Continue
    }

    /// SASL_AUTH and SASL_STEP with mechanism PLAIN.
    fn sasl(&mut self, ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
        let settings = &ctx.shared.settings;
        if !settings.sasl {
            return error(out, req, Status::UnknownCommand);
        }
        if req.key.len() > SASL_MECH_MAX {
            return error(out, req, Status::InvalidArguments);
        }
        let use_cas = !settings.no_cas;
        if memcached_item_size(req.key.len(), 0, req.value.len(), use_cas) > settings.item_size_max
        {
            return error(out, req, Status::OutOfMemory);
        }
        self.authenticated = false;
        let verdict = if req.opcode == Opcode::SaslAuth {
            if !req.key.eq_ignore_ascii_case(SASL_MECH) {
                self.sasl_started = false;
                Some(false)
            } else if req.value.is_empty() {
                // PLAIN with no initial response: ask for it.
                self.sasl_started = true;
                None
            } else {
                self.sasl_started = false;
                Some(check_plain(credentials(settings), req.value))
            }
        } else if std::mem::take(&mut self.sasl_started) {
            Some(check_plain(credentials(settings), req.value))
        } else {
            Some(false)
        };
        let stats = &ctx.stats.ops;
        match verdict {
            None => {
                let _ = proto::write_response(
                    out,
                    req.opcode.as_u8(),
                    Status::AuthContinue,
                    req.opaque,
                    0,
                    &[],
                    b"",
                    0,
                );
            }
            Some(true) => {
                self.authenticated = true;
                stats.auth_cmds.incr();
                success(out, req, 0, &[], b"", b"Authenticated");
            }
            Some(false) => {
                stats.auth_cmds.incr();
                stats.auth_errors.incr();
                error(out, req, Status::AuthError);
            }
        }
    }
}

/// Whether memcached writes its queued replies right after a request
/// whose reply is `reply`: it does after an error packet (non-zero
/// status, no key), but queues the key-echoing miss of GETK/GATK like a
/// success.
fn writes_at_once(reply: &[u8]) -> bool {
    match reply.get(..proto::HEADER_LEN) {
        Some(h) => {
            let keylen = u16::from_be_bytes([h[2], h[3]]);
            let status = u16::from_be_bytes([h[6], h[7]]);
            status != 0 && keylen == 0
        }
        None => false,
    }
}

/// Appends a success reply carrying `extras`, `key` and `value`.
fn success(out: &mut Vec<u8>, req: &Request, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
    let op = req.opcode.as_u8();
    let res = proto::write_response(
        out,
        op,
        Status::Success,
        req.opaque,
        cas,
        extras,
        key,
        value.len(),
    );
    if res.is_ok() {
        out.extend_from_slice(value);
    }
}

/// Appends memcached's error packet for `status`.
fn error(out: &mut Vec<u8>, req: &Request, status: Status) {
    proto::write_error(out, req.opcode.as_u8(), status, req.opaque);
}

/// Counts `op` for `key`'s prefix while `stats detail on` is in force.
fn record_detail(ctx: &Ctx, key: &[u8], op: DetailOp) {
    let shared = ctx.shared;
    if shared.detail.enabled() {
        shared
            .detail
            .record(key, shared.settings.prefix_delimiter, op);
    }
}

/// A binary exptime (unsigned on the wire) as a store time.
fn exptime(ctx: &Ctx, raw: u32) -> crate::clock::RelTime {
    ctx.shared.clock.realtime(i64::from(raw))
}

/// GET, GETK, TOUCH, GAT, GATK and their quiet forms. A hit's reply holds
/// the item in `pins` until it is written.
fn get(ctx: &Ctx, req: &Request, out: &mut Out, pins: &mut Pins) {
    let stats = ctx.stats;
    let loud = req.opcode.loud();
    let touch = match req.args {
        Extras::Touch { exptime: raw } => Some(exptime(ctx, raw)),
        _ => None,
    };
    let with_key = matches!(loud, Opcode::GetK | Opcode::GatK);
    let with_value = loud != Opcode::Touch;
    let op = req.opcode.as_u8();
    let hit = ctx.shared.store.get(req.key, true, |r| match r {
        Ok(item) => {
            watch::item_get(req.key, watch::found(item.class_id(), item.value_len()));
            if let Some(e) = touch {
                item.set_exptime(e);
            }
            let flags = item.flags().to_be_bytes();
            let key = if with_key { item.key() } else { b"" };
            let vlen = if with_value { item.value_len() } else { 0 };
            let res = proto::write_response(
                out,
                op,
                Status::Success,
                req.opaque,
                item.cas(),
                &flags,
                key,
                vlen,
            );
            if res.is_ok() && with_value {
                out.push_value(item);
            }
            pins.hold(item.id());
            Some(item.class_id())
        }
        Err(miss) => {
            watch::item_get(req.key, miss.into());
            super::count_miss_reason(ctx, miss);
            None
        }
    });
    record_detail(ctx, req.key, DetailOp::Get { hit: hit.is_some() });
    match (hit, touch.is_some()) {
        (Some(class), false) => {
            stats.ops.get_cmds.incr();
            stats.ops.get_hits.incr();
            stats.class(class).get_hits.incr();
        }
        (Some(class), true) => {
            stats.ops.touch_cmds.incr();
            stats.ops.touch_hits.incr();
            stats.class(class).touch_hits.incr();
        }
        (None, false) => {
            stats.ops.get_cmds.incr();
            stats.ops.get_misses.incr();
        }
        (None, true) => {
            stats.ops.touch_cmds.incr();
            stats.ops.touch_misses.incr();
        }
    }
    if hit.is_none() && !req.opcode.is_quiet() {
        if with_key {
            // memcached echoes the key with no error text.
            let _ =
                proto::write_response(out, op, Status::KeyNotFound, req.opaque, 0, &[], req.key, 0);
        } else {
            error(out, req, Status::KeyNotFound);
        }
    }
}

/// SET, ADD, REPLACE and their quiet forms.
fn store(ctx: &Ctx, req: &Request, filled: Option<Reserved>, out: &mut Vec<u8>) {
    let shared = ctx.shared;
    let stats = ctx.stats;
    let (flags, raw_exp) = match req.args {
        Extras::Store { flags, exptime } => (flags, exptime),
        _ => (0, 0),
    };
    let loud = req.opcode.loud();
    let settings = &shared.settings;
    record_detail(ctx, req.key, DetailOp::Set);
    let value_len = filled.as_ref().map_or(req.value.len(), Reserved::value_len);
    if memcached_item_size(req.key.len(), flags, value_len, !settings.no_cas)
        > settings.item_size_max
    {
        if let Some(item) = filled {
            shared.store.release(item);
        }
        if loud == Opcode::Set {
            shared.store.delete(&DeleteArgs::new(req.key));
        }
        return error(out, req, Status::TooLarge);
    }
    // With a CAS, memcached runs SET, ADD and REPLACE alike, as a
    // compare-and-swap; under -C it ignores a request's CAS here.
    let cas = if settings.no_cas { 0 } else { req.cas };
    let mode = match loud {
        _ if cas != 0 => Mode::Set,
        Opcode::Add => Mode::Add,
        Opcode::Replace => Mode::Replace,
        _ => Mode::Set,
    };
    let exp = exptime(ctx, raw_exp);
    let mut args = StoreArgs::new(mode, req.key, flags, exp, req.value);
    args.cas = cas;
    let with_cas = cas != 0;
    // memcached looks up the item a store replaces (a watcher sees it).
    let old = watch::lookup(ctx, req.key, watch::FETCHERS | watch::MUTATIONS);
    let res = match filled {
        Some(item) => shared.store.store_reserved(&args, item),
        None => shared.store.store(&args),
    };
    let wreq = watch::StoreReq {
        key: req.key,
        cmd: match loud {
            _ if with_cas => "cas",
            Opcode::Add => "add",
            Opcode::Replace => "replace",
            _ => "set",
        },
        exptime: exp,
        flags: args.flags,
        value_len,
    };
    watch::stored(ctx, &wreq, old, res.status, res.class);
    stats.ops.set_cmds.incr();
    let class = stats.class(res.class);
    class.set_cmds.incr();
    let status = match res.status {
        StoreStatus::Stored => {
            if with_cas {
                stats.ops.cas_hits.incr();
                class.cas_hits.incr();
            }
            if !req.opcode.is_quiet() {
                success(out, req, res.cas, &[], b"", b"");
            }
            return;
        }
        StoreStatus::Exists => {
            if with_cas {
                stats.ops.cas_badval.incr();
                class.cas_badval.incr();
            }
            Status::KeyExists
        }
        StoreStatus::NotFound => {
            if with_cas {
                stats.ops.cas_misses.incr();
            }
            Status::KeyNotFound
        }
        StoreStatus::NotStored if with_cas => Status::NotStored,
        StoreStatus::NotStored => match mode {
            Mode::Add => Status::KeyExists,
            Mode::Replace => Status::KeyNotFound,
            _ => Status::NotStored,
        },
        StoreStatus::TooLarge => Status::TooLarge,
        StoreStatus::NoMemory => {
            if mode == Mode::Set {
                shared.store.delete(&DeleteArgs::new(req.key));
            }
            proto::write_error_text(
                out,
                req.opcode.as_u8(),
                Status::OutOfMemory,
                req.opaque,
                "Out of memory allocating item",
            );
            return;
        }
    };
    error(out, req, status);
}

/// APPEND, PREPEND and their quiet forms.
fn append(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
    let shared = ctx.shared;
    let stats = ctx.stats;
    let settings = &shared.settings;
    record_detail(ctx, req.key, DetailOp::Set);
    if memcached_item_size(req.key.len(), 0, req.value.len(), !settings.no_cas)
        > settings.item_size_max
    {
        return error(out, req, Status::TooLarge);
    }
    let mode = if req.opcode.loud() == Opcode::Append {
        Mode::Append
    } else {
        Mode::Prepend
    };
    let mut args = StoreArgs::new(mode, req.key, 0, 0, req.value);
    // Under -C memcached ignores the CAS of an append (not of a delete
    // or an incr, which compare it with the item's CAS of 0).
    args.cas = if settings.no_cas { 0 } else { req.cas };
    let old = watch::lookup(ctx, req.key, watch::FETCHERS | watch::MUTATIONS);
    let res = shared.store.store(&args);
    let wreq = watch::StoreReq {
        key: req.key,
        cmd: if mode == Mode::Append {
            "append"
        } else {
            "prepend"
        },
        exptime: 0,
        flags: args.flags,
        value_len: req.value.len(),
    };
    watch::stored(ctx, &wreq, old, res.status, res.class);
    stats.ops.set_cmds.incr();
    stats.class(res.class).set_cmds.incr();
    match res.status {
        StoreStatus::Stored => {
            if !req.opcode.is_quiet() {
                success(out, req, res.cas, &[], b"", b"");
            }
        }
        StoreStatus::Exists => error(out, req, Status::KeyExists),
        _ => error(out, req, Status::NotStored),
    }
}

/// DELETE and DELETEQ (with an optional CAS).
fn delete(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
    let stats = ctx.stats;
    record_detail(ctx, req.key, DetailOp::Delete);
    let mut args = DeleteArgs::new(req.key);
    args.cas = req.cas;
    let old = watch::lookup(ctx, req.key, watch::FETCHERS | watch::DELETIONS);
    let res = ctx.shared.store.delete(&args);
    match res.status {
        DeleteStatus::Deleted => {
            watch::deleted(req.key, "delete", res.class, watch::looked_size(old));
            stats.ops.delete_hits.incr();
            stats.class(res.class).delete_hits.incr();
            if !req.opcode.is_quiet() {
                success(out, req, 0, &[], b"", b"");
            }
        }
        DeleteStatus::NotFound => {
            stats.ops.delete_misses.incr();
            error(out, req, Status::KeyNotFound);
        }
        DeleteStatus::Exists => error(out, req, Status::KeyExists),
    }
}

/// INCR, DECR and their quiet forms. `held`: see `ArithArgs::held`.
fn arith(ctx: &Ctx, req: &Request, out: &mut Vec<u8>, held: &[ItemId]) {
    let stats = ctx.stats;
    let incr = req.opcode.loud() == Opcode::Incr;
    let (delta, initial, raw_exp) = match req.args {
        Extras::Arith {
            delta,
            initial,
            exptime,
        } => (delta, initial, exptime),
        _ => (0, 0, NO_CREATE),
    };
    let mut args = ArithArgs::new(req.key, incr, delta);
    args.held = held;
    args.cas = req.cas;
    if raw_exp != NO_CREATE {
        args.create = Some((initial, exptime(ctx, raw_exp)));
    }
    watch::lookup(ctx, req.key, watch::FETCHERS);
    let res = ctx.shared.store.arith(&args);
    if res.status == ArithStatus::Created {
        let exp = args.create.map_or(0, |(_, e)| e);
        watch::arith_created(ctx, req.key, exp, res.class, res.value);
    }
    let status = match res.status {
        ArithStatus::Ok | ArithStatus::Created => {
            if res.status == ArithStatus::Ok {
                let class = stats.class(res.class);
                if incr {
                    stats.ops.incr_hits.incr();
                    class.incr_hits.incr();
                } else {
                    stats.ops.decr_hits.incr();
                    class.decr_hits.incr();
                }
            }
            if !req.opcode.is_quiet() {
                success(out, req, res.cas, &[], b"", &res.value.to_be_bytes());
            }
            return;
        }
        ArithStatus::NotFound => {
            if incr {
                stats.ops.incr_misses.incr();
            } else {
                stats.ops.decr_misses.incr();
            }
            Status::KeyNotFound
        }
        ArithStatus::NonNumeric => Status::NonNumeric,
        ArithStatus::Exists => Status::KeyExists,
        ArithStatus::NoMemory => {
            proto::write_error_text(
                out,
                req.opcode.as_u8(),
                Status::OutOfMemory,
                req.opaque,
                "Out of memory incrementing value",
            );
            return;
        }
    };
    error(out, req, status);
}

/// FLUSH and FLUSHQ, with an optional delay.
fn flush(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
    let shared = ctx.shared;
    if shared.settings.no_flush {
        // memcached's answer under -F; nothing is counted.
        return error(out, req, Status::AuthError);
    }
    let when = match req.args {
        Extras::Flush {
            exptime: Some(raw @ 1..),
        } => exptime(ctx, raw),
        _ => 0,
    };
    shared.store.flush(when);
    ctx.stats.ops.flush_cmds.incr();
    if !req.opcode.is_quiet() {
        success(out, req, 0, &[], b"", b"");
    }
}

/// STAT: one packet per pair, then an empty packet.
fn stat(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
    let key = req.key;
    let group = if key.is_empty() {
        Group::General
    } else if key.starts_with(b"reset") {
        stats_cmd::reset(ctx);
        return proto::write_stat_end(out, req.opaque);
    } else if key.starts_with(b"settings") {
        Group::Settings
    } else if key == b"sizes_enable" || key == b"sizes_disable" {
        // As memcached: the status packets alone, no terminating packet.
        for (k, v) in stats_cmd::sizes_switch_stats(ctx, key == b"sizes_enable") {
            let _ = proto::write_stat(out, req.opaque, k.as_bytes(), v.as_bytes());
        }
        return;
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        let detail = &ctx.shared.detail;
        if sub.starts_with(b" dump") {
            let mut dump = Vec::new();
            detail.dump(&mut dump);
            let _ = proto::write_stat(out, req.opaque, b"detailed", &dump);
        } else if sub.starts_with(b" on") {
            detail.set_enabled(true);
        } else if sub.starts_with(b" off") {
            detail.set_enabled(false);
        } else {
            return error(out, req, Status::KeyNotFound);
        }
        return proto::write_stat_end(out, req.opaque);
    } else {
        match key {
            b"items" => Group::Items,
            b"slabs" => Group::Slabs,
            b"sizes" => Group::Sizes,
            b"latency" => Group::Latency,
            b"hotkeys" => Group::Hotkeys,
            _ => return error(out, req, Status::KeyNotFound),
        }
    };
    let mut scratch = Vec::new();
    stats_cmd::for_each_pair(ctx, group, &mut scratch, |name, value| {
        let _ = proto::write_stat(out, req.opaque, name, value);
    });
    proto::write_stat_end(out, req.opaque);
}

/// One `user:password` line of the password file.
#[derive(Debug)]
struct Credential {
    user: Box<[u8]>,
    password: Box<[u8]>,
}

/// The credentials, read on first use.
fn credentials(settings: &crate::config::Settings) -> &'static [Credential] {
    static DB: OnceLock<Vec<Credential>> = OnceLock::new();
    DB.get_or_init(|| {
        let path = settings
            .auth_file
            .clone()
            .or_else(|| std::env::var_os("MEMCACHED_SASL_PWDB").map(Into::into));
        let Some(path) = path else {
            crate::logging::stderr_line(format_args!(
                "SASL: no password file (set MEMCACHED_SASL_PWDB or -Y): every login fails"
            ));
            return Vec::new();
        };
        match std::fs::read(&path) {
            Ok(bytes) => parse_pwdb(&bytes),
            Err(e) => {
                crate::logging::stderr_line(format_args!(
                    "SASL: cannot read {}: {e}",
                    path.display()
                ));
                Vec::new()
            }
        }
    })
}

/// Parses a password file: one `user:password` per line; anything after a
/// second `:` is ignored, as are lines without a `:`.
fn parse_pwdb(bytes: &[u8]) -> Vec<Credential> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let (user, rest) = (&line[..colon], &line[colon + 1..]);
            let password = rest.split(|&b| b == b':').next().unwrap_or(rest);
            Some(Credential {
                user: user.into(),
                password: password.into(),
            })
        })
        .collect()
}

/// Checks a PLAIN message `authzid \0 authcid \0 password`. An authzid
/// other than empty or the authcid itself is refused (no proxy logins).
/// The first line naming the user decides, as in memcached.
fn check_plain(db: &[Credential], msg: &[u8]) -> bool {
    let mut parts = msg.splitn(3, |&b| b == 0);
    let (Some(authz), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if user.is_empty() || password.contains(&0) || !(authz.is_empty() || authz == user) {
        return false;
    }
    let mut found = false;
    let mut ok = false;
    // Every entry is compared, so the time does not depend on where (or
    // whether) the user appears.
    for cred in db {
        let user_eq = super::auth::ct_eq(&cred.user, user);
        let pass_eq = super::auth::ct_eq(&cred.password, password);
        if user_eq && !found {
            found = true;
            ok = pass_eq;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Settings;
    use crate::exec::Shared;

    fn shared(edit: impl FnOnce(&mut Settings)) -> Shared {
        let mut settings = Settings {
            memory_limit_mb: 8,
            threads: 1,
            ..Settings::default()
        };
        edit(&mut settings);
        Shared::new(settings, Clock::new())
    }

    fn packet(op: Opcode, extras: &[u8], key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
        let mut v = Vec::new();
        proto::write_request(&mut v, op.as_u8(), opaque, 0, extras, key, value).unwrap();
        v
    }

    fn set_packet(key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
        packet(Opcode::Set, &[0; 8], key, value, opaque)
    }

    /// (opcode, status, opaque, value) of each reply in `out`.
    fn replies(out: &[u8]) -> Vec<(u8, u16, u32, Vec<u8>)> {
        let mut rest = out;
        let mut v = Vec::new();
        while let Some(h) = rest.first_chunk::<{ proto::HEADER_LEN }>() {
            let h = proto::Header::decode(h);
            let end = proto::HEADER_LEN + h.body_len as usize;
            let skip = proto::HEADER_LEN + usize::from(h.extras_len) + usize::from(h.key_len);
            v.push((
                h.opcode,
                h.vbucket_or_status,
                h.opaque,
                rest[skip..end].to_vec(),
            ));
            rest = &rest[end..];
        }
        assert!(rest.is_empty(), "partial reply");
        v
    }

    /// Feeds `input` in pieces of `step` bytes the way a connection does
    /// (unconsumed bytes stay in front), returning the output and the
    /// last action.
    fn feed(sh: &Shared, input: &[u8], step: usize) -> (Vec<u8>, Action) {
        let ctx = Ctx {
            shared: sh,
            stats: &sh.threads[0],
        };
        let mut s = Session::new();
        let mut buf = Vec::new();
        let mut out = Out::default();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let p = s.process(&ctx, &buf, &mut out, usize::MAX, usize::MAX);
            assert!(p.consumed <= buf.len());
            buf.drain(..p.consumed);
            if p.need > 0 {
                assert!(
                    p.need > buf.len(),
                    "need {} with {} buffered",
                    p.need,
                    buf.len()
                );
            }
            if p.action != Action::Continue {
                return (out.to_vec(), p.action);
            }
        }
        assert!(buf.is_empty(), "{} bytes left unprocessed", buf.len());
        (out.to_vec(), Action::Continue)
    }

    #[test]
    fn any_split_of_a_pipeline_gives_the_same_replies() {
        let sh = shared(|_| {});
        let mut input = set_packet(b"k", b"value", 1);
        input.extend(packet(Opcode::GetK, &[], b"k", &[], 2));
        input.extend(packet(Opcode::GetQ, &[], b"miss", &[], 3));
        input.extend(packet(Opcode::Noop, &[], &[], &[], 4));
        let (whole, _) = feed(&sh, &input, input.len());
        let got = replies(&whole);
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[1].0, got[1].1, &got[1].3[..]),
            (0x0c, 0, &b"value"[..])
        );
        assert_eq!(got[2].2, 4);
        for step in [1, 2, 7, 23, 24, 25, 31] {
            let (out, action) = feed(&sh, &input, step);
            assert_eq!(action, Action::Continue);
            // CAS values differ between runs: compare all but the CAS.
            assert_eq!(replies(&out), replies(&whole), "step {step}");
        }
    }

    #[test]
    fn an_oversized_value_is_swallowed_across_reads() {
        let sh = shared(|s| s.item_size_max = 1024);
        let mut input = set_packet(b"k", b"old", 1);
        input.extend(set_packet(b"k", &[b'x'; 5000], 2));
        input.extend(packet(Opcode::Get, &[], b"k", &[], 3));
        for step in [1, 100, 4096, input.len()] {
            let (out, action) = feed(&sh, &input, step);
            assert_eq!(action, Action::Continue);
            let got = replies(&out);
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!((got[1].1, &got[1].3[..]), (0x03, &b"Too large."[..]));
            // The failed SET removed the old value.
            assert_eq!((got[2].1, got[2].2), (0x01, 3));
        }
    }

    #[test]
    fn budget_and_output_limit_stop_between_packets() {
        let sh = shared(|_| {});
        let ctx = Ctx {
            shared: &sh,
            stats: &sh.threads[0],
        };
        let noop = packet(Opcode::Noop, &[], &[], &[], 9);
        let input: Vec<u8> = noop.iter().copied().cycle().take(noop.len() * 5).collect();
        let mut s = Session::new();
        let mut out = Out::default();
        let p = s.process(&ctx, &input, &mut out, 2, usize::MAX);
        assert_eq!((p.requests, p.consumed), (2, 2 * noop.len()));
        // Full output: nothing runs, the caller is told to come back.
        let rest = &input[p.consumed..];
        let full = out.len();
        let p = s.process(&ctx, rest, &mut out, 10, full);
        assert_eq!((p.requests, p.consumed, p.more), (0, 0, true));
        // Room for one reply: one runs.
        let p = s.process(&ctx, rest, &mut out, 10, full + 1);
        assert_eq!((p.requests, p.consumed, p.more), (1, noop.len(), true));
        assert_eq!(out.len(), 3 * proto::HEADER_LEN);
        // A partial header: nothing consumed, the header length needed.
        let p = s.process(&ctx, &noop[..10], &mut out, 10, usize::MAX);
        assert_eq!((p.consumed, p.need, p.requests), (0, proto::HEADER_LEN, 0));
    }

    #[test]
    fn quit_closes_after_its_reply_and_ignores_the_rest() {
        let sh = shared(|_| {});
        let mut input = packet(Opcode::Quit, &[], &[], &[], 1);
        input.extend(packet(Opcode::Noop, &[], &[], &[], 2));
        let (out, action) = feed(&sh, &input, input.len());
        assert_eq!(action, Action::Close);
        assert_eq!(replies(&out), vec![(0x07, 0, 1, vec![])]);
        let (out, action) = feed(&sh, &packet(Opcode::QuitQ, &[], &[], &[], 1), 100);
        assert_eq!((out.len(), action), (0, Action::Close));
    }

    #[test]
    fn sasl_gates_every_command_until_authenticated() {
        let sh = shared(|s| s.sasl = true);
        let (out, action) = feed(&sh, &packet(Opcode::Get, &[], b"k", &[], 5), 100);
        assert_eq!(action, Action::Close);
        assert_eq!(replies(&out)[0].1, 0x20);
        // VERSION and the mechanism list are allowed before.
        let mut input = packet(Opcode::Version, &[], &[], &[], 1);
        input.extend(packet(Opcode::SaslListMechs, &[], &[], &[], 2));
        let (out, action) = feed(&sh, &input, 100);
        assert_eq!(action, Action::Continue);
        let got = replies(&out);
        assert_eq!(got[0].3, WIRE_VERSION.as_bytes());
        assert_eq!(got[1].3, b"PLAIN");
        // An unknown opcode is refused by the auth check, then closed.
        let (out, action) = feed(&sh, &packet(Opcode::Noop, &[], &[], &[], 3)[..], 100);
        assert_eq!((replies(&out)[0].1, action), (0x20, Action::Close));
        let mut unknown = packet(Opcode::Noop, &[], &[], &[], 4);
        unknown[1] = 0x1b;
        let (out, action) = feed(&sh, &unknown, 100);
        assert_eq!((replies(&out)[0].1, action), (0x20, Action::Close));
    }

    #[test]
    fn random_input_never_panics_and_always_progresses() {
        let plain = shared(|s| s.item_size_max = 2048);
        let sasl = shared(|s| {
            s.item_size_max = 2048;
            s.sasl = true;
        });
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let sh = if round % 3 == 0 { &sasl } else { &plain };
            let ctx = Ctx {
                shared: sh,
                stats: &sh.threads[0],
            };
            // A few plausible packets with random fields and bodies.
            let mut input = Vec::new();
            for _ in 0..(next() % 6) {
                let r = next();
                let op = (r % 0x28) as u8;
                let key_len = (r >> 8) as u16 % 12;
                let extras_len = [0u8, 4, 8, 20, 3][(r >> 16) as usize % 5];
                let value_len = (r >> 24) as u32 % 3000;
                let body = u32::from(key_len) + u32::from(extras_len) + value_len;
                let body = if r >> 60 == 0 { body / 2 } else { body };
                let mut h = proto::Header {
                    magic: 0x80,
                    opcode: op,
                    key_len,
                    extras_len,
                    body_len: body,
                    opaque: r as u32,
                    cas: if r >> 59 & 1 == 1 { next() % 50 } else { 0 },
                    ..proto::Header::default()
                }
                .encode()
                .to_vec();
                if r >> 58 & 1 == 1 && round % 7 == 0 {
                    h[0] = next() as u8;
                }
                input.extend_from_slice(&h);
                for _ in 0..body.min(4000) {
                    input.push(if next() % 4 == 0 { b'1' } else { next() as u8 });
                }
            }
            let mut s = Session::new();
            let mut out = Out::default();
            let mut pos = 0;
            let step = 1 + (next() % 200) as usize;
            let mut end = 0;
            while pos < input.len() || end < input.len() {
                end = (end + step).min(input.len());
                let p = s.process(&ctx, &input[pos..end], &mut out, 1 + round % 5, 1 << 20);
                assert!(pos + p.consumed <= end);
                pos += p.consumed;
                if p.action == Action::Close {
                    break;
                }
                if end == input.len() && p.consumed == 0 && p.requests == 0 {
                    break;
                }
            }
            // Every reply is a whole, well-formed response packet.
            let mut rest = &out[..];
            while let Some(h) = rest.first_chunk::<{ proto::HEADER_LEN }>() {
                let h = proto::Header::decode(h);
                assert_eq!(h.magic, proto::RESPONSE_MAGIC);
                assert!(proto::Status::from_u16(h.vbucket_or_status).is_some());
                let len = proto::HEADER_LEN + h.body_len as usize;
                assert!(rest.len() >= len);
                rest = &rest[len..];
            }
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn sasl_opcodes_without_sasl_are_unknown_and_keep_the_connection() {
        let sh = shared(|_| {});
        let mut input = packet(Opcode::SaslListMechs, &[], &[], &[], 1);
        input.extend(packet(Opcode::SaslAuth, &[], b"PLAIN", b"\0a\0b", 2));
        input.extend(packet(Opcode::SaslStep, &[], b"PLAIN", b"x", 3));
        let (out, action) = feed(&sh, &input, 5);
        assert_eq!(action, Action::Continue);
        let statuses: Vec<u16> = replies(&out).iter().map(|r| r.1).collect();
        assert_eq!(statuses, vec![0x81, 0x81, 0x81]);
    }

    #[test]
    fn pwdb_lines_follow_memcached_convention() {
        let db = parse_pwdb(b"alice:secret\r\nbob:pw:extra\nnocolon\n:empty\ncarol:\n");
        let pairs: Vec<(&[u8], &[u8])> =
            db.iter().map(|c| (&c.user[..], &c.password[..])).collect();
        assert_eq!(
            pairs,
            vec![
                (&b"alice"[..], &b"secret"[..]),
                (b"bob", b"pw"),
                (b"", b"empty"),
                (b"carol", b""),
            ]
        );
    }

    #[test]
    fn plain_accepts_only_the_right_password() {
        let db = parse_pwdb(b"alice:secret\nbob:pw2\nalice:other\n");
        assert!(check_plain(&db, b"\0alice\0secret"));
        assert!(check_plain(&db, b"alice\0alice\0secret"));
        assert!(check_plain(&db, b"\0bob\0pw2"));
        assert!(!check_plain(&db, b"\0alice\0other"), "first line decides");
        assert!(!check_plain(&db, b"\0alice\0secre"));
        assert!(!check_plain(&db, b"\0alice\0secrets"));
        assert!(!check_plain(&db, b"bob\0alice\0secret"), "proxy login");
        assert!(!check_plain(&db, b"\0nobody\0secret"));
        assert!(!check_plain(&db, b"\0alice"));
        assert!(!check_plain(&db, b""));
        assert!(!check_plain(&db, b"\0\0"));
        assert!(!check_plain(&[], b"\0alice\0secret"));
    }
}
