//! The LRU crawler: a background thread that walks the store and reclaims
//! expired and flushed items, on request (`lru_crawler crawl`) and on its
//! own schedule, as memcached's crawler does.
//!
//! Why a thread at all, when expiry is lazy: an item nobody reads again
//! is only reclaimed when its LRU tail is reached, so a cache full of
//! short-TTL items that are never read again keeps counting them in
//! `curr_items` and `bytes` for hours. Operators read those numbers, and
//! memcached's crawler keeps them honest; so does this one.
//!
//! Schedule: a run starts at start-up, then again when the soonest TTL the
//! last run saw runs out, at least 60 s and at most an hour later (an
//! hour is memcached's longest wait too). Between items the thread sleeps
//! `lru_crawler sleep` microseconds per 1000 checked, and a run checks at
//! most `lru_crawler tocrawl` items per class (0: all).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::store::Crawl;

use super::Shared;

/// Items checked between two sleeps (memcached's `crawls_persleep`).
const PER_SLEEP: u64 = 1000;
const MIN_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Why a crawl request was refused (memcached's reply names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A crawl is queued or running.
    Busy,
}

/// State shared between the commands and the crawler thread.
#[derive(Debug, Default)]
pub struct Crawler {
    /// Class mask of a requested crawl not yet started.
    pending: Mutex<Option<u64>>,
    wake: Condvar,
    running: AtomicBool,
    starts: AtomicU64,
}

impl Crawler {
    /// Queue a crawl of the classes in `classes` (bit `c` for class `c`).
    pub fn request(&self, classes: u64) -> Result<(), Refused> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_some() || self.running.load(Ordering::Acquire) {
            return Err(Refused::Busy);
        }
        *p = Some(classes);
        self.wake.notify_one();
        Ok(())
    }

    /// `lru_crawler_running`.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// `lru_crawler_starts`: crawls and metadumps begun.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// `stats reset` zeroes `lru_crawler_starts`, as memcached's does.
    pub fn reset_starts(&self) {
        self.starts.store(0, Ordering::Relaxed);
    }

    /// A metadump counts as a crawler start in memcached too.
    pub fn count_start(&self) {
        self.starts.fetch_add(1, Ordering::Relaxed);
    }

    /// Wait for a request, or until `deadline`; `None` at the deadline.
    fn next_request(&self, deadline: Instant) -> Option<u64> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = p.take() {
                // Running from here on, so a new request sees Busy.
                self.running.store(true, Ordering::Release);
                return Some(c);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            p = self
                .wake
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Start the crawler thread. It runs for the life of the process.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gannet-crawler".into())
        .spawn(move || run(&shared))?;
    Ok(())
}

fn run(shared: &Shared) {
    let c = &shared.crawler;
    let mut next_auto = Instant::now();
    loop {
        let (classes, auto) = match c.next_request(next_auto) {
            Some(classes) => (classes, false),
            None => (u64::MAX, true),
        };
        let enabled = shared.tunables.lru_crawler.load(Ordering::Relaxed);
        if auto && !enabled {
            next_auto = Instant::now() + MIN_WAIT;
            continue;
        }
        c.running.store(true, Ordering::Release);
        c.starts.fetch_add(1, Ordering::Relaxed);
        let tally = crawl(shared, classes);
        c.running.store(false, Ordering::Release);
        if auto {
            let wait = tally
                .soonest_expiry
                .map_or(MAX_WAIT, |s| Duration::from_secs(u64::from(s)));
            next_auto = Instant::now() + wait.clamp(MIN_WAIT, MAX_WAIT);
        }
    }
}

/// One whole crawl, paced by `lru_crawler sleep`.
fn crawl(shared: &Shared, classes: u64) -> crate::store::CrawlTally {
    let t = &shared.tunables;
    let mut run = Crawl::new(classes, t.lru_crawler_tocrawl.load(Ordering::Relaxed));
    let mut next_sleep = PER_SLEEP;
    while shared.store.crawl_step(&mut run) {
        if run.tally.checked >= next_sleep {
            next_sleep = run.tally.checked + PER_SLEEP;
            let us = t.lru_crawler_sleep.load(Ordering::Relaxed);
            if us > 0 {
                std::thread::sleep(Duration::from_micros(u64::from(us)));
            }
        }
    }
    run.tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_request_is_busy_until_the_first_is_taken_and_done() {
        let c = Crawler::default();
        assert_eq!(c.request(0b10), Ok(()));
        assert_eq!(c.request(0b10), Err(Refused::Busy));
        assert_eq!(c.next_request(Instant::now()), Some(0b10));
        assert!(c.running());
        assert_eq!(c.request(0b10), Err(Refused::Busy));
        c.running.store(false, Ordering::Release);
        assert_eq!(c.request(0b100), Ok(()));
        // No request: the deadline returns None.
        assert_eq!(c.next_request(Instant::now()), Some(0b100));
        c.running.store(false, Ordering::Release);
        assert_eq!(c.next_request(Instant::now()), None);
    }
}
