//! Coarse time, as memcached keeps it.
//!
//! Items store times as `RelTime`: whole seconds since the process started,
//! in a `u32`, so an item header spends four bytes per timestamp instead of
//! eight. The clock is read on every request, so `now()` is an atomic load
//! of a value a ticker refreshes; it never makes a syscall.
//!
//! Tests must not sleep to see a TTL run out, so the clock carries an
//! offset that `advance` moves forward. Only in-process tests and the
//! debug-build-only `debugtime` command (see `exec`) reach it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the process started (memcached's `rel_time_t`).
pub type RelTime = u32;

/// exptime values above this many seconds are absolute Unix times
/// (memcached's `REALTIME_MAXDELTA`, 30 days).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// The process clock. Share it with `Arc`; it is `Sync`.
#[derive(Debug)]
pub struct Clock {
    /// Unix time the relative clock counts from. Like memcached, this is
    /// set two seconds before the real start so that `now()` is never 0
    /// (0 means "never expires" in an item).
    process_started: i64,
    started: Instant,
    /// Seconds added by `advance` (tests only).
    offset: AtomicU32,
    /// Last value `tick` computed, read by `now`.
    current: AtomicU32,
    /// Microseconds since `started`, for latency and `stats conns`.
    micros: AtomicU64,
}

impl Clock {
    pub fn new() -> Arc<Clock> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let clock = Clock {
            process_started: unix - 2,
            started: Instant::now(),
            offset: AtomicU32::new(0),
            current: AtomicU32::new(2),
            micros: AtomicU64::new(0),
        };
        clock.tick();
        Arc::new(clock)
    }

    /// Recompute the cached time. Called by the ticker thread (and by
    /// `advance`), never on the request path.
    pub fn tick(&self) {
        let elapsed = self.started.elapsed();
        let secs = (elapsed.as_secs() as u32)
            .saturating_add(2)
            .saturating_add(self.offset.load(Ordering::Relaxed));
        self.current.store(secs, Ordering::Relaxed);
        self.micros
            .store(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Start a thread that ticks the clock every `period`.
    pub fn spawn_ticker(self: &Arc<Self>, period: Duration) -> std::io::Result<()> {
        let clock = Arc::clone(self);
        std::thread::Builder::new()
            .name("gannet-clock".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                clock.tick();
            })?;
        Ok(())
    }

    /// Seconds since start (never 0).
    #[inline]
    pub fn now(&self) -> RelTime {
        self.current.load(Ordering::Relaxed)
    }

    /// Microseconds since start, as of the last tick.
    #[inline]
    pub fn coarse_micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }

    /// Unix time at which the relative clock reads 0.
    pub fn process_started(&self) -> i64 {
        self.process_started
    }

    /// The current Unix time as this clock sees it (includes `advance`).
    pub fn unix_now(&self) -> i64 {
        self.process_started + self.now() as i64
    }

    /// Move the clock forward by `secs` (tests and `debugtime` only).
    pub fn advance(&self, secs: u32) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
        self.tick();
    }

    /// Convert a protocol exptime to a `RelTime`, as memcached's
    /// `realtime()`: 0 stays 0 (never); a negative value is already
    /// expired; up to 30 days is relative to now; larger is an absolute
    /// Unix time (at or before process start: already expired).
    pub fn realtime(&self, exptime: i64) -> RelTime {
        if exptime == 0 {
            return 0;
        }
        if exptime < 0 {
            // memcached maps negative times to "a moment ago".
            return 1;
        }
        if exptime > REALTIME_MAXDELTA {
            if exptime <= self.process_started {
                return 1;
            }
            let rel = exptime - self.process_started;
            return rel.min(u32::MAX as i64) as RelTime;
        }
        (exptime + self.now() as i64).min(u32::MAX as i64) as RelTime
    }
}

/// True when an item with this exptime is expired at `now`.
#[inline]
pub fn is_expired(exptime: RelTime, now: RelTime) -> bool {
    exptime != 0 && exptime <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_never_zero() {
        let c = Clock::new();
        assert!(c.now() >= 2);
    }

    #[test]
    fn realtime_conversions() {
        let c = Clock::new();
        let now = c.now();
        assert_eq!(c.realtime(0), 0);
        assert_eq!(c.realtime(-1), 1);
        assert!(is_expired(c.realtime(-1), now));
        assert_eq!(c.realtime(10), now + 10);
        assert_eq!(
            c.realtime(REALTIME_MAXDELTA),
            now + REALTIME_MAXDELTA as u32
        );
        // An absolute time in the past is expired.
        assert_eq!(c.realtime(REALTIME_MAXDELTA + 1), 1);
        // An absolute time in the future is relative to process start.
        let abs = c.process_started() + 100;
        assert_eq!(c.realtime(abs), 100);
    }

    #[test]
    fn advance_moves_now_and_expires() {
        let c = Clock::new();
        let exp = c.realtime(5);
        assert!(!is_expired(exp, c.now()));
        c.advance(5);
        assert!(is_expired(exp, c.now()));
    }
}
