//! Per-channel and per-conversation send limits (docs/rules.md, "Rate limits"), with
//! governor's GCRA limiters, several windows per limit.
//!
//! A channel states its limits as windows ("7 per 1 s, 60 per 30 s, 1800 per hour"). A
//! GCRA limiter that lets a send through `τ` before its theoretical time and then spaces
//! them `T` apart admits at most `⌈(D+τ)/T⌉` sends in any span of length `D`. So a window
//! of `N` per `D` gets `T = (D+m+τ)/N`: never more than `N` in any `D + m`, where the
//! margin `m` (10 ms) covers sends that reach the channel closer together than they were
//! admitted. The tolerance `τ` (at most 2 ms) absorbs a timer that wakes the delivery task
//! a little late, which would otherwise push every later send back and lose rate; a
//! channel gets within `(m+τ)/D` of `N/D` sustained (50/s: 49.4/s). governor's burst counts whole sends, so a send
//! is `CELLS` cells and `τ` a few cells of burst. A send must pass every window
//! of its conversation and of its channel; governor cannot check several limiters at
//! once, so a cell spent on a window that passed is lost when a later one refuses. That
//! only ever makes sending slower, never faster.
//!
//! The limiters run on the daemon's [`Clock`], so tests move time by hand. Their state is
//! in memory: the delivery task stores each waiting message's next attempt in the outbox,
//! so a restart does not turn a wait into a burst.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::Chain;

/// Cells per send: `τ` is a whole number of cells, so cells are fine-grained.
const CELLS: u32 = 1000;
/// The most a send may go before its theoretical time.
const TOLERANCE: Duration = Duration::from_millis(2);
/// Added to each window's span: sends admitted in order can reach the channel less far
/// apart than they were admitted (one request waits for a connection, the next does
/// not), and the channel counts arrivals. The delivery benchmark saw 51 arrivals in one
/// second of a 50/s limit without it.
const LATENCY_MARGIN: Duration = Duration::from_millis(10);

/// `N` sends per `D`: "7/1s", "1800/1h".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub per: Duration,
}

/// Why a rate-limit window's text is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is not \"count/duration\", e.g. \"7/1s\"")]
    Shape(String),
    #[error("{0:?}: the count must be a whole number of at least 1")]
    Count(String),
    #[error("{text:?}: the duration")]
    Duration {
        text: String,
        source: humantime::DurationError,
    },
    #[error("{0:?}: the duration must be at least 1ms")]
    TooShort(String),
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, WindowError> {
        let (n, d) = s
            .split_once('/')
            .ok_or_else(|| WindowError::Shape(s.to_owned()))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| WindowError::Count(s.to_owned()))?;
        let per = humantime::parse_duration(d.trim()).map_err(|source| WindowError::Duration {
            text: s.to_owned(),
            source,
        })?;
        if per < Duration::from_millis(1) {
            return Err(WindowError::TooShort(s.to_owned()));
        }
        Ok(Window { count, per })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: WindowError| serde::de::Error::custom(Chain(&e)))
    }
}

impl Window {
    /// After a send, how long until this window takes the next: its spacing less its
    /// tolerance (see [`Window::quota`]).
    fn gap_nanos(&self) -> u64 {
        let (spacing, tolerance) = self.spacing();
        u64::try_from(spacing - tolerance).unwrap_or(u64::MAX)
    }

    /// Nanoseconds between sends, and how early one may go.
    fn spacing(&self) -> (u128, u128) {
        let n = u128::from(self.count);
        let d = self.per.as_nanos() + LATENCY_MARGIN.as_nanos();
        // τ stays well under the spacing, however dense the window.
        let tolerance = TOLERANCE.as_nanos().min(d / n / 2);
        ((d + tolerance).div_ceil(n), tolerance)
    }

