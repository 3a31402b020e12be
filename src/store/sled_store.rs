//! The sled 0.34 backend: one tree per concern, a schema record checked at open.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::codec::{conversation_key, decode, encode, watch_key};
use super::{
    AddWatch, ReferenceChange, Store, StoreError, StoreFuture, StoreStats, SCHEMA_VERSION,
};
use crate::activity::{ConversationKey, ConversationReference};
use crate::domain::{NewWatch, Watch};

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
    /// Flush requests for the group-commit thread (see [`Flusher`]).
    flusher: Flusher,
    references: sled::Tree,
    watches: sled::Tree,
    /// Serialises the check-then-insert of `add_watch` (duplicate and limit checks need a
    /// prefix scan, which sled transactions cannot do). A std mutex is enough: it is never
    /// held across an `.await`.
    watch_writes: Mutex<()>,
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
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(Some(flush_ms))
            .open()
            .map_err(|e| open_err(describe_open_error(&e)))?;
        let meta = db.open_tree("meta").map_err(|e| open_err(e.to_string()))?;
        let references = db
            .open_tree("references")
            .map_err(|e| open_err(e.to_string()))?;
        let watches = db
            .open_tree("watches")
            .map_err(|e| open_err(e.to_string()))?;
        check_schema(&path, &meta)?;
        db.flush().map_err(|e| open_err(e.to_string()))?;
        let flusher = Flusher::start(db.clone()).map_err(|e| open_err(e.to_string()))?;
        Ok(SledStore {
            path,
            flusher,
            db,
            references,
            watches,
            watch_writes: Mutex::new(()),
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
        };
        self.watches
            .insert(watch_key(&watch.conversation, id), encode(&watch)?)
            .map_err(io)?;
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
            if let Some(bytes) = self.watches.remove(watch_key(key, id)).map_err(io)? {
                removed.push(decode::<Watch>("watch", &bytes)?);
            }
        }
        Ok(removed)
    }

    async fn flush_now(&self) -> Result<(), StoreError> {
        self.flusher.flush().await
    }
}

impl Store for SledStore {
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange> {
        Box::pin(async move {
            let change = self.upsert_reference_sync(reference)?;
            // Only a reference proactive messages would miss needs the fsync before the turn
            // is acknowledged; a changed display name can ride on the background flush.
            if matches!(
                change,
                ReferenceChange::New | ReferenceChange::ServiceUrlChanged
            ) {
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
            })
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.flush_now())
    }
}

/// Makes writes durable by group commit on one dedicated thread.
///
/// sled 0.34's `flush_async` deadlocks when several tasks call it at once
/// (spacejam/sled#1308, #1241: seen here as a daemon that stopped answering when 8 new
/// conversations wrote at the same moment). So every flush goes through this thread, which
/// runs the blocking `Db::flush` one at a time. A request is answered by a flush that
/// started after it arrived, so it covers every write its caller made before asking; the
/// requests that queue up during one fsync share the next one, which keeps many
/// simultaneous first turns at the cost of one or two fsyncs.
struct Flusher {
    /// `None` only while dropping.
    requests: Option<std::sync::mpsc::Sender<FlushRequest>>,
    /// Joined on drop, so that the thread's `Db` handle (and sled's directory lock) is gone
    /// when the store is: a restart in the same process can then reopen the directory.
    thread: Option<std::thread::JoinHandle<()>>,
}

type FlushRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

impl Drop for Flusher {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Flusher {
    fn start(db: sled::Db) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<FlushRequest>();
        let thread = std::thread::Builder::new()
            .name("pricewatch-flush".to_owned())
            .spawn(move || {
                // Ends when the store (the only sender) is dropped.
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    for w in waiting {
                        // The caller may have given up (its turn was cut off); fine.
                        let _ = w.send(result.clone());
                    }
                }
            })?;
        Ok(Flusher {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests
            .as_ref()
            .and_then(|r| r.send(tx).ok())
            .ok_or_else(|| StoreError::Io("the flush thread has stopped".to_owned()))?;
        match rx.await {
            Ok(result) => result.map_err(StoreError::Io),
            Err(_) => Err(StoreError::Io("the flush thread has stopped".to_owned())),
        }
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// sled reports a held lock as an opaque I/O error; say what it means.
fn describe_open_error(e: &sled::Error) -> String {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
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
    use crate::activity::{ChannelAccount, ConversationAccount};
    use crate::command::ProductUrl;
    use crate::domain::Rule;
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
}
