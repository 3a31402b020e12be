//! [`Replicas`] on PostgreSQL: leases in table `leases`, claims in the `claimed_by` and
//! `claimed_until_ms` columns of `products` and `outbox` (migration 0002).
//!
//! Every time here is the server's (`now()` in ms), so that replicas on machines whose
//! clocks disagree agree on when a lease or claim runs out. Rows are claimed with
//! `FOR UPDATE SKIP LOCKED`: a replica never waits on a row another one is claiming, it
//! takes the others.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::store::{big, decode, id, ids, io, PgStore};
use crate::domain::OutboxEntry;
use crate::store::{Held, Replicas, StoreError, StoreFuture};

/// The server's time in ms, as every lease and claim is timed.
pub(super) const NOW_MS: &str = "(extract(epoch from now()) * 1000)::bigint";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Replicas for PgStore {
    fn holder(&self) -> &str {
        self.holder()
    }

    fn hold(&self, mut names: Vec<String>, ttl: Duration) -> StoreFuture<'_, Vec<Held>> {
        Box::pin(async move {
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                return Ok(Vec::new());
            }
            // A renewal never shortens a lease: one held longer on purpose (a shop's
            // `Retry-After`) stays so. `before` is the statement's snapshot, taken before the upsert: whether
            // this holder had the lease last (expired or not, no one else had it since). A concurrent taker of the
            // same lease waits for this one's row lock and then finds it held.
            let sql = format!(
                "WITH t AS (SELECT {NOW_MS} AS now_ms), \
                 before AS (SELECT name, holder, until_ms FROM leases WHERE name = ANY($1)), \
                 up AS (INSERT INTO leases AS l (name, holder, until_ms) \
                        SELECT n, $2, (SELECT now_ms FROM t) + $3 FROM unnest($1::text[]) AS n \
                        ON CONFLICT (name) DO UPDATE \
                        SET holder = EXCLUDED.holder, until_ms = CASE \
                            WHEN l.holder = EXCLUDED.holder \
                            THEN greatest(l.until_ms, EXCLUDED.until_ms) \
                            ELSE EXCLUDED.until_ms END \
                        WHERE l.holder = EXCLUDED.holder OR l.until_ms < (SELECT now_ms FROM t) \
                        RETURNING l.name) \
                 SELECT up.name, NOT coalesce(b.holder = $2, false) \
                 FROM up LEFT JOIN before b ON b.name = up.name ORDER BY up.name"
            );
            let client = self.client().await?;
            let rows = client
                .query(
                    &client.prepare_cached(&sql).await.map_err(io)?,
                    &[&names, &self.holder(), &ms(ttl)],
                )
                .await
                .map_err(io)?;
            rows.iter()
                .map(|r| {
                    Ok(Held {
                        name: r.try_get(0).map_err(io)?,
                        taken_over: r.try_get(1).map_err(io)?,
                    })
                })
                .collect()
        })
    }

    fn count_held<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let sql = format!(
                "SELECT count(*) FROM leases WHERE starts_with(name, $1) AND until_ms >= {NOW_MS}"
            );
            let client = self.client().await?;
            let n: i64 = client
                .query_one(&client.prepare_cached(&sql).await.map_err(io)?, &[&prefix])
                .await
                .map_err(io)?
                .try_get(0)
                .map_err(io)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn release(&self, names: Vec<String>, tail: Duration) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE leases SET until_ms = least(until_ms, {NOW_MS} + $3) \
                 WHERE name = ANY($1) AND holder = $2"
            );
            client
                .execute(&sql, &[&names, &self.holder(), &ms(tail)])
                .await
                .map_err(io)?;
            for table in ["products", "outbox"] {
                let sql = format!(
                    "UPDATE {table} SET claimed_by = NULL, claimed_until_ms = NULL \
                     WHERE claimed_by = $1"
                );
                client.execute(&sql, &[&self.holder()]).await.map_err(io)?;
            }
            Ok(())
        })
    }

    fn claim_products(
        &self,
        urls: Vec<String>,
        now_ms: u64,
        ttl: Duration,
    ) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            if urls.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "WITH c AS (SELECT url FROM products \
                    WHERE url = ANY($1) AND next_due_ms <= $3 \
                    AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until_ms < {NOW_MS}) \
                    FOR UPDATE SKIP LOCKED) \
                 UPDATE products p SET claimed_by = $2, claimed_until_ms = {NOW_MS} + $4 \
                 FROM c WHERE p.url = c.url RETURNING p.url"
            );
            let client = self.client().await?;
            let rows = client
                .query(
                    &client.prepare_cached(&sql).await.map_err(io)?,
                    &[&urls, &self.holder(), &big(now_ms), &ms(ttl)],
                )
                .await
                .map_err(io)?;
            rows.iter()
                .map(|r| r.try_get::<_, String>(0).map_err(io))
                .collect()
        })
    }

    fn make_due(&self, url: String, now_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // The record's own due time too: both backends' records say when a product is
            // due, and an export carries it.
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE products SET next_due_ms = $2, \
                     product = jsonb_set(product, '{next_due_ms}', to_jsonb($2)) \
                     WHERE url = $1 AND next_due_ms > $2",
                    &[&url, &big(now_ms)],
                )
                .await
                .map_err(io)?;
            Ok(())
        })
    }

    fn claimed_elsewhere(&self, url: String) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM products WHERE url = $1 \
                 AND claimed_by <> $2 AND claimed_until_ms >= {NOW_MS})"
            );
            let client = self.client().await?;
            let row = client
                .query_one(
                    &client.prepare_cached(&sql).await.map_err(io)?,
                    &[&url, &self.holder()],
                )
                .await
                .map_err(io)?;
            row.try_get(0).map_err(io)
        })
    }

    fn claim_messages(
        &self,
        wanted: Vec<u64>,
        now_ms: u64,
        ttl: Duration,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            if wanted.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "WITH c AS (SELECT id FROM outbox \
                    WHERE id = ANY($1) AND dead_ms IS NULL AND next_attempt_ms <= $3 \
                    AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until_ms < {NOW_MS}) \
                    FOR UPDATE SKIP LOCKED) \
                 UPDATE outbox o SET claimed_by = $2, claimed_until_ms = {NOW_MS} + $4 \
                 FROM c WHERE o.id = c.id RETURNING o.id, o.entry"
            );
            let client = self.client().await?;
            let rows = client
                .query(
                    &client.prepare_cached(&sql).await.map_err(io)?,
                    &[&ids(&wanted), &self.holder(), &big(now_ms), &ms(ttl)],
                )
                .await
                .map_err(io)?;
            let mut claimed = rows
                .iter()
                .map(|r| {
                    Ok::<_, StoreError>((
                        id(r.try_get(0).map_err(io)?),
                        decode(r, 1, "outbox entry")?,
                    ))
                })
                .collect::<Result<Vec<(u64, OutboxEntry)>, _>>()?;
            // RETURNING has no order: the queue's is the ids'.
            claimed.sort_unstable_by_key(|(id, _)| *id);
            Ok(claimed.into_iter().map(|(_, e)| e).collect())
        })
    }
}
