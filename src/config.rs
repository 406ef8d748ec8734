//! Settings from memcached's command line.
//!
//! Operators swap memcached for gannet without touching their init scripts,
//! unit files or monitoring, so the command line is an interface, not a
//! convenience: every flag memcached 1.6 accepts is accepted here, numbers
//! are read the way memcached reads them (C `atoi`/`atof` leniency included:
//! `-m garbage` is 0 MB and fails the same later check it fails in
//! memcached), checks run in memcached's order, and failures print
//! memcached's text on the same stream with the same exit code.
//!
//! clap does the tokenising (bundled short flags, `--long=value`,
//! abbreviated long names, values that start with `-`), but its own help,
//! version and error text never reach the user: when clap refuses a command
//! line, [`getopt_error`] re-reads it the way glibc's `getopt_long` does to
//! word the error as memcached would.  Options are then applied in command
//! line order, because memcached reports the first bad option it meets.
//!
//! Deliberate differences from memcached 1.6.18, each where memcached
//! would crash or misbehave:
//! - a malformed or zero `-o slab_chunk_max` exits 1 with a message
//!   (memcached 1.6.18 dies of SIGFPE); the value is in bytes as in 1.6.18,
//!   and `k`/`m` suffixes are accepted too;
//! - negative `-p`, `-U`, `-R`, `-n` and NaN/infinite `-f` are refused with
//!   the message of the matching range check; ports in `-l` above 65535 are
//!   refused instead of being truncated;
//! - `-o worker_logbuf_size` does not fall through into `slab_sizes`;
//! - a command-line syntax error (unknown option, missing argument) is
//!   reported even if a bad value came earlier on the line.
//!
//! Listener specs (`-l`, with memcached's `notls:`, `proto[..]:` and
//! `tag[..]:` prefixes) are checked here rather than at bind time, so a
//! typo fails before anything is bound; the errors keep memcached's text
//! and exit code 71 (EX_OSERR).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use crate::protocol::number;
use crate::store::StoreConfig;

/// Exit code for a usage error found after parsing (sysexits `EX_USAGE`).
pub const EX_USAGE: i32 = 64;
/// Exit code memcached uses when a listener cannot be set up (`EX_OSERR`).
pub const EX_OSERR: i32 = 71;

const KB: i64 = 1024;
const MB: i64 = 1024 * 1024;
/// memcached's slab page size; `slab_chunk_max` must divide it.
const SLAB_PAGE_SIZE: i64 = MB;
const ITEM_SIZE_MAX_LOWER: i64 = 1024;
const ITEM_SIZE_MAX_UPPER: i64 = 1024 * MB;

/// Which protocols a connection may speak (`-B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Ascii,
    Binary,
}

impl Protocol {
    /// The name memcached prints in `stats settings` (`binding_protocol`).
    pub fn stats_name(self) -> &'static str {
        match self {
            Protocol::Auto => "auto-negotiate",
            Protocol::Ascii => "ascii",
            Protocol::Binary => "binary",
        }
    }
}

/// `-o hash_algorithm`: accepted for compatibility and reported in
/// `stats settings`; gannet's own table hash is not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Jenkins,
    Murmur3,
    Xxh3,
}

impl HashAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Jenkins => "jenkins",
            HashAlgorithm::Murmur3 => "murmur3",
            HashAlgorithm::Xxh3 => "xxh3",
        }
    }
}

/// One `-l` entry: an address to listen on, with an optional port
/// (otherwise `-p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    /// As memcached's `int`: -1 asks the kernel for a port, and any
    /// other value goes to `getaddrinfo` as it is.
    pub port: Option<i32>,
    /// memcached's `notls:` prefix (TLS issue).
    pub notls: bool,
    /// memcached's `proto[ascii|binary|negotiating]:` prefix: this
    /// listener's protocol instead of `-B` (`None` = use `-B`).
    pub protocol: Option<Protocol>,
    /// memcached's `tag[name]:` prefix (1..=8 bytes; for logging/filters).
    pub tag: Option<String>,
}

/// memcached's extstore tunables (`-o ext_*`, and at run time the
/// `extstore` command).  gannet has no external storage: the values are
/// only kept so `stats settings` reports what the operator asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtstoreSettings {
    /// `ext_path` entries (ignored; a warning is emitted).
    pub paths: Vec<String>,
    pub item_size: u32,
    pub item_age: u32,
    pub low_ttl: u32,
    pub recache_rate: u32,
    /// In bytes (given in megabytes).
    pub wbuf_size: u32,
    pub compact_under: u32,
    pub drop_under: u32,
    pub max_sleep: u32,
    pub max_frag: f64,
    pub drop_unread: bool,
    /// In bytes (given in megabytes).
    pub page_size: u32,
    pub threads: u32,
    pub io_depth: u32,
}

impl Default for ExtstoreSettings {
    fn default() -> Self {
        ExtstoreSettings {
            paths: Vec::new(),
            item_size: 512,
            item_age: u32::MAX,
            low_ttl: 0,
            recache_rate: 2000,
            wbuf_size: 4 * 1024 * 1024,
            compact_under: 0,
            drop_under: 0,
            max_sleep: 1_000_000,
            max_frag: 0.8,
            drop_unread: false,
            page_size: 64 * 1024 * 1024,
            threads: 1,
            io_depth: 1,
        }
    }
}

/// memcached's TLS suboptions (`-o ssl_*`), kept for whoever implements
/// `-Z` and for `stats settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub chain_cert: Option<String>,
    pub key: Option<String>,
    /// OpenSSL verify flags as memcached stores them: 0, 1, 3 or 7 for
    /// `ssl_verify_mode` 0..=3.
    pub verify_mode: u32,
    /// 1 = PEM (OpenSSL's `SSL_FILETYPE_PEM`).
    pub keyformat: i32,
    pub ciphers: Option<String>,
    pub ca_cert: Option<String>,
    /// In bytes (given in kilobytes).
    pub wbuf_size: u32,
    pub session_cache: bool,
    pub kernel_tls: bool,
    /// 0..=3 for TLS 1.0..=1.3.
    pub min_version: u8,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            chain_cert: None,
            key: None,
            verify_mode: 0,
            keyformat: 1,
            ciphers: None,
            ca_cert: None,
            wbuf_size: 16 * 1024,
            session_cache: false,
            kernel_tls: false,
            min_version: 2,
        }
    }
}

/// Validated settings. Field comments name the flag.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `-p` TCP port: 0 = TCP off, -1 = a port the kernel picks for each
    /// address (see `MEMCACHED_PORT_FILENAME`). memcached keeps it an
    /// `int` and checks only `> 65535`; other values go to `getaddrinfo`
    /// as they are (a negative one fails there, exit 71).
    pub port: i32,
    /// `-U` UDP port, with the same meanings and no range check at all.
    pub udp_port: i32,
    /// `-l`: addresses; empty = all interfaces.
    pub listen: Vec<ListenAddr>,
    /// `-s`: unix socket path (TCP and UDP are off when given).
    pub socket_path: Option<PathBuf>,
    /// `-a`: unix socket permission mask (octal on the command line).
    pub socket_mask: u32,
    /// `-m` in megabytes.
    pub memory_limit_mb: usize,
    /// `-M`: return an error instead of evicting.
    pub no_evict: bool,
    /// `-c`.
    pub max_conns: usize,
    /// `-t`.
    pub threads: usize,
    /// `-R`.
    pub reqs_per_event: usize,
    /// `-C`: disable CAS.
    pub no_cas: bool,
    /// `-b`.
    pub backlog: i32,
    /// `-B`.
    pub protocol: Protocol,
    /// `-I` in bytes.
    pub item_size_max: usize,
    /// `-f`.
    pub growth_factor: f64,
    /// `-n`.
    pub chunk_size: usize,
    /// `-v` count (0..=3 are meaningful; more is kept, as memcached does).
    pub verbose: u8,
    /// `-F`: disable flush_all.
    pub no_flush: bool,
    /// `-A`: enable `shutdown`.
    pub shutdown_enabled: bool,
    /// `-u`.
    pub user: Option<String>,
    /// `-d`.
    pub daemonize: bool,
    /// `-P`.
    pub pid_file: Option<PathBuf>,
    /// `-k`.
    pub lock_memory: bool,
    /// `-L`.
    pub large_pages: bool,
    /// `-S`.
    pub sasl: bool,
    /// `-Y`.
    pub auth_file: Option<PathBuf>,
    /// `-X`: disable `lru_crawler metadump`.
    pub no_dump: bool,
    /// `-W`: disable `watch`.
    pub no_watch: bool,
    /// `-Z`: enable TLS.
    pub tls: bool,
    /// `-D`: prefix delimiter for `stats detail`.
    pub prefix_delimiter: u8,
    /// `-o idle_timeout` seconds (0 = never).
    pub idle_timeout: u32,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub temporary_ttl: u32,
    /// `-o slab_chunk_max` in bytes.
    pub slab_chunk_max: usize,
    pub slab_automove: u8,
    /// `-o hashpower` (0 = default).
    pub hashpower_init: u8,
    pub lru_crawler: bool,
    pub lru_maintainer: bool,
    pub lru_segmented: bool,
    pub track_sizes: bool,
    /// `-o hotkeys=N` (0 = off).
    pub hotkeys: usize,
    /// `-o metrics_listen=addr:port`.
    pub metrics_listen: Option<String>,

    // ---- added with the parser ----
    /// `-l` exactly as memcached keeps it (comma-joined, an argument that
    /// is a substring of what is already there is dropped); shown as
    /// `inter` in `stats settings`.
    pub listen_spec: Option<String>,
    /// `-D` also turns on `stats detail` collection from the start.
    pub detail_enabled: bool,
    /// `-o temporary_ttl` given: items with a ttl of at most `temporary_ttl` go
    /// to the TEMP LRU.  memcached keeps no TEMP LRU unless this is set.
    pub temp_lru: bool,
    /// UDP workers per port: 1 when several `-l` addresses are given,
    /// otherwise `threads` (memcached's `num_threads_per_udp`).
    pub threads_per_udp: usize,
    /// `-r`: raise the core file limit.
    pub enable_coredumps: bool,
    /// `-e` (memcached's restartable mmap file). Accepted, not used.
    pub memory_file: Option<PathBuf>,
    /// `-N` (NAPI ids). Accepted, not used; 0 = unset.
    pub napi_ids: u32,
    /// `-o maxconns_fast` / `no_maxconns_fast`: reject new connections at
    /// once when over `-c` (default on).
    pub maxconns_fast: bool,
    /// `-o no_hashexpand` clears it.
    pub hash_expand: bool,
    /// `-o slab_reassign` / `no_slab_reassign`.
    pub slab_reassign: bool,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
    pub slab_automove_freeratio: f64,
    /// `-o tail_repair_time` seconds (0 = off).
    pub tail_repair_time: u32,
    pub hash_algorithm: HashAlgorithm,
    /// `-o lru_crawler_sleep` microseconds.
    pub lru_crawler_sleep: u32,
    /// `-o lru_crawler_tocrawl` (0 = unlimited).
    pub lru_crawler_tocrawl: u32,
    /// `-o watcher_logbuf_size`, bytes (given in KB).
    pub watcher_logbuf_size: u32,
    /// `-o worker_logbuf_size`, bytes (given in KB).
    pub worker_logbuf_size: u32,
    /// `-o read_buf_mem_limit`, bytes (given in MB; 0 = unlimited).
    pub read_buf_mem_limit: u32,
    /// `-o slab_sizes`: the chunk sizes of the classes below
    /// `slab_chunk_max`, in place of the `-n`/`-f` table.
    pub slab_sizes: Option<Vec<u32>>,
    /// `-o drop_privileges` / `no_drop_privileges` (accepted, not used).
    pub drop_privileges: bool,
    /// `-o sock_cookie_id` (accepted, not used).
    pub sock_cookie_id: u32,
    pub ext: ExtstoreSettings,
    pub ssl: TlsSettings,
    /// Non-fatal messages memcached prints to stderr while parsing (for
    /// example the `-t` above 64 warning); main should print each line.
    pub warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 11211,
            udp_port: 0,
            listen: Vec::new(),
            socket_path: None,
            socket_mask: 0o700,
            memory_limit_mb: 64,
            no_evict: false,
            max_conns: 1024,
            threads: 4,
            reqs_per_event: 20,
            no_cas: false,
            backlog: 1024,
            protocol: Protocol::Auto,
            item_size_max: 1024 * 1024,
            growth_factor: 1.25,
            chunk_size: 48,
            verbose: 0,
            no_flush: false,
            shutdown_enabled: false,
            user: None,
            daemonize: false,
            pid_file: None,
            lock_memory: false,
            large_pages: false,
            sasl: false,
            auth_file: None,
            no_dump: false,
            no_watch: false,
            tls: false,
            prefix_delimiter: b':',
            idle_timeout: 0,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temporary_ttl: 61,
            slab_chunk_max: 512 * 1024,
            slab_automove: 1,
            hashpower_init: 0,
            lru_crawler: true,
            lru_maintainer: true,
            lru_segmented: true,
            track_sizes: false,
            hotkeys: 0,
            metrics_listen: None,
            listen_spec: None,
            detail_enabled: false,
            temp_lru: false,
            threads_per_udp: 4,
            enable_coredumps: false,
            memory_file: None,
            napi_ids: 0,
            maxconns_fast: true,
            hash_expand: true,
            slab_reassign: true,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            slab_automove_freeratio: 0.01,
            tail_repair_time: 0,
            hash_algorithm: HashAlgorithm::Murmur3,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            watcher_logbuf_size: 256 * 1024,
            worker_logbuf_size: 64 * 1024,
            read_buf_mem_limit: 0,
            slab_sizes: None,
            drop_privileges: false,
            sock_cookie_id: 0,
            ext: ExtstoreSettings::default(),
            ssl: TlsSettings::default(),
            warnings: Vec::new(),
        }
    }
}

