//! The due-time indexes: what lets the watch loop and delivery read what is due without
//! reading what is stored.
//!
//! - `due_products`: `next_due_ms ‖ url_key` → nothing, one key per product, changed in
//!   the same transaction as the product (add_watch, the check transaction, the removal of
//!   a product's last watch, a restore).
//! - The outbox in two parts. A message that goes out at once stays in `outbox` (by id),
//!   written and removed as before: a pass reads the head of that tree. A message whose
//!   next attempt was put off (a retry, a rate limit, a reply waiting for an earlier one)
//!   moves to `outbox_waiting` (by id, so it is still found by id) with a key in
//!   `outbox_due` (`next_attempt_ms ‖ id`), in one transaction; a pass reads that index
//!   up to now. A backlog that waits hours therefore costs a pass nothing, and the
//!   messages that go out at once pay for no index (indexing every message cost a third
//!   of delivery's rate, BENCHMARKS.md).
//!
//! The indexes are not counted (`integrity`): they hold nothing that is not in the
//! records they index, so one that disagrees with its records is rebuilt at open rather
//! than called damage. The two outbox trees together are the counted "outbox".

use std::collections::BTreeMap;

use serde::Deserialize;
use sled::transaction::Transactional;

use super::check::{abort, tx_error};
use super::integrity::count_tree;
use super::io;
use crate::domain::OutboxEntry;
use crate::store::codec::{decode, url_key};
use crate::store::StoreError;

type TxTree = sled::transaction::TransactionalTree;
type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, StoreError>;

/// `next_due_ms ‖ url_key`.
pub(super) fn product_key(next_due_ms: u64, url: &str) -> Vec<u8> {
    let url = url_key(url);
    let mut k = Vec::with_capacity(8 + url.len());
    k.extend_from_slice(&next_due_ms.to_be_bytes());
    k.extend_from_slice(&url);
    k
}

/// `next_attempt_ms ‖ id`.
pub(super) fn message_key(next_attempt_ms: u64, id: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&next_attempt_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The first 8 bytes of an index key (its time), and the rest.
pub(super) fn split_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let time: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(time), &key[8..]))
}

/// Every index key whose time is at most `now_ms` sorts before this bound (`None`: all do).
pub(super) fn due_until(now_ms: u64) -> Option<[u8; 8]> {
    now_ms.checked_add(1).map(u64::to_be_bytes)
}

/// Keys of `index` whose time is at most `now_ms`, earliest first.
pub(super) fn due_keys(index: &sled::Tree, now_ms: u64) -> sled::Iter {
    match due_until(now_ms) {
        Some(end) => index.range(..end),
        None => index.iter(),
    }
}

/// The one field of a stored product the index needs: read without decoding the rest
/// into strings.
#[derive(Deserialize)]
struct DueAt {
    next_due_ms: u64,
}

/// A stored product's due time.
pub(super) fn product_due(bytes: &[u8]) -> Result<u64, StoreError> {
    decode::<DueAt>("product", bytes).map(|d| d.next_due_ms)
}

/// A stored message's alert id, without decoding the message.
pub(super) fn alert_id(bytes: &[u8]) -> Result<String, StoreError> {
    #[derive(Deserialize)]
    struct AlertId {
        alert_id: String,
    }
    decode::<AlertId>("outbox entry", bytes).map(|a| a.alert_id)
}

/// Whether a message whose next attempt is `next_attempt_ms` belongs in the waiting part:
/// its attempt was put off after it was queued (a fresh one is due at its queue time).
pub(super) fn waits(entry: &OutboxEntry) -> bool {
    entry.next_attempt_ms > entry.created_ms
}

/// The outbox's trees inside a transaction over `(outbox, outbox_waiting, outbox_due)`.
pub(super) struct TxOutbox<'a> {
    pub(super) ready: &'a TxTree,
    pub(super) waiting: &'a TxTree,
    pub(super) due: &'a TxTree,
}

