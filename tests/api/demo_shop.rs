//! The demo shop of `pricewatch demo` over real HTTP: every page read by the real price
//! engine (fetcher and extractor, loopback allowed as the demo allows it), prices and stock
//! changed by command and through `POST /control`, validators and 304s.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use pricewatch::demo::shop::{parse_command, DemoShop, ShopError};
use pricewatch::domain::Validators;
use pricewatch::price::engine::{Check, PriceEngine};
use pricewatch::price::extract::{Availability, Method, Report};
use pricewatch::price::fetch::FetchConfig;
use pricewatch::price::rules::Rules;
use rust_decimal::Decimal;
use url::Url;

use crate::helpers::eventually;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn engine() -> PriceEngine {
    let config = FetchConfig {
        allow_networks: vec!["127.0.0.0/8".to_owned()],
        timeout: Duration::from_secs(10),
        ..FetchConfig::default()
    };
    PriceEngine::from_config(&config, Rules::default()).unwrap()
}

async fn read(engine: &PriceEngine, url: &Url, validators: &Validators) -> (Report, Validators) {
    match engine.check(url, validators).await.unwrap() {
        Check::Read {
            report, validators, ..
        } => (report, validators),
        Check::Unchanged { .. } => panic!("{url}: 304 where a page was expected"),
    }
}

fn command(shop: &DemoShop, line: &str) -> String {
    let command = parse_command(line).unwrap().unwrap();
    shop.apply(&command).unwrap()
}

#[tokio::test]
async fn every_product_page_is_read_by_the_price_engine() {
    let shop = DemoShop::start(loopback()).await.unwrap();
    let engine = engine();
    let products = shop.products();
    assert_eq!(products.len(), 5);
    let expected = [
        ("249.99", "USD", Method::JsonLd, Availability::InStock),
        ("89.00", "GBP", Method::Microdata, Availability::InStock),
        ("1299.00", "EUR", Method::Microdata, Availability::InStock),
        ("129.00", "USD", Method::Meta, Availability::InStock),
        ("140.00", "USD", Method::JsonLd, Availability::OutOfStock),
    ];
    for (p, (amount, currency, method, stock)) in products.iter().zip(expected) {
        assert_eq!(shop.product_url(p.number).as_ref(), Some(&p.url));
        let (report, validators) = read(&engine, &p.url, &Validators::default()).await;
        let (got, cur) = report.price().unwrap_or_else(|e| panic!("{}: {e}", p.url));
        assert_eq!(got, Decimal::from_str(amount).unwrap(), "{}", p.url);
        assert_eq!(cur.as_str(), currency, "{}", p.url);
        assert_eq!((got, currency), (p.amount, p.currency), "{}", p.url);
        assert_eq!(report.method, Some(method), "{}", p.url);
        assert_eq!(report.availability, stock, "{}", p.url);
        assert_eq!(report.title.as_deref(), Some(p.name.as_str()));
        assert!(validators.etag.is_some(), "{}", p.url);
    }
    assert_eq!(shop.product_url(6), None);

    // The index links every product; other paths are 404.
    let client = reqwest::Client::new();
    let index = client.get(shop.base_url()).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.headers().contains_key("etag"));
    let index = index.text().await.unwrap();
    for p in &products {
        assert!(index.contains(p.url.path()), "{index}");
    }
    let missing = shop.base_url().join("/products/9-nothing").unwrap();
    let r = client.get(missing).send().await.unwrap();
    assert_eq!(r.status(), 404);
    shop.shutdown().await;
}

#[tokio::test]
async fn a_price_change_is_what_the_engine_reads_next_with_a_new_etag() {
    let shop = DemoShop::start(loopback()).await.unwrap();
    let engine = engine();
    let url = shop.product_url(1).unwrap();
    let (report, validators) = read(&engine, &url, &Validators::default()).await;
    assert_eq!(report.amount, Some(Decimal::from_str("249.99").unwrap()));

    // Unchanged: the conditional fetch is answered 304.
    match engine.check(&url, &validators).await.unwrap() {
        Check::Unchanged { validators: v } => assert_eq!(v.etag, validators.etag),
        Check::Read { .. } => panic!("an unchanged page was sent again"),
    }

    let reply = command(&shop, "/price 1 -25%");
    assert_eq!(
        reply,
        "Product 1 (Noise-cancelling headphones): $249.99 → $187.49 (\u{2212}25%)"
    );
    let (report, after) = read(&engine, &url, &validators).await;
    assert_eq!(report.amount, Some(Decimal::from_str("187.49").unwrap()));
    assert_ne!(after.etag, validators.etag);

    // Out of stock is read too, and is another change of the page.
    command(&shop, "/stock 1 out");
    let (report, last) = read(&engine, &url, &after).await;
    assert_eq!(report.availability, Availability::OutOfStock);
    assert_ne!(last.etag, after.etag);
}