impl Settings {
    /// The part of the settings the storage engine needs.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            mem_limit: self.memory_limit_mb.saturating_mul(1024 * 1024),
            item_size_max: self.item_size_max,
            chunk_size_min: self.chunk_size,
            growth_factor: self.growth_factor,
            slab_sizes: self.slab_sizes.clone(),
            slab_chunk_max: self.slab_chunk_max,
            page_size: 1024 * 1024,
            evict_to_free: !self.no_evict,
            use_cas: !self.no_cas,
            hot_lru_pct: self.hot_lru_pct,
            warm_lru_pct: self.warm_lru_pct,
            hot_max_factor: self.hot_max_factor,
            warm_max_factor: self.warm_max_factor,
            temporary_ttl: self.temporary_ttl,
            temp_lru: self.temp_lru,
            lru_maintainer: self.lru_maintainer,
            hashpower_init: if self.hashpower_init == 0 {
                16
            } else {
                self.hashpower_init
            },
            slab_automove: self.slab_automove,
            slab_automove_ratio: self.slab_automove_ratio,
            slab_reassign: self.slab_reassign,
            lru_segmented: self.lru_segmented,
            prealloc: self.large_pages,
            track_sizes: self.track_sizes,
            on_evict: None,
            on_slab_move: None,
        }
    }

    /// memcached 1.6's `stats settings`, line for line (names, order and
    /// value formats of the Debian 1.6.18 build, which has extstore and
    /// TLS compiled in).  Values that change at run time come from `ctx`.
    pub fn stats_settings(&self, ctx: &SettingsStatsCtx) -> Vec<(&'static str, String)> {
        fn yn(b: bool) -> String {
            if b { "yes" } else { "no" }.to_string()
        }
        fn or_null(s: &Option<String>, null: &str) -> String {
            s.clone().unwrap_or_else(|| null.to_string())
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        let ssl_min = match self.ssl.min_version {
            0 => "tlsv1.0",
            1 => "tlsv1.1",
            2 => "tlsv1.2",
            _ => "tlsv1.3",
        };
        vec![
            ("maxbytes", ctx.maxbytes.to_string()),
            ("maxconns", self.max_conns.to_string()),
            ("tcpport", self.port.to_string()),
            ("udpport", self.udp_port.to_string()),
            ("inter", or_null(&self.listen_spec, "NULL")),
            ("verbosity", ctx.verbosity.to_string()),
            ("oldest", ctx.oldest.to_string()),
            (
                "evictions",
                if self.no_evict { "off" } else { "on" }.to_string(),
            ),
            ("domain_socket", or_null(&path(&self.socket_path), "NULL")),
            ("umask", format!("{:o}", self.socket_mask)),
            ("shutdown_command", yn(self.shutdown_enabled)),
            ("growth_factor", format!("{:.2}", self.growth_factor)),
            ("chunk_size", self.chunk_size.to_string()),
            ("num_threads", self.threads.to_string()),
            ("num_threads_per_udp", self.threads_per_udp.to_string()),
            (
                "stat_key_prefix",
                char::from(self.prefix_delimiter).to_string(),
            ),
            ("detail_enabled", yn(ctx.detail_enabled)),
            ("reqs_per_event", self.reqs_per_event.to_string()),
            ("cas_enabled", yn(!self.no_cas)),
            ("tcp_backlog", self.backlog.to_string()),
            ("binding_protocol", self.protocol.stats_name().to_string()),
            ("auth_enabled_sasl", yn(self.sasl)),
            ("auth_enabled_ascii", or_null(&path(&self.auth_file), "no")),
            ("item_size_max", self.item_size_max.to_string()),
            ("maxconns_fast", yn(self.maxconns_fast)),
            ("hashpower_init", self.hashpower_init.to_string()),
            ("slab_reassign", yn(self.slab_reassign)),
            ("slab_automove", ctx.slab_automove.to_string()),
            (
                "slab_automove_ratio",
                format!("{:.2}", ctx.slab_automove_ratio),
            ),
            (
                "slab_automove_window",
                self.slab_automove_window.to_string(),
            ),
            ("slab_chunk_max", self.slab_chunk_max.to_string()),
            ("lru_crawler", yn(ctx.lru_crawler)),
            ("lru_crawler_sleep", self.lru_crawler_sleep.to_string()),
            ("lru_crawler_tocrawl", self.lru_crawler_tocrawl.to_string()),
            ("tail_repair_time", self.tail_repair_time.to_string()),
            ("flush_enabled", yn(!self.no_flush)),
            ("dump_enabled", yn(!self.no_dump)),
            ("hash_algorithm", self.hash_algorithm.name().to_string()),
            ("lru_maintainer_thread", yn(ctx.lru_maintainer_thread)),
            ("lru_segmented", yn(ctx.lru_segmented)),
            ("hot_lru_pct", ctx.hot_lru_pct.to_string()),
            ("warm_lru_pct", ctx.warm_lru_pct.to_string()),
            ("hot_max_factor", format!("{:.2}", ctx.hot_max_factor)),
            ("warm_max_factor", format!("{:.2}", ctx.warm_max_factor)),
            ("temp_lru", yn(ctx.temp_lru)),
            ("temporary_ttl", ctx.temporary_ttl.to_string()),
            ("idle_timeout", self.idle_timeout.to_string()),
            ("watcher_logbuf_size", self.watcher_logbuf_size.to_string()),
            ("worker_logbuf_size", self.worker_logbuf_size.to_string()),
            ("read_buf_mem_limit", self.read_buf_mem_limit.to_string()),
            ("track_sizes", yn(ctx.track_sizes)),
            ("inline_ascii_response", yn(false)),
            ("ext_item_size", ctx.ext.item_size.to_string()),
            ("ext_item_age", ctx.ext.item_age.to_string()),
            ("ext_low_ttl", ctx.ext.low_ttl.to_string()),
            ("ext_recache_rate", ctx.ext.recache_rate.to_string()),
            ("ext_wbuf_size", ctx.ext.wbuf_size.to_string()),
            ("ext_compact_under", ctx.ext.compact_under.to_string()),
            ("ext_drop_under", ctx.ext.drop_under.to_string()),
            ("ext_max_sleep", ctx.ext.max_sleep.to_string()),
            ("ext_max_frag", format!("{:.2}", ctx.ext.max_frag)),
            (
                "slab_automove_freeratio",
                format!("{:.3}", self.slab_automove_freeratio),
            ),
            ("ext_drop_unread", yn(ctx.ext.drop_unread)),
            ("ssl_enabled", yn(self.tls)),
            ("ssl_chain_cert", or_null(&self.ssl.chain_cert, "(null)")),
            ("ssl_key", or_null(&self.ssl.key, "(null)")),
            ("ssl_verify_mode", self.ssl.verify_mode.to_string()),
            ("ssl_keyformat", self.ssl.keyformat.to_string()),
            ("ssl_ciphers", or_null(&self.ssl.ciphers, "NULL")),
            ("ssl_ca_cert", or_null(&self.ssl.ca_cert, "NULL")),
            ("ssl_wbuf_size", self.ssl.wbuf_size.to_string()),
            ("ssl_session_cache", yn(self.ssl.session_cache)),
            ("ssl_kernel_tls", yn(self.ssl.kernel_tls)),
            ("ssl_min_version", ssl_min.to_string()),
            (
                "num_napi_ids",
                if self.napi_ids == 0 {
                    "(null)".to_string()
                } else {
                    self.napi_ids.to_string()
                },
            ),
            ("memory_file", or_null(&path(&self.memory_file), "(null)")),
        ]
    }
}

/// Run-time values `stats settings` reports that commands can change after
/// start-up (`cache_memlimit`, `verbosity`, `flush_all`, `stats detail`,
/// `slabs automove`, `lru tune|mode|temp_ttl`, `lru_crawler
/// enable|disable`, `stats sizes_enable`).  Start from
/// [`SettingsStatsCtx::from_settings`] and overwrite what the daemon
/// tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsStatsCtx {
    /// Current memory limit in bytes.
    pub maxbytes: u64,
    pub verbosity: u32,
    /// memcached's `settings.oldest_live` (0 until a `flush_all`).
    pub oldest: u64,
    pub detail_enabled: bool,
    pub slab_automove: u8,
    /// `slabs automove ratio` changes it.
    pub slab_automove_ratio: f64,
    pub lru_crawler: bool,
    pub lru_maintainer_thread: bool,
    pub lru_segmented: bool,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub temp_lru: bool,
    pub temporary_ttl: u32,
    pub track_sizes: bool,
    /// The `ext_*` values, as the `extstore` command last set them.
    pub ext: ExtstoreSettings,
}

impl SettingsStatsCtx {
    /// The values right after start-up.
    pub fn from_settings(s: &Settings) -> Self {
        SettingsStatsCtx {
            maxbytes: (s.memory_limit_mb as u64).saturating_mul(1024 * 1024),
            verbosity: u32::from(s.verbose),
            oldest: 0,
            detail_enabled: s.detail_enabled,
            slab_automove: s.slab_automove,
            slab_automove_ratio: s.slab_automove_ratio,
            lru_crawler: s.lru_crawler,
            lru_maintainer_thread: s.lru_maintainer,
            lru_segmented: s.lru_segmented,
            hot_lru_pct: s.hot_lru_pct,
            warm_lru_pct: s.warm_lru_pct,
            hot_max_factor: s.hot_max_factor,
            warm_max_factor: s.warm_max_factor,
            temp_lru: s.temp_lru,
            temporary_ttl: s.temporary_ttl,
            track_sizes: s.track_sizes,
            ext: s.ext.clone(),
        }
    }
}

/// What parsing decided instead of settings: print something and exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// Printed to stdout (help, version).
    pub stdout: String,
    /// Printed to stderr (errors).
    pub stderr: String,
}

impl Exit {
    fn out(text: String) -> Exit {
        Exit {
            code: 0,
            stdout: text,
            stderr: String::new(),
        }
    }

    fn err(code: i32, text: impl Into<String>) -> Exit {
        Exit {
            code,
            stdout: String::new(),
            stderr: text.into(),
        }
    }

    /// An error line (newline added) with memcached's plain `return 1`.
    fn fail(text: impl std::fmt::Display) -> Exit {
        Exit::err(1, format!("{text}\n"))
    }

    fn usage(text: impl std::fmt::Display) -> Exit {
        Exit::err(EX_USAGE, format!("{text}\n"))
    }
}

/// The `gannet <version>` line printed by `-V` and first by `-h`.
pub fn version_line() -> String {
    format!("gannet {}\n", env!("CARGO_PKG_VERSION"))
}

// ---------------------------------------------------------------------------
// Option table
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HasArg {
    No,
    Required,
    /// Only `--verbose[=x]`; the short form takes none.
    Optional,
}

