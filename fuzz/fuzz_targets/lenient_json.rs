//! Arbitrary text as a JSON-LD script or an API body. Nothing may panic; strict JSON must be
//! accepted (the repairs only ever widen what parses); and whatever is accepted serialises again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pricewatch::price::lenient_json::{decode_entities, parse_lenient};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lenient = parse_lenient(&text);
    if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
        assert!(lenient.is_some(), "strict JSON refused: {text:?}");
    }
    if let Some(value) = lenient {
        serde_json::to_string(&value).expect("a parsed value serialises");
    }
    let decoded = decode_entities(&text);
    // An entity is never shorter than the character it stands for.
    assert!(decoded.len() <= text.len());
});
