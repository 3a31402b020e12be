//! What `GET /metrics` serves, in the Prometheus text format (0.0.4): the counters the
//! components move as they work, the store's sizes read at scrape time, and delivery's
//! own totals read at scrape time too (counted once, in [`crate::delivery`]).
//!
//! A leaf like [`crate::liveness`]: it imports no other module of the crate, so the
//! components that count (the endpoint, the watcher, delivery, the token client) need not
//! know each other or the store. Moving a counter is an atomic add after one read-locked
//! hash lookup of a label set of `&'static str`s: nothing is allocated per turn or check
//! once a label set has been seen.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Channel ids the Bot Framework documents (and the Emulator's). A label value is a time
/// series in Prometheus for ever: the channel id comes from the activity, which anyone who
/// can reach the endpoint writes (in local development, unauthenticated), so an unknown
/// id is counted as `other` rather than given a series of its own.
const KNOWN_CHANNELS: &[&str] = &[
    "alexa",
    "directline",
    "directlinespeech",
    "email",
    "emulator",
    "facebook",
    "groupme",
    "kik",
    "line",
    "msteams",
    "omnichannel",
    "outlook",
    "skype",
    "skypeforbusiness",
    "slack",
    "sms",
    "telegram",
    "twilio-sms",
    "webchat",
];

/// The label value for `channel`: itself when it is a known channel id, else `other`.
pub fn channel_label(channel: &str) -> &'static str {
    KNOWN_CHANNELS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(channel))
        .copied()
        .unwrap_or("other")
}

/// How the endpoint answered an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The bot handled it (200, or 501 for an invoke it has no handler for).
    Handled,
    /// 401: its token was refused.
    Refused,
    /// 400: not a valid activity.
    Invalid,
    /// 500: the store failed during the turn.
    Failed,
}

impl TurnOutcome {
    fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Handled => "handled",
            TurnOutcome::Refused => "refused",
            TurnOutcome::Invalid => "invalid",
            TurnOutcome::Failed => "failed",
        }
    }
}

/// What one check of a product found (the watcher maps the engine's answer to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// A price was read.
    Ok,
    /// 304: the page had not changed.
    Unchanged,
    /// The page was read but holds no usable price.
    NoPrice,
    /// pricewatch would not fetch it, or the shop would not serve pricewatch.
    Blocked,
    /// Any other failure: the network, the site's errors, a page too large.
    Error,
}

impl CheckOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Ok => "ok",
            CheckOutcome::Unchanged => "unchanged",
            CheckOutcome::NoPrice => "no_price",
            CheckOutcome::Blocked => "blocked",
            CheckOutcome::Error => "error",
        }
    }
}

/// The store's sizes, as the gauges show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub watches: u64,
    pub products: u64,
    pub outbox_messages: u64,
    pub dead_letters: u64,
    /// Seconds the oldest queued message has waited; 0 when none is queued.
    pub oldest_queued_seconds: u64,
}

/// Delivery's totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub sent: u64,
    pub retried: u64,
    pub dead: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TurnLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: &'static str,
}

type Source = Box<dyn Fn() -> Option<Deliveries> + Send + Sync>;

/// `deliveries_total`, read from delivery's own counters at scrape time.
#[derive(Default)]
struct DeliveryTotals {
    source: OnceLock<Source>,
}

impl std::fmt::Debug for DeliveryTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTotals")
            .field("source", &self.source.get().is_some())
            .finish()
    }
}

impl Collector for DeliveryTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self
            .source
            .get()
            .and_then(|read| read())
            .unwrap_or_default();
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "deliveries",
            "Outbox messages sent, left for a retry, or moved to the dead letters",
            None,
            counter.metric_type(),
        )?;
        for (outcome, n) in [
            ("sent", totals.sent),
            ("retried", totals.retried),
            ("dead", totals.dead),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&OutcomeLabel { outcome })?)?;
        }
        Ok(())
    }
}

