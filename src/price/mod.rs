//! The price engine: a product page fetched behind the SSRF guard ([`fetch`]), its bytes
//! decoded and scanned, and the price read from it ([`extract`]) with locale-aware price
//! strings ([`parse`]) and currencies. Only [`fetch`] and [`engine`] do I/O.

pub mod catalog;
pub mod currency;
pub mod decode;
pub mod engine;
pub mod extract;
pub mod fetch;
pub mod html;
pub mod lenient_json;
pub mod parse;
pub mod rules;
pub mod sites;

pub use currency::Currency;
pub use parse::{parse_price, CurrencyFound, Hints, ParsedPrice, PriceError};

/// The `probe --price-text` report, also printed as JSON with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TextProbe {
    /// Decimal string, `null` when no price was found.
    pub amount: Option<String>,
    /// ISO 4217, `null` when unknown or ambiguous.
    pub currency: Option<String>,
    /// The currencies an ambiguous sign can mean.
    pub currency_candidates: Vec<String>,
    /// Why there is no price, or why the currency is unknown.
    pub problem: Option<String>,
}

impl TextProbe {
    pub fn run(text: &str, hint: Option<&str>) -> TextProbe {
        let hints = hint.map(Hints::from_text).unwrap_or_default();
        match parse_price(text, &hints) {
            Err(e) => TextProbe {
                amount: None,
                currency: None,
                currency_candidates: Vec::new(),
                problem: Some(e.to_string()),
            },
            Ok(p) => {
                let (currency, currency_candidates, problem) = match p.currency {
                    CurrencyFound::Known(c) => (Some(c.to_string()), Vec::new(), None),
                    CurrencyFound::Ambiguous(cands) => (
                        None,
                        cands.iter().map(Currency::to_string).collect(),
                        Some("the currency sign is ambiguous; give a hint (an ISO code, a locale or a host)".to_owned()),
                    ),
                    CurrencyFound::Unstated => (
                        None,
                        Vec::new(),
                        Some("the text names no currency; give a hint".to_owned()),
                    ),
                };
                TextProbe {
                    amount: Some(p.amount.to_string()),
                    currency,
                    currency_candidates,
                    problem,
                }
            }
        }
    }

    /// A price was found (the currency may still be unknown).
    pub fn found(&self) -> bool {
        self.amount.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_amount_currency_and_problems() {
        let p = TextProbe::run("1.234,56 €", None);
        assert_eq!(p.amount.as_deref(), Some("1234.56"));
        assert_eq!(p.currency.as_deref(), Some("EUR"));
        assert!(p.problem.is_none() && p.found());
        let p = TextProbe::run("$5", None);
        assert_eq!(p.currency, None);
        assert!(p.currency_candidates.contains(&"USD".to_owned()));
        assert!(p.problem.unwrap().contains("ambiguous"));
        assert_eq!(
            TextProbe::run("$5", Some(".com.au")).currency.as_deref(),
            Some("AUD")
        );
        let p = TextProbe::run("Call for price", None);
        assert!(!p.found());
        assert!(p.problem.unwrap().contains("no amount"));
    }
}
