//! What one check of a product changes, decided without I/O: the product's next due time
//! and health, a history point, every watch's trigger state, and the messages to queue.
//! The watch loop fetches, calls [`plan`], and hands the [`Plan`] to the store, which
//! applies it in one transaction.

use std::time::Duration;

use crate::domain::{
    ChangePoint, CheckRecord, Event, NewOutbox, OutboxMessage, Product, Rule, Stock, Watch,
};
use crate::price::engine::Check;
use crate::price::extract::Availability;
use crate::random::RandomSource;
use crate::watch::schedule::{next_due, Notice, ScheduleConfig};
use crate::watch::trigger::{step, Observation, TriggerConfig};

/// How the check ended: what the engine read, or why it read nothing.
// One short-lived value per check, like `Check` itself: boxing would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The page was fetched: unchanged (304) or read.
    Checked(Check),
    /// The page could not be fetched.
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// The settings a plan needs.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    pub trigger: TriggerConfig,
    pub schedule: ScheduleConfig,
}

/// The store's part ([`CheckRecord`]) and the watches the loop removes afterwards: a new
/// watch whose first check found no price is not kept (docs/rules.md, "A new watch").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub record: CheckRecord,
    pub remove: Vec<Watch>,
}

/// Whether every watch of the product is paused by its user: the page is then not fetched
/// at all, and [`postpone`] stands in for the check.
pub fn all_on_hold(watches: &[Watch]) -> bool {
    !watches.is_empty() && watches.iter().all(|w| w.on_hold)
}

/// What stands in for a check of a product whose every watch is on hold: nothing is fetched
/// or counted (its health, validators and last check stay), and it comes due again after
/// the normal interval, so a watch resumed meanwhile is checked within one interval.
pub fn postpone(
    product: &Product,
    now_ms: u64,
    cfg: &PlanConfig,
    rng: &mut impl RandomSource,
) -> CheckRecord {
    let mut next = product.clone();
    next.next_due_ms = next_due(now_ms, &cfg.schedule, rng);
    CheckRecord {
        product: next,
        change: None,
        watches: Vec::new(),
        messages: Vec::new(),
        now_ms,
    }
}

