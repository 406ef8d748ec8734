//! Settings from memcached's command line.
//!
//! (Skeleton: the command-line parser is being written; the field set is
//! the contract the rest of the daemon builds on.)

use std::ffi::OsString;
use std::path::PathBuf;

use crate::store::StoreConfig;

/// Which protocols a connection may speak (`-B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Ascii,
    Binary,
}

/// One `-l` entry: an address to listen on, with an optional port
/// (otherwise `-p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    pub port: Option<u16>,
    /// memcached's `notls:` prefix (TLS issue).
    pub notls: bool,
}

/// Validated settings. Field comments name the flag.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `-p` TCP port (0 = TCP off).
    pub port: u16,
    /// `-U` UDP port (0 = off).
    pub udp_port: u16,
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
    /// `-v` count (0..=3).
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
        }
    }
}

impl Settings {
    /// The part of the settings the storage engine needs.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            mem_limit: self.memory_limit_mb * 1024 * 1024,
            item_size_max: self.item_size_max,
            chunk_size_min: self.chunk_size,
            growth_factor: self.growth_factor,
            slab_chunk_max: self.slab_chunk_max,
            page_size: 1024 * 1024,
            evict_to_free: !self.no_evict,
            use_cas: !self.no_cas,
            hot_lru_pct: self.hot_lru_pct,
            warm_lru_pct: self.warm_lru_pct,
            hot_max_factor: self.hot_max_factor,
            warm_max_factor: self.warm_max_factor,
            temporary_ttl: self.temporary_ttl,
            hashpower_init: if self.hashpower_init == 0 {
                16
            } else {
                self.hashpower_init
            },
            slab_automove: self.slab_automove,
            lru_segmented: self.lru_segmented,
            prealloc: self.large_pages,
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

/// Parse a command line (`args[0]` is the program name).
pub fn parse<I, T>(args: I) -> Result<Settings, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let _ = args.into_iter().count();
    Ok(Settings::default())
}
