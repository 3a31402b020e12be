//! The JSON-LD source: the product among a page's `application/ld+json` scripts (at the top
//! level, in a `@graph`, or as a WebPage's `mainEntity`), and its offers, variants and price
//! specifications. Separate from the other sources because reading schema.org nodes is most
//! of what extraction does, and none of it concerns microdata or meta tags.
//!
//! A node may stand for another by its `@id` alone (`"offers": {"@id": "#offer"}`, also in
//! `hasVariant`, `priceSpecification` and `mainEntity`): such a reference is replaced by the
//! node elsewhere on the page that has this `@id` (relative ids resolved against the page
//! URL) and says more than its id. A reference is replaced once, by a node that is not
//! itself a reference, so references cannot chain or loop; offers nested in offers are
//! read [`MAX_OFFER_NESTING`] levels deep.
//!
//! A `ProductGroup`'s variants are read through the group: when a page's `@graph` lists the
//! group and its variants side by side, the variants are not candidates for the page's
//! product themselves. An `Offer` with neither `price` nor `priceSpecification` but a
//! `lowPrice` is read as the `AggregateOffer` it is (pages omit or mistype `@type`).

use std::collections::HashMap;

use serde_json::Value;
use url::Url;

use super::choice::{blank_offer, is_page_url, selling_specification, Offer, Role, Specification};
use super::{decode_and_collapse, machine_offer, Availability, Found, PRODUCT_TYPES};
use crate::price::lenient_json::parse_lenient;

/// How deep the top-level walk goes into arrays and `@graph`s; real pages use two levels.
const MAX_GRAPH_DEPTH: usize = 4;
/// Largest JSON-LD script read, and most JSON-LD read from one page.
const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
const MAX_JSON_LD_BYTES: usize = 2 * 1024 * 1024;
/// Bounds the offers read from one product (marketplaces list a few hundred at most).
const MAX_OFFERS: usize = 1000;
/// How deep offers nest in offers (an `AggregateOffer`'s member offers: one level).
const MAX_OFFER_NESTING: usize = 3;
/// How deep the walk that indexes `@id`s goes, and how many objects and arrays it visits
/// (the JSON-LD budget already bounds them; this keeps the walk's cost plain).
const MAX_INDEX_DEPTH: usize = 12;
const MAX_INDEXED: usize = 200_000;

/// The page's nodes that say more than their `@id`, by id.
struct Index<'v> {
    by_id: HashMap<String, &'v Value>,
    base: &'v Url,
}

impl<'v> Index<'v> {
    fn build(docs: &'v [Value], base: &'v Url) -> Index<'v> {
        let mut by_id = HashMap::new();
        let container = |v: &&Value| v.is_array() || v.is_object();
        // Walked depth-first from the first script on, so when two nodes share an id the one
        // in the earlier script (or earlier list entry) is kept.
        let mut stack: Vec<(&Value, usize)> = docs.iter().rev().map(|d| (d, 0)).collect();
        let mut seen = 0;
        while let Some((v, depth)) = stack.pop() {
            seen += 1;
            if seen > MAX_INDEXED || depth > MAX_INDEX_DEPTH {
                continue;
            }
            match v {
                Value::Array(items) => {
                    stack.extend(items.iter().rev().filter(container).map(|i| (i, depth + 1)))
                }
                Value::Object(map) => {
                    if !is_reference(v) {
                        if let Some(id) = map.get("@id").and_then(Value::as_str) {
                            by_id.entry(absolute(id, base)).or_insert(v);
                        }
                    }
                    let children: Vec<&Value> = map.values().filter(container).collect();
                    stack.extend(children.into_iter().rev().map(|i| (i, depth + 1)));
                }
                _ => {}
            }
        }
        Index { by_id, base }
    }

    /// The node a reference stands for, or the node itself.
    fn resolve(&self, v: &'v Value) -> &'v Value {
        if !is_reference(v) {
            return v;
        }
        v.get("@id")
            .and_then(Value::as_str)
            .and_then(|id| self.by_id.get(&absolute(id, self.base)).copied())
            .unwrap_or(v)
    }

    fn list(&self, v: Option<&'v Value>) -> Vec<&'v Value> {
        as_list(v).into_iter().map(|n| self.resolve(n)).collect()
    }
}

/// An object that only names a node: `@id` and nothing but other `@` keywords.
fn is_reference(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.get("@id").is_some_and(Value::is_string) && m.keys().all(|k| k.starts_with('@'))
    })
}

