//! Hands queued messages to the adapter: renders each outbox entry in its conversation's
//! language (alerts ready together for one conversation become one digest), sends it
//! through the Connector, and removes it only once the channel accepted it.
//!
//! A failed send is decided by [`crate::delivery::retry`]: retried later (its next attempt stored in
//! the outbox, so a restart does not retry in a burst), or moved to the dead letters with
//! its last error. A 403/404 marks the conversation unreachable and pauses its watches. A
//! 429/503 also holds back the rest of that channel's messages for the `Retry-After`.
//! Every outcome is logged with the alert id and counted. When passes run is
//! [`run`]'s business.

pub mod connector;
pub mod ratelimit;
pub mod replies;
pub mod retry;
pub mod run;
pub mod token;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::delivery::connector::{Connector, ConnectorError};
use crate::delivery::ratelimit::{Admission, SendLimits};
use crate::delivery::replies::ReplyLanes;
use crate::delivery::retry::{classify, Decision, Failure, RetryPolicy};
use crate::domain::{Event, OutboxEntry, OutboxMessage, Unreachable, Watch};
use crate::error::Chain;
use crate::inbound::activity::ConversationKey;
use crate::ops::metrics::Metrics;
use crate::random::SplitMix64;
use crate::shown::Shown;
use crate::speech::notices::{self, AlertItem, Message, ProductView};
use crate::speech::replies::Lang;
use crate::store::{LeaseBook, Recipient, Replicas, Store, StoreError, DELIVERY_LEASE};

/// Entries one pass takes; the rest wait for the next pass.
const PASS_LIMIT: usize = 1000;
/// How long a channel that answered 429/503 without `Retry-After` is held back.
const THROTTLE_DEFAULT: Duration = Duration::from_secs(5);
/// A rate-limit wait up to this long is slept through within the pass; a longer one is
/// stored as the messages' next attempt.
const SHORT_WAIT_MS: u64 = 1_000;
/// Conversations of one channel being sent to at once.
const CONVERSATIONS_IN_FLIGHT: usize = 32;
/// How often idle conversations are dropped from the rate limiters.
const PRUNE_EVERY_MS: u64 = 60_000;
/// Delivered messages removed from the outbox in one store call (one transaction). A
/// channel pass removes the rest before it ends, and a pass cut off (a shutdown) leaves
/// them to [`Delivery::record_sent`], so that neither the next pass nor the next daemon
/// sends them again.
const REMOVE_BATCH: usize = 256;
/// Delivered messages are also removed once this long has passed since the last removal,
/// whatever their number: a daemon killed mid-pass (or a replica whose channel another
/// takes over) leaves at most about this much of sending to be sent again.
const REMOVE_EVERY_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Activities the channels accepted.
    pub sent: usize,
    /// Outbox entries removed: sent, or about a watch that no longer exists.
    pub done: usize,
    /// Entries left for a later attempt.
    pub retried: usize,
    /// Entries moved to the dead letters.
    pub dead: usize,
    /// Entries whose next attempt was moved to when a rate limit lets them go.
    pub deferred: usize,
    /// The pass took as many entries as it may: more may be due at once.
    pub more: bool,
    /// The earliest next attempt this pass stored (a deferral or a retry), if any.
    pub next_attempt_ms: Option<u64>,
}

