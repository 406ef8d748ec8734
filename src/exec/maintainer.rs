//! The LRU maintainer: a background thread that juggles the LRUs once a
//! second (`Store::maintain`), as memcached's LRU maintainer thread does.
//!
//! Why a thread of its own rather than a step of the crawler's loop: a
//! crawl of a large cache, paced by `lru_crawler sleep`, can take minutes,
//! and items must keep ageing out of HOT and WARM meanwhile, or the COLD
//! tail that eviction takes from stops being the least recently used
//! part of the cache. memcached runs the two on separate threads for the
//! same reason.
//!
//! Sets already juggle their class as they go; this thread is what moves
//! items when nobody sets anything. Not started with
//! `-o no_lru_maintainer`, as memcached starts no maintainer thread then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;

/// How often the LRUs are juggled.
const TICK: Duration = Duration::from_secs(1);

/// Start the maintainer thread, unless `-o no_lru_maintainer`. It runs for
/// the life of the process.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    if !shared.settings.lru_maintainer {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("gannet-lru-maint".into())
        .spawn(move || {
            let mut next = Instant::now() + TICK;
            loop {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next = Instant::now() + TICK;
                shared.store.maintain();
            }
        })?;
    Ok(())
}
