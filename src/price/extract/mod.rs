//! From a fetched body to one price: which sources are read, in which order, and which
//! price wins when a page offers several. Pure: the body comes in, a [`Report`] goes out.
//!
//! Sources, from the most to the least trusted: JSON-LD, microdata, meta tags, then a
//! per-site CSS rule, or a JSON API rule for product APIs. The first source that yields a
//! positive price for the product decides amount, currency, method and availability; the
//! prices the other structured sources give for the same product are kept as candidates.
//!
//! Which of several prices for one product wins is decided in `choice`; how a report is
//! shown by `probe` is in `report`.
//!
//! A price of zero is never a price ("price on request" pages write 0.00), and no price is
//! an error that says what was looked for.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::currency::for_tld;
use super::decode::decode_html;
use super::html::{scan, MetaKind, MicroItem, MicroValue, PageFacts};
use super::lenient_json::{decode_entities, parse_lenient};
use super::rules::{JsonApiRule, Rules};
use super::{parse_price, Currency, CurrencyFound, Hints, PriceError};

mod choice;
mod report;

use choice::{blank_offer, candidate, choose, from_offers, settle, with_minor_digits, Offer, Role};
pub use report::ReportJson;

/// Where a price came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    JsonLd,
    Microdata,
    Meta,
    SiteRule,
    JsonApi,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    OutOfStock,
    Preorder,
    #[default]
    Unknown,
}

impl Availability {
    /// schema.org values (`https://schema.org/InStock`, `InStock`) and the Facebook and
    /// Pinterest spellings meta tags use (`in stock`, `instock`).
    pub fn from_text(text: &str) -> Availability {
        let t = text.trim();
        let name = t.rsplit(['/', ':']).next().unwrap_or(t);
        let key: String = name
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "instock" | "limitedavailability" | "onlineonly" | "instoreonly" | "available" => {
                Availability::InStock
            }
            "outofstock" | "soldout" | "discontinued" | "unavailable" => Availability::OutOfStock,
            "preorder" | "presale" | "backorder" => Availability::Preorder,
            _ => Availability::Unknown,
        }
    }
}

/// Why a page gave no usable price.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("no price found: {0}")]
    NoPrice(String),
    #[error(
        "the only price the page gives is 0 (usually \"price on request\"), which is not a price"
    )]
    ZeroPrice,
    #[error("the price is {amount} but the page does not say in which currency{}", list_candidates(.candidates))]
    AmbiguousCurrency {
        amount: Decimal,
        candidates: Vec<Currency>,
    },
    #[error("the page could not be read: {0}")]
    Unreadable(String),
}

fn list_candidates(c: &[Currency]) -> String {
    if c.is_empty() {
        String::new()
    } else {
        let codes: Vec<&str> = c.iter().map(Currency::as_str).collect();
        format!(" (it could be {})", codes.join(", "))
    }
}

impl ExtractError {
    /// A stable name for scripts and fixtures.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::NoPrice(_) => "no_price",
            ExtractError::ZeroPrice => "zero_price",
            ExtractError::AmbiguousCurrency { .. } => "ambiguous_currency",
            ExtractError::Unreadable(_) => "unreadable",
        }
    }
}

/// One distinct price the page gives for the product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Option<String>,
    pub method: Method,
    pub availability: Availability,
    /// Which markup gave it, for an operator deciding whether the choice was right.
    pub source: String,
}

/// What extraction found on one page: a price, or the reason there is none, and
/// everything `probe` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub title: Option<String>,
    /// Known whenever a positive amount was found, even when its currency is not.
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    pub availability: Availability,
    pub method: Option<Method>,
    /// Every distinct price for this product, the chosen one first; empty or one entry
    /// when the page is unambiguous.
    pub candidates: Vec<Candidate>,
    pub error: Option<ExtractError>,
}

impl Report {
    fn failed(error: ExtractError) -> Report {
        Report {
            title: None,
            amount: None,
            currency: None,
            availability: Availability::Unknown,
            method: None,
            candidates: Vec::new(),
            error: Some(error),
        }
    }

