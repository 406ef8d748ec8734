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
//! Schedule (memcached's `lru_maintainer_crawler_check`): every LRU (one
//! per class and segment) has its own next-run time. Once a second the
//! thread crawls the LRUs that are due, together, in one walk. After a
//! run it looks at what each crawled LRU held: when the items that will
//! expire within the next `x` minutes are more than 1% of those that can
//! expire, the LRU's wait moves 60 s toward `x` minutes; when none will,
//! it grows by 60 s; never beyond an hour. Each verdict is a `sysevents`
//! line for `watch`, in memcached's words. Between items the thread
//! sleeps `lru_crawler sleep` microseconds per 1000 checked, and a run
//! checks at most `lru_crawler tocrawl` items per LRU (0: all). Crawls
//! asked for with `lru_crawler crawl` are not part of the schedule and
//! log nothing, as in memcached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::clock::RelTime;
use crate::store::{Crawl, CrawlTally, LRU_IDS};

use super::Shared;

/// Items checked between two sleeps (memcached's `crawls_persleep`).
const PER_SLEEP: u64 = 1000;
/// How often the thread looks at the schedule.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait between two crawls of an LRU (memcached's
/// `MAX_MAINTCRAWL_WAIT`).
const MAX_WAIT: u32 = 60 * 60;
/// Seconds before a due LRU may be started again if its run was not
/// reported yet.
const RETRY: u32 = 5;

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

    /// Mark an automatic run as begun and count it, unless a requested
    /// crawl is waiting (that one goes first). Under the request lock, so
    /// a request sees either the pending run or `Busy`.
    fn begin_auto(&self) -> bool {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_some() {
            return false;
        }
        self.running.store(true, Ordering::Release);
        self.starts.fetch_add(1, Ordering::Relaxed);
        true
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

/// The automatic crawler's per-LRU timetable (memcached keeps the same
/// two numbers per LRU in `next_crawls` and `next_crawl_wait`).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When each LRU is next due (strictly after this time).
    next: Vec<RelTime>,
    /// Each LRU's current wait between runs, in seconds.
    wait: Vec<u32>,
}

/// A finished automatic run, waiting to be judged.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The LRUs crawled (bit `c` of `lrus[s]`: class `c`, segment `s`).
    pub lrus: [u64; 4],
    pub start: RelTime,
    pub end: RelTime,
    pub tally: CrawlTally,
}

/// The verdict on one LRU after a run (one `type=lru_crawler` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub class: u8,
    pub lru: &'static str,
    /// Items that must be due to expire to shorten the wait: 1% of the
    /// live items that have a TTL, plus one.
    pub low_mark: u64,
    /// Items due to expire within the minutes the wait was judged by.
    pub next_reclaims: u64,
    /// Seconds since the run ended.
    pub since_run: u32,
    /// Seconds until the LRU is crawled again.
    pub next_run: u32,
    /// Seconds the run took.
    pub elapsed: u32,
    /// Live items seen.
    pub examined: u64,
    pub reclaimed: u64,
}

/// memcached's `type=lru_crawler` log line.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type=lru_crawler crawler={} lru={} low_mark={} next_reclaims={} since_run={} \
             next_run={} elapsed={} examined={} reclaimed={}",
            self.class,
            self.lru,
            self.low_mark,
            self.next_reclaims,
            self.since_run,
            self.next_run,
            self.elapsed,
            self.examined,
            self.reclaimed
        )
    }
}

const LRU_NAMES: [&str; 4] = ["hot", "warm", "cold", "temp"];

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            next: vec![0; LRU_IDS],
            wait: vec![0; LRU_IDS],
        }
    }
}

impl Schedule {
    /// The LRUs due at `now`, or `None`. Each one returned is pushed
    /// `RETRY` seconds out, until `judge` sets its real next run. LRU id
    /// 0 (class 0, which holds no items) is never crawled, as in
    /// memcached.
    pub fn due(&mut self, now: RelTime) -> Option<[u64; 4]> {
        let mut lrus = [0u64; 4];
        let mut any = false;
        for id in 1..LRU_IDS {
            if now > self.next[id] {
                lrus[id >> 6] |= 1 << (id & 63);
                self.next[id] = now + RETRY;
                any = true;
            }
        }
        any.then_some(lrus)
    }

