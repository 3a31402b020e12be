//! The sled 0.34 backend: one tree per concern, a schema record checked at open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::codec::{
    conversation_key, decode, encode, trailing_u64, url_key, url_key_with, watch_key,
};
use super::{
    AddWatch, ReferenceChange, Store, StoreError, StoreFuture, StoreStats, SCHEMA_VERSION,
};
use crate::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, Unreachable, Watch,
};
use crate::inbound::activity::{ConversationKey, ConversationReference};
use crate::inbound::command::ProductUrl;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledStoreConfig {
    pub path: PathBuf,
    /// Bytes of page cache (sled counts on-disk size, so RSS stays near this).
    pub cache_capacity: u64,
    /// Background fsync period: the loss window for writes nobody waited on.
    pub flush_every: Duration,
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
    /// `url_key ‖ watch id` → the watch's conversation key: a product's watches.
    product_watches: sled::Tree,
    /// `url_key ‖ time` → `ChangePoint`.
    history: sled::Tree,
    /// Outbox id (big-endian, queue order) → `OutboxEntry`.
    outbox: sled::Tree,
    /// Alert id → outbox id, so an alert queued twice (a check retried after a crash) is
    /// kept once.
    alert_ids: sled::Tree,
    /// Outbox id → `OutboxEntry` given up on (`dead_ms` set), kept for the operator.
    dead_letters: sled::Tree,
    /// Conversation key → `Unreachable`: the channel refused it; its watches are paused.
    unreachable: sled::Tree,
    /// Serialises the check-then-insert of `add_watch` (duplicate and limit checks need a
    /// prefix scan, which sled transactions cannot do). A std mutex is enough: it is never
    /// held across an `.await`.
    watch_writes: Arc<Mutex<()>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store. Blocking: call it at start-up, not on a hot path.
    pub fn open(config: &SledStoreConfig) -> Result<Self, StoreError> {
        let path = config.path.clone();
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(&path).map_err(|e| open_err(e.to_string()))?;
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
                Err(e) => return Err(open_err(describe_open_error(&e))),
            }
        };
        let meta = db.open_tree("meta").map_err(|e| open_err(e.to_string()))?;
        let references = db
            .open_tree("references")
            .map_err(|e| open_err(e.to_string()))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(e.to_string()));
        let watches = tree("watches")?;
        let products = tree("products")?;
        let product_watches = tree("product_watches")?;
        let history = tree("history")?;
        let outbox = tree("outbox")?;
        let alert_ids = tree("alert_ids")?;
        let dead_letters = tree("dead_letters")?;
        let unreachable = tree("unreachable")?;
        check_schema(&path, &meta)?;
        db.flush().map_err(|e| open_err(e.to_string()))?;
        let watch_writes = Arc::new(Mutex::new(()));
        let checks = CheckTrees {
            products: products.clone(),
            history: history.clone(),
            watches: watches.clone(),
            outbox: outbox.clone(),
            alert_ids: alert_ids.clone(),
            watch_writes: Arc::clone(&watch_writes),
        };
        let writer = Writer::start(db.clone(), checks).map_err(|e| open_err(e.to_string()))?;
        Ok(SledStore {
            path,
            writer,
            db,
            references,
            watches,
            products,
            product_watches,
            history,
            outbox,
            alert_ids,
            dead_letters,
            unreachable,
            watch_writes,
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
        self.references.insert(key, new).map_err(io)?;
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

    fn move_entry(
        &self,
        from: &sled::Tree,
        to: &sled::Tree,
        id: u64,
        change: impl Fn(&mut OutboxEntry),
    ) -> Result<bool, StoreError> {
        let key = id.to_be_bytes();
        let Some(bytes) = from.get(key).map_err(io)? else {
            return Ok(false);
        };
        let mut entry: OutboxEntry = decode("outbox entry", &bytes)?;
        change(&mut entry);
        let value = encode(&entry)?;
        (from, to, &self.alert_ids)
            .transaction(|(f, t, a)| {
                f.remove(&key)?;
                t.insert(&key, value.clone())?;
                // A dead letter no longer blocks its alert id; a requeued one does again.
                if entry.dead_ms.is_some() {
                    a.remove(entry.alert_id.as_bytes())?;
                } else {
                    a.insert(entry.alert_id.as_bytes(), &key)?;
                }
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
        let watch = Watch {
            id,
            conversation: new.conversation,
            user: new.user,
            url: new.url,
            rule: new.rule,
            created_at_ms: new.created_at_ms,
            trigger: Default::default(),
            paused: false,
        };
        let url = watch.url.as_str();
        let product = Product::new(watch.url.clone(), watch.created_at_ms);
        // One transaction: a crash never leaves a watch whose product is not scheduled.
        (&self.watches, &self.products, &self.product_watches)
            .transaction(|(w, p, pw)| {
                w.insert(
                    watch_key(&watch.conversation, id),
                    encode(&watch).map_err(abort)?,
                )?;
                if p.get(url_key(url))?.is_none() {
                    p.insert(url_key(url), encode(&product).map_err(abort)?)?;
                }
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
            (&self.watches, &self.product_watches)
                .transaction(|(w, pw)| {
                    w.remove(watch_key(key, id))?;
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
                self.products.remove(url_key(url)).map_err(io)?;
                for k in self.history.scan_prefix(url_key(url)).keys() {
                    self.history.remove(k.map_err(io)?).map_err(io)?;
                }
            }
            removed.push(watch);
        }
        Ok(removed)
    }

    fn outbox_entry(&self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        match self.outbox.get(id.to_be_bytes()).map_err(io)? {
            Some(bytes) => decode("outbox entry", &bytes).map(Some),
            None => Ok(None),
        }
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
            // paused watches resume (design.md §3).
            let key = reference.key();
            let resumed = self
                .unreachable
                .contains_key(conversation_key(&key))
                .map_err(io)?;
            if resumed {
                let watches = self.set_reachability(&key, None)?;
                tracing::info!(
                    channel = %key.channel_id,
                    conversation = %key.conversation_id,
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
            if matches!(result, AddWatch::Added(_)) {
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

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            Ok(StoreStats {
                references: self.references.len(),
                watches: self.watches.len(),
                products: self.products.len(),
                outbox: self.outbox.len(),
                dead_letters: self.dead_letters.len(),
            })
        })
    }

    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>> {
        Box::pin(async move {
            let mut due = Vec::new();
            for value in self.products.iter().values() {
                let product: Product = decode("product", &value.map_err(io)?)?;
                if product.next_due_ms <= now_ms {
                    due.push(product);
                }
            }
            due.sort_by_key(|p| p.next_due_ms);
            due.truncate(limit);
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

    fn outbox_ready(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let mut ready = Vec::new();
            for value in self.outbox.iter().values() {
                let entry: OutboxEntry = decode("outbox entry", &value.map_err(io)?)?;
                if entry.next_attempt_ms <= now_ms {
                    ready.push(entry);
                    if ready.len() >= limit {
                        break;
                    }
                }
            }
            Ok(ready)
        })
    }

    fn outbox_delivered(&self, id: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(entry) = self.outbox_entry(id)? {
                self.alert_ids
                    .remove(entry.alert_id.as_bytes())
                    .map_err(io)?;
            }
            // Not flushed here: losing the removal to a crash resends the message, the one
            // duplicate at-least-once delivery allows; sled's background flush
            // (`storage.flush_every`) makes it durable soon, and a flush per message would
            // cap delivery at the disk's fsync rate.
            self.outbox.remove(id.to_be_bytes()).map_err(io)?;
            Ok(())
        })
    }

    fn outbox_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(mut entry) = self.outbox_entry(id)? {
                entry.attempts = entry.attempts.saturating_add(1);
                entry.next_attempt_ms = next_attempt_ms;
                entry.last_error = Some(error);
                // Losing this on a crash only means an earlier retry: no flush needed.
                self.outbox
                    .insert(id.to_be_bytes(), encode(&entry)?)
                    .map_err(io)?;
            }
            Ok(())
        })
    }

    fn enqueue(&self, messages: Vec<NewOutbox>, now_ms: u64) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let entries = (&self.outbox, &self.alert_ids)
                .transaction(|(o, a)| {
                    let mut queued = Vec::with_capacity(messages.len());
                    for m in &messages {
                        queued.extend(queue_message(o, a, m, now_ms)?);
                    }
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
            self.references
                .iter()
                .values()
                .map(|v| {
                    v.map_err(io)
                        .and_then(|b| decode::<ConversationReference>("reference", &b))
                        .map(|r| r.key())
                })
                .collect()
        })
    }

    fn outbox_get(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>> {
        Box::pin(async move { self.outbox_entry(id) })
    }

    fn outbox_defer(&self, id: u64, next_attempt_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(mut entry) = self.outbox_entry(id)? {
                if entry.next_attempt_ms < next_attempt_ms {
                    entry.next_attempt_ms = next_attempt_ms;
                    self.outbox
                        .insert(id.to_be_bytes(), encode(&entry)?)
                        .map_err(io)?;
                }
            }
            Ok(())
        })
    }

    fn outbox_dead(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let moved = self.move_entry(&self.outbox, &self.dead_letters, id, |e| {
                e.attempts = e.attempts.saturating_add(1);
                e.last_error = Some(error.clone());
                e.dead_ms = Some(now_ms);
            })?;
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

    fn outbox_pending(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            self.outbox
                .iter()
                .values()
                .take(limit)
                .map(|v| v.map_err(io).and_then(|b| decode("outbox entry", &b)))
                .collect()
        })
    }

    fn outbox_requeue(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let moved = self.move_entry(&self.dead_letters, &self.outbox, id, |e| {
                e.attempts = 0;
                e.next_attempt_ms = now_ms;
                e.dead_ms = None;
            })?;
            self.flush_now().await?;
            Ok(moved)
        })
    }

    fn conversation_unreachable<'a>(
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

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.flush_now())
    }
}

