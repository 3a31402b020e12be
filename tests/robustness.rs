//! Hostile and broken bodies against the price engine: nothing panics, every report is
//! consistent, and work and memory are bounded by construction (size limits, depth limits),
//! never checked with timers.
//!
//! The property tests throw arbitrary bytes, grammar-generated HTML and arbitrary price strings
//! at the extractor and the price parser. The deterministic tests cover the cases the issue
//! lists: garbage bytes, truncated pages, 50,000-deep nesting, a 100 MB page, invalid and
//! unclosed JSON-LD, a page right at the 5 MiB limit, NUL bytes and invalid UTF-8, and `<meta
//! charset>` naming encodings nobody knows. The fuzz targets in `fuzz/` run the same checks for
//! longer.
//!
//! Memory is measured with a counting global allocator that keeps its counters per thread: the
//! extractor is pure and single-threaded, so what the test thread allocates while it runs is
//! exactly what the extraction costs, whatever the other tests of this file do at the same time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pricewatch::price::decode::decode_html;
use pricewatch::price::extract::{ExtractError, Extractor, Method, Report};
use pricewatch::price::html::{scan, SiteSelector};
use pricewatch::price::lenient_json::parse_lenient;
use pricewatch::price::rules::{builtin_rules, JsonApiRule, Rules, SiteRule, UrlMatch};
use pricewatch::price::{parse_price, Currency, Hints};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rust_decimal::Decimal;
use serde_json::Value;
use url::Url;

/// The production limit (`fetch.max_body_bytes`).
const MAX_BYTES: usize = 5 << 20;

// ---------------------------------------------------------------------------------------------
// Memory accounting.

/// `System`, counting the bytes each thread holds and the most it held since the last reset.
struct Counting;

