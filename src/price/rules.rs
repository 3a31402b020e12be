//! The per-site rules: CSS selectors for shops without structured data (the operator's
//! `[[site_rule]]` entries, then the built-in rule sets of `sites`), and JSON pointers for
//! shops that expose product JSON. Compiled once from the config, so a bad selector is a
//! `check-config` error, not a failure at the first fetch.
//!
//! A rule set is a list of picks tried in order, the first that gives a price winning: one
//! element's text or attribute, or a price split over a whole-part and a fraction element.
//! The config's rules come before the built-in ones, so a `[[site_rule]]` for a host
//! replaces the built-in set for it.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use super::html::SiteSelector;
use super::sites::{BuiltinPick, BUILTIN};
use super::Currency;

/// `[[site_rule]]`: where the price is on the pages of a shop without structured data.
/// Used only when a page gives no JSON-LD, microdata or meta price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRuleConfig {
    /// The shop's host; its subdomains match too.
    pub host: String,
    /// CSS selector of the element holding the price; the first match counts.
    #[serde(default)]
    pub selector: Option<String>,
    /// Several selectors, tried in order; an entry is a CSS selector or a split price
    /// `{ whole = "…", fraction = "…" }`. Give `selector` or `selectors`.
    #[serde(default)]
    pub selectors: Vec<SelectorConfig>,
    /// Attribute to read instead of the element's text (for plain selectors).
    #[serde(default)]
    pub attribute: Option<String>,
    /// ISO 4217 code for prices the page shows without a sign (or with a shared one, `$`).
    #[serde(default)]
    pub currency: Option<String>,
    /// A name for the rule in probe reports; default: the host.
    #[serde(default)]
    pub name: Option<String>,
}

/// One entry of `selectors`: a CSS selector, or a price split over two elements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SelectorConfig {
    Css(String),
    Split {
        whole: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        fraction: Option<String>,
    },
}

/// By hand, so that a wrong entry gets an error naming the key rather than serde's
/// "did not match any variant".
impl<'de> Deserialize<'de> for SelectorConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = SelectorConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CSS selector or a table { whole = \"…\", fraction = \"…\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SelectorConfig, E> {
                Ok(SelectorConfig::Css(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SelectorConfig, A::Error> {
                let (mut whole, mut fraction) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "whole" => whole = Some(map.next_value::<String>()?),
                        "fraction" => fraction = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["whole", "fraction"]))
                        }
                    }
                }
                let whole = whole.ok_or_else(|| de::Error::missing_field("whole"))?;
                Ok(SelectorConfig::Split { whole, fraction })
            }
        }
        d.deserialize_any(Entry)
    }
}

/// How a rule set reads the price: indexes into its selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// One element's text or attribute.
    One(usize),
    /// The whole part and the fraction in two elements (the fraction may be absent).
    Split {
        whole: usize,
        fraction: Option<usize>,
    },
}

/// Where a rule set comes from, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "origin")]
pub enum RuleOrigin {
    /// One of `sites::BUILTIN`.
    BuiltIn,
    /// The n-th `[[site_rule]]` of the config, from 1.
    Config { n: usize },
}

/// A compiled site rule set.
#[derive(Clone, Debug)]
pub struct SiteRule {
    /// `amazon`, or the config rule's name (its host unless named).
    pub name: String,
    pub origin: RuleOrigin,
    /// The storefront's currency, or the config rule's `currency`.
    pub currency: Option<Currency>,
    /// Every selector, read in one pass over the page.
    pub selectors: Vec<SiteSelector>,
    /// The selectors as written, for messages.
    pub sources: Vec<String>,
    /// Tried in order; the first that gives a price wins.
    pub picks: Vec<Pick>,
}

impl SiteRule {
    /// How the report names the rule set: `amazon (built-in)`, `[[site_rule]] 2 (shop.example)`.
    pub fn label(&self) -> String {
        match self.origin {
            RuleOrigin::BuiltIn => format!("{} (built-in)", self.name),
            RuleOrigin::Config { n } => format!("[[site_rule]] {n} ({})", self.name),
        }
    }

    /// What a pick reads, for candidates and "no price" messages.
    pub fn describe(&self, pick: Pick) -> String {
        let source = |i: usize| self.sources.get(i).map_or("", String::as_str);
        match pick {
            Pick::One(i) => source(i).to_owned(),
            Pick::Split { whole, fraction } => match fraction {
                Some(f) => format!("{} + {}", source(whole), source(f)),
                None => source(whole).to_owned(),
            },
        }
    }