struct Opt {
    short: char,
    /// clap id (the short letter).
    id: &'static str,
    long: Option<&'static str>,
    arg: HasArg,
}

/// memcached's options, in the order of its long-option table (getopt
/// lists ambiguous abbreviations in this order).
const OPTS: &[Opt] = &[
    opt('a', "a", Some("unix-mask"), HasArg::Required),
    opt('A', "A", Some("enable-shutdown"), HasArg::No),
    opt('Z', "Z", Some("enable-ssl"), HasArg::No),
    opt('p', "p", Some("port"), HasArg::Required),
    opt('s', "s", Some("unix-socket"), HasArg::Required),
    opt('U', "U", Some("udp-port"), HasArg::Required),
    opt('m', "m", Some("memory-limit"), HasArg::Required),
    opt('M', "M", Some("disable-evictions"), HasArg::No),
    opt('c', "c", Some("conn-limit"), HasArg::Required),
    opt('k', "k", Some("lock-memory"), HasArg::No),
    opt('h', "h", Some("help"), HasArg::No),
    opt('i', "i", Some("license"), HasArg::No),
    opt('V', "V", Some("version"), HasArg::No),
    opt('r', "r", Some("enable-coredumps"), HasArg::No),
    opt('v', "v", Some("verbose"), HasArg::Optional),
    opt('d', "d", Some("daemon"), HasArg::No),
    opt('l', "l", Some("listen"), HasArg::Required),
    opt('u', "u", Some("user"), HasArg::Required),
    opt('P', "P", Some("pidfile"), HasArg::Required),
    opt('f', "f", Some("slab-growth-factor"), HasArg::Required),
    opt('n', "n", Some("slab-min-size"), HasArg::Required),
    opt('t', "t", Some("threads"), HasArg::Required),
    opt('L', "L", Some("enable-largepages"), HasArg::No),
    opt('R', "R", Some("max-reqs-per-event"), HasArg::Required),
    opt('C', "C", Some("disable-cas"), HasArg::No),
    opt('b', "b", Some("listen-backlog"), HasArg::Required),
    opt('B', "B", Some("protocol"), HasArg::Required),
    opt('I', "I", Some("max-item-size"), HasArg::Required),
    opt('S', "S", Some("enable-sasl"), HasArg::No),
    opt('F', "F", Some("disable-flush-all"), HasArg::No),
    opt('X', "X", Some("disable-dumping"), HasArg::No),
    opt('W', "W", Some("disable-watch"), HasArg::No),
    opt('Y', "Y", Some("auth-file"), HasArg::Required),
    opt('e', "e", Some("memory-file"), HasArg::Required),
    opt('o', "o", Some("extended"), HasArg::Required),
    opt('N', "N", Some("napi-ids"), HasArg::Required),
    opt('D', "D", None, HasArg::Required),
];

const fn opt(short: char, id: &'static str, long: Option<&'static str>, arg: HasArg) -> Opt {
    Opt {
        short,
        id,
        long,
        arg,
    }
}

/// clap id of the `--verbose[=x]` long form (the short `-v` counts alone).
const VERBOSE_LONG: &str = "verbose-long";
/// clap id of the ignored non-option arguments (getopt skips them too).
const OPERANDS: &str = "operands";

