//! Arbitrary bytes as a fetched body: through `decode_html` under one of several content types,
//! then through the extractor with one of several rule sets (none, a CSS site rule on text, one on
//! an attribute, the built-in Amazon set with its split prices, a JSON API rule, a small size
//! limit). Nothing may panic, and every report must be consistent: amounts are positive, and a
//! report without an error has an amount and a currency.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pricewatch::price::decode::decode_html;
use pricewatch::price::extract::{Extractor, Report};
use pricewatch::price::html::SiteSelector;
use pricewatch::price::rules::{builtin_rules, JsonApiRule, Rules, SiteRule, UrlMatch};
use pricewatch::price::Currency;
use rust_decimal::Decimal;
use url::Url;

/// The production limit (`fetch.max_body_bytes`).
const MAX_BYTES: usize = 5 << 20;

/// A product URL with a `?variant=` so the variant choice runs too.
static URL: LazyLock<Url> = LazyLock::new(|| {
    Url::parse("https://shop.example.com/products/thing?variant=123").expect("a valid URL")
});

/// One extractor per rule set, compiled once.
static EXTRACTORS: LazyLock<Vec<Extractor>> = LazyLock::new(|| {
    let host = || UrlMatch::Host("example.com".to_owned());
    let site = |selector: &str, attribute: Option<&str>| Rules {
        sites: vec![(
            host(),
            SiteRule::single(
                "example.com",
                SiteSelector::new(selector, attribute).expect("a valid selector"),
                selector,
            ),
        )],
        apis: Vec::new(),
    };
    // The built-in Amazon set (several selectors, split whole/fraction prices) on this host.
    let amazon = Rules {
        sites: builtin_rules()
            .into_iter()
            .filter(|(_, r)| r.name == "amazon")
            .take(1)
            .map(|(_, r)| (host(), r))
            .collect(),
        apis: Vec::new(),
    };
    let api = Rules {
        sites: Vec::new(),
        apis: vec![(
            UrlMatch::Pattern("https://shop.example.com/*".to_owned()),
            JsonApiRule {
                price_pointer: "/variants/0/price".to_owned(),
                currency_pointer: Some("/currency".to_owned()),
                currency: Currency::parse("USD"),
                minor_units: true,
            },
        )],
    };
    vec![
        Extractor::new(Rules::default(), MAX_BYTES),
        Extractor::new(site("div.price-box span.price", None), MAX_BYTES),
        Extractor::new(site("[data-price]", Some("data-price")), MAX_BYTES),
        Extractor::new(amazon, MAX_BYTES),
        Extractor::new(api, MAX_BYTES),
        // Decoding may grow the text past the limit (one windows-1252 byte is up to three
        // UTF-8 bytes): the scanner's own size check must refuse it cleanly.
        Extractor::new(Rules::default(), 4096),
    ]
});

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=windows-1252"),
    Some("text/html; charset=Shift_JIS"),
    Some("text/html; charset=utf-16le"),
    Some("application/json; charset=\"x-unknown\""),
];

fuzz_target!(|body: &[u8]| {
    // The first byte picks the content type and the length the rule set, so each run is one
    // decode and one extraction and libFuzzer can tell the paths apart.
    let content_type = CONTENT_TYPES[usize::from(body.first().copied().unwrap_or(0)) % 6];
    let (text, _) = decode_html(body, content_type);
    // Every encoding maps one input byte to at most one U+FFFD or one BMP character.
    assert!(
        text.len() <= 3 * body.len(),
        "{} bytes decoded to {} bytes under {content_type:?}",
        body.len(),
        text.len()
    );
    let extractor = &EXTRACTORS[body.len() % EXTRACTORS.len()];
    check(&extractor.extract(&URL, body, content_type));
});

fn check(report: &Report) {
    if let Some(amount) = report.amount {
        assert!(amount > Decimal::ZERO, "non-positive amount {amount}");
    }
    for c in &report.candidates {
        assert!(c.amount > Decimal::ZERO, "non-positive candidate {c:?}");
    }
    match &report.error {
        None => assert!(
            report.amount.is_some() && report.currency.is_some(),
            "no error but no price: {report:?}"
        ),
        Some(e) => {
            let _ = e.to_string();
        }
    }
    assert_eq!(report.price().is_ok(), report.error.is_none());
    serde_json::to_string(&report.to_json(URL.as_str())).expect("the report serialises");
}
