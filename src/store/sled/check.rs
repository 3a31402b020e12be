//! The check transaction: one batch of the watch loop's check records applied in a single
//! sled transaction (product, history point, watch states, queued messages).
//!
//! Separate from the store's other methods because it runs on the writer thread over the
//! trees it owns, and because its rules (a product nobody watches records nothing, a message
//! for a removed watch or an alert already queued is skipped) are its own. `queue_message`
//! and the transaction error helpers serve the store's other transactions too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::due;
use super::integrity::{count, Delta};
use super::io;
use crate::domain::{CheckRecord, NewOutbox, OutboxEntry, Watch};
use crate::store::codec::{decode, encode, url_key, url_key_with, watch_key};
use crate::store::StoreError;

/// The trees a check writes, owned by the writer thread.
pub(super) struct CheckTrees {
    pub(super) products: sled::Tree,
    /// The products' due-time index, changed with each product (`due`).
    pub(super) due_products: sled::Tree,
    pub(super) history: sled::Tree,
    pub(super) watches: sled::Tree,
    pub(super) outbox: sled::Tree,
    pub(super) alert_ids: sled::Tree,
    /// Where the transaction counts the messages it queued (`integrity`).
    pub(super) meta: sled::Tree,
    /// The store's `watch_writes`: a batch never interleaves with `add_watch`'s
    /// check-then-insert or `remove_watches`.
    pub(super) watch_writes: Arc<Mutex<()>>,
}

/// A check record with its values encoded, ready for the transaction (which may run its
/// closure more than once, so nothing is encoded inside it).
pub(super) struct Prepared<'a> {
    check: &'a CheckRecord,
    product: Vec<u8>,
    /// The product's key in `due_products` after the check.
    due_key: Vec<u8>,
    change: Option<(Vec<u8>, Vec<u8>)>,
    watches: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn prepare(check: &CheckRecord) -> Result<Prepared<'_>, StoreError> {
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
        due_key: due::product_key(check.product.next_due_ms, url),
        change,
        watches,
    })
}

impl CheckTrees {
    /// Applies several checks in one transaction: all of them or none. Returns the entries
    /// each queued, in the order given.
    pub(super) fn record(
        &self,
        checks: &[&Prepared<'_>],
    ) -> Result<Vec<Vec<OutboxEntry>>, StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let trees = (
            &self.products,
            &self.due_products,
            &self.history,
            &self.watches,
            &self.outbox,
            &self.alert_ids,
            &self.meta,
        );
        trees
            .transaction(|(p, dp, h, w, o, a, m)| {
                let mut all = Vec::with_capacity(checks.len());
                for prepared in checks {
                    all.push(apply_check(prepared, Tx { p, dp, h, w, o, a })?);
                }
                let queued: usize = all.iter().map(Vec::len).sum();
                count(m, Delta::one(Delta::OUTBOX, queued as i64))?;
                Ok(all)
            })
            .map_err(tx_error)
    }
}

type TxTree = sled::transaction::TransactionalTree;
type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, StoreError>;

/// The trees of the batch's transaction.
struct Tx<'a> {
    p: &'a TxTree,
    dp: &'a TxTree,
    h: &'a TxTree,
    w: &'a TxTree,
    o: &'a TxTree,
    a: &'a TxTree,
}

/// One check inside the batch's transaction.
fn apply_check(prepared: &Prepared<'_>, tx: Tx<'_>) -> TxResult<Vec<OutboxEntry>> {
    let Tx { p, dp, h, w, o, a } = tx;
    let check = prepared.check;
    let url = check.product.url.as_str();
    let mut queued = Vec::new();
    // Every watch went while the page was fetched: nothing to record.
    let Some(old) = p.get(url_key(url))? else {
        return Ok(queued);
    };
    let was_due = due::product_due(&old).map_err(abort)?;
    if was_due != check.product.next_due_ms {
        dp.remove(due::product_key(was_due, url))?;
        dp.insert(prepared.due_key.as_slice(), &[])?;
    }
    p.insert(url_key(url), prepared.product.clone())?;
    if let Some((k, v)) = &prepared.change {
        h.insert(k.clone(), v.clone())?;
    }
    // Whether each watch still exists, read once: a check's messages are mostly about the
    // watches it just updated.
    // A watch whose rule or hold the user changed while the page was fetched is left as the
    // user set it, and the check's messages about it are dropped like a removed watch's:
    // they were decided by the old rule, or for a watch that is now paused.
    let mut exists: HashMap<Vec<u8>, bool> = HashMap::new();
    for ((k, v), checked) in prepared.watches.iter().zip(&check.watches) {
        let there = match w.get(k)? {
            Some(bytes) => {
                let stored: Watch = decode("watch", &bytes).map_err(abort)?;
                stored.rule == checked.rule && stored.on_hold == checked.on_hold
            }
            None => false,
        };
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
pub(super) fn queue_message(
    o: &TxTree,
    a: &TxTree,
    m: &NewOutbox,
    now_ms: u64,
) -> TxResult<Option<OutboxEntry>> {
    if a.get(m.alert_id.as_bytes())?.is_some() {
        return Ok(None);
    }
    let id = o.generate_id()?;
    let entry = m.queued(id, now_ms);
    o.insert(&id.to_be_bytes(), encode(&entry).map_err(abort)?)?;
    a.insert(m.alert_id.as_bytes(), &id.to_be_bytes())?;
    Ok(Some(entry))
}

pub(super) fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

pub(super) fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{added, config, key, message, new_watch, point};
    use super::*;
    use crate::store::{SledStore, Store};

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

        let ready = store.due_messages(100, 10).await.unwrap();
        assert_eq!(ready, queued);
        store
            .schedule_retry(ready[0].id, 700, "429".into())
            .await
            .unwrap();
        let ready = store.due_messages(100, 10).await.unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].alert_id, "notice");
        let later = store.due_messages(700, 10).await.unwrap();
        assert_eq!(
            (later[0].attempts, later[0].last_error.as_deref()),
            (1, Some("429"))
        );
        store.remove_delivered(vec![later[0].id]).await.unwrap();
        store.remove_delivered(vec![later[1].id]).await.unwrap();
        assert!(store.due_messages(u64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(store.stats().await.unwrap().outbox, 0);
    }

    #[tokio::test]
    async fn a_check_read_before_the_user_changed_a_watch_leaves_the_change_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        let conv = key("c");
        let add = |u: &'static str| new_watch(&conv, u);
        let w1 = added(
            store
                .add_watch(add("https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let url2 = "https://shop.example/p/1?x=2";
        let w2 = added(store.add_watch(add(url2), 10).await.unwrap());
        let product = store.product(&w1.url).await.unwrap().unwrap();
        // The check read both watches; then the user changed one and paused the other.
        let new_rule = crate::domain::Rule::Below {
            amount: rust_decimal::Decimal::from(5),
        };
        let (_, changed) = store
            .change_rule(&conv, w1.id, new_rule)
            .await
            .unwrap()
            .unwrap();
        let held = store.set_on_hold(&conv, &[w2.id], true).await.unwrap();
        let (mut s1, mut s2) = (w1.clone(), w2.clone());
        s1.trigger.fired = true;
        s2.trigger.fired = true;
        let queued = store
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![s1, s2],
                messages: vec![
                    message("alert-1", &conv, Some(w1.id)),
                    message("alert-2", &conv, Some(w2.id)),
                ],
                now_ms: 100,
            })
            .await
            .unwrap();
        assert!(queued.is_empty(), "{queued:?}");
        assert_eq!(
            store.watches(&conv).await.unwrap(),
            [changed, held[0].clone()]
        );
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
}
