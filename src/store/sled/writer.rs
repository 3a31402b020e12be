//! The group-commit writer thread: every flush, and every check record, goes through it.
//!
//! Separate from the store because it is a small concurrency component of its own (a
//! channel, a batching loop, a thread joined on drop) that exists to work around sled
//! 0.34's `flush_async`; the store only calls [`Writer::flush`] and [`Writer::record`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::check::{prepare, CheckTrees, Prepared};
use super::integrity::{durable_counts, write_checkpoint, Counts};
use super::io;
use crate::domain::{CheckRecord, OutboxEntry};
use crate::store::StoreError;

/// Where the writer leaves the counts a clean close ended with.
pub(super) type ClosedCounts = std::sync::Arc<std::sync::Mutex<Option<Counts>>>;

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
pub(super) struct Writer {
    /// `None` only while dropping.
    requests: Option<std::sync::mpsc::Sender<Request>>,
    /// Joined on drop, so that the thread's `Db` handle (and sled's directory lock) is gone
    /// when the store is: a restart in the same process can then reopen the directory.
    thread: Option<std::thread::JoinHandle<()>>,
    /// While set, the thread waits before each flush: a test sees what callers do while
    /// their writes are not yet durable.
    #[cfg(test)]
    hold: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
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
        // A test that failed while holding the flushes must not hang in the join below.
        #[cfg(test)]
        self.hold_flushes(false);
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// `checkpoint`: the directory to keep the checkpoint file in, and the generation it
    /// holds already (`None` for a store that keeps none: a copy read for an export).
    ///
    /// `closed` is set when the thread ends with everything flushed and the checkpoint
    /// written: the counts the store closed with (see `integrity::mark_closed`).
    pub(super) fn start(
        db: sled::Db,
        trees: CheckTrees,
        checkpoint: Option<(PathBuf, Option<u64>)>,
        closed: ClosedCounts,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        #[cfg(test)]
        let hold = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        #[cfg(test)]
        let held = std::sync::Arc::clone(&hold);
        let mut checkpoint = checkpoint.map(|(dir, written)| Checkpointer {
            dir,
            written,
            last: None,
        });
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
                    #[cfg(test)]
                    {
                        let (on, changed) = &*held;
                        let on = on.lock().unwrap_or_else(|p| p.into_inner());
                        let _on = changed
                            .wait_while(on, |on| *on)
                            .unwrap_or_else(|p| p.into_inner());
                    }
                    // Read before the flush, so the flush covers them.
                    let counts = durable_counts(&trees.meta);
                    let flushed = db.flush().map(|_| ()).map_err(io);
                    // Callers may have given up (a turn cut off, a shutdown); fine.
                    for reply in flushes {
                        let _ = reply.send(copy_result(&flushed, ()));
                    }
                    for (result, reply) in done {
                        let _ = reply.send(result.and_then(|q| copy_result(&flushed, q)));
                    }
                    // After the replies: the callers need not wait for it.
                    if let (Ok(()), Some(c), Some(counts)) = (&flushed, &mut checkpoint, counts) {
                        c.after_flush(counts);
                    }
                }
                // The store is closing: what it holds now is what the next open must find.
                let counts = durable_counts(&trees.meta);
                if let (Ok(_), Some(c), Some(counts)) = (db.flush(), &mut checkpoint, counts) {
                    c.at_close(counts);
                    if c.written == Some(counts.generation) {
                        *closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(counts);
                    }
                }
            })?;
        Ok(Writer {
            requests: Some(tx),
            thread: Some(thread),
            #[cfg(test)]
            hold,
        })
    }

    /// With `true`, no flush completes until this is called with `false`.
    #[cfg(test)]
    pub(super) fn hold_flushes(&self, hold: bool) {
        let (on, changed) = &*self.hold;
        *on.lock().unwrap_or_else(|p| p.into_inner()) = hold;
        changed.notify_all();
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .and_then(|r| r.send(request).ok())
            .ok_or_else(stopped)
    }

    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Flush(tx))?;
        rx.await.map_err(|_| stopped())?
    }

    pub(super) async fn record(&self, check: CheckRecord) -> Result<Vec<OutboxEntry>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request::Record(Box::new(check), tx))?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Keeps the checkpoint file (`integrity`) at the counts of the last flush.
struct Checkpointer {
    dir: PathBuf,
    /// The generation the file holds: a flush that changed no count rewrites nothing.
    written: Option<u64>,
    /// When the file was last written (or tried).
    last: Option<Instant>,
}

/// Least time between two checkpoints after flushes: writing one costs two fsyncs, which
/// a burst of durable writes (new conversations, a poll cycle's batches) should not pay
/// each time. A checkpoint that lags only checks less after a crash; closing writes it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl Checkpointer {
    fn after_flush(&mut self, counts: Counts) {
        if self.last.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY) {
            return;
        }
        self.at_close(counts);
    }

    fn at_close(&mut self, counts: Counts) {
        if self.written == Some(counts.generation) {
            return;
        }
        self.last = Some(Instant::now());
        match write_checkpoint(&self.dir, counts) {
            Ok(()) => self.written = Some(counts.generation),
            // An older checkpoint only checks less at the next open; the data is safe.
            Err(e) => tracing::warn!(
                error = %crate::error::Chain(&e),
                dir = %self.dir.display(),
                "cannot write the store's checkpoint file"
            ),
        }
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
            Err(e) => ready.iter().map(|_| Err(e.clone())).collect(),
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
        Err(e) => Err(e.clone()),
    }
}

fn stopped() -> StoreError {
    StoreError::WriterStopped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::tests::{added, config, key, message, new_watch, point, reference};
    use super::*;
    use crate::domain::Product;
    use crate::store::{ReferenceChange, SledStore, Store};

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
}