    /// The GCRA quota, in cells of `1/CELLS` send, that never admits more than `count`
    /// sends in any `per`.
    pub fn quota(&self) -> Quota {
        let (spacing, tolerance) = self.spacing();
        let cell = spacing.div_ceil(u128::from(CELLS)).max(1);
        let extra = u32::try_from(tolerance / cell).unwrap_or(0);
        let cell = Duration::from_nanos(u64::try_from(cell).unwrap_or(u64::MAX));
        let burst = NonZeroU32::new(CELLS.saturating_add(extra)).unwrap_or(NonZeroU32::MIN);
        // `cell` is at least 1 ns, so `with_period` always has a quota to give.
        Quota::with_period(cell)
            .unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// `[rate_limits.<channel id>]`: the windows for one conversation and for the whole bot
/// on that channel. Empty lists mean no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelLimits {
    pub per_conversation: Vec<Window>,
    pub per_channel: Vec<Window>,
}

/// The key channels not named in the table use.
pub const OTHER_CHANNELS: &str = "default";

/// The built-in rows (docs/rules.md, "Rate limits"); `[rate_limits.<channel>]` overrides them.
pub fn default_table() -> BTreeMap<String, ChannelLimits> {
    let w = |count, secs| Window {
        count,
        per: Duration::from_secs(secs),
    };
    let mut t = BTreeMap::new();
    let mut put = |k: &str, conv: Vec<Window>, chan: Vec<Window>| {
        t.insert(
            k.to_owned(),
            ChannelLimits {
                per_conversation: conv,
                per_channel: chan,
            },
        );
    };
    put(
        "msteams",
        vec![w(7, 1), w(60, 30), w(1800, 3600)],
        vec![w(30, 1)],
    );
    put("slack", vec![w(1, 1)], vec![w(50, 60)]);
    put("telegram", vec![w(1, 1), w(20, 60)], vec![w(30, 1)]);
    put("facebook", vec![w(1, 1)], vec![w(250, 1)]);
    put("directline", vec![w(2, 1)], vec![w(50, 1)]);
    put("webchat", vec![w(2, 1)], vec![w(50, 1)]);
    put("emulator", vec![], vec![]);
    put(OTHER_CHANNELS, vec![w(1, 1)], vec![w(10, 1)]);
    t
}

/// The daemon's clock, in the form governor wants.
#[derive(Clone)]
pub struct LimiterClock(Arc<dyn Clock>);

impl GovernorClock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.now_nanos())
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Nanos>>;
type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, LimiterClock, NoOpMiddleware<Nanos>>;

struct ChannelLimiters {
    per_conversation: Vec<Keyed>,
    per_channel: Vec<Direct>,
    /// The earliest the channel's windows may take a send (ns on the limiter clock),
    /// checked before any conversation window spends a cell on a send the channel would
    /// refuse: a refusal there would cost that conversation its turn.
    channel_free_at: AtomicU64,
    /// Each channel window's spacing less its tolerance: after a send, the earliest the
    /// next can go.
    channel_gaps: Vec<u64>,
    /// No send before this (ns on the limiter clock); see [`SendLimits::resuming`].
    opens_at: u64,
}

/// Whether a message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Now,
    /// Not before this time (ms since the epoch).
    NotBefore(u64),
}

/// Every channel's limiters, built lazily from the configured table.
pub struct SendLimits {
    table: BTreeMap<String, ChannelLimits>,
    clock: Arc<dyn Clock>,
    channels: Mutex<HashMap<String, Arc<ChannelLimiters>>>,
    /// When sends the limiters know nothing of may have happened last (ns on the limiter
    /// clock); `None` when there were none.
    resumed_at: Option<u64>,
}

impl SendLimits {
    /// `configured` overrides the built-in table channel by channel.
    pub fn new(configured: &BTreeMap<String, ChannelLimits>, clock: Arc<dyn Clock>) -> SendLimits {
        let mut table = default_table();
        for (k, v) in configured {
            table.insert(k.clone(), v.clone());
        }
        SendLimits {
            table,
            clock,
            channels: Mutex::new(HashMap::new()),
            resumed_at: None,
        }
    }