fn clap_command() -> Command {
    let mut cmd = Command::new("gannet")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .infer_long_args(true)
        .arg(
            Arg::new(OPERANDS)
                .num_args(0..)
                .action(ArgAction::Append)
                .value_parser(clap::builder::OsStringValueParser::new()),
        );
    for o in OPTS {
        let id = o.id;
        let arg = match o.arg {
            HasArg::No => Arg::new(id).short(o.short).action(ArgAction::Count),
            HasArg::Optional => {
                cmd = cmd.arg(
                    Arg::new(VERBOSE_LONG)
                        .long(o.long.unwrap_or("verbose"))
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("")
                        .action(ArgAction::Append)
                        .value_parser(clap::builder::OsStringValueParser::new()),
                );
                Arg::new(id).short(o.short).action(ArgAction::Count)
            }
            HasArg::Required => Arg::new(id)
                .short(o.short)
                .num_args(1)
                .allow_hyphen_values(true)
                .action(ArgAction::Append)
                .value_parser(clap::builder::OsStringValueParser::new()),
        };
        let arg = match (o.long, o.arg) {
            (Some(l), HasArg::No | HasArg::Required) => arg.long(l),
            _ => arg,
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// One option occurrence, in command-line order.
struct Occurrence {
    index: usize,
    short: char,
    value: Option<OsString>,
}

fn occurrences(m: &clap::ArgMatches) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for o in OPTS {
        let id = o.id;
        if m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(indices) = m.indices_of(id) else {
            continue;
        };
        match o.arg {
            HasArg::Required => {
                let values = m
                    .get_many::<OsString>(id)
                    .map(|v| v.cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                for (index, value) in indices.zip(values) {
                    out.push(Occurrence {
                        index,
                        short: o.short,
                        value: Some(value),
                    });
                }
            }
            HasArg::No | HasArg::Optional => {
                // A bundle such as -vvv has one index but counts three.
                let idx: Vec<usize> = indices.collect();
                for k in 0..usize::from(m.get_count(id)) {
                    if let Some(&index) = idx.get(k).or(idx.last()) {
                        out.push(Occurrence {
                            index,
                            short: o.short,
                            value: None,
                        });
                    }
                }
            }
        }
    }
    if m.value_source(VERBOSE_LONG) != Some(ValueSource::CommandLine) {
        // nothing to add
    } else if let Some(indices) = m.indices_of(VERBOSE_LONG) {
        for index in indices {
            out.push(Occurrence {
                index,
                short: 'v',
                value: None,
            });
        }
    }
    out.sort_by_key(|o| o.index);
    out
}

/// The error glibc's `getopt_long` prints for this command line (without
/// the program name), or `None` when it would accept it.  `at` is left at
/// the index of the argument the error is about.
fn getopt_error(args: &[String], at: &mut usize) -> Option<String> {
    let mut i = 1;
    while i < args.len() {
        *at = i;
        let a = &args[i];
        i += 1;
        if a == "--" {
            return None;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, has_value) = match body.find('=') {
                Some(eq) => (&body[..eq], true),
                None => (body, false),
            };
            let exact = OPTS.iter().find(|o| o.long == Some(name));
            let found = match exact {
                Some(o) => o,
                None => {
                    let matches: Vec<&Opt> = OPTS
                        .iter()
                        .filter(|o| o.long.is_some_and(|l| l.starts_with(name)))
                        .collect();
                    match matches.as_slice() {
                        [] => return Some(format!("unrecognized option '{a}'")),
                        [one] => *one,
                        many => {
                            let list: String = many
                                .iter()
                                .map(|o| format!(" '--{}'", o.long.unwrap_or_default()))
                                .collect();
                            return Some(format!(
                                "option '{a}' is ambiguous; possibilities:{list}"
                            ));
                        }
                    }
                }
            };
            let long = found.long.unwrap_or_default();
            match found.arg {
                HasArg::No if has_value => {
                    return Some(format!("option '--{long}' doesn't allow an argument"))
                }
                HasArg::Required if !has_value => {
                    if i >= args.len() {
                        return Some(format!("option '--{long}' requires an argument"));
                    }
                    i += 1;
                }
                _ => {}
            }
            continue;
        }
        let Some(cluster) = a.strip_prefix('-') else {
            continue; // an operand: getopt moves it to the end
        };
        if cluster.is_empty() {
            continue; // "-" alone is an operand
        }
        for (pos, c) in cluster.char_indices() {
            let Some(o) = OPTS.iter().find(|o| o.short == c) else {
                return Some(format!("invalid option -- '{c}'"));
            };
            if o.arg == HasArg::Required {
                if pos + c.len_utf8() == cluster.len() {
                    if i >= args.len() {
                        return Some(format!("option requires an argument -- '{c}'"));
                    }
                    i += 1;
                }
                break;
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// C-style number reading
// ---------------------------------------------------------------------------

/// C `strtol` on the longest valid prefix (no prefix = 0), saturating at
/// the `i64` range as glibc's `strtol` does on a 64-bit `long`.
fn strtol_prefix(s: &str, radix: u32) -> i64 {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i128 = 0;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        v = (v * i128::from(radix) + i128::from(d)).min(i128::from(i64::MAX) + 1);
    }
    let v = if neg { -v } else { v };
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// C `atoi` as glibc implements it: `(int) strtol(s, NULL, 10)`.
fn atoi(s: &str) -> i32 {
    strtol_prefix(s, 10) as i32
}

/// C `atof`: the longest decimal prefix, 0.0 when there is none.
fn atof(s: &str) -> f64 {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let b = t.as_bytes();
    let mut end = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let int_start = end;
    while b.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let mut mantissa_digits = end - int_start;
    if b.get(end) == Some(&b'.') {
        let frac_start = end + 1;
        let mut e = frac_start;
        while b.get(e).is_some_and(u8::is_ascii_digit) {
            e += 1;
        }
        mantissa_digits += e - frac_start;
        if mantissa_digits > 0 {
            end = e;
        }
    }
    if mantissa_digits == 0 {
        return 0.0;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let exp_start = e;
        while b.get(e).is_some_and(u8::is_ascii_digit) {
            e += 1;
        }
        if e > exp_start {
            end = e;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// The whole string must be the number, bar trailing whitespace.
fn whole_number(s: &str) -> Option<&str> {
    let t = s
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .trim_end_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        None
    } else {
        Some(t)
    }
}

/// memcached's `safe_strtoul` (see `protocol::number`).
fn safe_strtoul(s: &str) -> Option<u32> {
    number::strtoul(s.as_bytes())
}

/// memcached's `safe_strtol`, narrowed to 32 bits as it does.
fn safe_strtol(s: &str) -> Option<i32> {
    number::strtol(s.as_bytes())
}

/// memcached's `safe_strtod` (finite decimal numbers only).
fn safe_strtod(s: &str) -> Option<f64> {
    number::strtod(s.as_bytes())
}

/// `-I`: a trailing k/K or m/M multiplies what `atoi` reads before it.
/// memcached multiplies in a C `int`, so `-I 2048m` wraps to a negative
/// size and fails the lower bound; the wrap is kept for the same message.
fn parse_item_size(v: &str) -> i64 {
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1024),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
        _ => (v, 1),
    };
    i64::from(atoi(num).wrapping_mul(mult))
}

/// `-o slab_chunk_max`: bytes as memcached 1.6.18 reads it, or a number
/// with a k/m suffix.
fn parse_slab_chunk_max(v: &str) -> Option<i64> {
    let t = whole_number(v)?;
    let (num, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], KB),
        Some(b'm' | b'M') => (&t[..t.len() - 1], MB),
        _ => (t, 1),
    };
    i64::from(safe_strtol(num)?).checked_mul(mult)
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// State that only matters while parsing (memcached's `main` locals).
struct Pending {
    port: i32,
    udp_port: i32,
    tcp_specified: bool,
    udp_specified: bool,
    protocol_specified: bool,
    maxbytes: u64,
    item_size_max: i64,
    slab_chunk_max: i64,
    slab_chunk_changed: bool,
    threads: i64,
    /// `-o slab_sizes` as given; read after the option loop, against the
    /// final `-n` and `slab_chunk_max`, as memcached does.
    slab_sizes: Option<String>,
}

/// Parse a command line (`args[0]` is the program name).
pub fn parse<I, T>(args: I) -> Result<Settings, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let os_args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let str_args: Vec<String> = os_args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = str_args.first().cloned().unwrap_or_else(|| "gannet".into());

    let (matches, syntax_error) = match clap_command().try_get_matches_from(&os_args) {
        Ok(m) => (m, None),
        Err(_) => {
            // memcached acts on every option before the bad one (-h, -V, a
            // bad value), so parse that prefix first and fail after it.
            let mut at = os_args.len();
            let why =
                getopt_error(&str_args, &mut at).unwrap_or_else(|| "invalid arguments".to_string());
            let exit = Exit::err(1, format!("{argv0}: {why}\nIllegal argument \"?\"\n"));
            let prefix = &os_args[..at.min(os_args.len())];
            match clap_command().try_get_matches_from(prefix) {
                Ok(m) => (m, Some(exit)),
                Err(_) => return Err(exit),
            }
        }
    };

    let mut s = Settings::default();
    let mut p = Pending {
        port: s.port,
        udp_port: 0,
        tcp_specified: false,
        udp_specified: false,
        protocol_specified: false,
        maxbytes: 64 * 1024 * 1024,
        item_size_max: 1024 * 1024,
        slab_chunk_max: 512 * 1024,
        slab_chunk_changed: false,
        threads: 4,
        slab_sizes: None,
    };
    for occ in occurrences(&matches) {
        let raw = occ.value.unwrap_or_default();
        let v = raw.to_string_lossy();
        apply_option(&mut s, &mut p, occ.short, &v, raw.clone())?;
    }
    if let Some(exit) = syntax_error {
        return Err(exit);
    }
    finish(s, p)
}

fn apply_option(
    s: &mut Settings,
    p: &mut Pending,
    opt: char,
    v: &str,
    raw: OsString,
) -> Result<(), Exit> {
    match opt {
        'A' => s.shutdown_enabled = true,
        'Z' => s.tls = true,
        'a' => s.socket_mask = strtol_prefix(v, 8) as u32,
        'U' => {
            p.udp_port = atoi(v);
            p.udp_specified = true;
        }
        'p' => {
            p.port = atoi(v);
            p.tcp_specified = true;
        }
        's' => s.socket_path = Some(PathBuf::from(raw)),
        'm' => {
            // memcached: ((size_t) atoi(optarg)) * 1024 * 1024
            p.maxbytes = (i64::from(atoi(v)) as u64).wrapping_mul(MB as u64);
        }
        'M' => s.no_evict = true,
        'c' => {
            let n = atoi(v);
            if n <= 0 {
                return Err(Exit::fail("Maximum connections must be greater than 0"));
            }
            s.max_conns = n as usize;
        }
        'h' => return Err(Exit::out(help_text())),
        'i' => return Err(Exit::out(license_text())),
        'V' => return Err(Exit::out(version_line())),
        'k' => s.lock_memory = true,
        'v' => s.verbose = s.verbose.saturating_add(1),
        'l' => {
            s.listen_spec = Some(match s.listen_spec.take() {
                Some(cur) if cur.contains(v) => cur,
                Some(cur) => format!("{cur},{v}"),
                None => v.to_string(),
            })
        }
        'd' => s.daemonize = true,
        'r' => s.enable_coredumps = true,
        'R' => {
            let n = atoi(v);
            if n <= 0 {
                return Err(Exit::fail(
                    "Number of requests per event must be greater than 0",
                ));
            }
            s.reqs_per_event = n as usize;
        }
        'u' => s.user = Some(v.to_string()),
        'P' => s.pid_file = Some(PathBuf::from(raw)),
        'e' => {
            s.warnings.push(format!(
                "gannet has no persistent memory; ignoring -e {}: the cache starts empty",
                std::path::Path::new(&raw).display()
            ));
            s.memory_file = Some(PathBuf::from(raw));
        }
        'f' => {
            let f = atof(v);
            if f.is_nan() || f <= 1.0 || f.is_infinite() {
                return Err(Exit::fail("Factor must be greater than 1"));
            }
            s.growth_factor = f;
        }
        'n' => {
            let n = atoi(v);
            if n <= 0 {
                return Err(Exit::fail("Chunk size must be greater than 0"));
            }
            s.chunk_size = n as usize;
        }
        't' => {
            let n = atoi(v);
            if n <= 0 {
                return Err(Exit::fail("Number of threads must be greater than 0"));
            }
            if n > 64 {
                s.warnings.push(
                    "WARNING: Setting a high number of workerthreads is not recommended.\n \
                     Set this value to the number of cores in your machine or less."
                        .to_string(),
                );
            }
            p.threads = i64::from(n);
            s.threads = n as usize;
        }
        'D' => {
            let Some(&c) = v.as_bytes().first() else {
                return Err(Exit::fail("No delimiter specified"));
            };
            s.prefix_delimiter = c;
            s.detail_enabled = true;
        }
        'L' => s.large_pages = true,
        'C' => s.no_cas = true,
        'b' => s.backlog = atoi(v),
        'B' => {
            p.protocol_specified = true;
            s.protocol = match v {
                "auto" => Protocol::Auto,
                "binary" => Protocol::Binary,
                "ascii" => Protocol::Ascii,
                _ => {
                    return Err(Exit::usage(format!(
                        "Invalid value for binding protocol: {v}\n \
                         -- should be one of auto, binary, or ascii"
                    )))
                }
            };
        }
        'I' => p.item_size_max = parse_item_size(v),
        'S' => s.sasl = true,
        'F' => s.no_flush = true,
        'X' => s.no_dump = true,
        'W' => s.no_watch = true,
        'Y' => s.auth_file = Some(PathBuf::from(raw)),
        'N' => {
            let n = atoi(v);
            if n <= 0 {
                return Err(Exit::fail(
                    "Maximum number of NAPI IDs must be greater than 0",
                ));
            }
            s.napi_ids = n as u32;
        }
        'o' => apply_suboptions(s, p, v)?,
        _ => return Err(Exit::fail(format!("Illegal argument \"{opt}\""))),
    }
    Ok(())
}

/// Splits `-o` the way repeated `getsubopt` calls do: a trailing comma ends
/// the list, an empty item in the middle is an (illegal) suboption.
fn suboptions(list: &str) -> Vec<(&str, &str, Option<&str>)> {
    let mut items: Vec<&str> = list.split(',').collect();
    if items.last() == Some(&"") {
        items.pop();
    }
    items
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (item, k, Some(v)),
            None => (item, item, None),
        })
        .collect()
}

fn missing(name: &str) -> Exit {
    Exit::fail(format!("Missing {name} argument"))
}

fn unparsable(name: &str) -> Exit {
    Exit::fail(format!("could not parse argument to {name}"))
}

/// A value memcached reads with `safe_strtoul`, with its two messages.
fn sub_u32(name: &str, value: Option<&str>) -> Result<u32, Exit> {
    safe_strtoul(value.ok_or_else(|| missing(name))?).ok_or_else(|| unparsable(name))
}

fn sub_f64(name: &str, value: Option<&str>) -> Result<f64, Exit> {
    safe_strtod(value.ok_or_else(|| missing(name))?).ok_or_else(|| unparsable(name))
}

fn apply_suboptions(s: &mut Settings, p: &mut Pending, list: &str) -> Result<(), Exit> {
    for (item, key, value) in suboptions(list) {
        match key {
            "maxconns_fast" => s.maxconns_fast = true,
            "no_maxconns_fast" => s.maxconns_fast = false,
            "hashpower" => {
                let v =
                    value.ok_or_else(|| Exit::fail("Missing numeric argument for hashpower"))?;
                let n = atoi(v);
                if n < 12 {
                    return Err(Exit::fail(format!(
                        "Initial hashtable multiplier of {n} is too low"
                    )));
                }
                if n > 32 {
                    return Err(Exit::fail(format!(
                        "Initial hashtable multiplier of {n} is too high\n\
                         Choose a value based on \"STAT hash_power_level\" from a running instance"
                    )));
                }
                s.hashpower_init = n as u8;
            }
            "no_hashexpand" => s.hash_expand = false,
            "slab_reassign" => s.slab_reassign = true,
            "no_slab_reassign" => s.slab_reassign = false,
            "slab_automove" => {
                s.slab_automove = match value {
                    None => 1,
                    Some(v) => {
                        let n = atoi(v);
                        if !(0..=2).contains(&n) {
                            return Err(Exit::fail("slab_automove must be between 0 and 2"));
                        }
                        n as u8
                    }
                }
            }
            "no_slab_automove" => s.slab_automove = 0,
            "slab_automove_ratio" => {
                let v = value.ok_or_else(|| missing("slab_automove_ratio"))?;
                let r = atof(v);
                if r.is_nan() || r <= 0.0 || r > 1.0 {
                    return Err(Exit::fail("slab_automove_ratio must be > 0 and < 1"));
                }
                s.slab_automove_ratio = r;
            }
            "slab_automove_window" => {
                let v = value.ok_or_else(|| missing("slab_automove_window"))?;
                let n = atoi(v);
                if n < 3 {
                    return Err(Exit::fail("slab_automove_window must be > 2"));
                }
                s.slab_automove_window = n as u32;
            }
            "slab_automove_freeratio" => {
                s.slab_automove_freeratio = sub_f64("slab_automove_freeratio", value)?
            }
            "tail_repair_time" => {
                let v = value
                    .ok_or_else(|| Exit::fail("Missing numeric argument for tail_repair_time"))?;
                let n = atoi(v);
                if n < 10 {
                    return Err(Exit::fail(
                        "Cannot set tail_repair_time to less than 10 seconds",
                    ));
                }
                s.tail_repair_time = n as u32;
            }
            "hash_algorithm" => {
                s.hash_algorithm = match value.ok_or_else(|| missing("hash_algorithm"))? {
                    "jenkins" => HashAlgorithm::Jenkins,
                    "murmur3" => HashAlgorithm::Murmur3,
                    "xxh3" => HashAlgorithm::Xxh3,
                    _ => {
                        return Err(Exit::fail(
                            "Unknown hash_algorithm option (jenkins, murmur3, xxh3)",
                        ))
                    }
                }
            }
            "lru_crawler" => s.lru_crawler = true,
            "no_lru_crawler" => s.lru_crawler = false,
            "lru_crawler_sleep" => {
                let v = value.ok_or_else(|| Exit::fail("Missing lru_crawler_sleep value"))?;
                let n = atoi(v);
                if !(0..=1_000_000).contains(&n) {
                    return Err(Exit::fail(
                        "LRU crawler sleep must be between 0 and 1 second",
                    ));
                }
                s.lru_crawler_sleep = n as u32;
            }
            "lru_crawler_tocrawl" => {
                let v = value.ok_or_else(|| Exit::fail("Missing lru_crawler_tocrawl value"))?;
                s.lru_crawler_tocrawl = safe_strtoul(v)
                    .ok_or_else(|| Exit::fail("lru_crawler_tocrawl takes a numeric 32bit value"))?;
            }
            "lru_maintainer" => {
                s.lru_maintainer = true;
                s.lru_segmented = true;
            }
            "no_lru_maintainer" => {
                s.lru_maintainer = false;
                s.lru_segmented = false;
            }
            "hot_lru_pct" | "warm_lru_pct" => {
                let v = value.ok_or_else(|| missing(key))?;
                let n = atoi(v);
                if !(1..80).contains(&n) {
                    return Err(Exit::fail(format!("{key} must be > 1 and < 80")));
                }
                if key == "hot_lru_pct" {
                    s.hot_lru_pct = n as u32;
                } else {
                    s.warm_lru_pct = n as u32;
                }
            }
            "hot_max_factor" | "warm_max_factor" => {
                let v = value.ok_or_else(|| missing(key))?;
                let f = atof(v);
                if f.is_nan() || f <= 0.0 || f.is_infinite() {
                    return Err(Exit::fail(format!("{key} must be > 0")));
                }
                if key == "hot_max_factor" {
                    s.hot_max_factor = f;
                } else {
                    s.warm_max_factor = f;
                }
            }
            "temporary_ttl" => {
                let v = value.ok_or_else(|| missing("temporary_ttl"))?;
                s.temp_lru = true;
                s.temporary_ttl = atoi(v) as u32;
            }
            "idle_timeout" => {
                let v =
                    value.ok_or_else(|| Exit::fail("Missing numeric argument for idle_timeout"))?;
                // memcached stores atoi's int; a negative value means never.
                s.idle_timeout = atoi(v).max(0) as u32;
            }
            "watcher_logbuf_size" => {
                s.watcher_logbuf_size = sub_u32("watcher_logbuf_size", value)?.wrapping_mul(1024)
            }
            "worker_logbuf_size" => {
                s.worker_logbuf_size = sub_u32("worker_logbuf_size", value)?.wrapping_mul(1024)
            }
            "read_buf_mem_limit" => {
                s.read_buf_mem_limit =
                    sub_u32("read_buf_mem_limit", value)?.wrapping_mul(1024 * 1024)
            }
            "slab_sizes" => {
                p.slab_sizes = Some(value.ok_or_else(|| missing("slab_sizes"))?.to_string())
            }
            "slab_chunk_max" => {
                let v = value.ok_or_else(|| missing("slab_chunk_max"))?;
                let n = parse_slab_chunk_max(v).ok_or_else(|| unparsable("slab_chunk_max"))?;
                if n <= 0 {
                    return Err(Exit::fail("slab_chunk_max must be >= 0"));
                }
                p.slab_chunk_max = n;
                p.slab_chunk_changed = true;
            }
            "track_sizes" => s.track_sizes = true,
            "no_inline_ascii_resp" | "inline_ascii_resp" | "modern" => {}
            "no_chunked_items" => p.slab_chunk_max = SLAB_PAGE_SIZE,
            "no_modern" => {
                if !p.slab_chunk_changed {
                    p.slab_chunk_max = SLAB_PAGE_SIZE;
                }
                s.slab_reassign = false;
                s.slab_automove = 0;
                s.maxconns_fast = false;
                s.lru_segmented = false;
                s.hash_algorithm = HashAlgorithm::Jenkins;
                s.lru_crawler = false;
                s.lru_maintainer = false;
            }
            "drop_privileges" => s.drop_privileges = true,
            "no_drop_privileges" => s.drop_privileges = false,
            "resp_obj_mem_limit" => s.warnings.push(
                "DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,"
                    .to_string(),
            ),
            "sock_cookie_id" => s.sock_cookie_id = sub_u32("sock_cookie_id", value)?,
            // TLS (memcached's Debian build has it).
            "ssl_chain_cert" => {
                s.ssl.chain_cert = Some(value.ok_or_else(|| missing(key))?.to_string())
            }
            "ssl_key" => s.ssl.key = Some(value.ok_or_else(|| missing(key))?.to_string()),
            "ssl_ciphers" => s.ssl.ciphers = Some(value.ok_or_else(|| missing(key))?.to_string()),
            "ssl_ca_cert" => s.ssl.ca_cert = Some(value.ok_or_else(|| missing(key))?.to_string()),
            "ssl_verify_mode" => {
                let v = value.ok_or_else(|| missing(key))?;
                s.ssl.verify_mode = match safe_strtol(v).ok_or_else(|| unparsable(key))? {
                    0 => 0,
                    1 => 1,
                    2 => 3,
                    3 => 7,
                    _ => {
                        return Err(Exit::fail(
                            "Invalid ssl_verify_mode. Use help to see valid options.",
                        ))
                    }
                };
            }
            "ssl_keyformat" => {
                let v = value.ok_or_else(|| missing(key))?;
                s.ssl.keyformat = safe_strtol(v).ok_or_else(|| unparsable(key))?;
            }
            "ssl_wbuf_size" => s.ssl.wbuf_size = sub_u32(key, value)?.wrapping_mul(1024),
            "ssl_session_cache" => s.ssl.session_cache = true,
            "ssl_kernel_tls" => s.ssl.kernel_tls = true,
            "ssl_min_version" => {
                let v = value.ok_or_else(|| missing(key))?;
                let n = safe_strtol(v).ok_or_else(|| unparsable(key))?;
                if !(0..=3).contains(&n) {
                    return Err(Exit::fail(
                        "Invalid ssl_min_version. Use help to see valid options.",
                    ));
                }
                s.ssl.min_version = n as u8;
            }
            // extstore (accepted; gannet has no external storage).
            "ext_page_size" => {
                if !s.ext.paths.is_empty() {
                    return Err(Exit::fail(
                        "Must specify ext_page_size before any ext_path arguments",
                    ));
                }
                s.ext.page_size = sub_u32(key, value)?.wrapping_mul(1024 * 1024)
            }
            "ext_wbuf_size" => s.ext.wbuf_size = sub_u32(key, value)?.wrapping_mul(1024 * 1024),
            "ext_threads" => s.ext.threads = sub_u32(key, value)?,
            "ext_io_depth" => s.ext.io_depth = sub_u32(key, value)?,
            "ext_item_size" => s.ext.item_size = sub_u32(key, value)?,
            "ext_item_age" => s.ext.item_age = sub_u32(key, value)?,
            "ext_low_ttl" => s.ext.low_ttl = sub_u32(key, value)?,
            "ext_recache_rate" => s.ext.recache_rate = sub_u32(key, value)?,
            "ext_compact_under" => s.ext.compact_under = sub_u32(key, value)?,
            "ext_drop_under" => s.ext.drop_under = sub_u32(key, value)?,
            "ext_max_sleep" => s.ext.max_sleep = sub_u32(key, value)?,
            "ext_max_frag" => s.ext.max_frag = sub_f64(key, value)?,
            "ext_drop_unread" => s.ext.drop_unread = true,
            "ext_path" => {
                let v = value.ok_or_else(|| {
                    Exit::fail("missing argument to ext_path, ie: ext_path=/d/file:5G")
                })?;
                s.ext.paths.push(v.to_string());
                s.warnings.push(format!(
                    "gannet has no external storage; ignoring ext_path={v}"
                ));
            }
            // gannet's own.
            "hotkeys" => {
                let n = sub_u32("hotkeys", value)?;
                s.hotkeys = n as usize;
            }
            "metrics_listen" => {
                let v = value.ok_or_else(|| missing("metrics_listen"))?;
                if !valid_host_port(v) {
                    return Err(unparsable("metrics_listen"));
                }
                s.metrics_listen = Some(v.to_string());
            }
            _ => return Err(Exit::fail(format!("Illegal suboption \"{item}\""))),
        }
    }
    Ok(())
}

/// `host:port` or `[v6]:port` with a numeric port.
fn valid_host_port(v: &str) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((h, p)) => (h, p),
            None => return false,
        }
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p),
            _ => return false,
        }
    };
    !host.is_empty() && !port.is_empty() && port.parse::<u16>().is_ok()
}