/// The trees a check writes, owned by the writer thread.
struct CheckTrees {
    products: sled::Tree,
    history: sled::Tree,
    watches: sled::Tree,
    outbox: sled::Tree,
    alert_ids: sled::Tree,
    /// The store's `watch_writes`: a batch never interleaves with `add_watch`'s
    /// check-then-insert or `remove_watches`.
    watch_writes: Arc<Mutex<()>>,
}

/// A check record with its values encoded, ready for the transaction (which may run its
/// closure more than once, so nothing is encoded inside it).
struct Prepared<'a> {
    check: &'a CheckRecord,
    product: Vec<u8>,
    change: Option<(Vec<u8>, Vec<u8>)>,
    watches: Vec<(Vec<u8>, Vec<u8>)>,
}

fn prepare(check: &CheckRecord) -> Result<Prepared<'_>, StoreError> {
    let url = check.product.url.as_str();
    let change = match &check.change {
        Some(point) => Some((url_key_with(url, point.at_ms), encode(point)?)),
        None => None,
    };
    let watches = check
        .watches
        .iter()
        .map(|w| Ok((watch_key(&w.conversation, w.id), encode(w)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Prepared {
        check,
        product: encode(&check.product)?,
        change,
        watches,
    })
}

impl CheckTrees {
    /// Applies several checks in one transaction: all of them or none. Returns the entries
    /// each queued, in the order given.
    fn record(&self, checks: &[&Prepared<'_>]) -> Result<Vec<Vec<OutboxEntry>>, StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let trees = (
            &self.products,
            &self.history,
            &self.watches,
            &self.outbox,
            &self.alert_ids,
        );
        trees
            .transaction(|(p, h, w, o, a)| {
                let mut all = Vec::with_capacity(checks.len());
                for prepared in checks {
                    all.push(apply_check(prepared, p, h, w, o, a)?);
                }
                Ok(all)
            })
            .map_err(tx_error)
    }
}

type TxTree = sled::transaction::TransactionalTree;
type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, StoreError>;

/// One check inside the batch's transaction.
fn apply_check(
    prepared: &Prepared<'_>,
    p: &TxTree,
    h: &TxTree,
    w: &TxTree,
    o: &TxTree,
    a: &TxTree,
) -> TxResult<Vec<OutboxEntry>> {
    let check = prepared.check;
    let url = check.product.url.as_str();
    let mut queued = Vec::new();
    // Every watch went while the page was fetched: nothing to record.
    if p.get(url_key(url))?.is_none() {
        return Ok(queued);
    }
    p.insert(url_key(url), prepared.product.clone())?;
    if let Some((k, v)) = &prepared.change {
        h.insert(k.clone(), v.clone())?;
    }
    // Whether each watch still exists, read once: a check's messages are mostly about the
    // watches it just updated.
    let mut exists: HashMap<Vec<u8>, bool> = HashMap::new();
    for (k, v) in &prepared.watches {
        let there = w.get(k)?.is_some();
        if there {
            w.insert(k.clone(), v.clone())?;
        }
        exists.insert(k.clone(), there);
    }
    for m in &check.messages {
        let watch_gone = match m.watch_id {
            Some(id) => {
                let k = watch_key(&m.conversation, id);
                match exists.get(&k) {
                    Some(there) => !there,
                    None => {
                        let there = w.get(&k)?.is_some();
                        exists.insert(k, there);
                        !there
                    }
                }
            }
            None => false,
        };
        if watch_gone {
            continue;
        }
        queued.extend(queue_message(o, a, m, check.now_ms)?);
    }
    Ok(queued)
}

/// Queues one message inside a transaction over `(outbox, alert_ids)`, unless its alert
/// id is queued already (the same alert recorded twice).
fn queue_message(
    o: &TxTree,
    a: &TxTree,
    m: &NewOutbox,
    now_ms: u64,
) -> TxResult<Option<OutboxEntry>> {
    if a.get(m.alert_id.as_bytes())?.is_some() {
        return Ok(None);
    }
    let id = o.generate_id()?;
    let entry = OutboxEntry {
        id,
        alert_id: m.alert_id.clone(),
        conversation: m.conversation.clone(),
        watch_id: m.watch_id,
        message: m.message.clone(),
        created_ms: now_ms,
        attempts: 0,
        next_attempt_ms: now_ms,
        last_error: None,
        dead_ms: None,
    };
    o.insert(&id.to_be_bytes(), encode(&entry).map_err(abort)?)?;
    a.insert(m.alert_id.as_bytes(), &id.to_be_bytes())?;
    Ok(Some(entry))
}

/// Most checks one transaction applies; more wait for the next batch.
const MAX_BATCH: usize = 256;

/// Makes writes durable by group commit on one dedicated thread, and applies the watch
/// loop's check records there in batches.
///
/// sled 0.34's `flush_async` deadlocks when several tasks call it at once
/// (spacejam/sled#1308, #1241: seen here as a daemon that stopped answering when 8 new
/// conversations wrote at the same moment). So every flush goes through this thread, which
/// runs the blocking `Db::flush` one at a time. A request is answered by a flush that
/// started after it arrived, so it covers every write its caller made before asking; the
/// requests that queue up during one fsync share the next one, which keeps many
/// simultaneous first turns at the cost of one or two fsyncs.
///
/// Check records that queue up meanwhile are applied in one transaction before that flush:
/// a poll cycle then pays one transaction and one fsync per batch instead of per product
/// (BENCHMARKS.md, poll cycle), and the sled work stays off the async workers.
struct Writer {
    /// `None` only while dropping.
    requests: Option<std::sync::mpsc::Sender<Request>>,
    /// Joined on drop, so that the thread's `Db` handle (and sled's directory lock) is gone
    /// when the store is: a restart in the same process can then reopen the directory.
    thread: Option<std::thread::JoinHandle<()>>,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;
/// A queued check's outcome, with the caller waiting for it.
type Answer = (
    Result<Vec<OutboxEntry>, StoreError>,
    Reply<Vec<OutboxEntry>>,
);

enum Request {
    Flush(Reply<()>),
    Record(Box<CheckRecord>, Reply<Vec<OutboxEntry>>),
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn start(db: sled::Db, trees: CheckTrees) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("pricewatch-store".to_owned())
            .spawn(move || {
                // Ends when the store (the only sender) is dropped.
                while let Ok(first) = rx.recv() {
                    let mut flushes = Vec::new();
                    let mut records = Vec::new();
                    for request in std::iter::once(first).chain(rx.try_iter()) {
                        match request {
                            Request::Flush(reply) => flushes.push(reply),
                            Request::Record(check, reply) => records.push((check, reply)),
                        }
                    }
                    let mut done = Vec::with_capacity(records.len());
                    while !records.is_empty() {
                        let rest = records.split_off(records.len().min(MAX_BATCH));
                        done.extend(apply_batch(&trees, records));
                        records = rest;
                    }
                    let flushed = db.flush().map(|_| ()).map_err(io);
                    // Callers may have given up (a turn cut off, a shutdown); fine.
                    for reply in flushes {
                        let _ = reply.send(copy_result(&flushed, ()));
                    }
                    for (result, reply) in done {
                        let _ = reply.send(result.and_then(|q| copy_result(&flushed, q)));
                    }
                }
            })?;
        Ok(Writer {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .and_then(|r| r.send(request).ok())
            .ok_or_else(stopped)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Flush(tx))?;
        rx.await.map_err(|_| stopped())?
    }

    async fn record(&self, check: CheckRecord) -> Result<Vec<OutboxEntry>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Record(Box::new(check), tx))?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Applies one batch; a record that cannot even be encoded fails alone.
fn apply_batch(
    trees: &CheckTrees,
    records: Vec<(Box<CheckRecord>, Reply<Vec<OutboxEntry>>)>,
) -> Vec<Answer> {
    let outcomes: Vec<Result<Vec<OutboxEntry>, StoreError>> = {
        let prepared: Vec<Result<Prepared<'_>, StoreError>> =
            records.iter().map(|(check, _)| prepare(check)).collect();
        let ready: Vec<&Prepared<'_>> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut applied = match trees.record(&ready) {
            Ok(queued) => queued.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => ready
                .iter()
                .map(|_| Err(StoreError::Io(e.to_string())))
                .collect(),
        }
        .into_iter();
        prepared
            .into_iter()
            .map(|p| match p {
                Ok(_) => applied.next().unwrap_or_else(|| Err(stopped())),
                Err(e) => Err(e),
            })
            .collect()
    };
    outcomes
        .into_iter()
        .zip(records)
        .map(|(outcome, (_, reply))| (outcome, reply))
        .collect()
}

fn copy_result<T>(flushed: &Result<(), StoreError>, value: T) -> Result<T, StoreError> {
    match flushed {
        Ok(()) => Ok(value),
        Err(e) => Err(StoreError::Io(e.to_string())),
    }
}

fn stopped() -> StoreError {
    StoreError::Io("the store's writer thread has stopped".to_owned())
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => io(e),
    }
}

