//! What the crash harness concludes from what it saw, without I/O: the messages the
//! channel received, read back into keys; the messages the store says were committed;
//! and the four promises checked against them (nothing committed lost, nothing sent
//! that the store does not account for, a duplicate only across a kill, no rate window
//! exceeded).
//!
//! Alert ids are not visible in what the bot sends (an activity carries only its text
//! and card), so a message is known by its conversation and its text: the product's
//! path and the amount it names. The driver never shows one product the same amount
//! twice (each move of a price takes a new number of cents), so that pair names one
//! first price or one alert.

use std::collections::{BTreeMap, BTreeSet};

use pricewatch::domain::Rule;
use pricewatch::store::Snapshot;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::fakes::most_in_any_span;

/// What a proactive message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// "Watching … : €X now": the follow-up to a new watch, once per watch.
    FirstPrice,
    /// "Price alert: … is now €X": one fired alert (a digest lists several).
    Alert,
}

/// One first price or one alert in one conversation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub conversation: String,
    pub kind: Kind,
    /// The index in the product's path, `/p/<product>`.
    pub product: u32,
    pub cents: i64,
}

/// One proactive activity as the channel recorded it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub conversation: String,
    pub at_ms: u64,
    pub text: String,
}

/// A SIGKILL: sent no earlier than `from_ms`, the process reaped by `to_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// The first prices and alerts a proactive message carries, or why it is none of them.
pub fn read_message(text: &str) -> Result<Vec<(Kind, u32, i64)>, String> {
    if text.starts_with("Watching ") {
        let item = (
            Kind::FirstPrice,
            product_of(text)?,
            cents_after(text, "): €")?,
        );
        return Ok(vec![item]);
    }
    if text.starts_with("Price alert: ") {
        return Ok(vec![(
            Kind::Alert,
            product_of(text)?,
            cents_after(text, " is now €")?,
        )]);
    }
    if text.contains(" price alerts:\n") {
        return text
            .lines()
            .filter(|l| l.starts_with("- "))
            .map(|l| Ok((Kind::Alert, product_of(l)?, cents_after(l, " is now €")?)))
            .collect();
    }
    Err(format!("neither a first price nor an alert: {text:?}"))
}

