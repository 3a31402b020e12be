//! Plain data shared by the bot, the store, the watch loop and delivery: watches and their
//! rules, products with their validators and health, a watch's alert state and the events
//! a check produces, outbox entries. No I/O and no logic beyond small accessors.
//!
//! Every subsystem imports this module; it imports only the pure value types of
//! [`crate::price`] (currencies, availability) and [`crate::inbound::activity`]
//! (conversation keys), which import nothing back, so the dependency points one way. The
//! behaviour on these types lives with the subsystem that owns it: the trigger's step in
//! [`crate::watch::trigger`], backoff in [`crate::watch::schedule`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub mod product_url;
pub mod text;

pub use product_url::ProductUrl;

use crate::inbound::activity::{ChannelAccount, ConversationKey};
use crate::price::extract::Availability;
use crate::price::Currency;

/// When a watch alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// At or below `reference × (1 − percent/100)`.
    Drop {
        #[serde(with = "rust_decimal::serde::str")]
        percent: Decimal,
    },
    /// At or below a fixed amount in the product's currency.
    Below {
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
    },
    /// Once each time the product comes back in stock after being out of stock; the price
    /// does not matter.
    Restock,
}

/// A stored watch: one product URL watched in one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// Unique across the store and increasing with creation time, so that a
    /// conversation's watches list in the order they were made.
    pub id: u64,
    pub conversation: ConversationKey,
    /// Who asked for it; in group conversations the alert can name them.
    pub user: Option<ChannelAccount>,
    pub url: ProductUrl,
    pub rule: Rule,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Reference price and alert state; no reference yet means the watch is pending its
    /// first price.
    #[serde(default)]
    pub trigger: TriggerState,
    /// The channel refused the conversation (403/404): no checks count for the watch and
    /// nothing is sent until the conversation writes again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The user paused it (`pause <n>`): it counts nothing and sends nothing until `resume`,
    /// and its product is not fetched for it. Separate from `paused`, which the channel
    /// sets and clears on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_hold: bool,
}

impl Watch {
    /// The first price (for a restock watch, the first availability) is not known yet.
    pub fn is_pending(&self) -> bool {
        match self.rule {
            Rule::Restock => self.trigger.stock.is_none(),
            Rule::Drop { .. } | Rule::Below { .. } => self.trigger.reference.is_none(),
        }
    }

    /// The watch under `rule`, its alert re-armed (`TriggerState::for_new_rule`); `None`
    /// for the rule it has already, which changes nothing, its alert state included.
    pub fn with_rule(&self, rule: &Rule) -> Option<Watch> {
        (self.rule != *rule).then(|| Watch {
            rule: rule.clone(),
            trigger: self.trigger.for_new_rule(),
            ..self.clone()
        })
    }
}

impl TriggerState {
    /// The state a watch keeps when its rule changes to another of the same kind (a drop for
    /// a price, a price for a drop): the reference, the last price and the currency report
    /// stay, and the alert re-arms, so the next check measures the price against the new
    /// line as if it had just been set (docs/rules.md, "Changing a watch").
    pub fn for_new_rule(&self) -> TriggerState {
        TriggerState {
            fired: false,
            below_count: 0,
            ..self.clone()
        }
    }
}

/// A watch before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWatch {
    pub conversation: ConversationKey,
    pub user: Option<ChannelAccount>,
    pub url: ProductUrl,
    pub rule: Rule,
    pub created_at_ms: u64,
}

impl NewWatch {
    /// The watch as a store first records it, under the id it gave it: pending its first
    /// price, neither paused nor on hold.
    pub fn into_watch(self, id: u64) -> Watch {
        Watch {
            id,
            conversation: self.conversation,
            user: self.user,
            url: self.url,
            rule: self.rule,
            created_at_ms: self.created_at_ms,
            trigger: TriggerState::default(),
            paused: false,
            on_hold: false,
        }
    }
}

