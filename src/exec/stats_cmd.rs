//! The `stats` command and its groups.
//!
//! Each group is rendered from counters gathered at the moment it is
//! asked for: per-thread operation counters summed across workers, the
//! store's own figures, and connection counts. Names, order and value
//! formats are memcached 1.6's, because dashboards and exporters parse
//! them.

use std::sync::atomic::Ordering;

use crate::protocol::number;
use crate::protocol::text::Tokens;
use crate::stats::{self, GeneralStats, OpsTotals, ThreadStats};
use crate::store::SizesRefused;

use super::{Ctx, WIRE_VERSION};

/// How far memcached's relative clock is ahead of gannet's: it starts 62 s
/// before start-up (`ITEM_UPDATE_INTERVAL` + 2), gannet's 2 s. Times
/// memcached shows on its clock (`oldest`) are shifted by this.
const MEMCACHED_CLOCK_LEAD: u64 = 60;

/// One group of `stats` name/value pairs. Both front ends render the same
/// groups: text as `STAT <name> <value>` lines, binary as one STAT packet
/// per pair (see [`for_each_pair`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    /// `stats conns` (text only: memcached's binary STAT does not know it).
    Conns,
    /// `stats latency` (gannet): per command family count and quantiles.
    Latency,
    /// `stats hotkeys` (gannet): the most accessed keys, with `-o hotkeys=N`.
    Hotkeys,
}

/// The text `stats [group]` command.
pub fn stats(ctx: &Ctx, args: &[u8], out: &mut Vec<u8>) {
    let mut toks = Tokens::new(args);
    let group = match toks.next() {
        None => Group::General,
        Some(b"reset") => {
            reset(ctx);
            out.extend_from_slice(b"RESET\r\n");
            return;
        }
        Some(b"settings") => Group::Settings,
        Some(b"items") => Group::Items,
        Some(b"slabs") => Group::Slabs,
        Some(b"sizes") => Group::Sizes,
        Some(b"sizes_enable") | Some(b"sizes_disable") => {
            // memcached answers these with the new status and no `END`.
            sizes_switch(ctx, args.starts_with(b"sizes_enable"), out);
            return;
        }
        Some(b"conns") => Group::Conns,
        // The pages of the external store: memcached without `ext_path`
        // has none to list, and gannet has no external store.
        Some(b"extstore") => {
            out.extend_from_slice(b"END\r\n");
            return;
        }
        Some(b"cachedump") => {
            cachedump(ctx, toks.next(), toks.next(), out);
            return;
        }
        Some(b"hotkeys") => Group::Hotkeys,
        Some(b"latency") => match toks.next() {
            None => Group::Latency,
            Some(b"on") | Some(b"off") => {
                crate::latency::set_enabled(args.ends_with(b"on"));
                out.extend_from_slice(b"OK\r\n");
                return;
            }
            Some(_) => {
                out.extend_from_slice(b"CLIENT_ERROR usage: stats latency [on|off]\r\n");
                return;
            }
        },
        Some(b"detail") => {
            match toks.next() {
                Some(b"on") => {
                    ctx.shared.detail.set_enabled(true);
                    out.extend_from_slice(b"OK\r\n");
                }
                Some(b"off") => {
                    ctx.shared.detail.set_enabled(false);
                    out.extend_from_slice(b"OK\r\n");
                }
                Some(b"dump") => ctx.shared.detail.dump(out),
                _ => out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
            }
            return;
        }
        Some(_) => {
            out.extend_from_slice(b"ERROR\r\n");
            return;
        }
    };
    write_group(ctx, group, out);
    out.extend_from_slice(b"END\r\n");
}

