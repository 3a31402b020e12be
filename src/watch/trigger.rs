//! The alert rule (docs/rules.md, "The trigger"): when one check of a product deserves an alert for one
//! watch. A pure function of (state, rule, observation, time, config) to (state, events):
//! no I/O, no clock, no async, so every rule below is a unit test.
//!
//! - **Reference.** The first usable price of the watch becomes its reference and never
//!   changes; a drop is measured against it, so a slow slide still triggers.
//! - **What counts as a price.** A positive amount with a known currency whose offer is in
//!   stock, on preorder (the shop takes the money at that price) or of unknown availability
//!   (most pages do not say). Out of stock is not a price: it neither sets the reference,
//!   nor fires, nor re-arms. A failed fetch ([`Observation::Unknown`]), or a page with no
//!   price, a zero or an unknown currency ([`Observation::NoPrice`]) changes nothing at all,
//!   except that a page saying out of stock breaks the confirmation streak.
//! - **The line.** `Drop`: `reference × (1 − percent/100)` rounded to the currency's minor
//!   digits, midpoint away from zero, so the line is the nearest amount a shop can charge;
//!   `Below`: the amount as given. The price fires when it is `<=` the line, and the line
//!   the first-price message announces is the very number compared, so what the user is
//!   told and what fires always agree.
//! - **Edge-triggered.** Fires once per crossing. Once fired, the watch re-arms only on a
//!   price strictly above the re-arm threshold: `line + reference × h/100` for `Drop` (the
//!   band is a share of the price the user thinks in), `line × (1 + h/100)` for `Below`
//!   (the amount is all the user gave). A price between the line and the threshold neither
//!   fires nor re-arms, so a price wobbling around the line does not spam.
//! - **Confirmations.** Fires after that many consecutive priced checks at or below the
//!   line (0 behaves as 1). A priced check above the line or an out-of-stock check resets
//!   the count; an unknown check or one in another currency neither counts nor resets,
//!   because a shop that fails every other fetch must still be able to alert.
//! - **`Below` already met.** A `Below` watch whose first price is already at or below the
//!   amount fires on it (after confirmations): a tracker that stays silent because the
//!   target was met before it started is a known complaint. A `Drop` cannot: its first
//!   price is the reference.
//! - **Currency change.** A price in another currency than the reference is never
//!   compared; [`Event::CurrencyMismatch`] is emitted once, and again only after a price in
//!   the reference currency has been seen.
//! - **Restock.** A [`Rule::Restock`] watch ignores the price and follows availability
//!   ([`restock_step`]). In stock is what the price rules call a price (a usable price not
//!   out of stock) or a page that says in stock without one; out of stock is a page that
//!   says so, with or without a price; anything else changes nothing. The first check that
//!   says either sets the state ([`Event::StockSet`]). The watch fires
//!   ([`Event::BackInStock`]) once after `confirmations` consecutive in-stock checks that
//!   follow an out-of-stock one, and re-arms only when the product is out of stock again
//!   ([`Event::SoldOut`]): once per return, however long it stays in stock. An out-of-stock
//!   check resets the streak; an unknown one neither counts nor resets. Hysteresis, a band
//!   on a price, has no meaning here.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::{Event, Offer, Reference, Rule, Seen, Stock, TriggerState};
use crate::price::extract::{Availability, Report};
use crate::price::Currency;

/// Settings from `[alerts]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerConfig {
    /// How far above the alert line, in percent (of the reference for `Drop`, of the amount
    /// for `Below`), the price must rise before the watch can fire again. Negative is read
    /// as 0 so that the re-arm threshold is never below the line.
    pub hysteresis: Decimal,
    /// Consecutive priced checks at or below the line before firing; 0 behaves as 1.
    pub confirmations: u32,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            hysteresis: Decimal::TWO,
            confirmations: 1,
        }
    }
}

/// What one check of the product saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Price {
        amount: Decimal,
        currency: Currency,
        availability: Availability,
    },
    /// The page was read but had no price, a zero price, or no known currency; what it says
    /// about availability still counts for a restock watch.
    NoPrice { availability: Availability },
    /// The fetch failed.
    Unknown,
}

impl Observation {
    /// A report with a positive amount and a known currency is a price; anything else
    /// (including `ambiguous_currency`, which has an amount) has no price, never guessed.
    pub fn from_report(report: &Report) -> Observation {
        match (report.amount, report.currency) {
            (Some(amount), Some(currency)) if amount > Decimal::ZERO => Observation::Price {
                amount,
                currency,
                availability: report.availability,
            },
            _ => Observation::NoPrice {
                availability: report.availability,
            },
        }
    }

    /// What a restock watch reads in it: in or out of stock, and the price if usable.
    pub fn stock(&self) -> Option<(Stock, Option<Offer>)> {
        match *self {
            Observation::Price {
                amount,
                currency,
                availability,
            } if amount > Decimal::ZERO => {
                let offer = Some(Offer { amount, currency });
                Some(match availability {
                    Availability::OutOfStock => (Stock::OutOfStock, offer),
                    _ => (Stock::InStock, offer),
                })
            }
            Observation::NoPrice {
                availability: Availability::OutOfStock,
            } => Some((Stock::OutOfStock, None)),
            Observation::NoPrice {
                availability: Availability::InStock,
            } => Some((Stock::InStock, None)),
            _ => None,
        }
    }
}

