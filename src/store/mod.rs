//! The durable store, behind a narrow interface.
//!
//! Everything pricewatch must not forget goes through [`Store`]: conversation references and
//! watches now; products, price history and the alert outbox later. The interface speaks only
//! domain types, so a second backend (a shared PostgreSQL for replicated deployments is on the
//! roadmap) implements the same trait. No sled type leaves this module.
//!
//! Durability contract: a method whose result the caller will acknowledge to a user
//! (`add_watch`, `remove_watches`, a new or moved conversation reference) returns only after
//! the change is on disk.

mod codec;
mod sled_store;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::activity::{ConversationKey, ConversationReference};
use crate::domain::{NewWatch, Watch};

pub use sled_store::{SledStore, SledStoreConfig};

/// The schema this build reads and writes; a store with another version is refused at open.
pub const SCHEMA_VERSION: u32 = 1;

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

/// Counts for health checks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub references: usize,
    pub watches: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the data directory {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("the data directory {path} has schema version {found}, this build needs {expected}")]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("a stored record could not be decoded ({what}): {reason}")]
    Corrupt { what: &'static str, reason: String },
}

/// The narrow interface every backend implements.
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

    fn stats(&self) -> StoreFuture<'_, StoreStats>;

    /// Makes every earlier write durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
}
