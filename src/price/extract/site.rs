//! The site-rule source: a rule set's picks over the values the page scan collected for
//! its selectors. The first pick that gives a price wins; a pick that matched nothing, or
//! matched an element without a price (Amazon sometimes renders an empty `a-offscreen`),
//! passes to the next.
//!
//! A site rule is read only when no structured source (JSON-LD, microdata, meta) gives a
//! price. The marketplaces the built-in sets cover publish none for the buy box, and where
//! a shop does publish one it is the price the shop stands behind, and more stable than any
//! class name; no fixture page has shown a structured price that was wrong where the buy
//! box was right, so the source order stays as it was.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::choice::{blank_offer, Offer};
use super::{text_offer, Availability, CurrencySource, Found};
use crate::price::currency::for_tld;
use crate::price::rules::{Pick, SiteRule};
use crate::price::{parse_price, Currency, CurrencyFound, Hints};

/// The offer of the first pick that gives a price (or, failing that, the first that gives
/// zero), with the pick that gave it.
pub(super) fn from_site_rule(
    rule: &SiteRule,
    values: &[Option<String>],
    host: &str,
) -> (Found, Option<Pick>) {
    let value = |i: usize| values.get(i).and_then(Option::as_deref);
    let code = rule.currency.as_ref().map(Currency::as_str);
    let mut zero: Option<(Offer, Pick)> = None;
    for &pick in &rule.picks {
        let source = format!("site rule {}: {}", rule.label(), rule.describe(pick));
        let offer = match pick {
            Pick::One(i) => match value(i) {
                Some(text) if !text.is_empty() => {
                    let mut o = text_offer(text, code, host, Availability::Unknown, source);
                    // The rule's currency is a hint to the parser, which counts a hint as
                    // the page's; it is the rule's unless the text names that currency.
                    if let Some((_, CurrencyFound::Known(found))) = o.price {
                        if rule.currency == Some(found) && !states(text, found) {
                            o.currency_source = Some(CurrencySource::Rule);
                        }
                    }
                    o
                }
                _ => continue,
            },
            Pick::Split { whole, fraction } => {
                let Some(w) = value(whole) else { continue };
                let Some(amount) = split_amount(w, fraction.and_then(value)) else {
                    continue;
                };
                let mut o = blank_offer(Availability::Unknown, source);
                if amount.is_zero() {
                    o.zero = true;
                } else {
                    let (currency, from) = match (rule.currency, for_tld(host)) {
                        (Some(c), _) => (CurrencyFound::Known(c), Some(CurrencySource::Rule)),
                        (None, Some(c)) => (CurrencyFound::Known(c), Some(CurrencySource::Domain)),
                        (None, None) => (CurrencyFound::Unstated, None),
                    };
                    o.price = Some((amount, currency));
                    o.currency_source = from;
                }
                o
            }
        };
        if offer.price.is_some() {
            let found = Found {
                offers: vec![offer],
                ..Found::default()
            };
            return (found, Some(pick));
        }
        if offer.zero && zero.is_none() {
            zero = Some((offer, pick));
        }
    }
    match zero {
        Some((offer, pick)) => (
            Found {
                offers: vec![offer],
                ..Found::default()
            },
            Some(pick),
        ),
        None => (Found::default(), None),
    }
}

/// Whether `text` read alone (no rule, no domain) names `currency`.
fn states(text: &str, currency: Currency) -> bool {
    let alone = Hints {
        currency: None,
        locale: None,
        host: None,
    };
    matches!(
        parse_price(text, &alone).map(|p| p.currency),
        Ok(CurrencyFound::Known(c)) if c == currency
    )
}