/// `<n>` of the first `/p/<n>` in `text`.
pub fn product_of(text: &str) -> Result<u32, String> {
    let rest = text
        .split_once("/p/")
        .map(|(_, r)| r)
        .ok_or_else(|| format!("no product path in {text:?}"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .map_err(|_| format!("no product number in {text:?}"))
}

/// The amount written right after `marker`, in cents (`€100.05` is 10005).
fn cents_after(text: &str, marker: &str) -> Result<i64, String> {
    let rest = text
        .split_once(marker)
        .map(|(_, r)| r)
        .ok_or_else(|| format!("no {marker:?} in {text:?}"))?;
    let amount: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    let amount = amount.trim_end_matches('.');
    let value: Decimal = amount
        .parse()
        .map_err(|_| format!("no amount after {marker:?} in {text:?}"))?;
    cents(value).ok_or_else(|| format!("{value} is no amount in cents"))
}

pub fn cents(amount: Decimal) -> Option<i64> {
    let c = amount * Decimal::ONE_HUNDRED;
    (c.fract().is_zero()).then(|| c.trunc().to_string().parse().ok())?
}

/// Every first price and alert the store committed, from its state after the last run.
///
/// A check commits the product's history point, each watch's trigger state and the
/// messages it queues in one transaction, so the store's history is the sequence of
/// prices the watches were stepped with. Replayed per watch from its reference (the
/// first price it saw, when the first-price message was queued), the documented rule
/// gives every alert it queued: with `confirmations = 1` and a page always in stock, a
/// `drop` watch fires on a price at or below `reference × (1 − drop)` (rounded to the
/// cent) while armed, and re-arms on a price above that line plus `hysteresis` percent of
/// the reference. History keeps only change points, but a check that sees the same price
/// again changes no trigger state either, so nothing is missed. The replay is checked
/// against the trigger state the store kept (armed or not, last price): a difference
/// means the history and the trigger state were not committed together.
///
/// Messages for watches the store no longer holds are not expected: the driver never
/// removes a watch, and a first check that fails (which would) never happens here.
pub fn committed(snapshot: &Snapshot, hysteresis: Decimal) -> Result<BTreeSet<Key>, String> {
    let mut keys = BTreeSet::new();
    for w in &snapshot.watches {
        let Some(reference) = w.trigger.reference else {
            continue;
        };
        let product = product_of(w.url.as_str())?;
        let conversation = w.conversation.conversation_id.clone();
        let ref_cents = cents(reference.amount).ok_or("a reference in cents")?;
        keys.insert(Key {
            conversation: conversation.clone(),
            kind: Kind::FirstPrice,
            product,
            cents: ref_cents,
        });
        let Rule::Drop { percent } = w.rule else {
            return Err(format!("watch {} is not a drop watch", w.id));
        };
        let line = (reference.amount * (Decimal::ONE_HUNDRED - percent) / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let rearm = line + reference.amount * hysteresis / Decimal::ONE_HUNDRED;
        let history = snapshot
            .products
            .iter()
            .find(|p| p.product.url == w.url)
            .map(|p| p.history.as_slice())
            .unwrap_or_default();
        let mut fired = false;
        let mut last = reference.amount;
        for point in history.iter().filter(|p| p.at_ms > reference.at_ms) {
            last = point.amount;
            if !fired && point.amount <= line {
                fired = true;
                keys.insert(Key {
                    conversation: conversation.clone(),
                    kind: Kind::Alert,
                    product,
                    cents: cents(point.amount).ok_or("a price in cents")?,
                });
            } else if fired && point.amount > rearm {
                fired = false;
            }
        }
        let kept_last = w.trigger.last.map(|s| s.amount).unwrap_or(reference.amount);
        if fired != w.trigger.fired || last != kept_last {
            return Err(format!(
                "watch {} (/p/{product} in {conversation}): its history replays to fired={fired}, \
                 last={last}, the store kept fired={}, last={kept_last}",
                w.id, w.trigger.fired
            ));
        }
    }
    Ok(keys)
}

/// Every arrival of each first price and alert, in arrival order.
pub fn received(arrivals: &[Arrival]) -> Result<BTreeMap<Key, Vec<u64>>, String> {
    let mut seen: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    for a in arrivals {
        for (kind, product, cents) in read_message(&a.text)? {
            let key = Key {
                conversation: a.conversation.clone(),
                kind,
                product,
                cents,
            };
            seen.entry(key).or_default().push(a.at_ms);
        }
    }
    for times in seen.values_mut() {
        times.sort_unstable();
    }
    Ok(seen)
}

/// How late the channel may stamp an arrival after the process that sent it was reaped:
/// the request was on its way, and the channel's handler ran a moment later.
const STAMP_SLACK_MS: u64 = 100;

/// Keys that arrived more than once without a kill between two arrivals: a message is
/// sent again only when the daemon died after sending it and before its removal from the
/// outbox was durable, so each repeat must follow a kill that came after the previous
/// arrival.
pub fn unexplained_duplicates(
    received: &BTreeMap<Key, Vec<u64>>,
    kills: &[Kill],
) -> Vec<(Key, u64, u64)> {
    let mut bad = Vec::new();
    for (key, times) in received {
        for pair in times.windows(2) {
            let (first, again) = (pair[0], pair[1]);
            let straddled = kills
                .iter()
                .any(|k| first <= k.to_ms + STAMP_SLACK_MS && again >= k.from_ms);
            if !straddled {
                bad.push((key.clone(), first, again));
            }
        }
    }
    bad
}

/// Conversations whose proactive messages ever came more than `count` within `span_ms`,
/// with the arrivals of the fullest span and the most in it.
pub fn rate_violations(
    arrivals: &[Arrival],
    count: usize,
    span_ms: u64,
) -> Vec<(String, usize, Vec<u64>)> {
    let mut by_conversation: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for a in arrivals {
        by_conversation
            .entry(a.conversation.as_str())
            .or_default()
            .push(a.at_ms);
    }
    let mut bad = Vec::new();
    for (conversation, mut times) in by_conversation {
        let most = most_in_any_span(&times, span_ms);
        if most > count {
            times.sort_unstable();
            let start = times
                .iter()
                .position(|&t| times.iter().filter(|&&u| u >= t && u < t + span_ms).count() == most)
                .unwrap_or(0);
            let fullest = times[start..start + most].to_vec();
            bad.push((conversation.to_owned(), most, fullest));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_prices_alerts_and_digests() {
        let first = "Watching [Item P7](http://127.0.0.1:4000/p/7) (#2): €100.05 now. \
                     I will tell you when it is €80.04 or less, 20% below this price.";
        assert_eq!(read_message(first), Ok(vec![(Kind::FirstPrice, 7, 10005)]));
        let one = "Price alert: [Item P12](http://127.0.0.1:4000/p/12) (#1) is now €50.03, \
                   down 50.0% from €100.00 on 3 Dec 2026. To stop watching it, type `unwatch 1`.";
        assert_eq!(read_message(one), Ok(vec![(Kind::Alert, 12, 5003)]));
        let digest = "2 price alerts:\n\n- [Item P1](http://h/p/1) (#1) is now €50.01, down 50.0% \
                      from €100.00 on 3 Dec 2026. x\n- [Item P2](http://h/p/2) (#2) is now €1,050.00, \
                      down 1.0% from €1,060.00 on 3 Dec 2026. y";
        assert_eq!(
            read_message(digest),
            Ok(vec![(Kind::Alert, 1, 5001), (Kind::Alert, 2, 105_000)])
        );
        assert!(read_message("I could not read a price from http://h/p/1").is_err());
    }

    #[test]
    fn a_duplicate_is_explained_only_by_a_kill_between_its_arrivals() {
        let key = Key {
            conversation: "c0".into(),
            kind: Kind::Alert,
            product: 1,
            cents: 5001,
        };
        let received = BTreeMap::from([(key.clone(), vec![1_000, 1_400])]);
        let before = [Kill {
            from_ms: 500,
            to_ms: 600,
        }];
        // (1_000 is more than the stamping slack after 600.)
        assert_eq!(
            unexplained_duplicates(&received, &before),
            vec![(key.clone(), 1_000, 1_400)]
        );
        let between = [Kill {
            from_ms: 1_200,
            to_ms: 1_250,
        }];
        assert!(unexplained_duplicates(&received, &between).is_empty());
        // Sent, then the kill (the arrival recorded while the process was being reaped).
        let during = [Kill {
            from_ms: 990,
            to_ms: 1_010,
        }];
        assert!(unexplained_duplicates(&received, &during).is_empty());
    }

    #[test]
    fn a_rate_violation_names_the_fullest_span() {
        let at = |conversation: &str, at_ms| Arrival {
            conversation: conversation.into(),
            at_ms,
            text: String::new(),
        };
        let arrivals = [
            at("c0", 0),
            at("c0", 600),
            at("c0", 1_200),
            at("c1", 0),
            at("c1", 10),
        ];
        assert!(rate_violations(&arrivals, 2, 1_000).is_empty());
        let arrivals = [at("c0", 0), at("c0", 500), at("c0", 900), at("c0", 2_000)];
        assert_eq!(
            rate_violations(&arrivals, 2, 1_000),
            vec![("c0".to_owned(), 3, vec![0, 500, 900])]
        );
    }
}
