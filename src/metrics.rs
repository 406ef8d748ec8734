//! A Prometheus `/metrics` endpoint served by gannet itself
//! (`-o metrics_listen=<addr:port>`).
//!
//! One thread accepts on its own listener and answers each connection
//! with one HTTP/1.1 response (`Connection: close`). The body is rendered
//! from the same `stats` groups the text protocol serves (so every value
//! equals what `stats` shows at that moment), under the metric names the
//! Prometheus memcached_exporter uses, plus gannet's latency and hot-key
//! figures. The workers never see this thread: it only reads counters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::exec::stats_cmd::{for_each_pair, Group};
use crate::exec::{Ctx, Shared};

/// Bind `settings.metrics_listen` (when set) and serve it on a thread of
/// its own. The address is `host:port`; a bare port means 127.0.0.1.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(addr) = shared.settings.metrics_listen.clone() else {
        return Ok(None);
    };
    let addr = if addr.contains(':') {
        addr
    } else {
        format!("127.0.0.1:{addr}")
    };
    let listener = TcpListener::bind(&addr)?;
    let h = std::thread::Builder::new()
        .name("gannet-metrics".into())
        .spawn(move || serve(listener, shared))?;
    Ok(Some(h))
}

fn serve(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = answer(c, &shared) {
                    log::debug!("metrics: {e}");
                }
            }
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut c: TcpStream, shared: &Shared) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        if req.len() > 16 * 1024 {
            return respond(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            );
        }
    }
    let line = req.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let path = parts.next().unwrap_or(b"");
    let path = path.split(|&b| b == b'?').next().unwrap_or(b"");
    if method != b"GET" && method != b"HEAD" {
        return respond(
            &mut c,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    match path {
        b"/metrics" => {
            let body = render(shared);
            let body = if method == b"HEAD" { "" } else { &body };
            respond(
                &mut c,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
            )
        }
        b"/" => respond(&mut c, "200 OK", "text/plain", b"gannet: see /metrics\n"),
        _ => respond(&mut c, "404 Not Found", "text/plain", b"not found\n"),
    }
}

fn respond(c: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body)?;
    c.flush()
}

/// One group's pairs as a name -> value map, in order.
fn group(ctx: &Ctx, g: Group) -> Vec<(String, String)> {
    let mut scratch = Vec::new();
    let mut v = Vec::new();
    for_each_pair(ctx, g, &mut scratch, |n, val| {
        v.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(val).into_owned(),
        ))
    });
    v
}

/// Prometheus text exposition writer: a HELP/TYPE header once per name.
struct Out {
    s: String,
    declared: std::collections::HashSet<String>,
}

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        if self.declared.insert(name.to_string()) {
            let _ = writeln!(self.s, "# HELP {name} {help}");
            let _ = writeln!(self.s, "# TYPE {name} {kind}");
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape_label(v));
            }
            self.s.push('}');
        }
        self.s.push(' ');
        self.s.push_str(value);
        self.s.push('\n');
    }

    fn metric(&mut self, name: &str, kind: &str, help: &str, value: &str) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A stats value as a Prometheus number ("yes"/"no" as 1/0).
fn num(v: &str) -> Option<String> {
    match v {
        "yes" | "on" => Some("1".into()),
        "no" | "off" => Some("0".into()),
        _ => v.parse::<f64>().ok().map(|_| v.to_string()),
    }
}