    /// Judge a finished run at `now`: set the next run of every LRU it
    /// crawled and say why.
    pub fn judge(&mut self, now: RelTime, run: &Finished) -> Vec<Status> {
        let mut out = Vec::new();
        for id in 1..LRU_IDS {
            if run.lrus[id >> 6] >> (id & 63) & 1 == 0 {
                continue;
            }
            let t = &run.tally.lru[id];
            let low_mark = (t.seen - t.noexp) / 100 + 1;
            let wait = &mut self.wait[id];
            let mut available = 0;
            for (minutes, n) in t.histo.iter().enumerate() {
                available += n;
                if available > low_mark {
                    let target = minutes as u32 * 60;
                    if *wait < target {
                        *wait += 60;
                    } else if *wait >= 60 {
                        *wait -= 60;
                    }
                    break;
                }
            }
            if available == 0 {
                *wait += 60;
            }
            *wait = (*wait).min(MAX_WAIT);
            self.next[id] = now + *wait + RETRY;
            out.push(Status {
                class: (id & 63) as u8,
                lru: LRU_NAMES[id >> 6],
                low_mark,
                next_reclaims: available,
                since_run: now.saturating_sub(run.end),
                next_run: *wait + RETRY,
                elapsed: run.end.saturating_sub(run.start),
                examined: t.seen,
                reclaimed: t.reclaimed,
            });
        }
        out
    }
}

fn run(shared: &Shared) {
    let c = &shared.crawler;
    let mut schedule = Schedule::default();
    let mut unjudged: Option<Finished> = None;
    // The first check is at once: memcached crawls everything at start.
    let mut tick = Instant::now();
    loop {
        let request = c.next_request(tick);
        tick = Instant::now() + TICK;
        if let Some(classes) = request {
            c.starts.fetch_add(1, Ordering::Relaxed);
            crawl(shared, Crawl::new(classes, tocrawl(shared)));
            c.running.store(false, Ordering::Release);
            continue;
        }
        // memcached's LRU maintainer thread checks the crawl schedule
        // once a second, so neither a disabled crawler nor
        // `-o no_lru_maintainer` crawls by itself. The juggling that
        // thread also does runs on `maintainer`'s thread here, so it goes
        // on during a long crawl.
        if !shared.settings.lru_maintainer || !shared.tunables.lru_crawler.load(Ordering::Relaxed) {
            continue;
        }
        let now = shared.clock.now();
        // A run is judged a second after it ended at the earliest, and
        // nothing new starts before it is.
        if let Some(run) = unjudged.take_if(|r| now > r.end) {
            for st in schedule.judge(now, &run) {
                super::watch::lru_crawler_status(&st);
            }
        }
        if unjudged.is_some() {
            continue;
        }
        let Some(lrus) = schedule.due(now) else {
            continue;
        };
        if !c.begin_auto() {
            continue;
        }
        let tally = crawl(shared, Crawl::of_lrus(lrus, tocrawl(shared)));
        c.running.store(false, Ordering::Release);
        unjudged = Some(Finished {
            lrus,
            start: now,
            end: shared.clock.now(),
            tally,
        });
    }
}

fn tocrawl(shared: &Shared) -> u32 {
    shared.tunables.lru_crawler_tocrawl.load(Ordering::Relaxed)
}

