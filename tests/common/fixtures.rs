//! The fixture corpus (`tests/fixtures/pages/`) as test data: each page, the rules its
//! side file asks for, and the comparison with its expected result. Shared by the
//! offline tests (`tests/pages.rs`) and the HTTP ones (`tests/api/shop.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use pricewatch::price::extract::{Extractor, Report};
use pricewatch::price::rules::{JsonApiRule, Rules, SiteRuleConfig, UrlMatch};
use pricewatch::price::Currency;
use rust_decimal::Decimal;
use serde_json::Value;

pub const MAX_BYTES: usize = 5 * 1024 * 1024;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pages")
}

/// Every fixture name in the folder, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".expected.json").map(str::to_owned)
        })
        .collect();
    names.sort_unstable();
    names
}

pub struct Fixture {
    pub name: String,
    pub side: Value,
    pub url: url::Url,
    pub body: Vec<u8>,
    pub content_type: String,
    pub is_json: bool,
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let side: Value = serde_json::from_slice(
            &std::fs::read(dir().join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let url = url::Url::parse(side["url"].as_str().unwrap()).unwrap();
        let is_json = side.get("json_api").is_some_and(|r| !r.is_null());
        let ext = if is_json { "json" } else { "html" };
        let body = std::fs::read(dir().join(format!("{name}.{ext}"))).unwrap();
        let content_type = side["content_type"]
            .as_str()
            .unwrap_or(if is_json {
                "application/json"
            } else {
                "text/html; charset=utf-8"
            })
            .to_owned();
        Fixture {
            name: name.to_owned(),
            side,
            url,
            body,
            content_type,
            is_json,
        }
    }

    /// The site or JSON API rule the side file names, for the fixture's host, and the
    /// built-in site rule sets, as a config with that rule would give.
    pub fn rules(&self) -> Rules {
        let host = self.url.host_str().unwrap().to_owned();
        let mut sites = Vec::new();
        if let Some(rule) = self.side.get("site_rule").filter(|r| !r.is_null()) {
            sites.push(SiteRuleConfig {
                host: host.clone(),
                selector: Some(rule["selector"].as_str().unwrap().to_owned()),
                selectors: Vec::new(),
                attribute: rule["attribute"].as_str().map(str::to_owned),
                currency: None,
                name: None,
            });
        }
        let mut rules = Rules::compile(&sites, &[]).unwrap();
        if let Some(api) = self.side.get("json_api").filter(|r| !r.is_null()) {
            rules.apis.push((
                UrlMatch::Host(host),
                JsonApiRule {
                    price_pointer: api["price_pointer"].as_str().unwrap().to_owned(),
                    currency_pointer: api["currency_pointer"].as_str().map(str::to_owned),
                    currency: api["currency"].as_str().and_then(Currency::parse),
                    minor_units: api["minor_units"].as_bool().unwrap(),
                },
            ));
        }
        rules
    }

    pub fn extractor(&self) -> Extractor {
        Extractor::new(self.rules(), MAX_BYTES)
    }

    /// Asserts every expected field of the side file.
    pub fn assert_report(&self, report: &Report) {
        let name = &self.name;
        let got = serde_json::to_value(report.to_json(self.url.as_str())).unwrap();
        let want = &self.side["expected"];
        let context = format!(
            "{name}: got {}",
            serde_json::to_string_pretty(&got).unwrap()
        );
        assert_eq!(
            report.amount.map(|a| a.normalize()),
            decimal(&want["amount"]),
            "amount, {context}"
        );
        if let (Some(a), Some(w)) = (report.amount, want["amount"].as_str()) {
            assert_eq!(
                a.to_string(),
                w,
                "amount written with the minor digits, {context}"
            );
        }
        for field in ["currency", "title", "availability", "method", "error"] {
            assert_eq!(got[field], want[field], "{field}, {context}");
        }
        // Optional: older side files predate it.
        if let Some(source) = want.get("currency_source") {
            assert_eq!(
                &got["currency_source"], source,
                "currency_source, {context}"
            );
        }
        if let Some(rule_set) = want.get("rule_set") {
            assert_eq!(&got["rule_set"]["name"], rule_set, "rule_set, {context}");
        }
        let mut got_candidates: Vec<Decimal> = report
            .candidates
            .iter()
            .map(|c| c.amount.normalize())
            .collect();
        match want.get("candidates").and_then(Value::as_array) {
            Some(list) => {
                let mut want_candidates: Vec<Decimal> = list.iter().filter_map(decimal).collect();
                assert_eq!(
                    got_candidates.first(),
                    want_candidates.first(),
                    "chosen first, {context}"
                );
                got_candidates.sort();
                want_candidates.sort();
                assert_eq!(got_candidates, want_candidates, "candidates, {context}");
            }
            None => assert!(
                got_candidates.len() <= 1,
                "one distinct price expected, {context}"
            ),
        }
        if want["error"].is_null() {
            assert!(report.price().is_ok(), "{context}");
        } else {
            assert!(report.price().is_err(), "{context}");
            assert!(
                got["problem"].as_str().is_some_and(|p| !p.is_empty()),
                "{context}"
            );
        }
    }
}

fn decimal(v: &Value) -> Option<Decimal> {
    v.as_str()
        .map(|s| Decimal::from_str(s).unwrap().normalize())
}