fn absolute(id: &str, base: &Url) -> String {
    base.join(id.trim())
        .map_or_else(|_| id.trim().to_owned(), String::from)
}

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
    let index = Index::build(&docs, url);
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
            let main = index.resolve(main);
            if type_is(main, PRODUCT_TYPES) {
                products.push(main);
            }
            let id = match main {
                Value::String(id) => Some(id.as_str()),
                _ => main.get("@id").and_then(Value::as_str),
            };
            if let Some(id) = id {
                main_ids.push(absolute(id, url));
            }
        }
    }
    let groups_with_variants = || {
        products
            .iter()
            .filter(|p| type_is(p, &["ProductGroup"]) && !as_list(p.get("hasVariant")).is_empty())
    };
    let variant_ids: Vec<String> = groups_with_variants()
        .flat_map(|g| as_list(g.get("hasVariant")))
        .filter_map(|v| v.get("@id").and_then(Value::as_str))
        .map(|id| absolute(id, url))
        .collect();
    // Only a group that lists variants can stand for them; one that does not leaves the
    // page's own Product to be read.
    if groups_with_variants().next().is_some() {
        products.retain(|p| {
            type_is(p, &["ProductGroup"])
                || !(p.get("isVariantOf").is_some()
                    || p.get("@id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| variant_ids.contains(&absolute(id, url))))
        });
    }
    let main = products
        .iter()
        .find(|p| {
            str_of(p.get("url")).is_some_and(|u| same_page(&u, url))
                || p.get("@id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| main_ids.contains(&absolute(id, url)))
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
    let read = Reader {
        index: &index,
        host,
        page: url,
    };
    read.offers_of(product, None, 0, &mut found.offers);
    for variant in index.list(product.get("hasVariant")) {
        read.offers_of(variant, Some(variant), 0, &mut found.offers);
    }
    found.offers.truncate(MAX_OFFERS);
    if found.offers.is_empty() {
        found.note = Some("the JSON-LD Product has no offers".to_owned());
    } else if found.offers.iter().all(|o| o.price.is_none() && !o.zero) {
        found.note = Some("the JSON-LD offers state no price".to_owned());
    }
    found
}

/// What reading offers needs besides the node: the `@id` index, the host (for the
/// currency) and the page URL (for the variant the page is).
struct Reader<'r, 'v> {
    index: &'r Index<'v>,
    host: &'r str,
    page: &'r Url,
}

impl<'v> Reader<'_, 'v> {
    fn offers_of(
        &self,
        product: &'v Value,
        variant: Option<&'v Value>,
        depth: usize,
        out: &mut Vec<Offer>,
    ) {
        if depth > MAX_OFFER_NESTING {
            return;
        }
        let host = self.host;
        let variant_sku = variant.and_then(|v| str_of(v.get("sku")));
        let variant_url = variant.and_then(|v| str_of(v.get("url")));
        let at_page_url = variant_url
            .as_deref()
            .is_some_and(|u| is_page_url(u, self.page));
        for offer in self.index.list(product.get("offers")) {
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
            let mark = |mut o: Offer| {
                o.variant = variant.is_some();
                o.at_page_url = at_page_url;
                o
            };
            let untyped_aggregate = offer.get("price").is_none()
                && offer.get("priceSpecification").is_none()
                && offer.get("lowPrice").is_some();
            if type_is(offer, &["AggregateOffer"]) || untyped_aggregate {
                let low = str_of(offer.get("lowPrice")).or_else(|| str_of(offer.get("price")));
                let high = str_of(offer.get("highPrice"));
                if let Some(low) = &low {
                    let mut o = machine_offer(
                        low,
                        code.as_deref(),
                        host,
                        availability,
                        describe("AggregateOffer lowPrice"),
                    );
                    o.role = Role::AggregateLow;
                    out.push(mark(o));
                }
                // `highPrice` equal to `lowPrice` is one price, not a range.
                if let Some(high) = high.filter(|h| Some(h) != low.as_ref()) {
                    let mut o = machine_offer(
                        &high,
                        code.as_deref(),
                        host,
                        availability,
                        describe("AggregateOffer highPrice"),
                    );
                    o.role = Role::AggregateHigh;
                    out.push(mark(o));
                }
                self.offers_of(offer, variant, depth + 1, out);
                continue;
            }
            let (value, code) = match str_of(offer.get("price")) {
                Some(p) => (Some(p), code),
                None => self
                    .specification_price(offer)
                    .map_or((None, code.clone()), |(p, c)| (Some(p), c.or(code))),
            };
            let mut o = match value {
                Some(v) => {
                    machine_offer(&v, code.as_deref(), host, availability, describe("Offer"))
                }
                None => blank_offer(availability, describe("Offer")),
            };
            o.sku = sku;
            o.url = url;
            out.push(mark(o));
        }
    }

    /// The `priceSpecification` that is the selling price (`choice::selling_specification`),
    /// with its currency.
    fn specification_price(&self, offer: &'v Value) -> Option<(String, Option<String>)> {
        let specs: Vec<Specification> = self
            .index
            .list(offer.get("priceSpecification"))
            .into_iter()
            .map(|s| self.specification(s))
            .collect();
        let chosen = specs.get(selling_specification(&specs)?)?;
        Some((chosen.price.clone()?, chosen.currency.clone()))
    }

    fn specification(&self, s: &'v Value) -> Specification {
        let reference = s.get("referenceQuantity").map(|r| self.index.resolve(r));
        let unit_of = |n: Option<&Value>| {
            n.and_then(|n| str_of(n.get("unitCode")).or_else(|| str_of(n.get("unitText"))))
        };
        let eligible = s.get("eligibleQuantity").map(|q| self.index.resolve(q));
        Specification {
            price: str_of(s.get("price")).or_else(|| str_of(s.get("minPrice"))),
            currency: str_of(s.get("priceCurrency")),
            price_type: str_of(s.get("priceType")),
            unit: unit_of(reference).or_else(|| unit_of(Some(s))),
            has_reference_quantity: reference.is_some(),
            reference_value: reference.and_then(|r| str_of(r.get("value"))),
            min_quantity: eligible
                .and_then(|q| str_of(q.get("minValue")).or_else(|| str_of(q.get("value")))),
            vat_included: s.get("valueAddedTaxIncluded").and_then(|v| match v {
                Value::Bool(b) => Some(*b),
                Value::String(t) => t.trim().parse().ok(),
                _ => None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{json_ld, url};
    use super::*;
    use crate::price::extract::{from_facts, ExtractError};
    use crate::price::html::PageFacts;

    fn amount(page: &str, script: &str) -> String {
        let r = json_ld(page, script);
        match r.price() {
            Ok((a, c)) => format!("{a} {c}"),
            Err(e) => e.code().to_owned(),
        }
    }

    #[test]
    fn price_specification_gives_the_selling_price_of_the_product() {
        let offer = |specs: &str| {
            format!(
                r#"{{"@type":"Product","name":"P","offers":{{"@type":"Offer","priceSpecification":{specs}}}}}"#
            )
        };
        let page = "https://s.example/p";
        // A per-kilogram reference price written first, the product's price second.
        let per_kg = offer(
            r#"[{"@type":"UnitPriceSpecification","price":"13.27","priceCurrency":"EUR",
               "referenceQuantity":{"@type":"QuantitativeValue","value":"1","unitCode":"KGM"}},
              {"@type":"UnitPriceSpecification","price":"5.97","priceCurrency":"EUR"}]"#,
        );
        assert_eq!(amount(page, &per_kg), "5.97 EUR");
        // A unit code without a reference quantity is still per unit; a piece is not.
        let per_litre = offer(
            r#"[{"@type":"UnitPriceSpecification","price":"2.38","priceCurrency":"CHF","unitCode":"LTR"},
              {"@type":"UnitPriceSpecification","price":"1.79","priceCurrency":"CHF","unitCode":"C62"}]"#,
        );
        assert_eq!(amount(page, &per_litre), "1.79 CHF");
        // The list price first, the sale price second; then the order reversed.
        let list_sale = offer(
            r#"[{"@type":"UnitPriceSpecification","price":"99.00","priceCurrency":"EUR","priceType":"https://schema.org/ListPrice"},
              {"@type":"UnitPriceSpecification","price":"79.00","priceCurrency":"EUR","priceType":"https://schema.org/SalePrice"}]"#,
        );
        assert_eq!(amount(page, &list_sale), "79.00 EUR");
        let plain_then_sale = offer(
            r#"[{"@type":"PriceSpecification","price":"89.00","priceCurrency":"EUR"},
              {"@type":"PriceSpecification","price":"79.00","priceCurrency":"EUR","priceType":"SalePrice"}]"#,
        );
        assert_eq!(amount(page, &plain_then_sale), "79.00 EUR");
        // Net and gross: the price with VAT; a bulk price from 10 pieces is not the price.
        let net_gross = offer(
            r#"[{"@type":"PriceSpecification","price":"84.03","priceCurrency":"EUR","valueAddedTaxIncluded":false},
              {"@type":"PriceSpecification","price":"100.00","priceCurrency":"EUR","valueAddedTaxIncluded":"true"},
              {"@type":"PriceSpecification","price":"90.00","priceCurrency":"EUR",
               "eligibleQuantity":{"@type":"QuantitativeValue","minValue":10}}]"#,
        );
        assert_eq!(amount(page, &net_gross), "100.00 EUR");
        // A single object, currency on the offer; only reference prices: no price.
        let single = r#"{"@type":"Product","name":"P","offers":{"@type":"Offer","priceCurrency":"GBP",
            "priceSpecification":{"@type":"PriceSpecification","price":12.5}}}"#;
        assert_eq!(amount(page, single), "12.50 GBP");
        let only_reference = offer(
            r#"{"@type":"UnitPriceSpecification","price":"13.27","priceCurrency":"EUR","unitCode":"KGM"}"#,
        );
        assert_eq!(amount(page, &only_reference), "no_price");
        let only_list = offer(
            r#"{"@type":"UnitPriceSpecification","price":"99","priceCurrency":"EUR","priceType":"SRP"}"#,
        );
        assert_eq!(amount(page, &only_list), "no_price");
    }

    #[test]
    fn offers_given_by_id_are_read_from_the_graph() {
        let page = "https://s.example/p/kettle";
        let graph = r##"{"@context":"https://schema.org","@graph":[
            {"@type":"WebPage","@id":"https://s.example/p/kettle#webpage","mainEntity":{"@id":"#product"}},
            {"@type":"Product","@id":"https://s.example/p/kettle#product","name":"Kettle",
             "offers":[{"@id":"#offer-1"},{"@id":"https://s.example/p/kettle#offer-2"}]},
            {"@type":"Offer","@id":"#offer-1","price":"49.00","priceCurrency":"EUR","availability":"OutOfStock"},
            {"@type":"Offer","@id":"#offer-2","price":"52.00","priceCurrency":"EUR","availability":"InStock"}]}"##;
        let r = json_ld(page, graph);
        assert_eq!(r.amount.unwrap().to_string(), "52.00");
        assert_eq!(r.candidates.len(), 2);
        assert_eq!(r.title.as_deref(), Some("Kettle"));
        // The WebPage names its product by reference; another product comes first.
        let main = r##"{"@graph":[
            {"@type":"Product","@id":"#strap","name":"Strap","offers":{"price":"9.00","priceCurrency":"EUR"}},
            {"@type":"WebPage","mainEntity":{"@id":"https://s.example/p/kettle#product"}},
            {"@type":"Product","@id":"#product","name":"Kettle","offers":{"price":"49.00","priceCurrency":"EUR"}}]}"##;
        assert_eq!(json_ld(page, main).title.as_deref(), Some("Kettle"));
        // One reference, whose node names its price in a referenced specification.
        let one = r##"[{"@type":"Product","name":"Kettle","offers":{"@id":"#o"}},
            {"@type":"Offer","@id":"#o","priceSpecification":{"@id":"#ps"}},
            {"@type":"UnitPriceSpecification","@id":"#ps","price":"19.90","priceCurrency":"CHF"}]"##;
        assert_eq!(amount(page, one), "19.90 CHF");
        // A reference to nothing, to itself or in a loop ends, with no price.
        for looped in [
            r##"{"@type":"Product","name":"K","offers":{"@id":"#missing"}}"##,
            r##"{"@graph":[{"@type":"Product","name":"K","offers":{"@id":"#a"}},
                {"@type":"AggregateOffer","@id":"#a","offers":{"@id":"#a"}}]}"##,
            r##"{"@graph":[{"@type":"Product","name":"K","offers":{"@id":"#a"}},
                {"@type":"AggregateOffer","@id":"#a","offers":{"@id":"#b"}},
                {"@type":"AggregateOffer","@id":"#b","offers":{"@id":"#a"}}]}"##,
        ] {
            assert_eq!(amount(page, looped), "no_price", "{looped}");
        }
    }

    #[test]
    fn the_variant_whose_url_is_the_page_is_chosen() {
        let group = r#"{"@type":"ProductGroup","name":"Merino Tee","productGroupID":"MT",
            "variesBy":"https://schema.org/color","hasVariant":[
            {"@type":"Product","sku":"MT-BLK","url":"https://s.example/tee/black",
             "offers":{"@type":"Offer","price":"39.00","priceCurrency":"EUR","availability":"InStock"}},
            {"@type":"Product","sku":"MT-OLV","url":"/tee/olive",
             "offers":{"@type":"Offer","price":"45.00","priceCurrency":"EUR","availability":"InStock"}},
            {"@type":"Product","sku":"MT-SND","url":"https://s.example/tee?colour=sand",
             "offers":{"@type":"Offer","price":"42.00","priceCurrency":"EUR","availability":"InStock"}}]}"#;
        let pick = |u: &str| json_ld(u, group).amount.unwrap().to_string();
        assert_eq!(
            pick("https://s.example/tee/olive?utm_source=news&gclid=x"),
            "45.00"
        );
        assert_eq!(pick("https://s.example/tee/olive#reviews"), "45.00");
        assert_eq!(pick("https://s.example/tee?colour=sand&fbclid=y"), "42.00");
        assert_eq!(
            pick("https://s.example/tee/red"),
            "39.00",
            "no match: lowest in stock"
        );
        assert_eq!(pick("https://s.example/tee?colour=blue"), "39.00");
        // Every variant at the page's URL says nothing about which one it is.
        let shared = group
            .replace("https://s.example/tee/black", "/tee")
            .replace("/tee/olive", "/tee")
            .replace("https://s.example/tee?colour=sand", "/tee");
        assert_eq!(
            json_ld("https://s.example/tee", &shared)
                .amount
                .unwrap()
                .to_string(),
            "39.00"
        );
        // Variants listed beside the group in a graph are read through the group.
        let graph = r##"{"@graph":[
            {"@type":"Product","@id":"#v1","name":"Tee black","url":"/tee/black","isVariantOf":{"@id":"#g"},
             "offers":{"@type":"Offer","price":"39.00","priceCurrency":"EUR"}},
            {"@type":"Product","@id":"#v2","name":"Tee olive","url":"/tee/olive","isVariantOf":{"@id":"#g"},
             "offers":{"@type":"Offer","price":"45.00","priceCurrency":"EUR"}},
            {"@type":"ProductGroup","@id":"#g","name":"Merino Tee","hasVariant":[{"@id":"#v1"},{"@id":"#v2"}]}]}"##;
        let r = json_ld("https://s.example/tee/olive?utm_medium=cpc", graph);
        assert_eq!(r.amount.unwrap().to_string(), "45.00");
        assert_eq!(r.title.as_deref(), Some("Merino Tee"));
        // A group that lists no variants does not hide the page's own variant Product.
        let bare_group = r##"{"@graph":[
            {"@type":"ProductGroup","@id":"#g","name":"Merino Tee","productGroupID":"MT"},
            {"@type":"Product","@id":"#v2","name":"Tee olive","url":"/tee/olive","isVariantOf":{"@id":"#g"},
             "offers":{"@type":"Offer","price":"45.00","priceCurrency":"EUR"}}]}"##;
        let r = json_ld("https://s.example/tee/olive", bare_group);
        assert_eq!(r.amount.unwrap().to_string(), "45.00");
    }

    #[test]
    fn aggregate_offer_low_price_alone_is_the_price() {
        let page = "https://s.example/p";
        for offers in [
            r#"{"@type":"AggregateOffer","lowPrice":"24.90","priceCurrency":"EUR","offerCount":1}"#,
            r#"{"@type":"AggregateOffer","lowPrice":"24.90","highPrice":"24.90","priceCurrency":"EUR"}"#,
            // `@type` missing or written as Offer.
            r#"{"lowPrice":"24.90","priceCurrency":"EUR","offerCount":"1"}"#,
            r#"{"@type":"Offer","lowPrice":"24.90","priceCurrency":"EUR"}"#,
        ] {
            let r = json_ld(
                page,
                &format!(r#"{{"@type":"Product","name":"P","offers":{offers}}}"#),
            );
            assert_eq!(r.amount.unwrap().to_string(), "24.90", "{offers}");
            assert_eq!(r.candidates.len(), 1, "{offers}");
        }
        // A real range keeps its high price as a candidate.
        let range = r#"{"@type":"Product","name":"P","offers":{"lowPrice":"24.90","highPrice":"31.00",
            "priceCurrency":"EUR","offerCount":4}}"#;
        let r = json_ld(page, range);
        assert_eq!(r.amount.unwrap().to_string(), "24.90");
        assert_eq!(r.candidates.len(), 2);
    }

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