    /// The price and its currency, or why there is none.
    pub fn price(&self) -> Result<(Decimal, Currency), ExtractError> {
        match (&self.error, self.amount, self.currency) {
            (None, Some(a), Some(c)) => Ok((a, c)),
            (Some(e), _, _) => Err(e.clone()),
            _ => Err(ExtractError::NoPrice("no amount".to_owned())),
        }
    }
}

/// Reads prices from bodies. Cheap to share: it holds only the compiled rules.
pub struct Extractor {
    rules: Rules,
    max_bytes: usize,
}

impl Extractor {
    pub fn new(rules: Rules, max_bytes: usize) -> Extractor {
        Extractor { rules, max_bytes }
    }

    /// Extracts the price of the product at `url` from its body.
    pub fn extract(&self, url: &Url, body: &[u8], content_type: Option<&str>) -> Report {
        if body.len() > self.max_bytes {
            return Report::failed(ExtractError::Unreadable(format!(
                "the body is {} bytes, more than the {} allowed",
                body.len(),
                self.max_bytes
            )));
        }
        if let Some((_, rule)) = self.rules.apis.iter().find(|(m, _)| m.matches(url)) {
            return extract_json_api(url, body, rule);
        }
        let (text, _) = decode_html(body, content_type);
        let site = self.rules.sites.iter().find(|(m, _, _)| m.matches(url));
        // The body's size was checked above; decoding a legacy charset may make it up to
        // three times longer in UTF-8 (one byte to U+FFFD or a CJK character).
        let decoded_limit = self.max_bytes.saturating_mul(3);
        let facts = match scan(&text, site.map(|(_, s, _)| s), decoded_limit) {
            Ok(f) => f,
            Err(e) => return Report::failed(ExtractError::Unreadable(e.to_string())),
        };
        from_facts(url, &facts, site.map(|(_, _, desc)| desc.as_str()))
    }
}

/// The offers one source gives for the product, and its name for the product.
#[derive(Default, Debug)]
struct Found {
    title: Option<String>,
    offers: Vec<Offer>,
    /// What this source saw, for the "no price" message.
    note: Option<String>,
}

/// Applies the source order and the choice rule to one page's facts.
pub fn from_facts(url: &Url, facts: &PageFacts, site_rule: Option<&str>) -> Report {
    let host = url.host_str().unwrap_or("");
    let variant = url
        .query_pairs()
        .find(|(k, _)| k == "variant")
        .map(|(_, v)| v.into_owned());

    let json_ld = from_json_ld(url, &facts.json_ld, host);
    let micro = from_microdata(&facts.items, host);
    let meta = from_meta(facts, host);
    let mut sources = vec![
        (Method::JsonLd, json_ld),
        (Method::Microdata, micro),
        (Method::Meta, meta),
    ];
    let structured_priced = sources
        .iter()
        .any(|(_, f)| f.offers.iter().any(|o| o.price.is_some()));
    if !structured_priced {
        if let Some(text) = &facts.site_rule {
            let mut found = Found::default();
            found.offers.push(text_offer(
                text,
                None,
                host,
                Availability::Unknown,
                format!("site rule {}", site_rule.unwrap_or("")),
            ));
            sources.push((Method::SiteRule, found));
        }
    }

    let fallback_title = || {
        sources
            .iter()
            .find_map(|(_, f)| f.title.clone())
            .or_else(|| meta_content(facts, "og:title").map(clean_text))
            .or_else(|| facts.h1.clone())
            .or_else(|| facts.title.clone())
    };

    let decided = sources.iter().find_map(|(method, found)| {
        choose(&found.offers, variant.as_deref()).map(|i| (*method, found, i))
    });
    let Some((method, found, index)) = decided else {
        let any_offer = sources.iter().flat_map(|(_, f)| &f.offers).next();
        let zero = sources.iter().flat_map(|(_, f)| &f.offers).any(|o| o.zero);
        let error = if zero {
            ExtractError::ZeroPrice
        } else {
            ExtractError::NoPrice(looked_for(&sources, site_rule))
        };
        return Report {
            title: fallback_title(),
            amount: None,
            currency: None,
            availability: any_offer.map_or(Availability::Unknown, |o| o.availability),
            method: None,
            candidates: Vec::new(),
            error: Some(error),
        };
    };

    let chosen = &found.offers[index];
    let mut candidates = vec![candidate(chosen, method)];
    for (m, f) in &sources {
        for o in &f.offers {
            if let Some((amount, _)) = &o.price {
                if !candidates.iter().any(|c| c.amount == *amount) {
                    candidates.push(candidate(o, *m));
                }
            }
        }
    }
    let Some((amount, found_currency)) = chosen.price.clone() else {
        return Report::failed(ExtractError::NoPrice(looked_for(&sources, site_rule)));
    };
    let (currency, error) = settle(amount, found_currency);
    // An AggregateOffer often states availability only on its member offers.
    let availability = match chosen.availability {
        Availability::Unknown => found
            .offers
            .iter()
            .filter(|o| o.price.as_ref().is_some_and(|p| p.0 == amount))
            .map(|o| o.availability)
            .find(|a| *a != Availability::Unknown)
            .unwrap_or(Availability::Unknown),
        known => known,
    };
    Report {
        title: found.title.clone().or_else(fallback_title),
        amount: Some(with_minor_digits(amount, currency)),
        currency,
        availability,
        method: Some(method),
        candidates,
        error,
    }
}

