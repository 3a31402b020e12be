//! Shop catalogues: what `watch <product name>` searches.
//!
//! An operator lists the shops to search as `[[catalog]]` entries: a JSON search API
//! described by a URL template and JSON pointers (`kind = "json"`), or a Shopify shop, whose
//! storefront answers the public predictive-search endpoint `/search/suggest.json`
//! (`kind = "shopify"`). A search asks every catalogue at once, each within its own
//! `timeout`, through [`PoliteFetch`]: the daemon's fetcher (SSRF guard, body cap) behind
//! the watch loop's politeness gate, so a search is one more request to a shop, never a
//! way around its limits. The matches are ranked here without I/O ([`best`]); the bot
//! shows them and a chosen one becomes an ordinary `watch <link>`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::domain::text::fold;
use crate::error::Chain;
use crate::price::extract::api_price;
use crate::price::fetch::{FetchError, Page};
use crate::price::lenient_json::parse_lenient;
use crate::price::Currency;
use crate::shown::Shown;

/// How long a catalogue has to answer when its entry does not say: the user waits for the
/// reply, and channels give a turn about 15 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `timeout` an entry may set, for the same reason.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// Matches a search shows.
pub const MAX_MATCHES: usize = 5;
/// Results read from one answer: a search API may return hundreds, a user reads a few.
const MAX_RESULTS_READ: usize = 50;
/// A title longer than this is cut: shops pad titles with every keyword they sell.
const MAX_TITLE_CHARS: usize = 120;
/// Shopify's predictive search returns at most 10 products.
const SHOPIFY_LIMIT: &str = "10";
/// Query parameters Shopify adds to a result's link to track the search; the product
/// page is the same without them, so a watch stores the link without them.
const SHOPIFY_TRACKING: [&str; 5] = ["_pos", "_sid", "_ss", "_fid", "_psq"];
/// Everything but the unreserved characters is percent-encoded in a `{query}`, so the
/// words cannot end the query string or add parameters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a catalogue entry describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// A JSON search API: `search_url` and the pointers.
    #[default]
    Json,
    /// A Shopify shop's predictive search: `shop`.
    Shopify,
}

/// `[[catalog]]`: a shop that `watch <product name>` searches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The shop's name as the matches show it; the host when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: CatalogKind,
    /// `kind = "json"`: the search URL, with `{query}` where the words go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_url: Option<String>,
    /// `kind = "json"`: RFC 6901 pointer to the list of results (`""`: the body is the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
    /// `kind = "json"`: pointers inside one result to its title, its link (absolute, or
    /// relative to the search URL) and its price (a number or a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// `kind = "json"`: pointer inside one result to its ISO 4217 code, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_pointer: Option<String>,
    /// `kind = "shopify"`: the shop's host name (`shop.example`, reached over https) or its
    /// base URL (`https://shop.example/fr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop: Option<String>,
    /// ISO 4217 code of the prices the results give without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// How long the shop has to answer a search.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// One bad `[[catalog]]` entry, numbered from 1 in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("catalog {n}: {message}")]
pub struct CatalogError {
    pub n: usize,
    pub message: String,
}

/// A catalogue, compiled from its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// What the matches call the shop.
    pub name: String,
    source: Source,
    currency: Option<Currency>,
    timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Json {
        template: String,
        results: String,
        title: String,
        link: String,
        price: String,
        currency_pointer: Option<String>,
    },
    Shopify {
        base: Url,
    },
}

/// The configured catalogues, in file order. Empty: `watch <product name>` is answered
/// with how to send a link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogs(Vec<Catalog>);

/// One product a catalogue answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub title: String,
    /// The product page, as a `watch` would be given it.
    pub url: Url,
    /// The price and, when the answer or the entry says, its currency.
    pub price: Option<(Decimal, Option<Currency>)>,
    /// The catalogue's name.
    pub shop: String,
    /// Where the catalogue put it (0: its best), and the catalogue's place in the
    /// configuration: the ranking's tie-breakers.
    position: usize,
    catalog: usize,
}

/// Why a catalogue gave nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// No answer within the entry's `timeout`.
    TimedOut(Duration),
    /// The request failed or the shop refused it (the fetcher's words).
    Fetch(String),
    /// An answer that is not what the entry describes.
    Unreadable(String),
}

