//! The watch loop's engine room: picks the products that are due, fetches each once
//! through the politeness gate however many watches share it, and records what the check
//! changed ([`crate::watch::plan`]) in one store transaction. The decisions are pure
//! (`schedule`, `trigger`, `plan`); this module only sequences the I/O, and when ticks
//! run is [`crate::watch::run`]'s business.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use crate::liveness::{Liveness, Loop, BEAT_EVERY};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::delivery::run::Wake;
use crate::domain::Product;
use crate::domain::ProductUrl;
use crate::domain::Validators;
use crate::error::Chain;
use crate::ops::metrics::{CheckOutcome, Metrics};
use crate::price::catalog::{FetchFuture, PoliteFetch};
use crate::price::engine::{Check, EngineError, PriceEngine};
use crate::price::fetch::{FetchError, Fetched, Page};
use crate::random::SplitMix64;
use crate::shown::Shown;
use crate::store::{LeaseBook, Replicas, Store, StoreError, HOST_LEASE, POLLER_LEASE};
use crate::watch::gate::{GateConfig, HostGate, Permit, Wait, WaitReason};
use crate::watch::plan::{all_on_hold, plan, postpone, Outcome, PlanConfig};
use crate::watch::share;
use crate::watch::trigger::Observation;
use crate::watch::FirstCheck;

/// Most products one tick takes from the store; the rest wait for the next tick.
const TICK_LIMIT: usize = 100_000;

/// What one tick did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub checked: usize,
    /// Messages queued in the outbox by these checks.
    pub queued: usize,
    /// Checks that failed to record (storage errors); they are retried when due again.
    pub failed: usize,
}

/// Shared by the scheduled ticks and the immediate first-price checks.
#[derive(Clone)]
pub struct Watcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Replaced as a whole on reload (site rules, fetch settings).
    engine: std::sync::RwLock<PriceEngine>,
    clock: Arc<dyn Clock>,
    /// Replaced as a whole on reload (schedule, trigger defaults).
    plan: std::sync::RwLock<Arc<PlanConfig>>,
    gate: Mutex<HostGate>,
    /// Products being checked now: a tick never starts a second check of one of them.
    in_flight: Mutex<HashSet<String>>,
    rng: Mutex<SplitMix64>,
    /// Told whenever a check queued messages, so delivery need not poll.
    wake: Wake,
    history_retention: std::time::Duration,
    /// When history was last pruned; pruning reads the whole history tree, so hourly.
    last_prune_ms: std::sync::atomic::AtomicU64,
    /// First checks started for new watches, so shutdown can end them.
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Beaten as ticks make progress, for the service watchdog (set by the daemon).
    liveness: std::sync::OnceLock<Arc<Liveness>>,
    /// Counts checks and the messages they queue (set by the daemon).
    metrics: std::sync::OnceLock<Arc<Metrics>>,
    /// The leases of a store shared with other replicas (set by the daemon).
    leases: std::sync::OnceLock<Arc<LeaseBook>>,
    /// First checks recorded so far, and ticks running now: a tick re-reads a product
    /// before checking it only when either may have checked it since the tick read it.
    first_checks: std::sync::atomic::AtomicU64,
    ticks: std::sync::atomic::AtomicUsize,
    /// Shops due that no replica fetched, by when this one first saw them so (a shared
    /// store only): one left so for a lease time is taken whatever the share.
    shops_waiting: Mutex<std::collections::HashMap<String, u64>>,
}

/// The store's replica side and this process's leases, when the store is shared.
type Shared<'a> = (&'a dyn Replicas, &'a LeaseBook);