fn looked_for(sources: &[(Method, Found)], site_rule: Option<&str>) -> String {
    let mut parts = vec![
        "JSON-LD Product offers".to_owned(),
        "microdata Product/Offer prices".to_owned(),
        "product:price / og:price / itemprop meta tags".to_owned(),
    ];
    match site_rule {
        Some(r) => parts.push(format!("the site rule {r}")),
        None => parts.push("no site rule is configured for this host".to_owned()),
    }
    let mut msg = format!("looked for {}", parts.join(", "));
    let notes: Vec<&str> = sources
        .iter()
        .filter_map(|(_, f)| f.note.as_deref())
        .collect();
    if !notes.is_empty() {
        msg.push_str("; ");
        msg.push_str(&notes.join("; "));
    }
    msg
}

/// A price written for machines (JSON-LD, `content` attributes, APIs): schema.org asks for
/// a plain decimal with a dot, so `1.299` there is one point two nine nine; anything else
/// is read like visible text.
fn machine_offer(
    value: &str,
    code: Option<&str>,
    host: &str,
    availability: Availability,
    source: String,
) -> Offer {
    let v = value.trim();
    let plain = !v.is_empty()
        && v.bytes().filter(|&b| b == b'.').count() <= 1
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && v.as_bytes()[0].is_ascii_digit();
    if plain {
        if let Ok(amount) = Decimal::from_str(v) {
            let mut o = blank_offer(availability, source);
            if amount > Decimal::ZERO {
                let currency = code
                    .and_then(Currency::parse)
                    .or_else(|| for_tld(host))
                    .map_or(CurrencyFound::Unstated, CurrencyFound::Known);
                o.price = Some((amount, currency));
            } else {
                o.zero = true;
            }
            return o;
        }
    }
    text_offer(v, code, host, availability, source)
}

/// A price written for people: locale separators, signs, words around it.
fn text_offer(
    text: &str,
    code: Option<&str>,
    host: &str,
    availability: Availability,
    source: String,
) -> Offer {
    let hints = Hints {
        currency: code.and_then(Currency::parse),
        locale: None,
        host: Some(host),
    };
    let mut o = blank_offer(availability, source);
    match parse_price(text, &hints) {
        Ok(p) => o.price = Some((p.amount, p.currency)),
        Err(PriceError::NotPositive) => o.zero = true,
        Err(_) => {}
    }
    o
}