impl PassReport {
    fn add(&mut self, o: PassReport) {
        self.sent += o.sent;
        self.done += o.done;
        self.retried += o.retried;
        self.dead += o.dead;
        self.deferred += o.deferred;
        self.more |= o.more;
        self.next_attempt_ms = match (self.next_attempt_ms, o.next_attempt_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn wait_until(&mut self, at_ms: u64) {
        self.next_attempt_ms = Some(self.next_attempt_ms.map_or(at_ms, |t| t.min(at_ms)));
    }
}

/// Totals since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounters {
    pub sent: u64,
    pub retried: u64,
    pub dead: u64,
}

pub struct Delivery {
    store: Arc<dyn Store>,
    connector: Connector,
    clock: Arc<dyn Clock>,
    /// Replaced on reload.
    policy: std::sync::RwLock<RetryPolicy>,
    /// Replaced on reload: new limiters, starting empty as after a restart (waits longer
    /// than a second are in the outbox, so none is forgotten).
    limits: std::sync::RwLock<Arc<SendLimits>>,
    last_prune_ms: AtomicU64,
    rng: Mutex<SplitMix64>,
    /// Channel id → until when it asked (429/503) to be left alone.
    throttled: Mutex<HashMap<String, u64>>,
    /// Channels a pass is sending to now. Passes may overlap (the daemon starts the next
    /// one while a slow channel holds up the last): each channel is in one pass at a time.
    busy: Mutex<HashSet<String>>,
    /// Channel passes finished so far: a pass whose snapshot of the outbox is older than
    /// the last one re-reads its entries before sending (another pass may have sent them).
    finished: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    /// Counts rate-limit waits (set by the daemon); sent, retried and dead are read from
    /// the counters above at scrape time.
    metrics: std::sync::OnceLock<Arc<Metrics>>,
    /// The order of queued replies, shared with the endpoint that queues them.
    replies: Arc<ReplyLanes>,
    /// Messages the channels accepted and the outbox still holds: kept here, not in the
    /// pass, so that a pass cut off does not forget them.
    sent_unrecorded: Mutex<Vec<u64>>,
    /// The leases of a store shared with other replicas (set by the daemon).
    leases: std::sync::OnceLock<Arc<LeaseBook>>,
    /// When delivered messages were last removed from the outbox (clock ms).
    removed_at_ms: AtomicU64,
}

impl Delivery {
    fn limits(&self) -> Arc<SendLimits> {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn policy(&self) -> RetryPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends from now on go by `policy` and `limits` (a reloaded configuration).
    pub fn reconfigure(&self, policy: RetryPolicy, limits: Arc<SendLimits>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    pub fn new(
        store: Arc<dyn Store>,
        connector: Connector,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
        limits: Arc<SendLimits>,
    ) -> Delivery {
        let now = clock.now_ms();
        let rng = SplitMix64::for_process(now, 17);
        Delivery {
            store,
            connector,
            clock,
            policy: std::sync::RwLock::new(policy),
            limits: std::sync::RwLock::new(limits),
            last_prune_ms: AtomicU64::new(0),
            rng: Mutex::new(rng),
            throttled: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            finished: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            metrics: std::sync::OnceLock::new(),
            replies: Arc::new(ReplyLanes::default()),
            sent_unrecorded: Mutex::new(Vec::new()),
            leases: std::sync::OnceLock::new(),
            removed_at_ms: AtomicU64::new(now),
        }
    }

    /// Shares the delivery with the other replicas of a shared store from now on, through
    /// `leases` (once; later calls are ignored): a channel's messages are sent by the one
    /// replica holding its delivery lease, so that the channel's windows, counted by that
    /// replica's limiters, hold for the whole bot. A replica that takes a channel over
    /// starts its limiters as after a restart (one spacing of the widest window before
    /// the first send), and one that cannot renew its lease stops sending a third of the
    /// lease time before anyone can take it. A store that is not shared ignores it.
    pub fn share_with(&self, leases: Arc<LeaseBook>) {
        let _ = self.leases.set(leases);
    }

    fn shared(&self) -> Option<(&dyn Replicas, &LeaseBook)> {
        Some((self.store.replicas()?, self.leases.get()?.as_ref()))
    }

    /// Of the due messages, those of the channels whose delivery lease this replica holds
    /// (taken or renewed), claimed for it.
    async fn claim_channels(
        &self,
        (replicas, leases): (&dyn Replicas, &LeaseBook),
        ready: Vec<OutboxEntry>,
        now: u64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let channels: BTreeSet<String> = ready
            .iter()
            .map(|e| delivery_lease(&e.conversation.channel_id))
            .collect();
        let held = leases
            .hold(replicas, channels.into_iter().collect())
            .await?;
        let mut mine = HashSet::new();
        for h in held {
            let channel = h.name.strip_prefix(DELIVERY_LEASE).unwrap_or(&h.name);
            if h.taken_over {
                self.limits().resume_channel(channel);
                tracing::info!(
                    channel = %Shown::id(channel),
                    holder = %Shown::id(replicas.holder()),
                    "this replica delivers the channel's messages now"
                );
            }
            mine.insert(channel.to_owned());
        }
        let ids = ready
            .iter()
            .filter(|e| mine.contains(&e.conversation.channel_id))
            .map(|e| e.id)
            .collect();
        replicas.claim_messages(ids, now, leases.ttl()).await
    }

    /// Whether this replica may still send to the channel: always, unless the store is
    /// shared; then while its delivery lease holds, renewed here when due.
    async fn may_send(&self, channel: &str) -> bool {
        let Some((replicas, leases)) = self.shared() else {
            return true;
        };
        let name = delivery_lease(channel);
        let due = leases.to_renew([name.as_str()]);
        if !due.is_empty() {
            if let Err(e) = leases.hold(replicas, due).await {
                tracing::warn!(error = %Chain(&e), "renewing a delivery lease failed");
            }
        }
        leases.holds(&name)
    }

    /// Whether this replica's delivery lease on the channel still counts, as far as it
    /// knows now, without asking the store (always, unless the store is shared).
    fn still_holds(&self, channel: &str) -> bool {
        self.shared()
            .is_none_or(|(_, leases)| leases.holds(&delivery_lease(channel)))
    }

    /// Keeps queued replies in the order `lanes` knows (the endpoint's, which queues them).
    pub fn with_replies(mut self, lanes: Arc<ReplyLanes>) -> Delivery {
        self.replies = lanes;
        self
    }

    /// Counts rate-limit waits in `metrics` from now on (once; later calls are ignored).
    pub fn count_in(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The delivery clock's time, for scheduling the next pass.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn counters(&self) -> DeliveryCounters {
        DeliveryCounters {
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
        }
    }

    /// Sends everything that is due: the channels side by side, so that a slow or
    /// throttled channel does not hold back another's messages; within a channel, one
    /// conversation after another.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        if now.saturating_sub(self.last_prune_ms.load(Ordering::Relaxed)) >= PRUNE_EVERY_MS {
            self.last_prune_ms.store(now, Ordering::Relaxed);
            let kept = self.limits().prune();
            tracing::debug!(kept, "rate limiter keys pruned");
        }
        // A store that cannot record a send cannot have one: the message would be sent
        // again at every pass. Everything stays queued until it can.
        self.store.writable()?;
        // Sent by a pass that was cut off: not due any more.
        self.record_sent().await?;
        let finished_before = self.finished.load(Ordering::SeqCst);
        let mut ready = self.store.due_messages(now, PASS_LIMIT).await?;
        let more = ready.len() >= PASS_LIMIT;
        if let Some(shared) = self.shared() {
            ready = self.claim_channels(shared, ready, now).await?;
        }
        // Queue order within a conversation; conversations in key order.
        let mut by_channel: BTreeMap<String, BTreeMap<ConversationKey, Vec<OutboxEntry>>> =
            BTreeMap::new();
        for entry in ready {
            by_channel
                .entry(entry.conversation.channel_id.clone())
                .or_default()
                .entry(entry.conversation.clone())
                .or_default()
                .push(entry);
        }
        let passes = by_channel
            .into_iter()
            .filter(|(channel, _)| !self.is_throttled(channel))
            .filter_map(|(channel, conversations)| {
                let claim = self.claim(channel)?;
                Some(async move {
                    let _claim = claim;
                    // Sent, retried or deferred by a pass that ended after this one read
                    // the outbox: look again.
                    let conversations = if self.finished.load(Ordering::SeqCst) != finished_before {
                        self.still_due(conversations, now).await?
                    } else {
                        conversations
                    };
                    self.channel_pass(conversations).await
                })
            });
        let mut report = PassReport {
            more,
            ..PassReport::default()
        };
        for result in futures_util::future::join_all(passes).await {
            report.add(result?);
        }
        Ok(report)
    }