/// The whole `/metrics` body.
pub fn render(shared: &Shared) -> String {
    let ctx = Ctx {
        shared,
        stats: &shared.threads[0],
    };
    let general = group(&ctx, Group::General);
    let g: HashMap<&str, &str> = general
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let get = |k: &str| {
        g.get(k)
            .copied()
            .and_then(num)
            .unwrap_or_else(|| "0".into())
    };
    let mut o = Out {
        s: String::with_capacity(16 * 1024),
        declared: Default::default(),
    };
    o.metric(
        "memcached_up",
        "gauge",
        "Could the memcached server be reached.",
        "1",
    );
    o.metric(
        "memcached_uptime_seconds",
        "counter",
        "Seconds the server has been running.",
        &get("uptime"),
    );
    o.metric(
        "memcached_time_seconds",
        "gauge",
        "Current UNIX time according to the server.",
        &get("time"),
    );
    o.head(
        "memcached_version",
        "gauge",
        "The version of this memcached server.",
    );
    o.sample(
        "memcached_version",
        &[("version", g.get("version").copied().unwrap_or(""))],
        "1",
    );
    let simple: &[(&str, &str, &str, &str)] = &[
        (
            "memcached_rusage_user_seconds",
            "counter",
            "Accumulated user time for this process.",
            "rusage_user",
        ),
        (
            "memcached_rusage_system_seconds",
            "counter",
            "Accumulated system time for this process.",
            "rusage_system",
        ),
        (
            "memcached_current_bytes",
            "gauge",
            "Current number of bytes used to store items.",
            "bytes",
        ),
        (
            "memcached_limit_bytes",
            "gauge",
            "Number of bytes this server is allowed to use for storage.",
            "limit_maxbytes",
        ),
        (
            "memcached_current_connections",
            "gauge",
            "Current number of open connections.",
            "curr_connections",
        ),
        (
            "memcached_connections_total",
            "counter",
            "Total number of connections opened since the server started running.",
            "total_connections",
        ),
        (
            "memcached_connections_rejected_total",
            "counter",
            "Total number of connections rejected due to hitting the -c limit.",
            "rejected_connections",
        ),
        (
            "memcached_connections_yielded_total",
            "counter",
            "Total number of connections yielded because of the -R limit.",
            "conn_yields",
        ),
        (
            "memcached_connections_listener_disabled_total",
            "counter",
            "Number of times the server hit its connection limit and disabled its listener.",
            "listen_disabled_num",
        ),
        (
            "memcached_accepting_conns",
            "gauge",
            "Whether the server is currently accepting new connections.",
            "accepting_conns",
        ),
        (
            "memcached_max_connections",
            "gauge",
            "Maximum number of clients allowed.",
            "max_connections",
        ),
        (
            "memcached_current_items",
            "gauge",
            "Current number of items stored by this instance.",
            "curr_items",
        ),
        (
            "memcached_items_total",
            "counter",
            "Total number of items stored during the life of this instance.",
            "total_items",
        ),
        (
            "memcached_items_evicted_total",
            "counter",
            "Total number of valid items removed from cache to free memory for new items.",
            "evictions",
        ),
        (
            "memcached_items_reclaimed_total",
            "counter",
            "Total number of times an entry was stored using memory from an expired entry.",
            "reclaimed",
        ),
        (
            "memcached_item_too_large_total",
            "counter",
            "Number of items rejected for exceeding the maximum item size.",
            "store_too_large",
        ),
        (
            "memcached_item_no_memory_total",
            "counter",
            "Number of items rejected because no memory could be found.",
            "store_no_memory",
        ),
        (
            "memcached_read_bytes_total",
            "counter",
            "Total number of bytes read by this server from network.",
            "bytes_read",
        ),
        (
            "memcached_written_bytes_total",
            "counter",
            "Total number of bytes sent by this server to network.",
            "bytes_written",
        ),
        (
            "memcached_lru_crawler_starts_total",
            "counter",
            "Times an LRU crawler was started.",
            "lru_crawler_starts",
        ),
        (
            "memcached_lru_crawler_reclaimed_total",
            "counter",
            "Items freed by the LRU crawler.",
            "crawler_reclaimed",
        ),
        (
            "memcached_lru_crawler_items_checked_total",
            "counter",
            "Items examined by the LRU crawler.",
            "crawler_items_checked",
        ),
        (
            "memcached_lru_crawler_moves_to_cold_total",
            "counter",
            "Items moved from HOT or WARM to COLD.",
            "moves_to_cold",
        ),
        (
            "memcached_lru_crawler_moves_to_warm_total",
            "counter",
            "Items moved from COLD to WARM.",
            "moves_to_warm",
        ),
        (
            "memcached_lru_crawler_moves_within_lru_total",
            "counter",
            "Items reshuffled within HOT or WARM.",
            "moves_within_lru",
        ),
        (
            "memcached_direct_reclaims_total",
            "counter",
            "Times worker threads had to directly reclaim or evict items.",
            "direct_reclaims",
        ),
        (
            "memcached_log_watchers",
            "gauge",
            "Number of connected watch clients.",
            "log_watchers",
        ),
        (
            "memcached_log_watcher_sent_total",
            "counter",
            "Watch log lines sent to watchers.",
            "log_watcher_sent",
        ),
        (
            "memcached_log_watcher_skipped_total",
            "counter",
            "Watch log lines dropped because a watcher was too slow.",
            "log_watcher_skipped",
        ),
    ];
    for (name, kind, help, field) in simple {
        o.metric(name, kind, help, &get(field));
    }
    // memcached_commands_total{command,status}, as the exporter derives it.
    o.head(
        "memcached_commands_total",
        "counter",
        "Total number of all requests broken down by command (get, set, etc.) and status.",
    );
    let cmds: &[(&str, &str, &str)] = &[
        ("get", "hit", "get_hits"),
        ("get", "miss", "get_misses"),
        ("get", "expired", "get_expired"),
        ("get", "flushed", "get_flushed"),
        ("set", "hit", "cmd_set"),
        ("delete", "hit", "delete_hits"),
        ("delete", "miss", "delete_misses"),
        ("incr", "hit", "incr_hits"),
        ("incr", "miss", "incr_misses"),
        ("decr", "hit", "decr_hits"),
        ("decr", "miss", "decr_misses"),
        ("cas", "hit", "cas_hits"),
        ("cas", "miss", "cas_misses"),
        ("cas", "badval", "cas_badval"),
        ("touch", "hit", "touch_hits"),
        ("touch", "miss", "touch_misses"),
        ("flush", "hit", "cmd_flush"),
    ];
    for (cmd, status, field) in cmds {
        o.sample(
            "memcached_commands_total",
            &[("command", cmd), ("status", status)],
            &get(field),
        );
    }
    slab_metrics(&ctx, &mut o);
    latency_metrics(shared, &mut o);
    hotkey_metrics(shared, &mut o);
    o.s
}

