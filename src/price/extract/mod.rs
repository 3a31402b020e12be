//! From a fetched body to one price: which sources are read, in which order, and which
//! price wins when a page offers several. Pure: the body comes in, a [`Report`] goes out.
//!
//! Sources, from the most to the least trusted: JSON-LD, microdata, meta tags, then a
//! per-site CSS rule set (the config's `[[site_rule]]`, else a built-in one; `site`), or a
//! JSON API rule for product APIs. The first source that yields a
//! positive price for the product decides amount, currency, method and availability; the
//! prices the other structured sources give for the same product are kept as candidates.
//!
//! Each source reads its own markup in its own file (`json_ld`, `microdata`, `meta`, and
//! `json_api` for product APIs); this file holds the order between them. Which of several
//! prices for one product wins is decided in `choice`; how a report is shown by `probe` is
//! in `report`.
//!
//! A price of zero is never a price ("price on request" pages write 0.00), and no price is
//! an error that says what was looked for.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use url::Url;

use super::currency::for_tld;
use super::decode::decode_html;
use super::html::{fast_facts, scan_sites, PageFacts};
use super::lenient_json::decode_entities;
use super::rules::{RuleOrigin, Rules, SiteRule};
use super::{parse_price, Currency, CurrencyFound, Hints, PriceError};

mod choice;
mod json_api;
mod json_ld;
mod meta;
mod microdata;
mod report;
mod site;

use choice::{blank_offer, candidate, choose, settle, with_minor_digits, Offer};
use json_api::extract_json_api;
use json_ld::from_json_ld;
use meta::{from_meta, meta_content};
use microdata::from_microdata;
pub use report::ReportJson;
use site::from_site_rule;

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

/// Where a price's currency came from, so an operator can tell a stated currency from an
/// inferred one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CurrencySource {
    /// The page states it: `priceCurrency`, a currency code or a sign only one currency uses.
    Page,
    /// The page gives a bare amount, or a sign several currencies share (`$`, `kr`), and the
    /// host's country-code domain decides (`.com.ar` is ARS); generic domains decide nothing.
    Domain,
    /// A rule's currency: a JSON API rule's configured one, or a site rule's (a built-in
    /// set's is its storefront's).
    Rule,
}

/// One distinct price the page gives for the product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Option<String>,
    /// Where `currency` came from; `None` when the currency is not known.
    pub currency_source: Option<CurrencySource>,
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
    /// Which site rule set gave the price, when `method` is `site-rule`.
    pub rule_set: Option<RuleSetUsed>,
}

/// The site rule set behind a `site-rule` price, as `probe` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleSetUsed {
    /// `amazon`, or a config rule's name (its host unless named).
    pub name: String,
    /// `built-in`, or `config` for a `[[site_rule]]`.
    pub origin: &'static str,
    /// The config rule's number, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_rule: Option<usize>,
    /// The selector (or whole + fraction pair) that gave the price.
    pub selector: String,
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
            rule_set: None,
        }
    }

    /// Where the reported currency came from: the chosen candidate's (always the first).
    pub fn currency_source(&self) -> Option<CurrencySource> {
        self.currency?;
        self.candidates.first()?.currency_source
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
    fast_path: bool,
}

/// Which reading of the page gave a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The page's JSON-LD scripts alone, found without the HTML scan.
    Fast,
    /// The full HTML scan.
    Full,
    /// A JSON API rule, or a body refused before any reading.
    Other,
}

impl Extractor {
    pub fn new(rules: Rules, max_bytes: usize) -> Extractor {
        Extractor {
            rules,
            max_bytes,
            fast_path: true,
        }
    }

    /// Whether pages whose JSON-LD alone settles the report skip the full HTML scan (on by
    /// default). Both ways give the same reports; off is for the tests and the benchmark
    /// that compare them.
    pub fn with_fast_path(self, on: bool) -> Extractor {
        Extractor {
            fast_path: on,
            ..self
        }
    }

    /// Extracts the price of the product at `url` from its body.
    pub fn extract(&self, url: &Url, body: &[u8], content_type: Option<&str>) -> Report {
        self.extract_pass(url, body, content_type).0
    }