/// A price whose whole part and fraction are separate elements: the digits of each,
/// whatever grouping (`1.299`, `1,24,999`) or trailing decimal separator (`1,299.`) the
/// whole part shows. When the whole element contains the fraction element (bol.com), its
/// text ends with the fraction's after a space or separator, and that tail is dropped.
pub(super) fn split_amount(whole: &str, fraction: Option<&str>) -> Option<Decimal> {
    let frac = fraction.map_or("", str::trim);
    let mut whole = whole.trim();
    if !frac.is_empty() {
        if let Some(rest) = whole.strip_suffix(frac) {
            if rest.ends_with(|c: char| c.is_whitespace() || c == '.' || c == ',') {
                whole = rest;
            }
        }
    }
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    let w = digits(whole);
    if w.is_empty() {
        return None;
    }
    let f = digits(frac);
    let text = if f.is_empty() { w } else { format!("{w}.{f}") };
    Decimal::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::price::extract::{Extractor, Method, Report};
    use crate::price::rules::{tests::site, Rules, SelectorConfig};

    fn extract(rules: Rules, url: &str, page: &str) -> Report {
        Extractor::new(rules, 1 << 20).extract(&Url::parse(url).unwrap(), page.as_bytes(), None)
    }

    fn builtin() -> Rules {
        Rules::compile(&[], &[]).unwrap()
    }

    fn price(r: &Report) -> (String, String) {
        let (a, c) = r.price().unwrap_or_else(|e| panic!("{e}: {r:?}"));
        (a.to_string(), c.to_string())
    }

    /// Amazon's buy box: an empty `a-offscreen`, the price split over whole and fraction,
    /// a struck list price before it and a used offer and other sellers after it.
    fn amazon_box(whole: &str, fraction: Option<&str>) -> String {
        let fraction = fraction.map_or(String::new(), |f| {
            format!("<span class=a-price-fraction>{f}</span>")
        });
        format!(
            "<div id=corePriceDisplay_desktop_feature_div>\
             <span class=\"a-price a-text-price\" data-a-strike=true><span class=a-offscreen>999,99 €</span></span>\
             <span class=\"a-price aok-align-center priceToPay\"><span class=a-offscreen> </span>\
             <span aria-hidden=true><span class=a-price-whole>{whole}</span>{fraction}\
             <span class=a-price-symbol>€</span></span></span></div>\
             <div id=usedBuySection><span class=a-color-price>5,00 €</span></div>\
             <div id=olp_feature_div><span class=a-price><span class=a-offscreen>1,00 €</span></span></div>"
        )
    }

    #[test]
    fn split_amounts_read_whatever_the_grouping() {
        for (whole, fraction, want) in [
            ("1.299,", Some("00"), "1299.00"),
            ("1,24,999.", Some("00"), "124999.00"),
            ("12,800", None, "12800"),
            ("279.", Some("99"), "279.99"),
            ("49 99", Some("99"), "49.99"),
            ("49\u{a0}-", Some("-"), "49"),
            ("1.299,99", Some("99"), "1299.99"),
            // A whole part that merely ends with the fraction's digits keeps them.
            ("199", Some("99"), "199.99"),
        ] {
            assert_eq!(
                split_amount(whole, fraction),
                Decimal::from_str(want).ok(),
                "{whole:?} {fraction:?}"
            );
        }
        assert_eq!(split_amount("—", Some("99")), None);
    }

    #[test]
    fn amazon_split_price_takes_the_storefront_currency() {
        let r = extract(
            builtin(),
            "https://www.amazon.de/dp/B0C1",
            &amazon_box("1.299<span class=a-price-decimal>,</span>", Some("00")),
        );
        assert_eq!(price(&r), ("1299.00".into(), "EUR".into()));
        assert_eq!(r.method, Some(Method::SiteRule));
        assert_eq!(r.currency_source(), Some(CurrencySource::Rule));
        let used = r.rule_set.as_ref().unwrap();
        assert_eq!((used.name.as_str(), used.origin), ("amazon", "built-in"));
        assert!(used.selector.contains("a-price-whole"), "{used:?}");
        // The same markup on other storefronts.
        let r = extract(
            builtin(),
            "https://www.amazon.co.jp/dp/B0C1",
            &amazon_box("12,800", None),
        );
        assert_eq!(price(&r), ("12800".into(), "JPY".into()));
        let r = extract(
            builtin(),
            "https://www.amazon.in/dp/B0C1",
            &amazon_box("1,24,999.", Some("00")),
        );
        assert_eq!(price(&r), ("124999.00".into(), "INR".into()));
        // No rule set for a host that is not a storefront: no price.
        let r = extract(
            builtin(),
            "https://www.amazon.example/dp/B0C1",
            &amazon_box("12,800", None),
        );
        assert_eq!(r.error.as_ref().map(|e| e.code()), Some("no_price"));
    }

    #[test]
    fn the_first_selector_that_gives_a_price_wins() {
        let page = "<span class=a>n/a</span><span class=b>£12.50</span><span class=c>£9.00</span>";
        let mut rule = site("shop.example", "");
        rule.selector = None;
        rule.selectors = ["#missing", "span.a", "span.b", "span.c"]
            .map(|s| SelectorConfig::Css(s.to_owned()))
            .to_vec();
        let r = extract(
            Rules::compile(&[rule.clone()], &[]).unwrap(),
            "https://shop.example/p",
            page,
        );
        assert_eq!(price(&r), ("12.50".into(), "GBP".into()));
        assert_eq!(r.rule_set.as_ref().unwrap().selector, "span.b");
        assert_eq!(r.rule_set.as_ref().unwrap().config_rule, Some(1));
        // In the order given, not the document's.
        rule.selectors.swap(2, 3);
        let r = extract(
            Rules::compile(&[rule], &[]).unwrap(),
            "https://shop.example/p",
            page,
        );
        assert_eq!(price(&r), ("9.00".into(), "GBP".into()));
    }

    #[test]
    fn a_config_rule_replaces_the_builtin_set_and_its_currency_applies() {
        let page = amazon_box("1.299,", Some("00")) + "<b id=mine>$45.00</b>";
        let mut mine = site("amazon.com.mx", "b#mine");
        mine.currency = Some("MXN".into());
        let rules = Rules::compile(&[mine], &[]).unwrap();
        let r = extract(rules, "https://www.amazon.com.mx/dp/B0C1", &page);
        assert_eq!(price(&r), ("45.00".into(), "MXN".into()));
        // `$` is the peso's sign too: the rule's currency decided.
        assert_eq!(r.currency_source(), Some(CurrencySource::Rule));
        let used = r.rule_set.unwrap();
        assert_eq!(
            (used.name.as_str(), used.origin),
            ("amazon.com.mx", "config")
        );
        // A shown sign still wins over the storefront's currency.
        let r = extract(builtin(), "https://www.amazon.com/dp/B0C1", "<div id=corePriceDisplay_desktop_feature_div><span class=\"a-price priceToPay\"><span class=a-offscreen>EUR 45.10</span></span></div>");
        assert_eq!(price(&r), ("45.10".into(), "EUR".into()));
        assert_eq!(r.currency_source(), Some(CurrencySource::Page));
    }

    #[test]
    fn structured_prices_still_come_first() {
        let page = amazon_box("1.299,", Some("00"))
            + "<script type=application/ld+json>{\"@type\":\"Product\",\"name\":\"P\",\
               \"offers\":{\"price\":\"1249.00\",\"priceCurrency\":\"EUR\"}}</script>";
        let r = extract(builtin(), "https://www.amazon.de/dp/B0C1", &page);
        assert_eq!(price(&r), ("1249.00".into(), "EUR".into()));
        assert_eq!((r.method, r.rule_set), (Some(Method::JsonLd), None));
    }
}