impl Watcher {
    pub fn new(
        store: Arc<dyn Store>,
        engine: PriceEngine,
        clock: Arc<dyn Clock>,
        plan: PlanConfig,
        gate: GateConfig,
        history_retention: std::time::Duration,
        wake: Wake,
    ) -> Watcher {
        let rng = SplitMix64::for_process(clock.now_ms(), 32);
        Watcher {
            inner: Arc::new(Inner {
                store,
                engine: std::sync::RwLock::new(engine),
                clock,
                plan: std::sync::RwLock::new(Arc::new(plan)),
                gate: Mutex::new(HostGate::new(gate)),
                in_flight: Mutex::new(HashSet::new()),
                rng: Mutex::new(rng),
                wake,
                history_retention,
                last_prune_ms: std::sync::atomic::AtomicU64::new(0),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                liveness: std::sync::OnceLock::new(),
                metrics: std::sync::OnceLock::new(),
                leases: std::sync::OnceLock::new(),
                first_checks: std::sync::atomic::AtomicU64::new(0),
                ticks: std::sync::atomic::AtomicUsize::new(0),
                shops_waiting: Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    /// The engine and the plan settings now in force.
    fn engine(&self) -> PriceEngine {
        self.inner
            .engine
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn plan(&self) -> Arc<PlanConfig> {
        self.inner
            .plan
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a reloaded configuration: checks that start from now on use `engine` and
    /// `plan`; the gate keeps what it knows of each host (gaps, back-offs) under its new
    /// limits. Checks already running finish as they started.
    pub fn reconfigure(&self, engine: PriceEngine, plan: PlanConfig, gate: GateConfig) {
        *self.inner.engine.write().unwrap_or_else(|e| e.into_inner()) = engine;
        *self.inner.plan.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(plan);
        lock(&self.inner.gate).reconfigure(gate);
    }

    /// Reports the loop's progress to `liveness` from now on (once; later calls are
    /// ignored).
    pub fn report_to(&self, liveness: Arc<Liveness>) {
        let _ = self.inner.liveness.set(liveness);
    }

    /// Counts checks in `metrics` from now on (once; later calls are ignored).
    pub fn count_in(&self, metrics: Arc<Metrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Splits the checks with the other replicas of a shared store from now on, through
    /// `leases` (once; later calls are ignored): a shop's pages are fetched by the one
    /// replica holding its host lease, so that its gap and concurrency hold for the whole
    /// bot, and each product a replica checks is claimed first, so that no other replica
    /// checks it too. A store that is not shared ignores it.
    pub fn share_with(&self, leases: Arc<LeaseBook>) {
        let _ = self.inner.leases.set(leases);
    }

    fn shared(&self) -> Option<Shared<'_>> {
        Some((
            self.inner.store.replicas()?,
            self.inner.leases.get()?.as_ref(),
        ))
    }

    /// Of the due products, those this replica may check now: their shop's lease is
    /// this replica's (kept, or taken within its fair share of the due shops, see
    /// [`crate::watch::share`]), and the product is claimed for it.
    async fn claim(
        &self,
        (replicas, leases): Shared<'_>,
        due: Vec<Product>,
        now: u64,
    ) -> Result<Vec<Product>, StoreError> {
        // Since when this replica has seen each due shop go unfetched by anyone: the
        // products' due times would not do, as after a pause every shop is overdue and
        // the first replica to tick would take them all.
        let since: BTreeMap<String, u64> = {
            let mut waiting = lock(&self.inner.shops_waiting);
            let due_hosts: HashSet<&str> = due.iter().map(|p| p.url.host()).collect();
            waiting.retain(|host, _| due_hosts.contains(host.as_str()));
            due_hosts
                .into_iter()
                .map(|host| {
                    let t = *waiting.entry(host.to_owned()).or_insert(now);
                    (host.to_owned(), t)
                })
                .collect()
        };
        let pollers = replicas.count_held(POLLER_LEASE).await?;
        // The due products leave out the shops other replicas hold; they count in the
        // shares all the same (an idle one held a moment longer too: a share a little
        // larger than half is no harm).
        let elsewhere = replicas
            .count_held(HOST_LEASE)
            .await?
            .saturating_sub(leases.count(HOST_LEASE));
        let ttl_ms = u64::try_from(leases.ttl().as_millis()).unwrap_or(u64::MAX);
        let pick = {
            let mut rng = lock(&self.inner.rng);
            share::pick(
                &since,
                |host| leases.holds(&host_lease(host)),
                elsewhere,
                pollers,
                now,
                ttl_ms,
                &mut *rng,
            )
        };
        let mut held: HashSet<String> = HashSet::new();
        let asked: Vec<String> = pick
            .keep
            .iter()
            .chain(&pick.overdue)
            .map(|h| host_lease(h))
            .collect();
        held.extend(
            leases
                .hold(replicas, asked)
                .await?
                .into_iter()
                .map(|h| h.name),
        );
        let mut free = pick.free.iter();
        loop {
            let need = pick.share.saturating_sub(held.len());
            let batch: Vec<String> = free.by_ref().take(need).map(|h| host_lease(h)).collect();
            if batch.is_empty() {
                break;
            }
            held.extend(
                leases
                    .hold(replicas, batch)
                    .await?
                    .into_iter()
                    .map(|h| h.name),
            );
        }
        // Another tick of this replica may still fetch a shop it holds: given back only
        // when none is running.
        if !pick.give_back.is_empty()
            && self.inner.ticks.load(std::sync::atomic::Ordering::SeqCst) <= 1
        {
            let names: Vec<String> = pick.give_back.iter().map(|h| host_lease(h)).collect();
            leases.forget(&names);
            let gap = lock(&self.inner.gate).host_gap();
            replicas.release(names, gap).await?;
        }
        lock(&self.inner.shops_waiting).retain(|host, _| !held.contains(&host_lease(host)));
        let mine: Vec<Product> = due
            .into_iter()
            .filter(|p| held.contains(&host_lease(p.url.host())))
            .collect();
        let urls = mine.iter().map(|p| p.url.as_str().to_owned()).collect();
        let claimed: HashSet<String> = replicas
            .claim_products(urls, now, leases.ttl())
            .await?
            .into_iter()
            .collect();
        Ok(mine
            .into_iter()
            .filter(|p| claimed.contains(p.url.as_str()))
            .collect())
    }

    /// Keeps this replica counted among those polling (`poller:<holder>`) while checks
    /// are enabled, so that the others leave it its share of the shops; returns when
    /// `cancel` fires. A store that is not shared has nothing to keep.
    pub async fn keep_polling_presence(self, cancel: CancellationToken) {
        let Some((replicas, leases)) = self.shared() else {
            return;
        };
        let name = format!("{POLLER_LEASE}{}", replicas.holder());
        loop {
            let result = if self.plan().schedule.enabled {
                leases.hold(replicas, vec![name.clone()]).await.map(|_| ())
            } else {
                leases.forget(std::slice::from_ref(&name));
                replicas
                    .release(vec![name.clone()], std::time::Duration::ZERO)
                    .await
            };
            if let Err(e) = result {
                tracing::warn!(error = %Chain(&e), "renewing this replica's polling presence failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(leases.ttl() / 3) => {}
            }
        }
    }

    /// Renews, each third of the lease time, the host leases and product claims a tick
    /// still needs; drops the queues of hosts whose lease this replica no longer holds
    /// (another replica fetches them now) and the products another replica claimed.
    async fn renew(
        &self,
        (replicas, leases): Shared<'_>,
        queues: &mut BTreeMap<String, VecDeque<Product>>,
    ) {
        let names: Vec<String> = queues.keys().map(|h| host_lease(h)).collect();
        let due = leases.to_renew(names.iter().map(String::as_str));
        if !due.is_empty() {
            if let Err(e) = leases.hold(replicas, due).await {
                tracing::warn!(error = %Chain(&e), "renewing host leases failed");
            }
            let mut urls: Vec<String> = queues
                .values()
                .flatten()
                .map(|p| p.url.as_str().to_owned())
                .collect();
            urls.extend(lock(&self.inner.in_flight).iter().cloned());
            let now = self.inner.clock.now_ms();
            match replicas.claim_products(urls, now, leases.ttl()).await {
                Ok(claimed) => {
                    let claimed: HashSet<String> = claimed.into_iter().collect();
                    for q in queues.values_mut() {
                        q.retain(|p| claimed.contains(p.url.as_str()));
                    }
                }
                Err(e) => tracing::warn!(error = %Chain(&e), "renewing product claims failed"),
            }
        }
        queues.retain(|host, _| leases.holds(&host_lease(host)));
    }

    /// The watch loop is alive: waiting for a tick, or moving through one.
    pub(crate) fn beat(&self) {
        if let Some(l) = self.inner.liveness.get() {
            l.beat(Loop::Watch);
        }
    }

    /// Ends the first checks still running (their products stay due, so the next daemon
    /// checks them) and waits until they have let go of the store.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Checks every due product once, as fast as the politeness gate allows, and returns
    /// when all of them are done.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        use std::sync::atomic::Ordering;
        let _running = Running::enter(&self.inner.ticks);
        let first_checks = self.inner.first_checks.load(Ordering::SeqCst);
        let now = self.inner.clock.now_ms();
        let mut waiting: Vec<Product> = self.inner.store.due_products(now, TICK_LIMIT).await?;
        let shared = self.shared();
        if let Some(shared) = shared {
            waiting = self.claim(shared, waiting, now).await?;
        }
        {
            let in_flight = lock(&self.inner.in_flight);
            waiting.retain(|p| !in_flight.contains(p.url.as_str()));
        }
        // One queue per host, in due order: a pass asks the gate once per host and stops at
        // the global limit, so it costs the number of hosts, not of waiting products.
        let mut queues: BTreeMap<String, VecDeque<Product>> = BTreeMap::new();
        for p in waiting {
            queues
                .entry(p.url.host().to_owned())
                .or_default()
                .push_back(p);
        }
        let mut report = TickReport::default();
        let mut running = JoinSet::new();
        loop {
            // Each round follows a finished check or a wait of at most a few seconds: a
            // tick that goes round is alive, however long it takes in all.
            self.beat();
            if let Some(shared) = shared {
                self.renew(shared, &mut queues).await;
            }
            let mut wake_at: Option<u64> = None;
            'hosts: for queue in queues.values_mut() {
                while let Some(product) = queue.front() {
                    match self.start(product) {
                        Ok(permit) => {
                            if let Some(product) = queue.pop_front() {
                                let this = self.clone();
                                // Only then may another check have taken it meanwhile:
                                // a store read per check is otherwise saved.
                                let recheck = self.inner.ticks.load(Ordering::SeqCst) > 1
                                    || self.inner.first_checks.load(Ordering::SeqCst)
                                        != first_checks;
                                running.spawn(async move {
                                    if recheck {
                                        this.check_still_due(product, permit).await
                                    } else {
                                        this.check(product, permit).await.map(Some)
                                    }
                                });
                            }
                        }
                        // Another tick is checking it: that check is this one.
                        Err(Refused::InFlight) => {
                            queue.pop_front();
                        }
                        Err(Refused::Wait(wait)) => {
                            if let Some(t) = wait.until_ms {
                                wake_at = Some(wake_at.map_or(t, |w: u64| w.min(t)));
                            }
                            if wait.reason == WaitReason::GlobalLimit {
                                break 'hosts;
                            }
                            continue 'hosts;
                        }
                    }
                }
            }
            queues.retain(|_, q| !q.is_empty());
            let waiting = !queues.is_empty();
            if !waiting && running.is_empty() {
                break;
            }
            // Capped so that a long wait for the gate still goes round (and beats, and
            // renews its leases in time).
            let mut cap = (BEAT_EVERY * 5).as_millis() as u64;
            if let Some((_, leases)) = shared {
                cap = cap.min((leases.ttl() / 6).as_millis().max(1) as u64);
            }
            let sleep = match wake_at {
                Some(t) => {
                    let ms = t.saturating_sub(self.inner.clock.now_ms());
                    tokio::time::sleep(std::time::Duration::from_millis(ms.clamp(1, cap)))
                }
                None => tokio::time::sleep(std::time::Duration::from_millis(cap)),
            };
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => {
                    match done {
                        Some(Ok(Ok(Some(queued)))) => {
                            report.checked += 1;
                            report.queued += queued;
                        }
                        Some(Ok(Ok(None))) => {}
                        Some(Ok(Err(e))) => {
                            report.failed += 1;
                            tracing::warn!(error = %Chain(&e), "recording a check failed");
                        }
                        Some(Err(e)) => {
                            report.failed += 1;
                            tracing::error!(error = %Chain(&e), "a check task failed");
                        }
                        None => {}
                    }
                }
                _ = sleep, if waiting => {}
            }
        }
        let now = self.inner.clock.now_ms();
        lock(&self.inner.gate).prune(now);
        self.prune_history(now).await?;
        Ok(report)
    }

    /// Drops history older than the retention, at most once an hour.
    async fn prune_history(&self, now: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let last = self.inner.last_prune_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 3_600_000 {
            return Ok(());
        }
        self.inner.last_prune_ms.store(now, Ordering::Relaxed);
        let keep_after = now.saturating_sub(self.inner.history_retention.as_millis() as u64);
        let removed = self.inner.store.prune_history(keep_after).await?;
        if removed > 0 {
            tracing::info!(removed, "old price history pruned");
        }
        Ok(())
    }

    /// Among replicas: whether this one is to make the first check of `url` (it holds the
    /// shop and has claimed the product), or has left it to the replica that fetches the
    /// shop (made due now, for that replica's next tick).
    ///
    /// A check of the product already in flight elsewhere may have read its watches before
    /// the new one was stored, and its record would then set the due time a whole interval
    /// away, over a "due now". So while another replica has the product claimed, this one
    /// waits for that check to be recorded and looks again: the first price is known, or
    /// the product is made due (or claimed) anew. At most [`FIRST_CHECK_WAITS`] times, so that a shop that
    /// keeps failing is not asked again and again for one new watch.
    async fn first_check_is_ours(
        &self,
        replicas: &dyn Replicas,
        leases: &LeaseBook,
        url: &ProductUrl,
    ) -> Result<bool, StoreError> {
        let text = url.as_str().to_owned();
        let mut waits = 0;
        loop {
            let held = !leases
                .hold(replicas, vec![host_lease(url.host())])
                .await?
                .is_empty();
            if held {
                // Whenever it is due, as with one process: a new watch of a product
                // others watch gets its first price now too.
                let claimed = replicas
                    .claim_products(vec![text.clone()], u64::MAX, leases.ttl())
                    .await?;
                if !claimed.is_empty() {
                    return Ok(true);
                }
            } else if !replicas.claimed_elsewhere(text.clone()).await? {
                // No check of it in flight: any check from now on reads the new watch,
                // stored before this began. (Asked before making it due: a check recorded
                // in between would push the due time away again.)
                let now = self.inner.clock.now_ms();
                replicas.make_due(text.clone(), now).await?;
                tracing::debug!(
                    url = %Shown::text(url.as_str()),
                    "first check left to the replica fetching this shop"
                );
                return Ok(false);
            }
            if waits == FIRST_CHECK_WAITS {
                return Ok(false);
            }
            waits += 1;
            // Claims run out after a lease time, so the wait is bounded by one.
            let until = tokio::time::Instant::now() + leases.ttl();
            while replicas.claimed_elsewhere(text.clone()).await?
                && tokio::time::Instant::now() < until
            {
                tokio::time::sleep(CLAIM_POLL).await;
            }
            let watches = self.inner.store.product_watches(url).await?;
            if !watches.iter().any(crate::domain::Watch::is_pending) {
                return Ok(false);
            }
        }
    }

    /// Checks one product now (a new watch's first price), waiting for the gate if the
    /// shop was asked a moment ago. Returns the messages queued.
    pub async fn first_check(&self, url: &ProductUrl) -> Result<usize, StoreError> {
        let Some(mut product) = self.inner.store.product(url).await? else {
            return Ok(0);
        };
        if let Some((replicas, leases)) = self.shared() {
            if !self.first_check_is_ours(replicas, leases, url).await? {
                return Ok(0);
            }
            // Read again: a check recorded while this one waited for the shop or the claim
            // changed the product (validators, health, due time).
            let Some(now) = self.inner.store.product(url).await? else {
                return Ok(0);
            };
            product = now;
        }
        loop {
            // A tick may have checked the product since (its own due check, or a check
            // this one waited for): when that check read the new watch, its first price
            // is known, and fetching again would ask the shop twice for nothing.
            let watches = self.inner.store.product_watches(url).await?;
            if !watches.iter().any(crate::domain::Watch::is_pending) {
                return Ok(0);
            }
            match self.start(&product) {
                Ok(permit) => {
                    let checked = self.check(product, permit).await;
                    self.inner
                        .first_checks
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return checked;
                }
                Err(refused) => {
                    let until = match refused {
                        Refused::InFlight => None,
                        Refused::Wait(w) => w.until_ms,
                    };
                    let now = self.inner.clock.now_ms();
                    let ms = until
                        .map_or(100, |t| t.saturating_sub(now))
                        .clamp(1, 60_000);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
            }
            // What a check made meanwhile recorded (validators, health) is what this one
            // starts from.
            match self.inner.store.product(url).await? {
                Some(p) => product = p,
                None => return Ok(0),
            }
        }
    }

    /// A catalogue search's request: a GET through the engine's fetcher, started when the
    /// gate lets the host be asked (waiting as a first check does), so a search counts
    /// against the shop's gap and concurrency like a check, and a `Retry-After` it gets
    /// pauses the shop's checks too. The caller bounds the wait with its own timeout; the
    /// permit is given back however the future ends, dropped included.
    pub async fn fetch_for_search(&self, url: &url::Url) -> Result<Page, FetchError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let permit = loop {
            let now = self.inner.clock.now_ms();
            let tried = lock(&self.inner.gate).try_start(&host, now);
            match tried {
                Ok(permit) => break permit,
                Err(wait) => {
                    let ms = wait
                        .until_ms
                        .map_or(50, |t| t.saturating_sub(now))
                        .clamp(1, 1_000);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
            }
        };
        let held = HeldPermit {
            watcher: self,
            permit: Some(permit),
        };
        let fetched = self
            .engine()
            .fetcher()
            .fetch(url, &Validators::default())
            .await;
        if let Err(FetchError::Status {
            status: 429 | 503,
            retry_after: Some(wait),
        }) = &fetched
        {
            let until = self
                .plan()
                .schedule
                .retry_after_until(self.inner.clock.now_ms(), *wait);
            lock(&self.inner.gate).retry_after(&host, until);
        }
        drop(held);
        match fetched? {
            Fetched::Page(page) => Ok(page),
            // Nothing conditional was asked, so a 304 is the server's error.
            Fetched::NotModified { .. } => Err(FetchError::Status {
                status: 304,
                retry_after: None,
            }),
        }
    }

    /// Keeps the host's lease at least until `until_ms` (a shop's `Retry-After`), so that
    /// no other replica asks the shop before then either, this one gone included.
    async fn hold_host_until(&self, host: &str, until_ms: u64) {
        let Some((replicas, _)) = self.shared() else {
            return;
        };
        let wait = until_ms.saturating_sub(self.inner.clock.now_ms());
        let held = replicas
            .hold(
                vec![host_lease(host)],
                std::time::Duration::from_millis(wait),
            )
            .await;
        if let Err(e) = held {
            tracing::warn!(error = %Chain(&e), "keeping a paused shop's lease failed");
        }
    }

    /// Takes a gate permit and marks the product in flight.
    fn start(&self, product: &Product) -> Result<Permit, Refused> {
        let mut in_flight = lock(&self.inner.in_flight);
        if in_flight.contains(product.url.as_str()) {
            return Err(Refused::InFlight);
        }
        let permit = lock(&self.inner.gate)
            .try_start(product.url.host(), self.inner.clock.now_ms())
            .map_err(Refused::Wait)?;
        in_flight.insert(product.url.as_str().to_owned());
        Ok(permit)
    }

    /// A tick's check of a product it read as due: `None`, and the shop is not asked,
    /// when the product was checked since (a first check, or a check of another tick,
    /// took it while this tick's queue waited for the gate); its record is what this
    /// check would start from, so it is read again either way.
    async fn check_still_due(
        &self,
        product: Product,
        permit: Permit,
    ) -> Result<Option<usize>, StoreError> {
        let stored = match self.inner.store.product(&product.url).await {
            Ok(stored) => stored,
            Err(e) => {
                self.finish(permit, &product.url);
                return Err(e);
            }
        };
        let unchecked = stored.filter(|p| {
            p.last_check_ms == product.last_check_ms && p.next_due_ms == product.next_due_ms
        });
        match unchecked {
            Some(fresh) => self.check(fresh, permit).await.map(Some),
            None => {
                self.finish(permit, &product.url);
                Ok(None)
            }
        }
    }

    /// Gives the gate permit back and ends the product's time in flight.
    fn finish(&self, permit: Permit, url: &ProductUrl) {
        lock(&self.inner.gate).finish(permit);
        lock(&self.inner.in_flight).remove(url.as_str());
    }

    async fn check(&self, product: Product, permit: Permit) -> Result<usize, StoreError> {
        let result = self.fetch_and_record(&product, &permit).await;
        self.finish(permit, &product.url);
        result
    }

    async fn fetch_and_record(
        &self,
        product: &Product,
        permit: &Permit,
    ) -> Result<usize, StoreError> {
        let store = &self.inner.store;
        let watches = store.product_watches(&product.url).await?;
        if watches.is_empty() {
            // Left behind by a crash during unwatch: nothing to check it for.
            return Ok(0);
        }
        let plan_config = self.plan();
        if all_on_hold(&watches) {
            let now = self.inner.clock.now_ms();
            let record = {
                let mut rng = lock(&self.inner.rng);
                postpone(product, now, &plan_config, &mut *rng)
            };
            store.record_check(record).await?;
            return Ok(0);
        }
        let latest = store.latest_point(&product.url).await?;
        let engine = self.engine();
        // Elapsed time, not the clock's: a manual clock must not make fetches look free.
        let started = std::time::Instant::now();
        let checked = engine
            .check(product.url.as_url(), &product.validators)
            .await;
        if let Some(m) = self.inner.metrics.get() {
            m.check(check_outcome(&checked), started.elapsed());
        }
        let outcome = match checked {
            Ok(check) => Outcome::Checked(check),
            Err(e) => {
                let retry_after = match &e {
                    EngineError::Fetch(FetchError::Status {
                        status: 429 | 503,
                        retry_after: Some(wait),
                    }) => {
                        // The whole shop asked for a pause, not just this page.
                        let until = plan_config
                            .schedule
                            .retry_after_until(self.inner.clock.now_ms(), *wait);
                        lock(&self.inner.gate).retry_after(permit.host(), until);
                        self.hold_host_until(permit.host(), until).await;
                        Some(*wait)
                    }
                    _ => None,
                };
                Outcome::Failed {
                    reason: e.to_string(),
                    retry_after,
                }
            }
        };
        let now = self.inner.clock.now_ms();
        let planned = {
            let mut rng = lock(&self.inner.rng);
            plan(
                product,
                &watches,
                latest.as_ref(),
                &outcome,
                now,
                &plan_config,
                &mut *rng,
            )
        };
        let queued = store.record_check(planned.record).await?;
        if let Some(m) = self.inner.metrics.get() {
            m.alerts_queued(queued.len());
        }
        for w in &planned.remove {
            store.remove_watches(&w.conversation, &[w.id]).await?;
        }
        tracing::debug!(
            url = %Shown::text(product.url.as_str()),
            queued = queued.len(),
            "product checked"
        );
        if !queued.is_empty() {
            self.inner.wake.checks_queued();
        }
        Ok(queued.len())
    }
}

/// A tick counted as running while this lives.
struct Running<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Running<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Running<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How many times a first check waits for another replica's check of the same product.
const FIRST_CHECK_WAITS: usize = 2;
/// How often a first check asks whether that check is recorded.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn host_lease(host: &str) -> String {
    format!("{HOST_LEASE}{host}")
}

/// How a check counts in the metrics. `blocked`: the SSRF guard refused the URL (or an
/// address it resolved to), or the shop answered 401, 403 or 429, which refuse pricewatch
/// rather than fail; pricewatch reads no robots.txt, so nothing else is "blocked". `ok` is
/// what the trigger takes as a price (a positive amount with its currency); a page read
/// without one is `no_price`, whatever the extractor's reason.
fn check_outcome(checked: &Result<Check, EngineError>) -> CheckOutcome {
    match checked {
        Ok(Check::Unchanged { .. }) => CheckOutcome::Unchanged,
        Ok(Check::Read { report, .. }) => match Observation::from_report(report) {
            Observation::Price { .. } => CheckOutcome::Ok,
            _ => CheckOutcome::NoPrice,
        },
        Err(EngineError::Fetch(FetchError::Refused(_)))
        | Err(EngineError::Fetch(FetchError::Status {
            status: 401 | 403 | 429,
            ..
        })) => CheckOutcome::Blocked,
        Err(_) => CheckOutcome::Error,
    }
}

/// Why a check cannot start now.
/// A search's gate permit, given back when dropped: a search that times out is dropped
/// in the middle of its fetch, and its host's slot must not stay taken.
struct HeldPermit<'a> {
    watcher: &'a Watcher,
    permit: Option<Permit>,
}

impl Drop for HeldPermit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            lock(&self.watcher.inner.gate).finish(permit);
        }
    }
}