/// Every series the daemon exports; shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    turns: Family<TurnLabels, Counter>,
    checks: Family<OutcomeLabel, Counter>,
    fetch_seconds: Histogram,
    alerts_queued: Counter,
    rate_limit_waits: Family<ChannelLabel, Counter>,
    token_refreshes: Counter,
    watches: Gauge,
    products: Gauge,
    outbox_messages: Gauge,
    dead_letters: Gauge,
    oldest_queued: Gauge,
    deliveries: Arc<DeliveryTotals>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pricewatch");
        let turns = Family::<TurnLabels, Counter>::default();
        registry.register(
            "turns",
            "Activities POSTed to /api/messages, by channel (unknown ids as other) and outcome",
            turns.clone(),
        );
        let checks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "checks",
            "Product checks, by outcome (ok, unchanged, no_price, blocked, error)",
            checks.clone(),
        );
        // 50 ms to about 26 s: a fetch is bounded by fetch.timeout (20 s by default).
        let fetch_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 10));
        registry.register(
            "fetch_seconds",
            "Time one check took to fetch and read a product page",
            fetch_seconds.clone(),
        );
        let alerts_queued = Counter::default();
        registry.register(
            "alerts_queued",
            "Messages queued in the outbox by checks",
            alerts_queued.clone(),
        );
        let rate_limit_waits = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "rate_limit_waits",
            "Sends held back by their channel's rate limit (each counted once), by channel",
            rate_limit_waits.clone(),
        );
        let token_refreshes = Counter::default();
        registry.register(
            "token_refreshes",
            "Outbound Bot Framework tokens fetched",
            token_refreshes.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let watches = gauge(&mut registry, "watches", "Watches stored");
        let products = gauge(&mut registry, "products", "Products watched");
        let outbox_messages = gauge(
            &mut registry,
            "outbox_messages",
            "Messages waiting in the outbox",
        );
        let dead_letters = gauge(&mut registry, "dead_letters", "Messages given up on");
        // Depth alone hides a stuck queue that is short; the age of its head does not.
        let oldest_queued = gauge(
            &mut registry,
            "outbox_oldest_age_seconds",
            "How long the oldest message waiting in the outbox has waited (0 when empty)",
        );
        let deliveries = Arc::new(DeliveryTotals::default());
        registry.register_collector(Box::new(deliveries.clone()));
        Metrics {
            registry,
            turns,
            checks,
            fetch_seconds,
            alerts_queued,
            rate_limit_waits,
            token_refreshes,
            watches,
            products,
            outbox_messages,
            dead_letters,
            oldest_queued,
            deliveries,
        }
    }

    /// An activity was answered.
    pub fn turn(&self, channel: &str, outcome: TurnOutcome) {
        self.turns
            .get_or_create(&TurnLabels {
                channel: channel_label(channel),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A product was checked; `took`: its fetch and extraction.
    pub fn check(&self, outcome: CheckOutcome, took: Duration) {
        self.checks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        self.fetch_seconds.observe(took.as_secs_f64());
    }

    /// A check queued `n` messages.
    pub fn alerts_queued(&self, n: usize) {
        if n > 0 {
            self.alerts_queued.inc_by(n as u64);
        }
    }

    /// A send to `channel` had to wait for its rate limit.
    pub fn rate_limit_wait(&self, channel: &str) {
        self.rate_limit_waits
            .get_or_create(&ChannelLabel {
                channel: channel_label(channel),
            })
            .inc();
    }

    /// A new outbound token was fetched.
    pub fn token_refreshed(&self) {
        self.token_refreshes.inc();
    }

    /// `deliveries_total` reads `read` at each scrape (once; later calls are ignored).
    /// `None` from it reads as zeros (delivery has stopped).
    pub fn read_deliveries_from(
        &self,
        read: impl Fn() -> Option<Deliveries> + Send + Sync + 'static,
    ) {
        let _ = self.deliveries.source.set(Box::new(read));
    }

    /// The store's sizes, set just before a scrape is encoded.
    pub fn set_stored(&self, s: Stored) {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.watches.set(as_i64(s.watches));
        self.products.set(as_i64(s.products));
        self.outbox_messages.set(as_i64(s.outbox_messages));
        self.dead_letters.set(as_i64(s.dead_letters));
        self.oldest_queued.set(as_i64(s.oldest_queued_seconds));
    }

    /// Every series, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_labels_are_bounded_to_known_ids() {
        assert_eq!(channel_label("msteams"), "msteams");
        assert_eq!(channel_label("emulator"), "emulator");
        assert_eq!(channel_label("twilio-sms"), "twilio-sms");
        assert_eq!(channel_label("Slack"), "slack");
        assert_eq!(channel_label(""), "other");
        assert_eq!(channel_label("msteams2"), "other");
        assert_eq!(channel_label(&"x".repeat(10_000)), "other");
        // However many distinct ids arrive, the label takes at most the known values and
        // `other`.
        let metrics = Metrics::new();
        for i in 0..1000 {
            metrics.turn(&format!("made-up-{i}"), TurnOutcome::Handled);
        }
        metrics.turn("telegram", TurnOutcome::Handled);
        let text = metrics.encode().unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pricewatch_turns_total{"))
            .collect();
        assert_eq!(series.len(), 2, "{text}");
        assert!(text.contains("pricewatch_turns_total{channel=\"other\",outcome=\"handled\"} 1000"));
        assert!(text.contains("pricewatch_turns_total{channel=\"telegram\",outcome=\"handled\"} 1"));
    }

    #[test]
    fn delivery_totals_are_read_at_scrape_time() {
        let metrics = Metrics::new();
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("pricewatch_deliveries_total{outcome=\"sent\"} 0"),
            "{text}"
        );
        metrics.read_deliveries_from(|| {
            Some(Deliveries {
                sent: 3,
                retried: 2,
                dead: 1,
            })
        });
        let text = metrics.encode().unwrap();
        for line in [
            "pricewatch_deliveries_total{outcome=\"sent\"} 3",
            "pricewatch_deliveries_total{outcome=\"retried\"} 2",
            "pricewatch_deliveries_total{outcome=\"dead\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
