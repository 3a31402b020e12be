//! Product APIs: a JSON body read through a site's JSON API rule (pointers to the price and
//! the currency, maybe minor units). Separate because such a body is not a page: none of the
//! page sources apply, and the rule says where the price is.

use serde_json::Value;
use url::Url;

use super::choice::from_offers;
use super::json_ld::str_of;
use super::{
    decode_and_collapse, machine_offer, Availability, CurrencySource, ExtractError, Method, Report,
};
use crate::price::lenient_json::parse_lenient;
use crate::price::rules::JsonApiRule;
use crate::price::CurrencyFound;

pub(super) fn extract_json_api(url: &Url, body: &[u8], rule: &JsonApiRule) -> Report {
    let text = String::from_utf8_lossy(body);
    let Some(doc) = parse_lenient(&text) else {
        return Report::failed(ExtractError::Unreadable(
            "a JSON API rule matches this URL but the body is not JSON".to_owned(),
        ));
    };
    let title = ["/title", "/name", "/product/title", "/product/name"]
        .iter()
        .find_map(|p| doc.pointer(p).and_then(Value::as_str))
        .map(decode_and_collapse);
    let host = url.host_str().unwrap_or("");
    let no_price = |why: String| Report {
        title: title.clone(),
        ..Report::failed(ExtractError::NoPrice(why))
    };
    let Some(raw) = str_of(doc.pointer(&rule.price_pointer)) else {
        return no_price(format!(
            "the JSON has no price at {} (the site's JSON API rule)",
            rule.price_pointer
        ));
    };
    let stated = rule
        .currency_pointer
        .as_deref()
        .and_then(|p| str_of(doc.pointer(p)));
    let from_rule = stated.is_none() && rule.currency.is_some();
    let code = stated.or_else(|| rule.currency.map(|c| c.to_string()));
    let mut offer = machine_offer(
        &raw,
        code.as_deref(),
        host,
        Availability::Unknown,
        format!("JSON {}", rule.price_pointer),
    );
    if from_rule && offer.currency_source == Some(CurrencySource::Page) {
        offer.currency_source = Some(CurrencySource::Rule);
    }
    if rule.minor_units {
        // Minor units only mean something once the currency, and so its exponent, is known.
        offer.price = match offer.price.take() {
            Some((amount, CurrencyFound::Known(c))) if amount.fract().is_zero() => {
                let mut a = amount.trunc();
                match a.set_scale(c.minor_digits()) {
                    Ok(()) => Some((a, CurrencyFound::Known(c))),
                    Err(_) => None,
                }
            }
            _ => None,
        };
    }
    let report = from_offers(Method::JsonApi, vec![offer], title.clone());
    match report {
        Some(r) => r,
        None => no_price(format!(
            "the value at {} is not a price: {raw}",
            rule.price_pointer
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::url;
    use super::*;
    use crate::price::Currency;

    #[test]
    fn json_api_minor_units_follow_the_currency_exponent() {
        let rule = |currency: &str| JsonApiRule {
            price_pointer: "/price".into(),
            currency_pointer: None,
            currency: Currency::parse(currency),
            minor_units: true,
        };
        let body = br#"{"title":"T","price":6800}"#;
        let r = extract_json_api(&url("https://s.example/p.js"), body, &rule("USD"));
        assert_eq!(r.price().unwrap().0.to_string(), "68.00");
        assert_eq!(r.currency_source(), Some(CurrencySource::Rule));
        let r = extract_json_api(&url("https://s.example/p.js"), body, &rule("JPY"));
        assert_eq!(r.price().unwrap().0.to_string(), "6800");
        let r = extract_json_api(
            &url("https://s.example/p.js"),
            br#"{"price":68.5}"#,
            &rule("USD"),
        );
        assert!(
            r.price().is_err(),
            "a fraction of a cent is not minor units"
        );
        let r = extract_json_api(&url("https://s.example/p.js"), b"<html>", &rule("USD"));
        assert_eq!(r.error.as_ref().map(ExtractError::code), Some("unreadable"));
        let r = extract_json_api(&url("https://s.example/p.js"), br#"{"x":1}"#, &rule("USD"));
        assert!(r.error.unwrap().to_string().contains("/price"));
    }
}
