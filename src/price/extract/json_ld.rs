//! The JSON-LD source: the product among a page's `application/ld+json` scripts (at the top
//! level, in a `@graph`, or as a WebPage's `mainEntity`), and its offers, variants and price
//! specifications. Separate from the other sources because reading schema.org nodes is most
//! of what extraction does, and none of it concerns microdata or meta tags.

use serde_json::Value;
use url::Url;

use super::choice::{blank_offer, Offer, Role};
use super::{decode_and_collapse, machine_offer, Availability, Found, PRODUCT_TYPES};
use crate::price::lenient_json::parse_lenient;

/// How deep the top-level walk goes into arrays and `@graph`s; real pages use two levels.
const MAX_GRAPH_DEPTH: usize = 4;
/// Largest JSON-LD script read, and most JSON-LD read from one page.
const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
const MAX_JSON_LD_BYTES: usize = 2 * 1024 * 1024;
/// Bounds the offers read from one product (marketplaces list a few hundred at most).
const MAX_OFFERS: usize = 1000;

fn type_is(node: &Value, names: &[&str]) -> bool {
    let one = |t: &Value| {
        t.as_str().is_some_and(|s| {
            let last = s.rsplit(['/', ':', '#']).next().unwrap_or(s);
            names.iter().any(|n| last.eq_ignore_ascii_case(n))
        })
    };
    match node.get("@type") {
        Some(Value::Array(a)) => a.iter().any(one),
        Some(t) => one(t),
        None => false,
    }
}

fn top_nodes<'v>(v: &'v Value, depth: usize, out: &mut Vec<&'v Value>) {
    if depth > MAX_GRAPH_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| top_nodes(i, depth + 1, out)),
        Value::Object(map) => {
            if let Some(graph) = map.get("@graph") {
                top_nodes(graph, depth + 1, out);
            }
            if map.contains_key("@type") {
                out.push(v);
            }
        }
        _ => {}
    }
}

fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

pub(super) fn str_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => str_of(o.get("@id")).or_else(|| str_of(o.get("name"))),
        Value::Array(a) => str_of(a.first()),
        _ => None,
    }
}

fn same_page(candidate: &str, page: &Url) -> bool {
    let Ok(u) = page.join(candidate.trim()) else {
        return false;
    };
    let strip = |u: &Url| {
        let mut s = format!(
            "{}{}",
            u.host_str().unwrap_or("").to_ascii_lowercase(),
            u.path()
        );
        while s.ends_with('/') {
            s.pop();
        }
        s
    };
    strip(&u) == strip(page)
}

pub(super) fn from_json_ld(url: &Url, scripts: &[String], host: &str) -> Found {
    // A JSON tree takes about fourteen times its text in memory, so the JSON-LD read from one
    // page is bounded; real product scripts are a few kilobytes, marketplaces' a few hundred.
    let mut budget = MAX_JSON_LD_BYTES;
    let mut skipped = 0;
    let docs: Vec<Value> = scripts
        .iter()
        .filter(|s| {
            let fits = s.len() <= MAX_SCRIPT_BYTES && s.len() <= budget;
            if fits {
                budget -= s.len();
            } else {
                skipped += 1;
            }
            fits
        })
        .filter_map(|s| parse_lenient(s))
        .collect();
    let broken = scripts
        .iter()
        .filter(|s| !s.trim().is_empty())
        .count()
        .saturating_sub(docs.len() + skipped);
    let mut nodes = Vec::new();
    for d in &docs {
        top_nodes(d, 0, &mut nodes);
    }
    // A WebPage's mainEntity counts as top level: it is the page's subject.
    let mut main_ids = Vec::new();
    let mut products: Vec<&Value> = Vec::new();
    for n in &nodes {
        if type_is(n, PRODUCT_TYPES) {
            products.push(n);
        } else if let Some(main) = n.get("mainEntity") {
            if type_is(main, PRODUCT_TYPES) {
                products.push(main);
            } else if let Some(id) = str_of(Some(main)) {
                main_ids.push(id);
            }
        }
    }
    let main = products
        .iter()
        .find(|p| {
            str_of(p.get("url")).is_some_and(|u| same_page(&u, url))
                || str_of(p.get("@id")).is_some_and(|id| main_ids.contains(&id))
        })
        .or(products.first());

    let mut found = Found::default();
    let Some(product) = main else {
        let mut notes = Vec::new();
        if broken > 0 {
            notes.push(format!("{broken} JSON-LD script(s) could not be parsed"));
        }
        if skipped > 0 {
            notes.push(format!(
                "{skipped} JSON-LD script(s) were too large to read (over {} KiB)",
                MAX_SCRIPT_BYTES / 1024
            ));
        }
        found.note = (!notes.is_empty()).then(|| notes.join("; "));
        return found;
    };
    found.title = str_of(product.get("name")).map(|n| decode_and_collapse(&n));
    offers_of(product, None, host, &mut found.offers);
    for variant in as_list(product.get("hasVariant")) {
        offers_of(variant, Some(variant), host, &mut found.offers);
    }
    found.offers.truncate(MAX_OFFERS);
    if found.offers.is_empty() {
        found.note = Some("the JSON-LD Product has no offers".to_owned());
    } else if found.offers.iter().all(|o| o.price.is_none() && !o.zero) {
        found.note = Some("the JSON-LD offers state no price".to_owned());
    }
    found
}