    /// Marks the channel busy for as long as the returned claim lives; `None` when another
    /// pass has it.
    fn claim(&self, channel: String) -> Option<Claim<'_>> {
        if !lock(&self.busy).insert(channel.clone()) {
            return None;
        }
        Some(Claim {
            delivery: self,
            channel,
        })
    }

    /// The entries that are still queued and due, as stored now.
    async fn still_due(
        &self,
        conversations: BTreeMap<ConversationKey, Vec<OutboxEntry>>,
        now: u64,
    ) -> Result<BTreeMap<ConversationKey, Vec<OutboxEntry>>, StoreError> {
        let mut out = BTreeMap::new();
        for (key, entries) in conversations {
            let mut kept = Vec::with_capacity(entries.len());
            for e in entries {
                if let Some(current) = self.store.queued_message(e.id).await? {
                    if current.next_attempt_ms <= now {
                        kept.push(current);
                    }
                }
            }
            if !kept.is_empty() {
                out.insert(key, kept);
            }
        }
        Ok(out)
    }

    /// A channel's conversations, [`CONVERSATIONS_IN_FLIGHT`] at a time: their limits are
    /// apart, and one slow conversation must not hold back the channel's others.
    ///
    /// The store is asked once for every conversation's reference, mark and watches, and
    /// delivered messages are removed [`REMOVE_BATCH`] at a time: per-message store calls
    /// (each a trip to the blocking pool, each removal a sled transaction) were most of
    /// what a fan-out cost.
    async fn channel_pass(
        &self,
        conversations: BTreeMap<ConversationKey, Vec<OutboxEntry>>,
    ) -> Result<PassReport, StoreError> {
        use futures_util::stream::StreamExt;
        let wanted = conversations
            .iter()
            .map(|(key, entries)| (key.clone(), entries.iter().any(|e| e.watch_id.is_some())))
            .collect();
        let recipients = self.store.recipients(wanted).await?;
        let delivered = &self.sent_unrecorded;
        let mut runs = futures_util::stream::iter(conversations.into_iter().zip(recipients))
            .map(|((conversation, entries), recipient)| async move {
                let mut report = PassReport::default();
                // A 429 from another conversation pauses the channel: the rest wait.
                if !self.is_throttled(&conversation.channel_id) {
                    self.conversation(&conversation, recipient, entries, delivered, &mut report)
                        .await?;
                }
                Ok::<_, StoreError>(report)
            })
            .buffer_unordered(CONVERSATIONS_IN_FLIGHT);
        let mut report = PassReport::default();
        while let Some(r) = runs.next().await {
            let r = match r {
                Ok(r) => r,
                Err(err) => {
                    // What was sent stays sent: try to record it before giving up.
                    drop(runs);
                    let _ = self.remove_delivered(delivered, 0).await;
                    return Err(err);
                }
            };
            report.add(r);
            self.remove_delivered(delivered, REMOVE_BATCH).await?;
        }
        self.remove_delivered(delivered, 0).await?;
        Ok(report)
    }

