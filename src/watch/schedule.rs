//! When each product is checked and whether a fetch may start now: the
//! decisions of the watch loop, as plain functions and state machines.
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
//! The gate lives in memory and starts empty after a restart; the stored due
//! times (pushed past any `Retry-After`) are what keep a restart from
//! fetching again what was just fetched.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often products are checked and how failures back off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// The normal time between two checks of one product.
    pub interval: Duration,
    /// Each delay is moved by up to this percentage either way, so that
    /// products added together do not stay in lockstep. Values above 100 count
    /// as 100.
    pub jitter_percent: u32,
    /// The delay after the first failure in a row; it doubles with each
    /// further failure.
    pub backoff_base: Duration,
    /// No failure delay, and no `Retry-After` a shop sends, is longer than
    /// this: a shop that says "come back in a year" is asked again anyway.
    pub backoff_cap: Duration,
    /// How long a product must have been failing before its watchers are
    /// told, so that a short outage does not bother anyone.
    pub fail_notice_after: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            interval: Duration::from_secs(30 * 60),
            jitter_percent: 10,
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

/// A source of uniformly distributed 64-bit values, for timing jitter only.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

/// Tests pass closures that return chosen values (`|| 0`, `|| u64::MAX`).
impl<F: FnMut() -> u64> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// SplitMix64 (Steele, Lea and Flood): a tiny generator, good enough to
/// spread fetch times; it is not for anything secret. The daemon seeds it
/// from the clock and the process id, tests from a constant.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The next check after a successful one: `now + interval`, moved uniformly
/// within ±`jitter_percent` of the interval.
pub fn next_due(now_ms: u64, cfg: &ScheduleConfig, rng: &mut impl RandomSource) -> u64 {
    now_ms.saturating_add(jittered(ms(cfg.interval), cfg.jitter_percent, rng))
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
    jittered(delay, cfg.jitter_percent, rng).min(cap)
}

/// `base_ms` moved uniformly within ±`percent`; integer arithmetic, so the
/// bounds hold exactly.
fn jittered(base_ms: u64, percent: u32, rng: &mut impl RandomSource) -> u64 {
    let base = u128::from(base_ms);
    let spread = base * u128::from(percent.min(100)) / 100;
    let offset = u128::from(rng.next_u64()) % (2 * spread + 1);
    u64::try_from(base - spread + offset).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One product's run of failures, stored with the product so that backoff
/// and the one-time notices survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductHealth {
    /// Failures in a row; the backoff exponent.
    #[serde(default)]
    pub failures: u32,
    /// When the current run of failures began; the notice says "since …".
    #[serde(default)]
    pub failing_since_ms: Option<u64>,
    /// Whether the watchers were told that the price cannot be read, so that
    /// they are told once, and told again when it can.
    #[serde(default)]
    pub notice_sent: bool,
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

/// Limits that keep the daemon a polite client of every shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// Fetches running at once against one host. 0 counts as 1, since a
    /// zero would stop every fetch.
    pub per_host_concurrency: usize,
    /// Least time between two starts on one host.
    pub min_gap: Duration,
    /// Fetches running at once in total; bounds sockets and memory. 0 counts
    /// as 1.
    pub global_concurrency: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            per_host_concurrency: 2,
            min_gap: Duration::from_secs(1),
            global_concurrency: 32,
        }
    }
}

/// Why a fetch may not start yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The host asked for a pause with `Retry-After`.
    RetryAfter,
    /// The host was asked less than `min_gap` ago.
    HostGap,
    /// The host already has `per_host_concurrency` fetches running.
    HostBusy,
    /// `global_concurrency` fetches are running.
    GlobalLimit,
}

/// The answer of [`HostGate::try_start`] when a fetch must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The earliest time the answer can change by itself; `None` when only a
    /// running fetch finishing can change it.
    pub until_ms: Option<u64>,
    pub reason: WaitReason,
}

/// The right to run one fetch against a host. Give it back with
/// [`HostGate::finish`]; it is neither `Clone` nor `Copy`, so a fetch cannot
/// be finished twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit that is not finished holds its host's slot forever"]
pub struct Permit {
    host: String,
}