/// Splits memcached's `-l` string into listeners, with memcached's
/// messages for a bad entry (it reports them when binding, exit 71).
fn parse_listeners(spec: &str, tls: bool) -> Result<Vec<ListenAddr>, Exit> {
    let bind_fail = |why: String| {
        Exit::err(
            EX_OSERR,
            format!("{why}failed to listen on one of interface(s) {spec}: Success\n"),
        )
    };
    let mut out = Vec::new();
    for entry in spec.split([';', ',']).filter(|e| !e.is_empty()) {
        let mut p = entry;
        let mut notls = false;
        if let Some(rest) = p.strip_prefix("notls") {
            if !tls {
                return Err(bind_fail(
                    "'notls' option is valid only when SSL is enabled\n".to_string(),
                ));
            }
            notls = true;
            p = rest.get(1..).unwrap_or("");
        }
        let mut protocol = None;
        if let Some(rest) = p.strip_prefix("proto") {
            p = rest;
            if let Some((name, after)) = bracket_prefix(p) {
                let name =
                    name.ok_or_else(|| bind_fail(format!("Invalid protocol spec: \"{p}\"\n")))?;
                // memcached compares only the given length: "asc" is ascii.
                protocol = if "ascii".starts_with(name) {
                    Some(Protocol::Ascii)
                } else if "binary".starts_with(name) {
                    Some(Protocol::Binary)
                } else if "negotiating".starts_with(name) {
                    Some(Protocol::Auto)
                } else if "proxy".starts_with(name) {
                    return Err(bind_fail(format!(
                        "Server not built with proxy: \"proto[{name}\"\n"
                    )));
                } else {
                    None
                };
                p = after;
            }
        }
        let mut tag = None;
        if let Some(rest) = p.strip_prefix("tag") {
            p = rest;
            if let Some((name, after)) = bracket_prefix(p) {
                let name = name
                    .ok_or_else(|| bind_fail(format!("Invalid tag in socket config: \"{p}\"\n")))?;
                if name.is_empty() || name.len() > 8 {
                    return Err(bind_fail(format!(
                        "Listener tags must be between 1 and 8 characters: \"{name}\"\n"
                    )));
                }
                tag = Some(name.to_string());
                p = after;
            }
        }
        let mut bracketed = None;
        if let Some(rest) = p.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(bind_fail(format!("Invalid IPV6 address: \"{p}\"")));
            };
            bracketed = Some(&rest[..close]);
            p = &rest[close + 1..];
        }
        let (host, port) = match p.find(':') {
            Some(colon) if bracketed.is_some() || !p[colon + 1..].contains(':') => {
                let port_str = &p[colon + 1..];
                let port = safe_strtol(port_str)
                    .ok_or_else(|| bind_fail(format!("Invalid port number: \"{port_str}\"\n")))?;
                (bracketed.unwrap_or(&p[..colon]), Some(port))
            }
            _ => (bracketed.unwrap_or(p), None),
        };
        out.push(ListenAddr {
            host: host.to_string(),
            port,
            notls,
            protocol,
            tag,
        });
    }
    Ok(out)
}

/// For memcached's `proto[...]:` and `tag[...]:` listener prefixes: `None`
/// when `p` does not start with `[`, `Some((None, _))` when the `]` is
/// missing, else the bracketed text and what follows the `]` and the one
/// separator character after it.
fn bracket_prefix(p: &str) -> Option<(Option<&str>, &str)> {
    let rest = p.strip_prefix('[')?;
    Some(match rest.find(']') {
        None => (None, ""),
        Some(close) => (Some(&rest[..close]), rest.get(close + 2..).unwrap_or("")),
    })
}

/// `-o slab_sizes=A-B-C...`: chunk sizes, each at least `-n`, at most
/// `slab_chunk_max`, and more than 8 bytes above the one before; at most
/// 62 of them. Errors are memcached's (EX_USAGE; an empty list exits
/// without a message, as memcached does).
fn parse_slab_sizes(list: &str, min: usize, max: usize) -> Result<Vec<u32>, Exit> {
    if list.is_empty() {
        return Err(Exit::err(EX_USAGE, String::new()));
    }
    let mut sizes = Vec::new();
    let mut last = 0u32;
    // strtok: runs of '-' are one separator, empty tokens do not exist.
    for tok in list.split('-').filter(|t| !t.is_empty()) {
        let size = safe_strtoul(tok);
        let size = match size {
            Some(n) if n as usize >= min && n as usize <= max => n,
            other => {
                return Err(Exit::usage(format!(
                    "slab size {} is out of valid range",
                    other.unwrap_or(0)
                )))
            }
        };
        if last >= size {
            return Err(Exit::usage(format!(
                "slab size {size} cannot be lower than or equal to a previous class size"
            )));
        }
        if size <= last + 8 {
            return Err(Exit::usage(format!(
                "slab size {size} must be at least 8 bytes larger than previous class"
            )));
        }
        sizes.push(size);
        last = size;
        if sizes.len() >= crate::store::MAX_SLAB_CLASSES - 1 {
            return Err(Exit::usage("too many slab classes specified"));
        }
    }
    Ok(sizes)
}