fn offers_of(product: &Value, variant: Option<&Value>, host: &str, out: &mut Vec<Offer>) {
    let variant_sku = variant.and_then(|v| str_of(v.get("sku")));
    let variant_url = variant.and_then(|v| str_of(v.get("url")));
    for offer in as_list(product.get("offers")) {
        if out.len() >= MAX_OFFERS {
            return;
        }
        let availability = str_of(offer.get("availability"))
            .map_or(Availability::Unknown, |a| Availability::from_text(&a));
        let code = str_of(offer.get("priceCurrency"));
        let sku = str_of(offer.get("sku")).or_else(|| variant_sku.clone());
        let url = str_of(offer.get("url")).or_else(|| variant_url.clone());
        let describe = |what: &str| {
            let mut s = format!("JSON-LD {what}");
            if let Some(sku) = &sku {
                s.push_str(&format!(" sku={sku}"));
            }
            s
        };
        if type_is(offer, &["AggregateOffer"]) {
            let low = str_of(offer.get("lowPrice")).or_else(|| str_of(offer.get("price")));
            if let Some(low) = low {
                let mut o = machine_offer(
                    &low,
                    code.as_deref(),
                    host,
                    availability,
                    describe("AggregateOffer lowPrice"),
                );
                o.role = Role::AggregateLow;
                out.push(o);
            }
            if let Some(high) = str_of(offer.get("highPrice")) {
                let mut o = machine_offer(
                    &high,
                    code.as_deref(),
                    host,
                    availability,
                    describe("AggregateOffer highPrice"),
                );
                o.role = Role::AggregateHigh;
                out.push(o);
            }
            offers_of(offer, None, host, out);
            continue;
        }
        let (value, code) = match str_of(offer.get("price")) {
            Some(p) => (Some(p), code),
            None => specification_price(offer)
                .map_or((None, code.clone()), |(p, c)| (Some(p), c.or(code))),
        };
        let mut o = match value {
            Some(v) => machine_offer(&v, code.as_deref(), host, availability, describe("Offer")),
            None => blank_offer(availability, describe("Offer")),
        };
        o.sku = sku;
        o.url = url;
        out.push(o);
    }
}

/// The first `priceSpecification` that is the selling price, with its currency.
fn specification_price(offer: &Value) -> Option<(String, Option<String>)> {
    as_list(offer.get("priceSpecification"))
        .into_iter()
        .filter(|s| {
            !str_of(s.get("priceType")).is_some_and(|t| {
                let t = t.rsplit('/').next().unwrap_or(&t).to_ascii_lowercase();
                t == "listprice" || t == "strikethroughprice" || t == "msrp"
            }) && s.get("referenceQuantity").is_none()
        })
        .find_map(|s| {
            let p = str_of(s.get("price")).or_else(|| str_of(s.get("minPrice")))?;
            Some((p, str_of(s.get("priceCurrency"))))
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{json_ld, url};
    use super::*;
    use crate::price::extract::{from_facts, ExtractError};
    use crate::price::html::PageFacts;

    #[test]
    fn oversized_json_ld_is_skipped_and_said() {
        let big = format!(
            r#"{{"@type":"Product","name":"P","offers":{{"price":"5.00","priceCurrency":"EUR"}},"pad":"{}"}}"#,
            "x".repeat(MAX_SCRIPT_BYTES)
        );
        let r = json_ld("https://s.example/p", &big);
        assert_eq!(r.error.as_ref().map(ExtractError::code), Some("no_price"));
        assert!(r.error.unwrap().to_string().contains("too large"));
        // Under the per-script cap, but together over the page's budget: the first ones count.
        let small =
            r#"{"@type":"Product","name":"P","offers":{"price":"5.00","priceCurrency":"EUR"}}"#;
        let pad = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_SCRIPT_BYTES - 20));
        let facts = PageFacts {
            json_ld: vec![small.to_owned(), pad.clone(), pad.clone(), pad],
            ..PageFacts::default()
        };
        let r = from_facts(&url("https://s.example/p"), &facts, None);
        assert_eq!(r.price().unwrap().0.to_string(), "5.00");
    }
}