thread_local! {
    // Const-initialised `Cell`s of a `Copy` type: no lazy initialisation and no destructor, so
    // the allocator can touch them without allocating or re-entering itself.
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + delta;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes this thread held at once beyond what
/// it held before (the result included).
fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, usize::try_from(peak).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

fn url() -> Url {
    Url::parse("https://shop.example.de/p/widget?variant=123").unwrap()
}

fn plain() -> Extractor {
    Extractor::new(Rules::default(), MAX_BYTES)
}

/// The rule sets a body goes through in the property tests: none, a CSS text rule, a CSS
/// attribute rule, and a JSON API rule.
fn extractors() -> Vec<Extractor> {
    let site = |selector: &str, attribute: Option<&str>| Rules {
        sites: vec![(
            UrlMatch::Host("example.de".to_owned()),
            SiteRule::single(
                "example.de",
                SiteSelector::new(selector, attribute).unwrap(),
                selector,
            ),
        )],
        apis: Vec::new(),
    };
    let api = Rules {
        sites: Vec::new(),
        apis: vec![(
            UrlMatch::Pattern("https://shop.example.de/*".to_owned()),
            JsonApiRule {
                price_pointer: "/variants/0/price".to_owned(),
                currency_pointer: Some("/currency".to_owned()),
                currency: Currency::parse("EUR"),
                minor_units: true,
            },
        )],
    };
    vec![
        plain(),
        Extractor::new(site("div.price-box span.price", None), MAX_BYTES),
        Extractor::new(site("[data-price]", Some("data-price")), MAX_BYTES),
        Extractor::new(api, MAX_BYTES),
    ]
}

/// What every report must satisfy, whatever the body: positive amounts, a price whenever there
/// is no error, and a size bounded by the body's.
fn check(report: &Report, body_len: usize) {
    if let Some(amount) = report.amount {
        assert!(amount > Decimal::ZERO, "non-positive amount in {report:?}");
    }
    for c in &report.candidates {
        assert!(
            c.amount > Decimal::ZERO,
            "non-positive candidate in {report:?}"
        );
    }
    match &report.error {
        None => assert!(
            report.amount.is_some() && report.currency.is_some(),
            "no error but no price: {report:?}"
        ),
        Some(e) => assert!(!e.to_string().is_empty()),
    }
    assert_eq!(report.price().is_ok(), report.error.is_none());
    // Decoding makes at most three UTF-8 bytes of one body byte; nothing the report holds can
    // be longer than the decoded page.
    if let Some(title) = &report.title {
        assert!(
            title.len() <= 3 * body_len,
            "title longer than the page: {report:?}"
        );
    }
    assert!(report.candidates.len() <= body_len / 2 + 1);
    serde_json::to_string(&report.to_json(url().as_str())).unwrap();
}

fn extract(body: &[u8]) -> Report {
    let report = plain().extract(&url(), body, Some("text/html"));
    check(&report, body.len());
    report
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Asserts the report is `amount` in `currency`, found by `method`.
fn assert_price(report: &Report, amount: &str, currency: &str, method: Method) {
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.amount, Some(dec(amount)), "{report:?}");
    assert_eq!(
        report.currency.as_ref().map(Currency::as_str),
        Some(currency),
        "{report:?}"
    );
    assert_eq!(report.method, Some(method), "{report:?}");
}

fn assert_no_price(report: &Report) {
    assert_eq!(report.amount, None, "{report:?}");
    assert!(
        matches!(
            report.error,
            Some(ExtractError::NoPrice(_) | ExtractError::ZeroPrice)
        ),
        "{report:?}"
    );
}

const PRODUCT_JSON: &str = r#"{"@context":"https://schema.org","@type":"Product","name":"Widget €","offers":{"@type":"Offer","price":"1234.56","priceCurrency":"EUR","availability":"https://schema.org/InStock"}}"#;

fn product_ld() -> String {
    format!(r#"<script type="application/ld+json">{PRODUCT_JSON}</script>"#)
}

/// A microdata product whose only offer is 77.00 EUR.
const MICRODATA_OFFER: &str = r#"<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">Micro widget</h1><div itemprop="offers" itemscope itemtype="https://schema.org/Offer"><meta itemprop="price" content="77.00"><meta itemprop="priceCurrency" content="EUR"></div></div>"#;

fn page(head: &str, body: &str) -> String {
    format!("<!doctype html><html><head><title>Shop</title>{head}</head><body>{body}</body></html>")
}

/// Small deterministic generator (xorshift64*), so "random" bodies are the same on every run.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pages");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    assert!(pages.len() > 40, "the fixture pages are missing");
    pages
}

// ---------------------------------------------------------------------------------------------
// Property tests.

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const TAGS: &[&str] = &[
    "div",
    "span",
    "p",
    "meta",
    "link",
    "script",
    "style",
    "title",
    "h1",
    "table",
    "tr",
    "td",
    "select",
    "option",
    "template",
    "noscript",
    "textarea",
    "xmp",
    "iframe",
    "plaintext",
    "svg",
    "math",
    "a",
    "li",
    "head",
    "body",
    "html",
    "br",
    "img",
    "form",
];

const PRICES: &[&str] = &[
    "12.99",
    "1.234,56 €",
    "$5",
    "CHF 1'049.95",
    "0.00",
    "-3",
    "1e9",
    "Save $200! Now $799",
    "£1,299",
    "99p",
    "2 for $5",
    "12,-",
    "¥12,800",
    "",
];

const WORDS: &[&str] = &[
    "Product",
    "Offer",
    "AggregateOffer",
    "ProductGroup",
    "EUR",
    "USD",
    "GBP",
    "InStock",
    "https://schema.org/OutOfStock",
    "123",
    "https://shop.example.de/p/widget?variant=123",
    "price",
    "og:price:amount",
    "product:price:currency",
    "application/ld+json",
    "utf-8",
    "windows-1252",
    "x-klingon",
];

fn attribute_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PRICES).prop_map(str::to_owned),
        prop::sample::select(WORDS).prop_map(str::to_owned),
        Just("https://schema.org/Product".to_owned()),
        Just("https://schema.org/Offer".to_owned()),
        "[ -~]{0,12}",
    ]
}

fn attribute() -> impl Strategy<Value = String> {
    let name = prop::sample::select(
        &[
            "itemscope",
            "itemtype",
            "itemprop",
            "itemid",
            "itemref",
            "content",
            "class",
            "data-price",
            "property",
            "name",
            "type",
            "charset",
            "http-equiv",
            "href",
            "id",
            "src",
        ][..],
    );
    let quote = prop::sample::select(&["\"", "'", "", "\"unterminated"][..]);
    (name, attribute_value(), quote, any::<bool>()).prop_map(|(name, value, quote, bare)| {
        if bare || name == "itemscope" {
            name.to_owned()
        } else if let Some(rest) = quote.strip_prefix('"').filter(|r| !r.is_empty()) {
            format!("{name}=\"{value}{rest}")
        } else {
            format!("{name}={quote}{value}{quote}")
        }
    })
}