/// A product as the watch loop tracks it: one record per normalised URL, however many
/// watches share it, so it is fetched once per check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub url: ProductUrl,
    #[serde(default)]
    pub title: Option<String>,
    /// When the next check is due (stored, so a restart does not fetch everything at once).
    pub next_due_ms: u64,
    #[serde(default)]
    pub validators: Validators,
    #[serde(default)]
    pub health: ProductHealth,
    #[serde(default)]
    pub last_check_ms: Option<u64>,
    /// Why the last check found no price, for `list` and the failure notice.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Product {
    /// A product nobody has checked yet: due at once.
    pub fn new(url: ProductUrl, now_ms: u64) -> Product {
        Product {
            url,
            title: None,
            next_due_ms: now_ms,
            validators: Validators::default(),
            health: ProductHealth::default(),
            last_check_ms: None,
            last_error: None,
        }
    }
}

/// A price change of a product: history keeps only the points where the price changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePoint {
    pub at_ms: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "currency_code")]
    pub currency: Currency,
}

/// What a queued proactive message says. Rendered at delivery, in the conversation's
/// language, with the watch's number as `list` shows it then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxMessage {
    /// A trigger event of a watch: the first price, an alert, a currency change.
    Watch {
        url: String,
        title: Option<String>,
        event: Event,
    },
    /// The first check of a new watch failed; the watch was removed.
    FirstCheckFailed { url: String, reason: String },
    /// The product has not been readable since `since_ms`.
    CannotRead {
        url: String,
        title: Option<String>,
        since_ms: u64,
        reason: String,
    },
    /// The product is readable again after a `CannotRead`.
    ReadableAgain { url: String, title: Option<String> },
    /// An operator's announcement (`POST /api/notify`), sent as written.
    Announcement { text: String },
    /// A reply of a turn the channel did not take in time, as the bot wrote it (in the
    /// user's language then), sent later in its turn's order; still a reply to the user's
    /// activity when that had an id.
    Reply {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to_id: Option<String>,
    },
}

/// A message to queue, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbox {
    /// Deterministic: the same event queued twice (a retried check) has the same id, and the
    /// store keeps one.
    pub alert_id: String,
    pub conversation: ConversationKey,
    pub watch_id: Option<u64>,
    pub message: OutboxMessage,
}

impl NewOutbox {
    /// The message as a store first queues it, under the id it gave it: due at once.
    pub fn queued(&self, id: u64, now_ms: u64) -> OutboxEntry {
        OutboxEntry {
            id,
            alert_id: self.alert_id.clone(),
            conversation: self.conversation.clone(),
            watch_id: self.watch_id,
            message: self.message.clone(),
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
            dead_ms: None,
        }
    }
}

/// A queued proactive message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Queue order (sled's crash-safe monotonic id).
    pub id: u64,
    pub alert_id: String,
    pub conversation: ConversationKey,
    pub watch_id: Option<u64>,
    pub message: OutboxMessage,
    pub created_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    /// When it was given up on (a dead letter); `None` while it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_ms: Option<u64>,
}

/// A conversation the channel refused (403/404), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    pub since_ms: u64,
    pub reason: String,
}

/// Everything one check of a product changes, applied by the store in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub product: Product,
    /// A new history point, when the price differs from the latest one.
    pub change: Option<ChangePoint>,
    /// The watches whose trigger state changed; a watch removed meanwhile is skipped, with
    /// its messages.
    pub watches: Vec<Watch>,
    pub messages: Vec<NewOutbox>,
    pub now_ms: u64,
}

/// The cache validators of a page, sent back on the next fetch so an
/// unchanged page costs a 304 and no body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
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

/// The price every drop of a watch is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "currency_code")]
    pub currency: Currency,
    /// When it was read (ms since the Unix epoch): the alert says "since `<date>`".
    pub at_ms: u64,
}

/// The last price the trigger compared, for `list` and alert messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "currency_code")]
    pub currency: Currency,
    #[serde(with = "availability_code", default)]
    pub availability: Availability,
    /// Since when the watch has seen this price and availability unchanged (ms since the
    /// Unix epoch): a check that sees them again leaves it, so that a steady check (a
    /// 304) leaves the watch's record as it was and writes nothing for it.
    pub at_ms: u64,
}

