//! The operator's per-site rules: a CSS selector for shops without structured data, and
//! JSON pointers for shops that expose product JSON. Compiled once from the config, so
//! a bad selector is a `check-config` error, not a failure at the first fetch.

use serde::{Deserialize, Serialize};
use url::Url;

use super::html::SiteSelector;
use super::Currency;

/// `[[site_rule]]`: where the price is on the pages of a shop without structured data.
/// Used only when a page gives no JSON-LD, microdata or meta price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRuleConfig {
    /// The shop's host; its subdomains match too.
    pub host: String,
    /// CSS selector of the element holding the price; the first match counts.
    pub selector: String,
    /// Attribute to read instead of the element's text.
    #[serde(default)]
    pub attribute: Option<String>,
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

/// The operator's per-site rules, compiled.
#[derive(Default)]
pub struct Rules {
    pub sites: Vec<(UrlMatch, SiteSelector, String)>,
    pub apis: Vec<(UrlMatch, JsonApiRule)>,
}

impl Rules {
    /// Compiles the config's `[[site_rule]]` and `[[json_api]]` entries; every problem is
    /// reported, each naming its rule.
    pub fn compile(
        sites: &[SiteRuleConfig],
        apis: &[JsonApiConfig],
    ) -> Result<Rules, Vec<RuleError>> {
        let mut rules = Rules::default();
        let mut errors = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let n = i + 1;
            if let Err(e) = check_host(&s.host) {
                errors.push(RuleError::Site {
                    n,
                    message: e.to_string(),
                });
            }
            match SiteSelector::new(&s.selector, s.attribute.as_deref()) {
                Ok(sel) => {
                    let describe = match &s.attribute {
                        Some(a) => format!("{} @{a}", s.selector),
                        None => s.selector.clone(),
                    };
                    rules
                        .sites
                        .push((UrlMatch::Host(s.host.clone()), sel, describe));
                }
                Err(e) => errors.push(RuleError::Site {
                    n,
                    message: e.to_string(),
                }),
            }
        }
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
mod tests {
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

    #[test]
    fn bad_rules_are_all_reported_by_number() {
        let sites = vec![
            SiteRuleConfig {
                host: "shop.example".into(),
                selector: "span.price".into(),
                attribute: None,
            },
            SiteRuleConfig {
                host: "https://x/".into(),
                selector: "span[".into(),
                attribute: None,
            },
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
}
