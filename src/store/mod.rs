//! Item storage: what the cache holds, and nothing about how it is asked.
//!
//! This module is the contract between command semantics (`exec`) and the
//! storage engine. Every protocol front end (text, meta, binary) reaches
//! items only through the operations below, so replacing the engine
//! touches nothing outside `store/`.
//!
//! The operations are whole memcached operations (a `set` with its mode
//! and CAS check, an `incr` with its auto-create rule) rather than
//! primitive reads and writes, because each must be atomic with respect
//! to other threads touching the same key: the engine runs each one under
//! the lock that guards the key, and a caller can never hold that lock
//! across two calls.
//!
//! Reads hand the caller a borrowed `ItemRef` inside a closure, so the
//! value is copied exactly once, from item memory into the connection's
//! output buffer, while the key's lock is held; or, for a large value,
//! not at all: the closure pins the item (`ItemRef::pin`) and the value
//! is written to the socket from item memory after the lock is released.

mod types;

pub use types::*;

mod engine;
mod index;
mod item;
mod sizes;
mod slab;

pub use engine::{
    lru_id, AutomoveWindow, Crawl, CrawlTally, ItemRef, LruTally, Pin, ReassignError, Reserved,
    Store, Walk, LRU_IDS,
};

/// Class ids run below this (memcached's `MAX_NUMBER_OF_SLAB_CLASSES`);
/// class 0 is unused and the last one holds the largest chunks.
pub const MAX_SLAB_CLASSES: usize = slab::MAX_CLASSES;