/// POSTs `body` as one command line to the shop's control endpoint.
async fn control(shop: &DemoShop, body: impl Into<reqwest::Body>) -> (u16, String) {
    let url = shop.base_url().join("/control").unwrap();
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; charset=utf-8",
        "{status}"
    );
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn the_control_endpoint_runs_one_command_and_refuses_the_rest() {
    let shop = DemoShop::start(loopback()).await.unwrap();
    let (status, text) = control(&shop, "/price 1 -25%\n").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("$249.99 → $187.49"), "{text}");
    assert_eq!(
        shop.products()[0].amount,
        Decimal::from_str("187.49").unwrap()
    );
    let (status, text) = control(&shop, "/products").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(shop.product_url(3).unwrap().as_str()),
        "{text}"
    );

    for (body, expected) in [
        ("/price 9 -25%", "the products are 1, 2, 3, 4, 5"),
        ("/price 1 25%", "-25% or +25%"),
        ("/price 2 -100%", "above 0"),
        ("watch something", "shop commands start with /"),
        ("", "send one shop command"),
        ("/help\n/products", "one shop command per request"),
    ] {
        let (status, text) = control(&shop, body).await;
        assert_eq!(status, 400, "{body:?} → {text}");
        assert!(text.contains(expected), "{body:?} → {text}");
    }
    let (status, _) = control(&shop, vec![0xff, 0xfe, b'/']).await;
    assert_eq!(status, 400);
    let (status, text) = control(&shop, "/help ".repeat(400)).await;
    assert_eq!(status, 413, "{text}");
    // Without a Content-Length the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = control(&shop, body).await;
    assert_eq!(status, 413);
    assert_eq!(
        shop.products()[0].amount,
        Decimal::from_str("187.49").unwrap()
    );

    let r = reqwest::get(shop.base_url().join("/control").unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn the_shop_listens_on_loopback_only_and_stops_when_told_or_dropped() {
    let err = DemoShop::start("0.0.0.0:0".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ShopError::NotLoopback(_)), "{err}");

    let shop = DemoShop::start(loopback()).await.unwrap();
    let addr = shop.addr();
    assert_ne!(addr.port(), 0);
    let err = DemoShop::start(addr).await.err().unwrap();
    assert!(matches!(err, ShopError::Bind { .. }), "{err}");

    // A kept-alive connection does not hold the shutdown up.
    let client = reqwest::Client::new();
    let r = client.get(shop.base_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), shop.shutdown())
        .await
        .expect("the shop stops with an idle connection open");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let shop = DemoShop::start(loopback()).await.unwrap();
    let addr = shop.addr();
    drop(shop);
    eventually(|| async {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => Err("the dropped shop to close its listener"),
            Err(_) => Ok(()),
        }
    })
    .await;
}

#[tokio::test]
async fn the_demo_daemon_finds_the_shops_products_by_name() {
    let shop = DemoShop::start(loopback()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = pricewatch::demo::run::daemon_config(&dir.path().join("data"), shop.addr());
    let config = pricewatch::ops::config::load_str("<demo>", &text, std::iter::empty()).unwrap();
    let t = crate::helpers::TestApp::spawn_with(config).await;
    t.channel.take();
    let (status, _) = t.post(&t.message("c1", "watch headphones")).await;
    assert_eq!(status, 200);
    let got = t.channel.take();
    assert_eq!(
        got[0].text(),
        "I found 1 product for “headphones”. Choose it to watch it."
    );
    let card = &got[0].body["attachments"][0]["content"];
    assert_eq!(
        card["body"][1]["items"][0]["inlines"][0]["text"],
        "1. Noise-cancelling headphones"
    );
    assert_eq!(
        card["body"][1]["items"][1]["facts"][0]["value"],
        "US$249.99"
    );
    let command = card["body"][1]["items"][2]["actions"][0]["data"]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(command, format!("watch {}", shop.product_url(1).unwrap()));
    let stored = t.say("c1", &command).await;
    assert!(stored.starts_with("Watch #1 stored"), "{stored}");
}
