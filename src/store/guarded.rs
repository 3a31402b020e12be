//! What stands between the daemon and a blocking store: every call runs on the blocking
//! pool with a time limit, and writes keep a reserve of free disk space.
//!
//! Why: sled 0.34 is synchronous, and on a full disk it does not fail cleanly. Its
//! flush waits for a write that never completes, and the transactions behind it wait
//! too, for ever, even after space is freed. A sled call on an async worker then stalls
//! the worker, and with it the turns, the timers and the signal handling that would stop
//! the process. So:
//! - no sled call runs on an async worker, and no caller waits longer than
//!   `storage.timeout` for one (a call still stuck past it is left on its blocking
//!   thread, and the store reports itself unavailable until a call succeeds again);
//! - a write is refused, before sled sees it, while the data directory's file system
//!   has less than `storage.min_free` bytes free (removals, which free space in time,
//!   down to half of it), so sled never meets a full disk of pricewatch's making, and
//!   writes resume by themselves once space is freed.
//!
//! Generic over the backend so that tests can put a fault-injecting store behind it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    AddWatch, Recipient, ReferenceChange, Replicas, Snapshot, Store, StoreError, StoreFuture,
    StoreStats,
};
use crate::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, ProductUrl, Rule,
    Unreachable, Watch,
};
use crate::inbound::activity::{ConversationKey, ConversationReference};

/// The guard's settings (`[storage]`).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The data directory: its file system's free space is what is checked.
    pub path: PathBuf,
    /// Bytes that writes leave free.
    pub min_free: u64,
    /// Longest any caller waits for one store call.
    pub timeout: Duration,
    /// The backend's futures wait on the network, not on synchronous work (PostgreSQL):
    /// they are awaited on the async workers, without the blocking pool, and its pool of
    /// connections bounds how many run at once. The time limit still stands.
    pub async_backend: bool,
}

/// A store whose calls run off the async workers, time-limited, behind a disk reserve.
pub struct GuardedStore<S: ?Sized> {
    inner: Arc<S>,
    config: GuardConfig,
    /// Since when a call has been left waiting past the time limit; cleared by the next
    /// call that succeeds.
    stuck_since: Arc<Mutex<Option<Instant>>>,
    /// What the last space check found, so a change is logged once, not per write.
    was_full: Arc<std::sync::atomic::AtomicBool>,
    /// How many calls may be at work on the blocking pool at once, reads and changes
    /// apart (so changes stuck on a full disk leave reads going).
    reading: Arc<tokio::sync::Semaphore>,
    changing: Arc<tokio::sync::Semaphore>,
}

/// Store calls at work at once, of each kind. The work is short (sled is in memory until
/// a flush, which the writer thread does); a bound keeps the blocking pool, and with it
/// each thread's stack and allocator heap, from growing to one thread per caller (32
/// concurrent turns made the daemon's peak RSS twice what it was without the guard).
const AT_WORK: usize = 4;

