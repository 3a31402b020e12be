//! The `pricewatch probe` command: a product's price read the way the daemon reads it, from
//! its URL, from a saved page or from one price string. It lives in the library, apart from
//! the CLI shell, so that it can be tested without a process; it prints nothing itself but
//! returns what to print and the exit status.

use std::path::{Path, PathBuf};

use serde::Serialize;
use url::Url;

use crate::ops::config::Config;
use crate::ops::CommandOutput;
use crate::price::engine::{Check, EngineError};
use crate::price::extract::Report;
use crate::price::TextProbe;

/// The URL a saved page is read as when none is given.
const SAVED_PAGE_URL: &str = "https://saved-page.invalid/";

/// Where the page comes from.
#[derive(Debug, Clone, Copy)]
pub enum Page<'a> {
    /// Fetched, through the same SSRF guard and limits as the daemon.
    Fetch { url: &'a str },
    /// A saved page; `url` is where it came from (for site rules, `?variant=` and the
    /// currency hint of its domain).
    Saved {
        file: &'a Path,
        url: Option<&'a str>,
    },
}

/// Bad input: the probe could not start (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{text:?} is not a URL")]
    NotAUrl {
        text: String,
        source: url::ParseError,
    },
    #[error("cannot read {}", .file.display())]
    ReadFile {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why a page that was asked for gave no report; the probe still ends normally (exit 1).
#[derive(Debug, thiserror::Error)]
enum Unread {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the site answered 304 Not Modified to an unconditional request")]
    NotModified,
}

/// Probe output also prints JSON lines.
impl CommandOutput {
    fn json_line(&mut self, value: &impl Serialize) {
        match serde_json::to_string(value) {
            Ok(line) => {
                self.stdout.push_str(&line);
                self.stdout.push('\n');
            }
            Err(e) => self
                .stderr
                .push_str(&format!("pricewatch: cannot print the report: {e}\n")),
        }
    }
}

/// `probe --price-text`: one price string, with what the page says about its currency.
pub fn text(text: &str, hint: Option<&str>, json: bool) -> CommandOutput {
    let report = TextProbe::run(text, hint);
    let mut out = CommandOutput {
        ok: report.found(),
        ..CommandOutput::default()
    };
    if json {
        out.json_line(&report);
        return out;
    }
    out.stdout.push_str(&format!(
        "amount: {}\n",
        report.amount.as_deref().unwrap_or("none")
    ));
    let currency = match (&report.currency, report.currency_candidates.is_empty()) {
        (Some(c), _) => c.clone(),
        (None, false) => format!("one of {}", report.currency_candidates.join(", ")),
        (None, true) => "unknown".to_owned(),
    };
    out.stdout.push_str(&format!("currency: {currency}\n"));
    if let Some(p) = &report.problem {
        out.stderr.push_str(&format!("note: {p}\n"));
    }
    out
}

/// `probe URL` and `probe --html FILE`: the page's report, or why it could not be read.
pub fn page(page: Page<'_>, config: &Config, json: bool) -> Result<CommandOutput, ProbeError> {
    let (url, read) = read_page(page, config)?;
    let mut out = CommandOutput::default();
    match read {
        Err(unread) => {
            if json {
                out.json_line(&serde_json::json!({
                    "url": url.as_str(), "amount": null, "currency": null,
                    "error": "fetch_failed", "problem": unread.to_string(),
                }));
            }
            out.stderr
                .push_str(&format!("pricewatch: cannot read {url}: {unread}\n"));
        }
        Ok(report) => {
            if json {
                out.json_line(&report.to_json(url.as_str()));
            } else {
                out.stdout.push_str(&report.to_text(url.as_str()));
            }
            out.ok = report.price().is_ok();
        }
    }
    Ok(out)
}

fn parse_url(text: &str) -> Result<Url, ProbeError> {
    Url::parse(text.trim()).map_err(|source| ProbeError::NotAUrl {
        text: text.to_owned(),
        source,
    })
}

/// Fetches or reads the page; the inner `Err` is a page that could not be fetched.
fn read_page(page: Page<'_>, config: &Config) -> Result<(Url, Result<Report, Unread>), ProbeError> {
    let target = match page {
        Page::Saved { file, url } => {
            let body = std::fs::read(file).map_err(|source| ProbeError::ReadFile {
                file: file.to_owned(),
                source,
            })?;
            let url = parse_url(url.unwrap_or(SAVED_PAGE_URL))?;
            let report = config.extractor()?.extract(&url, &body, None);
            return Ok((url, Ok(report)));
        }
        Page::Fetch { url } => url,
    };
    let url = parse_url(target)?;
    let engine = config.price_engine()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    let report = match runtime.block_on(engine.check(&url, &Default::default())) {
        Ok(Check::Read { report, .. }) => Ok(report),
        Ok(Check::Unchanged { .. }) => Err(Unread::NotModified),
        Err(e) => Err(Unread::Engine(e)),
    };
    Ok((url, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        crate::ops::config::load(None, std::iter::empty()).expect("the embedded defaults")
    }

    #[test]
    fn a_price_text_prints_amount_and_currency_and_notes_problems() {
        let out = text("1.234,56 €", None, false);
        assert_eq!(out.stdout, "amount: 1234.56\ncurrency: EUR\n");
        assert_eq!((out.stderr.as_str(), out.status()), ("", 0));
        let out = text("$5", None, false);
        assert!(
            out.stdout.contains("currency: one of USD"),
            "{}",
            out.stdout
        );
        let out = text("Call for price", None, false);
        assert!(out.stderr.starts_with("note: ") && out.status() == 1);
    }

    #[test]
    fn a_saved_marketplace_page_names_the_builtin_rule_set() {
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pages/site-amazon-de-split-comma-whole.html"
        ));
        let url = Some("https://www.amazon.de/dp/B0FIXT1501");
        let out = page(Page::Saved { file, url }, &defaults(), false).unwrap();
        assert!(
            out.stdout.contains("price:        1299.00 EUR\n"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("method:       site-rule\n"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("rule set:     amazon (built-in): #corePriceDisplay_desktop_feature_div span.priceToPay span.a-price-whole + "),
            "{}",
            out.stdout
        );
        let out = page(Page::Saved { file, url }, &defaults(), true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["method"], "site-rule");
        assert_eq!(v["rule_set"]["name"], "amazon");
        assert_eq!(v["rule_set"]["origin"], "built-in");
        // The same page read as another host: no rule set, no price.
        let out = page(Page::Saved { file, url: None }, &defaults(), true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            (v["error"].as_str(), &v["rule_set"]),
            (Some("no_price"), &serde_json::Value::Null)
        );
    }

    #[test]
    fn a_config_rule_overrides_the_builtin_set_in_the_probe() {
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pages/site-amazon-de-split-comma-whole.html"
        ));
        let config = crate::ops::config::load_str(
            "rules.toml",
            "[[site_rule]]\nhost = \"amazon.de\"\nname = \"uvp\"\n\
             selector = \"#corePriceDisplay_desktop_feature_div span.a-text-price > span.a-offscreen\"\n",
            std::iter::empty(),
        )
        .unwrap();
        let url = Some("https://www.amazon.de/dp/B0FIXT1501");
        let out = page(Page::Saved { file, url }, &config, false).unwrap();
        assert!(
            out.stdout.contains("price:        1499.00 EUR\n"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains("rule set:     uvp ([[site_rule]] 1 in the config): "),
            "{}",
            out.stdout
        );
    }

    #[test]
    fn a_missing_saved_page_or_a_bad_url_is_bad_input() {
        let file = Path::new("no-such-dir/page.html");
        let e = page(Page::Saved { file, url: None }, &defaults(), false).unwrap_err();
        // As main prints it: the error with its cause.
        let shown = |e: &ProbeError| crate::error::Chain(e).to_string();
        assert!(shown(&e).starts_with("cannot read no-such-dir/page.html: "));
        let e = page(Page::Fetch { url: " nope " }, &defaults(), true).unwrap_err();
        assert!(shown(&e).starts_with("\" nope \" is not a URL: "), "{e}");
    }
}