impl TxOutbox<'_> {
    /// The queued message `id` as stored now, from either part.
    pub(super) fn get(&self, id: u64) -> TxResult<Option<OutboxEntry>> {
        let key = id.to_be_bytes();
        let bytes = match self.ready.get(key)? {
            Some(b) => b,
            None => match self.waiting.get(key)? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        decode("outbox entry", &bytes).map(Some).map_err(abort)
    }

    /// Takes `old` (as [`TxOutbox::get`] read it) out of whichever part holds it.
    pub(super) fn remove(&self, old: &OutboxEntry) -> TxResult<()> {
        let key = old.id.to_be_bytes();
        if self.ready.remove(&key)?.is_none() && self.waiting.remove(&key)?.is_some() {
            self.due.remove(&message_key(old.next_attempt_ms, old.id))?;
        }
        Ok(())
    }

    /// Replaces `old` with `new` (same id), in the waiting part when `new` waits.
    pub(super) fn replace(&self, old: &OutboxEntry, new: &OutboxEntry) -> TxResult<()> {
        self.remove(old)?;
        let value = crate::store::codec::encode(new).map_err(abort)?;
        let key = new.id.to_be_bytes();
        if waits(new) {
            self.waiting.insert(&key, value)?;
            self.due
                .insert(&message_key(new.next_attempt_ms, new.id), &[])?;
        } else {
            self.ready.insert(&key, value)?;
        }
        Ok(())
    }
}

/// The store's outbox trees, outside a transaction.
pub(super) struct Outbox<'a> {
    pub(super) ready: &'a sled::Tree,
    pub(super) waiting: &'a sled::Tree,
    pub(super) due: &'a sled::Tree,
}

impl Outbox<'_> {
    pub(super) fn get(&self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        let key = id.to_be_bytes();
        let bytes = match self.ready.get(key).map_err(io)? {
            Some(b) => b,
            None => match self.waiting.get(key).map_err(io)? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        decode("outbox entry", &bytes).map(Some)
    }

    /// Changes the queued message `id` in one transaction (moving it between the parts
    /// as its next attempt says); `change` returns `None` to leave it as it is. `false`
    /// when it is not queued.
    pub(super) fn change(
        &self,
        id: u64,
        change: impl Fn(&OutboxEntry) -> Option<OutboxEntry>,
    ) -> Result<bool, StoreError> {
        // A message put off again (a rate-limited backlog is, at every pass) changes only
        // the waiting part: a transaction over two trees instead of three.
        if self.waiting.contains_key(id.to_be_bytes()).map_err(io)? {
            if let Some(done) = self.change_waiting(id, &change)? {
                return Ok(done);
            }
        }
        (self.ready, self.waiting, self.due)
            .transaction(|(ready, waiting, due)| {
                let tx = TxOutbox {
                    ready,
                    waiting,
                    due,
                };
                let Some(old) = tx.get(id)? else {
                    return Ok(false);
                };
                if let Some(new) = change(&old) {
                    tx.replace(&old, &new)?;
                }
                Ok(true)
            })
            .map_err(tx_error)
    }

    /// [`Outbox::change`] for a message in the waiting part that stays there; `None` when
    /// it is not there after all, or would leave it (the caller's three-tree transaction
    /// then decides).
    fn change_waiting(
        &self,
        id: u64,
        change: &impl Fn(&OutboxEntry) -> Option<OutboxEntry>,
    ) -> Result<Option<bool>, StoreError> {
        let key = id.to_be_bytes();
        (self.waiting, self.due)
            .transaction(|(waiting, due)| {
                let Some(bytes) = waiting.get(key)? else {
                    return Ok(None);
                };
                let old: OutboxEntry = decode("outbox entry", &bytes).map_err(abort)?;
                let Some(new) = change(&old) else {
                    return Ok(Some(true));
                };
                if !waits(&new) {
                    return Ok(None);
                }
                waiting.insert(&key, crate::store::codec::encode(&new).map_err(abort)?)?;
                if new.next_attempt_ms != old.next_attempt_ms {
                    due.remove(&message_key(old.next_attempt_ms, id))?;
                    due.insert(&message_key(new.next_attempt_ms, id), &[])?;
                }
                Ok(Some(true))
            })
            .map_err(tx_error)
    }

    /// Messages due at `now_ms`, in queue order, at most `limit`: the head of the ready
    /// part and the waiting messages whose time has come (most overdue first when more
    /// than `limit` are).
    pub(super) fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut due = Vec::new();
        for value in self.ready.iter().values() {
            if due.len() >= limit {
                break;
            }
            let entry: OutboxEntry = decode("outbox entry", &value.map_err(io)?)?;
            // Only a clock set back finds one not due yet.
            if entry.next_attempt_ms <= now_ms {
                due.push(entry);
            }
        }
        let mut taken = 0;
        for key in due_keys(self.due, now_ms).keys() {
            if taken >= limit {
                break;
            }
            let key = key.map_err(io)?;
            let Some((_, id)) = split_key(&key) else {
                continue;
            };
            if let Some(bytes) = self.waiting.get(id).map_err(io)? {
                due.push(decode("outbox entry", &bytes)?);
                taken += 1;
            }
        }
        due.sort_by_key(|e| e.id);
        due.truncate(limit);
        Ok(due)
    }

    /// Every queued message, in queue order, at most `limit`.
    pub(super) fn queued(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        // Both parts are keyed by id: merged by key.
        let mut ready = self.ready.iter().peekable();
        let mut waiting = self.waiting.iter().peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let from_ready = match (ready.peek(), waiting.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(Ok((a, _))), Some(Ok((b, _)))) => a <= b,
                // An error is taken (and returned) first.
                (Some(Err(_)), _) => true,
                (_, Some(Err(_))) => false,
            };
            let next = if from_ready {
                ready.next()
            } else {
                waiting.next()
            };
            if let Some(item) = next {
                out.push(decode("outbox entry", &item.map_err(io)?.1)?);
            }
        }
        Ok(out)
    }

    /// The first (oldest) queued message.
    pub(super) fn first(&self) -> Result<Option<OutboxEntry>, StoreError> {
        let ready = self.ready.first().map_err(io)?;
        let waiting = self.waiting.first().map_err(io)?;
        let first = match (ready, waiting) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        first
            .map(|(_, bytes)| decode("outbox entry", &bytes))
            .transpose()
    }

    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.waiting.len()
    }
}

