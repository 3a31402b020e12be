//! [`Store`] on PostgreSQL: the sled backend's meaning, method by method, over the tables
//! of `migrations/`.
//!
//! Records are the domain values in the sled backend's envelope (`{"v": 1, …}`) as jsonb;
//! the columns beside them are what the queries select and order on, written from the
//! same values in the same statement. A committed transaction is durable (the server's
//! default `synchronous_commit`), so every method is durable when it returns and `flush`
//! has nothing to wait for.
//!
//! Concurrency: several replicas may share the database, so what sled serialises with its
//! in-process `watch_writes` mutex is serialised here with transaction-scoped advisory
//! locks: one per conversation (`add_watch`'s duplicate and limit checks, its hold and
//! reachability changes) and one per product URL (a product created by one watch and
//! dropped with another's last, or checked meanwhile). Locks are taken conversation first,
//! then URLs in sorted order, and rows of several watches are locked in id order, so two
//! transactions never wait on each other in a cycle.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Object, Pool, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::Json;
use tokio_postgres::{IsolationLevel, Row};

use super::replicas::NOW_MS;
use super::{migrate, PgError, PostgresConfig};
use crate::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, ProductUrl, Rule,
    Unreachable, Watch,
};
use crate::inbound::activity::{ConversationKey, ConversationReference};
use crate::store::{
    AddWatch, Recipient, ReferenceChange, Replicas, Snapshot, Store, StoreError, StoreFuture,
    StoreStats, StoredConversation, StoredProduct, DELIVERY_LEASE, HOST_LEASE, RECORD_VERSION,
};

/// The first key of the two-key advisory locks: one space per kind of thing locked, apart
/// from the migration lock's single 64-bit key.
const CONVERSATION_LOCK: i32 = 0x7077_0001;
const PRODUCT_LOCK: i32 = 0x7077_0002;
const RESTORE_LOCK: i32 = 0x7077_0003;

/// The store over a pool of connections to a migrated schema.
pub struct PgStore {
    pool: Pool,
    /// This process among the replicas sharing the database (`Replicas::holder`).
    holder: String,
    /// What `StoreError::NotEmpty` names instead of a directory (never the connection
    /// string, which may hold a password).
    place: std::path::PathBuf,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("place", &self.place)
            .finish()
    }
}

impl PgStore {
    /// Migrates the schema (refusing one a newer build migrated), then opens the pool: a
    /// store is never used on a schema it does not know.
    pub async fn open(config: &PostgresConfig) -> Result<PgStore, PgError> {
        migrate::connect_and_apply(config).await?;
        let place = format!(
            "PostgreSQL schema {}",
            config
                .schema
                .as_deref()
                .unwrap_or("(the connection's search_path)")
        );
        Ok(PgStore {
            pool: config.pool()?,
            holder: holder_name(),
            place: place.into(),
        })
    }

    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(io)
    }
}

/// The machine, the process and a random part (a pid is reused, by a restarted container
/// too), so that no two processes ever hold a lease as one.
fn holder_name() -> String {
    use crate::random::RandomSource;
    let uname = rustix::system::uname();
    let machine = uname.nodename().to_string_lossy();
    let nonce = crate::random::SplitMix64::for_process(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        0x6c65_6173,
    )
    .next_u64();
    format!("{machine}:{}:{:08x}", std::process::id(), nonce as u32)
}

/// A driver or pool failure: the storage is unavailable (`StoreError::is_unavailable`).
pub(super) fn io<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Io(Arc::new(e))
}

/// The sled backend's envelope around a record, so that both backends store the same JSON
/// (and a later schema can tell record versions apart the same way).
#[derive(Debug, Serialize)]
struct Record<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Calls in flight at once in a restore: enough to keep the server busy, few enough that
/// the parameters of one batch stay small.
const IN_FLIGHT: usize = 256;

/// Runs `statement` once per row, with `params` of each, several calls in flight at once:
/// tokio-postgres pipelines the calls of one connection that are polled together, so a
/// restore of a million rows does not wait a round trip for each. The order in which calls
/// in flight together are sent is the futures library's, so the rows must not depend on one
/// another (`last_per_key`).
async fn execute_each<R: Sync>(
    tx: &Transaction<'_>,
    statement: &tokio_postgres::Statement,
    rows: &[R],
    params: impl Fn(&R) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)>,
) -> Result<(), StoreError> {
    for batch in rows.chunks(IN_FLIGHT) {
        let params: Vec<_> = batch.iter().map(&params).collect();
        futures_util::future::try_join_all(params.iter().map(|p| tx.execute(statement, p)))
            .await
            .map_err(io)?;
    }
    Ok(())
}

/// The last row of each key, in the order of those last rows.
fn last_per_key<R, K: std::hash::Hash + Eq>(rows: Vec<R>, key: impl Fn(&R) -> K) -> Vec<R> {
    let mut seen = HashSet::new();
    let mut kept: Vec<R> = rows
        .into_iter()
        .rev()
        .filter(|r| seen.insert(key(r)))
        .collect();
    kept.reverse();
    kept
}

fn record<T: Serialize + Debug>(body: &T) -> Json<Record<'_, T>> {
    Json(Record {
        v: RECORD_VERSION,
        body,
    })
}

/// Column `idx` of `row` as a domain value; a record that does not decode is corrupt.
pub(super) fn decode<T: DeserializeOwned>(
    row: &Row,
    idx: usize,
    what: &'static str,
) -> Result<T, StoreError> {
    let Json(value): Json<serde_json::Value> = row.try_get(idx).map_err(io)?;
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        what,
        source: Arc::new(e),
    })
}

fn decode_all<T: DeserializeOwned>(rows: &[Row], what: &'static str) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|r| decode(r, 0, what)).collect()
}