    /// Removes from the outbox every message the channels accepted that is still in it.
    /// The delivery loop calls it after ending the passes a shutdown cut off.
    pub async fn record_sent(&self) -> Result<(), StoreError> {
        self.remove_delivered(&self.sent_unrecorded, 0).await
    }

    /// Removes the delivered messages collected so far once there are at least `batch`, or
    /// a second after the last removal.
    async fn remove_delivered(
        &self,
        delivered: &Mutex<Vec<u64>>,
        batch: usize,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let ids = {
            let mut ids = lock(delivered);
            let due =
                now.saturating_sub(self.removed_at_ms.load(Ordering::Relaxed)) >= REMOVE_EVERY_MS;
            if ids.is_empty() || (ids.len() < batch && !due) {
                return Ok(());
            }
            std::mem::take(&mut *ids)
        };
        self.removed_at_ms.store(now, Ordering::Relaxed);
        self.store.remove_delivered(ids).await
    }

    fn is_throttled(&self, channel: &str) -> bool {
        let now = self.clock.now_ms();
        let mut throttled = lock(&self.throttled);
        throttled.retain(|_, until| *until > now);
        throttled.contains_key(channel)
    }

    async fn conversation(
        &self,
        key: &ConversationKey,
        recipient: Recipient,
        entries: Vec<OutboxEntry>,
        delivered: &Mutex<Vec<u64>>,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let Recipient {
            reference,
            unreachable,
            watches,
        } = recipient;
        if let Some(mark) = unreachable {
            let error = format!("the conversation is unreachable: {}", mark.reason);
            for e in &entries {
                self.dead(e, &error, report).await?;
            }
            return Ok(());
        }
        let Some(reference) = reference else {
            // Cannot happen for messages the watch loop queues (a watch exists only after an
            // activity stored the reference), but never lose a message over it.
            for e in &entries {
                let failure = Failure::Transient {
                    retry_after: None,
                    throttled: false,
                };
                self.failed(e, failure, "no conversation reference is stored", report)
                    .await?;
            }
            return Ok(());
        };
        let lang = Lang::from_locale(reference.locale.as_deref());
        let mut alerts: Vec<(AlertItem<'_>, &OutboxEntry)> = Vec::new();
        let mut singles: Vec<(Message, Option<&str>, &OutboxEntry)> = Vec::new();
        let mut stale: Vec<&OutboxEntry> = Vec::new();
        for entry in &entries {
            match render(lang, entry, &watches) {
                Rendered::Alert(item) => alerts.push((item, entry)),
                Rendered::Single(msg) => singles.push((msg, None, entry)),
                Rendered::Reply(msg, reply_to_id) => singles.push((msg, reply_to_id, entry)),
                Rendered::Stale => stale.push(entry),
            }
        }
        // About a watch removed since: telling the user would only confuse.
        lock(delivered).extend(stale.iter().map(|e| e.id));
        report.done += stale.len();
        let digest = {
            let items: Vec<AlertItem<'_>> = alerts.iter().map(|(item, _)| *item).collect();
            notices::alerts(lang, &items)
        };
        let mut outgoing: Vec<(Message, Option<&str>, Vec<&OutboxEntry>)> = singles
            .into_iter()
            .map(|(msg, reply_to_id, entry)| (msg, reply_to_id, vec![entry]))
            .collect();
        if let Some(msg) = digest {
            outgoing.push((msg, None, alerts.iter().map(|(_, e)| *e).collect()));
        }
        let mut outgoing = outgoing.into_iter();
        while let Some((msg, reply_to_id, covered)) = outgoing.next() {
            if let Some(at) = self.earlier_reply_pending(key, &covered).await? {
                // It must not overtake its conversation's earlier reply: it goes after it.
                self.defer(covered.iter().copied(), at, report).await?;
                continue;
            }
            // The lease is renewed (a store call) before the limits admit the send, not
            // between the admission and the send: a send held up after its admission
            // reaches the channel closer to the next one than the limiter spaced them,
            // by more than its margin allows for.
            if !self.may_send(&key.channel_id).await {
                // Another replica may send to the channel now: the rest stay queued, due,
                // for it.
                return Ok(());
            }
            if let Some(at) = self.wait_for_limits(key).await {
                // Everything left for this conversation waits for the limit, durably.
                let rest = covered
                    .iter()
                    .copied()
                    .chain(outgoing.flat_map(|(_, _, c)| c));
                self.defer(rest, at, report).await?;
                return Ok(());
            }
            if !self.still_holds(&key.channel_id) {
                // The wait for the limits outlasted the lease: the rest stay queued.
                return Ok(());
            }
            let mut activity = notices::into_activity(msg, &reference, lang);
            activity.reply_to_id = reply_to_id.map(str::to_owned);
            let err = match self.connector.send(&activity).await {
                Ok(accepted) => {
                    report.sent += 1;
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    for e in covered {
                        tracing::info!(
                            alert_id = %Shown::id(&e.alert_id),
                            channel = %Shown::id(&key.channel_id),
                            activity_id = %Shown::id(accepted.activity_id.as_deref().unwrap_or("")),
                            "message delivered"
                        );
                        lock(delivered).push(e.id);
                        self.reply_left(e);
                        report.done += 1;
                    }
                    continue;
                }
                Err(err) => err,
            };
            let failure = classify(&err);
            // Stored with the message (last error, dead letter) and logged: the whole chain.
            let error = Chain(&err).to_string();
            if let ConnectorError::Untrusted { url, reason } = &err {
                tracing::error!(
                    channel = %Shown::id(&key.channel_id),
                    conversation = %Shown::id(&key.conversation_id),
                    service_url = %Shown::id(url),
                    reason = %Shown::text(reason),
                    "refusing to send to this conversation's serviceUrl"
                );
            }
            for e in &covered {
                self.failed(e, failure, &error, report).await?;
            }
            match failure {
                Failure::Transient {
                    throttled: true,
                    retry_after,
                } => {
                    // The channel asked for a pause: the rest waits, still queued as it is.
                    let until = self
                        .clock
                        .now_ms()
                        .saturating_add(retry_after.unwrap_or(THROTTLE_DEFAULT).as_millis() as u64);
                    lock(&self.throttled).insert(key.channel_id.clone(), until);
                    // This conversation's other messages wait durably, so a restart does
                    // not send them into the channel's pause.
                    let rest = outgoing.by_ref().flat_map(|(_, _, c)| c);
                    self.defer(rest, until, report).await?;
                    return Ok(());
                }
                Failure::Unreachable => {
                    let paused = self
                        .store
                        .mark_unreachable(
                            key,
                            Unreachable {
                                since_ms: self.clock.now_ms(),
                                reason: error.clone(),
                            },
                        )
                        .await?;
                    tracing::warn!(
                        channel = %Shown::id(&key.channel_id),
                        conversation = %Shown::id(&key.conversation_id),
                        paused,
                        error = %Shown::text(&error),
                        "conversation unreachable; its watches are paused until it writes again"
                    );
                    for (_, _, rest) in outgoing.by_ref() {
                        for e in rest {
                            self.dead(e, &error, report).await?;
                        }
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Puts the entries off until `at`, in one store call.
    async fn defer<'e>(
        &self,
        entries: impl Iterator<Item = &'e OutboxEntry>,
        at: u64,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let ids: Vec<u64> = entries.map(|e| e.id).collect();
        if !ids.is_empty() {
            report.deferred += ids.len();
            self.store.defer_messages(ids, at).await?;
        }
        report.wait_until(at);
        Ok(())
    }

    /// When a queued reply among `covered` has an earlier reply of its conversation still
    /// queued (it failed again, or waits for a limit): that one's next attempt, to go
    /// after it.
    async fn earlier_reply_pending(
        &self,
        key: &ConversationKey,
        covered: &[&OutboxEntry],
    ) -> Result<Option<u64>, StoreError> {
        let Some(id) = covered
            .iter()
            .find(|e| matches!(e.message, OutboxMessage::Reply { .. }))
            .map(|e| e.id)
        else {
            return Ok(None);
        };
        while let Some(earlier) = self.replies.blocker(key, id) {
            match self.store.queued_message(earlier).await? {
                Some(entry) => {
                    let soonest = self.clock.now_ms().saturating_add(1);
                    return Ok(Some(entry.next_attempt_ms.max(soonest)));
                }
                // Gone from the outbox without delivery knowing (an operator's command).
                None => self.replies.done(key, earlier),
            }
        }
        Ok(None)
    }

    /// A reply left the outbox: the next one of its conversation may go.
    fn reply_left(&self, entry: &OutboxEntry) {
        if matches!(entry.message, OutboxMessage::Reply { .. }) {
            self.replies.done(&entry.conversation, entry.id);
        }
    }

    /// Takes the rate limits' permission to send to the conversation, sleeping through a
    /// short wait; returns the time to defer to when the wait is long.
    async fn wait_for_limits(&self, key: &ConversationKey) -> Option<u64> {
        // A send that waits through one window and then meets the next counts once.
        let mut counted = false;
        loop {
            match self.limits().admit(&key.channel_id, &key.conversation_id) {
                Admission::Now => return None,
                Admission::NotBefore(at) => {
                    if let (false, Some(m)) = (counted, self.metrics.get()) {
                        m.rate_limit_wait(&key.channel_id);
                        counted = true;
                    }
                    let wait = at.saturating_sub(self.clock.now_ms());
                    if wait > SHORT_WAIT_MS {
                        return Some(at);
                    }
                    self.clock.sleep_ms(wait.max(1)).await;
                }
            }
        }
    }

    /// Applies the retry policy to one entry whose send failed.
    async fn failed(
        &self,
        entry: &OutboxEntry,
        failure: Failure,
        error: &str,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let retry_after = match failure {
            Failure::Transient { retry_after, .. } => retry_after,
            Failure::Permanent | Failure::Unreachable => {
                return self.dead(entry, error, report).await
            }
        };
        let now = self.clock.now_ms();
        let failures = entry.attempts.saturating_add(1);
        let decision = {
            let mut rng = lock(&self.rng);
            self.policy()
                .decide(failures, entry.created_ms, now, retry_after, &mut *rng)
        };
        match decision {
            Decision::RetryAt(at) => {
                tracing::warn!(
                    alert_id = %Shown::id(&entry.alert_id),
                    channel = %Shown::id(&entry.conversation.channel_id),
                    attempts = failures,
                    retry_in_ms = at.saturating_sub(now),
                    error = %Shown::text(error),
                    "delivery failed; will retry"
                );
                self.store
                    .schedule_retry(entry.id, at, error.to_owned())
                    .await?;
                report.retried += 1;
                report.wait_until(at);
                self.retried.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Decision::Dead => self.dead(entry, error, report).await,
        }
    }

    async fn dead(
        &self,
        entry: &OutboxEntry,
        error: &str,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        tracing::error!(
            alert_id = %Shown::id(&entry.alert_id),
            channel = %Shown::id(&entry.conversation.channel_id),
            conversation = %Shown::id(&entry.conversation.conversation_id),
            attempts = entry.attempts.saturating_add(1),
            error = %Shown::text(error),
            "delivery given up; moved to the dead letters"
        );
        let moved = self
            .store
            .move_to_dead_letters(entry.id, error.to_owned(), self.clock.now_ms())
            .await?;
        self.reply_left(entry);
        if moved {
            report.dead += 1;
            self.dead.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A channel being sent to by one pass; released when dropped, also when the pass is
/// cancelled (a shutdown).
struct Claim<'a> {
    delivery: &'a Delivery,
    channel: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.delivery.busy).remove(&self.channel);
        self.delivery.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn delivery_lease(channel: &str) -> String {
    format!("{DELIVERY_LEASE}{channel}")
}

/// A poisoned lock only means a pass panicked; the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Rendered<'a> {
    Alert(AlertItem<'a>),
    Single(Message),
    /// A turn's reply sent late, still a reply to the activity it answers.
    Reply(Message, Option<&'a str>),
    /// The watch it is about is gone.
    Stale,
}

fn render<'a>(lang: Lang, entry: &'a OutboxEntry, watches: &'a [Watch]) -> Rendered<'a> {
    let position = entry
        .watch_id
        .and_then(|id| watches.iter().position(|w| w.id == id));
    let watch = position.map(|i| &watches[i]);
    let number = position.map_or(0, |i| i + 1);
    let view = |url: &'a str, title: &'a Option<String>| ProductView {
        url,
        title: title.as_deref(),
    };
    match (&entry.message, watch) {
        (OutboxMessage::FirstCheckFailed { url, reason }, _) => {
            Rendered::Single(notices::first_fetch_failed(lang, url, reason))
        }
        (OutboxMessage::Announcement { text }, _) => Rendered::Single(Message::announcement(text)),
        (OutboxMessage::Reply { text, reply_to_id }, _) => {
            Rendered::Reply(Message::reply(text), reply_to_id.as_deref())
        }
        (_, None) if entry.watch_id.is_some() => Rendered::Stale,
        (OutboxMessage::Watch { url, title, event }, Some(w)) => match event {
            Event::ReferenceSet { reference, line } => Rendered::Single(notices::first_price(
                lang,
                number,
                view(url, title),
                reference,
                *line,
                &w.rule,
            )),
            Event::Fired {
                reference,
                price,
                currency,
                line,
                drop_percent,
                at_ms,
            } => Rendered::Alert(AlertItem {
                number,
                product: view(url, title),
                reference: *reference,
                price: *price,
                currency: *currency,
                line: *line,
                drop_percent: *drop_percent,
                at_ms: *at_ms,
            }),
            Event::CurrencyMismatch { reference, seen } => Rendered::Single(
                notices::currency_changed(lang, number, view(url, title), *reference, *seen),
            ),
            Event::StockSet { in_stock, price } => Rendered::Single(notices::stock_set(
                lang,
                number,
                view(url, title),
                *in_stock,
                price.as_ref(),
            )),
            Event::BackInStock { price, .. } => Rendered::Single(notices::back_in_stock(
                lang,
                number,
                view(url, title),
                price.as_ref(),
            )),
            // Never queued; nothing to say.
            Event::Rearmed | Event::SoldOut => Rendered::Stale,
        },
        (
            OutboxMessage::CannotRead {
                url,
                title,
                since_ms,
                reason,
            },
            _,
        ) => Rendered::Single(notices::cannot_read(
            lang,
            number,
            view(url, title),
            *since_ms,
            reason,
        )),
        (OutboxMessage::ReadableAgain { url, title }, w) => {
            let price = w
                .and_then(|w| w.trigger.last)
                .map(|s| (s.amount, s.currency));
            Rendered::Single(notices::readable_again(
                lang,
                number,
                view(url, title),
                price,
            ))
        }
        (OutboxMessage::Watch { .. }, None) => Rendered::Stale,
    }
}
