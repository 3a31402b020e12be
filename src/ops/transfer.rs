//! `pricewatch export` and `pricewatch import`: the whole store as JSON Lines, for
//! backups and for moving to another machine or store format.
//!
//! The file is one JSON object per line, each with a `kind`: a header
//! (`{"kind":"pricewatch-export","version":1,"exported_at":…}`), then every
//! `conversation` (its reference and unreachable mark), `product` (validators, health and
//! its whole price history), `watch` (rule, trigger state, paused, on hold) and `message` or
//! `dead_letter` (the outbox). The records are this module's own serde types, not the
//! store's encoding (`store::codec`), so an export made by one version reads in a later
//! one whatever the store's format became. Amounts are decimal strings, never numbers.
//!
//! The conversion between records and domain values is pure ([`records`], [`Reader`]);
//! the commands around it do the I/O. An import is all or nothing: the whole file is read
//! and checked (every line parses, every watch's conversation and product are in it)
//! before one transaction writes it into an empty store.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::domain::product_url::UrlError;
use crate::domain::{
    ChangePoint, Event, Offer, OutboxEntry, OutboxMessage, Product, ProductHealth, ProductUrl,
    Reference, Rule, Seen, Stock, TriggerState, Unreachable, Validators, Watch,
};
use crate::inbound::activity::{
    ChannelAccount, ConversationAccount, ConversationKey, ConversationReference,
};
use crate::ops::admin::{self, AdminError};
use crate::ops::config::{Backend, Config};
use crate::ops::CommandOutput;
use crate::price::extract::Availability;
use crate::price::Currency;
use crate::store::{Snapshot, StoreError, StoredConversation, StoredProduct};

/// The format this build writes and reads.
pub const VERSION: u32 = 1;