/// memcached's checks after the option loop, in its order.
fn finish(mut s: Settings, p: Pending) -> Result<Settings, Exit> {
    if i64::from(s.napi_ids) > p.threads {
        return Err(Exit::usage(format!(
            "Number of napi_ids({}) cannot be greater than number of threads({})",
            s.napi_ids, p.threads
        )));
    }
    let item = p.item_size_max;
    if item < ITEM_SIZE_MAX_LOWER {
        return Err(Exit::usage("Item max size cannot be less than 1024 bytes."));
    }
    if item as u64 > p.maxbytes / 2 {
        return Err(Exit::usage(
            "Cannot set item size limit higher than 1/2 of memory max.",
        ));
    }
    if item > ITEM_SIZE_MAX_UPPER {
        return Err(Exit::usage(
            "Cannot set item size limit higher than a gigabyte.",
        ));
    }
    let mut chunk = p.slab_chunk_max;
    if item > MB && !p.slab_chunk_changed {
        chunk = SLAB_PAGE_SIZE / 2;
    }
    if chunk > item {
        return Err(Exit::usage(format!(
            "slab_chunk_max (bytes: {chunk}) cannot be larger than -I (item_size_max {item})"
        )));
    }
    if item % chunk != 0 {
        return Err(Exit::usage(format!(
            "-I (item_size_max: {item}) must be evenly divisible by slab_chunk_max (bytes: {chunk})"
        )));
    }
    if SLAB_PAGE_SIZE % chunk != 0 {
        return Err(Exit::usage(format!(
            "slab_chunk_max (bytes: {chunk}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)"
        )));
    }
    if let Some(list) = &p.slab_sizes {
        s.slab_sizes = Some(parse_slab_sizes(list, s.chunk_size, chunk as usize)?);
    }
    if s.hot_lru_pct + s.warm_lru_pct > 80 {
        return Err(Exit::usage(
            "hot_lru_pct + warm_lru_pct cannot be more than 80% combined",
        ));
    }
    if s.temp_lru && !s.lru_maintainer {
        return Err(Exit::usage(
            "temporary_ttl requires lru_maintainer to be enabled",
        ));
    }
    s.threads_per_udp = match &s.listen_spec {
        Some(l) if l.contains(',') => 1,
        _ => s.threads,
    };
    if s.sasl {
        if !p.protocol_specified {
            s.protocol = Protocol::Binary;
        } else if s.protocol != Protocol::Binary {
            return Err(Exit::usage(
                "ERROR: You cannot allow the ASCII protocol while using SASL.",
            ));
        }
        if p.udp_port != 0 {
            return Err(Exit::usage(
                "ERROR: Cannot enable UDP while using binary SASL authentication.",
            ));
        }
    }
    if s.auth_file.is_some() {
        if !p.protocol_specified {
            s.protocol = Protocol::Ascii;
        } else if s.protocol != Protocol::Ascii {
            return Err(Exit::usage(
                "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
            ));
        }
    }
    let mut port = p.port;
    if p.udp_specified && p.udp_port != 0 && !p.tcp_specified {
        port = p.udp_port;
    }
    if port > 65535 {
        return Err(Exit::usage(format!("ERROR: Invalid port number {port}.")));
    }
    s.port = port;
    s.udp_port = p.udp_port;
    if s.tls && s.port == 0 {
        return Err(Exit::usage(
            "ERROR: You cannot enable SSL without a TCP port.",
        ));
    }
    if let Some(spec) = &s.listen_spec {
        s.listen = parse_listeners(spec, s.tls)?;
    }
    s.memory_limit_mb = usize::try_from(p.maxbytes / MB as u64).unwrap_or(usize::MAX);
    s.item_size_max = item as usize;
    s.slab_chunk_max = chunk as usize;
    Ok(s)
}

// ---------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------

/// `-h`: memcached's layout (option column, then description, the same
/// options in the same order), gannet's words.
pub fn help_text() -> String {
    const W: usize = 26;
    let mut out = version_line();
    let line = |out: &mut String, left: &str, desc: &[&str]| {
        let first = desc.first().copied().unwrap_or("");
        if left.len() >= W {
            out.push_str(&format!("{left} {first}\n"));
        } else {
            out.push_str(&format!("{left:<W$}{first}\n"));
        }
        for d in desc.iter().skip(1) {
            out.push_str(&format!("{:W$}{d}\n", ""));
        }
    };
    line(
        &mut out,
        "-p, --port=<num>",
        &["TCP port (default: 11211; 0 turns TCP off)"],
    );
    line(
        &mut out,
        "-U, --udp-port=<num>",
        &["UDP port (default: 0, off)"],
    );
    line(
        &mut out,
        "-s, --unix-socket=<file>",
        &["listen on this UNIX socket instead of the network"],
    );
    line(
        &mut out,
        "-a, --unix-mask=<mask>",
        &["octal permissions of the UNIX socket (default: 700)"],
    );
    line(
        &mut out,
        "-A, --enable-shutdown",
        &["allow the ascii \"shutdown\" command"],
    );
    line(
        &mut out,
        "-l, --listen=<addr>",
        &[
            "address[:port] list to listen on (default: every interface)",
            "with TLS on, a 'notls:' prefix turns it off for one listener",
            "(-l notls:<ip>:<port>)",
        ],
    );
    line(
        &mut out,
        "-d, --daemon",
        &["detach and run in the background"],
    );
    line(
        &mut out,
        "-r, --enable-coredumps",
        &["raise the core file size limit"],
    );
    line(
        &mut out,
        "-u, --user=<user>",
        &["user to switch to (required when started as root)"],
    );
    line(
        &mut out,
        "-m, --memory-limit=<num>",
        &["memory for items, in megabytes (default: 64)"],
    );
    line(
        &mut out,
        "-M, --disable-evictions",
        &["answer an error when memory is full instead of evicting"],
    );
    line(
        &mut out,
        "-c, --conn-limit=<num>",
        &["most connections open at once (default: 1024)"],
    );
    line(
        &mut out,
        "-k, --lock-memory",
        &["lock all paged memory into RAM"],
    );
    line(&mut out, "-v, --verbose", &["log errors and warnings"]);
    line(
        &mut out,
        "-vv",
        &["also log every client command and reply"],
    );
    line(&mut out, "-vvv", &["also log internal state changes"]);
    line(&mut out, "-h, --help", &["show this text and exit"]);
    line(&mut out, "-i, --license", &["show the license and exit"]);
    line(&mut out, "-V, --version", &["show the version and exit"]);
    line(
        &mut out,
        "-P, --pidfile=<file>",
        &["write the process id to <file> (with -d)"],
    );
    line(
        &mut out,
        "-f, --slab-growth-factor=<num>",
        &["ratio between chunk sizes (default: 1.25)"],
    );
    line(
        &mut out,
        "-n, --slab-min-size=<bytes>",
        &["smallest space for key+value+flags (default: 48)"],
    );
    line(
        &mut out,
        "-L, --enable-largepages",
        &["use large memory pages when the system has them"],
    );
    line(
        &mut out,
        "-D <char>",
        &[
            "separator between key prefix and id for per-prefix stats",
            "(default: \":\"); giving it also turns those stats on, which",
            "\"stats detail on\" does at run time",
        ],
    );
    line(
        &mut out,
        "-t, --threads=<num>",
        &["worker threads (default: 4)"],
    );
    line(
        &mut out,
        "-R, --max-reqs-per-event",
        &[
            "requests served per connection before others get a turn",
            "(default: 20)",
        ],
    );
    line(&mut out, "-C, --disable-cas", &["turn CAS values off"]);
    line(
        &mut out,
        "-b, --listen-backlog=<num>",
        &["listen queue length (default: 1024)"],
    );
    line(
        &mut out,
        "-B, --protocol=<name>",
        &["ascii, binary or auto (default: auto-negotiate)"],
    );
    line(
        &mut out,
        "-I, --max-item-size=<num>",
        &["largest item (default: 1m, min: 1k, max: 1024m)"],
    );
    line(
        &mut out,
        "-S, --enable-sasl",
        &["require SASL authentication"],
    );
    line(&mut out, "-F, --disable-flush-all", &["refuse flush_all"]);
    line(
        &mut out,
        "-X, --disable-dumping",
        &["refuse stats cachedump and lru_crawler metadump"],
    );
    line(
        &mut out,
        "-W, --disable-watch",
        &["refuse watch (live logging)"],
    );
    line(
        &mut out,
        "-Y, --auth-file=<file>",
        &["ascii authentication from <file>, lines of user:pass"],
    );
    line(
        &mut out,
        "-e, --memory-file=<file>",
        &["accepted for compatibility; gannet keeps items in RAM only"],
    );
    line(&mut out, "-Z, --enable-ssl", &["turn TLS on"]);
    line(
        &mut out,
        "-o, --extended",
        &[
            "comma separated extended options (key or key=value);",
            "most can be turned off with a 'no_' prefix",
        ],
    );
    let sub: &[(&str, &str)] = &[
        (
            "maxconns_fast",
            "close new connections at once when over -c (default: on)",
        ),
        (
            "hashpower",
            "log2 of the starting hash table size (default: 0 = automatic)",
        ),
        (
            "tail_repair_time",
            "seconds before a stuck LRU tail item is reclaimed (default: off)",
        ),
        (
            "hash_algorithm",
            "jenkins, murmur3 or xxh3 (default: murmur3)",
        ),
        ("no_lru_crawler", "no background expiry crawler"),
        (
            "lru_crawler_sleep",
            "microseconds between crawled items (default: 100)",
        ),
        (
            "lru_crawler_tocrawl",
            "items crawled per class per run (default: 0, all)",
        ),
        (
            "read_buf_mem_limit",
            "megabytes for connection buffers (default: 0, no limit)",
        ),
        ("no_lru_maintainer", "plain LRU, no background maintainer"),
        (
            "hot_lru_pct",
            "share of a class's memory for the HOT LRU (default: 20)",
        ),
        (
            "warm_lru_pct",
            "share of a class's memory for the WARM LRU (default: 40)",
        ),
        (
            "hot_max_factor",
            "HOT items idle longer than COLD age * this move on (default: 0.20)",
        ),
        (
            "warm_max_factor",
            "WARM items idle longer than COLD age * this move on (default: 2.00)",
        ),
        (
            "temporary_ttl",
            "items with a shorter TTL go to the TEMP LRU (default: 61)",
        ),
        (
            "idle_timeout",
            "close connections idle this many seconds (default: 0, never)",
        ),
        (
            "slab_chunk_max",
            "largest chunk in bytes, k/m suffix allowed (default: 512k)",
        ),
        (
            "watcher_logbuf_size",
            "kilobytes of buffer per watcher (default: 256)",
        ),
        (
            "worker_logbuf_size",
            "kilobytes of log buffer per worker (default: 64)",
        ),
        ("track_sizes", "keep the histogram behind 'stats sizes'"),
        ("no_hashexpand", "never grow the hash table"),
        ("modern", "accepted, no effect"),
        ("no_modern", "defaults of memcached 1.4"),
        ("sock_cookie_id", "accepted, no effect"),
        (
            "hotkeys",
            "gannet: track the N most requested keys (default: 0, off)",
        ),
        (
            "metrics_listen",
            "gannet: serve metrics on addr:port (default: off)",
        ),
        (
            "ext_path",
            "extstore options (ext_*) are accepted and ignored",
        ),
        (
            "slab_automove_freeratio",
            "free memory ratio kept by slab automove (default: 0.010)",
        ),
        ("ssl_chain_cert", "certificate chain file (PEM)"),
        ("ssl_key", "private key file"),
        ("ssl_keyformat", "private key format (default: 1, PEM)"),
        (
            "ssl_verify_mode",
            "client certificate check: 0 none, 1 request, 2 require, 3 once",
        ),
        ("ssl_ciphers", "cipher list"),
        ("ssl_ca_cert", "accepted client CA certificates (PEM)"),
        (
            "ssl_wbuf_size",
            "kilobytes of TLS output buffer per connection (default: 16)",
        ),
        ("ssl_session_cache", "server-side TLS session cache"),
        ("ssl_kernel_tls", "kernel TLS offload"),
        (
            "ssl_min_version",
            "oldest TLS version: 0 1.0, 1 1.1, 2 1.2, 3 1.3 (default: 2)",
        ),
    ];
    for (name, desc) in sub {
        let left = format!("   - {name}:");
        if left.len() >= W {
            out.push_str(&format!("{left} {desc}\n"));
        } else {
            out.push_str(&format!("{left:<W$}{desc}\n"));
        }
    }
    line(
        &mut out,
        "-N, --napi_ids",
        &["accepted for compatibility, no effect"],
    );
    out
}