/// memcached caps a cachedump reply at 2 MB, `END` included.
const CACHEDUMP_MAX: usize = 2 * 1024 * 1024;

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <exptime> s]`
/// for the newest items of one class (see `Store::cachedump`), then `END`,
/// with memcached's argument checks and its 2 MB cap.
fn cachedump(ctx: &Ctx, class: Option<&[u8]>, limit: Option<&[u8]>, out: &mut Vec<u8>) {
    let fail = |out: &mut Vec<u8>, msg: &str| {
        out.extend_from_slice(msg.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    if ctx.shared.settings.no_dump {
        return fail(out, "CLIENT_ERROR stats cachedump not allowed");
    }
    let (Some(class), Some(limit)) = (class, limit) else {
        return fail(out, "CLIENT_ERROR bad command line");
    };
    let (Some(class), Some(limit)) = (number::strtoul(class), number::strtoul(limit)) else {
        return fail(out, "CLIENT_ERROR bad command line format");
    };
    if class >= 64 {
        return fail(out, "CLIENT_ERROR Illegal slab id");
    }
    let started = ctx.shared.clock.process_started();
    // memcached keeps room for `END\r\n` and a C string's NUL.
    let end = out.len() + CACHEDUMP_MAX - 6;
    let mut line = Vec::with_capacity(300);
    ctx.shared.store.cachedump(class as u8, limit, |it| {
        line.clear();
        line.extend_from_slice(b"ITEM ");
        // memcached copies the key as a C string: it ends at a NUL.
        let key = it.key();
        let key = &key[..key.iter().position(|&b| b == 0).unwrap_or(key.len())];
        line.extend_from_slice(key);
        line.extend_from_slice(b" [");
        number::push_u64(&mut line, it.value_len() as u64);
        line.extend_from_slice(b" b; ");
        let exp = match it.exptime() {
            0 => 0,
            e => i64::from(e) + started,
        };
        crate::protocol::meta::push_i64(&mut line, exp);
        line.extend_from_slice(b" s]\r\n");
        if out.len() + line.len() > end {
            return false;
        }
        out.extend_from_slice(&line);
        true
    });
    out.extend_from_slice(b"END\r\n");
}

/// `stats sizes_enable|sizes_disable`: switch the size histogram and
/// write the `STAT` lines memcached answers with (no `END`).
pub(crate) fn sizes_switch(ctx: &Ctx, on: bool, out: &mut Vec<u8>) {
    for (k, v) in sizes_switch_stats(ctx, on) {
        stats::push_stat(out, k, v);
    }
}

/// What `sizes_enable|sizes_disable` answers, in both protocols: the
/// status, and memcached's reason when enabling is refused.
pub(crate) fn sizes_switch_stats(ctx: &Ctx, on: bool) -> &'static [(&'static str, &'static str)] {
    match ctx.shared.store.set_track_sizes(on) {
        Err(SizesRefused::CasDisabled) => &[
            ("sizes_status", "error"),
            ("sizes_error", "cas_support_disabled"),
        ],
        Ok(()) if on => &[("sizes_status", "enabled")],
        Ok(()) => &[("sizes_status", "disabled")],
    }
}

/// `stats reset`: zero every resettable counter.
pub(crate) fn reset(ctx: &Ctx) {
    for t in &ctx.shared.threads {
        t.reset();
    }
    ctx.shared.store.reset_stats();
    ctx.shared.detail.clear();
    ctx.shared.conns.total_conns.store(0, Ordering::Relaxed);
    ctx.shared.conns.rejected_conns.store(0, Ordering::Relaxed);
    ctx.shared.crawler.reset_starts();
    ctx.shared
        .conns
        .listen_disabled_num
        .store(0, Ordering::Relaxed);
    ctx.shared
        .conns
        .time_in_listen_disabled_us
        .store(0, Ordering::Relaxed);
}

/// Appends `group` as `STAT <name> <value>\r\n` lines (no `END`).
pub(crate) fn write_group(ctx: &Ctx, group: Group, out: &mut Vec<u8>) {
    match group {
        Group::General => general(ctx, out),
        Group::Settings => settings(ctx, out),
        Group::Items => pairs(out, ctx.shared.store.stats_items()),
        Group::Slabs => slabs(ctx, out),
        Group::Sizes => pairs(out, ctx.shared.store.stats_sizes()),
        Group::Conns => {
            ctx.shared
                .conn_table
                .write(out, crate::stats::current_fd(), ctx.shared.clock.now())
        }
        Group::Latency => crate::latency::write_stats(out, &thread_refs(ctx)),
        Group::Hotkeys => {
            crate::hotkeys::write_stats(out, ctx.shared.settings.hotkeys, &thread_refs(ctx))
        }
    }
}

/// Calls `f(name, value)` for each pair of `group`, in the order the text
/// `stats` prints them. The group is rendered once as text lines into
/// `scratch` (cleared first) and split, so every front end shows exactly
/// the same names and values.
pub(crate) fn for_each_pair(
    ctx: &Ctx,
    group: Group,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &[u8]),
) {
    scratch.clear();
    write_group(ctx, group, scratch);
    for line in scratch.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"STAT ") else {
            continue;
        };
        let (name, value) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        f(name, value);
    }
}

fn pairs(out: &mut Vec<u8>, list: Vec<(String, String)>) {
    for (k, v) in list {
        stats::push_stat(out, &k, v);
    }
}

fn thread_refs<'a>(ctx: &Ctx<'a>) -> Vec<&'a ThreadStats> {
    ctx.shared.threads.iter().map(|t| &**t).collect()
}

fn general(ctx: &Ctx, out: &mut Vec<u8>) {
    let shared = ctx.shared;
    let ops = OpsTotals::sum(&thread_refs(ctx));
    let mut store = shared.store.stats();
    // A queued `slabs reassign` counts as running, as in memcached.
    store.slab_reassign_running |= shared.rebalancer.busy();
    let (log_watchers, log_watcher_sent, log_watcher_skipped) = super::watch::counters();
    stats::write_general(
        out,
        &GeneralStats {
            pid: std::process::id(),
            // memcached's uptime is its clock less 60 s, and its clock
            // starts 62 s before start-up: 2 s more than the real uptime,
            // which is what gannet's clock (started 2 s early) reads.
            uptime: u64::from(shared.clock.now()),
            time: shared.clock.unix_now(),
            version: WIRE_VERSION,
            max_connections: shared.settings.max_conns,
            threads: shared.settings.threads,
            // memcached reserves five descriptors per worker thread
            // (its event base and notify pipe).
            reserved_fds: 5 * shared.settings.threads as u64,
            ops: &ops,
            conns: &shared.conns,
            store: &store,
            log_watchers,
            log_watcher_sent,
            log_watcher_skipped,
            shown: stats::Shown {
                maxconns_fast: shared.settings.maxconns_fast,
                slab_reassign: shared.settings.slab_reassign,
                lru_crawler: shared.tunables.lru_crawler.load(Ordering::Relaxed),
                lru_maintainer: shared.settings.lru_maintainer,
            },
            crawler_running: shared.crawler.running(),
            crawler_starts: shared.crawler.starts(),
            read_bufs: ctx.shared.threads.iter().fold((0, 0, 0), |t, th| {
                let (c, b, f) = th.read_bufs.get();
                (t.0 + c, t.1 + b, t.2 + f)
            }),
            tls: shared.tls.as_ref().map(|t| stats::TlsStats {
                new_sessions: t.new_sessions(),
                handshake_errors: t.handshake_errors(),
                secs_since_cert_refresh: t.secs_since_cert_refresh(),
            }),
        },
    );
}

/// `stats slabs`: the store's per-class memory lines with the per-class
/// operation counters merged in after each class, as memcached shows
/// them. The operation counters are the workers' (the store cannot know
/// whether an access was a get or a touch), so any the store reports
/// itself are skipped.
fn slabs(ctx: &Ctx, out: &mut Vec<u8>) {
    let classes = stats::class_totals(&thread_refs(ctx));
    let names = crate::stats::ClassOps::NAMES;
    let store_lines = ctx.shared.store.stats_slabs();
    let mut last_class: Option<usize> = None;
    let flush_ops = |out: &mut Vec<u8>, class: usize| {
        for (i, n) in names.iter().enumerate() {
            let name = if *n == "set_cmds" { "cmd_set" } else { n };
            stats::push_stat(out, &format!("{}:{}", class, name), classes[class][i]);
        }
    };
    for (k, v) in store_lines {
        let split = k.split_once(':');
        let class = split
            .and_then(|(c, _)| c.parse::<usize>().ok())
            .filter(|c| *c < stats::MAX_CLASSES);
        if let Some((_, field)) = split {
            if field == "cmd_set" || names.contains(&field) {
                continue;
            }
        }
        if last_class.is_some() && class != last_class {
            flush_ops(out, last_class.unwrap_or(0));
        }
        last_class = class;
        stats::push_stat(out, &k, v);
    }
}

fn settings(ctx: &Ctx, out: &mut Vec<u8>) {
    let s = &ctx.shared.settings;
    let mut rt = crate::config::SettingsStatsCtx::from_settings(s);
    rt.maxbytes = ctx.shared.store.stats().limit_maxbytes;
    rt.verbosity = ctx.shared.verbosity.load(Ordering::Relaxed);
    rt.detail_enabled = ctx.shared.detail.enabled();
    rt.track_sizes = ctx.shared.store.track_sizes();
    rt.oldest = match ctx.shared.store.oldest_live() {
        0 => 0,
        t => u64::from(t) + MEMCACHED_CLOCK_LEAD,
    };
    let t = &ctx.shared.tunables;
    let live = ctx.shared.store.runtime_settings();
    rt.slab_automove = live.slab_automove;
    rt.slab_automove_ratio = live.slab_automove_ratio;
    rt.lru_crawler = t.lru_crawler.load(Ordering::Relaxed);
    rt.lru_segmented = live.lru_segmented;
    rt.hot_lru_pct = live.hot_lru_pct;
    rt.warm_lru_pct = live.warm_lru_pct;
    rt.hot_max_factor = live.hot_max_factor;
    rt.warm_max_factor = live.warm_max_factor;
    rt.temp_lru = live.temp_lru;
    rt.temporary_ttl = live.temporary_ttl;
    rt.ext = t.ext.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (k, v) in s.stats_settings(&rt) {
        stats::push_stat(out, k, v);
    }
}