/// A JSON-LD-shaped value: schema.org keys, prices, nested objects and arrays.
fn json_ld_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        prop::sample::select(PRICES).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
    ];
    let key = prop::sample::select(
        &[
            "@type",
            "@context",
            "@graph",
            "@id",
            "offers",
            "price",
            "priceCurrency",
            "lowPrice",
            "highPrice",
            "availability",
            "name",
            "sku",
            "url",
            "hasVariant",
            "itemListElement",
            "priceSpecification",
            "offerCount",
            "mainEntity",
        ][..],
    );
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A JSON-LD script, whole or broken in one of the ways real pages break it.
fn json_ld_script() -> impl Strategy<Value = String> {
    (
        json_ld_value(),
        0..7u8,
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(value, damage, cut, closed)| {
            let json = value.to_string();
            let json = match damage {
                0 => json,
                1 => {
                    let mut at = cut.index(json.len() + 1);
                    while !json.is_char_boundary(at) {
                        at -= 1;
                    }
                    json[..at].to_owned()
                }
                2 => json.replace('}', ",}").replace(']', ",]"),
                3 => format!("<!--\n{json}\n-->"),
                4 => json.replace('"', "&quot;"),
                5 => json.replace(':', ":\n"),
                _ => format!("//<![CDATA[\n{json}\n//]]>"),
            };
            let end = if closed { "</script>" } else { "" };
            format!(r#"<script type="application/ld+json">{json}{end}"#)
        })
}

fn fragment() -> impl Strategy<Value = String> {
    let tag = prop::sample::select(TAGS);
    prop_oneof![
        4 => (tag.clone(), prop::collection::vec(attribute(), 0..4), any::<bool>()).prop_map(
            |(tag, attrs, self_closing)| {
                let slash = if self_closing { "/" } else { "" };
                format!("<{tag} {}{slash}>", attrs.join(" "))
            }
        ),
        3 => tag.prop_map(|t| format!("</{t}>")),
        3 => prop::sample::select(PRICES).prop_map(str::to_owned),
        2 => "[ -~]{0,16}",
        1 => json_ld_script(),
        1 => prop::sample::select(&[
            "<!-- a comment -->", "<!--", "-->", "<!-->", "<![CDATA[", "]]>", "&quot;", "&euro;",
            "&#x20AC;", "&#99999999;", "&", "<", ">", "<!doctype html>", "<?xml version=\"1.0\"?>",
            "\u{0}", "\u{FFFD}", "\u{202F}", "<meta charset=\"x-klingon\">",
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\">",
        ][..])
        .prop_map(str::to_owned),
    ]
}

fn html_page() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..48).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(48))]

    /// Any bytes, under every rule set and a few content types.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..65_536),
        rules in 0..4usize,
        content_type in prop::sample::select(&[
            None,
            Some("text/html"),
            Some("text/html; charset=windows-1252"),
            Some("text/html; charset=shift_jis"),
            Some("text/html; charset=utf-16be"),
        ][..]),
    ) {
        check(&extractors()[rules].extract(&url(), &body, content_type), body.len());
    }
}

proptest! {
    #![proptest_config(config(192))]

    /// HTML-ish pages from a grammar of tags, microdata attributes, JSON-LD scripts (whole and
    /// broken), comments and price strings.
    #[test]
    fn generated_html_never_panics(html in html_page()) {
        for extractor in extractors().iter().take(3) {
            check(&extractor.extract(&url(), html.as_bytes(), Some("text/html")), html.len());
        }
        if let Some(script) = html.split("ld+json\">").nth(1) {
            let _ = parse_lenient(script.split("</script>").next().unwrap_or(script));
        }
    }

    /// The JSON-LD fast path changes no report: generated pages with a whole product script
    /// somewhere among their fragments (so that the fast path has a price to read), under the
    /// rule sets without an API rule, read the same with the fast path on and off.
    #[test]
    fn the_fast_path_changes_no_report(
        parts in prop::collection::vec(fragment(), 0..32),
        at in any::<prop::sample::Index>(),
    ) {
        let mut parts = parts;
        parts.insert(at.index(parts.len() + 1), product_ld());
        let html = parts.concat();
        let pairs = extractors()
            .into_iter()
            .zip(extractors().into_iter().map(|e| e.with_fast_path(false)))
            .take(3);
        for (on, off) in pairs {
            let got = on.extract(&url(), html.as_bytes(), Some("text/html"));
            let want = off.extract(&url(), html.as_bytes(), Some("text/html"));
            prop_assert_eq!(got, want, "{:?}", html);
        }
    }

    /// Generated JSON-LD, whole or broken, as the lenient parser sees it: whole JSON always
    /// parses (numbers become strings, so compare shapes only).
    #[test]
    fn generated_json_ld_parses_when_whole(value in json_ld_value()) {
        let text = value.to_string();
        prop_assert!(parse_lenient(&text).is_some(), "{}", text);
    }
}