/// How much room a write needs.
#[derive(Clone, Copy)]
enum Room {
    /// Reads, and flushes of what is already written.
    None,
    /// Removals: they let sled reclaim space, so they may go on closer to the edge.
    Half,
    /// Anything that adds data.
    Full,
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

impl<S: Store + ?Sized> GuardedStore<S> {
    pub fn new(inner: Arc<S>, config: GuardConfig) -> Self {
        GuardedStore {
            inner,
            config,
            stuck_since: Arc::new(Mutex::new(None)),
            reading: Arc::new(tokio::sync::Semaphore::new(AT_WORK)),
            changing: Arc::new(tokio::sync::Semaphore::new(AT_WORK)),
            was_full: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Bytes free for unprivileged writers on the data directory's file system.
    fn free_bytes(&self) -> Result<u64, StoreError> {
        let stat = rustix::fs::statvfs(&self.config.path)
            .map_err(|e| StoreError::Io(Arc::new(std::io::Error::from(e))))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    fn check_room(&self, room: Room) -> Result<(), StoreError> {
        let reserve = match room {
            Room::None => return Ok(()),
            Room::Half => self.config.min_free / 2,
            Room::Full => self.config.min_free,
        };
        // Off (a database server that keeps its own disk, or `min_free = 0`): the data
        // directory need not even exist.
        if reserve == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        let full = free < reserve;
        let was = self
            .was_full
            .swap(full, std::sync::atomic::Ordering::Relaxed);
        if full != was {
            if full {
                tracing::error!(
                    path = %self.config.path.display(),
                    free,
                    reserve,
                    "the data directory's disk is nearly full: writes are refused until space is freed"
                );
            } else {
                tracing::info!(free, "disk space is back: writes resume");
            }
        }
        if full {
            return Err(StoreError::DiskFull {
                path: self.config.path.clone(),
                free,
                reserve,
            });
        }
        Ok(())
    }

    /// Runs `call` on the blocking pool once `room` is there, waiting at most the time
    /// limit for it.
    fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        room: Room,
        call: impl FnOnce(Arc<S>) -> Boxed<T> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let checked = self.check_room(room);
        Box::pin(async move {
            checked?;
            let work = call(self.inner.clone());
            let permits = match room {
                Room::None if what != "flush" => &self.reading,
                _ => &self.changing,
            };
            let bounded: Boxed<T> = if self.config.async_backend {
                work
            } else {
                Box::pin(off_workers(work, permits.clone()))
            };
            let result = match tokio::time::timeout(self.config.timeout, bounded).await {
                Ok(result) => result,
                Err(_) => {
                    let mut stuck = self.stuck_since.lock().unwrap_or_else(|e| e.into_inner());
                    if stuck.is_none() {
                        tracing::error!(
                            what,
                            after = ?self.config.timeout,
                            "the store stopped answering; calls fail until it answers again"
                        );
                        *stuck = Some(Instant::now());
                    }
                    return Err(StoreError::TimedOut {
                        what,
                        after: self.config.timeout,
                    });
                }
            };
            // Reads can go on while sled's writes hang; only a write or a flush that
            // completes shows the store is whole again.
            let proves_writes = !matches!(room, Room::None) || what == "flush";
            if result.is_ok() && proves_writes {
                let mut stuck = self.stuck_since.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(since) = stuck.take() {
                    tracing::info!(after = ?since.elapsed(), "the store answers again");
                }
            }
            result
        })
    }
}

/// Wakes the async side when the backend's future can go on.
struct Wakeup(tokio::sync::Notify);

impl std::task::Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        // A permit is kept when no one waits yet, so a wake during the poll is not lost.
        self.0.notify_one();
    }
}

/// Drives `work` to its end with every poll on the blocking pool, and every wait between
/// polls on the async side.
///
/// Why not `block_on` on a blocking thread: a backend's future is synchronous work (sled)
/// between waits for its writer thread's group flush, and a blocked thread would sit out
/// each flush. Under 32 concurrent turns that was 32 threads parked in flushes, about
/// 25 MB more RSS than the daemon needs and slower first turns while the pool grew
/// (BENCHMARKS.md). Polling here keeps the blocking pool as large as the sled work done at
/// once, never as the number of callers waiting.
async fn off_workers<T: Send + 'static>(
    mut work: Boxed<T>,
    permits: Arc<tokio::sync::Semaphore>,
) -> Result<T, StoreError> {
    let wakeup = Arc::new(Wakeup(tokio::sync::Notify::new()));
    loop {
        let waker = std::task::Waker::from(wakeup.clone());
        // Held by the poll, so a poll stuck in sled keeps its permit.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Io(Arc::new(std::io::Error::other(e))))?;
        let (back, polled) = tokio::task::spawn_blocking(move || {
            let polled = work
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker));
            drop(permit);
            (work, polled)
        })
        .await
        .map_err(|join| StoreError::Io(Arc::new(join)))?;
        match polled {
            std::task::Poll::Ready(result) => return result,
            std::task::Poll::Pending => {
                wakeup.0.notified().await;
                work = back;
            }
        }
    }
}

