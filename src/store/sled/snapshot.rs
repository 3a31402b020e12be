//! The whole store read out ([`Store::snapshot`](crate::store::Store::snapshot)) and
//! written back into an empty one in a single transaction
//! ([`Store::restore_snapshot`](crate::store::Store::restore_snapshot)): the operator's
//! export and import.
//!
//! Beside the store's other methods because a restore writes every tree at once and
//! renumbers ids, which no other change does. Its tests are in `tests.rs`.

use std::collections::{HashMap, HashSet};

use sled::transaction::Transactional;

use super::check::tx_error;
use super::due;
use super::integrity::{count, Delta};
use super::{io, SledStore};
use crate::domain::{OutboxEntry, Watch};
use crate::inbound::activity::ConversationReference;
use crate::store::codec::{conversation_key, decode, encode, url_key, url_key_with, watch_key};
use crate::store::{Snapshot, StoreError, StoredConversation, StoredProduct};

impl SledStore {
    pub(super) fn snapshot_sync(&self) -> Result<Snapshot, StoreError> {
        let mut conversations = Vec::with_capacity(self.references.len());
        for item in self.references.iter() {
            let (key, value) = item.map_err(io)?;
            let reference: ConversationReference = decode("reference", &value)?;
            let unreachable = match self.unreachable.get(&key).map_err(io)? {
                Some(bytes) => Some(decode("unreachable mark", &bytes)?),
                None => None,
            };
            conversations.push(StoredConversation {
                reference,
                unreachable,
            });
        }
        let mut products = Vec::with_capacity(self.products.len());
        for item in self.products.iter() {
            let (key, value) = item.map_err(io)?;
            // The product's key is the prefix of its history's keys.
            let history = self
                .history
                .scan_prefix(&key)
                .values()
                .map(|v| v.map_err(io).and_then(|b| decode("history point", &b)))
                .collect::<Result<_, _>>()?;
            products.push(StoredProduct {
                product: decode("product", &value)?,
                history,
            });
        }
        let mut watches = self
            .watches
            .iter()
            .values()
            .map(|v| v.map_err(io).and_then(|b| decode::<Watch>("watch", &b)))
            .collect::<Result<Vec<_>, _>>()?;
        watches.sort_by_key(|w| w.id);
        let entries = |tree: &sled::Tree, what: &'static str| {
            tree.iter()
                .values()
                .map(|v| v.map_err(io).and_then(|b| decode::<OutboxEntry>(what, &b)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Snapshot {
            conversations,
            products,
            watches,
            queued: self.queue().queued(usize::MAX)?,
            dead_letters: entries(&self.dead_letters, "dead letter")?,
        })
    }

    /// Renumbers and encodes everything first (a transaction may run its closure more
    /// than once), then writes it in one transaction. Ids come from the store's sequence,
    /// so watches added later sort after the restored ones.
    pub(super) fn restore_sync(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let _guard = self
            .watch_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let trees = [
            &self.references,
            &self.unreachable,
            &self.watches,
            &self.products,
            &self.due_products,
            &self.product_watches,
            &self.history,
            &self.outbox,
            &self.outbox_waiting,
            &self.outbox_due,
            &self.alert_ids,
            &self.dead_letters,
        ];
        if trees.iter().any(|t| !t.is_empty()) {
            return Err(StoreError::NotEmpty {
                path: self.path.clone(),
            });
        }
        let [mut references, mut unreachable, mut watches, mut products, mut due_products, mut product_watches, mut history, mut outbox, mut outbox_waiting, mut outbox_due, mut alert_ids, mut dead_letters] =
            std::array::from_fn::<sled::Batch, 12, _>(|_| sled::Batch::default());

        for c in &snapshot.conversations {
            let key = conversation_key(&c.reference.key());
            references.insert(key.clone(), encode(&c.reference)?);
            if let Some(mark) = &c.unreachable {
                unreachable.insert(key, encode(mark)?);
            }
        }
        // A product given twice is written once, the last one: so is its index key.
        let mut due_at = HashMap::with_capacity(snapshot.products.len());
        for p in &snapshot.products {
            let url = p.product.url.as_str();
            products.insert(url_key(url), encode(&p.product)?);
            due_at.insert(url, p.product.next_due_ms);
            for point in &p.history {
                history.insert(url_key_with(url, point.at_ms), encode(point)?);
            }
        }

        for (url, at) in due_at {
            due_products.insert(due::product_key(at, url), &[]);
        }

        let mut old_watches: Vec<&Watch> = snapshot.watches.iter().collect();
        old_watches.sort_by_key(|w| w.id);
        let mut new_ids = HashMap::with_capacity(old_watches.len());
        for old in old_watches {
            let id = self.db.generate_id().map_err(io)?;
            new_ids.insert(old.id, id);
            let watch = Watch { id, ..old.clone() };
            watches.insert(watch_key(&watch.conversation, id), encode(&watch)?);
            product_watches.insert(
                url_key_with(watch.url.as_str(), id),
                encode(&watch.conversation)?,
            );
        }

        let mut messages: Vec<(&OutboxEntry, bool)> = snapshot
            .queued
            .iter()
            .map(|e| (e, false))
            .chain(snapshot.dead_letters.iter().map(|e| (e, true)))
            .collect();
        messages.sort_by_key(|(e, _)| e.id);
        for (old, dead) in messages {
            let id = self.db.generate_id().map_err(io)?;
            let watch_id = match old.watch_id {
                Some(w) => Some(match new_ids.get(&w) {
                    Some(&new) => new,
                    // A watch removed before the message went: an id of its own, which no
                    // watch will have, keeps the message about a watch that is gone.
                    None => {
                        let fresh = self.db.generate_id().map_err(io)?;
                        new_ids.insert(w, fresh);
                        fresh
                    }
                }),
                None => None,
            };
            let entry = OutboxEntry {
                id,
                watch_id,
                ..old.clone()
            };
            let key = id.to_be_bytes();
            if dead {
                dead_letters.insert(&key, encode(&entry)?);
            } else {
                if due::waits(&entry) {
                    outbox_waiting.insert(&key, encode(&entry)?);
                    outbox_due.insert(&due::message_key(entry.next_attempt_ms, id), &[]);
                } else {
                    outbox.insert(&key, encode(&entry)?);
                }
                alert_ids.insert(entry.alert_id.as_bytes(), &key);
            }
        }

        // The store was empty: the counts grow by what is written (a conversation or product
        // given twice is written once).
        let mut restored = Delta::default();
        let distinct = |keys: Vec<Vec<u8>>| keys.into_iter().collect::<HashSet<_>>().len() as i64;
        restored.add(
            Delta::REFERENCES,
            distinct(
                snapshot
                    .conversations
                    .iter()
                    .map(|c| conversation_key(&c.reference.key()))
                    .collect(),
            ),
        );
        restored.add(
            Delta::PRODUCTS,
            distinct(
                snapshot
                    .products
                    .iter()
                    .map(|p| url_key(p.product.url.as_str()))
                    .collect(),
            ),
        );
        restored.add(Delta::WATCHES, snapshot.watches.len() as i64);
        restored.add(Delta::OUTBOX, snapshot.queued.len() as i64);
        restored.add(Delta::DEAD_LETTERS, snapshot.dead_letters.len() as i64);
        (
            &self.references,
            &self.unreachable,
            &self.watches,
            &self.products,
            &self.due_products,
            &self.product_watches,
            &self.history,
            &self.outbox,
            &self.outbox_waiting,
            &self.outbox_due,
            &self.alert_ids,
            &self.dead_letters,
            &self.meta,
        )
            .transaction(|(r, u, w, p, dp, pw, h, o, ow, od, a, d, m)| {
                r.apply_batch(&references)?;
                u.apply_batch(&unreachable)?;
                w.apply_batch(&watches)?;
                p.apply_batch(&products)?;
                dp.apply_batch(&due_products)?;
                pw.apply_batch(&product_watches)?;
                h.apply_batch(&history)?;
                o.apply_batch(&outbox)?;
                ow.apply_batch(&outbox_waiting)?;
                od.apply_batch(&outbox_due)?;
                a.apply_batch(&alert_ids)?;
                d.apply_batch(&dead_letters)?;
                count(m, restored)?;
                Ok(())
            })
            .map_err(tx_error)
    }
}