/// Whitespace runs to one space, trimmed; entities decoded.
fn clean_text(s: &str) -> String {
    let decoded = if s.contains('&') {
        decode_entities(s)
    } else {
        s.to_owned()
    };
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- JSON-LD

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

const PRODUCT_TYPES: &[&str] = &[
    "Product",
    "ProductGroup",
    "IndividualProduct",
    "ProductModel",
    "SomeProducts",
    "Vehicle",
    "Car",
    "Book",
];

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

fn str_of(v: Option<&Value>) -> Option<String> {
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

fn from_json_ld(url: &Url, scripts: &[String], host: &str) -> Found {
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
    found.title = str_of(product.get("name")).map(|n| clean_text(&n));
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

// ---------------------------------------------------------------- microdata

fn item_type_is(item: &MicroItem, names: &[&str]) -> bool {
    item.types.iter().any(|t| {
        let last = t.rsplit(['/', ':', '#']).next().unwrap_or(t);
        names.iter().any(|n| last.eq_ignore_ascii_case(n))
    })
}

fn prop<'a>(item: &'a MicroItem, name: &str) -> Option<&'a str> {
    item.props.iter().find_map(|(n, v)| match v {
        MicroValue::Text(t) if n == name => Some(t.as_str()),
        _ => None,
    })
}

fn from_microdata(items: &[MicroItem], host: &str) -> Found {
    let mut found = Found::default();
    let main = items
        .iter()
        .position(|i| i.parent.is_none() && item_type_is(i, PRODUCT_TYPES));
    let Some(main) = main else {
        return found;
    };
    let product = &items[main];
    found.title = prop(product, "name").map(clean_text);
    let mut offer_items: Vec<&MicroItem> = vec![product];
    for (name, value) in &product.props {
        if let (true, MicroValue::Item(i)) = (name == "offers", value) {
            if let Some(item) = items.get(*i) {
                offer_items.push(item);
            }
        }
    }
    for item in offer_items {
        let availability =
            prop(item, "availability").map_or(Availability::Unknown, Availability::from_text);
        let code = prop(item, "priceCurrency");
        let sku = prop(item, "sku").map(str::to_owned);
        let url = prop(item, "url").map(str::to_owned);
        let aggregate = item_type_is(item, &["AggregateOffer"]);
        let price = if aggregate {
            prop(item, "lowPrice").or_else(|| prop(item, "price"))
        } else {
            prop(item, "price")
        };
        let what = if std::ptr::eq(item, product) {
            "microdata Product price"
        } else {
            "microdata Offer"
        };
        let mut o = match price {
            Some(p) => text_offer(p, code, host, availability, what.to_owned()),
            // An offer without a price still says whether the product is in stock.
            None if !std::ptr::eq(item, product) => blank_offer(availability, what.to_owned()),
            None => continue,
        };
        o.sku = sku;
        o.url = url;
        if aggregate {
            o.role = Role::AggregateLow;
        }
        found.offers.push(o);
        if let Some(high) = prop(item, "highPrice").filter(|_| aggregate) {
            let mut h = text_offer(high, code, host, availability, "microdata highPrice".into());
            h.role = Role::AggregateHigh;
            found.offers.push(h);
        }
    }
    if found.offers.iter().all(|o| o.price.is_none() && !o.zero) {
        found.note = Some("the microdata Product states no readable price".to_owned());
    }
    found
}

// ---------------------------------------------------------------- meta tags

fn meta_content<'a>(facts: &'a PageFacts, key: &str) -> Option<&'a str> {
    facts
        .metas
        .iter()
        .find(|m| m.kind != MetaKind::Itemprop && m.key == key && !m.content.is_empty())
        .map(|m| m.content.as_str())
}

fn itemprop_meta<'a>(facts: &'a PageFacts, key: &str) -> Option<&'a str> {
    facts
        .metas
        .iter()
        .find(|m| m.kind == MetaKind::Itemprop && !m.in_item && m.key == key)
        .map(|m| m.content.as_str())
}

fn from_meta(facts: &PageFacts, host: &str) -> Found {
    let mut found = Found::default();
    type Get = for<'a> fn(&'a PageFacts, &str) -> Option<&'a str>;
    let sets: [(Get, &str, [&str; 3]); 3] = [
        (
            meta_content,
            "meta product:price:amount",
            [
                "product:price:amount",
                "product:price:currency",
                "product:availability",
            ],
        ),
        (
            meta_content,
            "meta og:price:amount",
            ["og:price:amount", "og:price:currency", "og:availability"],
        ),
        (
            itemprop_meta,
            "meta itemprop=price",
            ["price", "pricecurrency", "availability"],
        ),
    ];
    for (get, label, [amount_key, currency_key, availability_key]) in sets {
        if let Some(amount) = get(facts, amount_key) {
            let availability =
                get(facts, availability_key).map_or(Availability::Unknown, Availability::from_text);
            found.offers.push(machine_offer(
                amount,
                get(facts, currency_key),
                host,
                availability,
                label.to_owned(),
            ));
        }
    }
    found
}