/// The price at or below which the watch fires (see the module documentation).
pub fn alert_line(rule: &Rule, reference: &Reference) -> Decimal {
    match rule {
        Rule::Drop { percent } => {
            let digits = reference.currency.minor_digits();
            let factor = (Decimal::ONE_HUNDRED - percent) / Decimal::ONE_HUNDRED;
            // A factor above 1 (a negative percent) can overflow; any price is then under
            // the line, which is what such a rule asks for.
            let exact = reference.amount.checked_mul(factor).unwrap_or(Decimal::MAX);
            let mut line =
                exact.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero);
            // `159.2` and `159.20` compare equal; the padded one is what a message shows.
            line.rescale(digits);
            line
        }
        Rule::Below { amount } => *amount,
        // No line: a restock watch never compares a price (`step` hands it to
        // `restock_step`); the reference, which it never sets, is the neutral answer.
        Rule::Restock => reference.amount,
    }
}

/// The price a fired watch must rise strictly above to re-arm; exact, not rounded.
pub fn rearm_threshold(rule: &Rule, reference: &Reference, cfg: &TriggerConfig) -> Decimal {
    let line = alert_line(rule, reference);
    let h = cfg.hysteresis.max(Decimal::ZERO);
    let base = match rule {
        Rule::Drop { .. } => reference.amount,
        Rule::Below { .. } | Rule::Restock => line,
    };
    let band = base
        .checked_mul(h)
        .and_then(|b| b.checked_div(Decimal::ONE_HUNDRED))
        .unwrap_or(Decimal::MAX);
    line.checked_add(band).unwrap_or(Decimal::MAX)
}

/// `(reference − price) / reference × 100`, to one decimal, midpoint away from zero.
pub fn drop_percent(reference: Decimal, price: Decimal) -> Decimal {
    (reference - price)
        .checked_div(reference)
        .and_then(|d| d.checked_mul(Decimal::ONE_HUNDRED))
        .map(|p| p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero))
        .unwrap_or(Decimal::ZERO)
}

/// One check of one watch: the new state and what happened, in order.
pub fn step(
    state: &TriggerState,
    rule: &Rule,
    obs: &Observation,
    at_ms: u64,
    cfg: &TriggerConfig,
) -> (TriggerState, Vec<Event>) {
    if *rule == Rule::Restock {
        return restock_step(state, obs, at_ms, cfg);
    }
    let mut next = state.clone();
    let mut events = Vec::new();

    let (amount, currency, availability) = match *obs {
        Observation::Price {
            amount,
            currency,
            availability,
        } if amount > Decimal::ZERO => (amount, currency, availability),
        // Sold out without a price shown breaks the low streak like sold out with one.
        Observation::NoPrice {
            availability: Availability::OutOfStock,
        } => {
            next.below_count = 0;
            return (next, events);
        }
        // A zero or negative amount is the extractor's "no price", whoever built it.
        _ => return (next, events),
    };
    if availability == Availability::OutOfStock {
        // The shop says the price cannot be paid now: the low streak is broken.
        next.below_count = 0;
        return (next, events);
    }

    let reference = match next.reference {
        Some(reference) => reference,
        None => {
            let reference = Reference {
                amount,
                currency,
                at_ms,
            };
            next.reference = Some(reference);
            events.push(Event::ReferenceSet {
                reference,
                line: alert_line(rule, &reference),
            });
            reference
        }
    };

    if currency != reference.currency {
        if !next.mismatch_reported {
            next.mismatch_reported = true;
            events.push(Event::CurrencyMismatch {
                reference: reference.currency,
                seen: currency,
            });
        }
        return (next, events);
    }
    next.mismatch_reported = false;
    next.last = Some(
        Seen {
            amount,
            currency,
            availability,
            at_ms,
        }
        .since(state.last),
    );

    let line = alert_line(rule, &reference);
    if next.fired {
        next.below_count = 0;
        if amount > rearm_threshold(rule, &reference, cfg) {
            next.fired = false;
            events.push(Event::Rearmed);
        }
    } else if amount <= line {
        next.below_count = next.below_count.saturating_add(1);
        if next.below_count >= cfg.confirmations.max(1) {
            next.fired = true;
            next.below_count = 0;
            events.push(Event::Fired {
                reference,
                price: amount,
                currency,
                line,
                drop_percent: drop_percent(reference.amount, amount),
                at_ms,
            });
        }
    } else {
        next.below_count = 0;
    }
    (next, events)
}

