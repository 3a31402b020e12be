//! Changing a watch without removing it, end to end: `watch <n> <rule>` keeps the watch's
//! first price and history, and `pause` / `resume` stop and restart its checks and alerts.
//! The real daemon, a local shop, a manual clock, and ticks run by hand.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};

use crate::fakes::FakeShop;
use crate::helpers::{test_config, TestApp};

const MINUTE: u64 = 60_000;

/// A cron tick that never comes while the test runs: it ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

async fn daemon(clock: Arc<ManualClock>, data: &std::path::Path) -> TestApp {
    let mut config = test_config(data);
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.alerts.digest_window = Duration::from_millis(300);
    TestApp::spawn_with_clock(config, clock).await
}

/// A watch of `/p/1` at 200.00 in conversation `c1`, its first price delivered.
async fn watching(shop: &FakeShop, clock: Arc<ManualClock>, data: &std::path::Path) -> TestApp {
    shop.set_price("/p/1", "200.00");
    let t = daemon(clock, data).await;
    let (status, _) = t
        .post(&t.message("c1", &format!("watch {}", shop.url("/p/1"))))
        .await;
    assert_eq!(status, 200);
    t.wait_for(2).await;
    t.outbox_drained().await;
    t
}

#[tokio::test]
async fn a_new_rule_keeps_the_first_price_and_the_history() {
    let shop = FakeShop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let t = watching(&shop, clock.clone(), &dir.path().join("data")).await;
    let tick = || async {
        clock.advance_ms(34 * MINUTE);
        let tick = t.app().tick_now().await.unwrap();
        t.outbox_drained().await;
        tick
    };
    shop.set_price("/p/1", "170.00");
    assert_eq!(tick().await.queued, 0, "15% down, the 20% line not reached");

    let reply = t.say("c1", "watch 1 below 150").await;
    assert!(
        reply.contains(
            "it alerted on a drop of 20% or more, it now alerts on a price of 150 or less"
        ),
        "{reply}"
    );
    let list = t.say("c1", "list").await;
    assert!(list.contains("first price €200.00"), "{list}");
    assert!(list.contains("alert at €150.00 or less"), "{list}");

    // 155 would have crossed the old line (160), not the new one.
    shop.set_price("/p/1", "155.00");
    assert_eq!(tick().await.queued, 0);
    shop.set_price("/p/1", "149.00");
    assert_eq!(tick().await.queued, 1, "the new line alerts");

    let history = t.say("c1", "history 1").await;
    for price in ["€200.00", "€149.00"] {
        assert!(history.contains(price), "{price} in {history}");
    }
    // French, and a kind the watch cannot become.
    t.channel.take();
    let mut french = t.message("c1", "watch 1 15%");
    french["locale"] = "fr-FR".into();
    assert_eq!(t.post(&french).await.0, 200);
    let got = t.channel.take();
    assert_eq!(got.len(), 1, "{got:?}");
    let fr = got[0].text();
    assert!(
        fr.contains("elle alertait pour un prix de 150 ou moins, elle alerte désormais pour une baisse de 15 % ou plus"),
        "{fr}"
    );
    let refused = t.say("c1", "watch 1 restock").await;
    assert!(
        refused.contains("cannot become a restock watch"),
        "{refused}"
    );
    let refused = t.say("c1", "watch 4 15%").await;
    assert!(refused.contains("There is no watch #4"), "{refused}");
}

#[tokio::test]
async fn a_paused_watch_is_not_fetched_and_says_nothing_until_it_resumes() {
    let shop = FakeShop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let t = watching(&shop, clock.clone(), &dir.path().join("data")).await;
    let tick = || async {
        clock.advance_ms(34 * MINUTE);
        let tick = t.app().tick_now().await.unwrap();
        t.outbox_drained().await;
        tick
    };

    let reply = t.say("c1", "pause 1").await;
    assert!(reply.starts_with("Watch #1 paused"), "{reply}");
    let list = t.say("c1", "list").await;
    assert!(list.contains("⏸ paused"), "{list}");

    // Far below the line while paused: the page is not even fetched, and nothing is sent.
    shop.set_price("/p/1", "100.00");
    let before = shop.hits();
    for _ in 0..3 {
        assert_eq!(tick().await.queued, 0);
    }
    assert_eq!(
        shop.hits(),
        before,
        "a paused watch's product is not fetched"
    );
    assert!(t.channel.take().is_empty(), "nothing sent while paused");

    // Resumed: the same first price, and the drop that happened meanwhile alerts.
    let reply = t.say("c1", "resume all").await;
    assert!(reply.starts_with("Watch #1 resumed"), "{reply}");
    assert_eq!(tick().await.queued, 1);
    assert_eq!(shop.hits(), before + 1);
    let alert = t.wait_for(1).await;
    assert!(alert[0].text().contains("€100.00"), "{}", alert[0].text());
    let list = t.say("c1", "list").await;
    assert!(!list.contains("paused"), "{list}");
    assert!(list.contains("first price €200.00"), "{list}");
}
