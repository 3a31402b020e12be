//! Arbitrary text as a chat message: the command parser slices it at computed byte offsets
//! in many places (words, URLs, amounts, markup), under several locales and limits. Nothing
//! may panic; a drop it accepts is within the limits it was given, and every refusal can be
//! said.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pricewatch::domain::Rule;
use pricewatch::inbound::command::{parse, Command, Limits, UnwatchTarget};
use rust_decimal::Decimal;

const LOCALES: [Option<&str>; 4] = [None, Some("en-US"), Some("fr-FR"), Some("de-DE")];

fuzz_target!(|text: &str| {
    let tight = Limits {
        min_drop: Decimal::from(5),
        max_drop: Decimal::from(50),
        max_url_len: 64,
    };
    for limits in [Limits::default(), tight] {
        // The length picks the locale, so each input is two parses, not eight.
        let locale = LOCALES[text.len() % LOCALES.len()];
        match parse(text, &limits, locale) {
            Ok(Command::Watch { url, rule }) => {
                assert!(url.as_str().starts_with("http"), "{url:?}");
                match rule {
                    Some(Rule::Drop { percent }) => {
                        assert!(percent >= limits.min_drop && percent <= limits.max_drop, "{percent}")
                    }
                    Some(Rule::Below { amount }) => assert!(amount > Decimal::ZERO, "{amount}"),
                    Some(Rule::Restock) | None => {}
                }
            }
            Ok(Command::Unwatch(UnwatchTarget::Index(n))) | Ok(Command::History(n)) => {
                assert!(n >= 1, "watch numbers start at 1")
            }
            Ok(_) => {}
            Err(e) => {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