    /// The limits of a daemon that may follow another one (a restart, a crash, a reload's
    /// new limiters) which sent until a moment ago: the limiters start empty, so each
    /// channel's first send waits one spacing of its widest window from now. Sends are
    /// spaced at least that far apart within one process, and the previous one's last
    /// send was before now, so the spacing, and with it every window, holds across the
    /// change. The cost is that wait after a start (3 s at most for the built-in rows:
    /// Telegram's 20/1m).
    pub fn resuming(
        configured: &BTreeMap<String, ChannelLimits>,
        clock: Arc<dyn Clock>,
    ) -> SendLimits {
        let resumed_at = Some(clock.now_nanos());
        SendLimits {
            resumed_at,
            ..SendLimits::new(configured, clock)
        }
    }

    /// No limits at all (benchmarks, the Emulator).
    pub fn off(clock: Arc<dyn Clock>) -> SendLimits {
        let table = [(OTHER_CHANNELS.to_owned(), ChannelLimits::default())].into();
        SendLimits {
            table,
            clock,
            channels: Mutex::new(HashMap::new()),
            resumed_at: None,
        }
    }

    /// The windows that apply to a channel id.
    pub fn for_channel(&self, channel: &str) -> &ChannelLimits {
        self.table
            .get(channel)
            .or_else(|| self.table.get(OTHER_CHANNELS))
            .unwrap_or(&EMPTY)
    }

    fn limiters(&self, channel: &str) -> Arc<ChannelLimiters> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = channels.get(channel) {
            return Arc::clone(l);
        }
        let built = Arc::new(self.build(channel, self.resumed_at));
        channels.insert(channel.to_owned(), Arc::clone(&built));
        built
    }

    /// Starts one channel's limiters afresh, as [`SendLimits::resuming`] starts them all:
    /// another process sent to the channel until a moment ago (a replica whose delivery
    /// lease this one has just taken over), so the first send waits one spacing of the
    /// channel's widest window from now.
    pub fn resume_channel(&self, channel: &str) {
        let built = Arc::new(self.build(channel, Some(self.clock.now_nanos())));
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_owned(), built);
    }

    fn build(&self, channel: &str, resumed_at: Option<u64>) -> ChannelLimiters {
        let limits = self.for_channel(channel);
        let clock = LimiterClock(Arc::clone(&self.clock));
        // The window with the widest spacing refuses most often: asked first, it keeps the
        // others from spending cells on sends it would refuse anyway.
        let widest_first = |windows: &[Window]| {
            let mut w = windows.to_vec();
            w.sort_by_key(|w| std::cmp::Reverse(w.per / w.count));
            w
        };
        ChannelLimiters {
            per_conversation: widest_first(&limits.per_conversation)
                .iter()
                .map(|w| RateLimiter::dashmap_with_clock(w.quota(), clock.clone()))
                .collect(),
            per_channel: widest_first(&limits.per_channel)
                .iter()
                .map(|w| RateLimiter::direct_with_clock(w.quota(), clock.clone()))
                .collect(),
            channel_free_at: AtomicU64::new(0),
            channel_gaps: limits.per_channel.iter().map(Window::gap_nanos).collect(),
            opens_at: limits
                .per_conversation
                .iter()
                .chain(&limits.per_channel)
                .map(Window::gap_nanos)
                .max()
                .zip(resumed_at)
                .map_or(0, |(gap, resumed)| resumed.saturating_add(gap)),
        }
    }

    /// Takes one send from every window of the conversation and of its channel, or says
    /// when to ask again. The channel's next free time is looked at first (without
    /// spending anything), then the conversation's windows, then the channel's: a
    /// conversation refusal then spends nothing of the budget all conversations share.
    pub fn admit(&self, channel: &str, conversation: &str) -> Admission {
        let limiters = self.limiters(channel);
        let now = self.clock.now_nanos();
        let free_at = limiters
            .channel_free_at
            .load(Ordering::Relaxed)
            .max(limiters.opens_at);
        if now < free_at {
            return Admission::NotBefore(ms_ceil(Nanos::from(free_at)));
        }
        let key = conversation.to_owned();
        let cells = NonZeroU32::new(CELLS).unwrap_or(NonZeroU32::MIN);
        for l in &limiters.per_conversation {
            if let Ok(Err(not_until)) = l.check_key_n(&key, cells) {
                return Admission::NotBefore(ms_ceil(not_until.earliest_possible()));
            }
        }
        for l in &limiters.per_channel {
            if let Ok(Err(not_until)) = l.check_n(cells) {
                let at = not_until.earliest_possible();
                limiters
                    .channel_free_at
                    .fetch_max(u64::from(at), Ordering::Relaxed);
                return Admission::NotBefore(ms_ceil(at));
            }
        }
        // `Err(InsufficientCapacity)` cannot happen: every burst holds a whole send.
        if let Some(gap) = limiters.channel_gaps.iter().max() {
            limiters
                .channel_free_at
                .fetch_max(now.saturating_add(*gap), Ordering::Relaxed);
        }
        Admission::Now
    }

    /// Forgets conversations whose limiters are back to a fresh state, so memory follows
    /// the conversations active lately, not all there ever were.
    pub fn prune(&self) -> usize {
        let channels: Vec<Arc<ChannelLimiters>> = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut kept = 0;
        for c in channels {
            for l in &c.per_conversation {
                l.retain_recent();
                l.shrink_to_fit();
                kept += l.len();
            }
        }
        kept
    }
}