    /// A rule set of one selector, as a `[[site_rule]]` with only `selector` compiles to
    /// (number 1, named after its host).
    pub fn single(host: &str, selector: SiteSelector, source: &str) -> SiteRule {
        SiteRule {
            name: host.to_owned(),
            origin: RuleOrigin::Config { n: 1 },
            currency: None,
            selectors: vec![selector],
            sources: vec![source.to_owned()],
            picks: vec![Pick::One(0)],
        }
    }

    fn push(&mut self, selector: SiteSelector, source: String) -> usize {
        self.selectors.push(selector);
        self.sources.push(source);
        self.selectors.len() - 1
    }
}

/// `[[json_api]]`: where the price is in a shop's product JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonApiConfig {
    /// The API's host (and subdomains); or give `url`.
    #[serde(default)]
    pub host: Option<String>,
    /// A URL pattern where `*` matches anything, query included.
    #[serde(default)]
    pub url: Option<String>,
    /// RFC 6901 JSON pointer to the price.
    pub price_pointer: String,
    /// Pointer to the ISO 4217 code, when the response has one.
    #[serde(default)]
    pub currency_pointer: Option<String>,
    /// The currency when the response does not say.
    #[serde(default)]
    pub currency: Option<String>,
    /// The price is an integer in the currency's minor unit (cents).
    #[serde(default)]
    pub minor_units: bool,
}

/// Where in a product API's JSON the price is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonApiRule {
    /// RFC 6901 pointer to the price (a number or a string).
    pub price_pointer: String,
    /// Pointer to an ISO 4217 code, when the response carries one.
    pub currency_pointer: Option<String>,
    /// The currency when the response names none.
    pub currency: Option<Currency>,
    /// The number is an integer count of the currency's minor unit (cents).
    pub minor_units: bool,
}

/// A URL pattern: `*` matches any run of characters, everything else itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlMatch {
    /// The host or any subdomain of it.
    Host(String),
    /// A glob over the whole URL, query included.
    Pattern(String),
}

impl UrlMatch {
    pub fn matches(&self, url: &Url) -> bool {
        match self {
            UrlMatch::Host(h) => host_matches(h, url),
            UrlMatch::Pattern(p) => glob(p.as_bytes(), url.as_str().as_bytes()),
        }
    }
}

fn host_matches(rule: &str, url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let rule = rule.trim_start_matches("*.").trim_end_matches('.');
    host.eq_ignore_ascii_case(rule)
        || (host.len() > rule.len()
            && host.as_bytes()[host.len() - rule.len() - 1] == b'.'
            && host[host.len() - rule.len()..].eq_ignore_ascii_case(rule))
}

/// Iterative glob with one backtrack point: linear in practice, never exponential.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The per-site rules, compiled: the config's first, then the built-in sets.
/// `Rules::default()` has none (not even the built-in sets).
#[derive(Default)]
pub struct Rules {
    pub sites: Vec<(UrlMatch, SiteRule)>,
    pub apis: Vec<(UrlMatch, JsonApiRule)>,
}