/// Labelled samples of one metric family.
type Labels = Vec<(String, String)>;
/// (name, type, help, samples).
type Family = (String, &'static str, &'static str, Vec<(Labels, String)>);

/// Per-class figures from `stats slabs` and `stats items`.
fn slab_metrics(ctx: &Ctx, o: &mut Out) {
    let slabs: &[(&str, &str, &str, &str)] = &[
        (
            "chunk_size",
            "memcached_slab_chunk_size_bytes",
            "gauge",
            "Number of bytes allocated to each chunk within this slab class.",
        ),
        (
            "chunks_per_page",
            "memcached_slab_chunks_per_page",
            "gauge",
            "Number of chunks within a single page for this slab class.",
        ),
        (
            "total_pages",
            "memcached_slab_current_pages",
            "gauge",
            "Number of pages allocated to this slab class.",
        ),
        (
            "total_chunks",
            "memcached_slab_current_chunks",
            "gauge",
            "Number of chunks allocated to this slab class.",
        ),
        (
            "used_chunks",
            "memcached_slab_chunks_used",
            "gauge",
            "Number of chunks allocated to an item.",
        ),
        (
            "free_chunks",
            "memcached_slab_chunks_free",
            "gauge",
            "Number of chunks not yet allocated to items.",
        ),
        (
            "free_chunks_end",
            "memcached_slab_chunks_free_end",
            "gauge",
            "Number of free chunks at the end of the last allocated page.",
        ),
        (
            "mem_requested",
            "memcached_slab_mem_requested_bytes",
            "gauge",
            "Number of bytes of memory actual items take up within a slab.",
        ),
    ];
    let slab_cmds: &[(&str, &str, &str)] = &[
        ("get_hits", "get", "hit"),
        ("cmd_set", "set", "hit"),
        ("delete_hits", "delete", "hit"),
        ("incr_hits", "incr", "hit"),
        ("decr_hits", "decr", "hit"),
        ("cas_hits", "cas", "hit"),
        ("cas_badval", "cas", "badval"),
        ("touch_hits", "touch", "hit"),
    ];
    let items: &[(&str, &str, &str, &str)] = &[
        ("number", "memcached_slab_current_items", "gauge", "Number of items currently stored in this slab class."),
        ("number_hot", "memcached_slab_hot_items", "gauge", "Number of items presently stored in the HOT LRU."),
        ("number_warm", "memcached_slab_warm_items", "gauge", "Number of items presently stored in the WARM LRU."),
        ("number_cold", "memcached_slab_cold_items", "gauge", "Number of items presently stored in the COLD LRU."),
        ("number_temp", "memcached_slab_temporary_items", "gauge", "Number of items presently stored in the TEMPORARY LRU."),
        ("age_hot", "memcached_slab_hot_age_seconds", "gauge", "Age of the oldest item in HOT LRU."),
        ("age_warm", "memcached_slab_warm_age_seconds", "gauge", "Age of the oldest item in WARM LRU."),
        ("age", "memcached_slab_items_age_seconds", "gauge", "Number of seconds the oldest item has been in the slab class."),
        ("evicted", "memcached_slab_items_evicted_total", "counter", "Total number of times an item had to be evicted from the LRU before it expired."),
        ("evicted_nonzero", "memcached_slab_items_evicted_nonzero_total", "counter", "Total number of times an item which had an explicit expire time set had to be evicted from the LRU before it expired."),
        ("evicted_time", "memcached_slab_items_evicted_time_seconds", "gauge", "Seconds since the last access for the most recent item evicted from this class."),
        ("outofmemory", "memcached_slab_items_outofmemory_total", "counter", "Total number of items for this slab class that have triggered an out of memory error."),
        ("tailrepairs", "memcached_slab_items_tailrepairs_total", "counter", "Total number of times the entries for a particular ID need repairing."),
        ("reclaimed", "memcached_slab_items_reclaimed_total", "counter", "Total number of items reclaimed."),
        ("expired_unfetched", "memcached_slab_items_expired_unfetched_total", "counter", "Total number of items that expired and never got fetched."),
        ("evicted_unfetched", "memcached_slab_items_evicted_unfetched_total", "counter", "Total number of items evicted and never fetched."),
        ("crawler_reclaimed", "memcached_slab_items_crawler_reclaimed_total", "counter", "Total number of items freed by the LRU Crawler."),
        ("moves_to_cold", "memcached_slab_items_moves_to_cold_total", "counter", "Number of items moved from HOT or WARM into COLD."),
        ("moves_to_warm", "memcached_slab_items_moves_to_warm_total", "counter", "Number of items moves from COLD into WARM."),
        ("moves_within_lru", "memcached_slab_items_moves_within_lru_total", "counter", "Number of times active items were bumped within HOT or WARM."),
        ("hits_to_hot", "memcached_slab_lru_hits_total", "counter", "Number of get_hits to the LRU."),
    ];
    // Group samples per metric so each family's lines stay together.
    let mut fam: Vec<Family> = Vec::new();
    let mut add = |name: &str,
                   kind: &'static str,
                   help: &'static str,
                   labels: Vec<(String, String)>,
                   v: String| {
        if let Some(f) = fam.iter_mut().find(|f| f.0 == name) {
            f.3.push((labels, v));
        } else {
            fam.push((name.to_string(), kind, help, vec![(labels, v)]));
        }
    };
    let mut malloced = None;
    for (k, v) in group(ctx, Group::Slabs) {
        let Some((class, field)) = k.split_once(':') else {
            if k == "total_malloced" {
                malloced = num(&v);
            }
            continue;
        };
        let Some(v) = num(&v) else { continue };
        if let Some((_, name, kind, help)) = slabs.iter().find(|s| s.0 == field) {
            add(name, kind, help, vec![("slab".into(), class.into())], v);
        } else if let Some((_, cmd, status)) = slab_cmds.iter().find(|s| s.0 == field) {
            add(
                "memcached_slab_commands_total",
                "counter",
                "Total number of all requests broken down by command (get, set, etc.) and status per slab.",
                vec![
                    ("slab".into(), class.into()),
                    ("command".into(), cmd.to_string()),
                    ("status".into(), status.to_string()),
                ],
                v,
            );
        }
    }
    for (k, v) in group(ctx, Group::Items) {
        let mut parts = k.splitn(3, ':');
        let (Some("items"), Some(class), Some(field)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(v) = num(&v) else { continue };
        if let Some(hits) = field.strip_prefix("hits_to_") {
            add(
                "memcached_slab_lru_hits_total",
                "counter",
                "Number of get_hits to the LRU.",
                vec![("slab".into(), class.into()), ("lru".into(), hits.into())],
                v,
            );
        } else if let Some((_, name, kind, help)) = items.iter().find(|s| s.0 == field) {
            add(name, kind, help, vec![("slab".into(), class.into())], v);
        }
    }
    for (name, kind, help, samples) in fam {
        o.head(&name, kind, help);
        for (labels, v) in samples {
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            o.sample(&name, &l, &v);
        }
    }
    o.metric(
        "memcached_malloced_bytes",
        "gauge",
        "Number of bytes of memory allocated to slab pages.",
        &malloced.unwrap_or_else(|| "0".into()),
    );
}

/// `gannet_request_duration_seconds{family}` as a summary: quantiles,
/// `_count` and `_sum`-less (no sum is kept), plus the max as a gauge.
fn latency_metrics(shared: &Shared, o: &mut Out) {
    let threads: Vec<&crate::stats::ThreadStats> = shared.threads.iter().map(|t| &**t).collect();
    let sums = crate::latency::summarize(&threads);
    let name = "gannet_request_duration_seconds";
    o.head(
        name,
        "summary",
        "Server-side time from the read that completed a request to the write of its reply.",
    );
    for (fam, s) in crate::latency::FAMILY_NAMES.iter().zip(&sums) {
        for (label, q) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("0.999", 0.999)] {
            o.sample(
                name,
                &[("family", fam), ("quantile", label)],
                &secs(s.quantile(q)),
            );
        }
        o.sample(
            &format!("{name}_count"),
            &[("family", fam)],
            &s.count.to_string(),
        );
    }
    let max = "gannet_request_duration_max_seconds";
    o.head(
        max,
        "gauge",
        "Longest server-side request time seen per family.",
    );
    for (fam, s) in crate::latency::FAMILY_NAMES.iter().zip(&sums) {
        o.sample(max, &[("family", fam)], &secs(s.max));
    }
}

fn secs(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

fn hotkey_metrics(shared: &Shared, o: &mut Out) {
    let n = shared.settings.hotkeys;
    if n == 0 {
        return;
    }
    let threads: Vec<&crate::stats::ThreadStats> = shared.threads.iter().map(|t| &**t).collect();
    let name = "gannet_hotkey_accesses";
    o.head(
        name,
        "gauge",
        "Estimated accesses of the most accessed keys over the recent window (sampled).",
    );
    for (i, (k, c)) in crate::hotkeys::top(&threads, n, crate::hotkeys::SAMPLE)
        .iter()
        .enumerate()
    {
        let rank = (i + 1).to_string();
        o.sample(
            name,
            &[("rank", &rank), ("key", &crate::hotkeys::printable(k))],
            &c.to_string(),
        );
    }
}