// ---------------------------------------------------------------- JSON APIs

fn extract_json_api(url: &Url, body: &[u8], rule: &JsonApiRule) -> Report {
    let text = String::from_utf8_lossy(body);
    let Some(doc) = parse_lenient(&text) else {
        return Report::failed(ExtractError::Unreadable(
            "a JSON API rule matches this URL but the body is not JSON".to_owned(),
        ));
    };
    let title = ["/title", "/name", "/product/title", "/product/name"]
        .iter()
        .find_map(|p| doc.pointer(p).and_then(Value::as_str))
        .map(clean_text);
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
    let code = rule
        .currency_pointer
        .as_deref()
        .and_then(|p| str_of(doc.pointer(p)))
        .or_else(|| rule.currency.map(|c| c.to_string()));
    let mut offer = machine_offer(
        &raw,
        code.as_deref(),
        host,
        Availability::Unknown,
        format!("JSON {}", rule.price_pointer),
    );
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
    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    pub(super) fn json_ld(page_url: &str, script: &str) -> Report {
        let facts = PageFacts {
            json_ld: vec![script.to_owned()],
            ..PageFacts::default()
        };
        from_facts(&url(page_url), &facts, None)
    }

    #[test]
    fn availability_spellings() {
        for (text, want) in [
            ("https://schema.org/InStock", Availability::InStock),
            (
                "http://schema.org/LimitedAvailability",
                Availability::InStock,
            ),
            ("in stock", Availability::InStock),
            ("schema:SoldOut", Availability::OutOfStock),
            ("Discontinued", Availability::OutOfStock),
            ("PreOrder", Availability::Preorder),
            ("", Availability::Unknown),
            ("whatever", Availability::Unknown),
        ] {
            assert_eq!(Availability::from_text(text), want, "{text}");
        }
    }

    #[test]
    fn machine_prices_are_schema_org_decimals_and_text_is_read_as_shown() {
        let o = machine_offer(
            "1.299",
            Some("EUR"),
            "shop.de",
            Availability::Unknown,
            String::new(),
        );
        assert_eq!(o.price.unwrap().0, Decimal::from_str("1.299").unwrap());
        let o = machine_offer(
            "1.299,00",
            Some("EUR"),
            "shop.de",
            Availability::Unknown,
            String::new(),
        );
        assert_eq!(o.price.unwrap().0, Decimal::from_str("1299.00").unwrap());
        let o = text_offer(
            "1.299 €",
            None,
            "shop.de",
            Availability::Unknown,
            String::new(),
        );
        assert_eq!(o.price.unwrap().0, Decimal::from(1299));
        let o = machine_offer(
            "0.00",
            Some("EUR"),
            "shop.de",
            Availability::Unknown,
            String::new(),
        );
        assert!(o.price.is_none() && o.zero);
        // No currency anywhere, but the domain names a country.
        let o = machine_offer(
            "19.90",
            None,
            "shop.de",
            Availability::Unknown,
            String::new(),
        );
        assert_eq!(
            o.price.unwrap().1,
            CurrencyFound::Known(Currency::parse("EUR").unwrap())
        );
    }

    #[test]
    fn no_price_zero_price_and_unknown_currency_are_errors() {
        let r = json_ld(
            "https://s.example/p",
            r#"{"@type":"Product","name":"Only a name"}"#,
        );
        assert_eq!(r.error.as_ref().map(ExtractError::code), Some("no_price"));
        assert!(r.error.unwrap().to_string().contains("has no offers"));
        assert_eq!(r.title.as_deref(), Some("Only a name"));

        let r = json_ld(
            "https://s.example/p",
            r#"{"@type":"Product","name":"P","offers":{"price":"0.00","priceCurrency":"EUR"}}"#,
        );
        assert_eq!(r.error, Some(ExtractError::ZeroPrice));
        assert_eq!(r.amount, None);

        let r = json_ld(
            "https://s.example/p",
            r#"{"@type":"Product","name":"P","offers":{"price":"$5"}}"#,
        );
        assert_eq!(r.amount, Some(Decimal::from(5)));
        assert!(matches!(
            r.error,
            Some(ExtractError::AmbiguousCurrency { .. })
        ));
        assert!(r.price().is_err());
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
