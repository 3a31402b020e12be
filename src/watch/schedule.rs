//! When each product is checked: the watch loop's scheduling decisions (next due time
//! with jitter, backoff, the once-only "cannot read" and "readable again" notices), as
//! plain functions. Whether a fetch may start now is the politeness gate's
//! ([`crate::watch::gate`]).
//!
//! Nothing here reads a clock, sleeps, spawns or draws its own randomness:
//! time comes in as milliseconds since the Unix epoch ([`crate::clock::Clock`]
//! in the daemon, plain numbers in tests) and randomness as a
//! [`RandomSource`]. The async loop around it stays thin:
//!
//! 1. The loop (`crate::watch::watcher`) takes the due products from the store, never one
//!    already being fetched, and asks the [`HostGate`] for each: a [`Permit`] to
//!    start now, or a [`Wait`] saying until when (`None`: until a fetch finishes).
//! 2. When a fetch ends, the loop gives the permit back ([`HostGate::finish`]),
//!    calls [`ProductHealth::on_success`] or [`ProductHealth::on_failure`],
//!    stores the returned due time and health, and sends the notice if the
//!    [`HealthChange`] carries one. A 429 or 503 with `Retry-After` also
//!    pauses the host ([`HostGate::retry_after`], with the time from
//!    [`ScheduleConfig::retry_after_until`]).
//! 3. Once per tick it calls [`HostGate::prune`] so that hosts seen once do
//!    not stay in memory.
//!
//! Their settings, [`ScheduleConfig`], are the `[schedule]` section of the configuration
//! as it is, so that each setting has one name from the file to the code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ProductHealth;

pub use crate::random::RandomSource;
#[cfg(doc)]
use crate::watch::gate::{HostGate, Permit, Wait};

/// `[schedule]`: when products are checked, and how failures back off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Whether products are checked at all; off, the bot still answers and delivers what
    /// is queued, but fetches nothing (a standby instance, or a pause for maintenance).
    pub enabled: bool,
    /// Cron expression (seconds first, UTC) of the tick that looks for due products.
    pub tick: String,
    /// The normal time between two checks of one product.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Random spread of each check time, in percent of the delay either way, so that
    /// products added together do not stay in lockstep. Values above 100 count as 100.
    pub jitter: u32,
    /// The delay after the first failure in a row; it doubles with each
    /// further failure.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// No failure delay, and no `Retry-After` a shop sends, is longer than
    /// this: a shop that says "come back in a year" is asked again anyway.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// How long a product must have been failing before its watchers are
    /// told, once, so that a short outage does not bother anyone.
    #[serde(with = "humantime_serde")]
    pub fail_notice_after: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            enabled: true,
            tick: "0 * * * * *".to_owned(),
            interval: Duration::from_secs(30 * 60),
            jitter: 10,
            backoff_base: Duration::from_secs(60),
            backoff_cap: Duration::from_secs(6 * 3600),
            fail_notice_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl ScheduleConfig {
    /// The time before which a host that answered with `Retry-After` is
    /// left alone, capped at [`backoff_cap`](Self::backoff_cap). The same time
    /// serves the product ([`ProductHealth::on_failure`]) and the host
    /// ([`HostGate::retry_after`]).
    pub fn retry_after_until(&self, now_ms: u64, retry_after: Duration) -> u64 {
        now_ms.saturating_add(ms(retry_after.min(self.backoff_cap)))
    }
}

/// The next check after a successful one: `now + interval`, moved uniformly
/// within ±`jitter` percent of the interval.
pub fn next_due(now_ms: u64, cfg: &ScheduleConfig, rng: &mut impl RandomSource) -> u64 {
    now_ms.saturating_add(jittered(ms(cfg.interval), cfg.jitter, rng))
}

/// The delay before the next try after `failures` failures in a row:
/// `base × 2^(failures−1)`, jittered, and never more than the cap (at the cap
/// the jitter only shortens it, so the cap is a promise).
pub fn backoff_delay_ms(failures: u32, cfg: &ScheduleConfig, rng: &mut impl RandomSource) -> u64 {
    let cap = ms(cfg.backoff_cap);
    let doubling = 1u64
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u64::MAX);
    let delay = ms(cfg.backoff_base).saturating_mul(doubling).min(cap);
    jittered(delay, cfg.jitter, rng).min(cap)
}

/// `base_ms` moved uniformly within ±`percent`; integer arithmetic, so the
/// bounds hold exactly.
fn jittered(base_ms: u64, percent: u32, rng: &mut impl RandomSource) -> u64 {
    let base = u128::from(base_ms);
    let spread = base * u128::from(percent.min(100)) / 100;
    let offset = u128::from(rng.next_u64()) % (2 * spread + 1);
    u64::try_from(base - spread + offset).unwrap_or(u64::MAX)
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the loop does after a check: when to check again, and what to tell
/// the product's watchers.
///
/// The new [`ProductHealth`] already records the notice as sent, so it
/// must be stored in the same transaction as the notice's outbox entry;
/// otherwise a crash between the two loses the notice or repeats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub next_due_ms: u64,
    pub notice: Option<Notice>,
}

