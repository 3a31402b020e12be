//! This process's side of the leases it holds in a shared store ([`Replicas::hold`]).
//!
//! The store times a lease on its own clock: taken at its `now` for `ttl`. This process
//! counts it on its own monotonic clock from before it asked, and stops using it a third
//! of `ttl` before that: so it has stopped well before any other replica can take the
//! lease over, whatever the delay of the answer, and renews it each third of `ttl`, so
//! that a healthy holder never loses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's, so that tests move time by hand (`tokio::time::pause`).
use tokio::time::Instant;

use super::{Held, Replicas, StoreError};

#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Used until then, not after.
    valid_until: Instant,
    /// Renewed from then on.
    renew_after: Instant,
}

/// The leases this process holds, as far as it knows.
#[derive(Debug)]
pub struct LeaseBook {
    ttl: Duration,
    held: Mutex<HashMap<String, Hold>>,
}

impl LeaseBook {
    pub fn new(ttl: Duration) -> LeaseBook {
        LeaseBook {
            ttl,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes or renews the leases; returns those held now. One not held is forgotten here
    /// (another process has it).
    pub async fn hold(
        &self,
        replicas: &dyn Replicas,
        names: Vec<String>,
    ) -> Result<Vec<Held>, StoreError> {
        let asked = Instant::now();
        let held = replicas.hold(names.clone(), self.ttl).await?;
        let hold = Hold {
            valid_until: asked + self.ttl * 2 / 3,
            renew_after: asked + self.ttl / 3,
        };
        let mut book = lock(&self.held);
        for n in &names {
            book.remove(n);
        }
        for h in &held {
            book.insert(h.name.clone(), hold);
        }
        Ok(held)
    }

    /// Whether the lease may be used now.
    pub fn holds(&self, name: &str) -> bool {
        lock(&self.held)
            .get(name)
            .is_some_and(|h| Instant::now() < h.valid_until)
    }

    /// How many leases whose names start with `prefix` may be used now.
    pub fn count(&self, prefix: &str) -> usize {
        let now = Instant::now();
        lock(&self.held)
            .iter()
            .filter(|(n, h)| n.starts_with(prefix) && now < h.valid_until)
            .count()
    }

    /// Those of `names` held and due for renewal; each is reported once per third of
    /// `ttl`, so that callers side by side do not all renew it.
    pub fn to_renew<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let now = Instant::now();
        let mut book = lock(&self.held);
        names
            .into_iter()
            .filter_map(|n| {
                let h = book.get_mut(n)?;
                if now < h.renew_after || now >= h.valid_until {
                    return None;
                }
                // Asked again soon if this renewal fails, while the lease still counts.
                h.renew_after = now + self.ttl / 10;
                Some(n.to_owned())
            })
            .collect()
    }

    /// Forgets the leases here; the caller gives them back to the store.
    pub fn forget(&self, names: &[String]) {
        let mut book = lock(&self.held);
        for n in names {
            book.remove(n);
        }
    }

    /// Every lease held, forgotten here; the caller gives them back to the store.
    pub fn take_all(&self) -> Vec<String> {
        lock(&self.held).drain().map(|(n, _)| n).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboxEntry;
    use crate::store::StoreFuture;

    /// A store whose leases another holder has taken once `lost` is set.
    #[derive(Default)]
    struct Leases {
        lost: std::sync::atomic::AtomicBool,
    }

    impl Replicas for Leases {
        fn holder(&self) -> &str {
            "test"
        }
        fn hold(&self, names: Vec<String>, _ttl: Duration) -> StoreFuture<'_, Vec<Held>> {
            let lost = self.lost.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                Ok(names
                    .into_iter()
                    .filter(|_| !lost)
                    .map(|name| Held {
                        name,
                        taken_over: false,
                    })
                    .collect())
            })
        }
        fn count_held<'a>(&'a self, _: &'a str) -> StoreFuture<'a, usize> {
            Box::pin(async { Ok(0) })
        }
        fn release(&self, _: Vec<String>, _: Duration) -> StoreFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn claim_products(
            &self,
            _: Vec<String>,
            _: u64,
            _: Duration,
        ) -> StoreFuture<'_, Vec<String>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn make_due(&self, _: String, _: u64) -> StoreFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn claimed_elsewhere(&self, _: String) -> StoreFuture<'_, bool> {
            Box::pin(async { Ok(false) })
        }
        fn claim_messages(
            &self,
            _: Vec<u64>,
            _: u64,
            _: Duration,
        ) -> StoreFuture<'_, Vec<OutboxEntry>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_used_for_two_thirds_of_its_time_and_renewed_after_one() {
        let store = Leases::default();
        let book = LeaseBook::new(Duration::from_millis(600));
        assert!(!book.holds("host:a"));
        book.hold(&store, vec!["host:a".into()]).await.unwrap();
        assert!(book.holds("host:a"));
        assert_eq!((book.count("host:"), book.count("deliver:")), (1, 0));
        assert!(book.to_renew(["host:a", "host:b"]).is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Due once: a second caller at the same time leaves it to the first.
        assert_eq!(book.to_renew(["host:a", "host:b"]), ["host:a"]);
        assert!(book.to_renew(["host:a"]).is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Not renewed: unusable after 400 ms, well before the store lets another take it.
        assert!(!book.holds("host:a"));
        assert!(book.to_renew(["host:a"]).is_empty());
        book.hold(&store, vec!["host:a".into()]).await.unwrap();
        assert!(book.holds("host:a"));
        // Another holder has it now: forgotten at the next renewal.
        store.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        book.hold(&store, vec!["host:a".into()]).await.unwrap();
        assert!(!book.holds("host:a"));
        assert!(book.take_all().is_empty());
    }
}