/// The header's `kind`: what tells an export from any other JSON Lines file.
const HEADER_KIND: &str = "pricewatch-export";

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("there is no data directory at {0}; check storage.path in the configuration")]
    NoData(PathBuf),
    #[error("cannot write the export to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nothing imported: {path}, line {line}")]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: RecordError,
    },
    #[error("nothing imported: {path}")]
    Incomplete {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TransferError {
    /// The exit status: 2 when the file given is the problem (unreadable, damaged), 1
    /// when the store is (held by a daemon, not empty, failing).
    pub fn status(&self) -> u8 {
        match self {
            TransferError::Read { .. }
            | TransferError::Line { .. }
            | TransferError::Incomplete { .. } => 2,
            _ => 1,
        }
    }
}

/// What is wrong with one line, or with the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not valid UTF-8 text")]
    Text(#[source] std::io::Error),
    #[error("an empty line")]
    Empty,
    #[error("not a valid record")]
    Json(#[source] serde_json::Error),
    #[error("the file does not start with a {HEADER_KIND:?} header")]
    NoHeader,
    #[error("a second header")]
    SecondHeader,
    #[error("export format version {0}; this build reads version {VERSION}")]
    Version(u32),
    #[error("the file is empty")]
    EmptyFile,
    #[error("a bad URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: UrlError,
    },
    #[error("a bad currency {0:?}")]
    Currency(String),
    #[error("a bad availability {0:?}")]
    Availability(String),
    #[error("conversation {0} appears twice")]
    DuplicateConversation(ConversationKey),
    #[error("product {0} appears twice")]
    DuplicateProduct(String),
    #[error("watch {0} appears twice")]
    DuplicateWatch(u64),
    #[error("message {0} appears twice")]
    DuplicateMessage(u64),
    #[error("conversation {0} is not in the file")]
    UnknownConversation(ConversationKey),
    #[error("product {0} is not in the file")]
    UnknownProduct(String),
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    #[serde(rename = "pricewatch-export")]
    Header(HeaderRecord),
    Conversation(ConversationRecord),
    Product(ProductRecord),
    Watch(WatchRecord),
    /// A message waiting in the outbox.
    Message(MessageRecord),
    /// A message given up on, kept for the operator.
    DeadLetter(MessageRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRecord {
    pub version: u32,
    /// RFC 3339, UTC; for people, not read back.
    pub exported_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: String,
    pub name: Option<String>,
    pub aad_object_id: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationAccountRecord {
    pub id: String,
    pub name: Option<String>,
    pub is_group: Option<bool>,
    pub conversation_type: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreachableRecord {
    pub since_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub channel_id: String,
    pub service_url: String,
    pub conversation: ConversationAccountRecord,
    pub user: Option<AccountRecord>,
    pub bot: AccountRecord,
    pub locale: Option<String>,
    /// The channel refused the conversation: its watches are paused.
    pub unreachable: Option<UnreachableRecord>,
}

/// Which conversation a watch or a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub channel_id: String,
    pub conversation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRecord {
    pub at_ms: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub url: String,
    pub title: Option<String>,
    pub next_due_ms: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub failures: u32,
    pub failing_since_ms: Option<u64>,
    pub notice_sent: bool,
    pub last_check_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Every price change, oldest first.
    pub history: Vec<PointRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleRecord {
    Drop {
        #[serde(with = "rust_decimal::serde::str")]
        percent: Decimal,
    },
    Below {
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
    },
    Restock,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRecord {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRecord {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub availability: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// The reference price (`at_ms` is when it was read); none while the watch waits for
    /// its first price.
    pub reference: Option<PointRecord>,
    pub fired: bool,
    pub below_count: u32,
    pub mismatch_reported: bool,
    pub last: Option<SeenRecord>,
    /// A restock watch's last availability (`in_stock`, `out_of_stock`); absent for price
    /// watches and in files written before restock watches existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// Its id in the exporting store; an import may renumber it, keeping the order.
    pub id: u64,
    pub conversation: KeyRecord,
    pub user: Option<AccountRecord>,
    pub url: String,
    pub rule: RuleRecord,
    pub created_at_ms: u64,
    pub trigger: TriggerRecord,
    pub paused: bool,
    /// The user paused it (`pause <n>`); absent in files written before pausing existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_hold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRecord {
    ReferenceSet {
        reference: PointRecord,
        #[serde(with = "rust_decimal::serde::str")]
        line: Decimal,
    },
    Fired {
        reference: PointRecord,
        #[serde(with = "rust_decimal::serde::str")]
        price: Decimal,
        currency: String,
        #[serde(with = "rust_decimal::serde::str")]
        line: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        drop_percent: Decimal,
        at_ms: u64,
    },
    Rearmed,
    CurrencyMismatch {
        reference: String,
        seen: String,
    },
    StockSet {
        in_stock: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<OfferRecord>,
    },
    BackInStock {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<OfferRecord>,
        at_ms: u64,
    },
    SoldOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BodyRecord {
    Watch {
        url: String,
        title: Option<String>,
        event: EventRecord,
    },
    FirstCheckFailed {
        url: String,
        reason: String,
    },
    CannotRead {
        url: String,
        title: Option<String>,
        since_ms: u64,
        reason: String,
    },
    ReadableAgain {
        url: String,
        title: Option<String>,
    },
    Announcement {
        text: String,
    },
    Reply {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Its id (queue order) in the exporting store; an import may renumber it.
    pub id: u64,
    pub alert_id: String,
    pub conversation: KeyRecord,
    /// The watch it is about, by its id in this file; a watch not in the file was removed
    /// before the message went.
    pub watch_id: Option<u64>,
    pub message: BodyRecord,
    pub created_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    /// When it was given up on; set on dead letters only.
    pub dead_ms: Option<u64>,
}

// ---- domain → records ----

/// The whole snapshot as records, header first, in the order the file lists them.
pub fn records(snapshot: &Snapshot, exported_at_ms: u64) -> Vec<Record> {
    let mut out = Vec::with_capacity(
        1 + snapshot.conversations.len()
            + snapshot.products.len()
            + snapshot.watches.len()
            + snapshot.queued.len()
            + snapshot.dead_letters.len(),
    );
    out.push(Record::Header(HeaderRecord {
        version: VERSION,
        exported_at: humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_millis(exported_at_ms),
        )
        .to_string(),
    }));
    out.extend(snapshot.conversations.iter().map(conversation_record));
    out.extend(snapshot.products.iter().map(product_record));
    out.extend(snapshot.watches.iter().map(watch_record));
    out.extend(
        snapshot
            .queued
            .iter()
            .map(|e| Record::Message(message_record(e))),
    );
    out.extend(
        snapshot
            .dead_letters
            .iter()
            .map(|e| Record::DeadLetter(message_record(e))),
    );
    out
}

fn account_record(a: &ChannelAccount) -> AccountRecord {
    AccountRecord {
        id: a.id.clone(),
        name: a.name.clone(),
        aad_object_id: a.aad_object_id.clone(),
        role: a.role.clone(),
    }
}

fn key_record(k: &ConversationKey) -> KeyRecord {
    KeyRecord {
        channel_id: k.channel_id.clone(),
        conversation_id: k.conversation_id.clone(),
    }
}

fn conversation_record(c: &StoredConversation) -> Record {
    let r = &c.reference;
    Record::Conversation(ConversationRecord {
        channel_id: r.channel_id.clone(),
        service_url: r.service_url.clone(),
        conversation: ConversationAccountRecord {
            id: r.conversation.id.clone(),
            name: r.conversation.name.clone(),
            is_group: r.conversation.is_group,
            conversation_type: r.conversation.conversation_type.clone(),
            tenant_id: r.conversation.tenant_id.clone(),
        },
        user: r.user.as_ref().map(account_record),
        bot: account_record(&r.bot),
        locale: r.locale.clone(),
        unreachable: c.unreachable.as_ref().map(|u| UnreachableRecord {
            since_ms: u.since_ms,
            reason: u.reason.clone(),
        }),
    })
}

fn point_record(at_ms: u64, amount: Decimal, currency: Currency) -> PointRecord {
    PointRecord {
        at_ms,
        amount,
        currency: currency.as_str().to_owned(),
    }
}

fn product_record(p: &StoredProduct) -> Record {
    let product = &p.product;
    Record::Product(ProductRecord {
        url: product.url.as_str().to_owned(),
        title: product.title.clone(),
        next_due_ms: product.next_due_ms,
        etag: product.validators.etag.clone(),
        last_modified: product.validators.last_modified.clone(),
        failures: product.health.failures,
        failing_since_ms: product.health.failing_since_ms,
        notice_sent: product.health.notice_sent,
        last_check_ms: product.last_check_ms,
        last_error: product.last_error.clone(),
        history: p
            .history
            .iter()
            .map(|c| point_record(c.at_ms, c.amount, c.currency))
            .collect(),
    })
}

fn reference_record(r: &Reference) -> PointRecord {
    point_record(r.at_ms, r.amount, r.currency)
}

fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::InStock => "in_stock",
        Availability::OutOfStock => "out_of_stock",
        Availability::Preorder => "preorder",
        Availability::Unknown => "unknown",
    }
}

fn watch_record(w: &Watch) -> Record {
    Record::Watch(WatchRecord {
        id: w.id,
        conversation: key_record(&w.conversation),
        user: w.user.as_ref().map(account_record),
        url: w.url.as_str().to_owned(),
        rule: match &w.rule {
            Rule::Drop { percent } => RuleRecord::Drop { percent: *percent },
            Rule::Below { amount } => RuleRecord::Below { amount: *amount },
            Rule::Restock => RuleRecord::Restock,
        },
        created_at_ms: w.created_at_ms,
        trigger: TriggerRecord {
            reference: w.trigger.reference.as_ref().map(reference_record),
            fired: w.trigger.fired,
            below_count: w.trigger.below_count,
            mismatch_reported: w.trigger.mismatch_reported,
            last: w.trigger.last.as_ref().map(|s| SeenRecord {
                amount: s.amount,
                currency: s.currency.as_str().to_owned(),
                availability: availability_name(s.availability).to_owned(),
                at_ms: s.at_ms,
            }),
            stock: w.trigger.stock.map(|s| {
                availability_name(match s {
                    Stock::InStock => Availability::InStock,
                    Stock::OutOfStock => Availability::OutOfStock,
                })
                .to_owned()
            }),
        },
        paused: w.paused,
        on_hold: w.on_hold,
    })
}

fn event_record(e: &Event) -> EventRecord {
    match e {
        Event::ReferenceSet { reference, line } => EventRecord::ReferenceSet {
            reference: reference_record(reference),
            line: *line,
        },
        Event::Fired {
            reference,
            price,
            currency,
            line,
            drop_percent,
            at_ms,
        } => EventRecord::Fired {
            reference: reference_record(reference),
            price: *price,
            currency: currency.as_str().to_owned(),
            line: *line,
            drop_percent: *drop_percent,
            at_ms: *at_ms,
        },
        Event::Rearmed => EventRecord::Rearmed,
        Event::CurrencyMismatch { reference, seen } => EventRecord::CurrencyMismatch {
            reference: reference.as_str().to_owned(),
            seen: seen.as_str().to_owned(),
        },
        Event::StockSet { in_stock, price } => EventRecord::StockSet {
            in_stock: *in_stock,
            price: price.as_ref().map(offer_record),
        },
        Event::BackInStock { price, at_ms } => EventRecord::BackInStock {
            price: price.as_ref().map(offer_record),
            at_ms: *at_ms,
        },
        Event::SoldOut => EventRecord::SoldOut,
    }
}

fn offer_record(o: &Offer) -> OfferRecord {
    OfferRecord {
        amount: o.amount,
        currency: o.currency.as_str().to_owned(),
    }
}

fn offer(o: OfferRecord) -> Result<Offer, RecordError> {
    Ok(Offer {
        amount: o.amount,
        currency: currency(o.currency)?,
    })
}

fn message_record(e: &OutboxEntry) -> MessageRecord {
    MessageRecord {
        id: e.id,
        alert_id: e.alert_id.clone(),
        conversation: key_record(&e.conversation),
        watch_id: e.watch_id,
        message: match &e.message {
            OutboxMessage::Watch { url, title, event } => BodyRecord::Watch {
                url: url.clone(),
                title: title.clone(),
                event: event_record(event),
            },
            OutboxMessage::FirstCheckFailed { url, reason } => BodyRecord::FirstCheckFailed {
                url: url.clone(),
                reason: reason.clone(),
            },
            OutboxMessage::CannotRead {
                url,
                title,
                since_ms,
                reason,
            } => BodyRecord::CannotRead {
                url: url.clone(),
                title: title.clone(),
                since_ms: *since_ms,
                reason: reason.clone(),
            },
            OutboxMessage::ReadableAgain { url, title } => BodyRecord::ReadableAgain {
                url: url.clone(),
                title: title.clone(),
            },
            OutboxMessage::Announcement { text } => BodyRecord::Announcement { text: text.clone() },
            OutboxMessage::Reply { text, reply_to_id } => BodyRecord::Reply {
                text: text.clone(),
                reply_to_id: reply_to_id.clone(),
            },
        },
        created_ms: e.created_ms,
        attempts: e.attempts,
        next_attempt_ms: e.next_attempt_ms,
        last_error: e.last_error.clone(),
        dead_ms: e.dead_ms,
    }
}

// ---- records → domain ----

fn account(a: AccountRecord) -> ChannelAccount {
    ChannelAccount {
        id: a.id,
        name: a.name,
        aad_object_id: a.aad_object_id,
        role: a.role,
    }
}

fn key(k: KeyRecord) -> ConversationKey {
    ConversationKey {
        channel_id: k.channel_id,
        conversation_id: k.conversation_id,
    }
}

fn currency(code: String) -> Result<Currency, RecordError> {
    Currency::parse(&code).ok_or(RecordError::Currency(code))
}

fn product_url(url: String) -> Result<ProductUrl, RecordError> {
    ProductUrl::try_from(url.clone()).map_err(|source| RecordError::Url { url, source })
}

fn reference(p: PointRecord) -> Result<Reference, RecordError> {
    Ok(Reference {
        amount: p.amount,
        currency: currency(p.currency)?,
        at_ms: p.at_ms,
    })
}

fn availability(name: String) -> Result<Availability, RecordError> {
    Ok(match name.as_str() {
        "in_stock" => Availability::InStock,
        "out_of_stock" => Availability::OutOfStock,
        "preorder" => Availability::Preorder,
        "unknown" => Availability::Unknown,
        _ => return Err(RecordError::Availability(name)),
    })
}

fn conversation(c: ConversationRecord) -> StoredConversation {
    StoredConversation {
        reference: ConversationReference {
            channel_id: c.channel_id,
            service_url: c.service_url,
            conversation: ConversationAccount {
                id: c.conversation.id,
                name: c.conversation.name,
                is_group: c.conversation.is_group,
                conversation_type: c.conversation.conversation_type,
                tenant_id: c.conversation.tenant_id,
            },
            user: c.user.map(account),
            bot: account(c.bot),
            locale: c.locale,
        },
        unreachable: c.unreachable.map(|u| Unreachable {
            since_ms: u.since_ms,
            reason: u.reason,
        }),
    }
}

fn product(p: ProductRecord) -> Result<StoredProduct, RecordError> {
    Ok(StoredProduct {
        product: Product {
            url: product_url(p.url)?,
            title: p.title,
            next_due_ms: p.next_due_ms,
            validators: Validators {
                etag: p.etag,
                last_modified: p.last_modified,
            },
            health: ProductHealth {
                failures: p.failures,
                failing_since_ms: p.failing_since_ms,
                notice_sent: p.notice_sent,
            },
            last_check_ms: p.last_check_ms,
            last_error: p.last_error,
        },
        history: p
            .history
            .into_iter()
            .map(|c| {
                Ok(ChangePoint {
                    at_ms: c.at_ms,
                    amount: c.amount,
                    currency: currency(c.currency)?,
                })
            })
            .collect::<Result<_, RecordError>>()?,
    })
}

fn watch(w: WatchRecord) -> Result<Watch, RecordError> {
    let t = w.trigger;
    Ok(Watch {
        id: w.id,
        conversation: key(w.conversation),
        user: w.user.map(account),
        url: product_url(w.url)?,
        rule: match w.rule {
            RuleRecord::Drop { percent } => Rule::Drop { percent },
            RuleRecord::Below { amount } => Rule::Below { amount },
            RuleRecord::Restock => Rule::Restock,
        },
        created_at_ms: w.created_at_ms,
        trigger: TriggerState {
            reference: t.reference.map(reference).transpose()?,
            fired: t.fired,
            below_count: t.below_count,
            mismatch_reported: t.mismatch_reported,
            last: match t.last {
                Some(s) => Some(Seen {
                    amount: s.amount,
                    currency: currency(s.currency)?,
                    availability: availability(s.availability)?,
                    at_ms: s.at_ms,
                }),
                None => None,
            },
            stock: match t.stock {
                Some(name) => Some(match availability(name.clone())? {
                    Availability::InStock => Stock::InStock,
                    Availability::OutOfStock => Stock::OutOfStock,
                    _ => return Err(RecordError::Availability(name)),
                }),
                None => None,
            },
        },
        paused: w.paused,
        on_hold: w.on_hold,
    })
}

fn event(e: EventRecord) -> Result<Event, RecordError> {
    Ok(match e {
        EventRecord::ReferenceSet { reference: r, line } => Event::ReferenceSet {
            reference: reference(r)?,
            line,
        },
        EventRecord::Fired {
            reference: r,
            price,
            currency: c,
            line,
            drop_percent,
            at_ms,
        } => Event::Fired {
            reference: reference(r)?,
            price,
            currency: currency(c)?,
            line,
            drop_percent,
            at_ms,
        },
        EventRecord::Rearmed => Event::Rearmed,
        EventRecord::CurrencyMismatch { reference: r, seen } => Event::CurrencyMismatch {
            reference: currency(r)?,
            seen: currency(seen)?,
        },
        EventRecord::StockSet { in_stock, price } => Event::StockSet {
            in_stock,
            price: price.map(offer).transpose()?,
        },
        EventRecord::BackInStock { price, at_ms } => Event::BackInStock {
            price: price.map(offer).transpose()?,
            at_ms,
        },
        EventRecord::SoldOut => Event::SoldOut,
    })
}

fn message(m: MessageRecord) -> Result<OutboxEntry, RecordError> {
    Ok(OutboxEntry {
        id: m.id,
        alert_id: m.alert_id,
        conversation: key(m.conversation),
        watch_id: m.watch_id,
        message: match m.message {
            BodyRecord::Watch {
                url,
                title,
                event: e,
            } => OutboxMessage::Watch {
                url,
                title,
                event: event(e)?,
            },
            BodyRecord::FirstCheckFailed { url, reason } => {
                OutboxMessage::FirstCheckFailed { url, reason }
            }
            BodyRecord::CannotRead {
                url,
                title,
                since_ms,
                reason,
            } => OutboxMessage::CannotRead {
                url,
                title,
                since_ms,
                reason,
            },
            BodyRecord::ReadableAgain { url, title } => OutboxMessage::ReadableAgain { url, title },
            BodyRecord::Announcement { text } => OutboxMessage::Announcement { text },
            BodyRecord::Reply { text, reply_to_id } => OutboxMessage::Reply { text, reply_to_id },
        },
        created_ms: m.created_ms,
        attempts: m.attempts,
        next_attempt_ms: m.next_attempt_ms,
        last_error: m.last_error,
        dead_ms: m.dead_ms,
    })
}

/// Reads a file's lines one by one into a [`Snapshot`], checking each as it comes and
/// what they refer to at the end. Errors carry the 1-based line number they are about.
#[derive(Debug, Default)]
pub struct Reader {
    lines: usize,
    snapshot: Snapshot,
    conversations: HashSet<ConversationKey>,
    products: HashSet<String>,
    watch_ids: HashSet<u64>,
    message_ids: HashSet<u64>,
    /// What each watch and message refers to, with its line, checked once every line
    /// is in (the file need not list a conversation before its watches).
    refers: Vec<(usize, ConversationKey, Option<String>)>,
}

impl Reader {
    /// Reads the next line; an error comes with its line number (1-based).
    pub fn line(&mut self, text: &str) -> Result<(), (usize, RecordError)> {
        self.lines += 1;
        let number = self.lines;
        self.read(number, text).map_err(|e| (number, e))
    }

    fn read(&mut self, number: usize, text: &str) -> Result<(), RecordError> {
        if text.trim().is_empty() {
            return Err(RecordError::Empty);
        }
        let record: Record = serde_json::from_str(text).map_err(RecordError::Json)?;
        match (number, record) {
            (1, Record::Header(h)) if h.version == VERSION => {}
            (1, Record::Header(h)) => return Err(RecordError::Version(h.version)),
            (1, _) => return Err(RecordError::NoHeader),
            (_, Record::Header(_)) => return Err(RecordError::SecondHeader),
            (_, Record::Conversation(c)) => {
                let c = conversation(c);
                if !self.conversations.insert(c.reference.key()) {
                    return Err(RecordError::DuplicateConversation(c.reference.key()));
                }
                self.snapshot.conversations.push(c);
            }
            (_, Record::Product(p)) => {
                let p = product(p)?;
                if !self.products.insert(p.product.url.as_str().to_owned()) {
                    return Err(RecordError::DuplicateProduct(
                        p.product.url.as_str().to_owned(),
                    ));
                }
                self.snapshot.products.push(p);
            }
            (_, Record::Watch(w)) => {
                let w = watch(w)?;
                if !self.watch_ids.insert(w.id) {
                    return Err(RecordError::DuplicateWatch(w.id));
                }
                self.refers.push((
                    number,
                    w.conversation.clone(),
                    Some(w.url.as_str().to_owned()),
                ));
                self.snapshot.watches.push(w);
            }
            (_, Record::Message(m)) => {
                let m = self.entry(number, m)?;
                self.snapshot.queued.push(m);
            }
            (_, Record::DeadLetter(m)) => {
                let m = self.entry(number, m)?;
                self.snapshot.dead_letters.push(m);
            }
        }
        Ok(())
    }

    fn entry(&mut self, number: usize, m: MessageRecord) -> Result<OutboxEntry, RecordError> {
        let m = message(m)?;
        if !self.message_ids.insert(m.id) {
            return Err(RecordError::DuplicateMessage(m.id));
        }
        self.refers.push((number, m.conversation.clone(), None));
        Ok(m)
    }

    /// The snapshot, once every watch's conversation and product and every message's
    /// conversation are known to be in the file.
    pub fn finish(self) -> Result<Snapshot, (Option<usize>, RecordError)> {
        if self.lines == 0 {
            return Err((None, RecordError::EmptyFile));
        }
        for (line, conversation, url) in self.refers {
            if !self.conversations.contains(&conversation) {
                return Err((Some(line), RecordError::UnknownConversation(conversation)));
            }
            if let Some(url) = url.filter(|u| !self.products.contains(u)) {
                return Err((Some(line), RecordError::UnknownProduct(url)));
            }
        }
        Ok(self.snapshot)
    }
}

/// The records as JSON Lines.
pub fn to_lines(records: &[Record]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    Ok(out)
}

/// Counts for the operator.
fn summary(s: &Snapshot) -> String {
    format!(
        "{} conversation(s), {} watch(es), {} product(s) with {} price(s), {} queued message(s), {} dead letter(s)",
        s.conversations.len(),
        s.watches.len(),
        s.products.len(),
        s.products.iter().map(|p| p.history.len()).sum::<usize>(),
        s.queued.len(),
        s.dead_letters.len(),
    )
}

// ---- the commands ----

/// `pricewatch export`: the data directory `config` names, which no daemon may hold,
/// as JSON Lines on standard output or into `output` (written beside it and renamed, so
/// the file is whole or not there).
pub fn export_command(
    config: &Config,
    output: Option<&Path>,
) -> Result<CommandOutput, TransferError> {
    let data = &config.storage.path;
    // Opening would create an empty store: a mistyped path must not export nothing.
    if config.storage.backend == Backend::Sled && !data.is_dir() {
        return Err(TransferError::NoData(data.clone()));
    }
    // A damaged store is read from a copy, so that exporting it changes nothing.
    let rt = admin::runtime()?;
    let (store, damage) = admin::open_readable(config, &rt)?;
    let snapshot = rt.block_on(store.snapshot())?;
    drop(store);
    let text = to_lines(&records(&snapshot, SystemClock.now_ms()))
        .map_err(|e| TransferError::Store(StoreError::Encode(std::sync::Arc::new(e))))?;
    let counts = summary(&snapshot);
    // Exported, but not all the store held: the exit status says so, so that a backup job
    // does not take it for a whole one.
    let warning = damage.map(|d| {
        format!(
            "pricewatch: the data in {} is damaged ({d}); exported what is still readable, \
             which may be less than it held\n",
            data.display()
        )
    });
    let ok = warning.is_none();
    let warning = warning.unwrap_or_default();
    match output {
        None => Ok(CommandOutput {
            stdout: text,
            stderr: format!("{warning}exported {counts}\n"),
            ok,
        }),
        Some(path) => {
            write_whole(path, text.as_bytes()).map_err(|source| TransferError::Write {
                path: path.to_owned(),
                source,
            })?;
            Ok(CommandOutput {
                stdout: format!("exported {counts} to {}\n", path.display()),
                stderr: warning,
                ok,
            })
        }
    }
}

/// Writes `bytes` to a temporary file in `path`'s directory, syncs it and renames it
/// over `path`: a crash or a full disk leaves the old file or none, never half of one.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        // Best effort: the error being reported is the write's, not this one's.
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `pricewatch import FILE`: reads the whole file, and only if every line is valid
/// writes it, in one transaction, into the data directory `config` names, which must be
/// empty and not held by a daemon.
pub fn import_command(config: &Config, file: &Path) -> Result<CommandOutput, TransferError> {
    let read_err = |source| TransferError::Read {
        path: file.to_owned(),
        source,
    };
    let input = std::fs::File::open(file).map_err(read_err)?;
    let mut reader = Reader::default();
    for line in std::io::BufReader::new(input).lines() {
        let result = match line {
            Ok(text) => reader.line(&text),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err((reader.lines + 1, RecordError::Text(e)))
            }
            Err(e) => return Err(read_err(e)),
        };
        result.map_err(|(line, source)| TransferError::Line {
            path: file.to_owned(),
            line,
            source,
        })?;
    }
    let snapshot = reader.finish().map_err(|(line, source)| match line {
        Some(line) => TransferError::Line {
            path: file.to_owned(),
            line,
            source,
        },
        None => TransferError::Incomplete {
            path: file.to_owned(),
            source,
        },
    })?;
    let counts = summary(&snapshot);
    let rt = admin::runtime()?;
    let store = admin::open_store(config, &rt)?;
    rt.block_on(store.restore_snapshot(snapshot))?;
    Ok(CommandOutput {
        stdout: format!("imported {counts} into {}\n", admin::data_place(config)),
        stderr: String::new(),
        ok: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn conv(id: &str) -> ConversationKey {
        ConversationKey {
            channel_id: "msteams".into(),
            conversation_id: id.into(),
        }
    }

    fn reference_of(id: &str, unreachable: Option<Unreachable>) -> StoredConversation {
        StoredConversation {
            reference: ConversationReference {
                channel_id: "msteams".into(),
                service_url: "https://smba.example/emea/".into(),
                conversation: ConversationAccount {
                    id: id.into(),
                    name: Some("Deals".into()),
                    is_group: Some(true),
                    conversation_type: Some("channel".into()),
                    tenant_id: Some("t1".into()),
                },
                user: Some(ChannelAccount {
                    id: "u1".into(),
                    name: Some("Ada".into()),
                    aad_object_id: Some("aad".into()),
                    role: Some("user".into()),
                }),
                bot: ChannelAccount {
                    id: "bot1".into(),
                    ..Default::default()
                },
                locale: Some("fr-FR".into()),
            },
            unreachable,
        }
    }

    fn url(s: &str) -> ProductUrl {
        ProductUrl::parse(s, 2048).unwrap()
    }

    fn reference_price() -> Reference {
        Reference {
            amount: dec("199.99"),
            currency: eur(),
            at_ms: 10,
        }
    }

    fn entry(id: u64, watch_id: Option<u64>, message: OutboxMessage) -> OutboxEntry {
        OutboxEntry {
            id,
            alert_id: format!("alert-{id}"),
            conversation: conv("a"),
            watch_id,
            message,
            created_ms: 100 + id,
            attempts: 2,
            next_attempt_ms: 5_000,
            last_error: Some("the channel answered 502".into()),
            dead_ms: None,
        }
    }

    /// A snapshot with every kind of record and every variant of each.
    fn everything() -> Snapshot {
        let p1 = url("https://shop.example/p/1");
        let p2 = url("https://shop.example/p/2");
        let watch = |id: u64, key: ConversationKey, u: &ProductUrl, rule: Rule| Watch {
            id,
            conversation: key,
            user: None,
            url: u.clone(),
            rule,
            created_at_ms: id,
            trigger: TriggerState::default(),
            paused: false,
            on_hold: false,
        };
        let mut fired = watch(
            4,
            conv("a"),
            &p1,
            Rule::Drop {
                percent: dec("12.5"),
            },
        );
        fired.user = Some(ChannelAccount {
            id: "u1".into(),
            ..Default::default()
        });
        fired.trigger = TriggerState {
            reference: Some(reference_price()),
            fired: true,
            below_count: 3,
            mismatch_reported: true,
            last: Some(Seen {
                amount: dec("0.000000001234567891"),
                currency: eur(),
                availability: Availability::Preorder,
                at_ms: 20,
            }),
            stock: None,
        };
        let mut restock = watch(13, conv("b"), &p2, Rule::Restock);
        restock.trigger = TriggerState {
            fired: true,
            stock: Some(Stock::InStock),
            ..TriggerState::default()
        };
        let mut paused = watch(
            9,
            conv("b"),
            &p1,
            Rule::Below {
                amount: dec("1234567.89"),
            },
        );
        paused.paused = true;
        paused.on_hold = true;
        let watch_event = |event| OutboxMessage::Watch {
            url: p1.as_str().into(),
            title: Some("Skillet".into()),
            event,
        };
        let mut dead = entry(
            30,
            None,
            OutboxMessage::Announcement {
                text: "maintenance".into(),
            },
        );
        dead.dead_ms = Some(7_000);
        dead.last_error = Some("the channel answered 400: bad activity".into());
        Snapshot {
            conversations: vec![
                reference_of("a", None),
                reference_of(
                    "b",
                    Some(Unreachable {
                        since_ms: 50,
                        reason: "403".into(),
                    }),
                ),
            ],
            products: vec![
                StoredProduct {
                    product: Product {
                        url: p1.clone(),
                        title: Some("Skillet".into()),
                        next_due_ms: 9_000,
                        validators: Validators {
                            etag: Some("\"v1\"".into()),
                            last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()),
                        },
                        health: ProductHealth {
                            failures: 2,
                            failing_since_ms: Some(8_000),
                            notice_sent: true,
                        },
                        last_check_ms: Some(8_500),
                        last_error: Some("no price".into()),
                    },
                    history: vec![
                        ChangePoint {
                            at_ms: 10,
                            amount: dec("199.99"),
                            currency: eur(),
                        },
                        ChangePoint {
                            at_ms: 20,
                            amount: dec("0.000000001234567891"),
                            currency: Currency::parse("JPY").unwrap(),
                        },
                    ],
                },
                StoredProduct {
                    product: Product::new(p2.clone(), 1),
                    history: vec![],
                },
            ],
            watches: vec![
                fired,
                paused,
                watch(12, conv("a"), &p2, Rule::Drop { percent: dec("20") }),
                restock,
            ],
            queued: vec![
                entry(
                    20,
                    Some(4),
                    watch_event(Event::ReferenceSet {
                        reference: reference_price(),
                        line: dec("174.99"),
                    }),
                ),
                entry(
                    21,
                    Some(4),
                    watch_event(Event::Fired {
                        reference: reference_price(),
                        price: dec("149.00"),
                        currency: eur(),
                        line: dec("174.99"),
                        drop_percent: dec("25.4987749387469373468673434"),
                        at_ms: 30,
                    }),
                ),
                entry(22, Some(4), watch_event(Event::Rearmed)),
                entry(
                    40,
                    Some(13),
                    watch_event(Event::StockSet {
                        in_stock: false,
                        price: None,
                    }),
                ),
                entry(
                    41,
                    Some(13),
                    watch_event(Event::BackInStock {
                        price: Some(Offer {
                            amount: dec("19.90"),
                            currency: eur(),
                        }),
                        at_ms: 40,
                    }),
                ),
                entry(42, Some(13), watch_event(Event::SoldOut)),
                entry(
                    23,
                    Some(4),
                    watch_event(Event::CurrencyMismatch {
                        reference: eur(),
                        seen: Currency::parse("USD").unwrap(),
                    }),
                ),
                // About a watch removed before it went: not in the file, and that is fine.
                entry(
                    24,
                    Some(77),
                    OutboxMessage::FirstCheckFailed {
                        url: p2.as_str().into(),
                        reason: "404".into(),
                    },
                ),
                entry(
                    25,
                    Some(12),
                    OutboxMessage::CannotRead {
                        url: p2.as_str().into(),
                        title: None,
                        since_ms: 8_000,
                        reason: "timeout".into(),
                    },
                ),
                entry(
                    26,
                    Some(12),
                    OutboxMessage::ReadableAgain {
                        url: p2.as_str().into(),
                        title: Some("Pan".into()),
                    },
                ),
                entry(
                    27,
                    None,
                    OutboxMessage::Reply {
                        text: "Watching #1".into(),
                        reply_to_id: Some("in-7".into()),
                    },
                ),
            ],
            dead_letters: vec![dead],
        }
    }

    fn read(text: &str) -> Result<Snapshot, (Option<usize>, String)> {
        let mut reader = Reader::default();
        for line in text.lines() {
            reader
                .line(line)
                .map_err(|(n, e)| (Some(n), crate::error::Chain(&e).to_string()))?;
        }
        reader
            .finish()
            .map_err(|(n, e)| (n, crate::error::Chain(&e).to_string()))
    }

    fn exported() -> String {
        to_lines(&records(&everything(), 1_700_000_000_000)).unwrap()
    }

    #[test]
    fn every_kind_of_record_round_trips() {
        let text = exported();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds[0], "\"pricewatch-export\"");
        for kind in ["conversation", "product", "watch", "message", "dead_letter"] {
            assert!(kinds.contains(&format!("\"{kind}\"")), "{kind}: {kinds:?}");
        }
        assert!(
            text.starts_with(
                r#"{"kind":"pricewatch-export","version":1,"exported_at":"2023-11-14T22:13:20Z"}"#
            ),
            "{text}"
        );
        assert_eq!(read(&text), Ok(everything()));
    }

    #[test]
    fn money_is_written_as_decimal_strings_to_the_last_digit() {
        let text = exported();
        assert!(
            text.contains(r#""amount":"0.000000001234567891""#),
            "{text}"
        );
        assert!(
            text.contains(r#""drop_percent":"25.4987749387469373468673434""#),
            "{text}"
        );
        assert!(text.contains(r#""amount":"1234567.89""#), "{text}");
        // A number where a string belongs is refused, not read through a float.
        let product = text
            .lines()
            .find(|l| l.contains(r#""kind":"product""#))
            .unwrap();
        let damaged = text.replace(product, &product.replace(r#""199.99""#, "199.99"));
        let (line, why) = read(&damaged).unwrap_err();
        assert_eq!(line, Some(4));
        assert!(why.contains("not a valid record"), "{why}");
    }

    #[test]
    fn a_dead_letter_keeps_its_last_error_and_when_it_died() {
        let text = exported();
        let dead = text.lines().last().unwrap();
        let v: serde_json::Value = serde_json::from_str(dead).unwrap();
        assert_eq!(v["kind"], "dead_letter");
        assert_eq!(v["last_error"], "the channel answered 400: bad activity");
        assert_eq!(v["dead_ms"], 7_000);
        let back = read(&text).unwrap();
        assert_eq!(back.dead_letters, everything().dead_letters);
        assert!(back.queued.iter().all(|e| e.dead_ms.is_none()));
    }

    /// `text` with line `n` (1-based) replaced.
    fn with_line(text: &str, n: usize, new: &str) -> String {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[n - 1] = new;
        lines.join("\n") + "\n"
    }

    #[test]
    fn a_damaged_line_is_named_by_its_number() {
        let text = exported();
        let watch_line = text
            .lines()
            .position(|l| l.contains(r#""kind":"watch""#))
            .unwrap()
            + 1;
        let watch = text.lines().nth(watch_line - 1).unwrap();
        let cases = [
            (5, "{\"kind\":\"conversation\",", "not a valid record"),
            (5, "", "an empty line"),
            (5, r#"{"kind":"coupon","id":1}"#, "unknown variant `coupon`"),
            (
                watch_line,
                &watch.replace(r#""url":"#, r#""link":"#),
                "missing field `url`",
            ),
            (
                watch_line,
                &watch.replace(r#""currency":"EUR""#, r#""currency":"EU""#),
                "a bad currency \"EU\"",
            ),
            (
                watch_line,
                &watch.replace(r#""availability":"preorder""#, r#""availability":"soon""#),
                "a bad availability",
            ),
            (
                1,
                r#"{"kind":"pricewatch-export","version":2,"exported_at":"x"}"#,
                "version 2",
            ),
            (1, r#"{"kind":"watch"}"#, "missing field"),
            (
                2,
                r#"{"kind":"pricewatch-export","version":1,"exported_at":"x"}"#,
                "a second header",
            ),
        ];
        for (n, new, expected) in cases {
            let (line, why) = read(&with_line(&text, n, new)).unwrap_err();
            assert_eq!(line, Some(n), "{new}: {why}");
            assert!(why.contains(expected), "{new}: {why}");
        }
        let third = text.lines().nth(2).unwrap();
        let (line, why) = read(&with_line(&text, 2, third)).unwrap_err();
        assert_eq!(
            (line, why.contains("appears twice")),
            (Some(3), true),
            "{why}"
        );
        assert_eq!(read("").unwrap_err(), (None, "the file is empty".into()));
        let (line, why) = read(&text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap_err();
        assert_eq!(line, Some(1));
        assert!(why.contains("header"), "{why}");
    }

    #[test]
    fn a_watch_or_message_must_find_its_conversation_and_product_in_the_file() {
        let text = exported();
        let without = |kind: &str, needle: &str| -> String {
            text.lines()
                .filter(|l| !(l.contains(kind) && l.contains(needle)))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        // Conversation b is gone: its paused watch names it.
        let damaged = without(r#""kind":"conversation""#, r#""id":"b""#);
        let (line, why) = read(&damaged).unwrap_err();
        let watch_b = damaged
            .lines()
            .position(|l| l.contains(r#""conversation_id":"b""#))
            .unwrap()
            + 1;
        assert_eq!(line, Some(watch_b), "{why}");
        assert!(
            why.contains("conversation msteams") && why.contains("not in the file"),
            "{why}"
        );
        // Product 2 is gone: the watch of it names it.
        let damaged = without(r#""kind":"product""#, "/p/2\"");
        let (line, why) = read(&damaged).unwrap_err();
        assert!(
            why.contains("product https://shop.example/p/2 is not in the file"),
            "{why}"
        );
        let line = line.unwrap();
        assert!(damaged
            .lines()
            .nth(line - 1)
            .unwrap()
            .contains(r#""kind":"watch""#));
        // The order of the lines does not matter (the store orders watches by id).
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1..].reverse();
        let mut watches = read(&lines.join("\n")).unwrap().watches;
        watches.sort_by_key(|w| w.id);
        assert_eq!(watches, everything().watches);
    }
}
