//! The durable store, behind a narrow interface.
//!
//! Everything pricewatch must not forget goes through [`Store`]: conversation references,
//! watches with their trigger state, products with their schedule, price history and the
//! outbox of proactive messages. The interface speaks only
//! domain types, so a second backend (a shared PostgreSQL for replicated deployments is on the
//! roadmap) implements the same trait. No sled type leaves this module.
//!
//! Durability contract: a method whose result the caller will acknowledge to a user
//! (`add_watch`, `remove_watches`, `change_rule`, `set_on_hold`, a new or moved conversation reference) returns only after
//! the change is on disk.

mod codec;
mod guarded;
mod leases;
pub mod postgres;
mod sled;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, Unreachable, Watch,
};
use crate::domain::{ProductUrl, Rule};
use crate::inbound::activity::{ConversationKey, ConversationReference};

pub use self::guarded::{GuardConfig, GuardedStore};
pub use self::leases::LeaseBook;
pub use self::sled::{Counts, Damage, SledStore, SledStoreConfig, StartCheck};

/// The layout of the store this build reads and writes (which trees, which indexes). A
/// store with a newer or unknown version is refused at open; an older one is migrated
/// (version 2 added the due-time indexes). An older build refuses a migrated store, so
/// that it never writes records without their index.
pub const SCHEMA_VERSION: u32 = 2;

/// The version in each record's envelope (`codec`): the records' encoding, which the
/// schema's version 2 left as it was (so an upgraded store rewrites nothing).
pub const RECORD_VERSION: u32 = 1;

/// A boxed future, so the trait stays object-safe and backends can be swapped at start-up.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What `upsert_reference` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceChange {
    /// First activity of this conversation: stored and flushed.
    New,
    /// The channel moved the conversation to another `serviceUrl`: replaced and flushed.
    ServiceUrlChanged,
    /// Another detail changed (user, names, locale): written, flushed in the background.
    Updated,
    /// Identical to the stored one: nothing written.
    Unchanged,
}

/// What `add_watch` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddWatch {
    Added(Watch),
    /// The conversation already watches this URL.
    Duplicate(Watch),
    /// The conversation has `max` watches already.
    LimitReached {
        max: usize,
    },
}

/// A conversation as stored: its reference and, while the channel refuses it, the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConversation {
    pub reference: ConversationReference,
    pub unreachable: Option<Unreachable>,
}

/// A conversation as a delivery pass needs it ([`Store::recipients`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// `None`: no reference is stored (the message cannot be sent yet).
    pub reference: Option<ConversationReference>,
    pub unreachable: Option<Unreachable>,
    /// Empty unless asked for.
    pub watches: Vec<Watch>,
}

/// A product with its price changes, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProduct {
    pub product: Product,
    pub history: Vec<ChangePoint>,
}

/// Everything a store holds, as domain values: what [`Store::snapshot`] reads and
/// [`Store::restore_snapshot`] writes (the operator's export and import).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// In key order.
    pub conversations: Vec<StoredConversation>,
    /// In key order.
    pub products: Vec<StoredProduct>,
    /// Oldest first (by id), whatever their conversation.
    pub watches: Vec<Watch>,
    /// Queued messages, in queue order.
    pub queued: Vec<OutboxEntry>,
    /// Dead letters, oldest first.
    pub dead_letters: Vec<OutboxEntry>,
}

/// Counts for health checks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub references: usize,
    pub watches: usize,
    pub products: usize,
    pub outbox: usize,
    pub dead_letters: usize,
    /// When the oldest message still queued was created; `None` when none is queued.
    pub oldest_queued_ms: Option<u64>,
}

