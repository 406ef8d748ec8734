//! `slabs reassign` and a lowered `cache_memlimit`: the operator's page
//! moves, run on a thread of their own as memcached runs them on its slab
//! rebalancer thread.
//!
//! Why not in the worker that read the command: emptying a page walks the
//! source class's LRUs and may copy thousands of items, and the worker's
//! other connections would wait for all of it. The command answers `OK`
//! once the move is queued, as memcached's does, and `stats` shows
//! `slab_reassign_running` until it is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::Shared;

/// Requested page moves: at most one `slabs reassign` queued or running at
/// a time, and a pending shrink after `cache_memlimit` lowered the budget.
#[derive(Debug, Default)]
pub struct Rebalancer {
    /// `(src, dst)` from the request until the move is done.
    job: Mutex<Option<(u8, u8)>>,
    /// Give pages back until the store is within its budget.
    shrink: AtomicBool,
    wake: Condvar,
}

impl Rebalancer {
    /// Queue a move checked by `Store::reassign_check`; false (memcached's
    /// `BUSY`) when one is queued or running.
    pub fn request(&self, src: u8, dst: u8) -> bool {
        let mut job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        if job.is_some() {
            return false;
        }
        *job = Some((src, dst));
        self.wake.notify_one();
        true
    }

    /// The budget was lowered: give back what is mapped above it.
    pub fn request_shrink(&self) {
        // Under the job lock, so the thread cannot miss the wake-up
        // between looking at the flag and waiting.
        let _job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        self.shrink.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// A move is queued or running.
    pub fn busy(&self) -> bool {
        self.job.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Wait for the next requested move (it stays queued until `done`),
    /// or a shrink (`None`; the flag is cleared).
    fn next(&self) -> Option<(u8, u8)> {
        let mut job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(j) = *job {
                return Some(j);
            }
            if self.shrink.swap(false, Ordering::AcqRel) {
                return None;
            }
            job = self.wake.wait(job).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Start the rebalancer thread. It runs for the life of the process.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gannet-slabs".into())
        .spawn(move || loop {
            let Some((src, dst)) = shared.rebalancer.next() else {
                // One page per step, each under the mover lock, so requests
                // allocating meanwhile wait for at most one page's drain.
                let mut pages = 0;
                while shared.store.shrink_step() {
                    pages += 1;
                }
                log::info!("cache_memlimit: {pages} pages given back");
                continue;
            };
            // memcached says the first at -vv.
            if shared.store.reassign(src, dst) {
                log::debug!("finished a slab move");
            } else {
                log::debug!("slab move from class {src} to {dst}: no page could be emptied");
            }
            shared.rebalancer.done();
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_move_at_a_time() {
        let r = Rebalancer::default();
        assert!(!r.busy());
        assert!(r.request(1, 2));
        assert!(r.busy());
        assert!(!r.request(3, 4), "a queued move makes the next one busy");
        assert_eq!(r.next(), Some((1, 2)));
        assert!(r.busy(), "still busy while the move runs");
        r.done();
        assert!(!r.busy());
        r.request_shrink();
        assert!(!r.busy(), "a shrink does not make reassign busy");
        assert_eq!(r.next(), None);
        assert!(r.request(3, 4));
        assert_eq!(r.next(), Some((3, 4)));
    }
}