/// A message to every watcher of the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// "The price of … cannot be read since …": the caller adds why, from
    /// the last error.
    CannotRead { since_ms: u64 },
    /// "… can be read again", after a [`Notice::CannotRead`].
    ReadableAgain { failing_since_ms: u64 },
}

impl ProductHealth {
    /// A check read the page (a 304 counts): the normal interval again, and
    /// the recovery notice if the watchers were told of the failure.
    pub fn on_success(
        &mut self,
        cfg: &ScheduleConfig,
        rng: &mut impl RandomSource,
        now_ms: u64,
    ) -> HealthChange {
        let notice = match (self.notice_sent, self.failing_since_ms) {
            (true, Some(since)) => Some(Notice::ReadableAgain {
                failing_since_ms: since,
            }),
            // A stored record cannot say a notice went out without a start,
            // but the watchers must still hear that it is over.
            (true, None) => Some(Notice::ReadableAgain {
                failing_since_ms: now_ms,
            }),
            (false, _) => None,
        };
        *self = ProductHealth::default();
        HealthChange {
            next_due_ms: next_due(now_ms, cfg, rng),
            notice,
        }
    }

    /// A check failed: exponential backoff, at least until a `Retry-After`
    /// (capped as [`ScheduleConfig::retry_after_until`] does), and the
    /// "cannot read" notice once the failures have lasted long enough.
    ///
    /// Every failure backs off alike; whether a permanent one (a 404, a
    /// refused address) should end the watch is the caller's decision.
    pub fn on_failure(
        &mut self,
        cfg: &ScheduleConfig,
        rng: &mut impl RandomSource,
        now_ms: u64,
        retry_after: Option<Duration>,
    ) -> HealthChange {
        self.failures = self.failures.saturating_add(1);
        let since = *self.failing_since_ms.get_or_insert(now_ms);
        let notice =
            if !self.notice_sent && now_ms.saturating_sub(since) >= ms(cfg.fail_notice_after) {
                self.notice_sent = true;
                Some(Notice::CannotRead { since_ms: since })
            } else {
                None
            };
        let backoff = now_ms.saturating_add(backoff_delay_ms(self.failures, cfg, rng));
        let next_due_ms = match retry_after {
            Some(wait) => backoff.max(cfg.retry_after_until(now_ms, wait)),
            None => backoff,
        };
        HealthChange {
            next_due_ms,
            notice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;
    use std::collections::HashSet;

    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const T0: u64 = 1_700_000_000_000;

    fn no_jitter() -> ScheduleConfig {
        ScheduleConfig {
            jitter: 0,
            ..ScheduleConfig::default()
        }
    }

    #[test]
    fn next_due_is_now_plus_interval_without_jitter() {
        let mut rng = SplitMix64::new(1);
        assert_eq!(next_due(T0, &no_jitter(), &mut rng), T0 + 30 * MIN);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_spreads() {
        let cfg = ScheduleConfig::default();
        let (low, high) = (T0 + 27 * MIN, T0 + 33 * MIN);
        let mut seen = HashSet::new();
        let (mut below, mut above) = (0, 0);
        for seed in 0..2_000 {
            let due = next_due(T0, &cfg, &mut SplitMix64::new(seed));
            assert!((low..=high).contains(&due), "seed {seed}: {due}");
            seen.insert(due);
            if due < T0 + 30 * MIN {
                below += 1;
            } else if due > T0 + 30 * MIN {
                above += 1;
            }
        }
        assert!(seen.len() > 1_900, "only {} distinct due times", seen.len());
        assert!(below > 800 && above > 800, "{below} below, {above} above");
    }

    #[test]
    fn jitter_extremes_are_the_exact_bounds() {
        let cfg = ScheduleConfig::default();
        let span = 2 * 3 * MIN + 1;
        assert_eq!(next_due(T0, &cfg, &mut || 0), T0 + 27 * MIN);
        assert_eq!(next_due(T0, &cfg, &mut || span - 1), T0 + 33 * MIN);
        assert!(next_due(T0, &cfg, &mut || u64::MAX) <= T0 + 33 * MIN);
        let wild = ScheduleConfig {
            jitter: 500,
            ..ScheduleConfig::default()
        };
        assert_eq!(
            next_due(T0, &wild, &mut || 0),
            T0,
            "over 100% counts as 100%"
        );
        assert_eq!(next_due(u64::MAX - 5, &cfg, &mut || 0), u64::MAX);
    }

    #[test]
    fn backoff_doubles_from_one_minute_and_stops_at_six_hours() {
        let cfg = no_jitter();
        let mut rng = SplitMix64::new(7);
        let delays: Vec<u64> = (1..=11)
            .map(|n| backoff_delay_ms(n, &cfg, &mut rng) / MIN)
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360]);
        assert_eq!(backoff_delay_ms(u32::MAX, &cfg, &mut rng), 6 * HOUR);
        assert_eq!(backoff_delay_ms(64, &cfg, &mut rng), 6 * HOUR);
    }

    #[test]
    fn jittered_backoff_stays_within_bounds_and_under_the_cap() {
        let cfg = ScheduleConfig::default();
        for seed in 0..500 {
            let mut rng = SplitMix64::new(seed);
            let third = backoff_delay_ms(3, &cfg, &mut rng);
            assert!((4 * MIN * 9 / 10..=4 * MIN * 11 / 10).contains(&third));
            let capped = backoff_delay_ms(20, &cfg, &mut rng);
            assert!((6 * HOUR * 9 / 10..=6 * HOUR).contains(&capped));
        }
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let cfg = no_jitter();
        let mut rng = SplitMix64::new(3);
        let mut health = ProductHealth::default();
        let mut now = T0;
        for expected in [MIN, 2 * MIN, 4 * MIN, 8 * MIN] {
            let change = health.on_failure(&cfg, &mut rng, now, None);
            assert_eq!(change.next_due_ms - now, expected);
            now = change.next_due_ms;
        }
        assert_eq!(health.failures, 4);
        assert_eq!(health.failing_since_ms, Some(T0));
        let change = health.on_success(&cfg, &mut rng, now);
        assert_eq!(change.next_due_ms, now + 30 * MIN);
        assert_eq!(
            change.notice, None,
            "nobody was told, so no recovery notice"
        );
        assert_eq!(health, ProductHealth::default());
        let change = health.on_failure(&cfg, &mut rng, now, None);
        assert_eq!(change.next_due_ms - now, MIN);
    }

    #[test]
    fn retry_after_pushes_the_products_next_check() {
        let cfg = no_jitter();
        let mut rng = SplitMix64::new(3);
        let mut health = ProductHealth::default();
        let change = health.on_failure(&cfg, &mut rng, T0, Some(Duration::from_secs(600)));
        assert_eq!(change.next_due_ms, T0 + 10 * MIN);
        // A Retry-After shorter than the backoff does not shorten it.
        let change = health.on_failure(&cfg, &mut rng, T0, Some(Duration::from_secs(1)));
        assert_eq!(change.next_due_ms, T0 + 2 * MIN);
        let change = health.on_failure(&cfg, &mut rng, T0, Some(Duration::MAX));
        assert_eq!(change.next_due_ms, T0 + 6 * HOUR);
    }

    #[test]
    fn cannot_read_notice_once_after_a_day_and_readable_again_once() {
        let cfg = ScheduleConfig::default();
        let mut rng = SplitMix64::new(11);
        let mut health = ProductHealth::default();
        let mut notices = Vec::new();
        let mut now = T0;
        // A shop that fails for two days, checked whenever the backoff says.
        while now < T0 + 48 * HOUR {
            let change = health.on_failure(&cfg, &mut rng, now, None);
            if let Some(notice) = change.notice {
                notices.push((now, notice));
            }
            now = change.next_due_ms;
        }
        assert_eq!(notices.len(), 1, "{notices:?}");
        let (told_at, notice) = notices[0];
        assert!((T0 + 24 * HOUR..=T0 + 30 * HOUR).contains(&told_at));
        assert_eq!(notice, Notice::CannotRead { since_ms: T0 });
        assert!(health.notice_sent);

        let change = health.on_success(&cfg, &mut rng, now);
        assert_eq!(
            change.notice,
            Some(Notice::ReadableAgain {
                failing_since_ms: T0
            })
        );
        assert_eq!(health.on_success(&cfg, &mut rng, now + HOUR).notice, None);
    }

    #[test]
    fn no_notice_before_the_threshold() {
        let cfg = ScheduleConfig::default();
        let mut rng = SplitMix64::new(5);
        let mut health = ProductHealth::default();
        assert_eq!(health.on_failure(&cfg, &mut rng, T0, None).notice, None);
        let almost = T0 + 24 * HOUR - 1;
        assert_eq!(health.on_failure(&cfg, &mut rng, almost, None).notice, None);
        let change = health.on_failure(&cfg, &mut rng, T0 + 24 * HOUR, None);
        assert_eq!(change.notice, Some(Notice::CannotRead { since_ms: T0 }));
    }

    #[test]
    fn health_round_trips_through_json() {
        let health = ProductHealth {
            failures: 7,
            failing_since_ms: Some(T0),
            notice_sent: true,
        };
        let json = serde_json::to_string(&health).expect("serialise");
        assert_eq!(
            serde_json::from_str::<ProductHealth>(&json).expect("parse"),
            health
        );
        let empty: ProductHealth = serde_json::from_str("{}").expect("defaults");
        assert_eq!(empty, ProductHealth::default());
    }
}