impl PoliteFetch for Watcher {
    fn fetch_politely<'a>(&'a self, url: &'a url::Url) -> FetchFuture<'a> {
        Box::pin(self.fetch_for_search(url))
    }
}

enum Refused {
    /// The product is being checked already.
    InFlight,
    Wait(Wait),
}

/// A poisoned lock only means a check task panicked; the sets and the gate stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Each first check runs as a task of the watcher's, so `shutdown` ends it.
impl FirstCheck for Watcher {
    fn start_first_check(&self, url: ProductUrl) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = this.inner.cancel.cancelled() => {}
                result = this.first_check(&url) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %Chain(&e), url = %Shown::text(url.as_str()), "first check failed to record");
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::extract::{Availability, Report};
    use crate::price::fetch::guard::Refusal;

    fn read(amount: Option<i64>, currency: Option<&str>) -> Result<Check, EngineError> {
        Ok(Check::Read {
            report: Report {
                title: None,
                amount: amount.map(rust_decimal::Decimal::from),
                currency: currency.and_then(crate::price::currency::Currency::parse),
                availability: Availability::Unknown,
                method: None,
                candidates: Vec::new(),
                error: None,
                rule_set: None,
            },
            final_url: "https://shop.example/p".parse().unwrap(),
            validators: Default::default(),
        })
    }

    fn status(status: u16) -> Result<Check, EngineError> {
        Err(EngineError::Fetch(FetchError::Status {
            status,
            retry_after: None,
        }))
    }

    #[test]
    fn check_outcomes_for_the_metrics() {
        assert_eq!(
            check_outcome(&read(Some(10), Some("EUR"))),
            CheckOutcome::Ok
        );
        assert_eq!(check_outcome(&read(Some(10), None)), CheckOutcome::NoPrice);
        assert_eq!(check_outcome(&read(None, None)), CheckOutcome::NoPrice);
        assert_eq!(
            check_outcome(&Ok(Check::Unchanged {
                validators: Default::default()
            })),
            CheckOutcome::Unchanged
        );
        assert_eq!(
            check_outcome(&Err(EngineError::Fetch(FetchError::Refused(
                Refusal::NoHost
            )))),
            CheckOutcome::Blocked
        );
        for blocked in [401, 403, 429] {
            assert_eq!(check_outcome(&status(blocked)), CheckOutcome::Blocked);
        }
        for failed in [404, 500, 503] {
            assert_eq!(check_outcome(&status(failed)), CheckOutcome::Error);
        }
        assert_eq!(
            check_outcome(&Err(EngineError::Fetch(FetchError::Timeout))),
            CheckOutcome::Error
        );
    }
}
