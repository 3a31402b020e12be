//! The price engine end to end: the fixture corpus served by a real local shop over HTTP
//! (gzip-encoded, with validators, behind redirects), read through the SSRF-guarded
//! fetcher and the extractor exactly as the daemon reads product pages.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pricewatch::domain::Validators;
use pricewatch::price::engine::{Check, EngineError, PriceEngine};
use pricewatch::price::fetch::guard::Lookup;
use pricewatch::price::fetch::{FetchConfig, FetchError, Fetcher};
use pricewatch::price::rules::Rules;
use url::Url;

use crate::fakes::{FakeShop, Page};

#[path = "../common/fixtures.rs"]
mod fixtures;

use fixtures::Fixture;

/// Every fixture host resolves to loopback, where the shop listens.
struct ShopNames;

impl Lookup for ShopNames {
    fn lookup(
        &self,
        _host: String,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async { Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]) })
    }
}

/// The fixture corpus in the shared shop: each fixture under its own host and path,
/// gzip-encoded, with an ETag and a `Last-Modified`; also `/moved/<name>` redirecting to
/// a fixture and `/huge` (6 MiB).
async fn shop(fixtures: &[Fixture]) -> FakeShop {
    let shop = FakeShop::start().await;
    for f in fixtures {
        let page = Page::new(&f.content_type, f.body.clone()).gzip();
        let etag = format!("\"{}\"", page.body.len());
        let page = page
            .with_etag(&etag)
            .with_last_modified("Tue, 24 Nov 2026 10:00:00 GMT");
        shop.put(
            &format!("{}{}", f.url.host_str().unwrap(), f.url.path()),
            page,
        );
        shop.put(&format!("/moved/{}", f.name), Page::redirect(f.url.path()));
    }
    let mut huge = b"<html><body>".to_vec();
    huge.resize(6 << 20, b'x');
    shop.put("/huge", Page::new("text/html", huge));
    shop
}

/// The fixture's URL, over plain HTTP on the shop's port.
fn url(shop: &FakeShop, f: &Fixture) -> Url {
    let mut url = f.url.clone();
    url.set_scheme("http").unwrap();
    url.set_port(Some(shop.port)).unwrap();
    url
}

/// The fixture hosts are allowed by name (they resolve to loopback here); everything
/// else keeps the production guard.
fn engine(fixtures: &[Fixture], rules: Rules) -> PriceEngine {
    let config = FetchConfig {
        allow_hosts: fixtures
            .iter()
            .map(|f| f.url.host_str().unwrap().to_owned())
            .collect(),
        timeout: Duration::from_secs(10),
        ..FetchConfig::default()
    };
    let fetcher = Fetcher::with_lookup(&config, Arc::new(ShopNames)).unwrap();
    PriceEngine::new(
        fetcher,
        pricewatch::price::extract::Extractor::new(rules, fixtures::MAX_BYTES),
    )
}

#[tokio::test]
async fn every_fixture_served_over_http_reads_as_expected() {
    let all: Vec<Fixture> = fixtures::names().iter().map(|n| Fixture::load(n)).collect();
    let shop = shop(&all).await;
    for f in &all {
        let engine = engine(std::slice::from_ref(f), f.rules());
        let url = url(&shop, f);
        let Check::Read {
            report,
            validators,
            final_url,
        } = engine.check(&url, &Validators::default()).await.unwrap()
        else {
            panic!("{}: an unconditional request got 304", f.name);
        };
        f.assert_report(&report);
        assert_eq!(final_url, url);
        assert!(validators.etag.is_some() && validators.last_modified.is_some());
    }
    assert_eq!(shop.full(), all.len());
}

#[tokio::test]
async fn an_unchanged_page_costs_a_304_and_no_parsing() {
    let f = Fixture::load("shopify-variant-selected");
    let shop = shop(std::slice::from_ref(&f)).await;
    let engine = engine(std::slice::from_ref(&f), Rules::default());
    let url = url(&shop, &f);
    let Check::Read { validators, .. } = engine.check(&url, &Validators::default()).await.unwrap()
    else {
        panic!("first check must read the page");
    };
    match engine.check(&url, &validators).await.unwrap() {
        Check::Unchanged { validators: kept } => assert_eq!(kept, validators),
        other => panic!("expected 304, got {other:?}"),
    }
    assert_eq!(shop.full(), 1);
    assert_eq!(shop.not_modified(), 1);

    // A validator the shop no longer recognises gets the page again.
    let stale = Validators {
        etag: Some("\"old\"".into()),
        last_modified: None,
    };
    assert!(matches!(
        engine.check(&url, &stale).await.unwrap(),
        Check::Read { .. }
    ));
}

#[tokio::test]
async fn a_redirected_product_is_read_at_its_new_address() {
    let f = Fixture::load("jsonld-out-of-stock");
    let shop = shop(std::slice::from_ref(&f)).await;
    let engine = engine(std::slice::from_ref(&f), Rules::default());
    let mut moved = url(&shop, &f);
    moved.set_path("/moved/jsonld-out-of-stock");
    let Check::Read {
        report, final_url, ..
    } = engine.check(&moved, &Validators::default()).await.unwrap()
    else {
        panic!("expected a page");
    };
    assert_eq!(final_url.path(), f.url.path());
    let (amount, currency) = report.price().unwrap();
    assert_eq!(
        (amount.to_string(), currency.to_string()),
        ("189.00".into(), "USD".into())
    );
}

#[tokio::test]
async fn a_huge_page_is_refused_not_parsed() {
    let f = Fixture::load("jsonld-out-of-stock");
    let shop = shop(std::slice::from_ref(&f)).await;
    let engine = engine(std::slice::from_ref(&f), Rules::default());
    let mut url = url(&shop, &f);
    url.set_path("/huge");
    let err = engine
        .check(&url, &Validators::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Fetch(FetchError::TooLarge { limit }) if limit == 5 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn private_addresses_stay_refused_with_the_engine() {
    let engine = PriceEngine::new(
        Fetcher::new(&FetchConfig::default()).unwrap(),
        pricewatch::price::extract::Extractor::new(Rules::default(), fixtures::MAX_BYTES),
    );
    for target in [
        "http://127.0.0.1/p",
        "http://2130706433/p",
        "http://0x7f.1/p",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.1/p",
        "http://localhost/p",
    ] {
        let err = engine
            .check(&Url::parse(target).unwrap(), &Validators::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, EngineError::Fetch(FetchError::Refused(_))),
            "{target}: {err}"
        );
        assert!(
            err.to_string().contains("address") || err.to_string().contains("local"),
            "{target}: {err}"
        );
    }
}
