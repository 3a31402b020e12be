//! The politeness gate: whether a fetch may start now on a host, given the global and
//! per-host concurrency, the least gap between two starts on one host, and any
//! `Retry-After` pause a shop asked for. Pure state: time comes in as milliseconds, so
//! the watcher drives it and tests step it.
//!
//! It lives in memory and starts empty after a restart; the stored due times (pushed past
//! any `Retry-After`) are what keep a restart from fetching again what was just fetched.

use std::collections::HashMap;
use std::time::Duration;

use crate::price::fetch::FetchConfig;
use crate::watch::schedule::ms;

/// Limits that keep the daemon a polite client of every shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// Fetches running at once against one host. 0 counts as 1, since a
    /// zero would stop every fetch.
    pub per_host_concurrency: usize,
    /// Least time between two starts on one host.
    pub host_gap: Duration,
    /// Fetches running at once in total; bounds sockets and memory. 0 counts
    /// as 1.
    pub global_concurrency: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            per_host_concurrency: 2,
            host_gap: Duration::from_secs(1),
            global_concurrency: 32,
        }
    }
}

/// The gate's settings are part of `[fetch]`, which also configures the fetcher.
impl From<&FetchConfig> for GateConfig {
    fn from(fetch: &FetchConfig) -> Self {
        GateConfig {
            per_host_concurrency: fetch.per_host_concurrency,
            host_gap: fetch.host_gap,
            global_concurrency: fetch.global_concurrency,
        }
    }
}

/// Why a fetch may not start yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The host asked for a pause with `Retry-After`.
    RetryAfter,
    /// The host was asked less than `host_gap` ago.
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
    /// New limits from a reloaded configuration; what is known of each host stays.
    pub fn reconfigure(&mut self, cfg: GateConfig) {
        self.cfg = cfg;
    }

    /// The shortest time between two requests to one host, as configured now.
    pub fn host_gap(&self) -> Duration {
        self.cfg.host_gap
    }

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
            if let Some((until, reason)) = state.ready_at(now_ms, ms(self.cfg.host_gap)) {
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
    ///
    /// [`ScheduleConfig::retry_after_until`]: crate::watch::schedule::ScheduleConfig::retry_after_until
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
        let gap_ms = ms(self.cfg.host_gap);
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
    use crate::watch::schedule::ScheduleConfig;

    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const T0: u64 = 1_700_000_000_000;

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
                    host_gap: Duration::from_millis(gap),
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
