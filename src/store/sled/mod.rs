//! The sled 0.34 backend: one tree per concern, a schema record checked at open.
//!
//! This file holds the store itself: opening (schema check, lock handling) and the
//! [`Store`] methods. The check transaction (`check`) and the group-commit writer thread
//! (`writer`) live beside it, each with its own tests.

mod check;
mod due;
mod integrity;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sled::transaction::Transactional;

use self::check::{abort, queue_message, tx_error, CheckTrees};
use self::integrity::{count, Delta, Keep, Scratch};
pub use self::integrity::{Counts, Damage};
use self::writer::Writer;
use super::codec::{
    conversation_from_key, conversation_key, decode, encode, trailing_u64, url_key, url_key_with,
    watch_key,
};
use super::{
    AddWatch, Cause, Recipient, ReferenceChange, Snapshot, Store, StoreError, StoreFuture,
    StoreStats, SCHEMA_VERSION,
};
use crate::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, Unreachable, Watch,
};
use crate::domain::{ProductUrl, Rule};
use crate::inbound::activity::{ConversationKey, ConversationReference};
use crate::shown::Shown;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledStoreConfig {
    pub path: PathBuf,
    /// Bytes of page cache (sled counts on-disk size, so RSS stays near this).
    pub cache_capacity: u64,
    /// Background fsync period: the loss window for writes nobody waited on.
    pub flush_every: Duration,
    /// Check a copy of the directory at every open, not only after an unclean stop
    /// (`integrity`).
    pub full_check_at_start: bool,
}

/// How [`SledStore::open`] made sure the directory holds what it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartCheck {
    /// A copy was opened and counted before the real files were.
    CopyCounted,
    /// The store had closed cleanly and no file changed since: the real files were opened
    /// directly and their recorded counts compared with the ones it closed with.
    ClosedCleanly,
    /// A copy of a damaged directory, opened to be read (`open_readable`).
    DamagedCopy,
}

/// What was known of the directory before sled opened it.
#[derive(Debug, Clone, Copy)]
enum Before {
    /// A copy was counted and passed: what it held.
    Counted([u64; 5]),
    /// It closed cleanly with these counts (`integrity::closed`).
    Closed(Counts),
    /// A copy of a damaged directory: nothing is reconciled or checkpointed.
    Damaged,
}

impl Before {
    fn found(self) -> Option<[u64; 5]> {
        match self {
            Before::Counted(found) => Some(found),
            Before::Closed(counts) => Some(counts.trees),
            Before::Damaged => None,
        }
    }

    fn check(self) -> StartCheck {
        match self {
            Before::Counted(_) => StartCheck::CopyCounted,
            Before::Closed(_) => StartCheck::ClosedCleanly,
            Before::Damaged => StartCheck::DamagedCopy,
        }
    }
}

/// Dropped last of the store's fields, once sled's handles are: leaves the clean-close
/// marker when the writer closed cleanly (`integrity::mark_closed`).
struct Closing {
    path: PathBuf,
    /// Set by the writer thread as it ends; `None` for a copy, or after a failed flush.
    counts: writer::ClosedCounts,
}

