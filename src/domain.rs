//! Plain data shared by the bot, the store and (later) the price engine. No I/O here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::activity::{ChannelAccount, ConversationKey};
use crate::command::ProductUrl;

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