    /// [`Extractor::extract`], also telling which reading gave the report.
    pub fn extract_pass(
        &self,
        url: &Url,
        body: &[u8],
        content_type: Option<&str>,
    ) -> (Report, Pass) {
        if body.len() > self.max_bytes {
            let report = Report::failed(ExtractError::Unreadable(format!(
                "the body is {} bytes, more than the {} allowed",
                body.len(),
                self.max_bytes
            )));
            return (report, Pass::Other);
        }
        if let Some((_, rule)) = self.rules.apis.iter().find(|(m, _)| m.matches(url)) {
            return (extract_json_api(url, body, rule), Pass::Other);
        }
        // A UTF-8 page is borrowed, not copied, from here to the scan.
        let (text, _) = decode_html(body, content_type);
        // The config's rules come first, so one for a host overrides its built-in set.
        let site = self
            .rules
            .sites
            .iter()
            .find(|(m, _)| m.matches(url))
            .map(|(_, r)| r);
        // The body's size was checked above; decoding a legacy charset may make it up to
        // three times longer in UTF-8 (one byte to U+FFFD or a CJK character).
        let decoded_limit = self.max_bytes.saturating_mul(3);
        if self.fast_path && site.is_none() && text.len() <= decoded_limit {
            if let Some(report) = fast_report(url, &text) {
                return (report, Pass::Fast);
            }
        }
        let selectors = site.map_or(&[][..], |r| r.selectors.as_slice());
        let facts = match scan_sites(&text, selectors, decoded_limit) {
            Ok(f) => f,
            Err(e) => {
                let report = Report::failed(ExtractError::Unreadable(e.to_string()));
                return (report, Pass::Full);
            }
        };
        (from_facts(url, &facts, site), Pass::Full)
    }
}

/// The report the page's JSON-LD gives, when it is the report the full scan would give:
/// `fast_facts` has shown that the page has no microdata and has read its JSON-LD scripts and
/// meta tags as the full scan does, so the full scan's facts differ from these only in
/// `<title>` and `<h1>`, which `from_facts` reads for the title alone, and only when neither
/// the deciding source nor an `og:title` names the product. So the JSON-LD must decide (a
/// priced offer, which also keeps a site rule out) with a known currency, and the title must
/// not come from `<title>` or `<h1>` (here: the report has one); anything else goes to the
/// full scan.
fn fast_report(url: &Url, text: &str) -> Option<Report> {
    let facts = fast_facts(text)?;
    let report = from_facts(url, &facts, None);
    let settled = report.method == Some(Method::JsonLd)
        && report.error.is_none()
        && report.currency.is_some()
        && report.title.is_some();
    settled.then_some(report)
}

/// The offers one source gives for the product, and its name for the product.
#[derive(Default, Debug)]
struct Found {
    title: Option<String>,
    offers: Vec<Offer>,
    /// What this source saw, for the "no price" message.
    note: Option<String>,
}

/// The schema.org types that name a product, in JSON-LD and in microdata.
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

/// Applies the source order and the choice rule to one page's facts.
/// `site` is the rule set whose selectors the scan read (`facts.site_values`), if any.
pub fn from_facts(url: &Url, facts: &PageFacts, site: Option<&SiteRule>) -> Report {
    let host = url.host_str().unwrap_or("");
    let variant = url
        .query_pairs()
        .find(|(k, _)| k == "variant")
        .map(|(_, v)| v.into_owned());

    let json_ld = from_json_ld(url, &facts.json_ld, host);
    let micro = from_microdata(&facts.items, url);
    let meta = from_meta(facts, host);
    let mut sources = vec![
        (Method::JsonLd, json_ld),
        (Method::Microdata, micro),
        (Method::Meta, meta),
    ];
    let structured_priced = sources
        .iter()
        .any(|(_, f)| f.offers.iter().any(|o| o.price.is_some()));
    let site_rule = site.map(looked_for_rule);
    let site_rule = site_rule.as_deref();
    let mut rule_set = None;
    if let (false, Some(rule)) = (structured_priced, site) {
        let (found, pick) = from_site_rule(rule, &facts.site_values, host);
        rule_set = pick.map(|pick| RuleSetUsed {
            name: rule.name.clone(),
            origin: match rule.origin {
                RuleOrigin::BuiltIn => "built-in",
                RuleOrigin::Config { .. } => "config",
            },
            config_rule: match rule.origin {
                RuleOrigin::BuiltIn => None,
                RuleOrigin::Config { n } => Some(n),
            },
            selector: rule.describe(pick),
        });
        sources.push((Method::SiteRule, found));
    }

    let fallback_title = || {
        sources
            .iter()
            .find_map(|(_, f)| f.title.clone())
            .or_else(|| meta_content(facts, "og:title").map(decode_and_collapse))
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
            rule_set: None,
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
        rule_set: rule_set.filter(|_| method == Method::SiteRule),
    }
}

