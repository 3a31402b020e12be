//! `watch <product name>` end to end: the real daemon searches a local JSON catalogue and a
//! local Shopify-style predictive-search endpoint, answers with the matches (a card with a
//! button each, or a numbered list where cards do not render), and the chosen match
//! becomes a watch whose first price follows. Catalogues that fail, time out or are
//! refused by the SSRF guard are named in a clear reply, and a link still works.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pricewatch::ops::config::Config;
use pricewatch::price::catalog::{CatalogConfig, CatalogKind};
use serde_json::{json, Value};
use warp::Filter;

use crate::fakes::{serve, Recorded};
use crate::helpers::{eventually, test_config, TestApp};

/// A cron tick that never comes while a test runs: first checks are what it waits for.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

/// A shop with a JSON search API (`/api/search?q=`), a Shopify storefront under `/shop`
/// (`/shop/search/suggest.json`), their product pages, a search that answers after 3 s
/// (`/slow/search`) and one that fails (`/broken/search`). It records every search it
/// is asked.
struct Catalogue {
    base: String,
    searches: Arc<Mutex<Vec<(String, String)>>>,
    /// When each search arrived.
    arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn product_page(name: &str, price: &str) -> String {
    format!(
        r#"<html><head><script type="application/ld+json">{{"@type":"Product","name":"{name}","offers":{{"@type":"Offer","price":"{price}","priceCurrency":"EUR","availability":"https://schema.org/InStock"}}}}</script></head><body></body></html>"#
    )
}

impl Catalogue {
    async fn start() -> Catalogue {
        let searches: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let arrivals: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
        let seen = searches.clone();
        let times = arrivals.clone();
        let route = warp::get()
            .and(warp::path::full())
            .and(warp::query::<Vec<(String, String)>>())
            .then(
                move |path: warp::path::FullPath, query: Vec<(String, String)>| {
                    let seen = seen.clone();
                    let times = times.clone();
                    async move {
                        let q = query
                            .iter()
                            .find(|(k, _)| k == "q")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        let path = path.as_str().to_owned();
                        if path.contains("search") {
                            seen.lock().unwrap().push((path.clone(), q));
                            times.lock().unwrap().push(std::time::Instant::now());
                        }
                        answer(&path, &query).await
                    }
                },
            );
        let (base, stop) = serve(route).await;
        Catalogue {
            base,
            searches,
            arrivals,
            _stop: stop,
        }
    }

    fn searches(&self) -> Vec<(String, String)> {
        self.searches.lock().unwrap().clone()
    }

    fn json(&self, path: &str, timeout: Duration) -> CatalogConfig {
        CatalogConfig {
            name: Some("Kitchen Co".into()),
            kind: CatalogKind::Json,
            search_url: Some(format!("{}{path}?q={{query}}&lang=en", self.base)),
            results: Some("/data/items".into()),
            title: Some("/name".into()),
            link: Some("/href".into()),
            price: Some("/price/amount".into()),
            currency_pointer: Some("/price/currency".into()),
            shop: None,
            currency: None,
            timeout,
        }
    }