/// Times and ids are `u64` in the domain and `bigint` here. Times past `i64::MAX` ms (a
/// caller's "whenever": `u64::MAX`) compare as the largest bigint, which no stored time
/// exceeds.
pub(super) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An id from a sequence (always positive) back to the domain's `u64`.
pub(super) fn id(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Ids the caller names; one beyond bigint cannot be stored, so it matches nothing.
pub(super) fn ids(ids: &[u64]) -> Vec<i64> {
    ids.iter().filter_map(|&n| i64::try_from(n).ok()).collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The text a conversation's advisory lock is hashed from: length-prefixed, so that no
/// two keys make the same text.
fn conversation_lock_text(key: &ConversationKey) -> String {
    format!(
        "{}:{}{}",
        key.channel_id.len(),
        key.channel_id,
        key.conversation_id
    )
}

async fn lock_conversation(
    tx: &impl GenericClient,
    key: &ConversationKey,
) -> Result<(), StoreError> {
    tx.execute(
        &tx.prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .await
            .map_err(io)?,
        &[&CONVERSATION_LOCK, &conversation_lock_text(key)],
    )
    .await
    .map_err(io)?;
    Ok(())
}

/// Locks the products' URLs, in sorted order (see the module's note on cycles).
async fn lock_products(tx: &impl GenericClient, urls: &[&str]) -> Result<(), StoreError> {
    let mut urls: Vec<&str> = urls.to_vec();
    urls.sort_unstable();
    urls.dedup();
    for url in urls {
        tx.execute(
            &tx.prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .await
                .map_err(io)?,
            &[&PRODUCT_LOCK, &url],
        )
        .await
        .map_err(io)?;
    }
    Ok(())
}

/// `n` new ids of `sequence` (a constant name), increasing.
async fn next_ids(
    tx: &impl GenericClient,
    sequence: &str,
    n: usize,
) -> Result<Vec<u64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            &format!("SELECT nextval('{sequence}') FROM generate_series(1, $1::bigint)"),
            &[&limit(n)],
        )
        .await
        .map_err(io)?;
    let mut out: Vec<u64> = rows.iter().map(|r| id(r.get(0))).collect();
    out.sort_unstable();
    Ok(out)
}

/// Queues messages (each as a new entry due at `now_ms`), skipping an alert id already
/// queued, or given twice here (the first is kept), and, when `skip_unreachable`, a
/// conversation marked unreachable. One statement; returns the entries queued, in order.
async fn queue(
    tx: &impl GenericClient,
    messages: &[&NewOutbox],
    now_ms: u64,
    skip_unreachable: bool,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut seen = HashSet::with_capacity(messages.len());
    let messages: Vec<&NewOutbox> = messages
        .iter()
        .copied()
        .filter(|m| seen.insert(m.alert_id.as_str()))
        .collect();
    // Ids are taken first because the record holds its own id; an alert skipped below
    // leaves a gap in the sequence, which only order, not density, matters for.
    let new_ids = next_ids(tx, "outbox_ids", messages.len()).await?;
    let entries: Vec<OutboxEntry> = messages
        .iter()
        .zip(&new_ids)
        .map(|(m, &id)| m.queued(id, now_ms))
        .collect();
    if entries.is_empty() {
        return Ok(entries);
    }
    let col_ids: Vec<i64> = entries.iter().map(|e| big(e.id)).collect();
    let alerts: Vec<&str> = entries.iter().map(|e| e.alert_id.as_str()).collect();
    let channels: Vec<&str> = entries
        .iter()
        .map(|e| e.conversation.channel_id.as_str())
        .collect();
    let convs: Vec<&str> = entries
        .iter()
        .map(|e| e.conversation.conversation_id.as_str())
        .collect();
    let records: Vec<Json<Record<'_, OutboxEntry>>> = entries.iter().map(record).collect();
    let rows = tx
        .query(&tx.prepare_cached("INSERT INTO outbox (id, alert_id, channel_id, conversation_id, next_attempt_ms, entry) \
             SELECT m.id, m.alert_id, m.channel_id, m.conversation_id, $5, m.entry \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $6::jsonb[]) \
                  AS m(id, alert_id, channel_id, conversation_id, entry) \
             WHERE NOT ($7 AND EXISTS (SELECT 1 FROM unreachable u \
                 WHERE u.channel_id = m.channel_id AND u.conversation_id = m.conversation_id)) \
             ORDER BY m.id \
             ON CONFLICT (alert_id) WHERE dead_ms IS NULL DO NOTHING \
             RETURNING id").await.map_err(io)?,
            &[
                &col_ids,
                &alerts,
                &channels,
                &convs,
                &big(now_ms),
                &records,
                &skip_unreachable,
            ],
        )
        .await
        .map_err(io)?;
    let queued: HashSet<u64> = rows.iter().map(|r| id(r.get(0))).collect();
    Ok(entries
        .into_iter()
        .filter(|e| queued.contains(&e.id))
        .collect())
}

/// The conversation's watches `ids` by id; with `lock`, their rows locked in id order.
async fn conversation_watches(
    tx: &impl GenericClient,
    key: &ConversationKey,
    wanted: &[u64],
    lock: bool,
) -> Result<HashMap<u64, Watch>, StoreError> {
    let sql = "SELECT watch FROM watches \
               WHERE channel_id = $1 AND conversation_id = $2 AND id = ANY($3) ORDER BY id";
    let rows = tx
        .query(
            &if lock {
                format!("{sql} FOR UPDATE")
            } else {
                sql.to_owned()
            },
            &[&key.channel_id, &key.conversation_id, &ids(wanted)],
        )
        .await
        .map_err(io)?;
    Ok(decode_all::<Watch>(&rows, "watch")?
        .into_iter()
        .map(|w| (w.id, w))
        .collect())
}

async fn write_watch(tx: &impl GenericClient, watch: &Watch) -> Result<(), StoreError> {
    tx.execute(
        &tx.prepare_cached("UPDATE watches SET watch = $2 WHERE id = $1")
            .await
            .map_err(io)?,
        &[&big(watch.id), &record(watch)],
    )
    .await
    .map_err(io)?;
    Ok(())
}

/// Sets `paused` on every watch of the conversation and records (or clears) the mark, in
/// the caller's transaction; returns how many watches changed.
async fn set_reachability(
    tx: &impl GenericClient,
    key: &ConversationKey,
    mark: Option<&Unreachable>,
) -> Result<usize, StoreError> {
    lock_conversation(tx, key).await?;
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT watch FROM watches WHERE channel_id = $1 AND conversation_id = $2 \
             ORDER BY id FOR UPDATE",
            )
            .await
            .map_err(io)?,
            &[&key.channel_id, &key.conversation_id],
        )
        .await
        .map_err(io)?;
    let paused = mark.is_some();
    let mut changed = 0;
    for mut w in decode_all::<Watch>(&rows, "watch")? {
        if w.paused != paused {
            w.paused = paused;
            write_watch(tx, &w).await?;
            changed += 1;
        }
    }
    match mark {
        Some(mark) => tx
            .execute(&tx.prepare_cached("INSERT INTO unreachable (channel_id, conversation_id, mark) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel_id, conversation_id) DO UPDATE SET mark = EXCLUDED.mark").await.map_err(io)?,
                &[&key.channel_id, &key.conversation_id, &record(mark)],
            )
            .await
            .map_err(io)?,
        None => tx
            .execute(&tx.prepare_cached("DELETE FROM unreachable WHERE channel_id = $1 AND conversation_id = $2").await.map_err(io)?,
                &[&key.channel_id, &key.conversation_id],
            )
            .await
            .map_err(io)?,
    };
    Ok(changed)
}