/// A catalogue that failed during a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub shop: String,
    pub reason: FailReason,
}

/// What a search found: the best matches over every catalogue, and the catalogues that
/// could not be asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    pub found: Vec<Found>,
    pub failed: Vec<Failure>,
}

/// A future [`PoliteFetch`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Page, FetchError>> + Send + 'a>>;

/// How a search reaches a shop: a GET as product pages are fetched (SSRF guard, body cap,
/// the per-host gap and concurrency, a shop's `Retry-After`). The daemon passes its
/// watcher; the catalogue knows nothing else of the loop.
pub trait PoliteFetch: Send + Sync {
    fn fetch_politely<'a>(&'a self, url: &'a Url) -> FetchFuture<'a>;
}

impl Found {
    /// A result as if a single catalogue had given it first (tests and tools; a search
    /// builds its own).
    pub fn new(
        title: &str,
        url: Url,
        price: Option<(Decimal, Option<Currency>)>,
        shop: &str,
    ) -> Found {
        Found {
            title: title.to_owned(),
            url,
            price,
            shop: shop.to_owned(),
            position: 0,
            catalog: 0,
        }
    }
}

impl Catalogs {
    /// Compiles `[[catalog]]` entries; every bad entry is reported, not just the first.
    pub fn compile(entries: &[CatalogConfig]) -> Result<Catalogs, Vec<CatalogError>> {
        let mut catalogs = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match compile_one(entry) {
                Ok(c) => catalogs.push(c),
                Err(messages) => errors.extend(
                    messages
                        .into_iter()
                        .map(|message| CatalogError { n: i + 1, message }),
                ),
            }
        }
        if errors.is_empty() {
            Ok(Catalogs(catalogs))
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Catalog> {
        self.0.iter()
    }

    /// Asks every catalogue for `query` at once and keeps the [`MAX_MATCHES`] best.
    pub async fn search(&self, query: &str, fetch: &dyn PoliteFetch) -> Search {
        let asked = self
            .0
            .iter()
            .enumerate()
            .map(|(i, catalog)| catalog.ask(i, query, fetch));
        let answers = futures_util::future::join_all(asked).await;
        let mut lists = Vec::new();
        let mut failed = Vec::new();
        for (catalog, answer) in self.0.iter().zip(answers) {
            match answer {
                Ok(found) => lists.push(found),
                Err(reason) => {
                    tracing::info!(
                        catalog = %Shown::id(&catalog.name),
                        reason = %Shown::text(format!("{reason:?}")),
                        "a catalogue search failed"
                    );
                    failed.push(Failure {
                        shop: catalog.name.clone(),
                        reason,
                    })
                }
            }
        }
        Search {
            found: best(query, lists, MAX_MATCHES),
            failed,
        }
    }
}

impl Catalog {
    /// The request for `query`.
    pub fn search_url(&self, query: &str) -> Result<Url, url::ParseError> {
        match &self.source {
            Source::Json { template, .. } => {
                let words = utf8_percent_encode(query, QUERY).to_string();
                Url::parse(&template.replace("{query}", &words))
            }
            Source::Shopify { base } => {
                let mut url = base.join("search/suggest.json")?;
                url.query_pairs_mut()
                    .append_pair("q", query)
                    .append_pair("resources[type]", "product")
                    .append_pair("resources[limit]", SHOPIFY_LIMIT)
                    .append_pair("resources[options][unavailable_products]", "last");
                Ok(url)
            }
        }
    }

    async fn ask(
        &self,
        index: usize,
        query: &str,
        fetch: &dyn PoliteFetch,
    ) -> Result<Vec<Found>, FailReason> {
        let url = self
            .search_url(query)
            .map_err(|e| FailReason::Unreadable(format!("its search URL is not valid: {e}")))?;
        let page = match tokio::time::timeout(self.timeout, fetch.fetch_politely(&url)).await {
            Err(_) => return Err(FailReason::TimedOut(self.timeout)),
            Ok(Err(e)) => return Err(FailReason::Fetch(Chain(&e).to_string())),
            Ok(Ok(page)) => page,
        };
        self.read(&page.body, &page.final_url, index)
            .map_err(FailReason::Unreadable)
    }