impl Rules {
    /// Compiles the config's `[[site_rule]]` and `[[json_api]]` entries and appends the
    /// built-in rule sets; every problem is reported, each naming its rule and key.
    pub fn compile(
        sites: &[SiteRuleConfig],
        apis: &[JsonApiConfig],
    ) -> Result<Rules, Vec<RuleError>> {
        let mut rules = Rules::default();
        let mut errors = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let n = i + 1;
            match compile_site(s, n) {
                Ok(rule) => rules.sites.push((UrlMatch::Host(s.host.clone()), rule)),
                Err(messages) => errors.extend(
                    messages
                        .into_iter()
                        .map(|message| RuleError::Site { n, message }),
                ),
            }
        }
        rules.sites.extend(builtin_rules());
        for (i, a) in apis.iter().enumerate() {
            let n = i + 1;
            let mut fail = |message: String| errors.push(RuleError::Api { n, message });
            let matcher = match (&a.host, &a.url) {
                (Some(h), None) => match check_host(h) {
                    Ok(()) => Some(UrlMatch::Host(h.clone())),
                    Err(e) => {
                        fail(e.to_string());
                        None
                    }
                },
                (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                    Some(UrlMatch::Pattern(u.clone()))
                }
                (None, Some(u)) => {
                    fail(format!("url {u:?} must start with http:// or https://"));
                    None
                }
                _ => {
                    fail("give exactly one of host or url".to_owned());
                    None
                }
            };
            for (key, pointer) in [
                ("price_pointer", Some(&a.price_pointer)),
                ("currency_pointer", a.currency_pointer.as_ref()),
            ] {
                if let Some(p) = pointer.filter(|p| !p.is_empty() && !p.starts_with('/')) {
                    fail(format!(
                        "{key} {p:?} is not a JSON pointer (it starts with /, e.g. \"/price\")"
                    ));
                }
            }
            let currency = match a.currency.as_deref().map(|c| (c, Currency::parse(c))) {
                Some((c, None)) => {
                    fail(format!("currency {c:?} is not an ISO 4217 code"));
                    None
                }
                Some((_, c)) => c,
                None => None,
            };
            if a.currency.is_some() && a.currency_pointer.is_some() {
                fail("give currency or currency_pointer, not both".to_owned());
            }
            if a.minor_units && a.currency.is_none() && a.currency_pointer.is_none() {
                fail("minor_units needs the currency (currency or currency_pointer) to know its exponent".to_owned());
            }
            if let Some(m) = matcher {
                rules.apis.push((
                    m,
                    JsonApiRule {
                        price_pointer: a.price_pointer.clone(),
                        currency_pointer: a.currency_pointer.clone(),
                        currency,
                        minor_units: a.minor_units,
                    },
                ));
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }
}

/// One `[[site_rule]]`; the messages name the key at fault.
fn compile_site(s: &SiteRuleConfig, n: usize) -> Result<SiteRule, Vec<String>> {
    let mut errors = Vec::new();
    if let Err(e) = check_host(&s.host) {
        errors.push(e.to_string());
    }
    let currency = match s.currency.as_deref() {
        Some(c) => match Currency::parse(c) {
            Some(code) => Some(code),
            None => {
                errors.push(format!("currency {c:?} is not an ISO 4217 code"));
                None
            }
        },
        None => None,
    };
    let mut rule = SiteRule {
        name: s.name.clone().unwrap_or_else(|| s.host.clone()),
        origin: RuleOrigin::Config { n },
        currency,
        selectors: Vec::new(),
        sources: Vec::new(),
        picks: Vec::new(),
    };
    let mut entries: Vec<(String, SelectorConfig)> = Vec::new();
    match (&s.selector, s.selectors.is_empty()) {
        (Some(sel), true) => {
            entries.push(("selector".to_owned(), SelectorConfig::Css(sel.clone())))
        }
        (None, false) => entries.extend(
            s.selectors
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("selectors[{i}]"), e.clone())),
        ),
        (Some(_), false) => errors.push("give selector or selectors, not both".to_owned()),
        (None, true) => errors.push("give selector (or selectors)".to_owned()),
    }
    let mut compile =
        |key: String, css: &str, attribute: Option<&str>| match SiteSelector::new(css, attribute) {
            Ok(sel) => {
                let source = match attribute {
                    Some(a) => format!("{css} @{a}"),
                    None => css.to_owned(),
                };
                Some(rule.push(sel, source))
            }
            Err(e) => {
                errors.push(format!("{key}: {e}"));
                None
            }
        };
    let mut picks = Vec::new();
    for (key, entry) in entries {
        match entry {
            SelectorConfig::Css(css) => {
                if let Some(i) = compile(key, &css, s.attribute.as_deref()) {
                    picks.push(Pick::One(i));
                }
            }
            SelectorConfig::Split { whole, fraction } => {
                let w = compile(format!("{key}.whole"), &whole, None);
                let f = match fraction.as_deref() {
                    Some(css) => compile(format!("{key}.fraction"), css, None)
                        .ok_or(())
                        .map(Some),
                    None => Ok(None),
                };
                if let (Some(whole), Ok(fraction)) = (w, f) {
                    picks.push(Pick::Split { whole, fraction });
                }
            }
        }
    }
    rule.picks = picks;
    if errors.is_empty() {
        Ok(rule)
    } else {
        Err(errors)
    }
}