impl PgStore {
    async fn transaction<'c>(&self, client: &'c mut Object) -> Result<Transaction<'c>, StoreError> {
        client.transaction().await.map_err(io)
    }

    async fn upsert_reference_tx(
        &self,
        reference: &ConversationReference,
    ) -> Result<ReferenceChange, StoreError> {
        let key = reference.key();
        let mut client = self.client().await?;
        // Nearly every turn finds its conversation stored as it is and reachable: one
        // read, without a transaction or a row lock (which would write), answers it. The
        // statement is prepared once per connection: most of a turn's cost on the server
        // is otherwise parsing and planning it again.
        let unchanged = client
            .prepare_cached(
                "SELECT c.reference, EXISTS (SELECT 1 FROM unreachable u \
                 WHERE u.channel_id = c.channel_id AND u.conversation_id = c.conversation_id) \
                 FROM conversations c WHERE c.channel_id = $1 AND c.conversation_id = $2",
            )
            .await
            .map_err(io)?;
        if let Some(row) = client
            .query_opt(&unchanged, &[&key.channel_id, &key.conversation_id])
            .await
            .map_err(io)?
        {
            let same = decode::<ConversationReference>(&row, 0, "reference")
                .is_ok_and(|stored| stored == *reference);
            if same && !row.get::<_, bool>(1) {
                return Ok(ReferenceChange::Unchanged);
            }
        }
        let tx = self.transaction(&mut client).await?;
        let old = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT reference FROM conversations \
                 WHERE channel_id = $1 AND conversation_id = $2 FOR UPDATE",
                )
                .await
                .map_err(io)?,
                &[&key.channel_id, &key.conversation_id],
            )
            .await
            .map_err(io)?;
        let change = match old {
            None => ReferenceChange::New,
            Some(row) => match decode::<ConversationReference>(&row, 0, "reference") {
                Ok(prev) if prev == *reference => ReferenceChange::Unchanged,
                Ok(prev) if prev.service_url == reference.service_url => ReferenceChange::Updated,
                // A record we cannot read is replaced, like a new one.
                _ => ReferenceChange::ServiceUrlChanged,
            },
        };
        if change != ReferenceChange::Unchanged {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO conversations (channel_id, conversation_id, reference) \
                 VALUES ($1, $2, $3) ON CONFLICT (channel_id, conversation_id) \
                 DO UPDATE SET reference = EXCLUDED.reference",
                )
                .await
                .map_err(io)?,
                &[&key.channel_id, &key.conversation_id, &record(reference)],
            )
            .await
            .map_err(io)?;
        }
        // The conversation wrote again: the channel takes messages once more, so its
        // paused watches resume (in the same transaction as the reference).
        let marked = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT 1 FROM unreachable WHERE channel_id = $1 AND conversation_id = $2",
                )
                .await
                .map_err(io)?,
                &[&key.channel_id, &key.conversation_id],
            )
            .await
            .map_err(io)?
            .is_some();
        let resumed = if marked {
            Some(set_reachability(&tx, &key, None).await?)
        } else {
            None
        };
        tx.commit().await.map_err(io)?;
        if let Some(watches) = resumed {
            tracing::info!(
                channel = %crate::shown::Shown::id(&key.channel_id),
                conversation = %crate::shown::Shown::id(&key.conversation_id),
                watches,
                "conversation reachable again; its watches resume"
            );
        }
        Ok(change)
    }

    async fn add_watch_tx(&self, new: NewWatch, max: usize) -> Result<AddWatch, StoreError> {
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        // Held to the commit: a concurrent add for the same conversation waits here, then
        // sees this one's watch in its counts.
        lock_conversation(&tx, &new.conversation).await?;
        let row = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT count(*), \
                    (SELECT watch FROM watches WHERE channel_id = $1 AND conversation_id = $2 \
                     AND url = $3 ORDER BY id LIMIT 1) \
                 FROM watches WHERE channel_id = $1 AND conversation_id = $2",
                )
                .await
                .map_err(io)?,
                &[
                    &new.conversation.channel_id,
                    &new.conversation.conversation_id,
                    &new.url.as_str(),
                ],
            )
            .await
            .map_err(io)?;
        if row
            .try_get::<_, Option<Json<serde_json::Value>>>(1)
            .map_err(io)?
            .is_some()
        {
            return Ok(AddWatch::Duplicate(decode(&row, 1, "watch")?));
        }
        let count: i64 = row.try_get(0).map_err(io)?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max {
            return Ok(AddWatch::LimitReached { max });
        }
        let id = next_ids(&tx, "watch_ids", 1)
            .await?
            .first()
            .copied()
            .unwrap_or_default();
        let watch = new.into_watch(id);
        let url = watch.url.as_str();
        // Against a concurrent removal of the product's last watch (`remove_watches`).
        lock_products(&tx, &[url]).await?;
        let product = Product::new(watch.url.clone(), watch.created_at_ms);
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO products (url, next_due_ms, product) VALUES ($1, $2, $3) \
             ON CONFLICT (url) DO NOTHING",
            )
            .await
            .map_err(io)?,
            &[&url, &big(product.next_due_ms), &record(&product)],
        )
        .await
        .map_err(io)?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO watches (id, channel_id, conversation_id, url, watch) \
             VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .map_err(io)?,
            &[
                &big(watch.id),
                &watch.conversation.channel_id,
                &watch.conversation.conversation_id,
                &url,
                &record(&watch),
            ],
        )
        .await
        .map_err(io)?;
        tx.commit().await.map_err(io)?;
        Ok(AddWatch::Added(watch))
    }

    async fn remove_watches_tx(
        &self,
        key: &ConversationKey,
        wanted: &[u64],
    ) -> Result<Vec<Watch>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        lock_conversation(&tx, key).await?;
        // Read without locking the rows: the product locks come first, as in
        // `record_check` (which locks the product, then its watches' rows), or the two
        // could each hold what the other waits for. The conversation's lock keeps the
        // watches from going meanwhile.
        let found = conversation_watches(&tx, key, wanted, false).await?;
        let urls: Vec<&str> = found.values().map(|w| w.url.as_str()).collect();
        lock_products(&tx, &urls).await?;
        let mut removed = Vec::new();
        let mut done = HashSet::new();
        // In the order asked, each once, as sled does.
        for n in wanted {
            let Some(watch) = found.get(n) else { continue };
            if !done.insert(*n) {
                continue;
            }
            tx.execute(
                &tx.prepare_cached("DELETE FROM watches WHERE id = $1")
                    .await
                    .map_err(io)?,
                &[&big(watch.id)],
            )
            .await
            .map_err(io)?;
            removed.push(watch.clone());
        }
        // The last watch of a product takes the product and its history with it.
        let mut urls = urls;
        urls.sort_unstable();
        urls.dedup();
        for url in urls {
            let gone = tx
                .execute(
                    &tx.prepare_cached(
                        "DELETE FROM products WHERE url = $1 \
                     AND NOT EXISTS (SELECT 1 FROM watches WHERE url = $1)",
                    )
                    .await
                    .map_err(io)?,
                    &[&url],
                )
                .await
                .map_err(io)?;
            if gone > 0 {
                tx.execute(
                    &tx.prepare_cached("DELETE FROM history WHERE url = $1")
                        .await
                        .map_err(io)?,
                    &[&url],
                )
                .await
                .map_err(io)?;
            }
        }
        tx.commit().await.map_err(io)?;
        Ok(removed)
    }

    /// Rewrites watches of the conversation in one transaction, under its lock;
    /// `change` returns `None` to leave a watch as it is. Returns `(before, after)` for
    /// every watch found, in the order asked, after equal to before when unchanged.
    async fn rewrite_watches(
        &self,
        key: &ConversationKey,
        wanted: &[u64],
        change: impl Fn(&Watch) -> Option<Watch>,
    ) -> Result<Vec<(Watch, Watch)>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        lock_conversation(&tx, key).await?;
        let mut stored = conversation_watches(&tx, key, wanted, true).await?;
        let mut found = Vec::with_capacity(wanted.len());
        for n in wanted {
            let Some(before) = stored.get(n).cloned() else {
                continue;
            };
            let after = match change(&before) {
                Some(after) if after != before => {
                    write_watch(&tx, &after).await?;
                    // A later mention of the same id sees the change, as in sled.
                    stored.insert(*n, after.clone());
                    after
                }
                _ => before.clone(),
            };
            found.push((before, after));
        }
        tx.commit().await.map_err(io)?;
        Ok(found)
    }

    async fn record_check_tx(&self, check: CheckRecord) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        let url = check.product.url.as_str();
        // Serialised with the removal of the product's last watch, which deletes the
        // product and its watches in the other order.
        lock_products(&tx, &[url]).await?;
        let updated = tx
            .execute(
                &tx.prepare_cached(
                    "UPDATE products SET next_due_ms = $2, product = $3, \
                     claimed_by = NULL, claimed_until_ms = NULL WHERE url = $1",
                )
                .await
                .map_err(io)?,
                &[
                    &url,
                    &big(check.product.next_due_ms),
                    &record(&check.product),
                ],
            )
            .await
            .map_err(io)?;
        if updated == 0 {
            // Every watch went while the page was fetched: nothing to record.
            return Ok(Vec::new());
        }
        if let Some(point) = &check.change {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO history (url, at_ms, point) VALUES ($1, $2, $3) \
                 ON CONFLICT (url, at_ms) DO UPDATE SET point = EXCLUDED.point",
                )
                .await
                .map_err(io)?,
                &[&url, &big(point.at_ms), &record(point)],
            )
            .await
            .map_err(io)?;
        }
        // The watches as stored now, rows locked in id order. A watch removed meanwhile,
        // or whose rule or hold the user changed while the page was fetched, is left as
        // it is and the check's messages about it are dropped: they were decided by the
        // old rule, or for a watch that is now paused.
        let mut wanted: Vec<u64> = check.watches.iter().map(|w| w.id).collect();
        wanted.extend(check.messages.iter().filter_map(|m| m.watch_id));
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT watch FROM watches WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                )
                .await
                .map_err(io)?,
                &[&ids(&wanted)],
            )
            .await
            .map_err(io)?;
        let stored: HashMap<u64, Watch> = decode_all::<Watch>(&rows, "watch")?
            .into_iter()
            .map(|w| (w.id, w))
            .collect();
        let there = |id: u64, conversation: &ConversationKey| {
            stored.get(&id).filter(|s| s.conversation == *conversation)
        };
        // Keyed as sled's watch keys are: a watch id of another conversation is not there.
        let mut exists: HashMap<(&ConversationKey, u64), bool> = HashMap::new();
        let mut kept_watches = Vec::with_capacity(check.watches.len());
        for checked in &check.watches {
            let kept = there(checked.id, &checked.conversation)
                .is_some_and(|s| s.rule == checked.rule && s.on_hold == checked.on_hold);
            if kept {
                kept_watches.push(checked);
            }
            exists.insert((&checked.conversation, checked.id), kept);
        }
        // One statement for all of them (a product's ten watches were ten round trips).
        if !kept_watches.is_empty() {
            let watch_ids: Vec<i64> = kept_watches.iter().map(|w| big(w.id)).collect();
            let records: Vec<Json<Record<'_, Watch>>> =
                kept_watches.iter().map(|w| record(*w)).collect();
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE watches SET watch = v.watch \
                     FROM unnest($1::bigint[], $2::jsonb[]) AS v(id, watch) \
                     WHERE watches.id = v.id",
                )
                .await
                .map_err(io)?,
                &[&watch_ids, &records],
            )
            .await
            .map_err(io)?;
        }
        let messages: Vec<&NewOutbox> = check
            .messages
            .iter()
            .filter(|m| match m.watch_id {
                Some(id) => *exists
                    .entry((&m.conversation, id))
                    .or_insert_with(|| there(id, &m.conversation).is_some()),
                None => true,
            })
            .collect();
        let queued = queue(&tx, &messages, check.now_ms, false).await?;
        tx.commit().await.map_err(io)?;
        Ok(queued)
    }

    async fn requeue_tx(&self, id: u64, now_ms: u64) -> Result<bool, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        let Some(row) = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT alert_id FROM outbox WHERE id = $1 AND dead_ms IS NOT NULL FOR UPDATE",
                )
                .await
                .map_err(io)?,
                &[&id],
            )
            .await
            .map_err(io)?
        else {
            return Ok(false);
        };
        let alert_id: String = row.try_get(0).map_err(io)?;
        // The alert queued again since it died (the same event recorded anew): that entry
        // will deliver it, and the unique alert id allows one queued; the dead letter goes.
        let requeued = tx
            .execute(
                &tx.prepare_cached(
                    "UPDATE outbox SET dead_ms = NULL, next_attempt_ms = $2, \
                    entry = (entry - 'dead_ms') \
                        || jsonb_build_object('attempts', 0, 'next_attempt_ms', $2::bigint) \
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM outbox q \
                     WHERE q.alert_id = $3 AND q.dead_ms IS NULL)",
                )
                .await
                .map_err(io)?,
                &[&id, &big(now_ms), &alert_id],
            )
            .await
            .map_err(io)?;
        if requeued == 0 {
            tx.execute(
                &tx.prepare_cached("DELETE FROM outbox WHERE id = $1")
                    .await
                    .map_err(io)?,
                &[&id],
            )
            .await
            .map_err(io)?;
        }
        tx.commit().await.map_err(io)?;
        Ok(true)
    }

    async fn recipients_q(
        &self,
        wanted: Vec<(ConversationKey, bool)>,
    ) -> Result<Vec<Recipient>, StoreError> {
        let client = self.client().await?;
        let channels: Vec<&str> = wanted.iter().map(|(k, _)| k.channel_id.as_str()).collect();
        let convs: Vec<&str> = wanted
            .iter()
            .map(|(k, _)| k.conversation_id.as_str())
            .collect();
        // One query for every reference and mark, in the order asked.
        let rows = client
            .query(&client.prepare_cached("SELECT c.reference, u.mark \
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(channel_id, conversation_id, n) \
                 LEFT JOIN conversations c USING (channel_id, conversation_id) \
                 LEFT JOIN unreachable u USING (channel_id, conversation_id) \
                 ORDER BY k.n").await.map_err(io)?,
                &[&channels, &convs],
            )
            .await
            .map_err(io)?;
        let with_watches: Vec<&ConversationKey> =
            wanted.iter().filter(|(_, w)| *w).map(|(k, _)| k).collect();
        let mut watches: HashMap<ConversationKey, Vec<Watch>> = HashMap::new();
        if !with_watches.is_empty() {
            let channels: Vec<&str> = with_watches.iter().map(|k| k.channel_id.as_str()).collect();
            let convs: Vec<&str> = with_watches
                .iter()
                .map(|k| k.conversation_id.as_str())
                .collect();
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT w.watch FROM watches w \
                     WHERE (w.channel_id, w.conversation_id) IN \
                        (SELECT * FROM unnest($1::text[], $2::text[])) \
                     ORDER BY w.id",
                        )
                        .await
                        .map_err(io)?,
                    &[&channels, &convs],
                )
                .await
                .map_err(io)?;
            for w in decode_all::<Watch>(&rows, "watch")? {
                watches.entry(w.conversation.clone()).or_default().push(w);
            }
        }
        let mut out = Vec::with_capacity(wanted.len());
        for ((key, with), row) in wanted.iter().zip(&rows) {
            let reference: Option<Json<serde_json::Value>> = row.try_get(0).map_err(io)?;
            let mark: Option<Json<serde_json::Value>> = row.try_get(1).map_err(io)?;
            out.push(Recipient {
                reference: match reference {
                    Some(_) => Some(decode(row, 0, "reference")?),
                    None => None,
                },
                unreachable: match mark {
                    Some(_) => Some(decode(row, 1, "unreachable mark")?),
                    None => None,
                },
                watches: if *with {
                    watches.get(key).cloned().unwrap_or_default()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(out)
    }

    async fn snapshot_q(&self) -> Result<Snapshot, StoreError> {
        let mut client = self.client().await?;
        // One point in time, which sled's export cannot give and costs nothing here.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(io)?;
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT c.reference, u.mark FROM conversations c \
                 LEFT JOIN unreachable u USING (channel_id, conversation_id) \
                 ORDER BY octet_length(c.channel_id), c.channel_id COLLATE \"C\", \
                    octet_length(c.conversation_id), c.conversation_id COLLATE \"C\"",
                )
                .await
                .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let mut conversations = Vec::with_capacity(rows.len());
        for row in &rows {
            let mark: Option<Json<serde_json::Value>> = row.try_get(1).map_err(io)?;
            conversations.push(StoredConversation {
                reference: decode(row, 0, "reference")?,
                unreachable: match mark {
                    Some(_) => Some(decode(row, 1, "unreachable mark")?),
                    None => None,
                },
            });
        }
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT url, point FROM history ORDER BY url, at_ms")
                    .await
                    .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let mut history: HashMap<String, Vec<ChangePoint>> = HashMap::new();
        for row in &rows {
            let url: String = row.try_get(0).map_err(io)?;
            history
                .entry(url)
                .or_default()
                .push(decode(row, 1, "history point")?);
        }
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT url, product FROM products \
                 ORDER BY octet_length(url), url COLLATE \"C\"",
                )
                .await
                .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let mut products = Vec::with_capacity(rows.len());
        for row in &rows {
            let url: String = row.try_get(0).map_err(io)?;
            products.push(StoredProduct {
                product: decode(row, 1, "product")?,
                history: history.remove(&url).unwrap_or_default(),
            });
        }
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT watch FROM watches ORDER BY id")
                    .await
                    .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let watches = decode_all(&rows, "watch")?;
        let rows = tx
            .query(
                &tx.prepare_cached("SELECT entry FROM outbox WHERE dead_ms IS NULL ORDER BY id")
                    .await
                    .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let queued = decode_all(&rows, "outbox entry")?;
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT entry FROM outbox WHERE dead_ms IS NOT NULL ORDER BY id",
                )
                .await
                .map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?;
        let dead_letters = decode_all(&rows, "dead letter")?;
        tx.commit().await.map_err(io)?;
        Ok(Snapshot {
            conversations,
            products,
            watches,
            queued,
            dead_letters,
        })
    }

    async fn restore_tx(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = self.transaction(&mut client).await?;
        // Two restores at once would both find the store empty.
        tx.execute(
            &tx.prepare_cached("SELECT pg_advisory_xact_lock($1, 0)")
                .await
                .map_err(io)?,
            &[&RESTORE_LOCK],
        )
        .await
        .map_err(io)?;
        let any: bool = tx
            .query_one(&tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations) OR EXISTS (SELECT 1 FROM unreachable) \
                 OR EXISTS (SELECT 1 FROM watches) OR EXISTS (SELECT 1 FROM products) \
                 OR EXISTS (SELECT 1 FROM history) OR EXISTS (SELECT 1 FROM outbox)").await.map_err(io)?,
                &[],
            )
            .await
            .map_err(io)?
            .try_get(0)
            .map_err(io)?;
        if any {
            return Err(StoreError::NotEmpty {
                path: self.place.clone(),
            });
        }
        // Something given twice is written once, the last one, as sled's batches do
        // (`last_per_key`, since the rows are sent several at a time).
        let conversation = tx
            .prepare(
                "INSERT INTO conversations (channel_id, conversation_id, reference) \
                 VALUES ($1, $2, $3) ON CONFLICT (channel_id, conversation_id) \
                 DO UPDATE SET reference = EXCLUDED.reference",
            )
            .await
            .map_err(io)?;
        let mark = tx
            .prepare(
                "INSERT INTO unreachable (channel_id, conversation_id, mark) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel_id, conversation_id) DO UPDATE SET mark = EXCLUDED.mark",
            )
            .await
            .map_err(io)?;
        let rows: Vec<_> = snapshot
            .conversations
            .iter()
            .map(|c| {
                let r = &c.reference;
                (r.channel_id.as_str(), r.conversation.id.as_str(), record(r))
            })
            .collect();
        let rows = last_per_key(rows, |(channel, id, _)| (*channel, *id));
        execute_each(&tx, &conversation, &rows, |(channel, id, reference)| {
            vec![channel, id, reference]
        })
        .await?;
        let rows: Vec<_> = snapshot
            .conversations
            .iter()
            .filter_map(|c| {
                let r = &c.reference;
                let mark = record(c.unreachable.as_ref()?);
                Some((r.channel_id.as_str(), r.conversation.id.as_str(), mark))
            })
            .collect();
        let rows = last_per_key(rows, |(channel, id, _)| (*channel, *id));
        execute_each(&tx, &mark, &rows, |(channel, id, m)| vec![channel, id, m]).await?;
        let product = tx
            .prepare(
                "INSERT INTO products (url, next_due_ms, product) VALUES ($1, $2, $3) \
                 ON CONFLICT (url) DO UPDATE \
                 SET next_due_ms = EXCLUDED.next_due_ms, product = EXCLUDED.product",
            )
            .await
            .map_err(io)?;
        let point = tx
            .prepare(
                "INSERT INTO history (url, at_ms, point) VALUES ($1, $2, $3) \
                 ON CONFLICT (url, at_ms) DO UPDATE SET point = EXCLUDED.point",
            )
            .await
            .map_err(io)?;
        let rows: Vec<_> = snapshot
            .products
            .iter()
            .map(|p| {
                let p = &p.product;
                (p.url.as_str(), big(p.next_due_ms), record(p))
            })
            .collect();
        let rows = last_per_key(rows, |(url, _, _)| *url);
        execute_each(&tx, &product, &rows, |(url, due, product)| {
            vec![url, due, product]
        })
        .await?;
        let rows: Vec<_> = snapshot
            .products
            .iter()
            .flat_map(|p| {
                let url = p.product.url.as_str();
                p.history
                    .iter()
                    .map(move |h| (url, big(h.at_ms), record(h)))
            })
            .collect();
        let rows = last_per_key(rows, |(url, at, _)| (*url, *at));
        execute_each(&tx, &point, &rows, |(url, at, point)| vec![url, at, point]).await?;

        // Renumbered in the store's sequences, keeping their order.
        let mut old_watches: Vec<&Watch> = snapshot.watches.iter().collect();
        old_watches.sort_by_key(|w| w.id);
        let watch_ids = next_ids(&tx, "watch_ids", old_watches.len()).await?;
        let mut new_ids = HashMap::with_capacity(old_watches.len());
        let insert_watch = tx
            .prepare(
                "INSERT INTO watches (id, channel_id, conversation_id, url, watch) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .map_err(io)?;
        // Renumbered copies a batch at a time: a million watches are not held twice.
        for (old, ids) in old_watches
            .chunks(IN_FLIGHT)
            .zip(watch_ids.chunks(IN_FLIGHT))
        {
            let watches: Vec<Watch> = old
                .iter()
                .zip(ids)
                .map(|(old, &id)| {
                    new_ids.insert(old.id, id);
                    Watch {
                        id,
                        ..(*old).clone()
                    }
                })
                .collect();
            let rows: Vec<_> = watches
                .iter()
                .map(|w| (big(w.id), w, w.url.as_str(), record(w)))
                .collect();
            execute_each(&tx, &insert_watch, &rows, |(id, w, url, watch)| {
                vec![
                    id,
                    &w.conversation.channel_id,
                    &w.conversation.conversation_id,
                    url,
                    watch,
                ]
            })
            .await?;
        }

        let mut messages: Vec<&OutboxEntry> = snapshot
            .queued
            .iter()
            .chain(&snapshot.dead_letters)
            .collect();
        messages.sort_by_key(|e| e.id);
        let outbox_ids = next_ids(&tx, "outbox_ids", messages.len()).await?;
        // A message whose watch is not in the snapshot (removed before the message went):
        // an id of its own from the watches' sequence, which no watch will have.
        let mut missing: Vec<u64> = messages
            .iter()
            .filter_map(|e| e.watch_id)
            .filter(|w| !new_ids.contains_key(w))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for (old, fresh) in missing
            .iter()
            .zip(next_ids(&tx, "watch_ids", missing.len()).await?)
        {
            new_ids.insert(*old, fresh);
        }
        // A queued alert id given twice (a store that broke the rule) keeps the first.
        let insert_entry = tx
            .prepare(
                "INSERT INTO outbox (id, alert_id, channel_id, conversation_id, \
                    next_attempt_ms, dead_ms, entry) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (alert_id) WHERE dead_ms IS NULL DO NOTHING",
            )
            .await
            .map_err(io)?;
        // The first of a queued alert id, as `ON CONFLICT DO NOTHING` one row after another.
        let mut queued_ids = HashSet::new();
        let messages: Vec<(&OutboxEntry, u64)> = messages
            .into_iter()
            .zip(outbox_ids)
            .filter(|(e, _)| e.dead_ms.is_some() || queued_ids.insert(e.alert_id.as_str()))
            .collect();
        for batch in messages.chunks(IN_FLIGHT) {
            let entries: Vec<OutboxEntry> = batch
                .iter()
                .map(|&(old, id)| OutboxEntry {
                    id,
                    watch_id: old.watch_id.and_then(|w| new_ids.get(&w).copied()),
                    ..old.clone()
                })
                .collect();
            let rows: Vec<_> = entries
                .iter()
                .map(|e| {
                    (
                        big(e.id),
                        e,
                        big(e.next_attempt_ms),
                        e.dead_ms.map(big),
                        record(e),
                    )
                })
                .collect();
            execute_each(&tx, &insert_entry, &rows, |(id, e, next, dead, entry)| {
                vec![
                    id,
                    &e.alert_id,
                    &e.conversation.channel_id,
                    &e.conversation.conversation_id,
                    next,
                    dead,
                    entry,
                ]
            })
            .await?;
        }
        tx.commit().await.map_err(io)
    }
}

