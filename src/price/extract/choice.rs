//! Which price wins when a page offers several for one product: the offers as the sources
//! state them, the choice among them, and the amount and currency the chosen one becomes.
//! Separate from the sources so the rule reads in one place, whatever markup the offers
//! came from.
//!
//! Several prices for one product are resolved in this order (see
//! `tests/fixtures/pages/README.md` for the full rules the fixtures pin down):
//! 1. the selected variant: an offer whose `url` carries the page's `?variant=` value, or
//!    whose `sku` equals it;
//! 2. the variant the page is: a `ProductGroup` variant whose own `url` is the page URL,
//!    both normalised as a [`ProductUrl`] is (fragment and tracking parameters dropped), when
//!    some variants have other URLs (a URL every variant shares selects nothing);
//! 3. the main offer: the product's only offer, or its `AggregateOffer` (`lowPrice`);
//! 4. the lowest-priced offer in stock, else the lowest overall.
//!
//! An offer that states its price only in `priceSpecification` (one or a list, in JSON-LD
//! or microdata) is priced by the specification that is the product's selling price
//! ([`selling_specification`]):
//! - not a selling price: a `priceType` of `ListPrice`, `StrikethroughPrice`, `MSRP`, `SRP`
//!   or `MinimumAdvertisedPrice` (the "was" and recommended prices);
//! - not the product's price: a per-unit reference price, that is a `referenceQuantity`
//!   other than one piece, or a `unitCode`/`unitText` naming a measure (`KGM`, `LTR`,
//!   `100 g`) rather than a piece (`C62`, `H87`, `EA`); and a bulk price whose
//!   `eligibleQuantity` starts above one;
//! - of the rest, a `SalePrice` wins, then one without a type (or `InvoicePrice`); among
//!   equals, a price with VAT before one that says `valueAddedTaxIncluded: false`, then the
//!   first written. `price` is read, else `minPrice`.

use rust_decimal::Decimal;

use super::{Availability, Candidate, CurrencySource, ExtractError, Method, Report};
use crate::domain::product_url::{ProductUrl, DEFAULT_MAX_URL_LEN};
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
    /// Where a known currency came from.
    pub(super) currency_source: Option<CurrencySource>,
    /// The offer belongs to one variant of a `ProductGroup`.
    pub(super) variant: bool,
    /// The variant's own `url` is the page URL (rule 2).
    pub(super) at_page_url: bool,
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
        currency_source: None,
        variant: false,
        at_page_url: false,
    }
}

/// Whether `candidate` (maybe relative to the page) is the page's URL once both are
/// normalised as stored product URLs are.
pub(super) fn is_page_url(candidate: &str, page: &url::Url) -> bool {
    let Ok(joined) = page.join(candidate.trim()) else {
        return false;
    };
    let key = |u: &str| {
        ProductUrl::parse(u, DEFAULT_MAX_URL_LEN).ok().map(|p| {
            let u = p.as_url();
            // http and https, and a port written out, name the same product page.
            format!(
                "{}{}?{}",
                u.host_str().unwrap_or(""),
                u.path(),
                u.query().unwrap_or("")
            )
        })
    };
    match (key(joined.as_str()), key(page.as_str())) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// One `priceSpecification` as a source states it.
#[derive(Debug, Default, Clone)]
pub(super) struct Specification {
    pub(super) price: Option<String>,
    pub(super) currency: Option<String>,
    pub(super) price_type: Option<String>,
    /// `unitCode` or `unitText`, of the specification or its `referenceQuantity`.
    pub(super) unit: Option<String>,
    pub(super) has_reference_quantity: bool,
    /// `referenceQuantity`'s `value`, as written.
    pub(super) reference_value: Option<String>,
    /// `eligibleQuantity`'s `minValue` (or `value`), as written.
    pub(super) min_quantity: Option<String>,
    pub(super) vat_included: Option<bool>,
}

/// The rule in the module documentation: the index of the specification that is the
/// product's selling price.
pub(super) fn selling_specification(specs: &[Specification]) -> Option<usize> {
    specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.price.is_some() && is_selling(s))
        .min_by_key(|(i, s)| {
            let sale = s.price_type.as_deref().map(last_segment).as_deref() == Some("saleprice");
            (!sale, s.vat_included == Some(false), *i)
        })
        .map(|(i, _)| i)
}

fn last_segment(t: &str) -> String {
    let t = t.trim();
    t.rsplit(['/', ':', '#'])
        .next()
        .unwrap_or(t)
        .to_ascii_lowercase()
}

fn is_selling(s: &Specification) -> bool {
    let not_selling = [
        "listprice",
        "strikethroughprice",
        "msrp",
        "srp",
        "minimumadvertisedprice",
    ];
    if s.price_type
        .as_deref()
        .is_some_and(|t| not_selling.contains(&last_segment(t).as_str()))
    {
        return false;
    }
    let more_than_one = |v: &Option<String>| {
        v.as_deref()
            .and_then(|v| v.trim().parse::<Decimal>().ok())
            .is_some_and(|v| v > Decimal::ONE)
    };
    if more_than_one(&s.min_quantity) {
        return false;
    }
    let per_unit = match s.unit.as_deref() {
        Some(unit) => !is_piece(unit) || more_than_one(&s.reference_value),
        // A reference quantity with no unit at all is still a reference: the price is "per" it.
        None => s.has_reference_quantity,
    };
    !per_unit
}

/// UN/CEFACT codes and words for "one item" (schema.org's `unitCode` takes the codes).
fn is_piece(unit: &str) -> bool {
    let u = unit.trim().to_ascii_lowercase();
    matches!(
        u.as_str(),
        "c62" | "h87" | "ea" | "xpp" | "pce" | "pc" | "pcs" | "piece" | "unit" | "item" | "each"
    )
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
    let variants = priced().filter(|(_, o)| o.variant).count();
    let at_page: Vec<(usize, &Offer)> = priced()
        .filter(|(_, o)| o.variant && o.at_page_url)
        .collect();
    if !at_page.is_empty() && at_page.len() < variants {
        return lowest_in_stock(&at_page);
    }
    if let Some((i, _)) = priced().find(|(_, o)| o.role == Role::AggregateLow) {
        return Some(i);
    }
    lowest_in_stock(&priced().collect::<Vec<_>>())
}

/// The lowest-priced offer in stock, else the lowest overall.
fn lowest_in_stock(offers: &[(usize, &Offer)]) -> Option<usize> {
    let amount = |o: &Offer| o.price.as_ref().map_or(Decimal::MAX, |p| p.0);
    offers
        .iter()
        .filter(|(_, o)| o.availability != Availability::OutOfStock)
        .min_by_key(|(_, o)| amount(o))
        .or_else(|| offers.iter().min_by_key(|(_, o)| amount(o)))
        .map(|(i, _)| *i)
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
    let (amount, currency, currency_source) = match &o.price {
        Some((a, CurrencyFound::Known(c))) => (
            with_minor_digits(*a, Some(*c)),
            Some(c.to_string()),
            o.currency_source,
        ),
        Some((a, _)) => (*a, None, None),
        None => (Decimal::ZERO, None, None),
    };
    Candidate {
        amount,
        currency,
        currency_source,
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