/// The "no price" message's words for a rule set: its selectors and its name.
fn looked_for_rule(rule: &SiteRule) -> String {
    let picks: Vec<String> = rule.picks.iter().map(|&p| rule.describe(p)).collect();
    format!("{} of {}", picks.join(", "), rule.label())
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

/// A price a shop's API states for a product outside a page (a catalogue's search results),
/// read as product APIs are read: `code` is the currency the API or the operator named, and
/// without one the sign in the text or the host's country-code domain decides. `None` when
/// the value is no positive price; the currency is `None` when nothing says which it is.
pub fn api_price(
    value: &str,
    code: Option<&str>,
    host: &str,
) -> Option<(Decimal, Option<Currency>)> {
    let offer = machine_offer(value, code, host, Availability::Unknown, String::new());
    match offer.price? {
        (amount, CurrencyFound::Known(c)) => Some((amount, Some(c))),
        (amount, _) => Some((amount, None)),
    }
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
                let stated = code.and_then(Currency::parse);
                let (currency, from) = match (stated, for_tld(host)) {
                    (Some(c), _) => (CurrencyFound::Known(c), Some(CurrencySource::Page)),
                    (None, Some(c)) => (CurrencyFound::Known(c), Some(CurrencySource::Domain)),
                    (None, None) => (CurrencyFound::Unstated, None),
                };
                o.price = Some((amount, currency));
                o.currency_source = from;
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
        Ok(p) => {
            if let CurrencyFound::Known(c) = p.currency {
                o.currency_source = Some(currency_source_of(text, &hints, c));
            }
            o.price = Some((p.amount, p.currency));
        }
        Err(PriceError::NotPositive) => o.zero = true,
        Err(_) => {}
    }
    o
}

/// The domain decided the currency when the text read without it does not give the same
/// one: a bare amount, or a sign the domain chose among (`$` on `.com.au`).
fn currency_source_of(text: &str, hints: &Hints<'_>, found: Currency) -> CurrencySource {
    if hints.host.and_then(for_tld) != Some(found) {
        return CurrencySource::Page;
    }
    let without_host = Hints {
        host: None,
        ..*hints
    };
    match parse_price(text, &without_host).map(|p| p.currency) {
        Ok(CurrencyFound::Known(c)) if c == found => CurrencySource::Page,
        _ => CurrencySource::Domain,
    }
}

/// Whitespace runs to one space, trimmed; entities decoded.
fn decode_and_collapse(s: &str) -> String {
    let decoded = if s.contains('&') {
        decode_entities(s)
    } else {
        s.to_owned()
    };
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn url(u: &str) -> Url {
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
    fn the_report_says_where_the_currency_came_from() {
        let source = |page: &str, offers: &str| {
            let r = json_ld(
                page,
                &format!(r#"{{"@type":"Product","name":"P","offers":{offers}}}"#),
            );
            (
                r.currency.map(|c| c.to_string()),
                r.currency_source().map(CurrencySource::as_str),
            )
        };
        let pair = |c: &str, s: &'static str| (Some(c.to_owned()), Some(s));
        assert_eq!(
            source("https://s.example.co.jp/p", r#"{"price":"1980"}"#),
            pair("JPY", "domain")
        );
        assert_eq!(
            source(
                "https://s.example.ch/p",
                r#"{"price":"1980","priceCurrency":"EUR"}"#
            ),
            pair("EUR", "page")
        );
        // Visible text: a bare amount, a `$` the domain resolves, a sign that decides alone.
        assert_eq!(
            source("https://s.example.pl/p", r#"{"price":"1 299,00"}"#),
            pair("PLN", "domain")
        );
        assert_eq!(
            source("https://s.example.com.au/p", r#"{"price":"$149.00"}"#),
            pair("AUD", "domain")
        );
        assert_eq!(
            source("https://s.example.ch/p", r#"{"price":"€ 19,90"}"#),
            pair("EUR", "page")
        );
        assert_eq!(
            source("https://s.example.de/p", r#"{"price":"19,90 €"}"#),
            pair("EUR", "page")
        );
        assert_eq!(
            source("https://s.example.com/p", r#"{"price":"19.90"}"#),
            (None, None)
        );
        let r = json_ld(
            "https://s.example.com.ar/p",
            r#"{"@type":"Product","name":"P","offers":{"price":"18999"}}"#,
        );
        assert!(
            r.to_text("u").contains("currency via: domain"),
            "{}",
            r.to_text("u")
        );
        let json = serde_json::to_value(r.to_json("u")).unwrap();
        assert_eq!(json["currency_source"], "domain");
        assert_eq!(json["candidates"][0]["currency_source"], "domain");
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
}