    /// The products in one answer, in the catalogue's order; results without a title or
    /// a usable link are left out, a result without a readable price is kept without one.
    fn read(&self, body: &[u8], at: &Url, index: usize) -> Result<Vec<Found>, String> {
        let text = String::from_utf8_lossy(body);
        let doc = parse_lenient(&text).ok_or_else(|| "its answer is not JSON".to_owned())?;
        let (results, title, link, price, currency_pointer) = match &self.source {
            Source::Json {
                results,
                title,
                link,
                price,
                currency_pointer,
                ..
            } => (
                results.as_str(),
                title.as_str(),
                link.as_str(),
                price.as_str(),
                currency_pointer.as_deref(),
            ),
            Source::Shopify { .. } => (
                "/resources/results/products",
                "/title",
                "/url",
                "/price",
                None,
            ),
        };
        let list = doc
            .pointer(results)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("its answer has no list of results at {results:?}"))?;
        let shopify = matches!(self.source, Source::Shopify { .. });
        let found = list
            .iter()
            .take(MAX_RESULTS_READ)
            .filter_map(|item| {
                let title = item
                    .pointer(title)
                    .and_then(Value::as_str)
                    .map(clean_title)?;
                let mut url = at.join(item.pointer(link)?.as_str()?.trim()).ok()?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return None;
                }
                if shopify {
                    strip_tracking(&mut url);
                }
                let code = currency_pointer
                    .and_then(|p| text_of(item.pointer(p)))
                    .or_else(|| self.currency.map(|c| c.to_string()));
                let price = text_of(item.pointer(price))
                    .and_then(|raw| api_price(&raw, code.as_deref(), url.host_str().unwrap_or("")));
                Some((title, url, price))
            })
            .filter(|(title, _, _)| !title.is_empty())
            .enumerate()
            .map(|(position, (title, url, price))| Found {
                title,
                url,
                price,
                shop: self.name.clone(),
                position,
                catalog: index,
            })
            .collect();
        Ok(found)
    }
}