impl Permit {
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Per-host politeness: concurrency per host and in total, a least gap
/// between starts on one host, and host-wide pauses from `Retry-After`.
#[derive(Debug)]
pub struct HostGate {
    cfg: GateConfig,
    /// Only hosts whose state differs from a fresh one need an entry;
    /// [`prune`](Self::prune) drops the others.
    hosts: HashMap<String, HostState>,
    running: usize,
}

#[derive(Debug, Default)]
struct HostState {
    running: usize,
    last_start_ms: Option<u64>,
    paused_until_ms: Option<u64>,
}

impl HostState {
    /// When the gap and any pause have passed; `None` when neither holds the
    /// host back at `now_ms`.
    fn ready_at(&self, now_ms: u64, gap_ms: u64) -> Option<(u64, WaitReason)> {
        let gap_end = self
            .last_start_ms
            .map(|start| start.saturating_add(gap_ms))
            .filter(|&end| end > now_ms);
        let pause_end = self.paused_until_ms.filter(|&end| end > now_ms);
        match (pause_end, gap_end) {
            (Some(p), Some(g)) if g > p => Some((g, WaitReason::HostGap)),
            (Some(p), _) => Some((p, WaitReason::RetryAfter)),
            (None, Some(g)) => Some((g, WaitReason::HostGap)),
            (None, None) => None,
        }
    }
}

impl HostGate {
    pub fn new(cfg: GateConfig) -> Self {
        HostGate {
            cfg,
            hosts: HashMap::new(),
            running: 0,
        }
    }

    /// Starts a fetch on `host` at `now_ms` if every limit allows it.
    ///
    /// Time-bound reasons come first, so that a refusal carries a time
    /// whenever one is known.
    pub fn try_start(&mut self, host: &str, now_ms: u64) -> Result<Permit, Wait> {
        let per_host = self.cfg.per_host_concurrency.max(1);
        let global = self.cfg.global_concurrency.max(1);
        if let Some(state) = self.hosts.get_mut(host) {
            // The wall clock can step back; the gap then lasts one gap from
            // now instead of until the clock catches up with the old start.
            if state.last_start_ms.is_some_and(|start| start > now_ms) {
                state.last_start_ms = Some(now_ms);
            }
            if let Some((until, reason)) = state.ready_at(now_ms, ms(self.cfg.min_gap)) {
                return Err(Wait {
                    until_ms: Some(until),
                    reason,
                });
            }
            if state.running >= per_host {
                return Err(Wait {
                    until_ms: None,
                    reason: WaitReason::HostBusy,
                });
            }
        }
        if self.running >= global {
            return Err(Wait {
                until_ms: None,
                reason: WaitReason::GlobalLimit,
            });
        }
        let state = match self.hosts.get_mut(host) {
            Some(state) => state,
            None => self.hosts.entry(host.to_owned()).or_default(),
        };
        state.running += 1;
        state.last_start_ms = Some(now_ms);
        self.running += 1;
        Ok(Permit {
            host: host.to_owned(),
        })
    }

    /// A fetch ended, however it ended. Nothing time-bound happens here: the
    /// gap runs from the start.
    pub fn finish(&mut self, permit: Permit) {
        if let Some(state) = self.hosts.get_mut(&permit.host) {
            state.running = state.running.saturating_sub(1);
        }
        self.running = self.running.saturating_sub(1);
    }

    /// The host answered 429 or 503 with `Retry-After`: nothing starts on it
    /// before `until_ms` (see [`ScheduleConfig::retry_after_until`] for the
    /// cap). A later answer can extend the pause but not shorten it.
    pub fn retry_after(&mut self, host: &str, until_ms: u64) {
        let state = match self.hosts.get_mut(host) {
            Some(state) => state,
            None => self.hosts.entry(host.to_owned()).or_default(),
        };
        state.paused_until_ms = Some(state.paused_until_ms.map_or(until_ms, |p| p.max(until_ms)));
    }

    /// Forgets every host that would answer exactly as a host never seen:
    /// nothing running, its gap over and no pause left. Memory then grows
    /// with the hosts active in the last gap or pause, not with every host
    /// ever fetched. Returns how many were dropped.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        let gap_ms = ms(self.cfg.min_gap);
        let before = self.hosts.len();
        self.hosts
            .retain(|_, state| state.running > 0 || state.ready_at(now_ms, gap_ms).is_some());
        // HashMap keeps its peak capacity; give it back after a burst of hosts.
        if self.hosts.capacity() > 4 * self.hosts.len().max(64) {
            self.hosts.shrink_to_fit();
        }
        before - self.hosts.len()
    }