/// Decides what the check of `product` means for it and for `watches` (all its watches).
/// `latest` is the product's newest history point.
pub fn plan(
    product: &Product,
    watches: &[Watch],
    latest: Option<&ChangePoint>,
    outcome: &Outcome,
    now_ms: u64,
    cfg: &PlanConfig,
    rng: &mut impl RandomSource,
) -> Plan {
    let mut next = product.clone();
    next.last_check_ms = Some(now_ms);
    let url = product.url.as_str().to_owned();

    // What each watch observes, and why there is no price when there is none.
    let (observed, failure) = match outcome {
        Outcome::Checked(Check::Unchanged { validators }) => {
            next.validators = validators.clone();
            (Observed::LastPrice, None)
        }
        Outcome::Checked(Check::Read {
            report, validators, ..
        }) => {
            next.validators = validators.clone();
            if report.title.is_some() {
                next.title = report.title.clone();
            }
            let observation = Observation::from_report(report);
            let failure = match (&observation, &report.error) {
                (Observation::Price { .. }, _) => None,
                // The page was read and says the product is sold out: the shop is fine.
                (
                    Observation::NoPrice {
                        availability: Availability::OutOfStock,
                    },
                    _,
                ) => None,
                (_, Some(e)) => Some(e.to_string()),
                (_, None) => Some("no price found on the page".to_owned()),
            };
            (Observed::Same(observation), failure)
        }
        Outcome::Failed { reason, .. } => {
            (Observed::Same(Observation::Unknown), Some(reason.clone()))
        }
    };

    let mut messages = Vec::new();
    let health = match (&failure, outcome) {
        (None, _) => next.health.on_success(&cfg.schedule, rng, now_ms),
        (Some(_), Outcome::Failed { retry_after, .. }) => {
            next.health
                .on_failure(&cfg.schedule, rng, now_ms, *retry_after)
        }
        (Some(_), _) => next.health.on_failure(&cfg.schedule, rng, now_ms, None),
    };
    next.next_due_ms = health.next_due_ms;
    next.last_error = failure.clone();

    let mut remove = Vec::new();
    let mut changed = Vec::new();
    // A paused watch's conversation refuses messages: nothing counts for it until the
    // conversation writes again (docs/rules.md, "Delivery").
    // One the user paused (`pause`) likewise, until `resume` (docs/rules.md, "Pausing").
    let watches: Vec<&Watch> = watches.iter().filter(|w| !w.paused && !w.on_hold).collect();
    for &watch in &watches {
        if watch.is_pending() {
            let observation = observed.for_watch(watch);
            let reason = match (&watch.rule, observation) {
                // A restock watch needs only the availability.
                (Rule::Restock, o) if o.stock().is_some() => None,
                (Rule::Restock, _) => failure.clone(),
                (
                    _,
                    Observation::NoPrice {
                        availability: Availability::OutOfStock,
                    },
                ) => Some(SOLD_OUT_WITHOUT_PRICE.to_owned()),
                _ => failure.clone(),
            };
            if let Some(reason) = &reason {
                messages.push(NewOutbox {
                    alert_id: format!("{}:first-check-failed:{now_ms}", watch.id),
                    conversation: watch.conversation.clone(),
                    watch_id: Some(watch.id),
                    message: OutboxMessage::FirstCheckFailed {
                        url: url.clone(),
                        reason: reason.clone(),
                    },
                });
                remove.push(watch.clone());
                continue;
            }
        }
        let (state, events) = step(
            &watch.trigger,
            &watch.rule,
            &observed.for_watch(watch),
            now_ms,
            &cfg.trigger,
        );
        for event in events {
            let kind = match &event {
                Event::ReferenceSet { .. } => "first-price",
                Event::Fired { .. } => "alert",
                Event::CurrencyMismatch { .. } => "currency",
                Event::StockSet { .. } => "first-stock",
                Event::BackInStock { .. } => "back-in-stock",
                Event::Rearmed | Event::SoldOut => continue,
            };
            messages.push(NewOutbox {
                alert_id: format!("{}:{kind}:{now_ms}", watch.id),
                conversation: watch.conversation.clone(),
                watch_id: Some(watch.id),
                message: OutboxMessage::Watch {
                    url: url.clone(),
                    title: next.title.clone(),
                    event,
                },
            });
        }
        if state != watch.trigger {
            let mut w = watch.clone();
            w.trigger = state;
            changed.push(w);
        }
    }

    // Failure notices go to the watches that stay: a pending one was told above.
    if let Some(notice) = health.notice {
        for watch in watches.iter().filter(|w| !remove.contains(w)) {
            let message = match notice {
                Notice::CannotRead { since_ms } => OutboxMessage::CannotRead {
                    url: url.clone(),
                    title: next.title.clone(),
                    since_ms,
                    reason: failure.clone().unwrap_or_default(),
                },
                Notice::ReadableAgain { .. } => OutboxMessage::ReadableAgain {
                    url: url.clone(),
                    title: next.title.clone(),
                },
            };
            let kind = match notice {
                Notice::CannotRead { since_ms } => format!("cannot-read:{since_ms}"),
                Notice::ReadableAgain { failing_since_ms } => {
                    format!("readable-again:{failing_since_ms}")
                }
            };
            messages.push(NewOutbox {
                alert_id: format!("{}:{kind}", watch.id),
                conversation: watch.conversation.clone(),
                watch_id: Some(watch.id),
                message,
            });
        }
    }

    // History keeps change points only: the same price again is no new point.
    let change = match outcome {
        Outcome::Checked(Check::Read { report, .. }) => {
            match (report.amount, report.currency, failure) {
                (Some(amount), Some(currency), None)
                    if latest.is_none_or(|p| p.amount != amount || p.currency != currency) =>
                {
                    Some(ChangePoint {
                        at_ms: now_ms,
                        amount,
                        currency,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };

    Plan {
        record: CheckRecord {
            product: next,
            change,
            watches: changed,
            messages,
            now_ms,
        },
        remove,
    }
}

/// Why a new price watch is not kept when its page says sold out and shows no price.
const SOLD_OUT_WITHOUT_PRICE: &str =
    "the product is out of stock and its page shows no price (`watch <link> restock` tells you when it is back)";

/// What the watches of one check observe.
enum Observed {
    /// Unchanged page, unchanged price: each watch sees its last price again, which counts
    /// toward confirmations like any check.
    LastPrice,
    Same(Observation),
}

impl Observed {
    fn for_watch(&self, watch: &Watch) -> Observation {
        match (self, watch.trigger.last) {
            (Observed::Same(o), _) => *o,
            // An unchanged page says again what a restock watch last read on it.
            (Observed::LastPrice, last) if watch.rule == Rule::Restock => {
                match (watch.trigger.stock, last) {
                    (Some(Stock::OutOfStock), _) => Observation::NoPrice {
                        availability: Availability::OutOfStock,
                    },
                    (Some(Stock::InStock), Some(s)) => Observation::Price {
                        amount: s.amount,
                        currency: s.currency,
                        availability: s.availability,
                    },
                    (Some(Stock::InStock), None) => Observation::NoPrice {
                        availability: Availability::InStock,
                    },
                    (None, _) => Observation::Unknown,
                }
            }
            (Observed::LastPrice, Some(s)) => Observation::Price {
                amount: s.amount,
                currency: s.currency,
                availability: s.availability,
            },
            (Observed::LastPrice, None) => Observation::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rule;
    use crate::domain::{ProductUrl, Validators};
    use crate::inbound::activity::ConversationKey;
    use crate::price::extract::{Availability, ExtractError, Method, Report};
    use crate::price::Currency;
    use crate::random::SplitMix64;
    use rust_decimal::Decimal;

    const HOUR: u64 = 3_600_000;

    fn cfg() -> PlanConfig {
        PlanConfig {
            trigger: TriggerConfig::default(),
            schedule: ScheduleConfig {
                jitter: 0,
                ..ScheduleConfig::default()
            },
        }
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn product() -> Product {
        Product::new(
            ProductUrl::parse("https://shop.example/p/1", 2048).unwrap(),
            0,
        )
    }

    fn watch(id: u64, conv: &str) -> Watch {
        Watch {
            id,
            conversation: ConversationKey {
                channel_id: "emulator".into(),
                conversation_id: conv.into(),
            },
            user: None,
            url: product().url,
            rule: Rule::Drop {
                percent: Decimal::from(20),
            },
            created_at_ms: 0,
            trigger: Default::default(),
            paused: false,
            on_hold: false,
        }
    }

    fn priced(amount: i64) -> Outcome {
        Outcome::Checked(Check::Read {
            report: Report {
                title: Some("Skillet".into()),
                amount: Some(Decimal::from(amount)),
                currency: Some(eur()),
                availability: Availability::InStock,
                method: Some(Method::JsonLd),
                candidates: vec![],
                error: None,
                rule_set: None,
            },
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
            final_url: url::Url::parse("https://shop.example/p/1").expect("a URL"),
        })
    }

    fn no_price() -> Outcome {
        Outcome::Checked(Check::Read {
            report: Report {
                title: Some("Skillet".into()),
                amount: None,
                currency: None,
                availability: Availability::Unknown,
                method: None,
                candidates: vec![],
                error: Some(ExtractError::NoPrice("looked everywhere".into())),
                rule_set: None,
            },
            validators: Validators::default(),
            final_url: url::Url::parse("https://shop.example/p/1").expect("a URL"),
        })
    }

    /// Runs a plan and applies it the way the store would, returning the new watches.
    fn run(
        p: &mut Product,
        ws: &mut Vec<Watch>,
        latest: &mut Option<ChangePoint>,
        outcome: Outcome,
        now: u64,
    ) -> Plan {
        let plan = plan(
            p,
            ws,
            latest.as_ref(),
            &outcome,
            now,
            &cfg(),
            &mut SplitMix64::new(1),
        );
        *p = plan.record.product.clone();
        for w in &plan.record.watches {
            if let Some(slot) = ws.iter_mut().find(|x| x.id == w.id) {
                *slot = w.clone();
            }
        }
        ws.retain(|w| !plan.remove.contains(w));
        if let Some(c) = plan.record.change {
            *latest = Some(c);
        }
        plan
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.record
            .messages
            .iter()
            .map(|m| m.alert_id.split(':').nth(1).unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn first_price_then_one_alert_for_a_shared_product() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a"), watch(2, "b")];
        let plan = run(&mut p, &mut ws, &mut latest, priced(200), 0);
        assert_eq!(kinds(&plan), ["first-price", "first-price"]);
        assert_eq!(p.title.as_deref(), Some("Skillet"));
        assert_eq!(p.next_due_ms, 30 * 60_000, "interval, no jitter");
        assert_eq!(p.validators.etag.as_deref(), Some("\"v1\""));
        assert_eq!(
            plan.record.change.map(|c| c.amount),
            Some(Decimal::from(200))
        );

        // The same price again: no history point, no message.
        let plan = run(&mut p, &mut ws, &mut latest, priced(200), HOUR);
        assert!(plan.record.messages.is_empty() && plan.record.change.is_none());

        // 10% down: nothing; 25% down: one alert per watch, with a deterministic id.
        let plan = run(&mut p, &mut ws, &mut latest, priced(180), 2 * HOUR);
        assert!(plan.record.messages.is_empty());
        let plan = run(&mut p, &mut ws, &mut latest, priced(150), 3 * HOUR);
        assert_eq!(kinds(&plan), ["alert", "alert"]);
        assert_eq!(
            plan.record.messages[0].alert_id,
            format!("1:alert:{}", 3 * HOUR)
        );
        // A 304 afterwards sees the same low price: no second alert.
        let unchanged = Outcome::Checked(Check::Unchanged {
            validators: Validators::default(),
        });
        let plan = run(&mut p, &mut ws, &mut latest, unchanged, 4 * HOUR);
        assert!(
            plan.record.messages.is_empty(),
            "{:?}",
            plan.record.messages
        );
    }

    #[test]
    fn a_steady_check_writes_no_watch() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a"), watch(2, "b")];
        run(&mut p, &mut ws, &mut latest, priced(200), 0);
        let unchanged = || {
            Outcome::Checked(Check::Unchanged {
                validators: Validators::default(),
            })
        };
        // A 304, or the same price read again: the product moves on, the watches do not.
        for (at, outcome) in [(HOUR, unchanged()), (2 * HOUR, priced(200))] {
            let steady = run(&mut p, &mut ws, &mut latest, outcome, at);
            assert!(
                steady.record.watches.is_empty(),
                "{:?}",
                steady.record.watches
            );
            assert_eq!(steady.record.product.last_check_ms, Some(at));
        }
        assert_eq!(ws[0].trigger.last.map(|s| s.at_ms), Some(0), "seen since 0");
        // A new price is written, with its own time.
        let moved = run(&mut p, &mut ws, &mut latest, priced(190), 3 * HOUR);
        assert_eq!(moved.record.watches.len(), 2);
        assert_eq!(ws[0].trigger.last.map(|s| s.at_ms), Some(3 * HOUR));
        // A low price counting toward its confirmations is written at every check.
        let mut cfg_two = cfg();
        cfg_two.trigger.confirmations = 2;
        let mut rng = SplitMix64::new(1);
        let plan = plan(
            &p,
            &ws,
            latest.as_ref(),
            &priced(150),
            4 * HOUR,
            &cfg_two,
            &mut rng,
        );
        assert_eq!(plan.record.watches.len(), 2);
        assert!(plan
            .record
            .watches
            .iter()
            .all(|w| w.trigger.below_count == 1));
    }

    #[test]
    fn a_paused_watch_counts_nothing_until_it_resumes() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a"), watch(2, "b")];
        run(&mut p, &mut ws, &mut latest, priced(200), 0);
        ws[1].paused = true;
        let plan = run(&mut p, &mut ws, &mut latest, priced(150), HOUR);
        assert_eq!(kinds(&plan), ["alert"]);
        assert_eq!(plan.record.messages[0].watch_id, Some(1));
        assert!(plan.record.watches.iter().all(|w| w.id == 1));
        // A failing first check does not remove a paused pending watch either.
        let mut pending = vec![Watch {
            paused: true,
            ..watch(3, "c")
        }];
        let plan = run(&mut product(), &mut pending, &mut None, no_price(), 0);
        assert!(plan.record.messages.is_empty() && plan.remove.is_empty());
        // Resumed, it sees the low price and alerts.
        ws[1].paused = false;
        let plan = run(&mut p, &mut ws, &mut latest, priced(150), 2 * HOUR);
        assert_eq!(kinds(&plan), ["alert"]);
        assert_eq!(plan.record.messages[0].watch_id, Some(2));
    }

    #[test]
    fn a_watch_on_hold_counts_nothing_and_alerts_after_resume() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a"), watch(2, "b")];
        run(&mut p, &mut ws, &mut latest, priced(200), 0);
        ws[1].on_hold = true;
        assert!(!all_on_hold(&ws));
        let plan = run(&mut p, &mut ws, &mut latest, priced(150), HOUR);
        assert_eq!(kinds(&plan), ["alert"]);
        assert_eq!(plan.record.messages[0].watch_id, Some(1));
        assert!(plan.record.watches.iter().all(|w| w.id == 1));
        // Resumed with its reference, it sees the price that fell while it was paused.
        ws[1].on_hold = false;
        let plan = run(&mut p, &mut ws, &mut latest, priced(150), 2 * HOUR);
        assert_eq!(kinds(&plan), ["alert"]);
        assert_eq!(plan.record.messages[0].watch_id, Some(2));
    }

    #[test]
    fn a_product_whose_watches_are_all_on_hold_is_postponed_untouched() {
        let held = |id| Watch {
            on_hold: true,
            ..watch(id, "a")
        };
        assert!(all_on_hold(&[held(1), held(2)]));
        assert!(!all_on_hold(&[held(1), watch(2, "b")]));
        assert!(!all_on_hold(&[]));
        let mut p = product();
        p.health.failures = 2;
        p.last_check_ms = Some(7);
        let record = postpone(&p, 10 * HOUR, &cfg(), &mut SplitMix64::new(1));
        assert!(record.product.next_due_ms > 10 * HOUR);
        assert_eq!(
            Product {
                next_due_ms: p.next_due_ms,
                ..record.product.clone()
            },
            p,
            "only the due time moves"
        );
        assert!(record.change.is_none() && record.watches.is_empty() && record.messages.is_empty());
    }

    fn with_stock(outcome: Outcome, availability: Availability, priced: bool) -> Outcome {
        let Outcome::Checked(Check::Read {
            mut report,
            validators,
            final_url,
        }) = outcome
        else {
            panic!("a read page");
        };
        report.availability = availability;
        if !priced {
            report.amount = None;
            report.currency = None;
            report.error = Some(ExtractError::NoPrice("sold out, no price".into()));
        }
        Outcome::Checked(Check::Read {
            report,
            validators,
            final_url,
        })
    }

    fn restock_watch(id: u64, conv: &str) -> Watch {
        Watch {
            rule: Rule::Restock,
            ..watch(id, conv)
        }
    }

    #[test]
    fn a_restock_watch_is_told_once_per_return_to_stock() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![restock_watch(1, "a"), watch(2, "b")];
        let sold_out = || with_stock(priced(0), Availability::OutOfStock, false);
        // Sold out without a price: the restock watch is kept and set; the new price watch
        // cannot have its first price and is told why. The page was read: no failure.
        let plan = run(&mut p, &mut ws, &mut latest, sold_out(), 0);
        assert_eq!(kinds(&plan), ["first-stock", "first-check-failed"]);
        let OutboxMessage::FirstCheckFailed { reason, .. } = &plan.record.messages[1].message
        else {
            panic!("{plan:?}");
        };
        assert!(reason.contains("restock"), "{reason}");
        assert_eq!(ws.len(), 1);
        assert_eq!(p.health.failures, 0);
        assert_eq!(p.last_error, None);

        let plan = run(&mut p, &mut ws, &mut latest, sold_out(), HOUR);
        assert!(plan.record.messages.is_empty());
        let plan = run(&mut p, &mut ws, &mut latest, priced(120), 2 * HOUR);
        assert_eq!(kinds(&plan), ["back-in-stock"]);
        let OutboxMessage::Watch { event, .. } = &plan.record.messages[0].message else {
            panic!("{plan:?}");
        };
        assert!(matches!(
            event,
            Event::BackInStock { price: Some(o), .. } if o.amount == Decimal::from(120)
        ));
        // Still in stock, as a read page and as a 304: nothing more.
        let plan = run(&mut p, &mut ws, &mut latest, priced(110), 3 * HOUR);
        assert!(plan.record.messages.is_empty());
        let unchanged = || {
            Outcome::Checked(Check::Unchanged {
                validators: Validators::default(),
            })
        };
        let plan = run(&mut p, &mut ws, &mut latest, unchanged(), 4 * HOUR);
        assert!(plan.record.messages.is_empty());
        // Out (priced or not), a 304 while out, then back: one more.
        let oos = with_stock(priced(110), Availability::OutOfStock, true);
        let plan = run(&mut p, &mut ws, &mut latest, oos, 5 * HOUR);
        assert!(plan.record.messages.is_empty());
        assert_eq!(ws[0].trigger.stock, Some(Stock::OutOfStock));
        let plan = run(&mut p, &mut ws, &mut latest, unchanged(), 6 * HOUR);
        assert!(plan.record.messages.is_empty());
        let plan = run(&mut p, &mut ws, &mut latest, priced(99), 7 * HOUR);
        assert_eq!(kinds(&plan), ["back-in-stock"]);
    }

    #[test]
    fn a_restock_watch_whose_first_page_says_nothing_about_stock_is_removed() {
        let mut ws = vec![restock_watch(1, "a")];
        let plan = run(&mut product(), &mut ws, &mut None, no_price(), 0);
        assert_eq!(kinds(&plan), ["first-check-failed"]);
        assert_eq!(plan.remove.len(), 1);
        // In stock without a usable price is enough for it.
        let mut ws = vec![restock_watch(1, "a")];
        let in_stock = with_stock(priced(0), Availability::InStock, false);
        let plan = run(&mut product(), &mut ws, &mut None, in_stock, 0);
        assert_eq!(kinds(&plan), ["first-stock"]);
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn a_new_watch_whose_first_check_fails_is_told_and_removed() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a")];
        let plan = run(&mut p, &mut ws, &mut latest, no_price(), 0);
        assert_eq!(kinds(&plan), ["first-check-failed"]);
        let OutboxMessage::FirstCheckFailed { reason, .. } = &plan.record.messages[0].message
        else {
            panic!("{plan:?}");
        };
        assert!(reason.contains("looked everywhere"), "{reason}");
        assert_eq!(plan.remove.len(), 1);
        assert_eq!(p.health.failures, 1);
        assert_eq!(p.next_due_ms, 60_000, "backoff base");
    }

    #[test]
    fn a_failing_product_is_reported_once_after_a_day_and_again_when_it_recovers() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a")];
        run(&mut p, &mut ws, &mut latest, priced(100), 0);
        let failed = || Outcome::Failed {
            reason: "the site answered 500".into(),
            retry_after: None,
        };
        let mut notices = 0;
        for h in 1..=30 {
            let plan = run(&mut p, &mut ws, &mut latest, failed(), h * HOUR);
            assert!(plan.remove.is_empty(), "an established watch is kept");
            for m in &plan.record.messages {
                match &m.message {
                    OutboxMessage::CannotRead {
                        since_ms, reason, ..
                    } => {
                        assert_eq!(
                            (*since_ms, reason.as_str()),
                            (HOUR, "the site answered 500")
                        );
                        assert_eq!(h, 25, "told when 24 h of failures are reached");
                        notices += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(notices, 1);
        assert!(
            p.next_due_ms <= 30 * HOUR + 6 * HOUR,
            "backoff capped at 6 h"
        );
        let plan = run(&mut p, &mut ws, &mut latest, priced(100), 31 * HOUR);
        assert_eq!(kinds(&plan), ["readable-again"]);
        assert_eq!(p.health.failures, 0);
        assert_eq!(p.last_error, None);
    }

    #[test]
    fn retry_after_pushes_the_next_check() {
        let (mut p, mut latest) = (product(), None);
        let mut ws = vec![watch(1, "a")];
        run(&mut p, &mut ws, &mut latest, priced(100), 0);
        let outcome = Outcome::Failed {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        run(&mut p, &mut ws, &mut latest, outcome, HOUR);
        assert!(p.next_due_ms >= 2 * HOUR, "{}", p.next_due_ms);
    }
}