/// What a backend reports as the cause of a failure (sled's error, an I/O error, a
/// database driver's). Shared, because one failed flush or batch answers every caller
/// that waited on it with the same cause.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the data directory {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("the data directory {path} has schema version {found}, this build needs {expected}")]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("storage I/O failed")]
    Io(#[source] Cause),
    #[error("a stored record could not be decoded ({what})")]
    Corrupt {
        what: &'static str,
        #[source]
        source: Arc<serde_json::Error>,
    },
    #[error("a record could not be encoded")]
    Encode(#[source] Arc<serde_json::Error>),
    #[error("the store's writer thread has stopped")]
    WriterStopped,
    #[error("the data directory {path} is not empty; restore into an empty one")]
    NotEmpty { path: PathBuf },
    /// Nothing was written to it: see `sled::integrity`.
    #[error(
        "the data in {path} is damaged ({damage}); it was left untouched. Restore it from a \
         `pricewatch export` backup into a fresh directory, or run `pricewatch export` to save \
         what is still readable and `pricewatch import` that into a fresh directory"
    )]
    Damaged { path: PathBuf, damage: Damage },
    #[error(
        "the disk holding {path} is nearly full: {free} bytes free, {reserve} kept in reserve \
         (storage.min_free); nothing more is written until space is freed"
    )]
    DiskFull {
        path: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("the store did not answer {what} within {}", humantime::format_duration(*.after))]
    TimedOut {
        what: &'static str,
        after: std::time::Duration,
    },
}

impl StoreError {
    /// A failure of the storage itself (a full disk, an I/O error, a store that does not
    /// answer), which may pass, rather than of one record: the daemon is then not ready,
    /// and the caller is told to try again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Io(_)
                | StoreError::DiskFull { .. }
                | StoreError::TimedOut { .. }
                | StoreError::WriterStopped
        )
    }
}

/// The lease of the shop whose pages the holder fetches (`host:<host>`).
pub const HOST_LEASE: &str = "host:";
/// The lease of the channel whose messages the holder sends (`deliver:<channel id>`).
pub const DELIVERY_LEASE: &str = "deliver:";

/// The lease a replica holds while it polls (`poller:<holder>`): how replicas count each
/// other to share the shops out.
pub const POLLER_LEASE: &str = "poller:";

/// A lease [`Replicas::hold`] holds for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    /// Another process (or none) had it last: what that one did under it (a shop's last
    /// request, a channel's last send) is not known here.
    pub taken_over: bool,
}

/// What processes sharing one store use to split the work between them: named leases
/// that expire, and claims on due products and queued messages (ARCHITECTURE.md,
/// "Replicas"). Only a backend several processes can share has it; with the others, one
/// process does everything, as it always has.
///
/// Lease and claim times are the store's own clock, never a process's, so replicas whose
/// clocks disagree still agree on when one runs out; `ttl` is a length of time on it.
pub trait Replicas: Send + Sync {
    /// This process as a lease holder, for logs.
    fn holder(&self) -> &str;

    /// Takes or renews each named lease that is free, expired or this process's already,
    /// for `ttl` from now (a renewal never shortens it); returns those this process holds
    /// now.
    fn hold(&self, names: Vec<String>, ttl: std::time::Duration) -> StoreFuture<'_, Vec<Held>>;

    /// How many unexpired leases, whoever holds them, have names starting with `prefix`.
    fn count_held<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, usize>;

    /// Gives back this process's leases among `names`, each free `tail` from now (a
    /// shop's gap spans the handover), and every claim it holds: it is stopping.
    fn release(&self, names: Vec<String>, tail: std::time::Duration) -> StoreFuture<'_, ()>;

    /// Claims for `ttl` those of the products that are still due at `now_ms` (`u64::MAX`:
    /// whenever they are due, for a new watch's first check) and that no other process
    /// has claimed (or whose claim ran out), skipping rows another transaction holds;
    /// returns the URLs claimed. Renews this process's own claims.
    /// [`Store::record_check`] ends a claim.
    fn claim_products(
        &self,
        urls: Vec<String>,
        now_ms: u64,
        ttl: std::time::Duration,
    ) -> StoreFuture<'_, Vec<String>>;

