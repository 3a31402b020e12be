//! The store's sizes as the daemon reports them over and over: the `/metrics` gauges and the
//! service manager's status line.
//!
//! On PostgreSQL the sizes are counted, and a count grows with the data (up to seconds for a
//! million watches), while every replica's scraper and watchdog ask every few seconds. So a
//! count is reused until it is [`RECOUNT_AFTER`] times older than it took to make: a store
//! that counts in a millisecond (sled keeps its counts as it writes; a small database) is
//! counted anew on nearly every ask, and a slow count costs the database at most about a
//! tenth of its time, however often it is asked. One count runs at a time; askers meanwhile
//! wait for it and share it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{Store, StoreError, StoreStats};

/// How many times its own cost a count is kept.
pub const RECOUNT_AFTER: u32 = 10;

/// Whether a count `age` old that took `took` to make is to be made again.
pub fn recount_due(age: Duration, took: Duration) -> bool {
    age >= took.saturating_mul(RECOUNT_AFTER)
}

/// The sizes of one store, counted sparingly (see the module's text).
pub struct StoreSizes {
    store: Arc<dyn Store>,
    last: Mutex<Option<Counted>>,
}

struct Counted {
    stats: StoreStats,
    at: Instant,
    took: Duration,
}

impl StoreSizes {
    pub fn new(store: Arc<dyn Store>) -> StoreSizes {
        StoreSizes {
            store,
            last: Mutex::new(None),
        }
    }

    /// The last count while it is fresh enough against its cost, else a new one. A failed
    /// count is not kept: the next ask tries again.
    pub async fn get(&self) -> Result<StoreStats, StoreError> {
        let mut last = self.last.lock().await;
        if let Some(counted) = last.as_ref() {
            if !recount_due(counted.at.elapsed(), counted.took) {
                return Ok(counted.stats);
            }
        }
        let started = Instant::now();
        let stats = self.store.stats().await?;
        let at = Instant::now();
        *last = Some(Counted {
            stats,
            at,
            took: at - started,
        });
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_count_is_kept_for_ten_times_its_cost() {
        assert!(!recount_due(Duration::ZERO, 2_000 * MS));
        assert!(!recount_due(19_999 * MS, 2_000 * MS));
        assert!(recount_due(20_000 * MS, 2_000 * MS));
    }

    #[test]
    fn a_cheap_count_is_made_again_at_once() {
        // sled's recorded counts take microseconds: a scrape a millisecond later sees new ones.
        assert!(recount_due(MS, Duration::from_micros(50)));
        assert!(recount_due(Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn no_cost_overflows() {
        assert!(!recount_due(Duration::from_secs(3600), Duration::MAX));
    }
}