fn license_text() -> String {
    format!(
        "{}Licensed under the BSD 3-Clause License.\n",
        version_line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str]) -> Settings {
        let mut v = vec!["gannet"];
        v.extend_from_slice(args);
        match parse(v) {
            Ok(s) => s,
            Err(e) => panic!("{args:?} refused: {e:?}"),
        }
    }

    fn err(args: &[&str]) -> Exit {
        let mut v = vec!["gannet"];
        v.extend_from_slice(args);
        match parse(v) {
            Ok(s) => panic!("{args:?} accepted: {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_match_memcached() {
        let s = ok(&[]);
        assert_eq!(s.port, 11211);
        assert_eq!(s.udp_port, 0);
        assert_eq!(s.memory_limit_mb, 64);
        assert_eq!(s.item_size_max, 1 << 20);
        assert_eq!(s.slab_chunk_max, 512 * 1024);
        assert_eq!(s.threads_per_udp, 4);
        assert!(s.listen.is_empty());
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn values_table() {
        type Check = fn(&Settings) -> bool;
        let cases: &[(&[&str], Check)] = &[
            (&["-p", "1234"], |s| s.port == 1234),
            (&["-p1234"], |s| s.port == 1234),
            (&["--port=1234"], |s| s.port == 1234),
            (&["--port", "1234"], |s| s.port == 1234),
            (&["--po=99"], |s| s.port == 99),
            (&["-p", "abc"], |s| s.port == 0),
            (&["-U", "5000"], |s| s.udp_port == 5000 && s.port == 5000),
            (&["-U", "5000", "-p", "6000"], |s| {
                s.udp_port == 5000 && s.port == 6000
            }),
            (&["-m", "128"], |s| s.memory_limit_mb == 128),
            (&["--memory-limit=1024"], |s| s.memory_limit_mb == 1024),
            (&["-c", "10"], |s| s.max_conns == 10),
            (&["-t", "8"], |s| s.threads == 8 && s.threads_per_udp == 8),
            (&["--threads=2"], |s| s.threads == 2),
            (&["-R", "5"], |s| s.reqs_per_event == 5),
            (&["-b", "-3"], |s| s.backlog == -3),
            (&["-B", "ascii"], |s| s.protocol == Protocol::Ascii),
            (&["-B", "binary"], |s| s.protocol == Protocol::Binary),
            (&["--protocol=auto"], |s| s.protocol == Protocol::Auto),
            (&["-I", "2m"], |s| s.item_size_max == 2 << 20),
            (&["-I", "512k"], |s| s.item_size_max == 512 << 10),
            (&["-I", "524288"], |s| s.item_size_max == 524288),
            (&["-f", "1.5"], |s| s.growth_factor == 1.5),
            (&["-f", "2x"], |s| s.growth_factor == 2.0),
            (&["-n", "64"], |s| s.chunk_size == 64),
            (&["-vvv"], |s| s.verbose == 3),
            (&["-v", "-v"], |s| s.verbose == 2),
            (&["--verbose", "-v"], |s| s.verbose == 2),
            (&["--verbose=1"], |s| s.verbose == 1),
            (&["-vd"], |s| s.verbose == 1 && s.daemonize),
            (&["-a", "755"], |s| s.socket_mask == 0o755),
            (&["-a", "9"], |s| s.socket_mask == 0),
            (&["-s", "/tmp/x.sock"], |s| {
                s.socket_path.as_deref() == Some(std::path::Path::new("/tmp/x.sock"))
            }),
            (&["-D", "#"], |s| {
                s.prefix_delimiter == b'#' && s.detail_enabled
            }),
            (&["-D#"], |s| s.prefix_delimiter == b'#'),
            (
                &["-A", "-M", "-C", "-F", "-X", "-W", "-k", "-L", "-r"],
                |s| {
                    s.shutdown_enabled
                        && s.no_evict
                        && s.no_cas
                        && s.no_flush
                        && s.no_dump
                        && s.no_watch
                        && s.lock_memory
                        && s.large_pages
                        && s.enable_coredumps
                },
            ),
            (&["-u", "nobody", "-P", "/run/g.pid"], |s| {
                s.user.as_deref() == Some("nobody") && s.pid_file.is_some()
            }),
            (&["-S"], |s| s.sasl && s.protocol == Protocol::Binary),
            (&["-Y", "/etc/auth"], |s| s.protocol == Protocol::Ascii),
            (&["-p", "0", "-Z"], |_| false),
            (&["-Z"], |s| s.tls),
            (&["-N", "2"], |s| s.napi_ids == 2),
            (&["-e", "/dev/shm/x"], |s| {
                s.memory_file.is_some() && s.warnings.len() == 1
            }),
            (&["extra", "-p", "7"], |s| s.port == 7),
            (&["--", "-p", "7"], |s| s.port == 11211),
            (&["-p", "-1", "-p", "9"], |s| s.port == 9),
            (&["-p", "-1"], |s| s.port == -1),
            (&["-p", "-5"], |s| s.port == -5),
            (&["-U", "70000", "-p", "5"], |s| s.udp_port == 70000),
            (&["-l", "127.0.0.1:4294967297"], |s| {
                s.listen[0].port == Some(1)
            }),
            (&["-l", "127.0.0.1"], |s| {
                s.listen
                    == vec![ListenAddr {
                        host: "127.0.0.1".into(),
                        port: None,
                        notls: false,
                        protocol: None,
                        tag: None,
                    }]
            }),
            (&["-l", "127.0.0.1:5,[::1]:6", "-l", "::1"], |s| {
                s.listen_spec.as_deref() == Some("127.0.0.1:5,[::1]:6")
                    && s.listen.len() == 2
                    && s.listen[1].host == "::1"
                    && s.listen[1].port == Some(6)
                    && s.threads_per_udp == 1
            }),
            (&["-l", "a", "-l", "b"], |s| {
                s.listen_spec.as_deref() == Some("a,b")
            }),
            (&["-l", "fe80::1"], |s| {
                s.listen[0].host == "fe80::1" && s.listen[0].port.is_none()
            }),
            (&["-l", "proto[ascii]:tag[abc]:127.0.0.1:7"], |s| {
                s.listen[0].protocol == Some(Protocol::Ascii)
                    && s.listen[0].tag.as_deref() == Some("abc")
                    && s.listen[0].host == "127.0.0.1"
                    && s.listen[0].port == Some(7)
            }),
            (&["-l", "proto[bin]:[::1]:7"], |s| {
                s.listen[0].protocol == Some(Protocol::Binary) && s.listen[0].host == "::1"
            }),
            (&["-Z", "-l", "notls:127.0.0.1:9"], |s| {
                s.listen[0].notls && s.listen[0].port == Some(9)
            }),
        ];
        for (args, check) in cases {
            if args == &["-p", "0", "-Z"] {
                assert_eq!(err(args).code, EX_USAGE);
                continue;
            }
            let s = ok(args);
            assert!(check(&s), "{args:?} gave {s:?}");
        }
    }

    #[test]
    fn suboptions_table() {
        type Check = fn(&Settings) -> bool;
        let cases: &[(&str, Check)] = &[
            ("idle_timeout=30", |s| s.idle_timeout == 30),
            ("hot_lru_pct=30,warm_lru_pct=50", |s| {
                s.hot_lru_pct == 30 && s.warm_lru_pct == 50
            }),
            ("hot_max_factor=0.5,warm_max_factor=3", |s| {
                s.hot_max_factor == 0.5 && s.warm_max_factor == 3.0
            }),
            ("temporary_ttl=100", |s| {
                s.temporary_ttl == 100 && s.temp_lru
            }),
            ("slab_chunk_max=256k", |s| s.slab_chunk_max == 256 * 1024),
            ("slab_chunk_max=16384", |s| s.slab_chunk_max == 16384),
            ("slab_sizes=100-164-4000", |s| {
                s.slab_sizes.as_deref() == Some(&[100, 164, 4000][..])
                    && s.store_config().slab_sizes == s.slab_sizes
            }),
            // strtok and strtoul: runs of dashes, spaces, '+', and a value
            // past 32 bits truncated (memcached stores it in a uint32_t).
            ("slab_sizes=-100--+200 -4294967796", |s| {
                s.slab_sizes.as_deref() == Some(&[100, 200, 500][..])
            }),
            ("slab_sizes=---", |s| {
                s.slab_sizes.as_deref() == Some(&[][..])
            }),
            ("slab_automove=2", |s| s.slab_automove == 2),
            ("slab_automove", |s| s.slab_automove == 1),
            ("no_slab_automove", |s| s.slab_automove == 0),
            ("hashpower=20", |s| s.hashpower_init == 20),
            ("no_lru_crawler", |s| !s.lru_crawler),
            ("no_lru_crawler,lru_crawler", |s| s.lru_crawler),
            ("no_lru_maintainer", |s| {
                !s.lru_maintainer && !s.lru_segmented
            }),
            ("no_lru_maintainer,lru_maintainer", |s| {
                s.lru_maintainer && s.lru_segmented
            }),
            ("track_sizes", |s| s.track_sizes),
            ("hotkeys=100", |s| s.hotkeys == 100),
            ("metrics_listen=127.0.0.1:9150", |s| {
                s.metrics_listen.as_deref() == Some("127.0.0.1:9150")
            }),
            ("metrics_listen=[::1]:9150", |s| s.metrics_listen.is_some()),
            ("hash_algorithm=xxh3", |s| {
                s.hash_algorithm == HashAlgorithm::Xxh3
            }),
            ("no_maxconns_fast", |s| !s.maxconns_fast),
            ("no_hashexpand", |s| !s.hash_expand),
            ("tail_repair_time=10", |s| s.tail_repair_time == 10),
            ("lru_crawler_sleep=0,lru_crawler_tocrawl=5", |s| {
                s.lru_crawler_sleep == 0 && s.lru_crawler_tocrawl == 5
            }),
            ("watcher_logbuf_size=1,worker_logbuf_size=2", |s| {
                s.watcher_logbuf_size == 1024 && s.worker_logbuf_size == 2048
            }),
            ("read_buf_mem_limit=1", |s| s.read_buf_mem_limit == 1 << 20),
            ("no_modern", |s| {
                s.slab_chunk_max == 1 << 20
                    && !s.lru_segmented
                    && s.hash_algorithm == HashAlgorithm::Jenkins
            }),
            ("modern,inline_ascii_resp,no_inline_ascii_resp", |s| {
                s.slab_chunk_max == 512 * 1024
            }),
            ("ext_item_size=1024,ext_max_frag=0.5,ext_drop_unread", |s| {
                s.ext.item_size == 1024 && s.ext.max_frag == 0.5 && s.ext.drop_unread
            }),
            ("ext_path=/tmp/x:1G", |s| s.warnings.len() == 1),
            ("ssl_verify_mode=2,ssl_min_version=3", |s| {
                s.ssl.verify_mode == 3 && s.ssl.min_version == 3
            }),
            ("resp_obj_mem_limit", |s| s.warnings.len() == 1),
            ("idle_timeout=5,", |s| s.idle_timeout == 5),
            ("", |s| s.idle_timeout == 0),
        ];
        for (sub, check) in cases {
            let s = ok(&["-o", sub]);
            assert!(check(&s), "-o {sub} gave {s:?}");
        }
        let s = ok(&["-o", "idle_timeout=1", "-o", "track_sizes"]);
        assert!(s.idle_timeout == 1 && s.track_sizes);
    }

    #[test]
    fn errors_table() {
        let cases: &[(&[&str], i32, &str)] = &[
            (&["-t", "0"], 1, "Number of threads must be greater than 0\n"),
            (&["-t", "x"], 1, "Number of threads must be greater than 0\n"),
            (&["-c", "0"], 1, "Maximum connections must be greater than 0\n"),
            (&["-R", "0"], 1, "Number of requests per event must be greater than 0\n"),
            (&["-n", "0"], 1, "Chunk size must be greater than 0\n"),
            (&["-f", "0.5"], 1, "Factor must be greater than 1\n"),
            (&["-f", "1"], 1, "Factor must be greater than 1\n"),
            (&["-f", "nan"], 1, "Factor must be greater than 1\n"),
            (&["-D", ""], 1, "No delimiter specified\n"),
            (&["-N", "0"], 1, "Maximum number of NAPI IDs must be greater than 0\n"),
            (
                &["-N", "8"],
                64,
                "Number of napi_ids(8) cannot be greater than number of threads(4)\n",
            ),
            (
                &["-m", "garbage"],
                64,
                "Cannot set item size limit higher than 1/2 of memory max.\n",
            ),
            (
                &["-B", "foo"],
                64,
                "Invalid value for binding protocol: foo\n -- should be one of auto, binary, or ascii\n",
            ),
            (&["-I", "0"], 64, "Item max size cannot be less than 1024 bytes.\n"),
            (&["-I", "-1m"], 64, "Item max size cannot be less than 1024 bytes.\n"),
            (
                &["-I", "100m"],
                64,
                "Cannot set item size limit higher than 1/2 of memory max.\n",
            ),
            (
                &["-I", "2000m", "-m", "10000"],
                64,
                "Cannot set item size limit higher than a gigabyte.\n",
            ),
            (
                &["-I", "1025"],
                64,
                "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1025)\n",
            ),
            (
                &["-o", "slab_chunk_max=1536"],
                64,
                "-I (item_size_max: 1048576) must be evenly divisible by slab_chunk_max (bytes: 1536)\n",
            ),
            (
                &["-I", "3m", "-o", "slab_chunk_max=3m"],
                64,
                "slab_chunk_max (bytes: 3145728) must divide evenly into 1048576 (slab_page_size)\n",
            ),
            (&["-o", "slab_chunk_max=4x"], 1, "could not parse argument to slab_chunk_max\n"),
            (&["-o", "slab_chunk_max=0"], 1, "slab_chunk_max must be >= 0\n"),
            (&["-o", "slab_chunk_max"], 1, "Missing slab_chunk_max argument\n"),
            (&["-o", "bogus"], 1, "Illegal suboption \"bogus\"\n"),
            (&["-o", "bogus=1"], 1, "Illegal suboption \"bogus=1\"\n"),
            // memcached has no such suboption: `lru_maintainer` turns
            // segmentation on, `no_lru_maintainer` off.
            (&["-o", "lru_segmented"], 1, "Illegal suboption \"lru_segmented\"\n"),
            (&["-o", "no_lru_segmented"], 1, "Illegal suboption \"no_lru_segmented\"\n"),
            (&["-o", "track_sizes,,x"], 1, "Illegal suboption \"\"\n"),
            (
                &["-o", "hot_lru_pct=50,warm_lru_pct=40"],
                64,
                "hot_lru_pct + warm_lru_pct cannot be more than 80% combined\n",
            ),
            (&["-o", "hot_lru_pct=80"], 1, "hot_lru_pct must be > 1 and < 80\n"),
            (&["-o", "warm_lru_pct"], 1, "Missing warm_lru_pct argument\n"),
            (&["-o", "hot_max_factor=0"], 1, "hot_max_factor must be > 0\n"),
            (
                &["-o", "temporary_ttl=5,no_lru_maintainer"],
                64,
                "temporary_ttl requires lru_maintainer to be enabled\n",
            ),
            (&["-o", "hashpower=5"], 1, "Initial hashtable multiplier of 5 is too low\n"),
            (&["-o", "hashpower"], 1, "Missing numeric argument for hashpower\n"),
            (&["-o", "slab_automove=3"], 1, "slab_automove must be between 0 and 2\n"),
            (&["-o", "idle_timeout"], 1, "Missing numeric argument for idle_timeout\n"),
            (&["-o", "ext_item_size=abc"], 1, "could not parse argument to ext_item_size\n"),
            (&["-o", "hotkeys=-1"], 1, "could not parse argument to hotkeys\n"),
            (&["-o", "metrics_listen=9150"], 1, "could not parse argument to metrics_listen\n"),
            (
                &["-o", "hash_algorithm=md5"],
                1,
                "Unknown hash_algorithm option (jenkins, murmur3, xxh3)\n",
            ),
            (&["-p", "70000"], 64, "ERROR: Invalid port number 70000.\n"),
            // -U without -p names the TCP port too, and only that is checked.
            (&["-U", "70000"], 64, "ERROR: Invalid port number 70000.\n"),
            (
                &["-S", "-B", "ascii"],
                64,
                "ERROR: You cannot allow the ASCII protocol while using SASL.\n",
            ),
            (
                &["-S", "-U", "11211"],
                64,
                "ERROR: Cannot enable UDP while using binary SASL authentication.\n",
            ),
            (
                &["-Y", "/x", "-B", "binary"],
                64,
                "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.\n",
            ),
            (&["-Z", "-p", "0"], 64, "ERROR: You cannot enable SSL without a TCP port.\n"),
            (
                &["-l", "127.0.0.1:abc"],
                71,
                "Invalid port number: \"abc\"\nfailed to listen on one of interface(s) 127.0.0.1:abc: Success\n",
            ),
            (
                &["-l", "notls:127.0.0.1"],
                71,
                "'notls' option is valid only when SSL is enabled\nfailed to listen on one of interface(s) notls:127.0.0.1: Success\n",
            ),
            (
                &["-l", "[::1"],
                71,
                "Invalid IPV6 address: \"[::1\"failed to listen on one of interface(s) [::1: Success\n",
            ),
            (
                &["-l", "tag[toolongtag]:127.0.0.1"],
                71,
                "Listener tags must be between 1 and 8 characters: \"toolongtag\"\nfailed to listen on one of interface(s) tag[toolongtag]:127.0.0.1: Success\n",
            ),
            (
                &["-l", "proto[ascii"],
                71,
                "Invalid protocol spec: \"[ascii\"\nfailed to listen on one of interface(s) proto[ascii: Success\n",
            ),
            // getopt's own messages, then memcached's.
            (&["-x"], 1, "gannet: invalid option -- 'x'\nIllegal argument \"?\"\n"),
            (&["-vx"], 1, "gannet: invalid option -- 'x'\nIllegal argument \"?\"\n"),
            (
                &["--bogus"],
                1,
                "gannet: unrecognized option '--bogus'\nIllegal argument \"?\"\n",
            ),
            (
                &["--bogus=3"],
                1,
                "gannet: unrecognized option '--bogus=3'\nIllegal argument \"?\"\n",
            ),
            (
                &["-p"],
                1,
                "gannet: option requires an argument -- 'p'\nIllegal argument \"?\"\n",
            ),
            (
                &["--port"],
                1,
                "gannet: option '--port' requires an argument\nIllegal argument \"?\"\n",
            ),
            (
                &["--daemon=1"],
                1,
                "gannet: option '--daemon' doesn't allow an argument\nIllegal argument \"?\"\n",
            ),
            (
                &["--ver"],
                1,
                "gannet: option '--ver' is ambiguous; possibilities: '--version' '--verbose'\nIllegal argument \"?\"\n",
            ),
        ];
        for (args, code, stderr) in cases {
            let e = err(args);
            assert_eq!(
                (e.code, e.stderr.as_str()),
                (*code, *stderr),
                "args {args:?}"
            );
            assert!(e.stdout.is_empty(), "args {args:?}");
        }
    }

    #[test]
    fn first_bad_option_wins() {
        assert_eq!(
            err(&["-t", "0", "-c", "0"]).stderr,
            "Number of threads must be greater than 0\n"
        );
        assert_eq!(
            err(&["-c", "0", "-t", "0"]).stderr,
            "Maximum connections must be greater than 0\n"
        );
        // -h before a bad value prints help, after it the error.
        assert_eq!(err(&["-h", "-t", "0"]).code, 0);
        assert_eq!(err(&["-t", "0", "-h"]).code, 1);
        // Options before a syntax error still act first, as in getopt.
        assert_eq!(err(&["-V", "-x"]).stdout, version_line());
        assert_eq!(
            err(&["-t", "0", "--bogus"]).stderr,
            "Number of threads must be greater than 0\n"
        );
        assert_eq!(err(&["-t", "2", "-x"]).code, 1);
        assert!(err(&["-t", "2", "-x"])
            .stderr
            .contains("invalid option -- 'x'"));
    }

    #[test]
    fn help_and_version() {
        let v = err(&["-V"]);
        assert_eq!(v.code, 0);
        assert_eq!(v.stdout, format!("gannet {}\n", env!("CARGO_PKG_VERSION")));
        assert!(v.stderr.is_empty());
        assert_eq!(err(&["--version"]).stdout, v.stdout);
        let h = err(&["-h"]);
        assert_eq!(h.code, 0);
        assert!(h.stdout.starts_with(&v.stdout));
        assert!(h.stdout.contains("\n-p, --port=<num>          "));
        assert!(h.stdout.contains("\n   - idle_timeout:        "));
        assert_eq!(err(&["--help"]).stdout, h.stdout);
        assert_eq!(err(&["-i"]).code, 0);
    }

    #[test]
    fn high_thread_count_warns() {
        let s = ok(&["-t", "65"]);
        assert_eq!(s.threads, 65);
        assert_eq!(
            s.warnings,
            vec![
                "WARNING: Setting a high number of workerthreads is not recommended.\n \
                  Set this value to the number of cores in your machine or less."
                    .to_string()
            ]
        );
    }

    #[test]
    fn c_number_readers() {
        assert_eq!(atoi("  42abc"), 42);
        assert_eq!(atoi("-7"), -7);
        assert_eq!(atoi(""), 0);
        assert_eq!(atoi("99999999999999999999"), -1);
        assert_eq!(atoi("4294967297"), 1);
        assert_eq!(atof("1.5e2x"), 150.0);
        assert_eq!(atof(".5"), 0.5);
        assert_eq!(atof("e5"), 0.0);
        assert_eq!(atof("3."), 3.0);
        assert_eq!(strtol_prefix("0755", 8), 0o755);
        assert_eq!(parse_item_size("1k"), 1024);
        assert_eq!(parse_item_size("k"), 0);
        assert_eq!(parse_item_size("2048m"), i64::from(i32::MIN));
        assert_eq!(parse_item_size(""), 0);
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "",
            "-",
            "--",
            "-o",
            ",",
            "=",
            "-o=",
            "\u{0}",
            "é",
            "-é",
            "--é",
            "[",
            "]:",
            "-l[",
            "-l",
            "9999999999999999999999",
            "-I",
            "-m",
            "-1",
        ];
        // Whatever happens, an exit says something on the right stream.
        let sane = |r: Result<Settings, Exit>| match r {
            Ok(_) => true,
            Err(e) if e.code == 0 => !e.stdout.is_empty() && e.stderr.is_empty(),
            Err(e) => e.stdout.is_empty() && e.stderr.ends_with('\n'),
        };
        for a in odd {
            for b in odd {
                assert!(sane(parse(["gannet", a, b])), "{a:?} {b:?}");
                assert!(sane(parse(["gannet", "-o", a, b])), "-o {a:?} {b:?}");
                assert!(sane(parse(["gannet", "-l", a])), "-l {a:?}");
            }
        }
        assert!(parse(Vec::<String>::new()).is_ok());
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'/', 0xff, 0xfe]);
        let s = parse([OsString::from("gannet"), OsString::from("-s"), bad.clone()]);
        assert_eq!(s.map(|s| s.socket_path), Ok(Some(PathBuf::from(bad))));
    }

    #[test]
    fn stats_settings_defaults() {
        let s = ok(&[]);
        let lines = s.stats_settings(&SettingsStatsCtx::from_settings(&s));
        let names: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
        assert_eq!(names.len(), 76);
        assert_eq!(&names[..4], &["maxbytes", "maxconns", "tcpport", "udpport"]);
        assert_eq!(names.last(), Some(&"memory_file"));
        let get = |k: &str| lines.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("maxbytes"), Some("67108864"));
        assert_eq!(get("inter"), Some("NULL"));
        assert_eq!(get("umask"), Some("700"));
        assert_eq!(get("growth_factor"), Some("1.25"));
        assert_eq!(get("hot_max_factor"), Some("0.20"));
        assert_eq!(get("slab_automove_freeratio"), Some("0.010"));
        assert_eq!(get("ext_item_age"), Some("4294967295"));
        assert_eq!(get("ssl_chain_cert"), Some("(null)"));
        assert_eq!(get("ssl_ciphers"), Some("NULL"));
        assert_eq!(get("binding_protocol"), Some("auto-negotiate"));
        assert_eq!(get("auth_enabled_ascii"), Some("no"));
    }

    #[test]
    fn stats_settings_follow_flags_and_ctx() {
        let s = ok(&[
            "-l",
            "127.0.0.1,127.0.0.1:21917",
            "-a",
            "755",
            "-f",
            "1.5",
            "-D",
            "#",
            "-M",
            "-o",
            "temporary_ttl=100,hash_algorithm=jenkins",
        ]);
        let mut ctx = SettingsStatsCtx::from_settings(&s);
        ctx.maxbytes = 8 << 20;
        ctx.verbosity = 2;
        let lines = s.stats_settings(&ctx);
        let get = |k: &str| lines.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("maxbytes"), Some("8388608"));
        assert_eq!(get("verbosity"), Some("2"));
        assert_eq!(get("inter"), Some("127.0.0.1,127.0.0.1:21917"));
        assert_eq!(get("num_threads_per_udp"), Some("1"));
        assert_eq!(get("umask"), Some("755"));
        assert_eq!(get("growth_factor"), Some("1.50"));
        assert_eq!(get("stat_key_prefix"), Some("#"));
        assert_eq!(get("detail_enabled"), Some("yes"));
        assert_eq!(get("evictions"), Some("off"));
        assert_eq!(get("temp_lru"), Some("yes"));
        assert_eq!(get("temporary_ttl"), Some("100"));
        assert_eq!(get("hash_algorithm"), Some("jenkins"));
    }

    #[test]
    fn store_config_does_not_overflow() {
        let s = ok(&["-m", "-1"]);
        assert!(s.store_config().mem_limit >= s.memory_limit_mb);
    }
}
