//! Arbitrary UTF-8 as a price string, under several hint combinations. Nothing may panic, and an
//! accepted amount is positive. The text before the first newline is also tried as a hint as an
//! operator writes one (an ISO code, a locale or a host), so hints get fuzzed as well.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pricewatch::price::{parse_price, Currency, Hints, TextProbe};
use rust_decimal::Decimal;

fuzz_target!(|text: &str| {
    let eur = Currency::parse("EUR");
    let kwd = Currency::parse("KWD");
    let fixed = [
        Hints::default(),
        Hints {
            currency: eur,
            ..Hints::default()
        },
        Hints {
            locale: Some("de-DE"),
            ..Hints::default()
        },
        Hints {
            host: Some("shop.example.com.au"),
            ..Hints::default()
        },
        Hints {
            currency: kwd,
            locale: Some("sv-SE"),
            host: Some("example.jp"),
        },
    ];
    for hints in &fixed {
        check(text, hints);
    }
    if let Some((hint, price)) = text.split_once('\n') {
        check(price, &Hints::from_text(hint));
        let probe = TextProbe::run(price, Some(hint));
        assert_eq!(probe.found(), probe.amount.is_some());
    }
});

fn check(text: &str, hints: &Hints<'_>) {
    if let Ok(p) = parse_price(text, hints) {
        assert!(p.amount > Decimal::ZERO, "{text:?} gave {}", p.amount);
    }
}