/// One check of one restock watch (see the module documentation, "Restock").
pub fn restock_step(
    state: &TriggerState,
    obs: &Observation,
    at_ms: u64,
    cfg: &TriggerConfig,
) -> (TriggerState, Vec<Event>) {
    let mut next = state.clone();
    let mut events = Vec::new();
    let Some((stock, price)) = obs.stock() else {
        return (next, events);
    };
    next.last = match (*obs, price) {
        (
            Observation::Price {
                amount,
                currency,
                availability,
            },
            Some(_),
        ) => Some(
            Seen {
                amount,
                currency,
                availability,
                at_ms,
            }
            .since(state.last),
        ),
        // No stale price beside a fresh availability.
        _ => None,
    };
    let before = next.stock.replace(stock);
    match (before, stock) {
        (None, _) => {
            // In stock at the start is nothing to tell until it has run out once.
            next.fired = stock == Stock::InStock;
            next.below_count = 0;
            events.push(Event::StockSet {
                in_stock: stock == Stock::InStock,
                price,
            });
        }
        (Some(_), Stock::OutOfStock) => {
            next.below_count = 0;
            if next.fired {
                next.fired = false;
                events.push(Event::SoldOut);
            }
        }
        (Some(_), Stock::InStock) => {
            if !next.fired {
                next.below_count = next.below_count.saturating_add(1);
                if next.below_count >= cfg.confirmations.max(1) {
                    next.fired = true;
                    next.below_count = 0;
                    events.push(Event::BackInStock { price, at_ms });
                }
            }
        }
    }
    (next, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn drop(percent: &str) -> Rule {
        Rule::Drop {
            percent: dec(percent),
        }
    }

    fn below(amount: &str) -> Rule {
        Rule::Below {
            amount: dec(amount),
        }
    }

    fn price_in(amount: &str, code: &str, availability: Availability) -> Observation {
        Observation::Price {
            amount: dec(amount),
            currency: cur(code),
            availability,
        }
    }

    fn eur(amount: &str) -> Observation {
        price_in(amount, "EUR", Availability::InStock)
    }

    fn cfg(hysteresis: &str, confirmations: u32) -> TriggerConfig {
        TriggerConfig {
            hysteresis: dec(hysteresis),
            confirmations,
        }
    }

    /// Runs observations through `step` from a fresh state, one per minute, and returns
    /// the final state and the events of each step.
    fn run(
        rule: &Rule,
        cfg: &TriggerConfig,
        obs: &[Observation],
    ) -> (TriggerState, Vec<Vec<Event>>) {
        let mut state = TriggerState::default();
        let mut all = Vec::new();
        for (i, o) in obs.iter().enumerate() {
            let (next, events) = step(&state, rule, o, 60_000 * (i as u64 + 1), cfg);
            state = next;
            all.push(events);
        }
        (state, all)
    }

    fn fired(events: &[Event]) -> bool {
        events.iter().any(|e| matches!(e, Event::Fired { .. }))
    }

    fn fire_pattern(events: &[Vec<Event>]) -> Vec<bool> {
        events.iter().map(|e| fired(e)).collect()
    }

    #[test]
    fn a_new_rule_rearms_against_the_same_reference() {
        let c = TriggerConfig::default();
        // Fired at 79 under a 20% drop from 100.
        let (was, _) = run(&drop("20"), &c, &[eur("100"), eur("79")]);
        assert!(was.fired);
        let moved = was.for_new_rule();
        assert_eq!(moved.reference, was.reference);
        assert_eq!(moved.last, was.last);
        assert!(!moved.fired && moved.below_count == 0);
        // Still low enough for the new line: it alerts again, measured from 100.
        let (next, events) = step(&moved, &drop("15"), &eur("79"), 600_000, &c);
        assert!(fired(&events), "{events:?}");
        assert!(next.fired);
        // Not low enough for a deeper line: nothing, and armed for it.
        let (next, events) = step(&moved, &below("70"), &eur("79"), 600_000, &c);
        assert!(events.is_empty() && !next.fired, "{events:?}");
        let (_, events) = step(&next, &below("70"), &eur("69"), 660_000, &c);
        assert!(fired(&events), "{events:?}");
        // Without the re-arm, the old `fired` would have kept the new line silent.
        let (_, events) = step(&was, &drop("15"), &eur("79"), 600_000, &c);
        assert!(!fired(&events), "{events:?}");
    }

    #[test]
    fn first_price_sets_the_reference_and_announces_the_line() {
        let (state, events) = run(&drop("20"), &TriggerConfig::default(), &[eur("199")]);
        let reference = Reference {
            amount: dec("199"),
            currency: cur("EUR"),
            at_ms: 60_000,
        };
        assert_eq!(
            events[0],
            vec![Event::ReferenceSet {
                reference,
                line: dec("159.20")
            }]
        );
        assert_eq!(state.reference, Some(reference));
        assert!(!state.fired);
        assert_eq!(state.last.map(|s| s.amount), Some(dec("199")));
    }

    #[test]
    fn reference_never_changes_after_the_first_price() {
        let (state, _) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("120"), eur("90"), eur("150")],
        );
        assert_eq!(state.reference.map(|r| r.amount), Some(dec("100")));
        assert_eq!(state.reference.map(|r| r.at_ms), Some(60_000));
        assert_eq!(state.last.map(|s| s.amount), Some(dec("150")));
    }

    #[test]
    fn a_20_percent_drop_fires_once() {
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("95"), eur("79")],
        );
        assert_eq!(fire_pattern(&events), [false, false, true]);
        assert!(state.fired);
    }

    #[test]
    fn staying_low_does_not_fire_again() {
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[
                eur("100"),
                eur("79"),
                eur("79"),
                eur("70"),
                eur("80"),
                eur("75"),
            ],
        );
        assert_eq!(
            fire_pattern(&events),
            [false, true, false, false, false, false]
        );
    }

    #[test]
    fn rising_above_the_rearm_threshold_and_dropping_again_fires_again() {
        // Line 80, threshold 80 + 100 × 2% = 82.
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[
                eur("100"),
                eur("79"),
                eur("90"),
                eur("78"),
                eur("82.01"),
                eur("80"),
            ],
        );
        assert_eq!(
            fire_pattern(&events),
            [false, true, false, true, false, true]
        );
        assert_eq!(events[2], vec![Event::Rearmed]);
        assert_eq!(events[4], vec![Event::Rearmed]);
    }

    #[test]
    fn a_rise_inside_the_hysteresis_band_does_not_rearm() {
        // Line 80, threshold 82: 80.01 and exactly 82 stay fired.
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[
                eur("100"),
                eur("80"),
                eur("80.01"),
                eur("79"),
                eur("82"),
                eur("79"),
            ],
        );
        assert_eq!(
            fire_pattern(&events),
            [false, true, false, false, false, false]
        );
        assert!(events.iter().flatten().all(|e| *e != Event::Rearmed));
        assert!(state.fired);
    }

    #[test]
    fn zero_hysteresis_rearms_just_above_the_line() {
        let (_, events) = run(
            &drop("20"),
            &cfg("0", 1),
            &[eur("100"), eur("80"), eur("80.01"), eur("80")],
        );
        assert_eq!(fire_pattern(&events), [false, true, false, true]);
    }

    #[test]
    fn negative_hysteresis_is_read_as_zero() {
        let rule = drop("20");
        let reference = Reference {
            amount: dec("100"),
            currency: cur("EUR"),
            at_ms: 0,
        };
        assert_eq!(rearm_threshold(&rule, &reference, &cfg("-5", 1)), dec("80"));
    }

    #[test]
    fn a_19_9_percent_drop_does_not_fire() {
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("80.10"), eur("80.01")],
        );
        assert_eq!(fire_pattern(&events), [false, false, false]);
        assert!(!state.fired);
    }

    #[test]
    fn exactly_20_percent_fires() {
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("80.00")],
        );
        assert_eq!(fire_pattern(&events), [false, true]);
    }

    #[test]
    fn the_alert_carries_the_right_numbers() {
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("199"), eur("149.25")],
        );
        assert_eq!(
            events[1],
            vec![Event::Fired {
                reference: Reference {
                    amount: dec("199"),
                    currency: cur("EUR"),
                    at_ms: 60_000,
                },
                price: dec("149.25"),
                currency: cur("EUR"),
                line: dec("159.20"),
                drop_percent: dec("25.0"),
                at_ms: 120_000,
            }]
        );
    }

    #[test]
    fn drop_percent_rounds_to_one_decimal_away_from_zero() {
        assert_eq!(drop_percent(dec("300"), dec("200")), dec("33.3"));
        assert_eq!(drop_percent(dec("300"), dec("100")), dec("66.7"));
        // 10.05 exactly: the midpoint goes away from zero.
        assert_eq!(drop_percent(dec("200"), dec("179.90")), dec("10.1"));
        assert_eq!(drop_percent(dec("100"), dec("80")), dec("20.0"));
        assert_eq!(drop_percent(dec("100"), dec("110.05")), dec("-10.1"));
    }

    #[test]
    fn the_line_is_rounded_to_the_currency_minor_digits() {
        let at = |amount: &str, code: &str| Reference {
            amount: dec(amount),
            currency: cur(code),
            at_ms: 0,
        };
        // 159.2 is shown as 159.20.
        assert_eq!(
            alert_line(&drop("20"), &at("199", "EUR")).to_string(),
            "159.20"
        );
        // 159.976 → 159.98; 159.992 → 159.99.
        assert_eq!(alert_line(&drop("20"), &at("199.97", "EUR")), dec("159.98"));
        assert_eq!(alert_line(&drop("20"), &at("199.99", "EUR")), dec("159.99"));
        // Midpoint: 10.005 → 10.01.
        assert_eq!(alert_line(&drop("50"), &at("20.01", "EUR")), dec("10.01"));
        // Three minor digits: 12.3456 × 0.8 = 9.87648 → 9.876.
        assert_eq!(alert_line(&drop("20"), &at("12.3456", "KWD")), dec("9.876"));
        // A Below amount is the user's own number, untouched.
        assert_eq!(
            alert_line(&below("99.999"), &at("120", "EUR")),
            dec("99.999")
        );
    }

    #[test]
    fn jpy_lines_have_no_minor_digits() {
        let yen = |amount: &str| price_in(amount, "JPY", Availability::InStock);
        let reference = |amount: &str| Reference {
            amount: dec(amount),
            currency: cur("JPY"),
            at_ms: 0,
        };
        // 12347 × 0.8 = 9877.6 → 9878; 12345 × 0.9 = 11110.5 → 11111.
        assert_eq!(
            alert_line(&drop("20"), &reference("12347")).to_string(),
            "9878"
        );
        assert_eq!(
            alert_line(&drop("10"), &reference("12345")).to_string(),
            "11111"
        );

        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[yen("12347"), yen("9879"), yen("9878")],
        );
        assert_eq!(fire_pattern(&events), [false, false, true]);
        let Some(Event::Fired {
            line, drop_percent, ..
        }) = events[2].first()
        else {
            panic!("expected an alert, got {:?}", events[2]);
        };
        assert_eq!(*line, dec("9878"));
        // 2469 / 12347 = 19.9968 %: rounding the line to whole yen lets this fire.
        assert_eq!(*drop_percent, dec("20.0"));
    }

    #[test]
    fn below_fires_when_the_price_reaches_the_amount() {
        let (_, events) = run(
            &below("50"),
            &TriggerConfig::default(),
            &[eur("70"), eur("50.01"), eur("50"), eur("45")],
        );
        assert_eq!(fire_pattern(&events), [false, false, true, false]);
        assert!(matches!(
            events[0].as_slice(),
            [Event::ReferenceSet { line, .. }] if *line == dec("50")
        ));
    }

    #[test]
    fn below_already_met_at_the_start_fires_on_the_first_price() {
        let (state, events) = run(&below("50"), &TriggerConfig::default(), &[eur("45")]);
        assert!(matches!(
            events[0].as_slice(),
            [Event::ReferenceSet { .. }, Event::Fired { price, drop_percent, .. }]
                if *price == dec("45") && *drop_percent == Decimal::ZERO
        ));
        assert!(state.fired);
    }

    #[test]
    fn below_already_met_waits_for_confirmations() {
        let (_, events) = run(&below("50"), &cfg("2", 2), &[eur("45"), eur("45")]);
        assert_eq!(fire_pattern(&events), [false, true]);
    }

    #[test]
    fn below_hysteresis_is_a_share_of_the_amount() {
        // Threshold 50 × 1.02 = 51.
        let (_, events) = run(
            &below("50"),
            &TriggerConfig::default(),
            &[
                eur("60"),
                eur("49"),
                eur("51"),
                eur("49"),
                eur("51.01"),
                eur("50"),
            ],
        );
        assert_eq!(
            fire_pattern(&events),
            [false, true, false, false, false, true]
        );
    }

    #[test]
    fn below_reports_a_negative_drop_when_the_price_rose_from_the_reference() {
        let (_, events) = run(
            &below("50"),
            &TriggerConfig::default(),
            &[eur("40"), eur("44")],
        );
        // Fired on 40 already; re-arm needs > 51, so 44 is quiet.
        assert_eq!(fire_pattern(&events), [true, false]);
        let (_, events) = run(&below("50"), &cfg("2", 2), &[eur("40"), eur("44")]);
        assert!(matches!(
            events[1].as_slice(),
            [Event::Fired { drop_percent, .. }] if *drop_percent == dec("-10.0")
        ));
    }

    #[test]
    fn a_per_watch_drop_of_15_percent() {
        // Line 85.
        let (_, events) = run(
            &drop("15"),
            &TriggerConfig::default(),
            &[eur("100"), eur("85.01"), eur("85")],
        );
        assert_eq!(fire_pattern(&events), [false, false, true]);
        assert!(matches!(
            events[2].as_slice(),
            [Event::Fired { line, drop_percent, .. }]
                if *line == dec("85.00") && *drop_percent == dec("15.0")
        ));
    }

    #[test]
    fn out_of_stock_does_not_set_the_reference() {
        let oos = price_in("100", "EUR", Availability::OutOfStock);
        let (state, events) = run(&drop("20"), &TriggerConfig::default(), &[oos, eur("90")]);
        assert!(events[0].is_empty());
        assert_eq!(state.reference.map(|r| r.amount), Some(dec("90")));
    }

    #[test]
    fn out_of_stock_never_fires() {
        let oos = price_in("10", "EUR", Availability::OutOfStock);
        let (state, events) = run(&drop("20"), &TriggerConfig::default(), &[eur("100"), oos]);
        assert!(events[1].is_empty());
        assert!(!state.fired);
        assert_eq!(state.last.map(|s| s.amount), Some(dec("100")));
    }

    #[test]
    fn out_of_stock_never_rearms() {
        let oos = price_in("500", "EUR", Availability::OutOfStock);
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("70"), oos, eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, true, false, false]);
        assert!(events[2].is_empty());
        assert!(state.fired);
    }

    #[test]
    fn out_of_stock_breaks_the_confirmation_streak() {
        let oos = price_in("70", "EUR", Availability::OutOfStock);
        let (_, events) = run(
            &drop("20"),
            &cfg("2", 2),
            &[eur("100"), eur("70"), oos, eur("70"), eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, false, false, false, true]);
    }

    #[test]
    fn preorder_and_unknown_availability_are_prices() {
        let pre = |a: &str| price_in(a, "EUR", Availability::Preorder);
        let unk = |a: &str| price_in(a, "EUR", Availability::Unknown);
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[pre("100"), unk("80")],
        );
        assert_eq!(state.reference.map(|r| r.amount), Some(dec("100")));
        assert_eq!(fire_pattern(&events), [false, true]);
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[unk("100"), pre("80")],
        );
        assert_eq!(fire_pattern(&events), [false, true]);
    }

    #[test]
    fn an_unknown_price_changes_nothing() {
        let rule = drop("20");
        let config = TriggerConfig::default();
        let zero = eur("0");
        for state in [
            TriggerState::default(),
            run(&rule, &config, &[eur("100")]).0,
            run(&rule, &config, &[eur("100"), eur("70")]).0,
            run(&rule, &cfg("2", 3), &[eur("100"), eur("70")]).0,
        ] {
            let no_price = |availability| Observation::NoPrice { availability };
            for obs in [
                Observation::Unknown,
                zero,
                no_price(Availability::Unknown),
                no_price(Availability::InStock),
            ] {
                let (next, events) = step(&state, &rule, &obs, 1, &config);
                assert_eq!(next, state);
                assert!(events.is_empty());
            }
        }
    }

    #[test]
    fn sold_out_without_a_price_breaks_the_confirmation_streak() {
        let sold_out = Observation::NoPrice {
            availability: Availability::OutOfStock,
        };
        let (_, events) = run(
            &drop("20"),
            &cfg("2", 2),
            &[eur("100"), eur("70"), sold_out, eur("70"), eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, false, false, false, true]);
    }

    fn sold_out() -> Observation {
        Observation::NoPrice {
            availability: Availability::OutOfStock,
        }
    }

    fn back_in_stock(events: &[Vec<Event>]) -> Vec<bool> {
        events
            .iter()
            .map(|e| e.iter().any(|e| matches!(e, Event::BackInStock { .. })))
            .collect()
    }

    #[test]
    fn restock_fires_once_per_return_to_stock() {
        let oos = price_in("30", "EUR", Availability::OutOfStock);
        let (state, events) = run(
            &Rule::Restock,
            &TriggerConfig::default(),
            &[
                sold_out(),
                oos,
                eur("35"),
                eur("35"),
                eur("20"),
                sold_out(),
                sold_out(),
                eur("36"),
                eur("36"),
            ],
        );
        assert_eq!(
            events[0],
            vec![Event::StockSet {
                in_stock: false,
                price: None
            }]
        );
        assert_eq!(
            back_in_stock(&events),
            [false, false, true, false, false, false, false, true, false]
        );
        assert_eq!(
            events[2],
            vec![Event::BackInStock {
                price: Some(Offer {
                    amount: dec("35"),
                    currency: cur("EUR")
                }),
                at_ms: 180_000,
            }]
        );
        assert_eq!(events[5], vec![Event::SoldOut]);
        assert!(events[6].is_empty());
        assert_eq!(state.stock, Some(Stock::InStock));
        // A restock watch never takes a reference: its price does not matter.
        assert_eq!(state.reference, None);
    }

    #[test]
    fn restock_in_stock_at_the_start_waits_for_a_sell_out() {
        let (state, events) = run(
            &Rule::Restock,
            &TriggerConfig::default(),
            &[eur("10"), eur("10"), sold_out(), eur("12")],
        );
        assert_eq!(
            events[0],
            vec![Event::StockSet {
                in_stock: true,
                price: Some(Offer {
                    amount: dec("10"),
                    currency: cur("EUR")
                })
            }]
        );
        assert_eq!(back_in_stock(&events), [false, false, false, true]);
        assert_eq!(events[2], vec![Event::SoldOut]);
        assert_eq!(state.last.map(|s| s.amount), Some(dec("12")));
    }

    #[test]
    fn restock_counts_only_what_the_page_says_about_stock() {
        let no_price = |availability| Observation::NoPrice { availability };
        let (state, events) = run(
            &Rule::Restock,
            &TriggerConfig::default(),
            &[
                Observation::Unknown,
                no_price(Availability::Unknown),
                no_price(Availability::Preorder),
                sold_out(),
                Observation::Unknown,
                no_price(Availability::Unknown),
                eur("0"),
                no_price(Availability::InStock),
            ],
        );
        assert!(events[..3].iter().all(Vec::is_empty));
        assert_eq!(
            back_in_stock(&events),
            [false, false, false, false, false, false, false, true]
        );
        assert_eq!(
            events[7],
            vec![Event::BackInStock {
                price: None,
                at_ms: 480_000
            }]
        );
        // No stale price beside the availability that came without one.
        assert_eq!(state.last, None);
        // Preorder with a price can be bought: it is back.
        let (_, events) = run(
            &Rule::Restock,
            &TriggerConfig::default(),
            &[sold_out(), price_in("50", "EUR", Availability::Preorder)],
        );
        assert_eq!(back_in_stock(&events), [false, true]);
    }

    #[test]
    fn restock_waits_for_confirmations_and_a_sell_out_resets_them() {
        let (_, events) = run(
            &Rule::Restock,
            &cfg("2", 2),
            &[
                sold_out(),
                eur("10"),
                sold_out(),
                eur("10"),
                Observation::Unknown,
                eur("10"),
                eur("10"),
            ],
        );
        assert_eq!(
            back_in_stock(&events),
            [false, false, false, false, false, true, false]
        );
    }

    #[test]
    fn restock_state_round_trips_and_price_watch_records_do_not_change() {
        let (state, _) = run(&Rule::Restock, &TriggerConfig::default(), &[sold_out()]);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""stock":"out_of_stock""#), "{json}");
        assert_eq!(serde_json::from_str::<TriggerState>(&json).unwrap(), state);
        let (price, _) = run(&drop("20"), &TriggerConfig::default(), &[eur("100")]);
        let json = serde_json::to_string(&price).unwrap();
        assert!(!json.contains(r#""stock""#), "{json}");
        for rule in [Rule::Restock, drop("20")] {
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule);
        }
        assert_eq!(
            serde_json::to_string(&Rule::Restock).unwrap(),
            r#"{"kind":"restock"}"#
        );
        for event in [
            Event::StockSet {
                in_stock: true,
                price: Some(Offer {
                    amount: dec("9.90"),
                    currency: cur("EUR"),
                }),
            },
            Event::BackInStock {
                price: None,
                at_ms: 7,
            },
            Event::SoldOut,
        ] {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        }
    }

    #[test]
    fn an_unknown_check_neither_counts_nor_resets_confirmations() {
        let (_, events) = run(
            &drop("20"),
            &cfg("2", 2),
            &[eur("100"), eur("70"), Observation::Unknown, eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, false, false, true]);
        let (_, events) = run(
            &drop("20"),
            &cfg("2", 2),
            &[
                eur("100"),
                eur("70"),
                Observation::Unknown,
                Observation::Unknown,
            ],
        );
        assert_eq!(fire_pattern(&events), [false, false, false, false]);
    }

    #[test]
    fn a_currency_change_is_reported_once_never_fires_and_clears_when_back() {
        let usd = |a: &str| price_in(a, "USD", Availability::InStock);
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[
                eur("100"),
                usd("10"),
                usd("10"),
                eur("95"),
                usd("10"),
                eur("80"),
            ],
        );
        let mismatch = Event::CurrencyMismatch {
            reference: cur("EUR"),
            seen: cur("USD"),
        };
        assert_eq!(events[1], vec![mismatch.clone()]);
        assert!(events[2].is_empty());
        assert!(events[3].is_empty());
        assert_eq!(events[4], vec![mismatch]);
        assert_eq!(
            fire_pattern(&events),
            [false, false, false, false, false, true]
        );
        assert!(!state.mismatch_reported);
        assert_eq!(state.reference.map(|r| r.currency), Some(cur("EUR")));
    }

    #[test]
    fn a_currency_change_does_not_rearm_or_touch_last() {
        let usd = |a: &str| price_in(a, "USD", Availability::InStock);
        let (state, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[eur("100"), eur("70"), usd("500"), eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, true, false, false]);
        assert!(state.fired);
        assert_eq!(state.last.map(|s| s.currency), Some(cur("EUR")));
    }

    #[test]
    fn confirmation_count_2() {
        let config = cfg("2", 2);
        let rule = drop("20");
        // One low check does not fire.
        let (state, events) = run(&rule, &config, &[eur("100"), eur("70")]);
        assert_eq!(fire_pattern(&events), [false, false]);
        assert_eq!(state.below_count, 1);
        // Two consecutive do, once.
        let (_, events) = run(
            &rule,
            &config,
            &[eur("100"), eur("70"), eur("75"), eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, false, true, false]);
        // A check above the line in between resets, even inside the hysteresis band.
        let (_, events) = run(
            &rule,
            &config,
            &[eur("100"), eur("70"), eur("81"), eur("70"), eur("70")],
        );
        assert_eq!(fire_pattern(&events), [false, false, false, false, true]);
    }

    #[test]
    fn zero_confirmations_behave_as_one() {
        let (_, events) = run(&drop("20"), &cfg("2", 0), &[eur("100"), eur("70")]);
        assert_eq!(fire_pattern(&events), [false, true]);
    }

    #[test]
    fn state_round_trips_through_json_and_old_records_read() {
        let (state, _) = run(
            &drop("20"),
            &cfg("2", 3),
            &[
                eur("199.99"),
                price_in("150", "EUR", Availability::Preorder),
            ],
        );
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""amount":"199.99""#), "{json}");
        assert!(json.contains(r#""currency":"EUR""#), "{json}");
        assert!(json.contains(r#""availability":"preorder""#), "{json}");
        assert_eq!(serde_json::from_str::<TriggerState>(&json).unwrap(), state);

        assert_eq!(
            serde_json::from_str::<TriggerState>("{}").unwrap(),
            TriggerState::default()
        );
        let later = r#"{"reference":{"amount":"10","currency":"EUR","at_ms":1},"fired":true,
            "last":{"amount":"9","currency":"EUR","availability":"back_order","at_ms":2},
            "added_later":1}"#;
        let read: TriggerState = serde_json::from_str(later).unwrap();
        assert!(read.fired);
        assert_eq!(
            read.last.map(|s| s.availability),
            Some(Availability::Unknown)
        );
        assert!(serde_json::from_str::<TriggerState>(
            r#"{"reference":{"amount":"10","currency":"E1","at_ms":1}}"#
        )
        .is_err());
    }

    #[test]
    fn events_round_trip_through_json() {
        let (_, events) = run(
            &drop("20"),
            &TriggerConfig::default(),
            &[
                eur("100"),
                eur("79.99"),
                eur("90"),
                price_in("1", "USD", Availability::InStock),
            ],
        );
        for event in events.into_iter().flatten() {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<Event>(&json).unwrap(),
                event,
                "{json}"
            );
        }
    }

    #[test]
    fn observations_from_reports() {
        let report = |amount: Option<&str>, currency: Option<&str>| Report {
            title: None,
            amount: amount.map(dec),
            currency: currency.map(cur),
            availability: Availability::Preorder,
            method: None,
            candidates: Vec::new(),
            error: None,
            rule_set: None,
        };
        assert_eq!(
            Observation::from_report(&report(Some("9.99"), Some("EUR"))),
            price_in("9.99", "EUR", Availability::Preorder)
        );
        let no_price = Observation::NoPrice {
            availability: Availability::Preorder,
        };
        assert_eq!(
            Observation::from_report(&report(Some("9.99"), None)),
            no_price
        );
        assert_eq!(
            Observation::from_report(&report(None, Some("EUR"))),
            no_price
        );
        assert_eq!(
            Observation::from_report(&report(Some("0"), Some("EUR"))),
            no_price
        );
    }

    #[test]
    fn absurd_numbers_do_not_panic() {
        let max = Decimal::MAX.to_string();
        for rule in [drop("-50"), drop("150"), drop("100"), below(&max)] {
            let (_, events) = run(
                &rule,
                &cfg("1000", 1),
                &[eur(&max), eur("0.01"), eur(&max), eur("0.01")],
            );
            assert!(!events[0].is_empty());
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn currency() -> impl Strategy<Value = Currency> {
        prop_oneof![
            8 => Just("EUR"),
            1 => Just("USD"),
            1 => Just("JPY"),
        ]
        .prop_map(|c| Currency::parse(c).unwrap_or_else(|| unreachable!()))
    }

    fn availability() -> impl Strategy<Value = Availability> {
        prop_oneof![
            Just(Availability::InStock),
            Just(Availability::OutOfStock),
            Just(Availability::Preorder),
            Just(Availability::Unknown),
        ]
    }

    /// Prices from 0.00 to 150.00 around a first price near 100, so lines, bands and
    /// zeros are all hit often.
    fn observation() -> impl Strategy<Value = Observation> {
        prop_oneof![
            1 => Just(Observation::Unknown),
            1 => availability().prop_map(|availability| Observation::NoPrice { availability }),
            9 => (0i64..=15_000, currency(), availability()).prop_map(|(cents, currency, availability)| {
                Observation::Price {
                    amount: Decimal::new(cents, 2),
                    currency,
                    availability,
                }
            }),
        ]
    }

    fn rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            (1i64..=95).prop_map(|p| Rule::Drop {
                percent: Decimal::from(p)
            }),
            (1i64..=15_000).prop_map(|c| Rule::Below {
                amount: Decimal::new(c, 2)
            }),
        ]
    }

    fn config() -> impl Strategy<Value = TriggerConfig> {
        (0i64..=100, 0u32..=3).prop_map(|(h, confirmations)| TriggerConfig {
            hysteresis: Decimal::new(h, 1),
            confirmations,
        })
    }

    proptest! {
        #[test]
        fn fires_at_most_once_per_crossing_and_never_above_the_line(
            rule in rule(),
            cfg in config(),
            obs in proptest::collection::vec(observation(), 0..60),
        ) {
            let mut state = TriggerState::default();
            let mut reference: Option<Reference> = None;
            let mut fires = 0usize;
            // Crossings: a comparable price above the re-arm threshold, later followed
            // by one at or below the line.
            let mut crossings = 0usize;
            let mut seen_above = false;
            let mut rearmed_since_fire = true;

            for (i, o) in obs.iter().enumerate() {
                let (next, events) = step(&state, &rule, o, i as u64, &cfg);

                if matches!(o, Observation::Unknown) {
                    prop_assert_eq!(&next, &state);
                }
                if let (Some(before), Some(after)) = (reference, next.reference) {
                    prop_assert_eq!(before, after, "the reference changed");
                }
                reference = next.reference;

                if let (Some(r), Observation::Price { amount, currency, availability }) = (reference, o) {
                    let comparable = *amount > Decimal::ZERO
                        && *currency == r.currency
                        && *availability != Availability::OutOfStock;
                    if comparable {
                        if *amount > rearm_threshold(&rule, &r, &cfg) {
                            seen_above = true;
                        } else if *amount <= alert_line(&rule, &r) && seen_above {
                            crossings += 1;
                            seen_above = false;
                        }
                    }
                }

                for e in &events {
                    match e {
                        Event::Fired { reference: fr, price, currency, line, .. } => {
                            fires += 1;
                            prop_assert!(price <= line, "fired at {} above line {}", price, line);
                            prop_assert_eq!(Some(*fr), reference);
                            prop_assert_eq!(*currency, fr.currency);
                            prop_assert_eq!(*line, alert_line(&rule, fr));
                            prop_assert!(rearmed_since_fire, "fired twice without re-arming");
                            rearmed_since_fire = false;
                        }
                        Event::Rearmed => rearmed_since_fire = true,
                        Event::ReferenceSet { .. } | Event::CurrencyMismatch { .. } => {}
                        Event::StockSet { .. } | Event::BackInStock { .. } | Event::SoldOut => {
                            prop_assert!(false, "a restock event from a price rule: {:?}", e);
                        }
                    }
                }
                prop_assert!(fires <= crossings + 1, "{} fires for {} crossings", fires, crossings);

                let json = serde_json::to_string(&next).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let back: TriggerState = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&back, &next);
                state = next;
            }
        }

        #[test]
        fn restock_fires_only_after_out_of_stock_and_once_per_return(
            cfg in config(),
            obs in proptest::collection::vec(observation(), 0..60),
        ) {
            let mut state = TriggerState::default();
            // Whether an out-of-stock check came since the last alert (or the start).
            let mut out_since_alert = false;
            for (i, o) in obs.iter().enumerate() {
                let (next, events) = step(&state, &Rule::Restock, o, i as u64, &cfg);
                if o.stock().is_none() {
                    prop_assert_eq!(&next, &state);
                }
                prop_assert_eq!(next.reference, None);
                if matches!(o.stock(), Some((Stock::OutOfStock, _))) {
                    out_since_alert = true;
                }
                for e in &events {
                    match e {
                        Event::BackInStock { .. } => {
                            prop_assert!(out_since_alert, "back in stock without being out");
                            prop_assert!(matches!(o.stock(), Some((Stock::InStock, _))));
                            out_since_alert = false;
                        }
                        Event::StockSet { .. } | Event::SoldOut => {}
                        other => prop_assert!(false, "a price event from a restock rule: {:?}", other),
                    }
                }
                state = next;
            }
        }
    }
}
