//! Hands queued messages to the adapter: renders each outbox entry in its conversation's
//! language (alerts ready together for one conversation become one digest), sends it
//! through the Connector, and removes it only once the channel accepted it. A failed
//! send stays in the outbox with its next attempt; nothing is dropped.
//!
//! Rate limits, dead letters and token handling are the delivery issue's; this pass
//! retries with a capped exponential delay.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::activity::ConversationKey;
use crate::clock::Clock;
use crate::connector::Connector;
use crate::domain::{OutboxEntry, OutboxMessage, Watch};
use crate::notify::{self, AlertItem, Message, ProductView};
use crate::replies::Lang;
use crate::store::{Store, StoreError};
use crate::trigger::Event;

/// Entries one pass takes; the rest wait for the next pass.
const PASS_LIMIT: usize = 1000;
const RETRY_BASE_MS: u64 = 30_000;
const RETRY_CAP_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Activities the channels accepted.
    pub sent: usize,
    /// Outbox entries removed: sent, or about a watch that no longer exists.
    pub done: usize,
    /// Entries left for a later attempt.
    pub retried: usize,
}

pub struct Delivery {
    store: Arc<dyn Store>,
    connector: Connector,
    clock: Arc<dyn Clock>,
}

impl Delivery {
    pub fn new(store: Arc<dyn Store>, connector: Connector, clock: Arc<dyn Clock>) -> Delivery {
        Delivery {
            store,
            connector,
            clock,
        }
    }

    /// Sends everything that is due, one conversation after another.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        let ready = self.store.outbox_ready(now, PASS_LIMIT).await?;
        // Queue order within a conversation; conversations in key order.
        let mut by_conversation: BTreeMap<ConversationKey, Vec<OutboxEntry>> = BTreeMap::new();
        for entry in ready {
            by_conversation
                .entry(entry.conversation.clone())
                .or_default()
                .push(entry);
        }
        let mut report = PassReport::default();
        for (conversation, entries) in by_conversation {
            self.conversation(&conversation, entries, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn conversation(
        &self,
        key: &ConversationKey,
        entries: Vec<OutboxEntry>,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let Some(reference) = self.store.reference(key).await? else {
            // Cannot happen for messages the watch loop queues (a watch exists only after an
            // activity stored the reference), but never lose a message over it.
            for e in &entries {
                self.retry(e, "no conversation reference is stored".to_owned(), report)
                    .await?;
            }
            return Ok(());
        };
        let lang = Lang::from_locale(reference.locale.as_deref());
        let watches = self.store.watches(key).await?;
        let mut alerts: Vec<(AlertItem<'_>, &OutboxEntry)> = Vec::new();
        let mut singles: Vec<(Message, &OutboxEntry)> = Vec::new();
        let mut stale: Vec<&OutboxEntry> = Vec::new();
        for entry in &entries {
            match render(lang, entry, &watches) {
                Rendered::Alert(item) => alerts.push((item, entry)),
                Rendered::Single(msg) => singles.push((msg, entry)),
                Rendered::Stale => stale.push(entry),
            }
        }
        for entry in stale {
            // About a watch removed since: telling the user would only confuse.
            self.store.outbox_delivered(entry.id).await?;
            report.done += 1;
        }
        let digest = {
            let items: Vec<AlertItem<'_>> = alerts.iter().map(|(item, _)| *item).collect();
            notify::alerts(lang, &items)
        };
        let mut outgoing: Vec<(Message, Vec<&OutboxEntry>)> = singles
            .into_iter()
            .map(|(msg, entry)| (msg, vec![entry]))
            .collect();
        if let Some(msg) = digest {
            outgoing.push((msg, alerts.iter().map(|(_, e)| *e).collect()));
        }
        for (msg, covered) in outgoing {
            let activity = notify::into_activity(msg, &reference, lang);
            match self.connector.send(&activity).await {
                Ok(delivered) => {
                    report.sent += 1;
                    for e in covered {
                        tracing::info!(
                            alert_id = %e.alert_id,
                            activity_id = delivered.activity_id.as_deref().unwrap_or(""),
                            "message delivered"
                        );
                        self.store.outbox_delivered(e.id).await?;
                        report.done += 1;
                    }
                }
                Err(err) => {
                    for e in covered {
                        self.retry(e, err.to_string(), report).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn retry(
        &self,
        entry: &OutboxEntry,
        error: String,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let delay = RETRY_BASE_MS
            .saturating_mul(1u64 << entry.attempts.min(20))
            .min(RETRY_CAP_MS);
        tracing::warn!(alert_id = %entry.alert_id, attempts = entry.attempts + 1, %error, "delivery failed; will retry");
        self.store
            .outbox_retry(entry.id, self.clock.now_ms().saturating_add(delay), error)
            .await?;
        report.retried += 1;
        Ok(())
    }
}

enum Rendered<'a> {
    Alert(AlertItem<'a>),
    Single(Message),
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
            Rendered::Single(notify::first_fetch_failed(lang, url, reason))
        }
        (_, None) if entry.watch_id.is_some() => Rendered::Stale,
        (OutboxMessage::Watch { url, title, event }, Some(w)) => match event {
            Event::ReferenceSet { reference, line } => Rendered::Single(notify::first_price(
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
                notify::currency_changed(lang, number, view(url, title), *reference, *seen),
            ),
            // Never queued; nothing to say.
            Event::Rearmed => Rendered::Stale,
        },
        (
            OutboxMessage::CannotRead {
                url,
                title,
                since_ms,
                reason,
            },
            _,
        ) => Rendered::Single(notify::cannot_read(
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
            Rendered::Single(notify::readable_again(
                lang,
                number,
                view(url, title),
                price,
            ))
        }
        (OutboxMessage::Watch { .. }, None) => Rendered::Stale,
    }
}