/// The trees [`Trees::rebuild`] reads and writes.
pub(super) struct Trees<'a> {
    pub(super) products: &'a sled::Tree,
    pub(super) due_products: &'a sled::Tree,
    pub(super) outbox: Outbox<'a>,
    pub(super) meta: &'a sled::Tree,
}

/// What [`Trees::rebuild`] found to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Rebuilt {
    pub(super) products: usize,
    pub(super) moved: usize,
    pub(super) waiting: usize,
}

impl Trees<'_> {
    /// Whether the indexes hold one key per record they index (a count, not a check of
    /// every key: they are changed in the records' own transactions).
    pub(super) fn consistent(&self) -> Result<bool, StoreError> {
        Ok(count_tree(self.due_products)? == count_tree(self.products)?
            && count_tree(self.outbox.due)? == count_tree(self.outbox.waiting)?)
    }

    /// Builds what a store written by an older build lacks, or an index that disagrees
    /// with its records: `due_products` from `products`, and the outbox split (a message
    /// that waits moved to `outbox_waiting`, `outbox_due` rebuilt from it). All of it in one
    /// transaction with `meta_writes` (the new schema version), so a crash leaves the store
    /// as it was, to be migrated again. Moving a message between the two outbox trees
    /// changes no count.
    pub(super) fn rebuild(&self, meta_writes: &[(&[u8], Vec<u8>)]) -> Result<Rebuilt, StoreError> {
        let mut products = BTreeMap::new();
        for item in self.products.iter() {
            let (key, value) = item.map_err(io)?;
            let mut k = product_due(&value)?.to_be_bytes().to_vec();
            k.extend_from_slice(&key);
            products.insert(k, ());
        }
        let mut moved = Vec::new();
        for item in self.outbox.ready.iter() {
            let (key, value) = item.map_err(io)?;
            let entry: OutboxEntry = decode("outbox entry", &value)?;
            if waits(&entry) {
                moved.push((key, value, entry.next_attempt_ms, entry.id));
            }
        }
        let mut waiting = BTreeMap::new();
        for value in self.outbox.waiting.iter().values() {
            let entry: OutboxEntry = decode("outbox entry", &value.map_err(io)?)?;
            waiting.insert(message_key(entry.next_attempt_ms, entry.id), ());
        }
        for (_, _, at, id) in &moved {
            waiting.insert(message_key(*at, *id), ());
        }
        let stale_products: Vec<sled::IVec> = self
            .due_products
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let stale_waiting: Vec<sled::IVec> = self
            .outbox
            .due
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let mut due_products = sled::Batch::default();
        for k in stale_products {
            due_products.remove(k);
        }
        for k in products.keys() {
            due_products.insert(k.as_slice(), &[]);
        }
        let mut outbox_due = sled::Batch::default();
        for k in stale_waiting {
            outbox_due.remove(k);
        }
        for k in waiting.keys() {
            outbox_due.insert(k.as_slice(), &[]);
        }
        (
            self.due_products,
            self.outbox.ready,
            self.outbox.waiting,
            self.outbox.due,
            self.meta,
        )
            .transaction(|(dp, ready, w, od, m)| {
                dp.apply_batch(&due_products)?;
                od.apply_batch(&outbox_due)?;
                for (key, value, _, _) in &moved {
                    ready.remove(key)?;
                    w.insert(key, value)?;
                }
                for (k, v) in meta_writes {
                    m.insert(*k, v.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        Ok(Rebuilt {
            products: products.len(),
            moved: moved.len(),
            waiting: waiting.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{added, config, key, message, new_watch, point};
    use super::super::{SledStore, SCHEMA_KEY};
    use super::*;
    use crate::domain::{CheckRecord, Watch};
    use crate::inbound::activity::ConversationKey;
    use crate::store::{Store, SCHEMA_VERSION};

    #[test]
    fn index_keys_sort_by_time_then_by_what_they_index() {
        assert!(product_key(9, "https://b.example/") < product_key(10, "https://a.example/"));
        assert!(product_key(10, "https://a.example/") < product_key(10, "https://b.example/"));
        assert!(message_key(5, 900) < message_key(6, 1));
        assert!(message_key(5, 1) < message_key(5, 2));
        let k = product_key(42, "https://a.example/p");
        assert_eq!(
            split_key(&k),
            Some((42, url_key("https://a.example/p").as_slice()))
        );
        assert_eq!(split_key(b"short"), None);
    }

    #[test]
    fn the_bound_of_what_is_due_includes_now_and_nothing_later() {
        let end = due_until(10).unwrap();
        assert!(product_key(10, "https://z.example/").as_slice() < end.as_slice());
        assert!(product_key(11, "").as_slice() >= end.as_slice());
        assert!(message_key(10, u64::MAX).as_slice() < end.as_slice());
        assert_eq!(due_until(u64::MAX), None);
    }

    fn keys(tree: &sled::Tree) -> Vec<Vec<u8>> {
        tree.iter().keys().map(|k| k.unwrap().to_vec()).collect()
    }

    /// The indexes hold exactly the keys their records call for.
    fn assert_indexed(store: &SledStore) {
        let mut want: Vec<Vec<u8>> = store
            .products
            .iter()
            .map(|item| {
                let (_, v) = item.unwrap();
                let p: crate::domain::Product = decode("product", &v).unwrap();
                product_key(p.next_due_ms, p.url.as_str())
            })
            .collect();
        want.sort();
        assert_eq!(keys(&store.due_products), want);
        let mut want: Vec<Vec<u8>> = store
            .outbox_waiting
            .iter()
            .values()
            .map(|v| {
                let e: OutboxEntry = decode("outbox entry", &v.unwrap()).unwrap();
                message_key(e.next_attempt_ms, e.id).to_vec()
            })
            .collect();
        want.sort();
        assert_eq!(keys(&store.outbox_due), want);
    }

    #[tokio::test]
    async fn a_product_is_found_at_its_new_due_time_and_not_at_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let w1 = added(
            store
                .add_watch(new_watch(&conv, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let w2 = added(
            store
                .add_watch(new_watch(&conv, "https://shop.example/p/2"), 10)
                .await
                .unwrap(),
        );
        assert_indexed(&store);
        let urls = |ps: Vec<crate::domain::Product>| -> Vec<String> {
            ps.into_iter().map(|p| p.url.as_str().to_owned()).collect()
        };
        assert_eq!(store.due_products(1, 10).await.unwrap().len(), 2);
        // p/1 is checked and next due at 5,000; p/2 stays due from 1 ms.
        let mut product = store.product(&w1.url).await.unwrap().unwrap();
        product.next_due_ms = 5_000;
        store
            .record_check(CheckRecord {
                product: product.clone(),
                change: Some(point(10, 3)),
                watches: vec![],
                messages: vec![],
                now_ms: 10,
            })
            .await
            .unwrap();
        assert_indexed(&store);
        assert_eq!(
            urls(store.due_products(4_999, 10).await.unwrap()),
            [w2.url.as_str()]
        );
        // Most overdue first, and at most `limit`.
        assert_eq!(
            urls(store.due_products(5_000, 10).await.unwrap()),
            [w2.url.as_str(), w1.url.as_str()]
        );
        assert_eq!(
            urls(store.due_products(u64::MAX, 1).await.unwrap()),
            [w2.url.as_str()]
        );
        // Checked again, earlier this time.
        product.next_due_ms = 3_000;
        store
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![],
                messages: vec![],
                now_ms: 20,
            })
            .await
            .unwrap();
        assert_indexed(&store);
        assert_eq!(store.due_products(3_000, 10).await.unwrap().len(), 2);

        // The last watch takes the product and its index key.
        store.remove_watches(&conv, &[w1.id]).await.unwrap();
        assert_indexed(&store);
        assert_eq!(keys(&store.due_products).len(), 1);
        assert_eq!(
            urls(store.due_products(u64::MAX, 10).await.unwrap()),
            [w2.url.as_str()]
        );
        drop(store);
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_indexed(&store);
    }

    /// Queues messages `m0`…`m{n-1}` at 100 ms; their ids.
    async fn queue_m(store: &SledStore, conv: &ConversationKey, n: usize) -> Vec<u64> {
        let queued = store
            .queue_messages(
                (0..n)
                    .map(|i| message(&format!("m{i}"), conv, None))
                    .collect(),
                100,
            )
            .await
            .unwrap();
        queued.iter().map(|e| e.id).collect()
    }

    #[tokio::test]
    async fn a_waiting_message_leaves_the_ready_part_and_is_due_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let ids = queue_m(&store, &conv, 4).await;
        assert_eq!(keys(&store.outbox).len(), 4);
        // m0 waits for a rate limit, m1 for a retry; m2 and m3 go out at once.
        store.defer_messages(vec![ids[0]], 5_000).await.unwrap();
        store
            .schedule_retry(ids[1], 3_000, "503".into())
            .await
            .unwrap();
        assert_indexed(&store);
        assert_eq!(keys(&store.outbox).len(), 2, "only what goes out at once");
        assert_eq!(keys(&store.outbox_due).len(), 2);
        let due_ids = |ms: Vec<OutboxEntry>| ms.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            due_ids(store.due_messages(2_999, 10).await.unwrap()),
            [ids[2], ids[3]]
        );
        assert_eq!(
            due_ids(store.due_messages(3_000, 10).await.unwrap()),
            [ids[1], ids[2], ids[3]]
        );
        // In queue order, whichever part they come from.
        assert_eq!(due_ids(store.due_messages(5_000, 10).await.unwrap()), ids);
        assert_eq!(due_ids(store.queued_messages(10).await.unwrap()), ids);
        assert_eq!(
            due_ids(store.due_messages(5_000, 2).await.unwrap()),
            [ids[0], ids[1]]
        );
        let waiting = store.queued_message(ids[0]).await.unwrap().unwrap();
        assert_eq!(waiting.next_attempt_ms, 5_000);
        // A deferral to an earlier time changes nothing; a later one moves the key.
        store.defer_messages(vec![ids[0]], 4_000).await.unwrap();
        store.defer_messages(vec![ids[0]], 6_000).await.unwrap();
        assert_indexed(&store);
        assert_eq!(
            due_ids(store.due_messages(5_999, 10).await.unwrap()),
            [ids[1], ids[2], ids[3]]
        );
        // Retried again: the key moves, the attempts add up.
        store
            .schedule_retry(ids[1], 7_000, "503".into())
            .await
            .unwrap();
        assert_indexed(&store);
        let retried = store.queued_message(ids[1]).await.unwrap().unwrap();
        assert_eq!((retried.attempts, retried.next_attempt_ms), (2, 7_000));
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.oldest_queued_ms), (4, Some(100)));

        // Delivered or given up on, a waiting message takes its key with it.
        store.remove_delivered(vec![ids[0]]).await.unwrap();
        assert!(store
            .move_to_dead_letters(ids[1], "gone".into(), 8_000)
            .await
            .unwrap());
        assert_indexed(&store);
        assert!(keys(&store.outbox_due).is_empty());
        assert!(keys(&store.outbox_waiting).is_empty());
        assert_eq!(
            due_ids(store.due_messages(u64::MAX, 10).await.unwrap()),
            [ids[2], ids[3]]
        );
        // The alert ids went with them: the same alerts may be queued again.
        let again = store
            .queue_messages(
                vec![message("m0", &conv, None), message("m1", &conv, None)],
                9_000,
            )
            .await
            .unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(store.stats().await.unwrap().outbox, 4);
        assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn delivered_messages_are_removed_together_from_either_part() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let ids = queue_m(&store, &conv, 5).await;
        // m1 waits for a rate limit; the others are ready.
        store.defer_messages(vec![ids[1]], 5_000).await.unwrap();
        // A batch with ready and waiting messages, one twice and one never queued.
        store
            .remove_delivered(vec![ids[0], ids[1], ids[2], ids[0], 999_999])
            .await
            .unwrap();
        assert_indexed(&store);
        let left: Vec<u64> = store
            .queued_messages(10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, [ids[3], ids[4]]);
        assert!(keys(&store.outbox_waiting).is_empty());
        // The counts the integrity check compares went down by three, once each.
        assert_eq!(store.stats().await.unwrap().outbox, 2);
        match super::super::integrity::recorded(&store.meta).unwrap() {
            super::super::integrity::Recorded::Counts(c) => assert_eq!(c.trees[3], 2),
            _ => panic!("no counts recorded"),
        }
        // Their alert ids are free again, the others' are not.
        let again = store
            .queue_messages(
                (0..5)
                    .map(|i| message(&format!("m{i}"), &conv, None))
                    .collect(),
                200,
            )
            .await
            .unwrap();
        let names: Vec<&str> = again.iter().map(|e| e.alert_id.as_str()).collect();
        assert_eq!(names, ["m0", "m1", "m2"]);
    }

    /// The layout of a store written by the build before the indexes: schema 1, every
    /// queued message in `outbox`, no index trees.
    fn as_written_by_schema_1(data: &std::path::Path) {
        let db = sled::open(data).unwrap();
        let outbox = db.open_tree("outbox").unwrap();
        for item in db.open_tree("outbox_waiting").unwrap().iter() {
            let (k, v) = item.unwrap();
            outbox.insert(k, v).unwrap();
        }
        for name in ["outbox_waiting", "outbox_due", "due_products"] {
            assert!(db.drop_tree(name).unwrap());
        }
        db.open_tree("meta")
            .unwrap()
            .insert(SCHEMA_KEY, &1u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }

    /// A watch whose product is next due at 5,000 ms, and two queued messages of which
    /// the first is put off to 9,000 ms; returns the watch and the messages' ids.
    async fn due_at_5000_and_one_of_two_messages_at_9000(
        store: &SledStore,
        conv: &ConversationKey,
    ) -> (Watch, Vec<u64>) {
        let w = added(
            store
                .add_watch(new_watch(conv, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let mut product = store.product(&w.url).await.unwrap().unwrap();
        product.next_due_ms = 5_000;
        store
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![],
                messages: vec![],
                now_ms: 10,
            })
            .await
            .unwrap();
        let queued = store
            .queue_messages(
                vec![message("m0", conv, None), message("m1", conv, None)],
                100,
            )
            .await
            .unwrap();
        store
            .defer_messages(vec![queued[0].id], 9_000)
            .await
            .unwrap();
        (w, queued.iter().map(|e| e.id).collect())
    }

    #[tokio::test]
    async fn a_store_from_before_the_indexes_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conv = key("c");
        let (w1, w2, ids) = {
            let store = SledStore::open(&config(dir.path())).unwrap();
            let (w1, ids) = due_at_5000_and_one_of_two_messages_at_9000(&store, &conv).await;
            let w2 = added(
                store
                    .add_watch(new_watch(&conv, "https://shop.example/p/2"), 10)
                    .await
                    .unwrap(),
            );
            (w1, w2, ids)
        };
        as_written_by_schema_1(&data);
        let before = SledStore::verify(&data).unwrap();

        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_indexed(&store);
        assert_eq!(
            store.meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(),
            SCHEMA_VERSION.to_be_bytes()
        );
        let due = store.due_products(4_999, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].url, w2.url);
        assert_eq!(store.due_products(5_000, 10).await.unwrap()[1].url, w1.url);
        assert_eq!(keys(&store.outbox).len(), 1, "the deferred message moved");
        let due_ids = |ms: Vec<OutboxEntry>| ms.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            due_ids(store.due_messages(8_999, 10).await.unwrap()),
            [ids[1]]
        );
        assert_eq!(due_ids(store.due_messages(9_000, 10).await.unwrap()), ids);
        // Nothing was lost or counted twice: the same counts, and they still verify.
        drop(store);
        let after = SledStore::verify(&data).unwrap();
        assert_eq!(after.trees, before.trees);
    }

    #[tokio::test]
    async fn an_index_that_disagrees_with_its_records_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conv = key("c");
        {
            let store = SledStore::open(&config(dir.path())).unwrap();
            added(
                store
                    .add_watch(new_watch(&conv, "https://shop.example/p/1"), 10)
                    .await
                    .unwrap(),
            );
            let queued = store
                .queue_messages(vec![message("m0", &conv, None)], 100)
                .await
                .unwrap();
            store
                .defer_messages(vec![queued[0].id], 9_000)
                .await
                .unwrap();
        }
        {
            let db = sled::open(&data).unwrap();
            db.open_tree("due_products").unwrap().clear().unwrap();
            db.open_tree("outbox_due").unwrap().clear().unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_indexed(&store);
        assert_eq!(store.due_products(1, 10).await.unwrap().len(), 1);
        assert_eq!(store.due_messages(9_000, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_restored_snapshot_is_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        due_at_5000_and_one_of_two_messages_at_9000(&store, &conv).await;

        let target_dir = tempfile::tempdir().unwrap();
        let target = SledStore::open(&config(target_dir.path())).unwrap();
        target
            .restore_snapshot(store.snapshot().await.unwrap())
            .await
            .unwrap();
        assert_indexed(&target);
        assert_eq!(keys(&target.outbox_waiting).len(), 1);
        assert!(target.due_products(4_999, 10).await.unwrap().is_empty());
        assert_eq!(target.due_products(5_000, 10).await.unwrap().len(), 1);
        assert_eq!(target.due_messages(8_999, 10).await.unwrap().len(), 1);
        assert_eq!(target.due_messages(9_000, 10).await.unwrap().len(), 2);
    }
}