    /// Fetches running in total.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Fetches running on `host`.
    pub fn running_on(&self, host: &str) -> usize {
        self.hosts.get(host).map_or(0, |state| state.running)
    }

    /// Hosts with state in memory (for metrics and the pruning test).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const T0: u64 = 1_700_000_000_000;

    fn no_jitter() -> ScheduleConfig {
        ScheduleConfig {
            jitter_percent: 0,
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
            jitter_percent: 500,
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
    fn second_start_on_a_host_within_the_gap_waits_until_first_plus_gap() {
        let mut gate = HostGate::new(GateConfig::default());
        let first = gate.try_start("a.example", T0).expect("fresh host");
        assert_eq!(
            gate.try_start("a.example", T0 + 400),
            Err(Wait {
                until_ms: Some(T0 + 1_000),
                reason: WaitReason::HostGap
            })
        );
        let other = gate.try_start("b.example", T0 + 400).expect("other host");
        let second = gate.try_start("a.example", T0 + 1_000).expect("gap over");
        for permit in [first, other, second] {
            gate.finish(permit);
        }
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn a_clock_stepping_back_holds_a_host_for_one_gap_at_most() {
        let mut gate = HostGate::new(GateConfig::default());
        let permit = gate.try_start("a.example", T0 + HOUR).expect("fresh host");
        gate.finish(permit);
        let wait = gate.try_start("a.example", T0).expect_err("within a gap");
        assert_eq!(wait.until_ms, Some(T0 + 1_000));
        assert!(gate.try_start("a.example", T0 + 1_000).is_ok());
    }

    #[test]
    fn two_at_a_time_per_host() {
        let mut gate = HostGate::new(GateConfig::default());
        let a = gate.try_start("a.example", T0).expect("first");
        let b = gate.try_start("a.example", T0 + 1_000).expect("second");
        assert_eq!(
            gate.try_start("a.example", T0 + 5_000),
            Err(Wait {
                until_ms: None,
                reason: WaitReason::HostBusy
            })
        );
        assert_eq!(gate.running_on("a.example"), 2);
        gate.finish(a);
        let c = gate
            .try_start("a.example", T0 + 5_000)
            .expect("a slot is free");
        gate.finish(b);
        gate.finish(c);
    }

    #[test]
    fn thirty_two_at_a_time_in_total() {
        let mut gate = HostGate::new(GateConfig::default());
        let mut permits: Vec<Permit> = (0..32)
            .map(|i| {
                gate.try_start(&format!("h{i}.example"), T0)
                    .expect("under the limit")
            })
            .collect();
        assert_eq!(
            gate.try_start("h32.example", T0),
            Err(Wait {
                until_ms: None,
                reason: WaitReason::GlobalLimit
            })
        );
        let done = permits.pop().expect("32 permits");
        gate.finish(done);
        permits.push(gate.try_start("h32.example", T0).expect("a slot is free"));
        assert_eq!(gate.running(), 32);
        for permit in permits {
            gate.finish(permit);
        }
    }

    #[test]
    fn retry_after_pauses_only_that_host_and_never_shortens() {
        let cfg = ScheduleConfig::default();
        let mut gate = HostGate::new(GateConfig::default());
        let until = cfg.retry_after_until(T0, Duration::from_secs(120));
        gate.retry_after("busy.example", until);
        gate.retry_after("busy.example", T0 + 5_000);
        assert_eq!(
            gate.try_start("busy.example", T0 + MIN),
            Err(Wait {
                until_ms: Some(T0 + 2 * MIN),
                reason: WaitReason::RetryAfter
            })
        );
        let other = gate.try_start("calm.example", T0).expect("other host");
        gate.finish(other);
        let later = gate
            .try_start("busy.example", T0 + 2 * MIN)
            .expect("pause over");
        gate.finish(later);
        // A year-long Retry-After is capped at the backoff cap.
        assert_eq!(
            cfg.retry_after_until(T0, Duration::from_secs(365 * 24 * 3600)),
            T0 + 6 * HOUR
        );
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
    fn pruning_keeps_memory_bounded_after_many_hosts() {
        let mut gate = HostGate::new(GateConfig::default());
        for i in 0..100_000u64 {
            let permit = gate
                .try_start(&format!("shop-{i}.example"), T0 + i)
                .expect("fresh host");
            gate.finish(permit);
        }
        assert_eq!(gate.host_count(), 100_000);
        let now = T0 + 100_000;
        // Only the hosts started in the last second still hold a gap.
        assert_eq!(gate.prune(now), 100_000 - 999);
        assert_eq!(gate.host_count(), 999);
        assert!(gate.hosts.capacity() < 10_000, "{}", gate.hosts.capacity());
        gate.prune(now + 1_000);
        assert_eq!(gate.host_count(), 0);
    }

    #[test]
    fn pruning_keeps_hosts_that_still_matter() {
        let mut gate = HostGate::new(GateConfig::default());
        let running = gate.try_start("running.example", T0).expect("fresh");
        gate.retry_after("paused.example", T0 + HOUR);
        let recent = gate
            .try_start("recent.example", T0 + 10 * MIN)
            .expect("fresh");
        gate.finish(recent);
        gate.prune(T0 + 10 * MIN + 500);
        assert_eq!(gate.host_count(), 3);
        gate.prune(T0 + 30 * MIN);
        assert_eq!(gate.host_count(), 2, "running and paused stay");
        assert!(gate.try_start("paused.example", T0 + 30 * MIN).is_err());
        gate.finish(running);
        gate.prune(T0 + HOUR);
        assert_eq!(gate.host_count(), 0);
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

    mod gate_properties {
        use super::super::*;
        use proptest::prelude::*;

        const HOSTS: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];

        #[derive(Debug, Clone)]
        enum Op {
            Start(usize),
            Finish(usize),
            Advance(u64),
            RetryAfter(usize, u64),
            Prune,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..HOSTS.len()).prop_map(Op::Start),
                3 => any::<usize>().prop_map(Op::Finish),
                3 => (0u64..1_500).prop_map(Op::Advance),
                1 => (0..HOSTS.len(), 0u64..5_000).prop_map(|(h, d)| Op::RetryAfter(h, d)),
                1 => Just(Op::Prune),
            ]
        }

        proptest! {
            #[test]
            fn gate_never_exceeds_its_limits(
                ops in proptest::collection::vec(op(), 1..300),
                per_host in 1usize..4,
                global in 1usize..6,
                gap in 0u64..1_200,
            ) {
                let mut gate = HostGate::new(GateConfig {
                    per_host_concurrency: per_host,
                    min_gap: Duration::from_millis(gap),
                    global_concurrency: global,
                });
                let mut now = 1_000_000u64;
                let mut permits: Vec<Permit> = Vec::new();
                let mut last_start: HashMap<&str, u64> = HashMap::new();
                let mut paused: HashMap<&str, u64> = HashMap::new();
                for op in ops {
                    match op {
                        Op::Start(h) => {
                            let host = HOSTS[h];
                            let running_here =
                                permits.iter().filter(|p| p.host() == host).count();
                            let gap_ok = last_start.get(host).is_none_or(|&s| now >= s + gap);
                            let pause_ok = paused.get(host).is_none_or(|&u| now >= u);
                            let allowed = gap_ok
                                && pause_ok
                                && running_here < per_host
                                && permits.len() < global;
                            match gate.try_start(host, now) {
                                Ok(permit) => {
                                    prop_assert!(allowed, "started against the limits");
                                    last_start.insert(host, now);
                                    permits.push(permit);
                                }
                                Err(wait) => {
                                    prop_assert!(!allowed, "refused for no reason: {wait:?}");
                                    if let Some(until) = wait.until_ms {
                                        prop_assert!(until > now);
                                    }
                                }
                            }
                            let on_host = permits.iter().filter(|p| p.host() == host).count();
                            prop_assert!(on_host <= per_host);
                            prop_assert_eq!(gate.running_on(host), on_host);
                        }
                        Op::Finish(i) => {
                            if !permits.is_empty() {
                                let permit = permits.swap_remove(i % permits.len());
                                gate.finish(permit);
                            }
                        }
                        Op::Advance(ms) => now += ms,
                        Op::RetryAfter(h, d) => {
                            let host = HOSTS[h];
                            gate.retry_after(host, now + d);
                            let until = paused.entry(host).or_insert(0);
                            *until = (*until).max(now + d);
                        }
                        Op::Prune => {
                            gate.prune(now);
                        }
                    }
                    prop_assert!(gate.running() <= global);
                    prop_assert_eq!(gate.running(), permits.len());
                }
            }
        }
    }
}