proptest! {
    #![proptest_config(config(800))]

    /// Any string, under several hints: an accepted amount is positive.
    #[test]
    fn price_strings_never_panic(
        text in prop_oneof![
            any::<String>(),
            "[0-9 .,'’€$£¥kr-]{0,24}",
            "(was|now|save|from|statt|ab|CHF|EUR|R\\$|zł|%|\\(|\\)| |[0-9]{1,4}|[.,']){0,12}",
        ],
        hint in prop::sample::select(&["", "EUR", "KWD", "JPY", "de-DE", "sv-SE", ".com.au", "shop.example.jp", "x"][..]),
    ) {
        for hints in [Hints::default(), Hints::from_text(hint)] {
            if let Ok(p) = parse_price(&text, &hints) {
                prop_assert!(p.amount > Decimal::ZERO, "{:?} gave {}", text, p.amount);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases (issue point 7).

/// lol_html loses track of a tag when a raw-text element's start tag ends in an attribute with
/// `=` and no value and a `<script` follows inside it, while a selector asks for the script's
/// attributes (found by `the_fast_path_changes_no_report`). A release build reports that as a
/// parser error; the page must get that error, by either path, and never a panic.
#[test]
fn raw_text_with_an_empty_attribute_value_is_an_error() {
    for opening in [
        "<noscript 0=>",
        "<style a=>",
        "<textarea a=>",
        "<iframe a=>",
    ] {
        let html = page("", &format!("{}{opening}<script </script>", product_ld()));
        for (on, off) in extractors()
            .into_iter()
            .zip(extractors().into_iter().map(|e| e.with_fast_path(false)))
        {
            let got = on.extract(&url(), html.as_bytes(), Some("text/html"));
            check(&got, html.len());
            let want = off.extract(&url(), html.as_bytes(), Some("text/html"));
            assert_eq!(got, want, "{html}");
        }
        let report = extract(html.as_bytes());
        assert_eq!(report.amount, None, "{report:?}");
        assert!(
            matches!(report.error, Some(ExtractError::Unreadable(_))),
            "{opening}: {report:?}"
        );
    }
}

#[test]
fn garbage_bytes_are_no_price() {
    for (len, seed) in [(1, 1), (17, 2), (4096, 3), (256 << 10, 4)] {
        let body = garbage(len, seed);
        for (i, extractor) in extractors().iter().enumerate() {
            let report = extractor.extract(&url(), &body, None);
            check(&report, body.len());
            assert_eq!(report.amount, None, "{report:?}");
            if i == 3 {
                // The JSON API rule matches: garbage is not JSON.
                assert!(
                    matches!(report.error, Some(ExtractError::Unreadable(_))),
                    "{report:?}"
                );
            } else {
                assert_no_price(&report);
            }
        }
    }
}

/// Every fixture page cut at several points, with its own URL, content type and site rule.
#[test]
fn truncated_fixture_pages() {
    for path in fixtures() {
        let body = std::fs::read(&path).unwrap();
        let side: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("expected.json")).unwrap())
                .unwrap();
        let page_url = Url::parse(side["url"].as_str().unwrap()).unwrap();
        let mut rules = Rules {
            sites: builtin_rules(),
            apis: Vec::new(),
        };
        if let Some(rule) = side.get("site_rule").filter(|r| !r.is_null()) {
            let selector = rule["selector"].as_str().unwrap();
            let host = page_url.host_str().unwrap();
            rules.sites.insert(
                0,
                (
                    UrlMatch::Host(host.to_owned()),
                    SiteRule::single(
                        host,
                        SiteSelector::new(selector, rule["attribute"].as_str()).unwrap(),
                        selector,
                    ),
                ),
            );
        }
        let extractor = Extractor::new(rules, MAX_BYTES);
        let content_type = side["content_type"].as_str().unwrap_or("text/html");
        let n = body.len();
        let mut cuts = vec![0, 1, n / 3, n / 2, n - 1];
        // Inside the first JSON-LD script and right after the first price markup.
        for needle in [&b"ld+json"[..], b"itemprop=\"price\"", b"og:price"] {
            if let Some(at) = body.windows(needle.len()).position(|w| w == needle) {
                cuts.extend([at + needle.len() + 3, (at + needle.len() + 40).min(n)]);
            }
        }
        for cut in cuts {
            let report = extractor.extract(&page_url, &body[..cut], Some(content_type));
            check(&report, cut);
            if cut < 64 {
                assert_eq!(report.amount, None, "{}: {report:?}", path.display());
            }
        }
    }
}

#[test]
fn fifty_thousand_nested_divs() {
    let depth = 50_000;
    let nested = |open: &str, close: &str, inner: &str| {
        let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
        for _ in 0..depth {
            s.push_str(open);
        }
        s.push_str(inner);
        for _ in 0..depth {
            s.push_str(close);
        }
        s
    };
    // JSON-LD in the head, absurd nesting in the body: the price still comes out.
    let body = nested("<div>", "</div>", "<span>deep</span>");
    let report = extract(page(&product_ld(), &body).as_bytes());
    assert_price(&report, "1234.56", "EUR", Method::JsonLd);
    // Never closed.
    let body = nested("<div>", "", "");
    let report = extract(page(&product_ld(), &body).as_bytes());
    assert_price(&report, "1234.56", "EUR", Method::JsonLd);
    // Nothing but nesting: no price, and an error that says what was looked for.
    let report = extract(page("", &body).as_bytes());
    assert_no_price(&report);
}

#[test]
fn fifty_thousand_nested_microdata_products() {
    let depth = 50_000;
    let open = r#"<div itemscope itemtype="https://schema.org/Product">"#;
    let mut body = String::new();
    // The outermost product carries the offer; 50,000 products nest below it.
    body.push_str(&MICRODATA_OFFER[..MICRODATA_OFFER.len() - "</div>".len()]);
    for _ in 0..depth {
        body.push_str(open);
    }
    body.push_str(
        r#"<meta itemprop="price" content="5.00"><meta itemprop="priceCurrency" content="EUR">"#,
    );
    for _ in 0..=depth {
        body.push_str("</div>");
    }
    let report = extract(page("", &body).as_bytes());
    assert_price(&report, "77.00", "EUR", Method::Microdata);
    // Only the nesting, never closed: no panic, no price from beyond the depth limit.
    let only = open.repeat(depth);
    let report = extract(page("", &only).as_bytes());
    assert_no_price(&report);
}

#[test]
fn fifty_thousand_nested_json_ld_values() {
    let depth = 50_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!(
        "{}1{}",
        r#"{"@type":"Product","offers":"#.repeat(depth),
        "}".repeat(depth)
    );
    let unclosed = "[{\"a\":".repeat(depth);
    for deep in [&arrays, &objects, &unclosed] {
        assert_eq!(parse_lenient(deep), None);
        let script = format!(r#"<script type="application/ld+json">{deep}</script>"#);
        // Alone: no price.
        assert_no_price(&extract(page(&script, "").as_bytes()));
        // Next to a good script: its price.
        let report = extract(page(&format!("{script}{}", product_ld()), "").as_bytes());
        assert_price(&report, "1234.56", "EUR", Method::JsonLd);
        // Next to microdata: the microdata price.
        let report = extract(page(&script, MICRODATA_OFFER).as_bytes());
        assert_price(&report, "77.00", "EUR", Method::Microdata);
    }
}

/// A 100 MB body is refused by the size limit before any work, with a message that says so,
/// and costs nothing beyond the body itself.
#[test]
fn hundred_megabyte_page_is_refused() {
    let len = 100 << 20;
    let (start, end) = (
        &b"<!doctype html><html><body><p>"[..],
        &b"</p></body></html>"[..],
    );
    let mut body = vec![b'a'; len];
    body[..start.len()].copy_from_slice(start);
    body[len - end.len()..].copy_from_slice(end);
    assert_eq!(body.len(), len);
    let (report, peak) = peak_bytes(|| plain().extract(&url(), &body, Some("text/html")));
    let error = report.error.as_ref().expect("refused");
    assert!(matches!(error, ExtractError::Unreadable(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&len.to_string()) && message.contains(&MAX_BYTES.to_string()),
        "the message names the size and the limit: {message}"
    );
    assert_eq!(report.amount, None);
    assert!(
        peak < 64 << 10,
        "refusing a 100 MB page allocated {peak} bytes"
    );
    // The scanner refuses oversized text on its own too.
    let text = std::str::from_utf8(&body).unwrap();
    let (result, peak) = peak_bytes(|| scan(text, None, MAX_BYTES));
    let message = result.expect_err("refused").to_string();
    assert!(message.contains(&len.to_string()), "{message}");
    assert!(peak < 64 << 10, "scan allocated {peak} bytes to refuse");
    // One byte over the limit is over it.
    let report = plain().extract(&url(), &body[..MAX_BYTES + 1], None);
    assert!(
        matches!(report.error, Some(ExtractError::Unreadable(_))),
        "{report:?}"
    );
}

/// Pads `head` and `tail` with related-product cards to exactly `len` bytes.
fn padded_page(head: &str, tail: &str, len: usize) -> Vec<u8> {
    let card = "<div class=\"card\"><a href=\"/p/related\">Related thing</a> \
                <span class=\"price\">9,99 EUR</span><p>Lorem ipsum dolor sit amet.</p></div>\n";
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(
        format!("<!doctype html><html><head><title>Shop</title>{head}</head><body>").as_bytes(),
    );
    let end = format!("{tail}</body></html>");
    while body.len() + card.len() + end.len() <= len {
        body.extend_from_slice(card.as_bytes());
    }
    body.resize(len - end.len(), b' ');
    body.extend_from_slice(end.as_bytes());
    assert_eq!(body.len(), len);
    body
}

/// A page of exactly the limit, its structured data after 5 MiB of markup, still yields its
/// price; and extraction holds at most three times the page (measured on this thread only).
#[test]
fn five_mebibyte_page_yields_its_price() {
    let body = padded_page("", &format!("{}{MICRODATA_OFFER}", product_ld()), MAX_BYTES);
    let (report, peak) =
        peak_bytes(|| plain().extract(&url(), &body, Some("text/html; charset=utf-8")));
    check(&report, body.len());
    assert_price(&report, "1234.56", "EUR", Method::JsonLd);
    // The microdata at the very end was read too.
    assert!(
        report.candidates.iter().any(|c| c.amount == dec("77")),
        "{report:?}"
    );
    eprintln!("5 MiB UTF-8 page: peak {peak} bytes");
    assert!(
        peak < 3 * body.len() + (1 << 20),
        "peak {peak} bytes for a {}-byte page",
        body.len()
    );

    // A windows-1252 page (1 MiB, to keep the test quick in debug builds): decoding copies it
    // once, since one `é` (0xE9) makes the text differ from the bytes.
    let mut body = padded_page("", &product_ld().replace('€', "EUR"), 1 << 20);
    let lorem = body.windows(5).position(|w| w == b"Lorem").unwrap();
    body[lorem + 1] = 0xE9;
    let (report, peak) =
        peak_bytes(|| plain().extract(&url(), &body, Some("text/html; charset=windows-1252")));
    assert_price(&report, "1234.56", "EUR", Method::JsonLd);
    eprintln!("1 MiB windows-1252 page: peak {peak} bytes");
    assert!(
        peak < 3 * body.len() + (1 << 20),
        "peak {peak} bytes for a {}-byte page",
        body.len()
    );
}

/// A page whose 5 MiB are one JSON-LD graph (the product and thousands of related ones).
#[test]
fn five_mebibyte_json_ld_graph_is_refused_within_bounded_memory() {
    let related = r#"{"@type":"ListItem","position":1,"item":{"@type":"Product","name":"Related","url":"https://shop.example.de/p/r","offers":{"@type":"Offer","price":"9.99","priceCurrency":"EUR"}}},"#;
    let mut graph = format!(
        r#"<script type="application/ld+json">{{"@context":"https://schema.org","@graph":[{PRODUCT_JSON},{{"@type":"ItemList","itemListElement":["#
    );
    let close = "{}]}]}</script>";
    while graph.len() + related.len() + close.len() < MAX_BYTES - 200 {
        graph.push_str(related);
    }
    graph.push_str(close);
    let body = padded_page(&graph, "", MAX_BYTES);
    let (report, peak) = peak_bytes(|| plain().extract(&url(), &body, None));
    // A JSON tree costs about fourteen times its text, so a script over 1 MiB is not read:
    // the page gets a clear "too large" instead of a 70 MB tree.
    assert_no_price(&report);
    assert!(
        report
            .error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("too large"),
        "{report:?}"
    );
    assert!(
        peak < 3 * body.len(),
        "peak {peak} bytes for a {} byte page",
        body.len()
    );
}

/// A page in a legacy encoding decodes to more UTF-8 bytes than it has (Shift_JIS kanji: two
/// bytes become three; windows-1252 `é`: one becomes two). A body inside the limit must still be
/// read, not refused because its decoded text is over it. (Shown with a 64 KiB limit to keep it
/// quick; with the real 5 MiB limit, a Shift_JIS page of 3.5 MiB is refused the same way.)
#[test]
fn legacy_encoded_page_within_the_limit_is_read() {
    let limit = 64 << 10;
    let (kanji, _, _) = encoding_rs::SHIFT_JIS.encode("商品の説明です。送料無料。");
    let head = product_ld().replace('€', "EUR");
    let target = limit * 7 / 10;
    let mut body = format!("<!doctype html><html><head><title>Shop</title>{head}</head><body><p>")
        .into_bytes();
    while body.len() < target {
        body.extend_from_slice(&kanji);
    }
    body.extend_from_slice(b"</p></body></html>");
    assert!(body.len() <= limit);
    let extractor = Extractor::new(Rules::default(), limit);
    let report = extractor.extract(&url(), &body, Some("text/html; charset=Shift_JIS"));
    check(&report, body.len());
    assert_price(&report, "1234.56", "EUR", Method::JsonLd);
}

/// The counting allocator sees this thread's allocations.
#[test]
fn allocation_counter_counts() {
    let (v, peak) = peak_bytes(|| vec![1u8; 1 << 20]);
    assert!((1 << 20..(1 << 20) + 4096).contains(&peak), "{peak}");
    drop(v);
}

#[test]
fn invalid_json_ld() {
    let broken = [
        r#"{"@type":"Product","offers":{"price":}}"#,
        "{{{{",
        "]]]]",
        "}",
        r#"{"@type":"Product","name":"W","offers":{"@type":"Offer","price":"12.00","priceCurrency":"EUR"}"#,
        r#"{"@type":"Product","offers":{"price":NaN,"priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":Infinity,"priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":1e999999,"priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":"\ud800","priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":-12.00,"priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":"0.00","priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":99999999999999999999999999999999999999999,"priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":"79228162514264337593543950336","priceCurrency":"EUR"}}"#,
        r#"{"@type":"Product","offers":{"price":"12.00","priceCurrency":"EUR"}}}}}"#,
        r#"{"@type":"Product" "offers" {"price" "12.00"}}"#,
        r#""just a string""#,
        "42",
        "null",
        "[]",
        "",
        "<!-- -->",
        "/*",
        "\"",
        "\\",
        "\u{0}\u{0}\u{0}",
    ];
    for json in broken {
        let script = format!(r#"<script type="application/ld+json">{json}</script>"#);
        let report = extract(page(&script, "").as_bytes());
        assert_no_price(&report);
        // The microdata fallback still works next to it.
        let report = extract(page(&script, MICRODATA_OFFER).as_bytes());
        assert_price(&report, "77.00", "EUR", Method::Microdata);
    }
}

#[test]
fn json_ld_script_that_never_closes() {
    // Everything after the opening tag is script text, including markup that looks like a price.
    let open = r#"<script type="application/ld+json">"#;
    let body = format!("<!doctype html><html><head><title>Shop</title>{open}{{\"@type\":\"Product\"{MICRODATA_OFFER}");
    let report = extract(body.as_bytes());
    assert_no_price(&report);
    // A complete JSON text in a script the page never closes: no panic; a price, if any, is its.
    let body = format!("<!doctype html><html><head>{open}{PRODUCT_JSON}");
    let report = extract(body.as_bytes());
    assert!(
        report.amount.is_none() || report.amount == Some(dec("1234.56")),
        "{report:?}"
    );
    // Four mebibytes of an unterminated string in an unterminated script.
    let mut body = format!("<html><head>{open}{{\"name\":\"").into_bytes();
    body.resize(4 << 20, b'x');
    assert_no_price(&extract(&body));
}

#[test]
fn nul_bytes_and_invalid_utf8() {
    let bad: [&[u8]; 9] = [
        b"\0",
        b"\xED\xA0\x80",         // U+D800 (a lone surrogate) as UTF-8
        b"\xED\xBF\xBF",         // U+DFFF
        b"\xC0\x80",             // overlong NUL
        b"\xC0\xAF",             // overlong '/'
        b"\xE0\x80\xAF",         // overlong '/' in three bytes
        b"\xF0\x80\x80\xAF",     // overlong '/' in four bytes
        b"\xF8\x88\x80\x80\x80", // a five-byte sequence
        b"\xF4\x90\x80\x80",     // above U+10FFFF
    ];
    for b in bad {
        let s = |text: &str| text.as_bytes().to_vec();
        // In the title, the product name, between attributes, inside tag names and in text.
        let mut body = s("<!doctype html><html><head><title>Sh");
        body.extend_from_slice(b);
        body.extend(s(
            "op</title><script type=\"application/ld+json\">{\"@type\":\"Product\",\"name\":\"Wid",
        ));
        body.extend_from_slice(b);
        body.extend(s("get\",\"offers\":{\"price\":\"1234.56\",\"priceCurrency\":\"EUR\"}}</script></head><body><di"));
        body.extend_from_slice(b);
        body.extend(s("v class=\"x\" "));
        body.extend_from_slice(b);
        body.extend(s("=\"y\">text "));
        body.extend_from_slice(b);
        body.extend(s("</div></body></html>"));
        let report = extract(&body);
        assert_price(&report, "1234.56", "EUR", Method::JsonLd);

        // In the price itself: no panic; whatever comes out is consistent (checked by `extract`).
        for price in [[&b"12"[..], b, b"34"].concat(), [b, &b"12.00"[..]].concat()] {
            let mut body = s(
                r#"<div itemscope itemtype="https://schema.org/Product"><div itemprop="offers" itemscope itemtype="https://schema.org/Offer"><span itemprop="price">"#,
            );
            body.extend_from_slice(&price);
            body.extend(s(
                r#"</span><meta itemprop="priceCurrency" content="EUR"></div></div>"#,
            ));
            extract(&body);
            let mut body =
                s(r#"<script type="application/ld+json">{"@type":"Product","offers":{"price":""#);
            body.extend_from_slice(&price);
            body.extend(s(r#"","priceCurrency":"EUR"}}</script>"#));
            extract(&body);
        }
    }
    // A body of NULs, and a UTF-16 byte order mark in front of UTF-8 markup.
    assert_no_price(&extract(&vec![0u8; 1 << 16]));
    let mut body = b"\xFF\xFE".to_vec();
    body.extend_from_slice(page(&product_ld(), "").as_bytes());
    assert_no_price(&extract(&body));
}

#[test]
fn unknown_charsets_fall_back_to_utf8() {
    let long_label = format!("<meta charset=\"{}\">", "a".repeat(2000));
    let metas = [
        "<meta charset=\"x-klingon\">",
        "<meta charset=\"\">",
        "<meta charset>",
        "<meta charset=utf-7>",
        "<meta charset=\"replacement\">",
        "<meta charset=\"iso-2022-kr\">",
        "<meta charset=\"utf-16\">",
        "<meta charset=\"utf-16le\">",
        "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=x-unknown\">",
        "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=\">",
        "<meta content=\"text/html; charset=klingon\" http-equiv=\"content-type\">",
        &long_label,
    ];
    for meta in metas {
        for content_type in [None, Some("text/html"), Some("text/html; charset=klingon")] {
            let body = page(&format!("{meta}{}", product_ld()), "");
            let (text, _) = decode_html(body.as_bytes(), content_type);
            assert!(
                text.contains("Widget €"),
                "{meta} under {content_type:?} decoded to {text}"
            );
            let report = plain().extract(&url(), body.as_bytes(), content_type);
            check(&report, body.len());
            assert_price(&report, "1234.56", "EUR", Method::JsonLd);
            assert_eq!(report.title.as_deref(), Some("Widget €"), "{meta}");
        }
    }
    // Non-ASCII bytes in the label.
    let mut body = b"<meta charset=\"\xFF\xFE\x00\">".to_vec();
    body.extend_from_slice(page(&product_ld(), "").as_bytes());
    assert_price(&extract(&body), "1234.56", "EUR", Method::JsonLd);
}

/// The JSON API path with bodies that are not the JSON the rule expects.
#[test]
fn json_api_bodies() {
    let api = &extractors()[3];
    let deep = "[".repeat(50_000);
    let cases: [&[u8]; 8] = [
        b"",
        b"<html>not json</html>",
        br#"{"variants":[{"price":1299}],"currency":"EUR"}"#,
        br#"{"variants":[{"price":-1299}],"currency":"EUR"}"#,
        br#"{"variants":[{"price":12.5}],"currency":"EUR"}"#,
        br#"{"variants":[{"price":99999999999999999999999999999}],"currency":"EUR"}"#,
        br#"{"variants":[{"price":1299}],"currency":"\u0000"}"#,
        deep.as_bytes(),
    ];
    for body in cases {
        let report = api.extract(&url(), body, Some("application/json"));
        check(&report, body.len());
    }
    let report = api.extract(&url(), cases[2], None);
    assert_price(&report, "12.99", "EUR", Method::JsonApi);
}
