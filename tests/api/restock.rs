//! `watch <link> restock` end to end: the real daemon, a local shop whose product goes out
//! of stock and comes back, and the fake channel that receives exactly one "back in stock"
//! message per return.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};

use crate::fakes::{FakeShop, Page};
use crate::helpers::{test_config, TestApp};

const MINUTE: u64 = 60_000;

/// A cron tick that never comes while the test runs: it ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

/// A product page whose JSON-LD offer has `availability` and, when given, a price in EUR.
fn page(availability: &str, price: Option<&str>) -> Page {
    let price = price.map_or(String::new(), |p| {
        format!(r#""price":"{p}","priceCurrency":"EUR","#)
    });
    Page::new(
        "text/html; charset=utf-8",
        format!(
            r#"<html><head><script type="application/ld+json">{{"@type":"Product","name":"Skillet","offers":{{"@type":"Offer",{price}"availability":"https://schema.org/{availability}"}}}}</script></head><body></body></html>"#
        ),
    )
}

async fn daemon(clock: Arc<ManualClock>, data: &std::path::Path) -> TestApp {
    let mut config = test_config(data);
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.alerts.digest_window = Duration::from_millis(300);
    TestApp::spawn_with_clock(config, clock).await
}

/// The texts the channel received that announce a return to stock.
fn back_in_stock(t: &TestApp) -> Vec<String> {
    t.channel
        .received()
        .iter()
        .map(|r| r.text().to_owned())
        .filter(|text| text.starts_with("Back in stock"))
        .collect()
}

#[tokio::test]
async fn a_restock_watch_is_told_once_each_time_the_product_is_back() {
    let shop = FakeShop::start().await;
    shop.put("/p/1", page("InStock", Some("49.90")));
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let t = daemon(clock.clone(), &dir.path().join("data")).await;
    let tick = || async {
        clock.advance_ms(34 * MINUTE);
        let tick = t.app().tick_now().await.unwrap();
        t.outbox_drained().await;
        tick
    };

    // The reply confirms the kind of watch; the first check says it is in stock now.
    let (status, _) = t
        .post(&t.message("c1", &format!("watch {}/p/1 restock", shop.base)))
        .await;
    assert_eq!(status, 200);
    let got = t.wait_for(2).await;
    assert!(
        got[0].text().contains("when it is back in stock"),
        "{}",
        got[0].text()
    );
    assert!(
        got[1].text().contains("in stock now, at €49.90"),
        "{}",
        got[1].text()
    );
    t.outbox_drained().await;

    // Sold out, the price gone from the page: nothing to say, and the watch is kept.
    shop.put("/p/1", page("OutOfStock", None));
    let checked = tick().await;
    assert_eq!((checked.checked, checked.queued), (1, 0));
    let list = t.say("c1", "list").await;
    assert!(
        list.contains("out of stock, I will tell you when it is back"),
        "{list}"
    );

    // Back: exactly one message, with the price; staying in stock says nothing more.
    shop.put("/p/1", page("InStock", Some("52.00")));
    assert_eq!(tick().await.queued, 1);
    assert_eq!(tick().await.queued, 0);
    let told = back_in_stock(&t);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("can be bought again, at €52.00") && told[0].contains("unwatch 1"),
        "{}",
        told[0]
    );
    assert_eq!(t.app().deliver_now().await.unwrap().sent, 0);

    // Out again (this time with a price shown), then back: one more, once.
    shop.put("/p/1", page("OutOfStock", Some("52.00")));
    assert_eq!(tick().await.queued, 0);
    shop.put("/p/1", page("InStock", Some("47.50")));
    assert_eq!(tick().await.queued, 1);
    assert_eq!(tick().await.queued, 0);
    let told = back_in_stock(&t);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[1].contains("€47.50"), "{}", told[1]);

    let list = t.say("c1", "list").await;
    assert!(
        list.contains("in stock, the next alert after it runs out"),
        "{list}"
    );
}