impl Drop for Closing {
    fn drop(&mut self) {
        let counts = *self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counts) = counts {
            // Without the marker the next start checks a copy, which is slower, not wrong.
            if let Err(error) = integrity::mark_closed_once_released(&self.path, counts) {
                tracing::warn!(
                    %error,
                    path = %self.path.display(),
                    "cannot mark the store as closed cleanly; the next start checks a copy of it"
                );
            }
        }
    }
}

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    /// Flushes and check records for the group-commit thread (see [`Writer`]).
    writer: Writer,
    references: sled::Tree,
    watches: sled::Tree,
    /// Product URL key → `Product`.
    products: sled::Tree,
    /// `next_due_ms ‖ url_key` → nothing: the products by due time (`due`).
    due_products: sled::Tree,
    /// `url_key ‖ watch id` → the watch's conversation key: a product's watches.
    product_watches: sled::Tree,
    /// `url_key ‖ time` → `ChangePoint`.
    history: sled::Tree,
    /// Outbox id (big-endian, queue order) → `OutboxEntry`, for a message that goes out at
    /// once (`due`).
    outbox: sled::Tree,
    /// Outbox id → `OutboxEntry` whose next attempt was put off (a retry, a rate limit).
    outbox_waiting: sled::Tree,
    /// `next_attempt_ms ‖ id` → nothing: `outbox_waiting` by due time.
    outbox_due: sled::Tree,
    /// Alert id → outbox id, so an alert queued twice (a check retried after a crash) is
    /// kept once.
    alert_ids: sled::Tree,
    /// Outbox id → `OutboxEntry` given up on (`dead_ms` set), kept for the operator.
    dead_letters: sled::Tree,
    /// Conversation key → `Unreachable`: the channel refused it; its watches are paused.
    unreachable: sled::Tree,
    /// The schema version and the store's `integrity::Counts`.
    meta: sled::Tree,
    /// Serialises the check-then-insert of `add_watch` (duplicate and limit checks need a
    /// prefix scan, which sled transactions cannot do). A std mutex is enough: it is never
    /// held across an `.await`.
    watch_writes: Arc<Mutex<()>>,
    /// The copy of a damaged directory this store reads (`open_readable`), removed when
    /// the store is dropped (after sled let go of it).
    scratch: Option<Scratch>,
    start_check: StartCheck,
    /// Last: its drop needs every sled handle above gone.
    _closing: Closing,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("damaged_copy", &self.scratch.as_ref().map(Scratch::path))
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store. Blocking: call it at start-up, not on a hot path.
    ///
    /// A store holding less than it recorded is refused with [`StoreError::Damaged`] before
    /// anything of sled's is written (see `integrity`; only the clean-close marker goes).
    ///
    /// After a clean close with no file changed since, the copy is skipped: see `integrity`
    /// and [`StartCheck::ClosedCleanly`].
    pub fn open(config: &SledStoreConfig) -> Result<Self, StoreError> {
        let closed = integrity::closed(&config.path);
        // Removed before sled opens the files (which makes it stale); a store refused below
        // loses it too (`inspect`), and nothing else.
        let remove = || {
            integrity::remove_closed(&config.path).map_err(|e| StoreError::Open {
                path: config.path.clone(),
                source: Arc::new(e),
            })
        };
        if let (integrity::Closed::Valid(counts), false) = (closed, config.full_check_at_start) {
            remove()?;
            return Self::open_at(config, Before::Closed(counts), None);
        }
        let inspection = inspect(&config.path, Keep::Nothing)?;
        if let Some(damage) = inspection.damage {
            return Err(integrity::damaged(&config.path, damage));
        }
        if closed != integrity::Closed::Absent {
            remove()?;
        }
        Self::open_at(config, Before::Counted(inspection.found), None)
    }

    /// How this store's open made sure of its data.
    pub fn start_check(&self) -> StartCheck {
        self.start_check
    }

    /// Checks the store at `path` without writing to it, as [`SledStore::open`] does:
    /// what it holds, or [`StoreError::Damaged`].
    pub fn verify(path: &Path) -> Result<Counts, StoreError> {
        let inspection = inspect(path, Keep::Nothing)?;
        match inspection.damage {
            Some(damage) => Err(integrity::damaged(path, damage)),
            None => Ok(Counts {
                generation: match inspection.recorded {
                    integrity::Recorded::Counts(c) => c.generation,
                    _ => 0,
                },
                trees: inspection.found,
            }),
        }
    }

    /// Opens the store for reading what it holds even when it is damaged: then a copy of
    /// the directory is opened instead (the damage returned beside it), so that the real
    /// files stay as they were. For `pricewatch export`.
    pub fn open_readable(config: &SledStoreConfig) -> Result<(Self, Option<Damage>), StoreError> {
        let mut inspection = inspect(&config.path, Keep::Scratch)?;
        match (inspection.damage.take(), inspection.scratch.take()) {
            (Some(damage), Some(scratch)) => {
                let copy = SledStoreConfig {
                    path: scratch.path().to_owned(),
                    ..config.clone()
                };
                // sled may give up on a damaged copy by panicking; that is one more way of
                // saying it cannot be read.
                let store = std::panic::catch_unwind(|| {
                    Self::open_at(&copy, Before::Damaged, Some(scratch))
                })
                .map_err(|_| integrity::damaged(&config.path, damage.clone()))??;
                Ok((store, Some(damage)))
            }
            (Some(damage), None) => Err(integrity::damaged(&config.path, damage)),
            (None, scratch) => {
                drop(scratch);
                // The real files are opened next, which makes any marker stale.
                integrity::remove_closed(&config.path).map_err(|e| StoreError::Open {
                    path: config.path.clone(),
                    source: Arc::new(e),
                })?;
                Ok((
                    Self::open_at(config, Before::Counted(inspection.found), None)?,
                    None,
                ))
            }
        }
    }

    /// Opens the directory `inspect` passed or that closed cleanly, or a copy of a damaged
    /// one (see [`Before`]).
    fn open_at(
        config: &SledStoreConfig,
        before: Before,
        scratch: Option<Scratch>,
    ) -> Result<Self, StoreError> {
        let found = before.found();
        let path = config.path.clone();
        let open_err = |source: Cause| StoreError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(|e| open_err(Arc::new(e)))?;
        let flush_ms = config.flush_every.as_millis().clamp(1, u64::MAX as u128) as u64;
        let sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(Some(flush_ms));
        // A store just dropped (a restart in this process, or the previous daemon still
        // exiting) keeps sled's file lock until sled's background threads let go, which
        // takes a moment: wait a little before calling the directory busy.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled_config.open() {
                Ok(db) => break db,
                Err(e) if is_locked(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(open_err(Arc::new(OpenFailure::from(e)))),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(Arc::new(e)));
        let meta = tree("meta")?;
        if let Before::Closed(closed) = before {
            // The files are as they were closed, so sled must have found that state.
            if let Some(damage) = integrity::compare_closed(closed, integrity::recorded(&meta)?) {
                return Err(integrity::damaged(&path, damage));
            }
        }
        let references = tree("references")?;
        let watches = tree("watches")?;
        let products = tree("products")?;
        let due_products = tree("due_products")?;
        let product_watches = tree("product_watches")?;
        let history = tree("history")?;
        let outbox = tree("outbox")?;
        let outbox_waiting = tree(integrity::OUTBOX_WAITING)?;
        let outbox_due = tree("outbox_due")?;
        let alert_ids = tree("alert_ids")?;
        let dead_letters = tree("dead_letters")?;
        let unreachable = tree("unreachable")?;
        let older = check_schema(&path, &meta)?;
        let indexes = due::Trees {
            products: &products,
            due_products: &due_products,
            outbox: due::Outbox {
                ready: &outbox,
                waiting: &outbox_waiting,
                due: &outbox_due,
            },
            meta: &meta,
        };
        if older.is_some() || !indexes.consistent()? {
            let current = SCHEMA_VERSION.to_be_bytes();
            let rebuilt = indexes.rebuild(&[(SCHEMA_KEY, current.to_vec())])?;
            tracing::info!(
                path = %path.display(),
                from_schema = older,
                products = rebuilt.products,
                waiting_messages = rebuilt.waiting,
                moved = rebuilt.moved,
                "the store's due-time indexes were built"
            );
        }
        if let Some(found) = found {
            integrity::reconcile(&meta, found)?;
        }
        db.flush().map_err(|e| open_err(Arc::new(e)))?;
        // Written after the flush that made these counts durable (see `integrity`).
        let checkpointed = match (found, integrity::durable_counts(&meta)) {
            (Some(_), Some(counts)) => {
                integrity::write_checkpoint(&path, counts).map_err(|e| open_err(Arc::new(e)))?;
                Some(counts.generation)
            }
            _ => None,
        };
        let watch_writes = Arc::new(Mutex::new(()));
        let checks = CheckTrees {
            products: products.clone(),
            due_products: due_products.clone(),
            history: history.clone(),
            watches: watches.clone(),
            outbox: outbox.clone(),
            alert_ids: alert_ids.clone(),
            meta: meta.clone(),
            watch_writes: Arc::clone(&watch_writes),
        };
        let checkpoint = found.map(|_| (path.clone(), checkpointed));
        let closing = Closing {
            path: path.clone(),
            counts: Arc::default(),
        };
        let writer = Writer::start(db.clone(), checks, checkpoint, Arc::clone(&closing.counts))
            .map_err(|e| open_err(Arc::new(e)))?;
        tracing::info!(
            path = %path.display(),
            check = ?before.check(),
            "store opened"
        );
        Ok(SledStore {
            path,
            writer,
            db,
            references,
            watches,
            products,
            due_products,
            product_watches,
            history,
            outbox,
            outbox_waiting,
            outbox_due,
            alert_ids,
            dead_letters,
            unreachable,
            meta,
            watch_writes,
            scratch,
            start_check: before.check(),
            _closing: closing,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn upsert_reference_sync(
        &self,
        reference: &ConversationReference,
    ) -> Result<ReferenceChange, StoreError> {
        let key = conversation_key(&reference.key());
        let new = encode(reference)?;
        let old = self.references.get(&key).map_err(io)?;
        let change = match old {
            Some(ref bytes) if bytes.as_ref() == new.as_slice() => {
                return Ok(ReferenceChange::Unchanged)
            }
            None => ReferenceChange::New,
            Some(bytes) => match decode::<ConversationReference>("reference", &bytes) {
                Ok(prev) if prev.service_url == reference.service_url => ReferenceChange::Updated,
                // A record we cannot read is replaced and made durable, like a new one.
                _ => ReferenceChange::ServiceUrlChanged,
            },
        };
        if change == ReferenceChange::New {
            (&self.references, &self.meta)
                .transaction(|(r, m)| {
                    if r.insert(key.as_slice(), new.as_slice())?.is_none() {
                        count(m, Delta::one(Delta::REFERENCES, 1))?;
                    }
                    Ok(())
                })
                .map_err(tx_error)?;
        } else {
            self.references.insert(key, new).map_err(io)?;
        }
        Ok(change)
    }

    /// Sets `paused` on every watch of the conversation, and records (or clears) the mark,
    /// in one transaction. Returns how many watches changed.
    fn set_reachability(
        &self,
        key: &ConversationKey,
        mark: Option<&Unreachable>,
    ) -> Result<usize, StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let paused = mark.is_some();
        let changed = self
            .conversation_watches(key)?
            .into_iter()
            .filter(|w| w.paused != paused)
            .map(|mut w| {
                w.paused = paused;
                Ok((watch_key(key, w.id), encode(&w)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ckey = conversation_key(key);
        let mark = mark.map(encode).transpose()?;
        (&self.watches, &self.unreachable)
            .transaction(|(w, u)| {
                for (k, v) in &changed {
                    w.insert(k.clone(), v.clone())?;
                }
                match &mark {
                    Some(m) => u.insert(ckey.clone(), m.clone())?,
                    None => u.remove(ckey.clone())?,
                };
                Ok(())
            })
            .map_err(tx_error)?;
        Ok(changed.len())
    }

    /// Puts a dead letter back in the outbox's ready part, due at `now_ms`.
    fn requeue(&self, id: u64, now_ms: u64) -> Result<bool, StoreError> {
        let key = id.to_be_bytes();
        let Some(bytes) = self.dead_letters.get(key).map_err(io)? else {
            return Ok(false);
        };
        let mut entry: OutboxEntry = decode("dead letter", &bytes)?;
        entry.attempts = 0;
        entry.next_attempt_ms = now_ms;
        entry.dead_ms = None;
        let value = encode(&entry)?;
        (
            &self.dead_letters,
            &self.outbox,
            &self.alert_ids,
            &self.meta,
        )
            .transaction(|(d, o, a, m)| {
                let mut delta = Delta::default();
                if d.remove(&key)?.is_some() {
                    delta.add(Delta::DEAD_LETTERS, -1);
                }
                if o.insert(&key, value.clone())?.is_none() {
                    delta.add(Delta::OUTBOX, 1);
                }
                count(m, delta)?;
                // A requeued message blocks its alert id again.
                a.insert(entry.alert_id.as_bytes(), &key)?;
                Ok(())
            })
            .map_err(tx_error)?;
        Ok(true)
    }

    fn conversation_watches(&self, key: &ConversationKey) -> Result<Vec<Watch>, StoreError> {
        self.watches
            .scan_prefix(conversation_key(key))
            .values()
            .map(|v| v.map_err(io).and_then(|b| decode::<Watch>("watch", &b)))
            .collect()
    }

    fn add_watch_sync(&self, new: NewWatch, max: usize) -> Result<AddWatch, StoreError> {
        // Poisoning only means another thread panicked mid-insert; sled itself stays
        // consistent, so carry on with the guard.
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let existing = self.conversation_watches(&new.conversation)?;
        if let Some(w) = existing.iter().find(|w| w.url == new.url) {
            return Ok(AddWatch::Duplicate(w.clone()));
        }
        if existing.len() >= max {
            return Ok(AddWatch::LimitReached { max });
        }
        let id = self.db.generate_id().map_err(io)?;
        let watch = new.into_watch(id);
        let url = watch.url.as_str();
        let product = Product::new(watch.url.clone(), watch.created_at_ms);
        let due_key = due::product_key(product.next_due_ms, url);
        // One transaction: a crash never leaves a watch whose product is not scheduled.
        (
            &self.watches,
            &self.products,
            &self.due_products,
            &self.product_watches,
            &self.meta,
        )
            .transaction(|(w, p, dp, pw, m)| {
                let mut delta = Delta::default();
                if w.insert(
                    watch_key(&watch.conversation, id),
                    encode(&watch).map_err(abort)?,
                )?
                .is_none()
                {
                    delta.add(Delta::WATCHES, 1);
                }
                if p.get(url_key(url))?.is_none() {
                    p.insert(url_key(url), encode(&product).map_err(abort)?)?;
                    dp.insert(due_key.as_slice(), &[])?;
                    delta.add(Delta::PRODUCTS, 1);
                }
                count(m, delta)?;
                pw.insert(
                    url_key_with(url, id),
                    encode(&watch.conversation).map_err(abort)?,
                )?;
                Ok(())
            })
            .map_err(tx_error)?;
        Ok(AddWatch::Added(watch))
    }

    fn remove_watches_sync(
        &self,
        key: &ConversationKey,
        ids: &[u64],
    ) -> Result<Vec<Watch>, StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut removed = Vec::new();
        for &id in ids {
            let Some(bytes) = self.watches.get(watch_key(key, id)).map_err(io)? else {
                continue;
            };
            let watch = decode::<Watch>("watch", &bytes)?;
            let url = watch.url.as_str();
            (&self.watches, &self.product_watches, &self.meta)
                .transaction(|(w, pw, m)| {
                    if w.remove(watch_key(key, id))?.is_some() {
                        count(m, Delta::one(Delta::WATCHES, -1))?;
                    }
                    pw.remove(url_key_with(url, id))?;
                    Ok(())
                })
                .map_err(tx_error)?;
            // The last watch of a product takes the product and its history with it. (A crash
            // right here leaves a product without watches; the watch loop drops such a
            // product when it next comes due.)
            if self
                .product_watches
                .scan_prefix(url_key(url))
                .next()
                .is_none()
            {
                (&self.products, &self.due_products, &self.meta)
                    .transaction(|(p, dp, m)| {
                        if let Some(old) = p.remove(url_key(url))? {
                            let at = due::product_due(&old).map_err(abort)?;
                            dp.remove(due::product_key(at, url))?;
                            count(m, Delta::one(Delta::PRODUCTS, -1))?;
                        }
                        Ok(())
                    })
                    .map_err(tx_error)?;
                for k in self.history.scan_prefix(url_key(url)).keys() {
                    self.history.remove(k.map_err(io)?).map_err(io)?;
                }
            }
            removed.push(watch);
        }
        Ok(removed)
    }

    /// Rewrites watches of the conversation in one transaction, under the watch lock so a
    /// check batch never interleaves; `change` returns `None` to leave a watch as it is.
    /// Returns `(before, after)` for every watch found, after equal to before when unchanged.
    fn rewrite_watches(
        &self,
        key: &ConversationKey,
        ids: &[u64],
        change: impl Fn(&Watch) -> Option<Watch>,
    ) -> Result<Vec<(Watch, Watch)>, StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = Vec::with_capacity(ids.len());
        let mut writes = Vec::new();
        for &id in ids {
            let Some(bytes) = self.watches.get(watch_key(key, id)).map_err(io)? else {
                continue;
            };
            let before = decode::<Watch>("watch", &bytes)?;
            let after = match change(&before) {
                Some(after) if after != before => {
                    writes.push((watch_key(key, id), encode(&after)?));
                    after
                }
                _ => before.clone(),
            };
            found.push((before, after));
        }
        if !writes.is_empty() {
            self.watches
                .transaction(|w| {
                    for (k, v) in &writes {
                        w.insert(k.clone(), v.clone())?;
                    }
                    Ok(())
                })
                .map_err(tx_error)?;
        }
        Ok(found)
    }

    fn queue(&self) -> due::Outbox<'_> {
        due::Outbox {
            ready: &self.outbox,
            waiting: &self.outbox_waiting,
            due: &self.outbox_due,
        }
    }

    fn outbox_entry(&self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.queue().get(id)
    }

    /// Removes delivered messages: those in the ready part all in one three-tree
    /// transaction (delivery's fast path: one transaction, and one rewrite of the counts,
    /// per batch rather than per message), any others from the waiting part with their
    /// index keys.
    fn remove_delivered_sync(&self, ids: &[u64]) -> Result<(), StoreError> {
        let keys: Vec<[u8; 8]> = ids.iter().map(|id| id.to_be_bytes()).collect();
        let missed = (&self.outbox, &self.alert_ids, &self.meta)
            .transaction(|(o, a, m)| {
                let mut missed = Vec::new();
                let mut removed = 0;
                for key in &keys {
                    match o.remove(key)? {
                        Some(old) => {
                            a.remove(due::alert_id(&old).map_err(abort)?.as_bytes())?;
                            removed += 1;
                        }
                        None => missed.push(*key),
                    }
                }
                count(m, Delta::one(Delta::OUTBOX, -removed))?;
                Ok(missed)
            })
            .map_err(tx_error)?;
        for key in missed {
            if self.outbox_waiting.contains_key(key).map_err(io)? {
                self.remove_waiting(key)?;
            }
        }
        Ok(())
    }

    fn remove_waiting(&self, key: [u8; 8]) -> Result<(), StoreError> {
        (
            &self.outbox_waiting,
            &self.outbox_due,
            &self.alert_ids,
            &self.meta,
        )
            .transaction(|(w, d, a, m)| {
                let Some(old) = w.remove(&key)? else {
                    return Ok(());
                };
                let old: OutboxEntry = decode("outbox entry", &old).map_err(abort)?;
                d.remove(&due::message_key(
                    old.next_attempt_ms,
                    u64::from_be_bytes(key),
                ))?;
                a.remove(old.alert_id.as_bytes())?;
                count(m, Delta::one(Delta::OUTBOX, -1))?;
                Ok(())
            })
            .map_err(tx_error)
    }

    fn recipient(&self, key: &ConversationKey, watches: bool) -> Result<Recipient, StoreError> {
        let stored = conversation_key(key);
        Ok(Recipient {
            reference: match self.references.get(&stored).map_err(io)? {
                Some(bytes) => Some(decode("reference", &bytes)?),
                None => None,
            },
            unreachable: match self.unreachable.get(&stored).map_err(io)? {
                Some(bytes) => Some(decode("unreachable mark", &bytes)?),
                None => None,
            },
            watches: if watches {
                self.conversation_watches(key)?
            } else {
                Vec::new()
            },
        })
    }

    /// Moves a queued message (from either part) to the dead letters.
    fn bury(&self, id: u64, error: &str, now_ms: u64) -> Result<bool, StoreError> {
        (
            &self.outbox,
            &self.outbox_waiting,
            &self.outbox_due,
            &self.dead_letters,
            &self.alert_ids,
            &self.meta,
        )
            .transaction(|(ready, waiting, due, d, a, m)| {
                let queue = due::TxOutbox {
                    ready,
                    waiting,
                    due,
                };
                let Some(mut entry) = queue.get(id)? else {
                    return Ok(false);
                };
                queue.remove(&entry)?;
                entry.attempts = entry.attempts.saturating_add(1);
                entry.last_error = Some(error.to_owned());
                entry.dead_ms = Some(now_ms);
                let mut delta = Delta::one(Delta::OUTBOX, -1);
                if d.insert(&id.to_be_bytes(), encode(&entry).map_err(abort)?)?
                    .is_none()
                {
                    delta.add(Delta::DEAD_LETTERS, 1);
                }
                count(m, delta)?;
                // A dead letter no longer blocks its alert id.
                a.remove(entry.alert_id.as_bytes())?;
                Ok(true)
            })
            .map_err(tx_error)
    }

    fn prune_history_sync(&self, before_ms: u64) -> Result<usize, StoreError> {
        // The latest point of each product is kept whatever its age: it is the current price.
        let mut removed = 0;
        let mut previous: Option<(Vec<u8>, u64)> = None;
        for key in self.history.iter().keys() {
            let key = key.map_err(io)?;
            let at = trailing_u64(&key).unwrap_or(u64::MAX);
            if let Some((prev, prev_at)) = previous.take() {
                let same_product =
                    prev.len() == key.len() && prev[..prev.len() - 8] == key[..key.len() - 8];
                if same_product && prev_at < before_ms {
                    self.history.remove(&prev).map_err(io)?;
                    removed += 1;
                }
            }
            previous = Some((key.to_vec(), at));
        }
        Ok(removed)
    }

    async fn flush_now(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }
}

impl Store for SledStore {
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange> {
        Box::pin(async move {
            let change = self.upsert_reference_sync(reference)?;
            // The conversation wrote again: the channel takes messages once more, so its
            // paused watches resume.
            let key = reference.key();
            let resumed = self
                .unreachable
                .contains_key(conversation_key(&key))
                .map_err(io)?;
            if resumed {
                let watches = self.set_reachability(&key, None)?;
                tracing::info!(
                    channel = %Shown::id(&key.channel_id),
                    conversation = %Shown::id(&key.conversation_id),
                    watches,
                    "conversation reachable again; its watches resume"
                );
            }
            // Only a reference proactive messages would miss needs the fsync before the turn
            // is acknowledged; a changed display name can ride on the background flush.
            if resumed
                || matches!(
                    change,
                    ReferenceChange::New | ReferenceChange::ServiceUrlChanged
                )
            {
                self.flush_now().await?;
            }
            Ok(change)
        })
    }

    fn reference<'a>(
        &'a self,
        key: &'a ConversationKey,
    ) -> StoreFuture<'a, Option<ConversationReference>> {
        Box::pin(async move {
            match self.references.get(conversation_key(key)).map_err(io)? {
                Some(bytes) => decode("reference", &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    fn add_watch(&self, watch: NewWatch, max: usize) -> StoreFuture<'_, AddWatch> {
        Box::pin(async move {
            let result = self.add_watch_sync(watch, max)?;
            // A duplicate too: the watch it names may be one a concurrent turn has just
            // written and is still waiting to flush (a channel redelivering a slow turn),
            // and "you already watch this" acknowledges it as much as "stored" does.
            if matches!(result, AddWatch::Added(_) | AddWatch::Duplicate(_)) {
                self.flush_now().await?;
            }
            Ok(result)
        })
    }

    fn watches<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move { self.conversation_watches(key) })
    }

    fn remove_watches<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move {
            let removed = self.remove_watches_sync(key, ids)?;
            if !removed.is_empty() {
                self.flush_now().await?;
            }
            Ok(removed)
        })
    }

    fn change_rule<'a>(
        &'a self,
        key: &'a ConversationKey,
        id: u64,
        rule: Rule,
    ) -> StoreFuture<'a, Option<(Watch, Watch)>> {
        Box::pin(async move {
            let found = self.rewrite_watches(key, &[id], |w| w.with_rule(&rule))?;
            // Flushed even when nothing changed: the reply acknowledges the rule either way.
            self.flush_now().await?;
            Ok(found.into_iter().next())
        })
    }

    fn set_on_hold<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
        on_hold: bool,
    ) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move {
            let found = self.rewrite_watches(key, ids, |w| {
                Some(Watch {
                    on_hold,
                    ..w.clone()
                })
            })?;
            self.flush_now().await?;
            Ok(found.into_iter().map(|(_, after)| after).collect())
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            // The counts every write keeps (`integrity`) are one read, where sled's `len`
            // walks a tree: 4–5 s for a million watches, on every `/readyz`, `/metrics` and
            // watchdog status. A damaged copy's counts say what it should hold: walked.
            let [references, watches, products, outbox, dead_letters] =
                match (&self.scratch, integrity::durable_counts(&self.meta)) {
                    (None, Some(counts)) => counts.trees.map(|n| n as usize),
                    _ => [
                        self.references.len(),
                        self.watches.len(),
                        self.products.len(),
                        self.queue().len(),
                        self.dead_letters.len(),
                    ],
                };
            Ok(StoreStats {
                references,
                watches,
                products,
                outbox,
                dead_letters,
                // Ids grow with time, so the first entry is the oldest; a requeued dead
                // letter keeps its id and its creation time, and so is first too.
                oldest_queued_ms: self.queue().first()?.map(|e| e.created_ms),
            })
        })
    }

    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>> {
        Box::pin(async move {
            // The index, in due order: a pass reads what is due, not every product.
            let mut due = Vec::new();
            for key in due::due_keys(&self.due_products, now_ms).keys() {
                if due.len() >= limit {
                    break;
                }
                let key = key.map_err(io)?;
                let Some((at, url)) = due::split_key(&key) else {
                    continue;
                };
                let Some(bytes) = self.products.get(url).map_err(io)? else {
                    continue;
                };
                let product: Product = decode("product", &bytes)?;
                // The index and the record change in one transaction; a key that says
                // otherwise is not the product's.
                if product.next_due_ms == at {
                    due.push(product);
                }
            }
            Ok(due)
        })
    }

    fn product<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<Product>> {
        Box::pin(async move {
            match self.products.get(url_key(url.as_str())).map_err(io)? {
                Some(bytes) => decode("product", &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    fn product_watches<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for item in self.product_watches.scan_prefix(url_key(url.as_str())) {
                let (k, v) = item.map_err(io)?;
                let conversation: ConversationKey = decode("product index", &v)?;
                let Some(id) = trailing_u64(&k) else { continue };
                if let Some(bytes) = self.watches.get(watch_key(&conversation, id)).map_err(io)? {
                    out.push(decode("watch", &bytes)?);
                }
            }
            Ok(out)
        })
    }

    fn record_check(&self, check: CheckRecord) -> StoreFuture<'_, Vec<OutboxEntry>> {
        // The writer thread applies it and flushes before answering: durable before anyone
        // is told, so the delivery task only sees flushed entries.
        Box::pin(self.writer.record(check))
    }

    fn history<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<ChangePoint>> {
        Box::pin(async move {
            self.history
                .scan_prefix(url_key(url.as_str()))
                .values()
                .map(|v| v.map_err(io).and_then(|b| decode("history point", &b)))
                .collect()
        })
    }

    fn latest_point<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<ChangePoint>> {
        Box::pin(async move {
            match self.history.scan_prefix(url_key(url.as_str())).next_back() {
                Some(item) => decode("history point", &item.map_err(io)?.1).map(Some),
                None => Ok(None),
            }
        })
    }

    fn prune_history(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move { self.prune_history_sync(before_ms) })
    }

    fn due_messages(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move { self.queue().due(now_ms, limit) })
    }

    fn remove_delivered(&self, ids: Vec<u64>) -> StoreFuture<'_, ()> {
        // Not flushed here: losing the removal to a crash resends the message, the one
        // duplicate at-least-once delivery allows; sled's background flush
        // (`storage.flush_every`) makes it durable soon, and a flush per message would
        // cap delivery at the disk's fsync rate.
        Box::pin(async move { self.remove_delivered_sync(&ids) })
    }

    fn schedule_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Losing this on a crash only means an earlier retry: no flush needed.
            self.queue().change(id, |e| {
                Some(OutboxEntry {
                    attempts: e.attempts.saturating_add(1),
                    next_attempt_ms,
                    last_error: Some(error.clone()),
                    ..e.clone()
                })
            })?;
            Ok(())
        })
    }

    fn queue_messages(
        &self,
        messages: Vec<NewOutbox>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            // Looked up here, in the same blocking call, rather than by the caller: a
            // store call per conversation is a trip to the blocking pool each, 10,000 of
            // them before a notify's 202 (BENCHMARKS.md, notify fan-out).
            let mut reachable = Vec::with_capacity(messages.len());
            for m in messages {
                if !self
                    .unreachable
                    .contains_key(conversation_key(&m.conversation))
                    .map_err(io)?
                {
                    reachable.push(m);
                }
            }
            let messages = reachable;
            let entries = (&self.outbox, &self.alert_ids, &self.meta)
                .transaction(|(o, a, meta)| {
                    let mut queued = Vec::with_capacity(messages.len());
                    for m in &messages {
                        queued.extend(queue_message(o, a, m, now_ms)?);
                    }
                    count(meta, Delta::one(Delta::OUTBOX, queued.len() as i64))?;
                    Ok(queued)
                })
                .map_err(tx_error)?;
            // Answered 202 only once it cannot be lost.
            self.flush_now().await?;
            Ok(entries)
        })
    }

    fn conversations(&self) -> StoreFuture<'_, Vec<ConversationKey>> {
        Box::pin(async move {
            // Read from the keys, which hold it: a fan-out asks for every conversation
            // before its 202, and need not decode every reference for that.
            self.references
                .iter()
                .map(|item| {
                    let (k, v) = item.map_err(io)?;
                    match conversation_from_key(&k) {
                        Some(key) => Ok(key),
                        None => decode::<ConversationReference>("reference", &v).map(|r| r.key()),
                    }
                })
                .collect()
        })
    }

    fn queued_message(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>> {
        Box::pin(async move { self.outbox_entry(id) })
    }

    fn defer_messages(&self, ids: Vec<u64>, next_attempt_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            for id in ids {
                self.queue().change(id, |e| {
                    (e.next_attempt_ms < next_attempt_ms).then(|| OutboxEntry {
                        next_attempt_ms,
                        ..e.clone()
                    })
                })?;
            }
            Ok(())
        })
    }

    fn move_to_dead_letters(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let moved = self.bury(id, &error, now_ms)?;
            // Dead letters are what the operator is shown; do not lose one to a crash.
            self.flush_now().await?;
            Ok(moved)
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            self.dead_letters
                .iter()
                .values()
                .take(limit)
                .map(|v| v.map_err(io).and_then(|b| decode("dead letter", &b)))
                .collect()
        })
    }

    fn queued_messages(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move { self.queue().queued(limit) })
    }

    fn requeue_dead_letter(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let moved = self.requeue(id, now_ms)?;
            self.flush_now().await?;
            Ok(moved)
        })
    }

    fn mark_unreachable<'a>(
        &'a self,
        key: &'a ConversationKey,
        mark: Unreachable,
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let paused = self.set_reachability(key, Some(&mark))?;
            self.flush_now().await?;
            Ok(paused)
        })
    }

    fn unreachable<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Option<Unreachable>> {
        Box::pin(async move {
            match self.unreachable.get(conversation_key(key)).map_err(io)? {
                Some(bytes) => decode("unreachable mark", &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    fn recipients(&self, wanted: Vec<(ConversationKey, bool)>) -> StoreFuture<'_, Vec<Recipient>> {
        Box::pin(async move {
            wanted
                .iter()
                .map(|(key, watches)| self.recipient(key, *watches))
                .collect()
        })
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(async move { self.snapshot_sync() })
    }

    fn restore_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.restore_sync(snapshot)?;
            self.flush_now().await
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.flush_now())
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(Arc::new(e))
}

/// How long `open` waits for a lock another store is releasing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock"))
}

/// Why sled could not open the directory, in an operator's words: sled reports a held
/// lock as an opaque I/O error.
#[derive(Debug, thiserror::Error)]
enum OpenFailure {
    #[error("it is locked by another process (is another pricewatch running on it?)")]
    Locked,
    #[error("permission denied ({0})")]
    PermissionDenied(std::io::Error),
    #[error("the data is corrupt ({0}); move the directory aside and restore a backup")]
    Corrupt(sled::Error),
    #[error(transparent)]
    Other(sled::Error),
}

impl From<sled::Error> for OpenFailure {
    fn from(e: sled::Error) -> Self {
        if is_locked(&e) {
            return OpenFailure::Locked;
        }
        match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                OpenFailure::PermissionDenied(io)
            }
            e @ sled::Error::Corruption { .. } => OpenFailure::Corrupt(e),
            other => OpenFailure::Other(other),
        }
    }
}

