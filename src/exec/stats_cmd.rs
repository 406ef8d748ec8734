//! The `stats` command and its groups.
//!
//! Each group is rendered from counters gathered at the moment it is
//! asked for: per-thread operation counters summed across workers, the
//! store's own figures, and connection counts. Names, order and value
//! formats are memcached 1.6's, because dashboards and exporters parse
//! them.

use std::sync::atomic::Ordering;

use crate::protocol::text::Tokens;
use crate::stats::{self, GeneralStats, OpsTotals, ThreadStats};

use super::{Ctx, WIRE_VERSION};

pub fn stats(ctx: &Ctx, args: &[u8], out: &mut Vec<u8>) {
    let mut toks = Tokens::new(args);
    let sub = toks.next();
    match sub {
        None => general(ctx, out),
        Some(b"reset") => {
            for t in &ctx.shared.threads {
                t.reset();
            }
            ctx.shared.store.reset_stats();
            ctx.shared.detail.clear();
            ctx.shared.conns.total_conns.store(0, Ordering::Relaxed);
            ctx.shared.conns.rejected_conns.store(0, Ordering::Relaxed);
            out.extend_from_slice(b"RESET\r\n");
            return;
        }
        Some(b"settings") => settings(ctx, out),
        Some(b"items") => pairs(out, ctx.shared.store.stats_items()),
        Some(b"slabs") => slabs(ctx, out),
        Some(b"sizes") => pairs(out, ctx.shared.store.stats_sizes()),
        Some(b"conns") => {}
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
    }
    out.extend_from_slice(b"END\r\n");
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
    let store = shared.store.stats();
    stats::write_general(
        out,
        &GeneralStats {
            pid: std::process::id(),
            uptime: shared.clock.now().saturating_sub(2) as u64,
            time: shared.clock.unix_now(),
            version: WIRE_VERSION,
            max_connections: shared.settings.max_conns,
            threads: shared.settings.threads,
            reserved_fds: 20,
            ops: &ops,
            conns: &shared.conns,
            store: &store,
            log_watchers: 0,
        },
    );
}

/// `stats slabs`: the store's per-class lines with the per-class
/// operation counters (which workers count) merged in, as memcached shows
/// them.
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
        let class = k
            .split_once(':')
            .and_then(|(c, _)| c.parse::<usize>().ok())
            .filter(|c| *c < stats::MAX_CLASSES);
        if last_class.is_some() && class != last_class {
            flush_ops(out, last_class.unwrap_or(0));
        }
        last_class = class;
        stats::push_stat(out, &k, v);
    }
}

fn settings(ctx: &Ctx, out: &mut Vec<u8>) {
    let s = &ctx.shared.settings;
    stats::push_stat(out, "maxbytes", ctx.shared.store.stats().limit_maxbytes);
    stats::push_stat(out, "maxconns", s.max_conns);
    stats::push_stat(out, "tcpport", s.port);
    stats::push_stat(out, "udpport", s.udp_port);
    stats::push_stat(
        out,
        "verbosity",
        ctx.shared.verbosity.load(Ordering::Relaxed),
    );
    stats::push_stat(out, "num_threads", s.threads);
    stats::push_stat(out, "item_size_max", s.item_size_max);
}