/// One whole crawl, paced by `lru_crawler sleep`.
fn crawl(shared: &Shared, mut run: Crawl) -> CrawlTally {
    let t = &shared.tunables;
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
    use crate::store::{lru_id, LruTally};

    /// A run over every LRU that found `tallies` (id, tally) and nothing
    /// elsewhere, from `start` to `end`.
    fn finished(start: RelTime, end: RelTime, tallies: &[(usize, LruTally)]) -> Finished {
        let mut tally = CrawlTally::default();
        for (id, t) in tallies {
            tally.lru[*id] = *t;
        }
        Finished {
            lrus: [u64::MAX; 4],
            start,
            end,
            tally,
        }
    }

    fn tally(seen: u64, noexp: u64, histo: &[(usize, u64)], reclaimed: u64) -> LruTally {
        let mut t = LruTally {
            seen,
            noexp,
            reclaimed,
            ..LruTally::default()
        };
        for &(m, n) in histo {
            t.histo[m] = n;
        }
        t
    }

    #[test]
    fn every_lru_but_id_0_is_due_at_start_then_waits_for_its_verdict() {
        let mut s = Schedule::default();
        let lrus = s.due(2).expect("all due at start");
        assert_eq!(lrus, [u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX]);
        assert_eq!(s.due(2), None);
        assert_eq!(s.due(7), None, "retry wait not over");
        assert!(s.due(8).is_some(), "unjudged runs are retried after 5 s");
    }

    #[test]
    fn verdicts_match_memcached() {
        // Lines memcached 1.6.18 wrote for the same tallies (class 1 COLD:
        // 100 items without TTL, 50 with 116 s left, 30 reclaimed; class
        // 17 COLD: 10 items with about 5 minutes left; empty LRUs).
        let cold1 = lru_id(1, 2);
        let cold17 = lru_id(17, 2);
        let run = finished(
            2,
            2,
            &[
                (cold1, tally(170, 100, &[(1, 50)], 30)),
                (cold17, tally(10, 0, &[(4, 10)], 0)),
            ],
        );
        let mut s = Schedule::default();
        s.due(2);
        let v = s.judge(3, &run);
        assert_eq!(v.len(), 255);
        let lines: Vec<String> = v
            .iter()
            .map(|st| {
                st.to_string()
                    .strip_prefix("type=lru_crawler ")
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            lines[0],
            "crawler=1 lru=hot low_mark=1 next_reclaims=0 since_run=1 next_run=65 elapsed=0 \
             examined=0 reclaimed=0"
        );
        assert_eq!(
            lines[63],
            "crawler=0 lru=warm low_mark=1 next_reclaims=0 since_run=1 next_run=65 elapsed=0 \
             examined=0 reclaimed=0"
        );
        assert_eq!(
            lines[cold1 - 1],
            "crawler=1 lru=cold low_mark=1 next_reclaims=50 since_run=1 next_run=65 elapsed=0 \
             examined=170 reclaimed=30"
        );
        assert_eq!(
            lines[cold17 - 1],
            "crawler=17 lru=cold low_mark=1 next_reclaims=10 since_run=1 next_run=65 \
             elapsed=0 examined=10 reclaimed=0"
        );
        assert_eq!(
            lines[254].split(' ').take(2).collect::<Vec<_>>(),
            ["crawler=63", "lru=temp"]
        );
    }

    #[test]
    fn waits_move_a_minute_per_run_toward_the_next_expiries() {
        // (tally of the LRU at each run, wait in seconds after it).
        let empty = tally(0, 0, &[], 0);
        let soon = tally(10, 0, &[(4, 10)], 0);
        // 1000 items with a TTL make the low mark 11: 5 due is too few to
        // act on, but not none, so the wait stays.
        let few = tally(1000, 0, &[(0, 5)], 0);
        let cases: &[(&str, &[(LruTally, u32)])] = &[
            (
                "empty: +60 s per run",
                &[(empty, 60), (empty, 120), (empty, 180)],
            ),
            (
                "items 4 minutes out: up to 240 s, then around it",
                &[
                    (soon, 60),
                    (soon, 120),
                    (soon, 180),
                    (soon, 240),
                    (soon, 180),
                    (soon, 240),
                ],
            ),
            (
                "too few to act on: unchanged",
                &[(empty, 60), (few, 60), (few, 60)],
            ),
            (
                "a shorter horizon brings it down",
                &[(soon, 60), (few, 60), (tally(10, 0, &[(0, 10)], 0), 0)],
            ),
        ];
        let id = lru_id(5, 1);
        for (name, steps) in cases {
            let mut s = Schedule::default();
            let mut now = 2;
            for (i, (t, wait)) in steps.iter().enumerate() {
                let run = finished(now, now, &[(id, *t)]);
                now += 1;
                let v = s.judge(now, &run);
                assert_eq!(v[id - 1].next_run, wait + RETRY, "{name}: run {i}");
                assert_eq!(s.next[id], now + wait + RETRY, "{name}: run {i}");
                now += wait + RETRY + 1;
                assert!(
                    s.due(now).is_some_and(|m| m[1] >> 5 & 1 == 1),
                    "{name}: run {i}"
                );
            }
        }
    }

    #[test]
    fn waits_stop_at_an_hour() {
        let mut s = Schedule::default();
        let run = finished(2, 2, &[]);
        for _ in 0..70 {
            s.judge(3, &run);
        }
        assert_eq!(s.judge(3, &run)[0].next_run, MAX_WAIT + RETRY);
    }

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
