//! Which price wins when a page offers several for one product: the offers as the sources
//! state them, the choice among them, and the amount and currency the chosen one becomes.
//! Separate from the sources so the rule reads in one place, whatever markup the offers
//! came from.
//!
//! Several prices for one product are resolved in this order (see
//! `tests/fixtures/pages/README.md` for the full rules the fixtures pin down):
//! 1. the selected variant: an offer whose `url` carries the page's `?variant=` value, or
//!    whose `sku` equals it;
//! 2. the main offer: the product's only offer, or its `AggregateOffer` (`lowPrice`);
//! 3. the lowest-priced offer in stock, else the lowest overall.

use rust_decimal::Decimal;

use super::{Availability, Candidate, ExtractError, Method, Report};
use crate::price::{Currency, CurrencyFound};

/// A price as one source states it, before the choice.
#[derive(Clone, Debug)]
pub(super) struct Offer {
    /// `None` when the offer states no usable price; `zero` tells whether it stated 0.
    pub(super) price: Option<(Decimal, CurrencyFound)>,
    pub(super) zero: bool,
    pub(super) availability: Availability,
    pub(super) url: Option<String>,
    pub(super) sku: Option<String>,
    pub(super) role: Role,
    pub(super) source: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Single,
    AggregateLow,
    /// A candidate only, never chosen.
    AggregateHigh,
}

pub(super) fn blank_offer(availability: Availability, source: String) -> Offer {
    Offer {
        price: None,
        zero: false,
        availability,
        url: None,
        sku: None,
        role: Role::Single,
        source,
    }
}

/// The rule in the module documentation. Returns an index into `offers`.
pub(super) fn choose(offers: &[Offer], variant: Option<&str>) -> Option<usize> {
    let priced = || {
        offers
            .iter()
            .enumerate()
            .filter(|(_, o)| o.price.is_some() && o.role != Role::AggregateHigh)
    };
    if let Some(v) = variant.filter(|v| !v.is_empty()) {
        let selected = priced().find(|(_, o)| {
            o.sku.as_deref() == Some(v)
                || o.url.as_deref().and_then(variant_of).as_deref() == Some(v)
        });
        if let Some((i, _)) = selected {
            return Some(i);
        }
    }
    if let Some((i, _)) = priced().find(|(_, o)| o.role == Role::AggregateLow) {
        return Some(i);
    }
    let amount = |o: &Offer| o.price.as_ref().map_or(Decimal::MAX, |p| p.0);
    priced()
        .filter(|(_, o)| o.availability != Availability::OutOfStock)
        .min_by_key(|(_, o)| amount(o))
        .or_else(|| priced().min_by_key(|(_, o)| amount(o)))
        .map(|(i, _)| i)
}

fn variant_of(offer_url: &str) -> Option<String> {
    let query = offer_url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "variant")
        .map(|(_, v)| v.into_owned())
}

/// A price whose currency is not known is still reported, with the reason.
pub(super) fn settle(
    amount: Decimal,
    currency: CurrencyFound,
) -> (Option<Currency>, Option<ExtractError>) {
    match currency {
        CurrencyFound::Known(c) => (Some(c), None),
        CurrencyFound::Ambiguous(candidates) => (
            None,
            Some(ExtractError::AmbiguousCurrency { amount, candidates }),
        ),
        CurrencyFound::Unstated => (
            None,
            Some(ExtractError::AmbiguousCurrency {
                amount,
                candidates: Vec::new(),
            }),
        ),
    }
}

/// `2499.9` BRL reads `2499.90`: amounts are shown with their currency's minor digits.
pub(super) fn with_minor_digits(amount: Decimal, currency: Option<Currency>) -> Decimal {
    let Some(c) = currency else {
        return amount;
    };
    let mut a = amount.normalize();
    if a.scale() < c.minor_digits() {
        a.rescale(c.minor_digits());
    }
    a
}

pub(super) fn candidate(o: &Offer, method: Method) -> Candidate {
    let (amount, currency) = match &o.price {
        Some((a, CurrencyFound::Known(c))) => {
            (with_minor_digits(*a, Some(*c)), Some(c.to_string()))
        }
        Some((a, _)) => (*a, None),
        None => (Decimal::ZERO, None),
    };
    Candidate {
        amount,
        currency,
        method,
        availability: o.availability,
        source: o.source.clone(),
    }
}

pub(super) fn from_offers(
    method: Method,
    offers: Vec<Offer>,
    title: Option<String>,
) -> Option<Report> {
    let i = choose(&offers, None);
    let Some(i) = i else {
        return offers.iter().any(|o| o.zero).then(|| Report {
            title: title.clone(),
            ..Report::failed(ExtractError::ZeroPrice)
        });
    };
    let (amount, found_currency) = offers[i].price.clone()?;
    let (currency, error) = settle(amount, found_currency);
    Some(Report {
        title,
        amount: Some(with_minor_digits(amount, currency)),
        currency,
        availability: offers[i].availability,
        method: Some(method),
        candidates: vec![candidate(&offers[i], method)],
        error,
        rule_set: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::json_ld;

    #[test]
    fn the_choice_follows_variant_then_main_offer_then_lowest_in_stock() {
        let script = r#"{"@type":"Product","name":"P","offers":[
            {"@type":"Offer","price":"30.00","priceCurrency":"USD","sku":"A","availability":"InStock"},
            {"@type":"Offer","price":"20.00","priceCurrency":"USD","sku":"B","availability":"OutOfStock"},
            {"@type":"Offer","price":"25.00","priceCurrency":"USD","sku":"C","url":"/p?variant=77","availability":"InStock"}]}"#;
        let pick = |u: &str| json_ld(u, script).amount.unwrap().to_string();
        assert_eq!(pick("https://s.example/p"), "25.00", "lowest in stock");
        assert_eq!(
            pick("https://s.example/p?variant=B"),
            "20.00",
            "by sku, even out of stock"
        );
        assert_eq!(
            pick("https://s.example/p?variant=77"),
            "25.00",
            "by offer url"
        );
        assert_eq!(
            pick("https://s.example/p?variant=zzz"),
            "25.00",
            "unknown variant ignored"
        );
        let r = json_ld("https://s.example/p", script);
        assert_eq!(r.candidates.len(), 3);
        assert_eq!(r.candidates[0].amount, r.amount.unwrap());

        let aggregate = r#"{"@type":"Product","name":"P","offers":{"@type":"AggregateOffer",
            "lowPrice":9.5,"highPrice":"12","priceCurrency":"EUR","offerCount":3}}"#;
        let r = json_ld("https://s.example/p", aggregate);
        assert_eq!(r.amount.unwrap().to_string(), "9.50");
        assert_eq!(r.candidates.len(), 2);
    }
}