/// The built-in rule sets, one compiled rule per storefront (its currency differs).
/// Their selectors are constants, checked by a test; one that failed to compile would be
/// left out rather than stop the daemon.
pub fn builtin_rules() -> Vec<(UrlMatch, SiteRule)> {
    let mut out = Vec::new();
    for set in BUILTIN {
        let mut rule = SiteRule {
            name: set.name.to_owned(),
            origin: RuleOrigin::BuiltIn,
            currency: None,
            selectors: Vec::new(),
            sources: Vec::new(),
            picks: Vec::new(),
        };
        let one = |rule: &mut SiteRule, css: &str, attribute: Option<&str>| {
            SiteSelector::new(css, attribute).ok().map(|sel| {
                let source = match attribute {
                    Some(a) => format!("{css} @{a}"),
                    None => css.to_owned(),
                };
                rule.push(sel, source)
            })
        };
        for pick in set.picks {
            let compiled = match *pick {
                BuiltinPick::Text(css) => one(&mut rule, css, None).map(Pick::One),
                BuiltinPick::Attribute(css, a) => one(&mut rule, css, Some(a)).map(Pick::One),
                BuiltinPick::Split { whole, fraction } => {
                    match (one(&mut rule, whole, None), one(&mut rule, fraction, None)) {
                        (Some(whole), Some(fraction)) => Some(Pick::Split {
                            whole,
                            fraction: Some(fraction),
                        }),
                        _ => None,
                    }
                }
            };
            rule.picks.extend(compiled);
        }
        for (host, currency) in set.storefronts {
            let mut storefront = rule.clone();
            storefront.currency = Currency::parse(currency);
            out.push((UrlMatch::Host((*host).to_owned()), storefront));
        }
    }
    out
}

/// A rule's `host` that is not a host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host {0:?} must be a host name such as \"shop.example\"")]
struct NotAHost(String);

fn check_host(host: &str) -> Result<(), NotAHost> {
    let h = host.trim_start_matches("*.");
    if h.is_empty() || h.contains(['/', ':', ' ']) {
        Err(NotAHost(host.to_owned()))
    } else {
        Ok(())
    }
}