fn compile_one(entry: &CatalogConfig) -> Result<Catalog, Vec<String>> {
    let mut errors = Vec::new();
    let currency = entry.currency.as_deref().and_then(|code| {
        let c = Currency::parse(code);
        if c.is_none() {
            errors.push(format!(
                "currency {code:?} is not an ISO 4217 code such as \"EUR\""
            ));
        }
        c
    });
    if entry.timeout.is_zero() || entry.timeout > MAX_TIMEOUT {
        errors.push(format!(
            "timeout must be more than 0s and at most {} (the user waits for the reply), got {}",
            humantime::format_duration(MAX_TIMEOUT),
            humantime::format_duration(entry.timeout)
        ));
    }
    let json_keys = [
        ("search_url", &entry.search_url),
        ("results", &entry.results),
        ("title", &entry.title),
        ("link", &entry.link),
        ("price", &entry.price),
        ("currency_pointer", &entry.currency_pointer),
    ];
    let (source, host) = match entry.kind {
        CatalogKind::Json => {
            if entry.shop.is_some() {
                errors.push(
                    "shop is for kind = \"shopify\"; a JSON catalogue has search_url".to_owned(),
                );
            }
            for (key, value) in &json_keys[1..] {
                if let Some(p) = value {
                    if !p.is_empty() && !p.starts_with('/') {
                        errors.push(format!(
                            "{key} {p:?} is not a JSON pointer (it starts with \"/\", e.g. \"/{p}\")"
                        ));
                    }
                }
            }
            let mut required = |key: &str, value: &Option<String>| match value {
                Some(v) => v.clone(),
                None => {
                    errors.push(format!("{key} is missing (kind = \"json\" needs search_url, results, title, link and price)"));
                    String::new()
                }
            };
            let template = required("search_url", &entry.search_url);
            let results = required("results", &entry.results);
            let title = required("title", &entry.title);
            let link = required("link", &entry.link);
            let price = required("price", &entry.price);
            let host = if template.is_empty() {
                None
            } else {
                check_template(&template).map_err(|e| errors.push(e)).ok()
            };
            (
                Source::Json {
                    template,
                    results,
                    title,
                    link,
                    price,
                    currency_pointer: entry.currency_pointer.clone(),
                },
                host,
            )
        }
        CatalogKind::Shopify => {
            for (key, value) in json_keys {
                if value.is_some() {
                    errors.push(format!(
                        "{key} is for kind = \"json\"; a Shopify catalogue has only shop"
                    ));
                }
            }
            match entry.shop.as_deref().map(shop_base) {
                Some(Ok(base)) => {
                    let host = base.host_str().map(str::to_owned);
                    (Source::Shopify { base }, host)
                }
                Some(Err(e)) => {
                    errors.push(e);
                    (
                        Source::Shopify {
                            base: placeholder(),
                        },
                        None,
                    )
                }
                None => {
                    errors.push(
                        "shop is missing (kind = \"shopify\" needs the shop's host name or URL)"
                            .to_owned(),
                    );
                    (
                        Source::Shopify {
                            base: placeholder(),
                        },
                        None,
                    )
                }
            }
        }
    };
    if let Some(name) = &entry.name {
        if name.trim().is_empty() || name.chars().count() > 60 {
            errors.push("name must be 1 to 60 characters".to_owned());
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Catalog {
        name: entry
            .name
            .as_deref()
            .map(|n| n.trim().to_owned())
            .or(host)
            .unwrap_or_default(),
        source,
        currency,
        timeout: entry.timeout,
    })
}

/// Never used: only a valid entry is compiled into a catalogue.
fn placeholder() -> Url {
    Url::parse("https://shop.invalid/").expect("a valid URL")
}

/// The host a `search_url` template names, or why it cannot be used.
fn check_template(template: &str) -> Result<String, String> {
    if !template.contains("{query}") {
        return Err(format!(
            "search_url {template:?} has no {{query}} where the searched words go"
        ));
    }
    // A marker no real host has, to see where the words would land.
    match Url::parse(&template.replace("{query}", "pricewatch-query")) {
        Ok(u) if u.host_str().is_some_and(|h| h.contains("pricewatch-query")) => Err(format!(
            "search_url {template:?} puts {{query}} in the host name"
        )),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(u.host_str().unwrap_or_default().to_owned())
        }
        _ => Err(format!(
            "search_url {template:?} is not an http(s) URL template"
        )),
    }
}