    fn shopify(&self) -> CatalogConfig {
        CatalogConfig {
            name: Some("Skillet Store".into()),
            kind: CatalogKind::Shopify,
            search_url: None,
            results: None,
            title: None,
            link: None,
            price: None,
            currency_pointer: None,
            shop: Some(format!("{}/shop", self.base)),
            currency: Some("EUR".into()),
            timeout: Duration::from_secs(5),
        }
    }
}

async fn answer(path: &str, query: &[(String, String)]) -> warp::reply::Response {
    use warp::Reply;
    let html = |name: &str, price: &str| {
        warp::reply::with_header(
            product_page(name, price),
            "content-type",
            "text/html; charset=utf-8",
        )
        .into_response()
    };
    match path {
        "/api/search" | "/slow/search" => {
            if path == "/slow/search" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            warp::reply::json(&json!({"data": {"items": [
                {"name": "Enamelled Dutch Oven", "href": "/p/oven", "price": {"amount": 59, "currency": "EUR"}},
                {"name": "Lodge Cast Iron Skillet 10in", "href": "/p/lodge", "price": {"amount": "29.90", "currency": "EUR"}},
            ]}}))
            .into_response()
        }
        "/shop/search/suggest.json" => {
            let asked = |k: &str, v: &str| query.iter().any(|(a, b)| a == k && b == v);
            if !asked("resources[type]", "product") {
                return warp::http::StatusCode::BAD_REQUEST.into_response();
            }
            warp::reply::json(&json!({"resources": {"results": {"products": [
                {"title": "Cast Iron Skillet 12\"", "url": "/shop/products/skillet-12?_pos=1&_sid=9f&_ss=r", "price": "39.00", "available": true},
                {"title": "Skillet lid", "url": "/shop/products/lid?_pos=2&_sid=9f&_ss=r", "price": "12.00", "available": true},
            ]}}}))
            .into_response()
        }
        "/broken/search" => warp::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/p/oven" => html("Enamelled Dutch Oven", "59.00"),
        "/p/lodge" => html("Lodge Cast Iron Skillet 10in", "29.90"),
        "/shop/products/skillet-12" => html("Cast Iron Skillet 12in", "39.00"),
        "/shop/products/lid" => html("Skillet lid", "12.00"),
        _ => warp::http::StatusCode::NOT_FOUND.into_response(),
    }
}

fn daemon_config(data: &std::path::Path, catalogs: Vec<CatalogConfig>) -> Config {
    let mut config = test_config(data);
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.catalog = catalogs;
    config
}

/// Sends `text` and returns the one reply it got.
async fn reply_to(t: &TestApp, activity: &Value) -> Recorded {
    t.channel.take();
    let (status, body) = t.post(activity).await;
    assert_eq!(status, 200, "{body}");
    let got = t.channel.take();
    assert_eq!(got.len(), 1, "one reply, got {got:?}");
    got.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_product_name_offers_the_matches_and_choosing_one_watches_it() {
    let shop = Catalogue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(
        &dir.path().join("data"),
        vec![
            shop.json("/api/search", Duration::from_secs(5)),
            shop.shopify(),
        ],
    );
    let t = TestApp::spawn_with(config).await;

    let reply = reply_to(&t, &t.message("c1", "watch cast iron skillet")).await;
    assert_eq!(
        reply.text(),
        "I found 4 products for “cast iron skillet”. Choose one to watch it."
    );
    // Both catalogues were asked for the words, encoded once each.
    let mut searches = shop.searches();
    searches.sort();
    assert_eq!(
        searches,
        [
            ("/api/search".to_owned(), "cast iron skillet".to_owned()),
            (
                "/shop/search/suggest.json".to_owned(),
                "cast iron skillet".to_owned()
            ),
        ]
    );
    let card = &reply.body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let matches: Vec<&Value> = card["content"]["body"].as_array().unwrap()[1..]
        .iter()
        .collect();
    let titles: Vec<&str> = matches
        .iter()
        .map(|m| m["items"][0]["inlines"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "1. Cast Iron Skillet 12\"",
            "2. Lodge Cast Iron Skillet 10in",
            "3. Skillet lid",
            "4. Enamelled Dutch Oven",
        ],
        "titles with every word first, then each shop's own order, then the shops' order"
    );
    let facts = &matches[0]["items"][1]["facts"];
    assert_eq!(facts[0]["value"], "€39.00");
    assert_eq!(facts[1]["value"], "Skillet Store");
    let facts = &matches[1]["items"][1]["facts"];
    assert_eq!(facts[0]["value"], "€29.90");
    assert_eq!(facts[1]["value"], "Kitchen Co");
    let buttons: Vec<&Value> = matches
        .iter()
        .map(|m| {
            let actions = m["items"][2]["actions"].as_array().unwrap();
            assert_eq!(actions.len(), 1, "one button per match");
            &actions[0]
        })
        .collect();
    let first = format!("{}/shop/products/skillet-12", shop.base);
    assert_eq!(
        buttons[0]["data"]["command"],
        format!("watch {first}"),
        "the search's tracking parameters are gone"
    );
    let second = format!("{}/p/lodge", shop.base);
    assert_eq!(buttons[1]["data"]["command"], format!("watch {second}"));

    // Choosing the second: Web Chat and the Emulator send the button's data as the value.
    let mut choice = t.message("c1", "");
    choice.as_object_mut().unwrap().remove("text");
    choice["value"] = buttons[1]["data"].clone();
    let stored = reply_to(&t, &choice).await;
    assert!(
        stored
            .text()
            .starts_with(&format!("Watch #1 stored: {second}")),
        "{}",
        stored.text()
    );
    let follow_up = eventually(|| async {
        t.channel
            .received()
            .into_iter()
            .find(|r| r.text().contains("29.90"))
            .ok_or("the first price of the chosen product")
    })
    .await;
    assert!(
        follow_up.text().contains("Lodge Cast Iron Skillet 10in"),
        "{}",
        follow_up.text()
    );
    t.outbox_drained().await;
    let list = t.say("c1", "list").await;
    assert!(list.contains("1. [Lodge Cast Iron Skillet 10in]"), "{list}");
    assert!(
        !list.contains("2."),
        "only the chosen match is watched: {list}"
    );

    // Where cards do not render, the matches are a numbered list of commands to send.
    let mut slack = t.message("c2", "surveiller poêle fonte skillet sous 35");
    slack["channelId"] = "slack".into();
    slack["locale"] = "fr-FR".into();
    let listed = reply_to(&t, &slack).await;
    assert!(
        listed.body.get("attachments").is_none(),
        "{:?}",
        listed.body
    );
    let text = listed.text().to_owned();
    assert!(
        text.starts_with("J'ai trouvé 4 produits pour « poêle fonte skillet » :"),
        "{text}"
    );
    let line = format!("surveiller {first} sous 35");
    assert!(
        text.contains(&format!(
            "1. **Cast Iron Skillet 12\"**, 39,00\u{a0}€ chez Skillet Store\n   `{line}`"
        )),
        "{text}"
    );
    let mut send_line = t.message("c2", &line);
    send_line["channelId"] = "slack".into();
    send_line["locale"] = "fr-FR".into();
    let stored = reply_to(&t, &send_line).await;
    assert!(
        stored.text().starts_with("Surveillance n°1 enregistrée")
            && stored.text().contains("un prix de 35 ou moins"),
        "{}",
        stored.text()
    );
}

#[tokio::test]
async fn catalogues_that_fail_or_time_out_get_a_clear_reply_and_links_still_work() {
    let shop = Catalogue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut slow = shop.json("/slow/search", Duration::from_secs(1));
    slow.name = Some("Slow Shop".into());
    let mut broken = shop.json("/broken/search", Duration::from_secs(5));
    broken.name = Some("Broken Shop".into());
    let config = daemon_config(&dir.path().join("data"), vec![slow, broken]);
    let t = TestApp::spawn_with(config).await;

    let started = std::time::Instant::now();
    let text = t.say("c1", "watch cast iron skillet").await;
    assert_eq!(
        text,
        "I could not search the shops just now. Slow Shop did not answer within 1s. \
         Broken Shop could not be searched: the site answered HTTP 500 (Internal Server Error).\n\n\
         Try again in a minute, or send the product's link: `watch https://shop.example/p/123`."
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the reply did not wait for the slow shop: {:?}",
        started.elapsed()
    );
    let link = format!("{}/p/lodge", shop.base);
    let stored = t.say("c1", &format!("watch {link}")).await;
    assert!(
        stored.starts_with(&format!("Watch #1 stored: {link}")),
        "{stored}"
    );
}

#[tokio::test]
async fn catalogue_searches_pass_the_ssrf_guard_like_pages() {
    let shop = Catalogue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = daemon_config(
        &dir.path().join("data"),
        vec![shop.json("/api/search", Duration::from_secs(5))],
    );
    // Loopback is not public: without the exception the search is refused unsent.
    config.fetch.allow_networks.clear();
    let t = TestApp::spawn_with(config).await;
    let text = t.say("c1", "watch cast iron skillet").await;
    assert!(
        text.starts_with(
            "I could not search the shops just now. Kitchen Co could not be searched:"
        ),
        "{text}"
    );
    assert!(shop.searches().is_empty(), "nothing reached the shop");
}

#[tokio::test]
async fn searches_keep_the_shops_gap_between_requests() {
    let shop = Catalogue::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = daemon_config(
        &dir.path().join("data"),
        vec![shop.json("/api/search", Duration::from_secs(5))],
    );
    config.fetch.host_gap = Duration::from_millis(1500);
    let t = TestApp::spawn_with(config).await;
    for words in ["watch cast iron skillet", "watch dutch oven"] {
        let text = t.say("c1", words).await;
        assert!(text.starts_with("I found 2 products"), "{text}");
    }
    let arrivals = shop.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(1400),
        "the second search waited for the host's gap, like a check: {gap:?}"
    );
}

#[tokio::test]
async fn without_catalogues_a_product_name_asks_for_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let t = TestApp::spawn_with(test_config(&dir.path().join("data"))).await;
    let text = t.say("c1", "watch cast iron skillet").await;
    assert!(text.starts_with("Which product? Add its link"), "{text}");
    assert!(text.contains("its operator can add some"), "{text}");
    let mut fr = t.message("c1", "surveiller poêle en fonte");
    fr["locale"] = "fr-FR".into();
    let (status, _) = t.post(&fr).await;
    assert_eq!(status, 200);
    let got = t.channel.take();
    assert!(
        got[0].text().starts_with("Quel produit ? Ajoutez son lien"),
        "{}",
        got[0].text()
    );
}
