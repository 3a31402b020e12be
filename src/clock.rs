//! Time as a dependency, so that time-dependent logic can be tested with a clock the
//! test controls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;

    /// The same in nanoseconds, for the send rate limiters, which space sends finer than
    /// a millisecond.
    fn now_nanos(&self) -> u64 {
        self.now_ms().saturating_mul(1_000_000)
    }

    /// Waits `ms` of this clock's time: a timer for real clocks.
    fn sleep_ms(&self, ms: u64) -> Pause {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

/// What [`Clock::sleep_ms`] returns.
pub type Pause = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken host; 0 keeps the daemon running.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn now_nanos(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock(AtomicU64::new(now_ms))
    }

    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Whoever sleeps on a manual clock moves it: the wait happens at once, and the test
    /// sees the time it would have taken (as with tokio's paused time).
    fn sleep_ms(&self, ms: u64) -> Pause {
        self.advance_ms(ms);
        Box::pin(tokio::task::yield_now())
    }
}

/// RFC 3339 date-time (UTC, seconds) for replies and logs.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1_500);
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
    }
}