/// How long `open` waits for a lock another store is releasing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock"))
}

/// sled reports a held lock as an opaque I/O error; say what it means.
fn describe_open_error(e: &sled::Error) -> String {
    match e {
        e if is_locked(e) => {
            "it is locked by another process (is another pricewatch running on it?)".to_owned()
        }
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("permission denied ({io})")
        }
        sled::Error::Corruption { .. } => {
            format!("the data is corrupt ({e}); move the directory aside and restore a backup")
        }
        other => other.to_string(),
    }
}

fn check_schema(path: &Path, meta: &sled::Tree) -> Result<(), StoreError> {
    let current = SCHEMA_VERSION.to_be_bytes();
    match meta.get(SCHEMA_KEY).map_err(io)? {
        None => {
            meta.insert(SCHEMA_KEY, &current).map_err(io)?;
            Ok(())
        }
        Some(v) if v.as_ref() == current => Ok(()),
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            Err(StoreError::Schema {
                path: path.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rule;
    use crate::inbound::activity::{ChannelAccount, ConversationAccount};
    use crate::inbound::command::ProductUrl;
    use rust_decimal::Decimal;
    use std::sync::Arc;

    fn config(dir: &Path) -> SledStoreConfig {
        SledStoreConfig {
            path: dir.join("data"),
            cache_capacity: 4 << 20,
            flush_every: Duration::from_millis(500),
        }
    }

    fn reference(conv: &str, service_url: &str) -> ConversationReference {
        ConversationReference {
            channel_id: "msteams".into(),
            service_url: service_url.into(),
            conversation: ConversationAccount {
                id: conv.into(),
                ..Default::default()
            },
            user: Some(ChannelAccount {
                id: "u".into(),
                ..Default::default()
            }),
            bot: ChannelAccount {
                id: "b".into(),
                ..Default::default()
            },
            locale: None,
        }
    }

    fn new_watch(conv: &ConversationKey, url: &str) -> NewWatch {
        NewWatch {
            conversation: conv.clone(),
            user: None,
            url: ProductUrl::parse(url, 2048).unwrap(),
            rule: Rule::Drop {
                percent: Decimal::from(20),
            },
            created_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn references_upsert_and_report_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let r = reference(
            "19:a@thread.skype;messageid=1",
            "https://smba.example/teams/",
        );
        assert_eq!(
            store.upsert_reference(&r).await.unwrap(),
            ReferenceChange::New
        );
        assert_eq!(
            store.upsert_reference(&r).await.unwrap(),
            ReferenceChange::Unchanged
        );
        let mut moved = r.clone();
        moved.service_url = "https://smba.example/emea/".into();
        assert_eq!(
            store.upsert_reference(&moved).await.unwrap(),
            ReferenceChange::ServiceUrlChanged
        );
        let mut renamed = moved.clone();
        renamed.locale = Some("fr-FR".into());
        assert_eq!(
            store.upsert_reference(&renamed).await.unwrap(),
            ReferenceChange::Updated
        );
        assert_eq!(
            store.reference(&r.key()).await.unwrap(),
            Some(renamed.clone())
        );
        assert_eq!(store.stats().await.unwrap().references, 1);
    }

    #[tokio::test]
    async fn watches_survive_reopen_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let conv = reference("c1", "http://x/").key();
        {
            let store = SledStore::open(&config(dir.path())).unwrap();
            for u in [
                "https://a.example/1",
                "https://b.example/2",
                "https://c.example/3",
            ] {
                assert!(matches!(
                    store.add_watch(new_watch(&conv, u), 50).await.unwrap(),
                    AddWatch::Added(_)
                ));
            }
        }
        let store = SledStore::open(&config(dir.path())).unwrap();
        let urls: Vec<String> = store
            .watches(&conv)
            .await
            .unwrap()
            .iter()
            .map(|w| w.url.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "https://a.example/1",
                "https://b.example/2",
                "https://c.example/3"
            ]
        );
    }

    #[tokio::test]
    async fn duplicates_and_limits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = reference("c1", "http://x/").key();
        let other = reference("c2", "http://x/").key();
        store
            .add_watch(new_watch(&conv, "https://a.example/1"), 2)
            .await
            .unwrap();
        assert!(matches!(
            store
                .add_watch(new_watch(&conv, "https://a.example/1"), 2)
                .await
                .unwrap(),
            AddWatch::Duplicate(_)
        ));
        // The same URL in another conversation is a different watch.
        assert!(matches!(
            store
                .add_watch(new_watch(&other, "https://a.example/1"), 2)
                .await
                .unwrap(),
            AddWatch::Added(_)
        ));
        store
            .add_watch(new_watch(&conv, "https://a.example/2"), 2)
            .await
            .unwrap();
        assert_eq!(
            store
                .add_watch(new_watch(&conv, "https://a.example/3"), 2)
                .await
                .unwrap(),
            AddWatch::LimitReached { max: 2 }
        );
        let ids: Vec<u64> = store
            .watches(&conv)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        let removed = store.remove_watches(&conv, &ids[..1]).await.unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(store.watches(&conv).await.unwrap().len(), 1);
        assert_eq!(store.watches(&other).await.unwrap().len(), 1);
        // Removing what is already gone removes nothing.
        assert!(store
            .remove_watches(&conv, &ids[..1])
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_locked_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(&config(dir.path())).unwrap();
        // sled locks with fcntl, which is per process: a second open in-process succeeds or
        // fails depending on the platform, so the cross-process case is an integration test.
        let err = SledStore::open(&SledStoreConfig {
            path: PathBuf::from("/proc/pricewatch-cannot-exist"),
            ..config(dir.path())
        })
        .unwrap_err();
        assert!(err.to_string().contains("/proc/pricewatch-cannot-exist"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_simultaneous_durable_writes_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&config(dir.path())).unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let r = reference(&format!("c{i}"), "http://x/");
                    store.upsert_reference(&r).await
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), ReferenceChange::New);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("concurrent flushes must not deadlock");
        assert_eq!(store.stats().await.unwrap().references, 64);
    }

    #[test]
    fn another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(&config(dir.path())).unwrap();
            let meta = store.db.open_tree("meta").unwrap();
            meta.insert(SCHEMA_KEY, &99u32.to_be_bytes()).unwrap();
            store.db.flush().unwrap();
        }
        let err = SledStore::open(&config(dir.path())).unwrap_err();
        assert!(matches!(err, StoreError::Schema { found: 99, .. }), "{err}");
    }

    fn key(conv: &str) -> ConversationKey {
        ConversationKey {
            channel_id: "msteams".into(),
            conversation_id: conv.into(),
        }
    }

    fn added(result: AddWatch) -> Watch {
        match result {
            AddWatch::Added(w) => w,
            other => panic!("expected a new watch, got {other:?}"),
        }
    }

    fn point(at_ms: u64, amount: i64) -> ChangePoint {
        ChangePoint {
            at_ms,
            amount: Decimal::from(amount),
            currency: crate::price::Currency::parse("EUR").unwrap(),
        }
    }

    fn message(
        alert_id: &str,
        conv: &ConversationKey,
        watch_id: Option<u64>,
    ) -> crate::domain::NewOutbox {
        crate::domain::NewOutbox {
            alert_id: alert_id.into(),
            conversation: conv.clone(),
            watch_id,
            message: crate::domain::OutboxMessage::FirstCheckFailed {
                url: "https://shop.example/p/1".into(),
                reason: "test".into(),
            },
        }
    }

    #[tokio::test]
    async fn a_product_is_shared_by_its_watches_and_goes_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let (a, b) = (key("a"), key("b"));
        let wa = added(
            store
                .add_watch(new_watch(&a, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let wb = added(
            store
                .add_watch(new_watch(&b, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        added(
            store
                .add_watch(new_watch(&b, "https://shop.example/p/2"), 10)
                .await
                .unwrap(),
        );
        assert!(wa.is_pending());
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.watches, stats.products), (3, 2));

        // Due at once (created at 1 ms), each product once, however many watch it.
        let due = store.due_products(1, 100).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(store.due_products(0, 100).await.unwrap().is_empty());
        let url = wa.url.clone();
        let mut ids: Vec<u64> = store
            .product_watches(&url)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [wa.id, wb.id]);

        let mut product = store.product(&url).await.unwrap().unwrap();
        product.next_due_ms = 1_000;
        let check = CheckRecord {
            product,
            change: Some(point(10, 199)),
            watches: vec![],
            messages: vec![],
            now_ms: 10,
        };
        store.record_check(check).await.unwrap();
        assert_eq!(store.history(&url).await.unwrap(), [point(10, 199)]);

        store.remove_watches(&a, &[wa.id]).await.unwrap();
        assert!(
            store.product(&url).await.unwrap().is_some(),
            "b still watches it"
        );
        store.remove_watches(&b, &[wb.id]).await.unwrap();
        assert!(store.product(&url).await.unwrap().is_none());
        assert!(store.history(&url).await.unwrap().is_empty());
        assert!(store.product_watches(&url).await.unwrap().is_empty());
        assert_eq!(store.stats().await.unwrap().products, 1);
    }

    #[tokio::test]
    async fn a_check_is_recorded_whole_and_its_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let conv = key("c");
        let (watch, gone) = {
            let store = SledStore::open(&config(dir.path())).unwrap();
            let w = added(
                store
                    .add_watch(new_watch(&conv, "https://shop.example/p/1"), 10)
                    .await
                    .unwrap(),
            );
            let gone = added(
                store
                    .add_watch(new_watch(&conv, "https://shop.example/p/1?x=2"), 10)
                    .await
                    .unwrap(),
            );
            store.remove_watches(&conv, &[gone.id]).await.unwrap();
            (w, gone)
        };
        let store = SledStore::open(&config(dir.path())).unwrap();
        let mut product = store.product(&watch.url).await.unwrap().unwrap();
        product.title = Some("Skillet".into());
        product.next_due_ms = 5_000;
        let mut changed = watch.clone();
        changed.trigger.below_count = 1;
        let check = CheckRecord {
            product: product.clone(),
            change: Some(point(100, 42)),
            watches: vec![changed.clone()],
            messages: vec![
                message("alert-1", &conv, Some(watch.id)),
                message("alert-1", &conv, Some(watch.id)),
                message("alert-for-removed-watch", &conv, Some(gone.id)),
                message("notice", &conv, None),
            ],
            now_ms: 100,
        };
        let queued = store.record_check(check.clone()).await.unwrap();
        assert_eq!(
            queued.len(),
            2,
            "duplicate and removed-watch messages are skipped"
        );
        assert_eq!(queued[0].alert_id, "alert-1");
        assert!(queued[0].id < queued[1].id);
        // The same check recorded again (a retry after a crash) queues nothing new.
        assert!(store.record_check(check).await.unwrap().is_empty());
        drop(store);

        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(store.product(&watch.url).await.unwrap(), Some(product));
        assert_eq!(store.watches(&conv).await.unwrap(), [changed]);
        assert_eq!(store.history(&watch.url).await.unwrap(), [point(100, 42)]);
        assert!(store.due_products(4_999, 10).await.unwrap().is_empty());

        let ready = store.outbox_ready(100, 10).await.unwrap();
        assert_eq!(ready, queued);
        store
            .outbox_retry(ready[0].id, 700, "429".into())
            .await
            .unwrap();
        let ready = store.outbox_ready(100, 10).await.unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].alert_id, "notice");
        let later = store.outbox_ready(700, 10).await.unwrap();
        assert_eq!(
            (later[0].attempts, later[0].last_error.as_deref()),
            (1, Some("429"))
        );
        store.outbox_delivered(later[0].id).await.unwrap();
        store.outbox_delivered(later[1].id).await.unwrap();
        assert!(store.outbox_ready(u64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(store.stats().await.unwrap().outbox, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn simultaneous_checks_share_batches_and_each_gets_its_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&config(dir.path())).unwrap());
        let mut watches = Vec::new();
        for i in 0..120 {
            let conv = key(&format!("c{}", i % 7));
            let url = format!("https://shop.example/p/{i}");
            watches.push(added(
                store.add_watch(new_watch(&conv, &url), 100).await.unwrap(),
            ));
        }
        // One product loses its watch before its check lands: it records nothing, and the
        // checks batched with it are unaffected.
        let orphan = watches.pop().unwrap();
        store
            .remove_watches(&orphan.conversation, &[orphan.id])
            .await
            .unwrap();
        watches.push(orphan.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for w in watches.clone() {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let mut product = Product::new(w.url.clone(), 0);
                product.next_due_ms = 9_000;
                let check = CheckRecord {
                    product,
                    change: Some(point(100, 42)),
                    watches: vec![w.clone()],
                    messages: vec![
                        message(&format!("{}:a", w.id), &w.conversation, Some(w.id)),
                        message(&format!("{}:b", w.id), &w.conversation, Some(w.id)),
                    ],
                    now_ms: 100,
                };
                (w, store.record_check(check).await.unwrap())
            });
        }
        let mut queued_total = 0;
        while let Some(done) = tasks.join_next().await {
            let (w, queued) = done.unwrap();
            if w.id == orphan.id {
                assert!(queued.is_empty());
                continue;
            }
            let ids: Vec<&str> = queued.iter().map(|e| e.alert_id.as_str()).collect();
            assert_eq!(ids, [format!("{}:a", w.id), format!("{}:b", w.id)]);
            queued_total += queued.len();
        }
        assert_eq!(queued_total, 2 * 119);
        let store = Arc::into_inner(store).unwrap();
        drop(store);
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(store.stats().await.unwrap().outbox, 2 * 119);
        assert_eq!(store.due_products(8_999, 1000).await.unwrap(), []);
        assert_eq!(store.due_products(9_000, 1000).await.unwrap().len(), 119);
        assert_eq!(store.product(&orphan.url).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_check_for_a_product_nobody_watches_any_more_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let w = added(
            store
                .add_watch(new_watch(&conv, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let product = store.product(&w.url).await.unwrap().unwrap();
        store.remove_watches(&conv, &[w.id]).await.unwrap();
        let check = CheckRecord {
            product,
            change: Some(point(5, 1)),
            watches: vec![w.clone()],
            messages: vec![message("m", &conv, None)],
            now_ms: 5,
        };
        assert!(store.record_check(check).await.unwrap().is_empty());
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.products, stats.watches, stats.outbox), (0, 0, 0));
    }

    #[tokio::test]
    async fn pruning_history_keeps_each_products_latest_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let mut urls = Vec::new();
        for u in ["https://shop.example/p/1", "https://shop.example/p/2"] {
            let w = added(store.add_watch(new_watch(&conv, u), 10).await.unwrap());
            urls.push(w.url.clone());
        }
        for (i, url) in urls.iter().enumerate() {
            let product = store.product(url).await.unwrap().unwrap();
            for at in [10, 20, 30] {
                let check = CheckRecord {
                    product: product.clone(),
                    change: Some(point(at + i as u64, at as i64)),
                    watches: vec![],
                    messages: vec![],
                    now_ms: at,
                };
                store.record_check(check).await.unwrap();
            }
        }
        assert_eq!(
            store.latest_point(&urls[0]).await.unwrap(),
            Some(point(30, 30))
        );
        assert_eq!(store.prune_history(25).await.unwrap(), 4);
        assert_eq!(store.history(&urls[0]).await.unwrap(), [point(30, 30)]);
        // Everything is old, but the latest point of each product stays: it is the current price.
        assert_eq!(store.prune_history(u64::MAX).await.unwrap(), 0);
        assert_eq!(store.history(&urls[1]).await.unwrap(), [point(31, 30)]);
    }
}