static EMPTY: ChannelLimits = ChannelLimits {
    per_conversation: Vec::new(),
    per_channel: Vec::new(),
};

fn ms_ceil(n: Nanos) -> u64 {
    u64::from(n).div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn windows_parse_and_print() {
        let w: Window = "1800/1h".parse().unwrap();
        assert_eq!(w.count, 1800);
        assert_eq!(w.per, Duration::from_secs(3600));
        assert_eq!(w.to_string(), "1800/1h");
        for bad in ["7", "0/1s", "x/1s", "7/soon", "7/0s", "-1/1s"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    /// Sends as fast as admitted for `span_ms`, moving a manual clock by `step_ms`, and
    /// returns the send times.
    fn drive(
        limits: &SendLimits,
        clock: &ManualClock,
        conv: &str,
        span_ms: u64,
        step_ms: u64,
    ) -> Vec<u64> {
        let start = clock.now_ms();
        let mut sent = Vec::new();
        while clock.now_ms() < start + span_ms {
            while limits.admit("msteams", conv) == Admission::Now {
                sent.push(clock.now_ms());
            }
            clock.advance_ms(step_ms);
        }
        sent
    }

    fn max_in_window(times: &[u64], per_ms: u64) -> usize {
        times
            .iter()
            .map(|&t| times.iter().filter(|&&u| u >= t && u < t + per_ms).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn teams_windows_are_never_exceeded_and_nearly_reached() {
        let clock = Arc::new(ManualClock::new(1_764_000_000_000));
        let limits = SendLimits::new(&BTreeMap::new(), clock.clone());
        // Ten minutes of a conversation sending as fast as it may.
        let sent = drive(&limits, &clock, "19:a", 600_000, 7);
        assert!(max_in_window(&sent, 1_000) <= 7);
        assert!(max_in_window(&sent, 30_000) <= 60);
        // The hourly window (1800) is the binding one: one send every 2 s.
        assert!(max_in_window(&sent, 3_600_000) <= 1800);
        assert!((295..=301).contains(&sent.len()), "{}", sent.len());
    }

    #[test]
    fn a_50_per_second_channel_gets_within_two_percent_of_it() {
        let clock = Arc::new(ManualClock::new(0));
        let table = [(
            "msteams".to_owned(),
            ChannelLimits {
                per_conversation: vec![],
                per_channel: vec!["50/1s".parse().unwrap()],
            },
        )]
        .into();
        let limits = SendLimits::new(&table, clock.clone());
        let sent = drive(&limits, &clock, "c", 60_000, 1);
        assert!(max_in_window(&sent, 1_000) <= 50);
        let rate = sent.len() as f64 / 60.0;
        assert!((49.0..=50.0).contains(&rate), "{rate}");
    }

    #[test]
    fn conversations_are_limited_apart_and_the_channel_together() {
        let clock = Arc::new(ManualClock::new(0));
        let limits = SendLimits::new(&BTreeMap::new(), clock.clone());
        assert_eq!(limits.admit("telegram", "a"), Admission::Now);
        // Telegram: 1/s per chat, 30/s for the bot (one every 33.4 ms).
        // 1002 ms / 30 = 33.4 ms, less the 2 ms tolerance.
        assert_eq!(limits.admit("telegram", "b"), Admission::NotBefore(32));
        clock.advance_ms(32);
        assert_eq!(limits.admit("telegram", "b"), Admission::Now);
        clock.advance_ms(32);
        // Its own chat waits for its tightest window, 20/1m: one every 3 s.
        assert!(
            matches!(limits.admit("telegram", "a"), Admission::NotBefore(t) if (2_990..=3_001).contains(&t))
        );
        // The emulator has no limits; an unknown channel gets the default row.
        for _ in 0..100 {
            assert_eq!(limits.admit("emulator", "x"), Admission::Now);
        }
        assert_eq!(limits.for_channel("kik"), &default_table()[OTHER_CHANNELS]);
    }

    #[test]
    fn resumed_limits_keep_the_spacing_of_the_sends_before_them() {
        let clock = Arc::new(ManualClock::new(1_764_000_000_000));
        let start = clock.now_ms();
        let table = [(
            "webchat".to_owned(),
            ChannelLimits {
                per_conversation: vec!["2/1s".parse().unwrap()],
                per_channel: vec![],
            },
        )]
        .into();
        // The previous daemon sent its last message just before this one started: no
        // window may count a send of each within its span.
        let limits = SendLimits::resuming(&table, clock.clone());
        let Admission::NotBefore(at) = limits.admit("webchat", "a") else {
            panic!("a send at once after a start");
        };
        // 2/1s is one send every 506 ms, less the 2 ms tolerance.
        assert_eq!(at - start, 504);
        clock.advance_ms(at - start);
        assert_eq!(limits.admit("webchat", "a"), Admission::Now);
        // Channels without limits, and limits that knew every send before them, wait for
        // nothing.
        assert_eq!(limits.admit("emulator", "a"), Admission::Now);
        let fresh = SendLimits::new(&table, clock.clone());
        assert_eq!(fresh.admit("webchat", "b"), Admission::Now);
    }

    #[test]
    fn a_channel_taken_over_waits_one_spacing_and_keeps_no_earlier_budget() {
        let clock = Arc::new(ManualClock::new(1_764_000_000_000));
        let table = [(
            "telegram".to_owned(),
            ChannelLimits {
                per_conversation: vec![],
                per_channel: vec!["20/1s".parse().unwrap()],
            },
        )]
        .into();
        let limits = SendLimits::new(&table, clock.clone());
        assert_eq!(limits.admit("telegram", "a"), Admission::Now);
        assert_eq!(limits.admit("emulator", "a"), Admission::Now);
        // Another replica sent to the channel until now: one spacing of 20/1s from now
        // (a send every 50.6 ms, less the 2 ms tolerance).
        clock.advance_ms(10_000);
        let now = clock.now_ms();
        limits.resume_channel("telegram");
        let Admission::NotBefore(at) = limits.admit("telegram", "b") else {
            panic!("a send at once after a takeover");
        };
        assert_eq!(at - now, 49);
        clock.advance_ms(at - now);
        assert_eq!(limits.admit("telegram", "b"), Admission::Now);
        // Other channels are not touched.
        assert_eq!(limits.admit("emulator", "a"), Admission::Now);
    }

    #[test]
    fn idle_conversations_are_forgotten() {
        let clock = Arc::new(ManualClock::new(0));
        let table = [(
            "slack".to_owned(),
            ChannelLimits {
                per_conversation: vec!["1/1s".parse().unwrap(), "20/1m".parse().unwrap()],
                per_channel: vec![],
            },
        )]
        .into();
        let limits = SendLimits::new(&table, clock.clone());
        for i in 0..1000 {
            assert_eq!(limits.admit("slack", &format!("c{i}")), Admission::Now);
            clock.advance_ms(1_000);
        }
        // Only the conversations of the last minute still differ from fresh ones (the
        // 20/1m window keeps a conversation for 3 s after its send).
        let kept = limits.prune();
        assert!(kept <= 8, "{kept}");
    }
}
