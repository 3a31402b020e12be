//! Plain data shared by the bot, the store and the watch loop. No I/O here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::inbound::activity::{ChannelAccount, ConversationKey};
use crate::inbound::command::ProductUrl;
use crate::price::fetch::Validators;
use crate::price::Currency;
use crate::watch::schedule::ProductHealth;
use crate::watch::trigger::{Event, TriggerState};

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
}

impl Watch {
    /// The first price is not known yet.
    pub fn is_pending(&self) -> bool {
        self.trigger.reference.is_none()
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
    #[serde(with = "crate::watch::trigger::currency_code")]
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
