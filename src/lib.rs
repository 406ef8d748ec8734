//! gannet: a memcached-compatible cache daemon.
//!
//! The crate is split in layers so each can be tested (and fuzzed) alone:
//! `protocol` parses and encodes bytes and knows nothing else, `store` holds
//! items and knows nothing of sockets or protocols, `exec` is the only place
//! that knows both (it gives each command its memcached meaning), and
//! `server` moves bytes between sockets and `exec`. See docs/ARCHITECTURE.md.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod exec;
pub mod hotkeys;
pub mod latency;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod store;