impl<S: Store + ?Sized> Store for GuardedStore<S> {
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange> {
        let reference = reference.clone();
        match self.check_room(Room::Full) {
            Ok(()) => self.run("upsert_reference", Room::None, move |s| {
                Box::pin(async move { s.upsert_reference(&reference).await })
            }),
            // Short of space, a conversation that is already stored as it is still
            // talks: its reference needs no write.
            Err(full) => self.run("reference", Room::None, move |s| {
                Box::pin(async move {
                    let key = reference.key();
                    let same = s.reference(&key).await?.as_ref() == Some(&reference);
                    if same && s.unreachable(&key).await?.is_none() {
                        Ok(ReferenceChange::Unchanged)
                    } else {
                        Err(full)
                    }
                })
            }),
        }
    }

    fn reference<'a>(
        &'a self,
        key: &'a ConversationKey,
    ) -> StoreFuture<'a, Option<ConversationReference>> {
        let key = key.clone();
        self.run("reference", Room::None, move |s| {
            Box::pin(async move { s.reference(&key).await })
        })
    }

    fn add_watch(&self, watch: NewWatch, max: usize) -> StoreFuture<'_, AddWatch> {
        self.run("add_watch", Room::Full, move |s| {
            Box::pin(async move { s.add_watch(watch, max).await })
        })
    }

    fn watches<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Vec<Watch>> {
        let key = key.clone();
        self.run("watches", Room::None, move |s| {
            Box::pin(async move { s.watches(&key).await })
        })
    }

    fn remove_watches<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Vec<Watch>> {
        let (key, ids) = (key.clone(), ids.to_vec());
        self.run("remove_watches", Room::Half, move |s| {
            Box::pin(async move { s.remove_watches(&key, &ids).await })
        })
    }

    fn change_rule<'a>(
        &'a self,
        key: &'a ConversationKey,
        id: u64,
        rule: Rule,
    ) -> StoreFuture<'a, Option<(Watch, Watch)>> {
        let key = key.clone();
        // Rewrites a record of about the same size: as much room as a removal needs.
        self.run("change_rule", Room::Half, move |s| {
            Box::pin(async move { s.change_rule(&key, id, rule).await })
        })
    }

    fn set_on_hold<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
        on_hold: bool,
    ) -> StoreFuture<'a, Vec<Watch>> {
        let (key, ids) = (key.clone(), ids.to_vec());
        self.run("set_on_hold", Room::Half, move |s| {
            Box::pin(async move { s.set_on_hold(&key, &ids, on_hold).await })
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        self.run("stats", Room::None, |s| {
            Box::pin(async move { s.stats().await })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run("ping", Room::None, |s| {
            Box::pin(async move { s.ping().await })
        })
    }

    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>> {
        self.run("due_products", Room::None, move |s| {
            Box::pin(async move { s.due_products(now_ms, limit).await })
        })
    }

    fn product<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<Product>> {
        let url = url.clone();
        self.run("product", Room::None, move |s| {
            Box::pin(async move { s.product(&url).await })
        })
    }

    fn product_watches<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<Watch>> {
        let url = url.clone();
        self.run("product_watches", Room::None, move |s| {
            Box::pin(async move { s.product_watches(&url).await })
        })
    }

    fn record_check(&self, check: CheckRecord) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.run("record_check", Room::Full, move |s| {
            Box::pin(async move { s.record_check(check).await })
        })
    }

    fn history<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<ChangePoint>> {
        let url = url.clone();
        self.run("history", Room::None, move |s| {
            Box::pin(async move { s.history(&url).await })
        })
    }

    fn latest_point<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<ChangePoint>> {
        let url = url.clone();
        self.run("latest_point", Room::None, move |s| {
            Box::pin(async move { s.latest_point(&url).await })
        })
    }

    fn prune_history(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        self.run("prune_history", Room::Half, move |s| {
            Box::pin(async move { s.prune_history(before_ms).await })
        })
    }

    fn due_messages(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.run("due_messages", Room::None, move |s| {
            Box::pin(async move { s.due_messages(now_ms, limit).await })
        })
    }

    fn queued_message(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>> {
        self.run("queued_message", Room::None, move |s| {
            Box::pin(async move { s.queued_message(id).await })
        })
    }

    fn remove_delivered(&self, ids: Vec<u64>) -> StoreFuture<'_, ()> {
        self.run("remove_delivered", Room::Half, move |s| {
            Box::pin(async move { s.remove_delivered(ids).await })
        })
    }

    fn schedule_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()> {
        self.run("schedule_retry", Room::Full, move |s| {
            Box::pin(async move { s.schedule_retry(id, next_attempt_ms, error).await })
        })
    }

    fn queue_messages(
        &self,
        messages: Vec<NewOutbox>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.run("queue_messages", Room::Full, move |s| {
            Box::pin(async move { s.queue_messages(messages, now_ms).await })
        })
    }

    fn conversations(&self) -> StoreFuture<'_, Vec<ConversationKey>> {
        self.run("conversations", Room::None, |s| {
            Box::pin(async move { s.conversations().await })
        })
    }

    fn defer_messages(&self, ids: Vec<u64>, next_attempt_ms: u64) -> StoreFuture<'_, ()> {
        self.run("defer_messages", Room::Full, move |s| {
            Box::pin(async move { s.defer_messages(ids, next_attempt_ms).await })
        })
    }

    fn move_to_dead_letters(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool> {
        self.run("move_to_dead_letters", Room::Full, move |s| {
            Box::pin(async move { s.move_to_dead_letters(id, error, now_ms).await })
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.run("dead_letters", Room::None, move |s| {
            Box::pin(async move { s.dead_letters(limit).await })
        })
    }

    fn queued_messages(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.run("queued_messages", Room::None, move |s| {
            Box::pin(async move { s.queued_messages(limit).await })
        })
    }

    fn requeue_dead_letter(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool> {
        self.run("requeue_dead_letter", Room::Full, move |s| {
            Box::pin(async move { s.requeue_dead_letter(id, now_ms).await })
        })
    }

    fn mark_unreachable<'a>(
        &'a self,
        key: &'a ConversationKey,
        mark: Unreachable,
    ) -> StoreFuture<'a, usize> {
        let key = key.clone();
        self.run("mark_unreachable", Room::Full, move |s| {
            Box::pin(async move { s.mark_unreachable(&key, mark).await })
        })
    }

    fn unreachable<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Option<Unreachable>> {
        let key = key.clone();
        self.run("unreachable", Room::None, move |s| {
            Box::pin(async move { s.unreachable(&key).await })
        })
    }

    fn recipients(&self, wanted: Vec<(ConversationKey, bool)>) -> StoreFuture<'_, Vec<Recipient>> {
        self.run("recipients", Room::None, move |s| {
            Box::pin(async move { s.recipients(wanted).await })
        })
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        self.run("snapshot", Room::None, |s| {
            Box::pin(async move { s.snapshot().await })
        })
    }

    fn restore_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.run("restore_snapshot", Room::Full, move |s| {
            Box::pin(async move { s.restore_snapshot(snapshot).await })
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.run("flush", Room::None, |s| {
            Box::pin(async move { s.flush().await })
        })
    }

    fn writable(&self) -> Result<(), StoreError> {
        let stuck = *self.stuck_since.lock().unwrap_or_else(|e| e.into_inner());
        if stuck.is_some() {
            return Err(StoreError::TimedOut {
                what: "a call",
                after: self.config.timeout,
            });
        }
        self.check_room(Room::Full)?;
        self.inner.writable()
    }

    /// Not guarded: only a database backend has them, and its statement timeout bounds
    /// each call.
    fn replicas(&self) -> Option<&dyn Replicas> {
        self.inner.replicas()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend call's shape: synchronous work, then a wait for something else (the
    /// writer thread's flush), then more synchronous work.
    fn work_then_wait(
        first: impl FnOnce() + Send + 'static,
        wait: tokio::sync::oneshot::Receiver<()>,
    ) -> Boxed<u32> {
        Box::pin(async move {
            first();
            let _ = wait.await;
            Ok(7)
        })
    }

    #[tokio::test]
    async fn a_reserve_of_zero_needs_no_data_directory_and_an_async_backend_no_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(
            crate::store::SledStore::open(&crate::store::SledStoreConfig {
                path: dir.path().join("data"),
                cache_capacity: 1 << 20,
                flush_every: Duration::from_millis(500),
                full_check_at_start: false,
            })
            .unwrap(),
        );
        let guard = |min_free, async_backend| {
            GuardedStore::new(
                backend.clone(),
                GuardConfig {
                    // As with PostgreSQL: no local data directory.
                    path: dir.path().join("not-there"),
                    min_free,
                    timeout: Duration::from_secs(10),
                    async_backend,
                },
            )
        };
        assert_eq!(guard(0, true).prune_history(0).await.unwrap(), 0);
        assert_eq!(guard(0, false).prune_history(0).await.unwrap(), 0);
        // With a reserve the directory's file system is asked, and it is not there.
        assert!(matches!(
            guard(64, true).prune_history(0).await,
            Err(StoreError::Io(_))
        ));
    }

    #[test]
    fn synchronous_work_never_runs_on_the_async_worker() {
        // One worker thread: work that blocks it until this task answers would never end.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (asked_tx, asked) = std::sync::mpsc::channel::<()>();
            let (answer, answered) = std::sync::mpsc::channel::<()>();
            let (_, never) = tokio::sync::oneshot::channel::<()>();
            drop(never);
            let blocking = Box::pin(async move {
                asked_tx.send(()).unwrap();
                answered.recv().unwrap();
                Ok(1)
            });
            let call = tokio::spawn(off_workers(
                blocking,
                Arc::new(tokio::sync::Semaphore::new(1)),
            ));
            // This task runs on the one worker while the call blocks elsewhere.
            tokio::task::spawn_blocking(move || asked.recv().unwrap())
                .await
                .unwrap();
            answer.send(()).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), call)
                .await
                .expect("the call ends")
                .unwrap();
            assert_eq!(got.unwrap(), 1);
        });
    }

    #[test]
    fn callers_waiting_between_polls_hold_no_blocking_thread() {
        // One blocking thread for 20 calls that all wait at once: a call that kept its
        // thread while it waited would leave the others unable to start.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Arc::new(AtomicUsize::new(0));
            // One permit too: a permit kept while waiting would stop the second call.
            let permits = Arc::new(tokio::sync::Semaphore::new(1));
            let mut releases = Vec::new();
            let mut calls = Vec::new();
            for _ in 0..20 {
                let (release, wait) = tokio::sync::oneshot::channel();
                releases.push(release);
                let started = started.clone();
                calls.push(tokio::spawn(off_workers(
                    work_then_wait(
                        move || {
                            started.fetch_add(1, Ordering::SeqCst);
                        },
                        wait,
                    ),
                    permits.clone(),
                )));
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while started.load(Ordering::SeqCst) < 20 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {} of 20 calls started",
                    started.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for release in releases {
                release.send(()).unwrap();
            }
            for call in calls {
                let got = tokio::time::timeout(Duration::from_secs(10), call)
                    .await
                    .expect("the call ends")
                    .unwrap();
                assert_eq!(got.unwrap(), 7);
            }
        });
    }
}
