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
//! items when nobody sets anything, and what reclaims expired items that
//! nobody touches once they reach the LRU tails. It also runs the
//! automover's check (`Store::automove_check`), which hands pages a quiet
//! class no longer needs back to the global pool, as memcached's
//! maintainer does. Not started with `-o no_lru_maintainer`, as memcached
//! starts no maintainer thread (and so no automover) then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::store::AutomoveWindow;

/// How often the LRUs are juggled and the automover checks.
const TICK: Duration = Duration::from_secs(1);

/// Most pages the automover may hand back in one tick. memcached checks
/// again about a millisecond after a page went back; this keeps a cache
/// with thousands of spare pages from holding up the juggling for long.
const RECLAIM_BURST: usize = 1024;

/// Start the maintainer thread, unless `-o no_lru_maintainer`. It runs for
/// the life of the process.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    if !shared.settings.lru_maintainer {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("gannet-lru-maint".into())
        .spawn(move || {
            let window = shared.settings.slab_automove_window;
            let mut automove = AutomoveWindow::new(&shared.store, window);
            let mut next = Instant::now() + TICK;
            loop {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next = Instant::now() + TICK;
                shared.store.maintain();
                for _ in 0..RECLAIM_BURST {
                    if !shared.store.automove_check(&mut automove) {
                        break;
                    }
                }
            }
        })?;
    Ok(())
}