/// One bad rule, numbered from 1 in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("site rule {n}: {message}")]
    Site { n: usize, message: String },
    #[error("JSON API rule {n}: {message}")]
    Api { n: usize, message: String },
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn hosts_match_themselves_and_subdomains_only() {
        let m = UrlMatch::Host("shop.example".into());
        for (url, want) in [
            ("https://shop.example/p/1", true),
            ("https://WWW.Shop.Example/p/1", true),
            ("https://evilshop.example/p/1", false),
            ("https://shop.example.evil/p/1", false),
            ("https://example/p/1", false),
        ] {
            assert_eq!(m.matches(&Url::parse(url).unwrap()), want, "{url}");
        }
        assert!(UrlMatch::Host("*.shop.example".into())
            .matches(&Url::parse("https://a.shop.example/").unwrap()));
    }

    #[test]
    fn url_patterns_glob_over_the_whole_url() {
        let m = UrlMatch::Pattern("https://shop.example/products/*.js".into());
        assert!(m.matches(&Url::parse("https://shop.example/products/tote.js").unwrap()));
        assert!(m.matches(&Url::parse("https://shop.example/products/a/b.js").unwrap()));
        assert!(!m.matches(&Url::parse("https://shop.example/products/tote").unwrap()));
        assert!(!m.matches(&Url::parse("https://shop.example/products/tote.json").unwrap()));
        let m = UrlMatch::Pattern("https://api.example/*/products/*?*curr=EUR*".into());
        assert!(m.matches(
            &Url::parse("https://api.example/v2/products/1?fields=FULL&curr=EUR").unwrap()
        ));
        // Many stars against a long near-miss stays linear.
        let m = UrlMatch::Pattern(format!("https://a.example/{}b", "*a".repeat(50)));
        assert!(
            !m.matches(&Url::parse(&format!("https://a.example/{}", "a".repeat(5000))).unwrap())
        );
    }

    pub(crate) fn site(host: &str, selector: &str) -> SiteRuleConfig {
        SiteRuleConfig {
            host: host.into(),
            selector: Some(selector.into()),
            selectors: Vec::new(),
            attribute: None,
            currency: None,
            name: None,
        }
    }

    #[test]
    fn bad_rules_are_all_reported_by_number() {
        let sites = vec![
            site("shop.example", "span.price"),
            site("https://x/", "span["),
        ];
        let apis = vec![
            JsonApiConfig {
                host: Some("shop.example".into()),
                url: None,
                price_pointer: "price".into(),
                currency_pointer: None,
                currency: Some("EURO".into()),
                minor_units: false,
            },
            JsonApiConfig {
                host: None,
                url: None,
                price_pointer: "/price".into(),
                currency_pointer: None,
                currency: None,
                minor_units: true,
            },
        ];
        let errors: Vec<String> = Rules::compile(&sites, &apis)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].starts_with("site rule 2: host"), "{errors:#?}");
        assert_eq!(
            errors[0],
            "site rule 2: host \"https://x/\" must be a host name such as \"shop.example\""
        );
        assert!(errors[1].starts_with("site rule 2:"), "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("JSON API rule 1: price_pointer")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("JSON API rule 1: currency \"EURO\"")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("JSON API rule 2: give exactly one")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("JSON API rule 2: minor_units")),
            "{errors:#?}"
        );
        assert!(Rules::compile(&sites[..1], &[]).is_ok());
    }

    #[test]
    fn new_site_rule_keys_are_checked_and_name_the_key() {
        let mut bad = site("shop.example", "span.price");
        bad.selectors = vec![SelectorConfig::Css("b".into())];
        bad.currency = Some("EURO".into());
        let mut split = site("shop.example", "");
        split.selector = None;
        split.selectors = vec![
            SelectorConfig::Css("span.ok".into()),
            SelectorConfig::Split {
                whole: "span.whole".into(),
                fraction: Some("sup[".into()),
            },
        ];
        let mut none = site("shop.example", "");
        none.selector = None;
        let errors: Vec<String> = Rules::compile(&[bad, split, none], &[])
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors[..3],
            [
                "site rule 1: currency \"EURO\" is not an ISO 4217 code",
                "site rule 1: give selector or selectors, not both",
                "site rule 2: selectors[1].fraction: bad site selector `sup[`: Unexpected end of selector",
            ],
            "{errors:#?}"
        );
        assert_eq!(errors[3], "site rule 3: give selector (or selectors)");
        assert_eq!(errors.len(), 4);
    }

    /// The rule set `Extractor` uses for a URL: the first whose host matches.
    fn rule_for<'a>(rules: &'a Rules, url: &str) -> Option<&'a SiteRule> {
        let url = Url::parse(url).unwrap();
        rules
            .sites
            .iter()
            .find(|(m, _)| m.matches(&url))
            .map(|(_, r)| r)
    }

    #[test]
    fn every_builtin_selector_compiles_and_storefronts_carry_their_currency() {
        for set in BUILTIN {
            let compiled: usize = set
                .picks
                .iter()
                .map(|p| match p {
                    BuiltinPick::Split { .. } => 2,
                    _ => 1,
                })
                .sum();
            let (_, rule) = builtin_rules()
                .into_iter()
                .find(|(_, r)| r.name == set.name)
                .unwrap();
            assert_eq!(
                rule.selectors.len(),
                compiled,
                "{}: {:?}",
                set.name,
                rule.sources
            );
            assert_eq!(rule.picks.len(), set.picks.len(), "{}", set.name);
        }
        let rules = Rules::compile(&[], &[]).unwrap();
        for (url, name, currency) in [
            ("https://www.amazon.com/dp/B0C1", "amazon", "USD"),
            ("https://www.amazon.co.uk/dp/B0C1", "amazon", "GBP"),
            ("https://www.amazon.de/dp/B0C1", "amazon", "EUR"),
            ("https://www.amazon.nl/dp/B0C1", "amazon", "EUR"),
            ("https://www.amazon.ca/dp/B0C1", "amazon", "CAD"),
            ("https://www.amazon.com.au/dp/B0C1", "amazon", "AUD"),
            ("https://www.amazon.co.jp/dp/B0C1", "amazon", "JPY"),
            ("https://www.amazon.in/dp/B0C1", "amazon", "INR"),
            ("https://www.amazon.com.br/dp/B0C1", "amazon", "BRL"),
            ("https://www.amazon.com.mx/dp/B0C1", "amazon", "MXN"),
            ("https://www.ebay.de/itm/1", "ebay", "EUR"),
            ("https://www.walmart.com/ip/1", "walmart", "USD"),
            ("https://www.bestbuy.ca/en-ca/product/1", "bestbuy", "CAD"),
            ("https://www.target.com/p/-/A-1", "target", "USD"),
            ("https://de.aliexpress.com/item/1.html", "aliexpress", "USD"),
            (
                "https://articulo.mercadolibre.com.ar/MLA-1",
                "mercadolibre",
                "ARS",
            ),
            (
                "https://produto.mercadolivre.com.br/MLB-1",
                "mercadolibre",
                "BRL",
            ),
            ("https://www.zalando.pl/x.html", "zalando", "PLN"),
            ("https://www.otto.de/p/1", "otto", "EUR"),
            ("https://www.bol.com/nl/nl/p/x/1/", "bol", "EUR"),
            ("https://allegro.pl/oferta/x-1", "allegro", "PLN"),
            ("https://www.flipkart.com/x/p/itm1", "flipkart", "INR"),
        ] {
            let rule = rule_for(&rules, url).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(rule.name, name, "{url}");
            assert_eq!(rule.origin, RuleOrigin::BuiltIn, "{url}");
            assert_eq!(
                rule.currency.map(|c| c.to_string()).as_deref(),
                Some(currency),
                "{url}"
            );
        }
        // Look-alike hosts get no rule set.
        for url in [
            "https://www.amazon.com.evil/dp/1",
            "https://notamazon.com/dp/1",
            "https://amazon.example/dp/1",
        ] {
            assert!(rule_for(&rules, url).is_none(), "{url}");
        }
        assert!(Rules::default().sites.is_empty());
    }

    #[test]
    fn a_config_rule_overrides_the_builtin_set_for_its_host_only() {
        let mut mine = site("amazon.de", "#my-price");
        mine.currency = Some("eur".into());
        let rules = Rules::compile(&[mine], &[]).unwrap();
        let de = rule_for(&rules, "https://www.amazon.de/dp/B0C1").unwrap();
        assert_eq!(de.origin, RuleOrigin::Config { n: 1 });
        assert_eq!(
            (de.name.as_str(), de.sources.as_slice()),
            ("amazon.de", &["#my-price".to_owned()][..])
        );
        assert_eq!(de.currency, Currency::parse("EUR"));
        assert_eq!(de.label(), "[[site_rule]] 1 (amazon.de)");
        let fr = rule_for(&rules, "https://www.amazon.fr/dp/B0C1").unwrap();
        assert_eq!(fr.label(), "amazon (built-in)");
    }

    #[test]
    fn several_selectors_and_splits_keep_their_order() {
        let mut s = site("shop.example", "");
        s.selector = None;
        s.attribute = Some("content".into());
        s.selectors = vec![
            SelectorConfig::Css("meta.price".into()),
            SelectorConfig::Split {
                whole: "span.w".into(),
                fraction: None,
            },
            SelectorConfig::Split {
                whole: "span.w2".into(),
                fraction: Some("span.f2".into()),
            },
        ];
        let rules = Rules::compile(&[s], &[]).unwrap();
        let r = &rules.sites[0].1;
        assert_eq!(
            r.picks,
            [
                Pick::One(0),
                Pick::Split {
                    whole: 1,
                    fraction: None
                },
                Pick::Split {
                    whole: 2,
                    fraction: Some(3)
                }
            ]
        );
        assert_eq!(r.describe(r.picks[0]), "meta.price @content");
        assert_eq!(r.describe(r.picks[2]), "span.w2 + span.f2");
    }

    #[test]
    fn selectors_entries_read_from_toml() {
        #[derive(Deserialize)]
        struct Doc {
            site_rule: Vec<SiteRuleConfig>,
        }
        let doc: Doc = toml::from_str(
            "[[site_rule]]\nhost = \"a.example\"\nselectors = [\"span.p\", { whole = \"b.w\", fraction = \"b.f\" }]\n",
        )
        .unwrap();
        assert_eq!(
            doc.site_rule[0].selectors,
            [
                SelectorConfig::Css("span.p".into()),
                SelectorConfig::Split {
                    whole: "b.w".into(),
                    fraction: Some("b.f".into())
                }
            ]
        );
        let err = toml::from_str::<Doc>(
            "[[site_rule]]\nhost = \"a.example\"\nselectors = [{ whole = \"b.w\", fractoin = \"b.f\" }]\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("unknown field `fractoin`") && err.contains("whole"),
            "{err}"
        );
        let err = toml::from_str::<Doc>(
            "[[site_rule]]\nhost = \"a.example\"\nselectors = [{ fraction = \"b.f\" }]\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("missing field `whole`"), "{err}");
    }
}
