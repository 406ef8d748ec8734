//! Command semantics: the only layer that knows both protocols and the store.
//!
//! A protocol parser turns bytes into a typed request; the functions here
//! give each request its memcached meaning (which store operation, which
//! counters move, which reply bytes) and append the reply to the
//! connection's output buffer. They never touch sockets, so the same code
//! serves every transport, and the server layer never knows what a
//! command means.

pub mod admin;
pub mod auth;
pub mod binary;
pub mod crawler;
pub mod detail;
pub mod fill;
pub mod maintainer;
pub mod meta;
pub mod out;
pub mod pins;
pub mod rebalance;
pub mod session;
pub mod text;
pub mod watch;

pub(crate) mod stats_cmd;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::stats::{ConnStats, ThreadStats};
use crate::store::Store;

/// The version memcached clients see on the wire. Clients parse it to
/// decide which features the server has, so it leads with the memcached
/// release whose behaviour gannet reproduces.
pub const WIRE_VERSION: &str = concat!("1.6.18-gannet-", env!("CARGO_PKG_VERSION"));

/// Highest `verbosity` level memcached keeps.
pub const MAX_VERBOSITY: u32 = 2;

/// Why the process should stop, as asked by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// `shutdown`: like SIGINT.
    Now,
    /// `shutdown graceful`: like SIGUSR1.
    Graceful,
}

/// State every worker shares: settings, the store, counters.
pub struct Shared {
    pub settings: Settings,
    pub store: Store,
    pub clock: Arc<Clock>,
    pub conns: ConnStats,
    /// Per-worker counters; worker `i` writes only `threads[i]`.
    pub threads: Vec<Arc<ThreadStats>>,
    /// `verbosity` / `-v` level.
    pub verbosity: AtomicU32,
    /// Set when a client asked for shutdown; the server acts on it.
    stop: AtomicU32,
    /// Current `cache_memlimit` in megabytes.
    pub memlimit_mb: AtomicU32,
    pub started_accepting: AtomicBool,
    /// `stats detail` per-prefix counters.
    pub detail: detail::Detail,
    /// Settings `slabs`/`lru`/`lru_crawler` change at run time.
    pub tunables: admin::Tunables,
    /// The LRU crawler's requests and counters (its thread is started by
    /// `crawler::spawn`).
    pub crawler: crawler::Crawler,
    /// Queued `slabs reassign` moves (its thread is started by
    /// `rebalance::spawn`).
    pub rebalancer: rebalance::Rebalancer,
    /// Open sockets for `stats conns`.
    pub conn_table: crate::stats::ConnTable,
    /// The TLS context (`-Z`), seen through what `exec` needs of it:
    /// `refresh_certs` and the `ssl_*` lines of `stats`. `None` without
    /// `-Z`.
    pub tls: Option<Arc<dyn TlsHook>>,
}

/// What `exec` may do with the TLS context (which lives in
/// `server::tls`), so that command semantics never depend on rustls.
pub trait TlsHook: Send + Sync {
    /// Reload the certificate files for new connections; the error is
    /// the reply line memcached gives (with its `\r\n`).
    fn refresh_certs(&self) -> Result<(), String>;
    /// `ssl_new_sessions`: sessions put in the server-side cache; `None`
    /// without `ssl_session_cache` (memcached then omits the line).
    fn new_sessions(&self) -> Option<u64>;
    /// `ssl_handshake_errors`.
    fn handshake_errors(&self) -> u64;
    /// `time_since_server_cert_refresh`.
    fn secs_since_cert_refresh(&self) -> u32;
}

impl Shared {
    pub fn new(settings: Settings, clock: Arc<Clock>) -> Shared {
        let mut store_cfg = settings.store_config();
        store_cfg.on_evict = Some(watch::eviction_hook);
        store_cfg.on_slab_move = Some(watch::slab_move);
        let store = Store::new(store_cfg, Arc::clone(&clock));
        let tunables = admin::Tunables::new(&settings);
        let threads = (0..settings.threads.max(1))
            .map(|_| Arc::new(ThreadStats::default()))
            .collect();
        let verbosity = AtomicU32::new(settings.verbose as u32);
        let memlimit_mb = AtomicU32::new(settings.memory_limit_mb as u32);
        let conns = ConnStats::default();
        conns.accepting.store(true, Ordering::Relaxed);
        // `-D` turns collection on from the start, as in memcached.
        let detail = detail::Detail::default();
        detail.set_enabled(settings.detail_enabled);
        Shared {
            settings,
            store,
            clock,
            conns,
            threads,
            verbosity,
            stop: AtomicU32::new(0),
            memlimit_mb,
            started_accepting: AtomicBool::new(true),
            detail,
            tunables,
            crawler: crawler::Crawler::default(),
            rebalancer: rebalance::Rebalancer::default(),
            conn_table: crate::stats::ConnTable::default(),
            tls: None,
        }
    }

    pub fn request_stop(&self, why: StopRequest) {
        let v = match why {
            StopRequest::Now => 1,
            StopRequest::Graceful => 2,
        };
        self.stop.store(v, Ordering::SeqCst);
    }

    pub fn stop_requested(&self) -> Option<StopRequest> {
        match self.stop.load(Ordering::SeqCst) {
            1 => Some(StopRequest::Now),
            2 => Some(StopRequest::Graceful),
            _ => None,
        }
    }
}

/// What a worker passes to `exec` for one request.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub stats: &'a ThreadStats,
}

/// Count why a lookup missed (`get_expired`, `get_flushed`), the same for
/// every front end.
pub(crate) fn count_miss_reason(ctx: &Ctx, miss: crate::store::Miss) {
    match miss {
        crate::store::Miss::Expired => ctx.stats.ops.get_expired.incr(),
        crate::store::Miss::Flushed => ctx.stats.ops.get_flushed.incr(),
        crate::store::Miss::NotFound => {}
    }
}

/// What the connection must do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Close after flushing what is already in the output buffer.
    Close,
    /// Discard this many input bytes (a refused data block).
    Swallow(usize),
    /// Ask the process to stop (the server raises the signal), then close.
    Stop(StopRequest),
}