/// `integrity::inspect`, its failures (a held lock, a copy that cannot be made) reported as
/// failures to open.
///
/// A store found damaged loses its clean-close marker (the one change made to it): the
/// damage may be in pages the recorded counts do not show, and a later `serve` must not
/// take the marker's word for it and skip the check that found it.
fn inspect(path: &Path, keep: Keep) -> Result<integrity::Inspection, StoreError> {
    let inspection = integrity::inspect(path, keep).map_err(|e| StoreError::Open {
        path: path.to_owned(),
        source: Arc::new(e),
    })?;
    if inspection.damage.is_some() {
        if let Err(error) = integrity::remove_closed(path) {
            tracing::warn!(
                error = %crate::error::Chain(&error),
                path = %path.display(),
                "cannot remove the damaged store's clean-close marker"
            );
        }
    }
    Ok(inspection)
}

/// Refuses a store of a newer or unknown schema; returns the version of an older one (to
/// be migrated), `None` for a current or new one.
fn check_schema(path: &Path, meta: &sled::Tree) -> Result<Option<u32>, StoreError> {
    let current = SCHEMA_VERSION.to_be_bytes();
    match meta.get(SCHEMA_KEY).map_err(io)? {
        None => {
            meta.insert(SCHEMA_KEY, &current).map_err(io)?;
            Ok(None)
        }
        Some(v) if v.as_ref() == current => Ok(None),
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            if (1..SCHEMA_VERSION).contains(&found) {
                return Ok(Some(found));
            }
            Err(StoreError::Schema {
                path: path.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            })
        }
    }
}

#[cfg(test)]
mod tests;