impl Store for PgStore {
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange> {
        Box::pin(self.upsert_reference_tx(reference))
    }

    fn reference<'a>(
        &'a self,
        key: &'a ConversationKey,
    ) -> StoreFuture<'a, Option<ConversationReference>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT reference FROM conversations \
                     WHERE channel_id = $1 AND conversation_id = $2",
                    &[&key.channel_id, &key.conversation_id],
                )
                .await
                .map_err(io)?;
            row.map(|r| decode(&r, 0, "reference")).transpose()
        })
    }

    fn add_watch(&self, watch: NewWatch, max: usize) -> StoreFuture<'_, AddWatch> {
        Box::pin(self.add_watch_tx(watch, max))
    }

    fn watches<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT watch FROM watches WHERE channel_id = $1 AND conversation_id = $2 \
                     ORDER BY id",
                    &[&key.channel_id, &key.conversation_id],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "watch")
        })
    }

    fn remove_watches<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(self.remove_watches_tx(key, ids))
    }

    fn change_rule<'a>(
        &'a self,
        key: &'a ConversationKey,
        id: u64,
        rule: Rule,
    ) -> StoreFuture<'a, Option<(Watch, Watch)>> {
        Box::pin(async move {
            let found = self
                .rewrite_watches(key, &[id], |w| w.with_rule(&rule))
                .await?;
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
            let found = self
                .rewrite_watches(key, ids, |w| {
                    Some(Watch {
                        on_hold,
                        ..w.clone()
                    })
                })
                .await?;
            Ok(found.into_iter().map(|(_, after)| after).collect())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .simple_query("SELECT 1")
                .await
                .map_err(io)?;
            Ok(())
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            // Counted: there is no count record to keep in step with every write (one row
            // every replica's every write would update). Counting grows with the data: with a
            // million conversations and watches, 0.1-0.15 s after a VACUUM, 0.4-0.5 s once a
            // third of the watches were rewritten, up to 1.9 s on a busy server (BENCHMARKS.md),
            // so `/readyz` pings instead and `/metrics` recounts sparingly (`ops::sizes`).
            let row = self
                .client()
                .await?
                .query_one(
                    "SELECT (SELECT count(*) FROM conversations), \
                        (SELECT count(*) FROM watches), \
                        (SELECT count(*) FROM products), \
                        (SELECT count(*) FROM outbox WHERE dead_ms IS NULL), \
                        (SELECT count(*) FROM outbox WHERE dead_ms IS NOT NULL), \
                        (SELECT (entry->>'created_ms')::bigint FROM outbox \
                         WHERE dead_ms IS NULL ORDER BY id LIMIT 1)",
                    &[],
                )
                .await
                .map_err(io)?;
            let n = |i: usize| -> Result<usize, StoreError> {
                let n: i64 = row.try_get(i).map_err(io)?;
                Ok(usize::try_from(n).unwrap_or(0))
            };
            let oldest: Option<i64> = row.try_get(5).map_err(io)?;
            Ok(StoreStats {
                references: n(0)?,
                watches: n(1)?,
                products: n(2)?,
                outbox: n(3)?,
                dead_letters: n(4)?,
                // Ids grow with time, so the first queued is the oldest; a requeued dead
                // letter keeps its id and its creation time.
                oldest_queued_ms: oldest.map(id),
            })
        })
    }

    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT product FROM products p WHERE next_due_ms <= $1 \
                         AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until_ms < {NOW_MS}) \
                         AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = $4 || p.host \
                             AND l.holder <> $3 AND l.until_ms >= {NOW_MS}) \
                         ORDER BY next_due_ms, octet_length(url), url COLLATE \"C\" LIMIT $2"
                    ),
                    &[&big(now_ms), &self::limit(limit), &self.holder(), &HOST_LEASE],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "product")
        })
    }

    fn product<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<Product>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT product FROM products WHERE url = $1",
                    &[&url.as_str()],
                )
                .await
                .map_err(io)?;
            row.map(|r| decode(&r, 0, "product")).transpose()
        })
    }

    fn product_watches<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<Watch>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT watch FROM watches WHERE url = $1 ORDER BY id",
                    &[&url.as_str()],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "watch")
        })
    }

    fn record_check(&self, check: CheckRecord) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(self.record_check_tx(check))
    }

    fn history<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<ChangePoint>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT point FROM history WHERE url = $1 ORDER BY at_ms",
                    &[&url.as_str()],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "history point")
        })
    }

    fn latest_point<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<ChangePoint>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT point FROM history WHERE url = $1 ORDER BY at_ms DESC LIMIT 1",
                    &[&url.as_str()],
                )
                .await
                .map_err(io)?;
            row.map(|r| decode(&r, 0, "history point")).transpose()
        })
    }

    fn prune_history(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            // The latest point of each product is kept whatever its age: it is the
            // current price.
            let n = self
                .client()
                .await?
                .execute(
                    "DELETE FROM history h WHERE h.at_ms < $1 \
                     AND EXISTS (SELECT 1 FROM history l WHERE l.url = h.url AND l.at_ms > h.at_ms)",
                    &[&big(before_ms)],
                )
                .await
                .map_err(io)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn due_messages(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            // Ready and put-off messages alike: the oldest due ones, in queue order.
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT entry FROM outbox o WHERE dead_ms IS NULL AND next_attempt_ms <= $1 \
                         AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until_ms < {NOW_MS}) \
                         AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.name = $4 || o.channel_id \
                             AND l.holder <> $3 AND l.until_ms >= {NOW_MS}) \
                         ORDER BY id LIMIT $2"
                    ),
                    &[&big(now_ms), &self::limit(limit), &self.holder(), &DELIVERY_LEASE],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "outbox entry")
        })
    }

    fn queued_message(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>> {
        Box::pin(async move {
            let Ok(id) = i64::try_from(id) else {
                return Ok(None);
            };
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT entry FROM outbox WHERE id = $1 AND dead_ms IS NULL",
                    &[&id],
                )
                .await
                .map_err(io)?;
            row.map(|r| decode(&r, 0, "outbox entry")).transpose()
        })
    }

    fn remove_delivered(&self, ids: Vec<u64>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // One statement per batch; its alert ids are free again with the rows.
            self.client()
                .await?
                .execute(
                    "DELETE FROM outbox WHERE id = ANY($1) AND dead_ms IS NULL",
                    &[&self::ids(&ids)],
                )
                .await
                .map_err(io)?;
            Ok(())
        })
    }

    fn schedule_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let Ok(id) = i64::try_from(id) else {
                return Ok(());
            };
            // One statement, so no read-modify-write race: attempts saturate at u32::MAX.
            self.client()
                .await?
                .execute(
                    "UPDATE outbox SET next_attempt_ms = $2, entry = entry || jsonb_build_object( \
                        'attempts', LEAST((entry->>'attempts')::bigint + 1, 4294967295), \
                        'next_attempt_ms', $2::bigint, 'last_error', $3::text) \
                     WHERE id = $1 AND dead_ms IS NULL",
                    &[&id, &big(next_attempt_ms), &error],
                )
                .await
                .map_err(io)?;
            Ok(())
        })
    }

    fn queue_messages(
        &self,
        messages: Vec<NewOutbox>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = self.transaction(&mut client).await?;
            let messages: Vec<&NewOutbox> = messages.iter().collect();
            let queued = queue(&tx, &messages, now_ms, true).await?;
            tx.commit().await.map_err(io)?;
            Ok(queued)
        })
    }

    fn conversations(&self) -> StoreFuture<'_, Vec<ConversationKey>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT channel_id, conversation_id FROM conversations \
                     ORDER BY octet_length(channel_id), channel_id COLLATE \"C\", \
                        octet_length(conversation_id), conversation_id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(io)?;
            rows.iter()
                .map(|r| {
                    Ok(ConversationKey {
                        channel_id: r.try_get(0).map_err(io)?,
                        conversation_id: r.try_get(1).map_err(io)?,
                    })
                })
                .collect()
        })
    }

    fn defer_messages(&self, ids: Vec<u64>, next_attempt_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Never earlier than it is.
            self.client()
                .await?
                .execute(
                    "UPDATE outbox SET next_attempt_ms = $2, \
                        entry = jsonb_set(entry, '{next_attempt_ms}', to_jsonb($2::bigint)) \
                     WHERE id = ANY($1) AND dead_ms IS NULL AND next_attempt_ms < $2",
                    &[&self::ids(&ids), &big(next_attempt_ms)],
                )
                .await
                .map_err(io)?;
            Ok(())
        })
    }

    fn move_to_dead_letters(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let Ok(id) = i64::try_from(id) else {
                return Ok(false);
            };
            // Setting dead_ms takes it out of the partial unique index: its alert id is
            // free again, as in sled.
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE outbox SET dead_ms = $3, entry = entry || jsonb_build_object( \
                        'attempts', LEAST((entry->>'attempts')::bigint + 1, 4294967295), \
                        'last_error', $2::text, 'dead_ms', $3::bigint) \
                     WHERE id = $1 AND dead_ms IS NULL",
                    &[&id, &error, &big(now_ms)],
                )
                .await
                .map_err(io)?;
            Ok(n > 0)
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT entry FROM outbox WHERE dead_ms IS NOT NULL ORDER BY id LIMIT $1",
                    &[&self::limit(limit)],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "dead letter")
        })
    }

    fn queued_messages(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT entry FROM outbox WHERE dead_ms IS NULL ORDER BY id LIMIT $1",
                    &[&self::limit(limit)],
                )
                .await
                .map_err(io)?;
            decode_all(&rows, "outbox entry")
        })
    }

    fn requeue_dead_letter(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool> {
        Box::pin(self.requeue_tx(id, now_ms))
    }

    fn mark_unreachable<'a>(
        &'a self,
        key: &'a ConversationKey,
        mark: Unreachable,
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = self.transaction(&mut client).await?;
            let paused = set_reachability(&tx, key, Some(&mark)).await?;
            tx.commit().await.map_err(io)?;
            Ok(paused)
        })
    }

    fn unreachable<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Option<Unreachable>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT mark FROM unreachable WHERE channel_id = $1 AND conversation_id = $2",
                    &[&key.channel_id, &key.conversation_id],
                )
                .await
                .map_err(io)?;
            row.map(|r| decode(&r, 0, "unreachable mark")).transpose()
        })
    }

    fn recipients(&self, wanted: Vec<(ConversationKey, bool)>) -> StoreFuture<'_, Vec<Recipient>> {
        Box::pin(self.recipients_q(wanted))
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(self.snapshot_q())
    }

    fn restore_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        Box::pin(self.restore_tx(snapshot))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Every method commits before it returns, and a commit is durable.
        Box::pin(async { Ok(()) })
    }

    fn replicas(&self) -> Option<&dyn Replicas> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::last_per_key;

    #[test]
    fn the_last_row_of_a_key_is_kept_in_the_order_of_the_last_rows() {
        let rows = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        assert_eq!(
            last_per_key(rows, |(k, _)| *k),
            vec![("a", 3), ("c", 4), ("b", 5)]
        );
        assert_eq!(last_per_key(Vec::<(u8, u8)>::new(), |r| r.0), vec![]);
    }
}