    /// Makes the product due at `now_ms` unless it is due sooner: a new watch's first
    /// check, left to the process that fetches its shop.
    fn make_due(&self, url: String, now_ms: u64) -> StoreFuture<'_, ()>;

    /// Whether another process has the product claimed now: its check is in flight.
    fn claimed_elsewhere(&self, url: String) -> StoreFuture<'_, bool>;

    /// The same for queued messages: returns the entries claimed (as stored now), in queue
    /// order. A message leaves its claim with the outbox, or when it is no longer due.
    fn claim_messages(
        &self,
        ids: Vec<u64>,
        now_ms: u64,
        ttl: std::time::Duration,
    ) -> StoreFuture<'_, Vec<OutboxEntry>>;
}

/// The narrow interface every backend implements.
///
/// Names follow one pattern: a query is named for what it returns (`watches`,
/// `due_messages`, `dead_letters`), a change is a verb and its object (`add_watch`,
/// `record_check`, `move_to_dead_letters`). Outbox entries are "messages".
pub trait Store: Send + Sync + 'static {
    /// Stores the reference keyed by (channelId, conversation.id), replacing an older one.
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange>;

    fn reference<'a>(
        &'a self,
        key: &'a ConversationKey,
    ) -> StoreFuture<'a, Option<ConversationReference>>;

    /// Adds a watch unless the conversation already watches the URL or has `max` watches.
    /// The check and the insert are atomic with respect to other calls.
    fn add_watch(&self, watch: NewWatch, max: usize) -> StoreFuture<'_, AddWatch>;

    /// The conversation's watches, oldest first (the order `list` numbers them in).
    fn watches<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Vec<Watch>>;

    /// Removes the given watches of the conversation; returns those actually removed.
    fn remove_watches<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Vec<Watch>>;

    /// Gives the conversation's watch `id` a new rule, keeping its reference and history
    /// and re-arming its alert ([`crate::domain::TriggerState::for_new_rule`]), durably.
    /// The rule it has already changes nothing. Returns the watch before and after, or
    /// `None` when it is gone.
    fn change_rule<'a>(
        &'a self,
        key: &'a ConversationKey,
        id: u64,
        rule: Rule,
    ) -> StoreFuture<'a, Option<(Watch, Watch)>>;

    /// Puts the given watches of the conversation on hold (`pause`) or takes them off it
    /// (`resume`), durably; returns the watches found, as they are now (changed or not).
    fn set_on_hold<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
        on_hold: bool,
    ) -> StoreFuture<'a, Vec<Watch>>;

    /// How much the store holds. Exact, so it may cost a walk of the data (PostgreSQL
    /// counts rows); callers that ask often go through `ops::sizes::StoreSizes`.
    fn stats(&self) -> StoreFuture<'_, StoreStats>;

    /// Whether the store answers now, at a cost that does not grow with what it holds:
    /// `/readyz` asks it every few seconds. sled's counts are kept as it writes, so its
    /// `stats` is that check.
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.stats().await.map(|_| ()) })
    }

    /// Products whose check is due at `now_ms`, most overdue first, at most `limit`. A
    /// shared backend leaves out those another process has claimed or whose shop it holds.
    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>>;

    fn product<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<Product>>;

    /// Every watch of the product, in any conversation.
    fn product_watches<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<Watch>>;

    /// Applies one check atomically (product, history point, watch states and queued
    /// messages in one transaction) and makes it durable before returning the queued
    /// entries, so nothing is sent about a check a crash could undo.
    fn record_check(&self, check: CheckRecord) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// The product's price changes, oldest first.
    fn history<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<ChangePoint>>;

    /// The product's newest price change, without reading the whole history.
    fn latest_point<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<ChangePoint>>;

    /// Drops history points older than `before_ms` (the retention setting).
    fn prune_history(&self, before_ms: u64) -> StoreFuture<'_, usize>;

    /// Queued messages whose next attempt is due, in queue order, at most `limit`. When
    /// more are due, which ones a pass gets is the backend's choice (the sled one: the
    /// oldest of those queued to go at once and the most overdue of those put off). A
    /// shared backend leaves out those another process has claimed or whose channel it
    /// holds.
    fn due_messages(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// A queued message as stored now (`None`: delivered, dead or never queued).
    fn queued_message(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>>;

    /// Removes delivered messages (all of them at once: a delivery pass removes what it
    /// sent in batches, not one store call per message); ids no longer queued are
    /// skipped. Durable with the next flush, not before: a crash just after a send resends
    /// it (the only duplicate at-least-once delivery allows).
    fn remove_delivered(&self, ids: Vec<u64>) -> StoreFuture<'_, ()>;

    /// Records a failed attempt and when to try again.
    fn schedule_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()>;

    /// Queues messages that no check produced (the notify endpoint), durably; an alert id
    /// already queued is skipped, and so is a message for a conversation marked
    /// unreachable (the channel refused it: it would only become a dead letter). Returns
    /// the entries queued.
    fn queue_messages(
        &self,
        messages: Vec<NewOutbox>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Every stored conversation, in key order.
    fn conversations(&self) -> StoreFuture<'_, Vec<ConversationKey>>;

    /// Moves queued messages' next attempt to `next_attempt_ms` (never earlier) without
    /// counting a failure (they wait for a rate limit or an earlier reply). Not flushed:
    /// losing it to a crash only brings the attempt forward to where the limiter,
    /// restarted empty, allows one send.
    fn defer_messages(&self, ids: Vec<u64>, next_attempt_ms: u64) -> StoreFuture<'_, ()>;

    /// Moves a queued message to the dead letters with its last error; `false` when it
    /// was not queued (delivered or dead already).
    fn move_to_dead_letters(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool>;

    /// Dead letters, oldest first, at most `limit`.
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Queued messages whatever their next attempt, in queue order, at most `limit`.
    fn queued_messages(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Puts a dead letter back in the outbox, due at `now_ms` with no attempts counted;
    /// `false` when there is no such dead letter.
    fn requeue_dead_letter(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool>;

    /// Marks the conversation unreachable and pauses its watches (durably); returns how
    /// many watches were paused. The next activity from the conversation
    /// (`upsert_reference`) clears the mark and resumes them.
    fn mark_unreachable<'a>(
        &'a self,
        key: &'a ConversationKey,
        mark: Unreachable,
    ) -> StoreFuture<'a, usize>;

    fn unreachable<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Option<Unreachable>>;

    /// What a delivery pass needs of each conversation it sends to, in one call: its
    /// reference, its unreachable mark and, where the request's flag asks, its watches
    /// (oldest first). One [`Recipient`] per request, in the same order.
    fn recipients(&self, wanted: Vec<(ConversationKey, bool)>) -> StoreFuture<'_, Vec<Recipient>>;

    /// Everything the store holds. Read tree by tree, not as one point in time: the
    /// operator's export runs on a stopped daemon's data.
    fn snapshot(&self) -> StoreFuture<'_, Snapshot>;

    /// Writes a snapshot into an empty store, all of it in one transaction, durably;
    /// [`StoreError::NotEmpty`] when the store holds anything. Watch and message ids are
    /// renumbered in the store's own sequence, keeping their order (so `list` numbers a
    /// conversation's watches as before, and new ids come after them); a message's watch
    /// id follows its watch, and one whose watch is not in the snapshot gets an id no
    /// watch has, so it stays about a watch that is gone.
    fn restore_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()>;

    /// Makes every earlier write durable.
    fn flush(&self) -> StoreFuture<'_, ()>;

    /// Whether writes can be taken now; the error says why not (a full disk, a store
    /// that stopped answering). Cheap: `/readyz` and each delivery pass ask it.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How this store is shared with other processes; `None`: it is not, and this
    /// process does all the work.
    fn replicas(&self) -> Option<&dyn Replicas> {
        None
    }
}