impl Seen {
    /// `self` as seen at `at_ms`, keeping `before`'s time when it saw the same.
    pub fn since(self, before: Option<Seen>) -> Seen {
        match before {
            Some(b)
                if (b.amount, b.currency, b.availability)
                    == (self.amount, self.currency, self.availability) =>
            {
                Seen {
                    at_ms: b.at_ms.min(self.at_ms),
                    ..self
                }
            }
            _ => self,
        }
    }
}

/// Per-watch trigger state, stored with the watch. Every field has a default so that a
/// record written by an older version (or `{}`) still reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TriggerState {
    /// The first usable price; never changes afterwards. `None` while the watch is pending.
    #[serde(default)]
    pub reference: Option<Reference>,
    /// Fired and not yet re-armed: staying low must not alert again.
    #[serde(default)]
    pub fired: bool,
    /// Consecutive priced checks at or below the line while armed, for confirmations.
    #[serde(default)]
    pub below_count: u32,
    /// A currency mismatch was reported; cleared by a price in the reference currency.
    #[serde(default)]
    pub mismatch_reported: bool,
    /// The last price compared with the line (a restock watch: the last price seen, none
    /// when the last check showed no price).
    #[serde(default)]
    pub last: Option<Seen>,
    /// A restock watch's product as the last check that said so saw it; `None` while the
    /// watch is pending, and always for price watches (so their records do not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<Stock>,
}

/// Whether a product can be bought, as a restock watch counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stock {
    InStock,
    OutOfStock,
}

/// A price a restock message shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "currency_code")]
    pub currency: Currency,
}

/// What a step decided, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The first usable price became the reference; the caller sends the "I will tell you
    /// at `line` or less" follow-up.
    ReferenceSet {
        reference: Reference,
        #[serde(with = "rust_decimal::serde::str")]
        line: Decimal,
    },
    /// The alert, once per crossing.
    Fired {
        reference: Reference,
        #[serde(with = "rust_decimal::serde::str")]
        price: Decimal,
        #[serde(with = "currency_code")]
        currency: Currency,
        #[serde(with = "rust_decimal::serde::str")]
        line: Decimal,
        /// [`crate::watch::trigger::drop_percent`] of `price` against the reference; negative for a `Below` watch
        /// whose price rose from the reference but is still under the target.
        #[serde(with = "rust_decimal::serde::str")]
        drop_percent: Decimal,
        at_ms: u64,
    },
    /// The price rose above the re-arm threshold: the next crossing alerts again. No
    /// message; for logs and tests.
    Rearmed,
    /// The page prices in another currency than the reference, so nothing is compared.
    CurrencyMismatch {
        #[serde(with = "currency_code")]
        reference: Currency,
        #[serde(with = "currency_code")]
        seen: Currency,
    },
    /// A restock watch's first availability; the caller sends the "I will tell you when it
    /// is back" follow-up.
    StockSet {
        in_stock: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<Offer>,
    },
    /// The restock alert, once per return to stock.
    BackInStock {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<Offer>,
        at_ms: u64,
    },
    /// A restock watch's product ran out after being in stock: its next return alerts. No
    /// message; for logs and tests.
    SoldOut,
}

/// `Currency` as its ISO code; it has no serde of its own.
pub(crate) mod currency_code {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::price::Currency;

    pub fn serialize<S: Serializer>(c: &Currency, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).ok_or_else(|| D::Error::custom(format!("bad currency {code:?}")))
    }
}

/// `Availability` is only `Serialize`; reading back accepts its snake_case names and
/// takes anything else as unknown, so a value a later version adds still reads.
pub(crate) mod availability_code {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::price::extract::Availability;

    pub fn serialize<S: Serializer>(a: &Availability, s: S) -> Result<S::Ok, S::Error> {
        a.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Availability, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "in_stock" => Availability::InStock,
            "out_of_stock" => Availability::OutOfStock,
            "preorder" => Availability::Preorder,
            _ => Availability::Unknown,
        })
    }
}
