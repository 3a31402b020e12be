//! The probe report's presentation: a [`Report`] as the `probe` command prints it, in text
//! or as JSON, and the names methods and availabilities are shown with. Kept apart from
//! the extraction so that how a report looks can change without touching how it is found.

use std::fmt;

use serde::Serialize;

use super::{Availability, Candidate, CurrencySource, ExtractError, Method, Report, RuleSetUsed};
use crate::price::Currency;

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::JsonLd => "json-ld",
            Method::Microdata => "microdata",
            Method::Meta => "meta",
            Method::SiteRule => "site-rule",
            Method::JsonApi => "json-api",
        }
    }
}

impl CurrencySource {
    pub fn as_str(self) -> &'static str {
        match self {
            CurrencySource::Page => "page",
            CurrencySource::Domain => "domain",
            CurrencySource::Rule => "rule",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::InStock => "in_stock",
            Availability::OutOfStock => "out_of_stock",
            Availability::Preorder => "preorder",
            Availability::Unknown => "unknown",
        }
    }
}

impl Report {
    /// The `probe` text: one field per line, then the candidates, the chosen one marked.
    pub fn to_text(&self, url: &str) -> String {
        let mut out = format!("url:          {url}\n");
        out.push_str(&format!(
            "title:        {}\n",
            self.title.as_deref().unwrap_or("(none)")
        ));
        let price = match (self.amount, self.currency) {
            (Some(a), Some(c)) => format!("{a} {c}"),
            (Some(a), None) => format!("{a} (currency unknown)"),
            _ => "none".to_owned(),
        };
        out.push_str(&format!("price:        {price}\n"));
        if let Some(from) = self.currency_source() {
            out.push_str(&format!("currency via: {}\n", from.as_str()));
        }
        out.push_str(&format!("availability: {}\n", self.availability.as_str()));
        out.push_str(&format!(
            "method:       {}\n",
            self.method.map_or("none", Method::as_str)
        ));
        if let Some(r) = &self.rule_set {
            let origin = match r.config_rule {
                Some(n) => format!("[[site_rule]] {n} in the config"),
                None => r.origin.to_owned(),
            };
            out.push_str(&format!(
                "rule set:     {} ({origin}): {}\n",
                r.name, r.selector
            ));
        }
        if self.candidates.len() > 1 {
            out.push_str(&format!("candidates:   {}\n", self.candidates.len()));
            for (i, c) in self.candidates.iter().enumerate() {
                out.push_str(&format!(
                    "  {} {} {:<4} {:<12} {:<10} {}\n",
                    if i == 0 { "*" } else { " " },
                    c.amount,
                    c.currency.as_deref().unwrap_or("?"),
                    c.availability.as_str(),
                    c.method.as_str(),
                    c.source
                ));
            }
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("problem:      {e}\n"));
        }
        out
    }
}

/// The `probe --json` shape of a [`Report`].
#[derive(Debug, Serialize)]
pub struct ReportJson<'a> {
    pub url: &'a str,
    pub title: Option<&'a str>,
    pub amount: Option<String>,
    pub currency: Option<&'a str>,
    /// Where `currency` came from (`page`, `domain`, `rule`), `null` when it is unknown.
    pub currency_source: Option<CurrencySource>,
    pub availability: Availability,
    pub method: Option<Method>,
    /// Which site rule set gave a `site-rule` price.
    pub rule_set: Option<&'a RuleSetUsed>,
    pub candidates: &'a [Candidate],
    pub error: Option<&'static str>,
    pub problem: Option<String>,
}

impl Report {
    pub fn to_json<'a>(&'a self, url: &'a str) -> ReportJson<'a> {
        ReportJson {
            url,
            title: self.title.as_deref(),
            amount: self.amount.map(|a| a.to_string()),
            currency: self.currency.as_ref().map(Currency::as_str),
            currency_source: self.currency_source(),
            availability: self.availability,
            method: self.method,
            rule_set: self.rule_set.as_ref(),
            candidates: &self.candidates,
            error: self.error.as_ref().map(ExtractError::code),
            problem: self.error.as_ref().map(ToString::to_string),
        }
    }
}