/// A Shopify `shop`: a host name means https; a URL keeps its path (a locale, `/fr`).
fn shop_base(shop: &str) -> Result<Url, String> {
    let shop = shop.trim();
    let text = if shop.contains("://") {
        shop.to_owned()
    } else {
        format!("https://{shop}/")
    };
    match Url::parse(&text) {
        Ok(mut u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none() =>
        {
            if !u.path().ends_with('/') {
                let path = format!("{}/", u.path());
                u.set_path(&path);
            }
            Ok(u)
        }
        _ => Err(format!(
            "shop {shop:?} is not a host name (\"shop.example\") or an http(s) base URL"
        )),
    }
}

/// A number or a string, as text.
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Entities decoded, white space collapsed, cut at [`MAX_TITLE_CHARS`].
fn clean_title(raw: &str) -> String {
    let decoded = if raw.contains('&') {
        htmlize::unescape(raw).into_owned()
    } else {
        raw.to_owned()
    };
    let collapsed = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= MAX_TITLE_CHARS {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(MAX_TITLE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn strip_tracking(url: &mut Url) {
    if url.query().is_none() {
        return;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !SHOPIFY_TRACKING.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

/// Lower-case words without accents, for comparing a query with titles.
fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| fold(&w.to_lowercase()))
        .collect()
}

/// The `max` best of several catalogues' results: the more of the query's words a title
/// has (a title word that starts with a query word counts: `skillets` for `skillet`), the
/// better; then each catalogue's own order, which knows its shop; then the catalogues'
/// order in the configuration. A link two catalogues both gave is shown once.
pub fn best(query: &str, lists: Vec<Vec<Found>>, max: usize) -> Vec<Found> {
    let wanted = terms(query);
    let score = |title: &str| {
        let have = terms(title);
        wanted
            .iter()
            .filter(|w| have.iter().any(|h| h.starts_with(w.as_str())))
            .count()
    };
    let mut all: Vec<(usize, Found)> = lists
        .into_iter()
        .flatten()
        .map(|f| (score(&f.title), f))
        .collect();
    all.sort_by(|(sa, a), (sb, b)| {
        sb.cmp(sa)
            .then(a.position.cmp(&b.position))
            .then(a.catalog.cmp(&b.catalog))
    });
    let mut out: Vec<Found> = Vec::with_capacity(max);
    for (_, f) in all {
        if out.len() == max {
            break;
        }
        if !out.iter().any(|o| o.url == f.url) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_entry() -> CatalogConfig {
        CatalogConfig {
            name: Some("Kitchen Co".into()),
            kind: CatalogKind::Json,
            search_url: Some("https://api.kitchen.example/search?q={query}&n=20".into()),
            results: Some("/data/items".into()),
            title: Some("/name".into()),
            link: Some("/href".into()),
            price: Some("/price/amount".into()),
            currency_pointer: Some("/price/currency".into()),
            shop: None,
            currency: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn shopify_entry(shop: &str) -> CatalogConfig {
        CatalogConfig {
            name: None,
            kind: CatalogKind::Shopify,
            search_url: None,
            results: None,
            title: None,
            link: None,
            price: None,
            currency_pointer: None,
            shop: Some(shop.into()),
            currency: Some("CAD".into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn one(entry: CatalogConfig) -> Catalog {
        Catalogs::compile(&[entry]).unwrap().0.remove(0)
    }

    fn errors(entry: CatalogConfig) -> Vec<String> {
        Catalogs::compile(&[entry])
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_query_is_percent_encoded_into_the_template() {
        let c = one(json_entry());
        let url = c.search_url("cast iron & co/10\"").unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.kitchen.example/search?q=cast%20iron%20%26%20co%2F10%22&n=20"
        );
        assert_eq!(url.query_pairs().count(), 2, "the words add no parameter");
        assert_eq!(
            c.search_url("poêle").unwrap().query(),
            Some("q=po%C3%AAle&n=20")
        );
    }

    #[test]
    fn shopify_asks_its_predictive_search_for_products() {
        let c = one(shopify_entry("skillets.example"));
        assert_eq!(
            c.name, "skillets.example",
            "the host names a nameless catalogue"
        );
        let url = c.search_url("cast iron").unwrap();
        assert_eq!(url.path(), "/search/suggest.json");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("q".into(), "cast iron".into()));
        assert!(pairs.contains(&("resources[type]".into(), "product".into())));
        // A base URL keeps its path: a locale's storefront.
        let fr = one(shopify_entry("http://127.0.0.1:8080/fr"));
        assert_eq!(
            fr.search_url("x").unwrap().path(),
            "/fr/search/suggest.json"
        );
    }

    #[test]
    fn bad_entries_are_named_with_what_to_write() {
        let mut e = json_entry();
        e.search_url = Some("https://api.kitchen.example/search".into());
        e.title = Some("name".into());
        e.price = None;
        e.currency = Some("EURO".into());
        e.timeout = Duration::from_secs(60);
        let got = errors(e);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got.iter().all(|m| m.starts_with("catalog 1: ")), "{got:#?}");
        for part in [
            "has no {query}",
            "\"name\" is not a JSON pointer",
            "price is missing",
            "\"EURO\"",
            "at most 10s",
        ] {
            assert!(got.iter().any(|m| m.contains(part)), "{part}: {got:#?}");
        }

        let mut e = json_entry();
        e.search_url = Some("ftp://x.example/{query}".into());
        assert!(errors(e)[0].contains("not an http(s) URL template"));
        let mut e = json_entry();
        e.search_url = Some("https://{query}.example/".into());
        assert!(errors(e)[0].contains("in the host name"));

        let mut s = shopify_entry("shop.example");
        s.price = Some("/price".into());
        assert!(errors(s)[0].contains("price is for kind = \"json\""));
        let mut s = shopify_entry("x");
        s.shop = None;
        assert!(errors(s)[0].contains("shop is missing"));
        assert!(errors(shopify_entry("ftp://shop.example"))[0].contains("not a host name"));
    }

    #[test]
    fn a_json_answer_gives_title_link_price_and_currency() {
        let c = one(json_entry());
        let at = c.search_url("skillet").unwrap();
        let body = r#"{"data": {"items": [
            {"name": "Lodge  Cast Iron\n Skillet &amp; Lid", "href": "/p/lodge-10", "price": {"amount": 29.9, "currency": "USD"}},
            {"name": "No link"},
            {"name": "Enamel skillet", "href": "https://shop.kitchen.example/p/2", "price": {"amount": "34,50 €"}},
            {"name": "Mystery pan", "href": "javascript:alert(1)", "price": {"amount": 1}},
            {"name": "Pan without price", "href": "/p/3"}
        ]}}"#;
        let found = c.read(body.as_bytes(), &at, 0).unwrap();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(found[0].title, "Lodge Cast Iron Skillet & Lid");
        assert_eq!(
            found[0].url.as_str(),
            "https://api.kitchen.example/p/lodge-10"
        );
        assert_eq!(
            found[0].price,
            Some((Decimal::new(299, 1), Currency::parse("USD")))
        );
        assert_eq!(found[0].shop, "Kitchen Co");
        assert_eq!(
            found[1].price,
            Some((Decimal::new(3450, 2), Currency::parse("EUR"))),
            "a price string is read with its sign"
        );
        assert_eq!(found[2].price, None);
        assert!(c.read(b"<html>", &at, 0).unwrap_err().contains("not JSON"));
        assert!(c
            .read(br#"{"data": {}}"#, &at, 0)
            .unwrap_err()
            .contains("no list of results at \"/data/items\""));
    }

    #[test]
    fn shopify_results_lose_their_search_tracking() {
        let c = one(shopify_entry("skillets.example"));
        let at = c.search_url("skillet").unwrap();
        let body = br#"{"resources": {"results": {"products": [
            {"title": "Skillet 10\"", "url": "/products/skillet-10?variant=7&_pos=1&_sid=ab12&_ss=r", "price": "39.00", "available": true},
            {"title": "Skillet 12\"", "url": "/products/skillet-12?_pos=2&_sid=ab12&_ss=r", "price": "49.00"}
        ]}}}"#;
        let found = c.read(body, &at, 0).unwrap();
        assert_eq!(
            found[0].url.as_str(),
            "https://skillets.example/products/skillet-10?variant=7"
        );
        assert_eq!(
            found[1].url.as_str(),
            "https://skillets.example/products/skillet-12"
        );
        assert_eq!(
            found[1].price,
            Some((Decimal::new(4900, 2), Currency::parse("CAD"))),
            "the entry's currency"
        );
    }

    fn found(title: &str, url: &str, position: usize, catalog: usize) -> Found {
        Found {
            title: title.into(),
            url: Url::parse(url).unwrap(),
            price: None,
            shop: format!("shop {catalog}"),
            position,
            catalog,
        }
    }

    #[test]
    fn titles_with_more_of_the_query_rank_first_then_each_shops_order() {
        let a = vec![
            found("Dutch oven", "https://a.example/1", 0, 0),
            found("Cast iron skillets, set of 2", "https://a.example/2", 1, 0),
            found("Iron skillet", "https://a.example/3", 2, 0),
        ];
        let b = vec![
            found(
                "Poêle en fonte – Cast Iron Skillet",
                "https://b.example/1",
                0,
                1,
            ),
            found("Cast iron skillet", "https://a.example/2", 1, 1),
        ];
        let best = best("cast iron skillet", vec![a, b], 3);
        let urls: Vec<&str> = best.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://b.example/1",
                "https://a.example/2",
                "https://a.example/3"
            ],
            "three words beat two, a shop's first beats its second, a link shows once"
        );
        let accents = best_titles(
            "poele fonte",
            vec![vec![found("Poêle en FONTE", "https://c.example/1", 0, 0)]],
        );
        assert_eq!(accents, ["Poêle en FONTE"]);
    }

    fn best_titles(query: &str, lists: Vec<Vec<Found>>) -> Vec<String> {
        best(query, lists, MAX_MATCHES)
            .into_iter()
            .map(|f| f.title)
            .collect()
    }
}
